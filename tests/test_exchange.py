"""Sharing models: BMZ packages and ONNX files, out and in (backend/models/exchange.py)."""

from __future__ import annotations

import json
import shutil
import sys
import zipfile

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the testing extra installs onnx and onnxruntime")
pytest.importorskip("bioimageio.core", reason="the testing extra installs bioimageio.core")

import yaml

from em_restore import io
from em_restore.backend.models import exchange, load_model
from em_restore.backend.models.inference import normalisation_of, predict_frame
from em_restore.cli import main
from tests.conftest import range_psnr as _psnr

pytestmark = [  # third-party noise from bioimageio's runners, not ours
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
]


#: BMZ packages carry percentile pre-processing: the percentile-normalised denoiser
#: (models under the noise rule are refused, see test_noise_rule_model_is_refused_for_bmz)
BMZ_DENOISER = "em-denoise-fast-v1"


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """Both bundled models exported once: BMZ zips and the denoiser's ONNX file."""
    root = tmp_path_factory.mktemp("exported")
    return {
        BMZ_DENOISER: exchange.export_bmz(BMZ_DENOISER, root / "fast.zip"),
        "em-burst": exchange.export_bmz("em-burst", root / "burst.zip"),
        "onnx": exchange.export_onnx("em-denoise-fast", root / "fast.onnx"),
    }


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    folder = tmp_path / "user-models"
    monkeypatch.setenv("EM_RESTORE_MODELS", str(folder))
    return folder


@pytest.fixture(scope="module")
def noisy_frame():
    frame, _ = exchange._simulated_frame(size=192, seed=3)
    return frame


def _rdf(package) -> dict:
    with zipfile.ZipFile(package) as z:
        return yaml.safe_load(z.read("rdf.yaml"))


def _unzipped(package, tmp_path):
    folder = tmp_path / "package"
    with zipfile.ZipFile(package) as z:
        z.extractall(folder)
    return folder


def _rewrite(folder, edit) -> None:
    path = folder / "rdf.yaml"
    rdf = yaml.safe_load(path.read_text())
    edit(rdf)
    path.write_text(yaml.safe_dump(rdf, sort_keys=False))


