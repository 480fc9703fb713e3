"""`em-restore deconvolve`: blind and known kernels, kernel output, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from em_restore import io
from em_restore.backend import psf as P
from em_restore.backend import simulate as sim
from em_restore.backend.deconvolve import kernel_error
from em_restore.cli import main


@pytest.fixture(scope="module")
def blurred_tif(tmp_path_factory):
    clean, _ = sim.random_specimen((96, 96), rng=1, kinds=("grid",))
    path = tmp_path_factory.mktemp("dec") / "blurred.tif"
    io.write_tiff(
        path, P.convolve(clean, P.gaussian_psf(2.0)).astype(np.float32), pixel_size_nm=0.8
    )
    return path


def test_blind_writes_result_and_kernel_with_metadata(blurred_tif, tmp_path, capsys):
    out, kern = tmp_path / "sharp.tif", tmp_path / "psf.tif"
    before = blurred_tif.read_bytes()
    code = main(
        ["deconvolve", str(blurred_tif), "-o", str(out), "--psf-out", str(kern), "--no-denoise"]
    )
    assert code == 0
    assert "estimated kernel" in capsys.readouterr().out
    assert blurred_tif.read_bytes() == before  # input untouched
    res = io.read(out)
    assert res.data.shape == (96, 96) and res.data.dtype == np.float32
    assert res.pixel_size == pytest.approx((0.8, 0.8))
    meta = (
        res.metadata["em_restore"]["deconvolve"]
        if "em_restore" in res.metadata
        else res.metadata["deconvolve"]
    )
    assert meta["psf_source"] == "blind" and meta["solver"] == "rl"
    k = np.asarray(io.read(kern).data, dtype=float)
    np.testing.assert_allclose(k, np.asarray(meta["psfs"][0]), atol=1e-6)
    assert kernel_error(k, P.gaussian_psf(2.0)) < 0.35


@pytest.fixture(scope="module")
def noisy_tif(tmp_path_factory):
    clean, _ = sim.nanoparticles((128, 128), pixel_size_nm=1.0, rng=0)
    cfg = sim.AcquisitionConfig.low_dose_tem(dose=20.0, psf=P.gaussian_psf(2.0))
    path = tmp_path_factory.mktemp("decn") / "noisy.tif"
    io.write_tiff(path, sim.simulate_acquisition(clean, cfg, rng=3).astype(np.float32))
    return path


@pytest.mark.parametrize(("extra", "method"), [([], "model"), (["--denoise", "classical"], None)])
def test_denoise_stage_default_model_or_classical(noisy_tif, tmp_path, extra, method):
    out = tmp_path / "o.tif"
    assert main(["deconvolve", str(noisy_tif), "-o", str(out), "-q", *extra]) == 0
    meta = io.read(out).metadata
    den = (meta["em_restore"] if "em_restore" in meta else meta)["deconvolve"]["denoise"]
    if method == "model":
        assert den["method"] == "model" and den["model"]["name"] == "em-denoise-fast"
        assert den["modality_source"] == "unknown (the all-modality default)"
    else:
        assert den["method"] != "model" and "calibration" in den
    k = np.asarray((meta["em_restore"] if "em_restore" in meta else meta)["deconvolve"]["psfs"][0])
    assert kernel_error(k, P.gaussian_psf(2.0)) < 0.35


def test_known_kernel_spec_and_file(blurred_tif, tmp_path):
    a = tmp_path / "a.tif"
    assert (
        main(
            [
                "deconvolve",
                str(blurred_tif),
                "-o",
                str(a),
                "--psf",
                "gaussian:2.0",
                "--no-denoise",
                "-q",
            ]
        )
        == 0
    )
    kfile = tmp_path / "k.tif"
    io.write_tiff(kfile, P.gaussian_psf(2.0).astype(np.float32))
    b = tmp_path / "b.tif"
    assert (
        main(
            [
                "deconvolve",
                str(blurred_tif),
                "-o",
                str(b),
                "--psf",
                str(kfile),
                "--no-denoise",
                "-q",
            ]
        )
        == 0
    )
    # The file holds the same kernel in float32: RL amplifies the rounding a little.
    np.testing.assert_allclose(io.read(a).data, io.read(b).data, atol=0.02)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--psf", "gauss:2"], "neither a kernel spec"),
        (["--psf", "gaussian:x"], "needs 1 number"),
        (["--psf", "disk:2", "--windows", "2"], "--windows applies to blind"),
        (["--max-kernel-size", "40"], "odd"),
    ],
)
def test_bad_options_are_one_line_errors(blurred_tif, tmp_path, capsys, extra, message):
    out = tmp_path / "o.tif"
    assert main(["deconvolve", str(blurred_tif), "-o", str(out), "--no-denoise", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_refuses_to_overwrite_the_input_or_an_existing_kernel(blurred_tif, tmp_path, capsys):
    assert main(["deconvolve", str(blurred_tif), "-o", str(blurred_tif)]) == 2
    assert "raw data is never overwritten" in capsys.readouterr().err
    kern = tmp_path / "psf.tif"
    kern.write_bytes(b"x")
    assert (
        main(
            ["deconvolve", str(blurred_tif), "-o", str(tmp_path / "o.tif"), "--psf-out", str(kern)]
        )
        == 2
    )
    assert "already exists" in capsys.readouterr().err
    assert kern.read_bytes() == b"x"


def test_rgb_input_is_refused(tmp_path, capsys):
    import tifffile

    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    assert main(["deconvolve", str(path), "-o", str(tmp_path / "o.tif")]) == 2
    assert "greyscale" in capsys.readouterr().err
