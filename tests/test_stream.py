"""Stacks computed lazily, chunk by chunk: locally and on a dask.distributed cluster."""

from __future__ import annotations

import numpy as np
import pytest

from em_restore import io
from em_restore.backend import deconvolve as dec
from em_restore.backend import stream
from em_restore.cli import main

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster with 2 worker processes, as a user's cluster would be."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as c:
        yield c.scheduler_address


@pytest.fixture(scope="module")
def stack_tif(tmp_path_factory):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:80, 0:112]
    clean = 20 + 15 * ((yy - 40) ** 2 + (xx - 56) ** 2 < 400)
    stack = rng.poisson(np.broadcast_to(clean, (5, 80, 112))).astype(np.uint16)
    path = tmp_path_factory.mktemp("stream") / "stack.tif"
    io.write_tiff(path, stack, pixel_size_nm=0.8, axes="tyx", frame_interval=0.05)
    return path


def _data(path):
    return np.asarray(io.read(path).data)


DENOISE = ["--method", "gaussian", "--strength", "1.2", "-q"]


def test_stack_denoise_is_streamed_and_equals_the_eager_backend(stack_tif, tmp_path):
    from em_restore.backend.denoise import apply_plan, plan_denoise

    assert main(["denoise", str(stack_tif), "-o", str(tmp_path / "o.zarr"), *DENOISE]) == 0
    assert main(["denoise", str(stack_tif), "-o", str(tmp_path / "o.tif"), *DENOISE]) == 0
    out = io.read(tmp_path / "o.zarr")
    assert out.data.chunksize[0] == 1 and out.pixel_size == pytest.approx((0.8, 0.8))
    raw = _data(stack_tif)
    plan = plan_denoise(raw[2], "gaussian", params={"sigma_px": 1.2})
    eager = np.stack([apply_plan(f, plan) for f in raw])
    np.testing.assert_allclose(_data(tmp_path / "o.zarr"), eager, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(_data(tmp_path / "o.zarr"), _data(tmp_path / "o.tif"))
    assert raw.std() > 2 * _data(tmp_path / "o.zarr").std() * 0.5  # it did smooth


def test_distributed_run_gives_identical_output(stack_tif, tmp_path, cluster):
    local, remote = tmp_path / "local.zarr", tmp_path / "remote.zarr"
    assert main(["denoise", str(stack_tif), "-o", str(local), *DENOISE]) == 0
    args = ["denoise", str(stack_tif), "-o", str(remote), *DENOISE, "--scheduler", cluster]
    assert main(args) == 0
    np.testing.assert_array_equal(_data(local), _data(remote))
    meta = [io.read(p).metadata for p in (local, remote)]
    for m in meta:
        m.pop("source")
    assert meta[0] == meta[1]
    psf = ["--psf", "gaussian:1.0", "--no-denoise", "-q"]
    assert main(["deconvolve", str(stack_tif), "-o", str(tmp_path / "d1.zarr"), *psf]) == 0
    args = ["deconvolve", str(stack_tif), "-o", str(tmp_path / "d2.zarr"), *psf]
    assert main([*args, "--scheduler", cluster]) == 0
    np.testing.assert_array_equal(_data(tmp_path / "d1.zarr"), _data(tmp_path / "d2.zarr"))


def test_distributed_model_inference_is_identical(stack_tif, tmp_path, cluster):
    pytest.importorskip("torch")
    base = ["denoise", str(stack_tif), "--model", "em-denoise-fast", "--device", "cpu", "-q"]
    assert main([*base, "-o", str(tmp_path / "m1.zarr")]) == 0
    assert main([*base, "-o", str(tmp_path / "m2.zarr"), "--scheduler", cluster]) == 0
    np.testing.assert_array_equal(_data(tmp_path / "m1.zarr"), _data(tmp_path / "m2.zarr"))


def test_distributed_default_denoiser_is_checked_and_identical(stack_tif, tmp_path, cluster):
    """The default (the model checked against the counts) travels to the workers."""
    pytest.importorskip("torch")
    base = ["denoise", str(stack_tif), "--device", "cpu", "-q"]
    assert main([*base, "-o", str(tmp_path / "a1.zarr")]) == 0
    assert main([*base, "-o", str(tmp_path / "a2.zarr"), "--scheduler", cluster]) == 0
    np.testing.assert_array_equal(_data(tmp_path / "a1.zarr"), _data(tmp_path / "a2.zarr"))
    assert io.read(tmp_path / "a2.zarr").metadata["denoise"]["checked"] is True


def test_scheduler_needs_zarr_and_a_reachable_address(stack_tif, tmp_path, capsys):
    args = ["denoise", str(stack_tif), "-o", str(tmp_path / "o.tif"), *DENOISE]
    assert main([*args, "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "--scheduler needs a .zarr output" in capsys.readouterr().err
    with pytest.raises(stream.SchedulerError, match="cannot reach the dask scheduler"):
        stream.connect("tcp://127.0.0.1:1", timeout=0.5)
    assert not (tmp_path / "o.tif").exists()


def test_deconvolve_lazy_equals_the_frame_loop():
    rng = np.random.default_rng(1)
    stack = rng.poisson(30, (3, 48, 40)).astype(float)
    plan = dec.plan_deconvolve(stack[1], "gaussian:1.0", denoise=None)
    eager = dec.drain(dec.iter_deconvolve(stack, plan))
    lazy = dec.deconvolve_lazy(stack, plan)
    assert lazy.chunks[0] == (1, 1, 1)
    np.testing.assert_array_equal(lazy.compute(scheduler="threads"), eager)


def test_progress_counts_every_chunk_once_across_page_writes(stack_tif, tmp_path):
    from em_restore.backend.denoise import denoise_lazy, plan_denoise

    data = io.read(stack_tif).data
    plan = plan_denoise(np.asarray(data[0]), "gaussian", params={"sigma_px": 1.0})
    seen = []
    lazy = stream.with_progress(denoise_lazy(data, plan), lambda d, t: seen.append((d, t)))
    with stream.computing():
        io.write_tiff(tmp_path / "p.tif", lazy, axes="tyx")  # one compute per page
    assert seen[-1] == (lazy.npartitions, lazy.npartitions)
    assert [d for d, _ in seen] == list(range(1, lazy.npartitions + 1))


@pytest.fixture(scope="module")
def moving_tif(tmp_path_factory):
    """A stream over a textured specimen, the stage moving 3 px per frame."""
    import scipy.ndimage as ndi

    rng = np.random.default_rng(5)
    field = ndi.gaussian_filter(rng.random((90, 160)), 2.5)
    scene = 60 + 400 * (field - field.min()) / np.ptp(field)
    frames = np.stack([scene[10:74, 4 + 3 * k : 84 + 3 * k] for k in range(7)])
    stack = rng.poisson(frames).astype(np.uint16)
    path = tmp_path_factory.mktemp("moving") / "stream.tif"
    io.write_tiff(path, stack, pixel_size_nm=0.5, axes="tyx", frame_interval=0.01)
    return path


def test_burst_streams_in_two_passes_and_equals_iter_burst(moving_tif, tmp_path):
    from em_restore.backend import burst as B

    args = ["burst", str(moving_tif), "--method", "mean", "--frames", "3", "--stride", "2", "-q"]
    assert main([*args, "-o", str(tmp_path / "b.zarr")]) == 0
    assert main([*args, "-o", str(tmp_path / "b.tif")]) == 0
    raw = _data(moving_tif)
    eager, info = B.drain(B.iter_burst(raw, B.plan_burst("mean", frames=3, stride=2)))
    out = io.read(tmp_path / "b.zarr")
    assert out.data.chunksize[0] == 1 and out.scale[0] == pytest.approx(0.02)
    np.testing.assert_array_equal(np.asarray(out.data), eager)
    np.testing.assert_array_equal(_data(tmp_path / "b.tif"), eager)
    for written in (out, io.read(tmp_path / "b.tif")):
        record = written.metadata["burst"]
        assert record["centres"] == info["centres"] == [1, 3, 5]
        assert record["shifts"] == info["shifts"]
        assert record["shifts"][0][0] == pytest.approx([0.0, -3.0], abs=0.1)  # stage motion


def test_distributed_burst_is_identical(moving_tif, tmp_path, cluster):
    args = ["burst", str(moving_tif), "--method", "classical", "--frames", "3", "-q"]
    assert main([*args, "-o", str(tmp_path / "l.zarr")]) == 0
    assert main([*args, "-o", str(tmp_path / "r.zarr"), "--scheduler", cluster]) == 0
    np.testing.assert_array_equal(_data(tmp_path / "l.zarr"), _data(tmp_path / "r.zarr"))
    meta = [io.read(tmp_path / p).metadata["burst"] for p in ("l.zarr", "r.zarr")]
    assert meta[0] == meta[1]
    assert main([*args, "-o", str(tmp_path / "r.tif"), "--scheduler", cluster]) == 2
