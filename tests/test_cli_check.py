"""`em-restore check` and `--fidelity-out`: maps on disk, one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from em_restore import io
from em_restore.backend import simulate as sim
from em_restore.cli import main


@pytest.fixture
def pair(tmp_path):
    clean, _ = sim.nanoparticles((128, 128), pixel_size_nm=1.0, rng=5)
    cfg = sim.AcquisitionConfig(modality="tem", dose=5.0)
    raw, truth = sim.simulate_acquisition(clean, cfg, rng=1, return_expected=True)
    painted = truth.copy()
    painted[30:70, 30:70] += 3.0
    paths = {}
    for name, data in (("raw", raw), ("truth", truth), ("painted", painted)):
        paths[name] = tmp_path / f"{name}.tif"
        io.write_tiff(paths[name], data.astype(np.float32), pixel_size_nm=0.5)
    return paths


def test_check_writes_a_calibrated_map_and_a_summary(pair, tmp_path, capsys):
    out = tmp_path / "map.tif"
    before = pair["raw"].read_bytes()
    assert main(["check", str(pair["raw"]), str(pair["painted"]), "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    m = io.read(out)
    data = np.asarray(m.data)
    assert data.shape == (128, 128) and data.dtype == np.float32
    assert 0 <= data.min() and data.max() <= 1
    assert m.pixel_size == pytest.approx((0.5, 0.5))
    assert data[40:60, 40:60].mean() > 0.9 and data[100:, 100:].mean() < 0.1
    assert summary["flagged_fraction"] > 0.05
    assert m.metadata["fidelity"]["regions"][0]["test"] in ("mean", "detail")
    assert pair["raw"].read_bytes() == before


def test_check_passes_the_expected_counts(pair, tmp_path, capsys):
    out = tmp_path / "map.tif"
    assert main(["check", str(pair["raw"]), str(pair["truth"]), "-o", str(out)]) == 0
    assert "supported by the counts" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("which", "fix"),
    [("same-output", "inputs are never overwritten"), ("exists", "--overwrite")],
)
def test_check_refuses_in_one_line(pair, tmp_path, capsys, which, fix):
    out = pair["raw"] if which == "same-output" else tmp_path / "map.tif"
    if which == "exists":
        out.write_bytes(b"x")
    assert main(["check", str(pair["raw"]), str(pair["truth"]), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert fix in err and "\n" not in err


def test_check_refuses_a_shape_mismatch(pair, tmp_path, capsys):
    other = tmp_path / "small.tif"
    io.write_tiff(other, np.ones((64, 64), np.float32))
    assert main(["check", str(pair["raw"]), str(other), "-o", str(tmp_path / "m.tif")]) == 2
    assert "same image" in capsys.readouterr().err


def test_denoise_fidelity_out_and_the_default_is_checked(pair, tmp_path, capsys):
    out, fmap = tmp_path / "den.tif", tmp_path / "den_fid.tif"
    args = ["denoise", str(pair["raw"]), "-o", str(out), "--fidelity-out", str(fmap)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "checked" in printed and "fidelity:" in printed
    meta = io.read(out).metadata["denoise"]
    assert meta["checked"] is True and meta["fallback"]["frames"][0]["tiles"] >= 1
    m = io.read(fmap)
    assert np.asarray(m.data).shape == (128, 128)
    assert m.metadata["fidelity"]["flagged_fraction"] <= 0.05


def test_no_fallback_only_with_the_default_model(pair, tmp_path, capsys):
    out = tmp_path / "d.tif"
    args = ["denoise", str(pair["raw"]), "-o", str(out), "--method", "gaussian", "--no-fallback"]
    assert main(args) == 2
    assert "--no-fallback applies to the default model" in capsys.readouterr().err
    assert main(["denoise", str(pair["raw"]), "-o", str(out), "--no-fallback"]) == 0
    assert "checked" not in json.dumps(io.read(out).metadata["denoise"])


def test_no_compare_checks_the_default_model_only(pair, tmp_path, capsys):
    out = tmp_path / "d.tif"
    args = ["denoise", str(pair["raw"]), "-o", str(out), "--method", "tv", "--no-compare"]
    assert main(args) == 2
    assert "--no-compare applies to the checked default model" in capsys.readouterr().err
    assert not out.exists()
    assert main(["denoise", str(pair["raw"]), "-o", str(out), "--no-compare"]) == 0
    fallback = io.read(out).metadata["denoise"]["fallback"]
    assert fallback["policy"]["compare"] is False and fallback["classical"] is None
    assert main(["denoise", str(pair["raw"]), "-o", str(tmp_path / "c.tif")]) == 0
    assert "estimated risk" in capsys.readouterr().out
    compared = io.read(tmp_path / "c.tif").metadata["denoise"]["fallback"]
    assert compared["policy"]["compare"] is True and compared["classical"] is not None
    assert 0.0 <= compared["frames"][0]["blend"]["weight"] <= 1.0


def test_deconvolve_fidelity_out_goes_through_the_kernel(tmp_path, capsys):
    from em_restore.backend.psf import convolve, gaussian_psf

    clean, _ = sim.nanoparticles((128, 128), pixel_size_nm=1.0, rng=2)
    blurred = convolve(clean * 200.0, gaussian_psf(1.5))
    raw = np.random.default_rng(0).poisson(blurred).astype(np.float32)
    src = tmp_path / "raw.tif"
    io.write_tiff(src, raw)
    out, fmap = tmp_path / "dec.tif", tmp_path / "dec_fid.tif"
    args = ["deconvolve", str(src), "-o", str(out), "--psf", "gaussian:1.5"]
    assert main([*args, "--no-denoise", "--fidelity-out", str(fmap)]) == 0
    m = io.read(fmap)
    assert np.asarray(m.data).shape == (128, 128)
    assert m.metadata["fidelity"]["forward"] == "blur"
    assert m.metadata["fidelity"]["flagged_fraction"] <= 0.2


def test_burst_fidelity_out_maps_every_output_frame(tmp_path):
    scene, _ = sim.nanoparticles((96, 160), pixel_size_nm=1.0, rng=4)
    stream = sim.moving_stage_stream(scene, n_frames=6, frame_shape=(64, 64), dose=100.0, rng=0)
    frames = stream[0] if isinstance(stream, tuple) else stream
    noisy = np.asarray(frames, dtype=np.float32)
    src = tmp_path / "stream.tif"
    io.write_tiff(src, noisy, axes="tyx")
    out, fmap = tmp_path / "b.tif", tmp_path / "b_fid.tif"
    args = ["burst", str(src), "-o", str(out), "--method", "mean", "--frames", "3"]
    assert main([*args, "--fidelity-out", str(fmap)]) == 0
    result = np.asarray(io.read(out).data)
    m = np.asarray(io.read(fmap).data)
    assert m.shape == result.shape and m.dtype == np.float32
    assert 0 <= m.min() and m.max() <= 1


def test_fidelity_out_is_refused_in_a_batch(pair, tmp_path, capsys):
    args = ["denoise", str(pair["raw"]), str(pair["truth"]), "-o", str(tmp_path / "outs")]
    assert main([*args, "--fidelity-out", str(tmp_path / "f.tif")]) == 2
    assert "em-restore check" in capsys.readouterr().err
