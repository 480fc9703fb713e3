"""Burst deblurring on held-out simulated streams: network vs classical vs mean vs best frame.

Held-out set: windows of ``--frames`` frames from simulated moving-stage TEM streams
(:func:`em_restore.backend.models.burst.simulated_window`: random specimens of every
kind, 5–300 e⁻/px per frame, 1–12 px of motion per frame along an irregular path,
random optical blur and detector), drawn with seeds the training never used. Every
method sees the same registered window (:func:`em_restore.backend.burst.align_window`)
and is scored against the same truth: the noise-free middle frame a stopped stage
would have recorded (optical blur kept, no motion blur), in ADU, PSNR with the
truth's data range, SSIM.

Rows, in one run:

* ``best single frame``: for each window the registered frame with the highest PSNR
  (an oracle: it knows the truth);
* ``registered mean``: :func:`~em_restore.backend.burst.fuse_mean`;
* ``fba``: Fourier burst accumulation, :func:`~em_restore.backend.burst.fuse_fba`;
* ``classical``: multi-frame Wiener with the registration's motion kernels,
  :func:`~em_restore.backend.burst.fuse_wiener` (the method's baseline);
* ``network``: the bundled ``em-burst`` model.

Then the time per output frame at 1024² (registration + fusion) for each method on
this machine's CPU. Run from the repository root::

    .venv/bin/python benchmarks/bench_burst.py [--windows 48] [--json build/bench_burst.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from em_restore.backend import burst as B
from em_restore.backend import simulate as sim
from em_restore.backend.metrics import compare
from em_restore.backend.models import load_model
from em_restore.backend.models.burst import BurstRecipe, predict_burst, simulated_window

SEED = 7_000_001  # the training draws from seed 20261121: no overlap


def psnr(x: np.ndarray, truth: np.ndarray) -> float:
    r = float(np.ptp(truth)) or 1.0
    return 10 * math.log10(r * r / float(np.mean((x - truth) ** 2)))


def evaluate(model, n_windows: int, size: int, frames: int) -> dict:
    recipe = BurstRecipe(size=size, frames=frames)
    methods = ("best single frame", "registered mean", "fba", "classical", "network")
    scores = {m: [] for m in methods}
    ssims = {m: [] for m in methods}
    reg_err, doses = [], []
    for i in range(n_windows):
        aligned, truth, info = simulated_window(np.random.default_rng([SEED, i]), recipe)
        doses.append(info["dose"])
        err = np.hypot(*(aligned.shifts - info["offsets"]).T)
        reg_err.extend(err[np.arange(frames) != aligned.reference].tolist())
        singles = [psnr(f, truth) for f in aligned.frames]
        best = int(np.argmax(singles))
        outs = {
            "best single frame": aligned.frames[best],
            "registered mean": B.fuse_mean(aligned),
            "fba": B.fuse_fba(aligned),
            "classical": B.fuse_wiener(aligned),
            "network": predict_burst(model, aligned),
        }
        for m, out in outs.items():
            scores[m].append(psnr(np.asarray(out, np.float64), truth))
            ssims[m].append(compare(np.asarray(out, np.float64), truth)["ssim"])
        print(
            f"window {i:3d} {info['kind']:<13} dose {info['dose']:6.1f} speed {info['speed']:4.1f}"
            + "".join(f"  {m.split()[0][:7]} {scores[m][-1]:6.2f}" for m in methods),
            flush=True,
        )
    doses = np.array(doses)
    lo = doses <= np.median(doses)
    table = {
        m: {
            "psnr_mean": float(np.mean(scores[m])),
            "psnr_median": float(np.median(scores[m])),
            "psnr_mean_low_dose_half": float(np.mean(np.array(scores[m])[lo])),
            "psnr_mean_high_dose_half": float(np.mean(np.array(scores[m])[~lo])),
            "ssim_mean": float(np.mean(ssims[m])),
        }
        for m in methods
    }
    net, cls, single = (np.array(scores[m]) for m in ("network", "classical", "best single frame"))
    return {
        "windows": n_windows,
        "size": size,
        "frames": frames,
        "methods": table,
        "network_minus_best_single_db": float(np.mean(net - single)),
        "network_minus_classical_db": float(np.mean(net - cls)),
        "network_beats_classical": f"{int(np.sum(net > cls))}/{n_windows}",
        "registration_error_px": {
            "median": float(np.median(reg_err)),
            "p90": float(np.percentile(reg_err, 90)),
        },
        "median_dose": float(np.median(doses)),
    }


def runtime(model, size: int, frames: int, repeats: int) -> dict:
    g = np.random.default_rng([SEED, 10_000])
    spec, _ = sim.random_specimen((size + 160, size + 160), rng=g, kinds=("tissue",))
    noisy, _, _ = sim.moving_stage_stream(
        spec, n_frames=frames, frame_shape=(size, size), velocity_px_per_frame=(3.0, 12.0), rng=g
    )
    noisy = noisy.astype(np.float64)
    timings: dict[str, list[float]] = {"registration": [], "mean": [], "fba": [], "classical": []}
    timings["network"] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        aligned = B.align_window(noisy)
        timings["registration"].append(time.perf_counter() - t0)
        for name, fn in (
            ("mean", B.fuse_mean),
            ("fba", B.fuse_fba),
            ("classical", B.fuse_wiener),
            ("network", lambda a: predict_burst(model, a)),
        ):
            t0 = time.perf_counter()
            fn(aligned)
            timings[name].append(time.perf_counter() - t0)
    reg = float(np.median(timings["registration"]))
    out = {"size": size, "frames": frames, "threads": torch.get_num_threads()}
    out["registration_ms"] = round(1000 * reg, 1)
    for name in ("mean", "fba", "classical", "network"):
        fuse = float(np.median(timings[name]))
        out[f"{name}_ms_per_output_frame"] = round(1000 * (reg + fuse), 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=48)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--model", default="em-burst")
    ap.add_argument("--runtime-size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    model = load_model(args.model, device="cpu")
    print(f"model {model.name} sha256 {model.sha256[:12]}")
    result = {"model": model.name, "sha256": model.sha256}
    result["quality"] = evaluate(model, args.windows, args.size, args.frames)
    q = result["quality"]
    print()
    print(f"{'method':<20} {'PSNR mean':>10} {'median':>8} {'low dose':>9} {'high':>7} {'SSIM':>6}")
    for m, row in q["methods"].items():
        print(
            f"{m:<20} {row['psnr_mean']:10.2f} {row['psnr_median']:8.2f} "
            f"{row['psnr_mean_low_dose_half']:9.2f} {row['psnr_mean_high_dose_half']:7.2f} "
            f"{row['ssim_mean']:6.3f}"
        )
    print(
        f"network - best single frame: {q['network_minus_best_single_db']:+.2f} dB (target >= 1.5)"
    )
    print(
        f"network - classical:         {q['network_minus_classical_db']:+.2f} dB (target >= 0.5), "
        f"better on {q['network_beats_classical']} windows"
    )
    print(
        f"registration error: median {q['registration_error_px']['median']:.2f} px, "
        f"90th percentile {q['registration_error_px']['p90']:.2f} px"
    )
    if args.runtime_size:
        rt = runtime(model, args.runtime_size, args.frames, args.repeats)
        result["runtime"] = rt
        print(
            f"\nper output frame at {rt['size']}², {rt['frames']} frames, {rt['threads']} threads "
            f"(registration {rt['registration_ms']:.0f} ms included):"
        )
        for name in ("mean", "fba", "classical", "network"):
            print(f"  {name:<10} {rt[f'{name}_ms_per_output_frame']:8.0f} ms")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
