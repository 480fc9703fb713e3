"""`em-restore denoise`: files in, calibrated float32 files out, user errors as one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from em_restore import io
from em_restore.backend import denoise as backend
from em_restore.backend.simulate import AcquisitionConfig, nanoparticles, simulate_acquisition
from em_restore.cli import build_parser, main
from tests.conftest import range_psnr as _psnr


@pytest.fixture
def noisy_file(tmp_path):
    clean, _ = nanoparticles((96, 96), pixel_size_nm=1.0, diameters_nm=(12, 24), rng=5)
    noisy, truth = simulate_acquisition(
        clean, AcquisitionConfig.low_dose_tem(dose=10.0), rng=1, return_expected=True
    )
    path = tmp_path / "raw.tif"
    io.write_tiff(path, noisy, pixel_size_nm=0.42)
    return path, truth


def test_denoise_without_options_uses_the_bundled_model(noisy_file, tmp_path, capsys):
    from em_restore.backend.models import default_model_name

    path, truth = noisy_file
    out = tmp_path / "out.tif"
    assert main(["denoise", str(path), "-o", str(out), "--modality", "tem"]) == 0
    assert f"model {default_model_name('tem')}" in capsys.readouterr().out
    result = io.read(out)
    assert result.metadata["denoise"]["method"] == "model"
    assert result.pixel_size == pytest.approx((0.42, 0.42))
    noisy = io.read(path).data.compute()
    assert _psnr(result.data.compute(), truth) > _psnr(noisy, truth) + 6


def test_denoise_classical_is_automatic_and_keeps_calibration(noisy_file, tmp_path, capsys):
    path, truth = noisy_file
    before = path.read_bytes()
    out = tmp_path / "out.tif"
    assert main(["denoise", str(path), "-o", str(out), "--method", "classical"]) == 0
    assert "denoised" in capsys.readouterr().out
    result = io.read(out)
    assert result.data.dtype == np.float32
    assert result.pixel_size == pytest.approx((0.42, 0.42))
    assert result.metadata["denoise"]["requested"] == "classical"
    noisy = io.read(path).data.compute()
    assert _psnr(result.data.compute(), truth) > _psnr(noisy, truth) + 3
    assert path.read_bytes() == before


@pytest.mark.parametrize("modality", ["tem", "stem", "sem", None])
def test_model_auto_is_the_bundled_model_for_the_modality(noisy_file, tmp_path, capsys, modality):
    from em_restore.backend.models import default_model_name, list_models
    from em_restore.backend.models.store import file_sha256

    path, truth = noisy_file
    before = path.read_bytes()
    out = tmp_path / "out.tif"
    extra = ["--modality", modality] if modality else []
    assert main(["denoise", str(path), "-o", str(out), "--model", "auto", *extra]) == 0
    text = capsys.readouterr().out
    name = default_model_name(modality)
    assert f"model {name}" in text
    record = io.read(out).metadata["denoise"]
    assert record["method"] == "model" and record["model"]["name"] == name
    entry = {e.name: e for e in list_models()}[name]
    assert record["model"]["sha256"] == file_sha256(entry.path / "model.safetensors")
    assert record["modality"] == modality
    if modality is None:
        assert "unknown" in record["modality_source"]
    noisy = io.read(path).data.compute()
    assert _psnr(io.read(out).data.compute(), truth) > _psnr(noisy, truth) + 6
    assert path.read_bytes() == before


def test_denoise_with_a_model_folder_and_models_listing(noisy_file, tmp_path, capsys):
    from em_restore.backend.models import list_models

    path, _ = noisy_file
    folder = list_models(task="denoise")[0].path
    out = tmp_path / "m.zarr"
    assert main(["denoise", str(path), "-o", str(out), "--model", str(folder), "-q"]) == 0
    assert io.read(out).metadata["denoise"]["model"]["path"] == str(folder)
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    cover = [m for r in rows for m in r["default_for"]]
    assert sorted(cover) == ["sem", "stem", "tem", "unknown modality"]  # each once
    assert main(["models"]) == 0
    assert "default for" in capsys.readouterr().out


def test_modality_is_read_from_file_metadata(tmp_path, capsys):
    import pathlib

    from em_restore.backend.models import default_model_name

    shared = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "formats"
    path = shared / "digitalmicrograph" / "test_stackbuilder_imagestack.dm3"
    if not path.exists():
        pytest.skip("shared vendor files not present")
    out = tmp_path / "o.tif"
    assert main(["denoise", str(path), "-o", str(out), "--model", "auto", "-q"]) == 0
    record = io.read(out).metadata["denoise"]
    assert record["modality"] == "stem" and record["modality_source"] == "file metadata"
    assert record["model"]["name"] == default_model_name("stem")


@pytest.mark.parametrize("method", ["gaussian", "median", "wavelet"])
def test_denoise_named_methods_and_zarr(noisy_file, tmp_path, method):
    path, _ = noisy_file
    out = tmp_path / f"{method}.zarr"
    assert main(["denoise", str(path), "-o", str(out), "--method", method, "-q"]) == 0
    result = io.read(out)
    assert result.metadata["denoise"]["method"] == method
    json.dumps(result.metadata)


def test_help_lists_every_backend_method():
    text = build_parser()._subparsers._group_actions[0].choices["denoise"].format_help()
    for method in backend.METHODS:
        assert method in text


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--method", "magic"], "unknown --method"),
        (["--model", "no-such-model"], "no model named"),
        (["--model", "x", "--method", "nlm"], "exclude each other"),
        (["--model", "auto", "--strength", "2"], "models have no strength"),
        (["--strength", "2"], "default model has no strength"),
        (["--model", "auto", "--tile", "100"], "multiple of"),
        (["--method", "nlm", "--ensemble", "4"], "--ensemble applies to models"),
        (["--ensemble", "3"], None),
        (["--method", "bm3d", "--strength", "-"], None),
    ],
)
def test_bad_options(noisy_file, tmp_path, capsys, extra, expected):
    path, _ = noisy_file
    if expected is None:
        with pytest.raises(SystemExit) as exit_info:
            main(["denoise", str(path), "-o", str(tmp_path / "o.tif"), *extra])
        assert exit_info.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
        return
    assert main(["denoise", str(path), "-o", str(tmp_path / "o.tif"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err


def test_the_ensemble_is_taken_and_recorded(noisy_file, tmp_path, capsys):
    path, truth = noisy_file
    outs = {}
    for n in (1, 8):
        out = tmp_path / f"e{n}.tif"
        args = ["denoise", str(path), "-o", str(out), "--modality", "tem", "--no-fallback"]
        assert main([*args, "--ensemble", str(n)]) == 0
        result = io.read(out)
        assert result.metadata["denoise"]["ensemble"] == n
        outs[n] = result.data.compute()
    assert not np.array_equal(outs[1], outs[8])
    assert _psnr(outs[8], truth) > _psnr(outs[1], truth) - 0.1


def test_refuses_to_overwrite_input_or_existing_output(noisy_file, tmp_path, capsys):
    path, _ = noisy_file
    assert main(["denoise", str(path), "-o", str(path)]) == 2
    assert "raw data is never overwritten" in capsys.readouterr().err
    existing = tmp_path / "exists.tif"
    existing.write_bytes(b"keep")
    assert main(["denoise", str(path), "-o", str(existing)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert existing.read_bytes() == b"keep"


def test_rgb_input_is_a_clear_error(tmp_path, capsys):
    import imageio.v3 as iio

    path = tmp_path / "photo.png"
    iio.imwrite(path, np.zeros((16, 16, 3), np.uint8))
    assert main(["denoise", str(path), "-o", str(tmp_path / "o.tif")]) == 2
    assert "greyscale" in capsys.readouterr().err
