"""Live restoration at camera rate: the synthetic microscope writes files, the pipeline follows.

Per configuration (frame size × rate × mode), in this process:

* a writer thread, the *synthetic microscope*
  (:class:`em_restore.backend.live_sources.SyntheticSource`), writes one float32
  TIFF per frame into a scratch folder at ``fps`` (``NNNNNN.tif.part``, then a
  rename, as an acquisition program does), deleting files older than 64 frames
  so a long run needs no disk;
* :func:`em_restore.backend.live.iter_live` follows the folder
  (:class:`~em_restore.backend.live_sources.FolderSource`) with the ``drop``
  policy (queue of 8), so falling behind shows as dropped frames, and restores
  each frame: ``denoise`` (the bundled ``em-denoise-fast`` network, CPU unless
  CUDA) or ``burst`` (5 frames, classical multi-frame Wiener, each frame
  registered once);
* reported: sustained fps (outputs after the first per second since the first),
  latency p50/p95 (file complete on disk -> frame restored), dropped frames
  (queue policy) and lost frames (deleted before they were read), the peak RSS,
  and the RSS median over the first and the last tenth of the run (flat memory:
  the two agree).

``--registration`` adds, in the same run: the fast registration
(:func:`em_restore.backend.burst.register_fast`) against the file path's
:func:`~em_restore.backend.burst.register_window` on ``bench_burst.py``'s 48
held-out windows (their raw frames, captured as the benchmark makes them), and the
time per 1024² output frame of the classical 5-frame fusion: the live ring
(:class:`~em_restore.backend.live.BurstRestorer`, steady state) against
``register_window`` + ``align_window`` + ``fuse_wiener`` on the same frames.

Done-when (issue 32): denoise >= 20 fps at 512² with p95 <= 100 ms and no drops;
burst >= 3 fps at 1024²; memory flat over 2000 frames; classical fusion <= 300 ms
per 1024² output; registration median within 0.15 px. Run from the repository
root (the full run: 12 configurations × 2000 frames, about 40 min)::

    .venv/bin/python benchmarks/bench_live.py [--frames 2000] [--sizes 512,1024]
        [--rates 10,20,50] [--modes denoise,burst] [--registration] [--threads 1] [--workers 2]
        [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tifffile

from em_restore.backend import live as L
from em_restore.backend import live_sources as S

KEEP_FILES = 64


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Sampler(threading.Thread):
    """RSS every 0.1 s while the run lasts."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.samples.append(rss_mb())


def microscope(folder: Path, spec: S.SyntheticSpec, loop, stop: threading.Event, written: list):
    """Write the synthetic microscope's frames as files at spec.fps (a thread)."""
    t0 = time.monotonic() + 0.5
    for k in range(spec.frames):
        due = t0 + k / spec.fps
        if stop.wait(max(due - time.monotonic(), 0)):
            return
        part = folder / f"{k:06d}.tif.part"
        tifffile.imwrite(part, loop[k % spec.pool])
        os.replace(part, folder / f"{k:06d}.tif")
        written.append(k)
        old = folder / f"{k - KEEP_FILES:06d}.tif"
        if k >= KEEP_FILES and old.exists():
            old.unlink()


