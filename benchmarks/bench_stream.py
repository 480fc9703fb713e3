"""Bounded memory on big stacks: a 100 × 2048² uint16 TIFF (0.8 GB) denoised to zarr.

Measures, each in a fresh process (peak resident memory from ``getrusage`` of the
child):

* ``em-restore denoise BIG.tif -o OUT.zarr --method gaussian --strength 1`` on the
  first 50 and on all 100 frames: peak RSS, wall time, MP/s. The stack is read
  lazily, computed one frame per chunk and written chunk by chunk, so the peak
  must not grow with the number of frames;
* the baseline, in the same run: the same filter done the usual way, the whole
  stack read with ``tifffile.imread``, filtered into a float32 array and written
  with ``tifffile.imwrite`` (memory grows with the stack).

``--ops`` measures the other methods the same way (each streams its stack):
``deconvolve`` (Wiener with a known Gaussian kernel), ``burst`` (windows of 3, the
registered mean: registration pass, then fusion pass) and ``model`` (the bundled
``em-denoise-fast`` on the CPU). They are slower per frame, so run them on fewer
frames (``--frames 16``): the claim is the same, the peak does not grow with length.

Target (issue 9): peak RSS < 1.2 GB, the same for 50 and 100 frames. Run from the
repository root (needs about 2.5 GB of free disk in ``--dir``)::

    .venv/bin/python benchmarks/bench_stream.py [--frames 100] [--size 2048] [--dir /tmp]
    .venv/bin/python benchmarks/bench_stream.py --frames 16 --ops deconvolve,burst,model
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile

MEASURE = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "rc = subprocess.run(sys.argv[1:]).returncode; "
    "print(rc, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)

BASELINE = """
import sys, numpy as np, tifffile
from scipy import ndimage
stack = tifffile.imread(sys.argv[1])
out = np.empty(stack.shape, np.float32)
for i, f in enumerate(stack):
    out[i] = ndimage.gaussian_filter(f.astype(np.float32), 1.0)
tifffile.imwrite(sys.argv[2], out)
"""


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of ``cmd`` run in a fresh child process."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, check=True
    )
    rc, seconds, kb = out.stdout.split()[-3:]
    if int(rc) != 0:
        raise SystemExit(f"{cmd} failed: {out.stderr[-500:]}")
    return float(seconds), int(kb) / 1024**2


def make_stack(path: Path, frames: int, size: int) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    base = 100 + 50 * np.sin(yy / 37.0) * np.cos(xx / 53.0)

    def pages():
        for _ in range(frames):
            yield rng.poisson(base).astype(np.uint16)

    tifffile.imwrite(
        path,
        pages(),
        shape=(frames, size, size),
        dtype=np.uint16,
        bigtiff=True,
        metadata={"axes": "TYX"},
    )


# Each method's command (after "em-restore"), input and output appended.
OPS = {
    "denoise": ["denoise", "--method", "gaussian", "--strength", "1"],
    "deconvolve": ["deconvolve", "--psf", "gaussian:1.5", "--no-denoise", "--solver", "wiener"],
    "burst": ["burst", "--method", "mean", "--frames", "3"],
    "model": ["denoise", "--model", "em-denoise-fast", "--device", "cpu"],
}


def run_op(cli: str, op: str, src: Path, out: Path) -> tuple[float, float]:
    return measure([cli, *OPS[op], str(src), "-o", str(out), "-q"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument(
        "--ops",
        default="denoise",
        help=f"comma-separated methods among {', '.join(OPS)} (default denoise)",
    )
    ap.add_argument("--dir", default=None, help="scratch folder (default: the system temp)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    unknown = sorted(set(ops) - set(OPS))
    if unknown:
        raise SystemExit(f"unknown --ops {unknown}; choose among {', '.join(OPS)}")
    cli = str(Path(sys.executable).with_name("em-restore"))
    root = Path(tempfile.mkdtemp(dir=args.dir, prefix="bench_stream_"))
    rows: dict = {}
    half = args.frames // 2
    try:
        for n in (half, args.frames):
            src = root / f"stack{n}.tif"
            make_stack(src, n, args.size)
            gb = src.stat().st_size / 1e9
            mp = n * args.size * args.size / 1e6
            for op in ops:
                out = root / f"{op}{n}.zarr"
                seconds, peak = run_op(cli, op, src, out)
                rows[f"{op} {n} frames"] = {
                    "input_gb": round(gb, 2),
                    "seconds": round(seconds, 1),
                    "mp_per_s": round(mp / seconds, 2),
                    "peak_rss_gb": round(peak, 3),
                }
                print(
                    f"em-restore {op:<10} {n:4d} frames ({gb:.2f} GB): {seconds:7.1f} s, "
                    f"{mp / seconds:6.2f} MP/s, peak RSS {peak:.3f} GB",
                    flush=True,
                )
                shutil.rmtree(out)
            if n == args.frames:
                seconds, peak = measure(
                    [sys.executable, "-c", BASELINE, str(src), str(root / "baseline.tif")]
                )
                rows[f"in-memory baseline {n} frames"] = {
                    "seconds": round(seconds, 1),
                    "mp_per_s": round(mp / seconds, 1),
                    "peak_rss_gb": round(peak, 3),
                }
                print(
                    f"baseline (imread + filter + imwrite), {n} frames: {seconds:6.1f} s, "
                    f"{mp / seconds:6.1f} MP/s, peak RSS {peak:.3f} GB",
                    flush=True,
                )
            src.unlink()
        base = rows[f"in-memory baseline {args.frames} frames"]["peak_rss_gb"]
        rows["ratios"] = {}
        for op in ops:
            a = rows[f"{op} {half} frames"]["peak_rss_gb"]
            b = rows[f"{op} {args.frames} frames"]["peak_rss_gb"]
            print(
                f"{op}: peak {args.frames} / {half} frames: {b / a:.3f}; "
                f"em-restore / baseline: {b / base:.3f}"
            )
            rows["ratios"][op] = {
                "peak_full_over_half": round(b / a, 3),
                "peak_over_baseline": round(b / base, 3),
            }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