# --------------------------------------------------------------------------- BMZ out
@pytest.mark.slow
@pytest.mark.parametrize("name", [BMZ_DENOISER, "em-burst"])
def test_bioimageio_test_model_passes_on_the_exported_package(packages, name):
    from bioimageio.core import test_model

    summary = test_model(packages[name])
    failed = [d.name for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    tested = " ".join(d.name for d in summary.details)
    for fmt in ("pytorch_state_dict", "torchscript", "onnx"):
        assert f"Reproduce test outputs from test inputs ({fmt})" in tested
    # every weight format ran on several sizes and batch sizes, not only the test tensor
    assert sum("size parameter n: 2" in d.name for d in summary.details) == 6


def test_package_describes_the_model(packages):
    rdf = _rdf(packages[BMZ_DENOISER])
    assert rdf["format_version"].startswith(exchange.BMZ_FORMAT_VERSION)
    assert rdf["name"] == BMZ_DENOISER and rdf["license"] == "BSD-3-Clause"
    assert rdf["authors"] and rdf["cite"] and rdf["documentation"]["source"] == "README.md"
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript", "onnx"}
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert (arch["import_from"], arch["callable"]) == (
        "em_restore.backend.models.nets",
        "build_network",
    )
    (inp,) = rdf["inputs"]
    assert [a["type"] for a in inp["axes"]] == ["batch", "channel", "space", "space"]
    y = inp["axes"][2]
    stride = load_model(BMZ_DENOISER, device="cpu").net.stride
    assert (y["id"], y["scale"], y["unit"], y["size"]["step"]) == ("y", 0.5, "nanometer", stride)
    assert y["size"]["min"] == 256 and rdf["outputs"][0]["axes"][2]["halo"] == exchange.BMZ_HALO
    (scale,) = [p for p in inp["preprocessing"] if p["id"] == "scale_range"]
    assert (scale["kwargs"]["min_percentile"], scale["kwargs"]["max_percentile"]) == (0.1, 99.9)
    # the burst network: N frames in (an index axis of any size >= 2), sizes tied to frames
    burst = _rdf(packages["em-burst"])
    axes = {t["id"]: [(a["type"], a.get("id")) for a in t["axes"]] for t in burst["inputs"]}
    assert list(axes) == ["frames", "masks", "motion", "base"]
    assert axes["frames"] == [("batch", None), ("index", "frame"), ("space", "y"), ("space", "x")]
    assert axes["motion"] == [("batch", None), ("index", "frame"), ("channel", None)]
    frame_size = burst["inputs"][0]["axes"][1]["size"]
    assert (frame_size["min"], frame_size["step"]) == (2, 1)
    assert burst["inputs"][1]["axes"][1]["size"] == {"tensor_id": "frames", "axis_id": "frame"}


def test_bmz_processing_reproduces_our_inference(packages, tmp_path):
    """scale_range + network = em-restore's prediction, in normalised units (1e-4)."""
    folder = _unzipped(packages[BMZ_DENOISER], tmp_path)
    x = np.load(folder / "test_input.npy")[0, 0]
    expected = np.load(folder / "test_output.npy")[0, 0]
    model = load_model(BMZ_DENOISER, device="cpu")
    lo, scale = normalisation_of(x.astype(np.float64), model.config.normalisation)
    ours = (predict_frame(model, x) - lo) / scale
    assert np.abs(ours - expected).max() < 1e-4


# --------------------------------------------------------------------------- ONNX
def test_onnx_agrees_with_torch_within_1e4(packages, tmp_path):
    import torch

    torch_model = load_model("em-denoise-fast", device="cpu")
    onnx_model = exchange.load_onnx(packages["onnx"])
    test_input = np.load(_unzipped(packages[BMZ_DENOISER], tmp_path) / "test_input.npy")
    rng = np.random.default_rng(0)
    cases = [exchange.scale_range(test_input, torch_model.config.normalisation, (2, 3))]
    cases += [rng.random(s, dtype=np.float32) for s in [(1, 1, 64, 96), (2, 1, 128, 80)]]
    for x in cases:  # the package's test tensor, then other batch and spatial sizes
        shape = x.shape
        with torch.inference_mode():
            want = torch_model.net(torch.from_numpy(x)).numpy()
        got = onnx_model.net.run(x)
        assert got.shape == shape
        assert np.abs(got - want).max() < 1e-4


def test_burst_onnx_agrees_with_torch_on_any_number_of_frames(packages, tmp_path):
    import onnxruntime as ort
    import torch

    folder = _unzipped(packages["em-burst"], tmp_path)
    inputs = {n: np.load(folder / f"test_{n}.npy") for n in exchange._BURST_INPUTS}
    session = ort.InferenceSession(str(folder / "weights.onnx"), providers=["CPUExecutionProvider"])
    net = load_model("em-burst", device="cpu").net
    for keep in (slice(None), slice(1, 4)):  # 5 frames, then 3
        feed = dict(inputs)
        for n in ("frames", "masks", "motion"):
            feed[n] = np.ascontiguousarray(inputs[n][:, keep])
        with torch.inference_mode():
            want = net(*(torch.from_numpy(feed[n]) for n in exchange._BURST_INPUTS)).numpy()
        (got,) = session.run(None, feed)
        assert np.abs(got - want).max() < 1e-4
    assert np.abs(want - np.load(folder / "test_restored.npy")).max() > 1e-3  # 3 != 5 frames


def test_denoise_with_an_onnx_file_restores_like_the_original(
    packages, noisy_frame, tmp_path, capsys
):
    src = tmp_path / "raw.tif"
    io.write_tiff(src, noisy_frame, pixel_size_nm=0.5)
    outs = {}
    for key, spec in (("torch", "em-denoise-fast"), ("onnx", str(packages["onnx"]))):
        outs[key] = tmp_path / f"{key}.tif"
        assert main(["denoise", str(src), "-o", str(outs[key]), "--model", spec]) == 0
    printed = capsys.readouterr().out
    assert "model em-denoise-fast" in printed and "cpu" in printed
    a, b = (io.read(outs[k]) for k in ("torch", "onnx"))
    assert b.metadata["denoise"]["model"]["architecture"] == "onnx"
    assert _psnr(b.data.compute(), a.data.compute()) >= 60.0
    raw = noisy_frame.astype(np.float64)
    assert _psnr(b.data.compute(), raw) < 40  # it did restore: far from the noisy input


def test_missing_onnxruntime_names_the_extra(packages, monkeypatch, noisy_frame, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(exchange.ExchangeError, match=r"pip install 'napari-em-restore\[onnx\]'"):
        exchange.load_onnx(packages["onnx"])
    src = tmp_path / "raw.tif"
    io.write_tiff(src, noisy_frame, pixel_size_nm=0.5)
    code = main(
        ["denoise", str(src), "-o", str(tmp_path / "o.tif"), "--model", str(packages["onnx"])]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "[onnx]" in err


def test_missing_bioimageio_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    with pytest.raises(exchange.ExchangeError, match=r"pip install 'napari-em-restore\[bmz\]'"):
        exchange.export_bmz(BMZ_DENOISER, tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


# --------------------------------------------------------------------------- BMZ in
def test_export_import_denoise_round_trip_is_identical(packages, user_models, noisy_frame, capsys):
    assert main(["import", str(packages[BMZ_DENOISER]), "--name", "fast-again"]) == 0
    assert "fast-again" in capsys.readouterr().out
    imported = load_model("fast-again", device="cpu")
    original = load_model(BMZ_DENOISER, device="cpu")
    assert imported.path.parent == user_models
    assert imported.config.normalisation == original.config.normalisation
    assert imported.config.arch_params == original.config.arch_params
    assert np.array_equal(
        predict_frame(imported, noisy_frame), predict_frame(original, noisy_frame)
    )
    # the burst network comes back too, with its task
    burst = exchange.import_bmz(packages["em-burst"], name="burst-again")
    assert load_model(burst).config.task == "burst"


def test_a_bundled_name_is_not_taken(packages, user_models):
    with pytest.raises(exchange.ExchangeError, match="--name"):
        exchange.import_bmz(packages[BMZ_DENOISER])


def test_foreign_denoiser_with_onnx_weights_is_imported(
    packages, user_models, tmp_path, noisy_frame, capsys
):
    folder = _unzipped(packages[BMZ_DENOISER], tmp_path)

    def foreign(rdf):  # someone else's package: ONNX weights only, no config attached
        rdf["name"] = "their-denoiser"
        onnx = rdf["weights"]["onnx"]
        onnx.pop("parent", None)
        rdf["weights"] = {"onnx": onnx}
        rdf.pop("attachments", None)

    _rewrite(folder, foreign)
    target = exchange.import_bmz(folder / "rdf.yaml")
    assert (target / exchange.ONNX_FILE).is_file() and target.name == "their-denoiser"
    model = exchange.load_onnx(exchange.onnx_model_path("their-denoiser"))
    assert model.config.normalisation == {"kind": "percentile", "low": 0.1, "high": 99.9}
    original = load_model(BMZ_DENOISER, device="cpu")
    assert model.net.stride == original.net.stride  # from the package's axis step
    want = predict_frame(original, noisy_frame)
    assert _psnr(predict_frame(model, noisy_frame), want) >= 60.0
    # listed with the other models, as an ONNX user model
    assert main(["models", "--json", "--task", "denoise"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["their-denoiser"]["architecture"] == "onnx"
    assert rows["their-denoiser"]["path"].endswith(exchange.ONNX_FILE)


def test_a_package_that_needs_code_is_refused_in_one_line(packages, user_models, tmp_path, capsys):
    folder = _unzipped(packages[BMZ_DENOISER], tmp_path)

    def their_code(rdf):
        psd = rdf["weights"]["pytorch_state_dict"]
        psd["architecture"] = {"callable": "UNet", "import_from": "their_lab.nets", "kwargs": {}}
        rdf["weights"] = {"pytorch_state_dict": psd}

    _rewrite(folder, their_code)
    with pytest.raises(exchange.ExchangeError, match="needs code to run") as err:
        exchange.import_bmz(folder, name="theirs")
    assert "their_lab.nets.UNet" in str(err.value) and "\n" not in str(err.value)
    assert main(["import", str(folder), "--name", "theirs"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (user_models / "theirs").exists()


def test_export_cli_writes_both_formats(tmp_path, capsys):
    out = tmp_path / "fast.onnx"
    assert main(["export", "em-denoise-fast", "--format", "onnx", "-o", str(out)]) == 0
    assert out.is_file() and "exported em-denoise-fast" in capsys.readouterr().out
    assert main(["export", "em-denoise-fast", "--format", "onnx", "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert (
        main(["export", "em-denoise-fast", "--format", "onnx", "-o", str(tmp_path / "x.zip")]) == 2
    )
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_noise_rule_model_is_refused_for_bmz(tmp_path, monkeypatch):
    """A model fed in the frame's own noise units cannot be described by BMZ
    pre-processing: refused in one line naming ONNX and the percentile model."""
    from em_restore.backend.models import save_model
    from em_restore.backend.models.store import ModelConfig

    cfg = load_model(BMZ_DENOISER, device="cpu").config
    folder = save_model(
        tmp_path / "noise-units",
        load_model(BMZ_DENOISER, device="cpu").net,
        ModelConfig(
            name="noise-units",
            architecture=cfg.architecture,
            arch_params=cfg.arch_params,
            normalisation={"kind": "noise", "scale": 4.0},
        ),
    )
    with pytest.raises(ValueError, match="ONNX") as err:
        exchange.export_bmz(folder, tmp_path / "x.zip")
    assert "\n" not in str(err.value) and not (tmp_path / "x.zip").exists()


def test_an_onnx_export_keeps_the_models_ensemble(tmp_path):
    from em_restore.backend.models import ModelConfig, save_model
    from em_restore.backend.models.inference import plan_model

    cfg = ModelConfig(
        name="tiny-ens",
        architecture="fast_denoiser",
        arch_params={"channels": 8, "blocks": [1, 1, 1]},
        normalisation={"kind": "percentile", "low": 0.1, "high": 99.9},
        ensemble=4,
    )
    save_model(tmp_path / "m", cfg.build(), cfg)
    path = exchange.export_onnx(tmp_path / "m", tmp_path / "m.onnx")
    onnx_model = exchange.load_onnx(path)
    assert onnx_model.config.ensemble == 4
    plan = plan_model(str(path))
    assert plan.ensemble == 4 and plan.to_metadata()["ensemble"] == 4
    x = np.random.default_rng(1).poisson(6.0, (40, 48)).astype(np.float64)
    torch_plan = plan_model(str(tmp_path / "m"), device="cpu")
    np.testing.assert_allclose(plan.apply_frame(x), torch_plan.apply_frame(x), atol=1e-3)