def run_one(size: int, fps: float, mode: str, frames: int, restorer, workers: int = 1) -> dict:
    pool = 32 if size >= 1024 else 48
    spec = S.SyntheticSpec(fps=fps, size=size, frames=frames, pool=pool, seed=1)
    folder = Path(tempfile.mkdtemp(prefix="bench_live_"))
    stop, written = threading.Event(), []
    loop, _ = S.synthetic_loop(spec)  # simulated before the clock starts
    writer = threading.Thread(
        target=microscope, args=(folder, spec, loop, stop, written), daemon=True
    )
    sampler = Sampler()
    source = S.FolderSource(folder, suffixes=(".tif",), poll=0.005)
    workers = workers if mode == "denoise" else 1  # burst frames chain: one worker
    gen = L.iter_live(
        source, restorer, policy="drop", queue_size=8, idle_timeout=3.0, workers=workers
    )
    writer.start()
    sampler.start()
    restore = []
    try:
        while True:
            try:
                restore.append(next(gen).restore_s)
            except StopIteration as end:
                summary = end.value
                break
    finally:
        stop.set()
        writer.join()
        sampler.stop.set()
        sampler.join()
        shutil.rmtree(folder, ignore_errors=True)
    del loop
    rss = np.array(sampler.samples)
    tenth = max(len(rss) // 10, 1)
    lost = len(written) - summary.frames_in - summary.dropped
    return {
        "size": size,
        "rate_fps": fps,
        "mode": mode,
        "workers": workers,
        "frames_written": len(written),
        "frames_in": summary.frames_in,
        "frames_out": summary.frames_out,
        "sustained_fps": round(summary.fps, 2),
        "latency_p50_ms": round(summary.latency_p50_ms, 1),
        "latency_p95_ms": round(summary.latency_p95_ms, 1),
        "restore_ms_median": round(1e3 * float(np.median(restore)), 1) if restore else None,
        "dropped": summary.dropped,
        "lost": lost,
        "peak_rss_mb": round(float(rss.max()), 1),
        "rss_first_tenth_mb": round(float(np.median(rss[:tenth])), 1),
        "rss_last_tenth_mb": round(float(np.median(rss[-tenth:])), 1),
        "rss_by_tenth_mb": [round(float(np.median(c)), 1) for c in np.array_split(rss, 10)],
    }


def registration() -> dict:
    """register_fast vs register_window on bench_burst's windows; 1024² fusion timing."""
    import em_restore.backend.models.burst as MB
    from em_restore.backend import burst as B
    from em_restore.backend import simulate as sim

    seed = 7_000_001  # bench_burst.SEED
    captured = {}
    original = MB.align_window

    def capture(frames, *a, **k):
        captured["raw"] = np.array(frames)
        return original(frames, *a, **k)

    MB.align_window = capture
    err_fast, err_file = [], []
    try:
        recipe = MB.BurstRecipe(size=128, frames=5)
        for i in range(48):
            aligned, _, info = MB.simulated_window(np.random.default_rng([seed, i]), recipe)
            keep = np.arange(5) != aligned.reference
            fast = B.register_fast(captured["raw"])
            err_file += np.hypot(*(aligned.shifts - info["offsets"]).T)[keep].tolist()
            err_fast += np.hypot(*(fast - info["offsets"]).T)[keep].tolist()
    finally:
        MB.align_window = original

    g = np.random.default_rng([seed, 10_000])  # bench_burst's runtime stream
    spec, _ = sim.random_specimen((1024 + 200, 1024 + 260), rng=g, kinds=("tissue",))
    noisy, _, _ = sim.moving_stage_stream(
        spec, n_frames=12, frame_shape=(1024, 1024), velocity_px_per_frame=(3.0, 12.0), rng=g
    )
    ring = L.BurstRestorer(5, "classical")
    times = []
    for f in noisy:
        t = time.perf_counter()
        out = ring.push(f)
        if out is not None:
            times.append(time.perf_counter() - t)
    t = time.perf_counter()
    s = B.register_window(noisy[:5])
    t_reg = time.perf_counter() - t
    t = time.perf_counter()
    B.fuse_wiener(B.align_window(noisy[:5], s))
    t_fuse = time.perf_counter() - t
    return {
        "registration_median_px": {
            "register_fast": round(float(np.median(err_fast)), 4),
            "register_window": round(float(np.median(err_file)), 4),
        },
        "registration_p90_px": {
            "register_fast": round(float(np.percentile(err_fast, 90)), 3),
            "register_window": round(float(np.percentile(err_file, 90)), 3),
        },
        "classical_5_frames_1024_ms_per_output": {
            "live_ring_median": round(1e3 * float(np.median(times[1:])), 1),
            "live_ring_max": round(1e3 * float(np.max(times[1:])), 1),
            "file_path_register_window": round(1e3 * t_reg, 1),
            "file_path_align_and_fuse": round(1e3 * t_fuse, 1),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--rates", default="10,20,50")
    ap.add_argument("--modes", default="denoise,burst")
    ap.add_argument("--registration", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default torch's; 1 is steadier on a loaded machine)",
    )
    ap.add_argument(
        "--workers", type=int, default=1, help="denoise frames restored at once (iter_live)"
    )
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    result = {
        "frames": args.frames,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
        "runs": [],
    }
    if args.registration:
        result["registration"] = registration()
        print(json.dumps(result["registration"], indent=1), flush=True)
    for mode in args.modes.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            for fps in (float(r) for r in args.rates.split(",")):
                restorer = L.plan_live(mode)
                row = run_one(size, fps, mode, args.frames, restorer, args.workers)
                result["runs"].append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
