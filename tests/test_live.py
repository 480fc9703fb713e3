"""Live restoration: fast registration, burst ring, sources, back-pressure, live zarr.

No timing thresholds here (they are in benchmarks/bench_live.py): the tests assert
registration errors, drop counts, queue bounds and what is on disk.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import tifffile

from em_restore import io
from em_restore.backend import burst as B
from em_restore.backend import live as L
from em_restore.backend import live_sources as S
from em_restore.backend import simulate as sim


@pytest.fixture(scope="module")
def stream():
    spec, _ = sim.random_specimen((200, 260), rng=3, kinds=("tissue",))
    noisy, sharp, offsets = sim.moving_stage_stream(
        spec,
        n_frames=9,
        frame_shape=(128, 128),
        velocity_px_per_frame=(1.3, 4.6),
        jitter=0.5,
        dose=50,
        rng=4,
    )
    return noisy, sharp, offsets


def _drain(gen):
    records = []
    try:
        while True:
            records.append(next(gen))
    except StopIteration as stop:
        return records, stop.value


# --------------------------------------------------------------------------- registration
def test_register_fast_recovers_simulated_shifts(stream):
    noisy, _, offsets = stream
    truth = offsets - offsets[4]
    fast = B.register_fast(noisy)
    slow = B.register_window(noisy)
    err_fast = np.hypot(*(fast - truth).T)[np.arange(9) != 4]
    err_slow = np.hypot(*(slow - truth).T)[np.arange(9) != 4]
    assert np.median(err_fast) < 0.15, err_fast
    assert err_fast.max() < 0.4, err_fast
    assert np.median(err_slow) < 0.15  # the same-run baseline


def test_phase_shift_convention_matches_register_window():
    import scipy.ndimage as ndi

    scene = ndi.gaussian_filter(np.random.default_rng(0).random((90, 120)), 2)
    window = np.stack([scene[10 + 2 * k : 70 + 2 * k, 10 + 5 * k : 70 + 5 * k] for k in range(3)])
    np.testing.assert_allclose(B.register_fast(window), B.register_window(window), atol=0.05)
    a, b = B.FrameSpectrum(window[0]), B.FrameSpectrum(window[1])
    np.testing.assert_allclose(B.phase_shift(a, b), [2, 5], atol=0.05)
    with pytest.raises(ValueError, match="same shape"):
        B.phase_shift(a, B.FrameSpectrum(window[0, :50]))


def test_binned_registration_of_large_frames():
    spec, _ = sim.random_specimen((1100, 1100), rng=5, kinds=("tissue",))
    noisy, _, offsets = sim.moving_stage_stream(
        spec, n_frames=3, frame_shape=(1024, 1024), velocity_px_per_frame=(2.2, -7.7), rng=6
    )
    s = B.register_fast(noisy)
    assert B.FrameSpectrum(noisy[0]).bin == 2
    assert np.abs(s - (offsets - offsets[1])).max() < 0.15


# --------------------------------------------------------------------------- burst ring
@pytest.mark.parametrize("method", ["classical", "mean"])
def test_burst_ring_matches_the_file_path(stream, method):
    noisy, _sharp, offsets = stream
    r = L.BurstRestorer(5, method)
    outs = [r.push(f) for f in noisy]
    assert all(o is None for o in outs[:4]) and all(o is not None for o in outs[4:])
    assert len(r._ring) == 5  # memory: the window, never more
    fuse = B.fuse_wiener if method == "classical" else B.fuse_mean
    m = slice(24, -24)  # the common area of these windows (shifts < 20 px)
    for k in range(4, 9):
        c = k - 2
        window = noisy[k - 4 : k + 1]
        ref = fuse(B.align_window(window))
        out = outs[k]
        assert out.shape == (128, 128) and out.dtype == np.float32
        truth = offsets[k - 4 : k + 1] - offsets[c]
        assert np.hypot(*(r.last_shifts - truth).T).max() < 0.4 if k == 8 else True
        # the live output is the file path's, within noise of the resampling
        gap = np.abs(out[m, m] - ref[m, m]).mean() / np.abs(ref[m, m] - ref[m, m].mean()).mean()
        assert gap < 0.08, (k, gap)


def test_burst_rejects_a_frame_size_change():
    r = L.BurstRestorer(3)
    r.push(np.zeros((32, 32)))
    with pytest.raises(ValueError, match="one frame size"):
        r.push(np.zeros((32, 40)))


# --------------------------------------------------------------------------- queue / policy
class SlowRestorer:
    delay = 0
    independent = True

    def __init__(self, seconds):
        self.seconds = seconds

    def push(self, frame):
        time.sleep(self.seconds)
        return np.asarray(frame, dtype=np.float32) * 2

    def to_metadata(self):
        return {"mode": "slow"}


def _frames(n, size=16):
    return [np.full((size, size), k, dtype=np.float32) for k in range(n)]


def test_drop_policy_counts_the_dropped_frames():
    source = S.IteratorSource(_frames(40), fps=400)
    records, summary = _drain(L.iter_live(source, SlowRestorer(0.03), policy="drop", queue_size=3))
    shown = [r.index for r in records]
    assert summary.dropped > 0 and summary.peak_queue <= 3
    assert summary.frames_in + summary.dropped == 40
    assert summary.frames_out == len(records) == summary.frames_in
    assert shown == sorted(shown) and shown[-1] == 39  # the newest always survive
    assert len(set(shown)) + summary.dropped == 40  # every frame is shown or counted
    assert records[-1].dropped == summary.dropped
    for r in records:  # each record carries its own frame
        assert r.raw[0, 0] == r.index and r.restored[0, 0] == 2 * r.index


def test_queue_policy_keeps_every_frame_in_bounded_memory():
    source = S.IteratorSource(_frames(30), fps=400)
    records, summary = _drain(L.iter_live(source, SlowRestorer(0.01), policy="queue", queue_size=4))
    assert [r.index for r in records] == list(range(30))
    assert summary.dropped == 0 and summary.peak_queue <= 4
    assert summary.stopped == "source ended"
    # latency grows as the paced source waits for the slow restorer (not asserted in ms)
    assert records[-1].latency_s > records[0].latency_s


def test_workers_restore_concurrently_in_order():
    source = S.IteratorSource(_frames(24))
    records, summary = _drain(L.iter_live(source, SlowRestorer(0.02), workers=3))
    assert [r.index for r in records] == list(range(24)) and summary.frames_out == 24
    assert all(r.restored[0, 0] == 2 * r.index for r in records)
    with pytest.raises(ValueError, match="workers=1"):
        next(L.iter_live(S.IteratorSource(_frames(3)), L.BurstRestorer(3), workers=2))


def test_bad_policy_names_the_choices():
    with pytest.raises(ValueError, match="policy"):
        L.FrameQueue(4, "lifo")


def test_stop_after_and_idle_timeout(tmp_path):
    source = S.IteratorSource(_frames(50))
    records, summary = _drain(L.iter_live(source, SlowRestorer(0), stop_after=7))
    assert len(records) == 7 and summary.stopped == "stop-after" and source.closed
    empty = tmp_path / "empty"
    empty.mkdir()
    t = time.monotonic()
    records, summary = _drain(L.iter_live(S.FolderSource(empty), SlowRestorer(0), idle_timeout=0.3))
    assert records == [] and summary.stopped == "idle timeout"
    assert time.monotonic() - t < 5


def test_closing_the_pipeline_stops_the_reader():
    source = S.IteratorSource(_frames(10_000), fps=1000)
    gen = L.iter_live(source, SlowRestorer(0), queue_size=2)
    next(gen)
    gen.close()
    assert source.closed
    assert not [t for t in threading.enumerate() if t.name == "live-in"]


# --------------------------------------------------------------------------- sources
def _tiff_bytes(tmp_path, frame):
    p = tmp_path / "scratch.tif"
    tifffile.imwrite(p, frame)
    data = p.read_bytes()
    p.unlink()
    return data


def test_folder_source_skips_part_files_and_waits_for_complete_files(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    frames = [np.full((24, 24), 10 * (k + 1), dtype=np.uint16) for k in range(4)]
    blobs = [_tiff_bytes(tmp_path, f) for f in frames]
    (folder / "000.tif").write_bytes(blobs[0])
    (folder / "001.tif.part").write_bytes(blobs[1])  # a writer's temporary name
    (folder / ".002.tif").write_bytes(blobs[2])  # hidden: ignored
    (folder / "notes.txt").write_text("not an image")
    source = S.FolderSource(folder, poll=0.02)

    def writer():
        time.sleep(0.3)
        (folder / "001.tif.part").rename(folder / "001.tif")
        half = folder / "002.tif"
        half.write_bytes(blobs[2][: len(blobs[2]) // 2])  # half-written, stable for a while
        time.sleep(0.3)
        half.write_bytes(blobs[2])
        (folder / "003.tif").write_bytes(blobs[3])

    thread = threading.Thread(target=writer)
    thread.start()
    records, summary = _drain(L.iter_live(source, SlowRestorer(0), idle_timeout=1.0))
    thread.join()
    assert [int(r.raw[0, 0]) for r in records] == [10, 20, 30, 40]
    assert [r.index for r in records] == [0, 1, 2, 3]
    assert source.skipped == [] and summary.stopped == "idle timeout"


def test_growing_tiff_stack_is_followed(tmp_path):
    path = tmp_path / "movie.tif"
    frames = [np.full((20, 20), k + 1, dtype=np.uint16) for k in range(6)]
    tifffile.imwrite(path, frames[0], metadata=None)  # plain pages, as a camera appends them

    def writer():
        for f in frames[1:]:
            time.sleep(0.1)
            tifffile.imwrite(path, f, append=True, metadata=None)

    thread = threading.Thread(target=writer)
    thread.start()
    records, _ = _drain(
        L.iter_live(S.StackSource(path, poll=0.02), SlowRestorer(0), idle_timeout=1.0)
    )
    thread.join()
    assert [int(r.raw[0, 0]) for r in records] == [1, 2, 3, 4, 5, 6]


def _mrc_header(nz, ny, nx) -> bytes:
    import struct

    header = bytearray(1024)
    struct.pack_into("<4i", header, 0, nx, ny, nz, 2)  # float32
    struct.pack_into("<3i", header, 28, nx, ny, nz)
    struct.pack_into("<6f", header, 40, 10.0, 10.0, 1.0, 90.0, 90.0, 90.0)
    struct.pack_into("<3i", header, 64, 1, 2, 3)
    header[208:216] = b"MAP DD\x00\x00"
    return bytes(header)


def test_growing_mrc_stack_is_followed_when_its_header_comes_last(tmp_path):
    path = tmp_path / "movie.mrc"
    frames = [np.full((16, 16), k + 1, dtype=np.float32) for k in range(5)]
    path.write_bytes(_mrc_header(1, 16, 16) + frames[0].tobytes())

    def writer():  # data first, then the frame count in the header, as a camera may
        for k, f in enumerate(frames[1:], start=2):
            time.sleep(0.1)
            with open(path, "r+b") as fh:
                fh.seek(0, 2)
                fh.write(f.tobytes()[:300])
                fh.flush()
                time.sleep(0.06)  # a frame half-written for a few polls
                fh.write(f.tobytes()[300:])
                fh.flush()
                time.sleep(0.06)
                fh.seek(0)
                fh.write(_mrc_header(k, 16, 16))

    thread = threading.Thread(target=writer)
    thread.start()
    records, _ = _drain(
        L.iter_live(S.StackSource(path, poll=0.02), SlowRestorer(0), idle_timeout=1.0)
    )
    thread.join()
    assert [float(r.raw[0, 0]) for r in records] == [1, 2, 3, 4, 5]
    assert all((r.raw == r.raw[0, 0]).all() for r in records)  # never a half frame


def test_synthetic_microscope_drifts_as_it_says():
    src = S.SyntheticSource("synthetic:fps=1000,size=96,frames=14,pool=12,speed=2.5,dose=40")
    assert src.loop.shape == (12, 96, 96) and src.loop.dtype == np.float32
    steps = np.diff(src.offsets, axis=0)
    np.testing.assert_allclose(np.hypot(*steps.T), 2.5, rtol=0.01)
    r = L.BurstRestorer(5, "mean")
    records, summary = _drain(L.iter_live(src, r))
    assert summary.frames_in == 14 and len(records) == 10
    truth = np.array([src.offset(k) for k in range(9, 14)]) - src.offset(11)
    assert np.hypot(*(r.last_shifts - truth).T).max() < 0.15


def test_source_specs_are_checked(tmp_path):
    assert S.parse_synthetic("synthetic").fps == 20
    assert S.parse_synthetic("synthetic:size=256,fps=50").size == 256
    with pytest.raises(ValueError, match="key=value"):
        S.parse_synthetic("synthetic:speed")
    with pytest.raises(ValueError, match="not a number"):
        S.parse_synthetic("synthetic:fps=fast")
    with pytest.raises(ValueError, match="not a folder"):
        S.open_source(str(tmp_path / "nothing.png"))
    assert isinstance(S.open_source(str(tmp_path)), S.FolderSource)
    assert isinstance(S.open_source(str(tmp_path / "x.mrc")), S.StackSource)


# --------------------------------------------------------------------------- output
def test_live_zarr_stays_readable_after_an_interrupt(tmp_path):
    out = tmp_path / "live.zarr"
    source = S.IteratorSource(_frames(100, size=32), fps=500)
    gen = L.iter_live(source, SlowRestorer(0))
    store = None
    done = []
    with pytest.raises(KeyboardInterrupt):
        for rec in gen:
            if store is None:
                store = L.LiveZarr(out, rec.restored.shape, metadata={"source": "test"})
            store.append(rec.restored, rec.index)
            done.append(rec.index)
            if len(done) == 6:
                raise KeyboardInterrupt  # Ctrl-C between two frames
    gen.close()
    assert source.closed
    image = io.read(out)  # readable without close(): status "running"
    assert image.axes == "tyx" and image.data.shape == (6, 32, 32)
    np.testing.assert_array_equal(np.asarray(image.data)[:, 0, 0], 2 * np.array(done))
    assert image.metadata["status"] == "running"
    store.close()
    meta = io.read(out).metadata
    assert meta["status"] == "complete" and meta["input_frames"] == done
    with pytest.raises(FileExistsError, match="overwrite"):
        L.LiveZarr(out, (32, 32))


# --------------------------------------------------------------------------- CLI
def test_cli_live_stop_after_writes_a_readable_store(tmp_path, capsys):
    from em_restore.cli import main

    out = tmp_path / "out.zarr"
    spec = "synthetic:fps=200,size=64,pool=8,dose=30"
    rc = main(
        [
            "live",
            spec,
            "-o",
            str(out),
            "--burst",
            "3",
            "--method",
            "mean",
            "--stop-after",
            "9",
            "-q",
        ]
    )
    assert rc == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("live: 9 frames done") and "fps" in line and "p95" in line
    image = io.read(out)
    assert image.data.shape == (9, 64, 64)
    meta = image.metadata
    assert meta["status"] == "complete" and meta["input_frames"] == list(range(1, 10))
    assert meta["live"]["stopped"] == "stop-after" and meta["source"] == spec
    assert main(["live", spec, "-o", str(out), "--stop-after", "2", "-q"]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(["live", spec, "-o", str(tmp_path / "x.tif"), "-q"]) == 2
    assert "OUT.zarr" in capsys.readouterr().err


def test_cli_live_folder_idle_timeout(tmp_path, capsys):
    from em_restore.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(4):
        tifffile.imwrite(folder / f"f{k:03d}.tif", np.full((32, 32), k + 1, np.float32))
    out = tmp_path / "out.zarr"
    rc = main(
        ["live", str(folder), "-o", str(out), "--method", "gaussian", "--idle-timeout", "0.5", "-q"]
    )
    assert rc == 0
    assert "(idle timeout)" in capsys.readouterr().out
    assert io.read(out).data.shape == (4, 32, 32)


def test_cli_live_ctrl_c_leaves_every_frame_done(tmp_path):
    import signal
    import subprocess
    import sys

    out = tmp_path / "out.zarr"
    cmd = [sys.executable, "-m", "em_restore.cli", "live", "synthetic:fps=20,size=64,pool=8"]
    proc = subprocess.Popen(
        [*cmd, "-o", str(out), "--burst", "3", "--method", "mean"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            if io.read(out).data.shape[0] >= 5:
                break
        except (ValueError, OSError):
            pass
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    last = stdout.strip().splitlines()[-1]
    image = io.read(out)
    n = image.data.shape[0]
    assert n >= 5 and last.startswith(f"live: {n} frames done") and "(interrupted)" in last
    assert image.metadata["status"] == "complete" and len(image.metadata["input_frames"]) == n
    assert np.isfinite(np.asarray(image.data)).all() and np.asarray(image.data)[-1].std() > 0


def test_live_denoising_runs_the_tem_default_unless_a_model_is_named():
    from em_restore.backend.models import default_model_name

    restorer = L.plan_live("denoise")
    assert restorer.plan.model.name == default_model_name("tem")
    assert restorer.to_metadata()["model"]["name"] == default_model_name("tem")
    named = L.plan_live("denoise", model="em-denoise-fast-v1")
    assert named.plan.model.name == "em-denoise-fast-v1"
