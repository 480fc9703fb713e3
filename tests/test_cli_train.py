"""`em-restore train`: folders or files in, a model folder out that denoise/burst accept."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

pytest.importorskip("torch")

from em_restore import io
from em_restore.backend import simulate as sim
from em_restore.cli import main

QUICK = ["--epochs", "2", "--steps-per-epoch", "2", "--batch", "2", "--patch", "32", "-q"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """noisy/ and clean/ folders with the same file names, in shuffled listing order."""
    root = tmp_path_factory.mktemp("train")
    (root / "noisy").mkdir()
    (root / "clean").mkdir()
    for i, name in enumerate(["b.tif", "a.tif", "c.tif"]):
        spec, _ = sim.random_specimen((96, 96), rng=i, kinds=("nanoparticles",))
        noisy = sim.simulate_acquisition(spec, sim.AcquisitionConfig(dose=10.0), rng=i)
        clean = sim.simulate_acquisition(spec, sim.AcquisitionConfig(dose=1000.0), rng=i)
        io.write_tiff(root / "noisy" / name, noisy.astype(np.float32), pixel_size_nm=0.5)
        io.write_tiff(root / "clean" / name, clean.astype(np.float32), pixel_size_nm=0.5)
    return root


def test_paired_training_writes_a_model_denoise_accepts(folders, tmp_path, capsys):
    before = {p: p.read_bytes() for p in folders.rglob("*.tif")}
    model = tmp_path / "my-model"
    args = ["train", "--mode", "paired", "--noisy", str(folders / "noisy")]
    code = main([*args, "--clean", str(folders / "clean"), "-o", str(model), *QUICK])
    assert code == 0, capsys.readouterr().err
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["name"] == "my-model" and cfg["task"] == "denoise"
    data = cfg["training"]["data"]
    assert data["mode"] == "paired" and data["images"] == 3
    assert data["registration"]["min_correlation"] > 0.8  # paired by name, not by order
    assert len(cfg["training"]["history"]) == 2
    assert (model / "MODEL_CARD.md").is_file() and (model / "training-state.pt").is_file()
    out = tmp_path / "restored.tif"
    noisy = folders / "noisy" / "a.tif"
    assert main(["denoise", str(noisy), "-o", str(out), "--model", str(model), "-q"]) == 0
    meta = io.read(out).metadata
    meta = meta.get("em_restore", meta)
    assert json.dumps(meta).count(cfg["weights_sha256"]) >= 1
    assert {p: p.read_bytes() for p in folders.rglob("*.tif")} == before  # inputs untouched


def test_named_model_goes_to_the_user_folder_and_is_listed(folders, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EM_RESTORE_MODELS", str(tmp_path / "models"))
    noisy = str(folders / "noisy" / "a.tif")
    assert main(["train", "--mode", "self", "--noisy", noisy, "--name", "mine", *QUICK]) == 0
    assert (tmp_path / "models" / "mine" / "config.json").is_file()
    capsys.readouterr()
    assert main(["models", "--task", "denoise", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert any(m["name"] == "mine" for m in listed)


def test_resume_continues_and_extends(folders, tmp_path, capsys):
    model = tmp_path / "m"
    base = ["train", "--mode", "self", "--noisy", str(folders / "noisy"), "-o", str(model)]
    assert main([*base, *QUICK]) == 0
    more = [a if a != "2" or i != 1 else "3" for i, a in enumerate(QUICK)]  # --epochs 3
    assert main([*base, *more, "--resume"]) == 0
    cfg = json.loads((model / "config.json").read_text())
    assert [h["epoch"] for h in cfg["training"]["history"]] == [1, 2, 3]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mode", "paired", "--noisy", "NOISY"], "--mode paired needs --clean"),
        (["--mode", "self"], "--mode self needs --noisy"),
        (["--mode", "self", "--noisy", "NOISY", "--loss", "l1"], "needs the l2 loss"),
        (["--mode", "paired", "--task", "burst", "--noisy", "NOISY"], "use --mode simulated"),
        (["--mode", "simulated", "--noisy", "NOISY"], "drop --noisy"),
        (["--mode", "self", "--noisy", "EMPTY"], "holds no image file"),
    ],
)
def test_bad_requests_fail_with_one_line(folders, tmp_path, capsys, extra, message):
    (tmp_path / "empty").mkdir()
    subst = {"NOISY": str(folders / "noisy"), "EMPTY": str(tmp_path / "empty")}
    extra = [subst.get(a, a) for a in extra]
    code = main(["train", *extra, "-o", str(tmp_path / "out"), *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_existing_model_and_missing_output_are_refused(folders, tmp_path, capsys):
    model = tmp_path / "m"
    base = ["train", "--mode", "self", "--noisy", str(folders / "noisy" / "a.tif")]
    assert main([*base, "-o", str(model), *QUICK]) == 0
    capsys.readouterr()
    assert main([*base, "-o", str(model), *QUICK]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert main([*base, *QUICK]) == 2
    assert "-o MODEL_DIR, or --name NAME" in capsys.readouterr().err


def test_burst_training_on_simulated_streams(folders, tmp_path, capsys):
    model = tmp_path / "burst"
    args = ["train", "--mode", "simulated", "--task", "burst", "--clean", str(folders / "clean")]
    quick = ["--epochs", "1", "--steps-per-epoch", "1", "--batch", "1", "--patch", "32", "-q"]
    code = main([*args, "--frames", "3", "--pool", "2", "-o", str(model), *quick])
    assert code == 0, capsys.readouterr().err
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["task"] == "burst" and cfg["architecture"] == "burst_dense_unet"
    assert cfg["training"]["data"]["specimens"] == "user clean images"


def test_refused_settings_leave_no_model_folder(folders, tmp_path, capsys):
    base = ["train", "--mode", "self", "--noisy", str(folders / "noisy"), "-q"]
    assert main([*base, "--patch", "50", "-o", str(tmp_path / "a")]) == 2
    assert re.search(r"multiple of the network stride \d+\.", capsys.readouterr().err)
    assert main([*base, "--epochs", "0", "-o", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_training_fine_tunes_the_bundled_model_unless_from_scratch(folders, tmp_path, capsys):
    from em_restore.backend.models import default_model_name, load_model
    from em_restore.backend.models.fit import LR_FINE_TUNE, LR_SCRATCH

    bundled = load_model(default_model_name("tem"), device="cpu")
    loud = [a for a in QUICK if a != "-q"]
    base = ["train", "--mode", "paired", "--noisy", str(folders / "noisy")]
    base += ["--clean", str(folders / "clean")]
    assert main([*base, "-o", str(tmp_path / "ft"), *loud]) == 0
    out = capsys.readouterr().out
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    origin = {"name": bundled.name, "weights_sha256": bundled.sha256}
    assert cfg["training"]["fine_tuned_from"] == origin
    assert cfg["arch_params"] == bundled.config.arch_params
    assert cfg["normalisation"] == bundled.config.normalisation
    assert cfg["training"]["config"]["lr"] == LR_FINE_TUNE
    before = cfg["training"]["start_val_psnr_db"]
    said = re.search(rf"fine-tuned from {bundled.name} \(val PSNR (\d+\.\d+) dB before", out)
    assert said and float(said[1]) == pytest.approx(before, abs=0.006)
    # the best of the start model and the epochs by the selection score (validation
    # SSIM for paired data): never below the start's (PSNR may move either way)
    assert cfg["metrics"]["val_ssim"] >= cfg["metrics"]["start_val_ssim"]

    assert main([*base, "-o", str(tmp_path / "s"), "--from-scratch", *loud]) == 0
    out = capsys.readouterr().out
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    assert "fine_tuned_from" not in cfg["training"] and "from scratch (fast_denoiser)" in out
    assert cfg["training"]["config"]["lr"] == LR_SCRATCH
    assert cfg["arch_params"] != bundled.config.arch_params  # fast_denoiser's own defaults

    # --from a model folder: fine-tune the model just trained
    assert main([*base, "-o", str(tmp_path / "f2"), "--from", str(tmp_path / "s"), *QUICK]) == 0
    cfg2 = json.loads((tmp_path / "f2" / "config.json").read_text())
    assert cfg2["training"]["fine_tuned_from"] == {
        "name": "s",
        "weights_sha256": cfg["weights_sha256"],
    }
    assert cfg2["arch_params"] == cfg["arch_params"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--arch", "unet_resnet18"], "pass --from-scratch (from_scratch=True) to choose"),
        (["--from", "em-burst"], "em-burst is a burst model"),
        (["--from", "em-denoise-fast", "--from-scratch"], "exclude each other"),
    ],
)
def test_fine_tuning_conflicts_fail_in_one_line(folders, tmp_path, capsys, extra, message):
    args = ["train", "--mode", "self", "--noisy", str(folders / "noisy"), "-o", str(tmp_path / "m")]
    assert main([*args, *extra, *QUICK]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()
