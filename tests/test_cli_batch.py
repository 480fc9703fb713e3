"""Batches: many files (or folders) in one command, each to an output folder."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from em_restore import io
from em_restore.cli import main

GAUSS = ["--method", "gaussian", "--strength", "1", "-q"]


def _digest(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


@pytest.fixture
def folder(tmp_path):
    """Three images and a corrupt file, as a microscopist's session folder."""
    rng = np.random.default_rng(2)
    d = tmp_path / "session"
    d.mkdir()
    io.write_tiff(d / "a.tif", rng.poisson(30, (48, 40)).astype(np.uint16), pixel_size_nm=0.4)
    io.write_tiff(
        d / "b.tif", rng.poisson(30, (3, 40, 48)).astype(np.uint16), pixel_size_nm=0.7, axes="tyx"
    )
    io.write_tiff(d / "c.tif", rng.poisson(9, (40, 40)).astype(np.float32))
    (d / "broken.tif").write_bytes(b"II*\x00 this is not a TIFF")
    (d / ".a.tif.1234.tmp").write_bytes(b"a writer's temporary file")
    (d / "notes.txt").write_text("not an image")
    return d


def test_a_folder_is_processed_file_by_file_and_a_bad_file_does_not_stop_it(
    folder, tmp_path, capsys
):
    before = _digest(folder)
    out = tmp_path / "out"
    assert main(["denoise", str(folder), "-o", str(out), *GAUSS]) == 2
    captured = capsys.readouterr()
    assert "broken.tif" in captured.err and "holds no image" in captured.err
    assert "3 of 4 file(s) written" in captured.out and "1 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == [
        "a_denoised.tif",
        "b_denoised.tif",
        "c_denoised.tif",
    ]
    assert _digest(folder) == before  # raw data untouched
    # Each output is what the single-file command gives, with the input's calibration.
    single = tmp_path / "single_b.tif"
    assert main(["denoise", str(folder / "b.tif"), "-o", str(single), *GAUSS]) == 0
    batch_b = io.read(out / "b_denoised.tif")
    np.testing.assert_array_equal(np.asarray(batch_b.data), np.asarray(io.read(single).data))
    assert batch_b.pixel_size == pytest.approx((0.7, 0.7)) and batch_b.axes == "tyx"
    assert batch_b.metadata["input"] == str(folder / "b.tif")


def test_several_files_to_zarr_and_existing_outputs(folder, tmp_path, capsys):
    files = [str(folder / n) for n in ("a.tif", "b.tif")]
    out = tmp_path / "z"
    assert main(["denoise", *files, "-o", str(out), "--format", "zarr", *GAUSS]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_denoised.zarr", "b_denoised.zarr"]
    assert io.read(out / "b_denoised.zarr").data.shape == (3, 40, 48)
    stamp = (out / "a_denoised.zarr" / "zarr.json").stat().st_mtime_ns
    capsys.readouterr()
    # Again: refused before anything is touched, unless told what to do.
    assert main(["denoise", *files, "-o", str(out), "--format", "zarr", *GAUSS]) == 2
    err = capsys.readouterr().err
    assert "2 of the 2 outputs already exist" in err and "--skip-existing" in err
    (out / "b_denoised.zarr").rename(tmp_path / "moved.zarr")
    args = ["denoise", *files, "-o", str(out), "--format", "zarr", "--skip-existing"]
    assert main([*args, "--method", "gaussian", "--strength", "1"]) == 0
    captured = capsys.readouterr()
    assert "a_denoised.zarr exists, skipped" in captured.err
    assert "1 of 2 file(s) written" in captured.out and "1 skipped" in captured.out
    assert (out / "a_denoised.zarr" / "zarr.json").stat().st_mtime_ns == stamp
    assert (out / "b_denoised.zarr").is_dir()
    assert main(["denoise", *files, "-o", str(out), "--format", "zarr", "--overwrite", *GAUSS]) == 0


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["-o", "{file}"], "is a file; with several inputs -o names an output folder"),
        (["-o", "{out}", "--psf-out", "k.tif"], "--psf-out names one kernel file"),
        (["-o", "{out}.tif"], "is a file; with several inputs -o names an output folder"),
    ],
)
def test_batch_refusals(folder, tmp_path, capsys, extra, match):
    (tmp_path / "file.tif").write_bytes(b"")
    extra = [e.format(file=tmp_path / "file.tif", out=tmp_path / "o") for e in extra]
    files = [str(folder / "a.tif"), str(folder / "c.tif")]
    assert main(["deconvolve", *files, *extra, "--psf", "gaussian:1", "-q"]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.tif").exists()


def test_two_inputs_with_one_output_name_are_refused_up_front(folder, tmp_path, capsys):
    other = tmp_path / "elsewhere"
    other.mkdir()
    io.write_tiff(other / "a.tif", np.ones((40, 40), np.float32))
    out = tmp_path / "out"
    args = ["denoise", str(folder / "a.tif"), str(other / "a.tif"), "-o", str(out), *GAUSS]
    assert main(args) == 2
    assert "would both write a_denoised.tif" in capsys.readouterr().err
    assert not out.exists()


def test_one_file_into_a_folder_and_burst_batches(tmp_path, capsys):
    rng = np.random.default_rng(4)
    streams = tmp_path / "streams"
    streams.mkdir()
    for name in ("s1.tif", "s2.tif"):
        io.write_tiff(streams / name, rng.poisson(50, (4, 40, 40)).astype(np.uint16), axes="tyx")
    out = tmp_path / "fused"
    assert main(["burst", str(streams), "-o", str(out), "--method", "mean", "--frames", "3"]) == 0
    assert "2 of 2 file(s) written" in capsys.readouterr().out
    assert io.read(out / "s2_burst.tif").data.shape == (2, 40, 40)
    single = tmp_path / "one"
    single.mkdir()
    assert main(["denoise", str(streams / "s1.tif"), "-o", str(single), *GAUSS]) == 0
    assert [p.name for p in single.iterdir()] == ["s1_denoised.tif"]
    assert main(["denoise", str(tmp_path / "empty_dir_missing"), "-o", str(single), *GAUSS]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["denoise", str(tmp_path / "empty"), "-o", str(single), *GAUSS]) == 2
    assert "holds no image file" in capsys.readouterr().err


def test_image_files_lists_each_dataset_once(tmp_path):
    for name in ("b.tif", "a.emi", "a_1.ser", "lone_1.ser", ".hidden.tif", "x.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "r.zarr").mkdir()
    (tmp_path / "sub").mkdir()
    assert [p.name for p in io.image_files(tmp_path)] == ["a.emi", "b.tif", "lone_1.ser", "r.zarr"]
