"""Train-your-own on this CPU: paired and self-supervised denoisers in minutes.

The "user data" are simulated low-dose TEM recordings (direct detector in counting
mode, 10 e⁻/px, :meth:`AcquisitionConfig.low_dose_tem`) of random specimens of
every kind, 256² px:

* **paired**: each noisy image comes with a high-dose recording of the same area
  (1000 e⁻/px, its own noise, dead pixels and spikes) that is misregistered by a
  random sub-pixel shift of up to ±2 px, so registration and intensity matching
  are exercised as with real short/long exposure pairs;
* **self**: the same noisy images alone (Neighbor2Neighbor).

Each mode trains ``fast_denoiser`` with :func:`em_restore.backend.models.fit.iter_train_model`
for at most ``--minutes`` of wall-clock time, writes a model folder, reloads it
with :func:`load_model` and denoises held-out images (other specimens, other
seeds) with :func:`predict_frame`. Scores: PSNR against the noise-free expectation
of the low-dose recording (its data range), for the input, the output and, for
reference, the automatic classical denoiser, in the same run. Run from the repository root::

    .venv/bin/python benchmarks/bench_train.py [--minutes 2.2] [--json build/bench_train.json]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from em_restore.backend import denoise as dn
from em_restore.backend import simulate as sim
from em_restore.backend.models import load_model, predict_frame
from em_restore.backend.models.datasets import NoisyData, PairedData
from em_restore.backend.models.fit import FitConfig, iter_train_model
from em_restore.backend.models.training import run_training

SIZE = 256
LOW, HIGH = 10.0, 1000.0


def psnr(x: np.ndarray, truth: np.ndarray) -> float:
    r = float(np.ptp(truth)) or 1.0
    return 10 * math.log10(r * r / float(np.mean((x - truth) ** 2)))


def recordings(seed: int, n: int):
    """``(noisy, high_dose_misregistered, truth)`` lists for ``n`` specimens."""
    noisy, high, truth = [], [], []
    for i in range(n):
        gen = np.random.default_rng([seed, i])
        spec, _ = sim.random_specimen((SIZE + 8, SIZE + 8), rng=gen)
        here = sim.subpixel_crop(spec, (4.0, 4.0), (SIZE, SIZE))
        there = sim.subpixel_crop(spec, tuple(4.0 + gen.uniform(-2, 2, 2)), (SIZE, SIZE))
        x, t = sim.simulate_acquisition(
            np.maximum(here, 0),
            sim.AcquisitionConfig.low_dose_tem(dose=LOW),
            rng=gen,
            return_expected=True,
        )
        h = sim.simulate_acquisition(
            np.maximum(there, 0), sim.AcquisitionConfig.low_dose_tem(dose=HIGH), rng=gen
        )
        noisy.append(x.astype(np.float64))
        high.append(h.astype(np.float64))
        truth.append(t)
    return noisy, high, truth


def score(folder: Path, test) -> tuple[float, float, float]:
    """Mean PSNR of the input and the output, and the median per-image gain."""
    model = load_model(folder, device="cpu")
    noisy, _, truth = test
    before = [psnr(x, t) for x, t in zip(noisy, truth, strict=True)]
    after = [psnr(predict_frame(model, x), t) for x, t in zip(noisy, truth, strict=True)]
    gains = np.subtract(after, before)
    return float(np.mean(before)), float(np.mean(after)), float(np.median(gains))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=16, help="training images per mode")
    ap.add_argument("--test", type=int, default=8, help="held-out test images")
    ap.add_argument("--minutes", type=float, default=2.2, help="training time per mode")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    train = recordings(1, args.train)
    test = recordings(2, args.test)
    t0 = time.perf_counter()
    classical = float(
        np.mean(
            [
                psnr(dn.denoise(x, "classical", modality="tem"), t)
                for x, t in zip(test[0], test[2], strict=True)
            ]
        )
    )
    print(
        f"classical (automatic, for reference): {classical:6.2f} dB "
        f"({time.perf_counter() - t0:.0f} s for {args.test} images)"
    )
    cfg = FitConfig(
        arch_params={"channels": 32},
        epochs=96,
        steps_per_epoch=25,
        batch=8,
        patch=64,
        lr=2e-3,
        warmup=25,
        val_crop=128,
        max_minutes=args.minutes,
    )
    rows = {"classical_psnr_db": round(classical, 2)}
    for mode in ("paired", "self"):
        t0 = time.perf_counter()
        data = PairedData(train[0], train[1]) if mode == "paired" else NoisyData(train[0])
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / f"bench-{mode}"
            result = run_training(iter_train_model(cfg, data, folder))
            seconds = time.perf_counter() - t0
            before, after, median_gain = score(folder, test)
        rows[mode] = {
            "input_psnr_db": round(before, 2),
            "output_psnr_db": round(after, 2),
            "gain_db": round(after - before, 2),
            "median_gain_db": round(median_gain, 2),
            "epochs": len(result.history),
            "best_epoch": result.best_epoch,
            "train_seconds": round(seconds, 1),
            "stop_reason": result.stop_reason,
            "vs_classical_db": round(after - classical, 2),
        }
        print(
            f"{mode:7s} input {before:6.2f} dB -> output {after:6.2f} dB "
            f"(gain {after - before:+.2f} dB, median {median_gain:+.2f}; "
            f"{len(result.history)} epochs, best "
            f"{result.best_epoch}, {seconds:.0f} s incl. data; "
            f"{after - classical:+.2f} dB vs classical)"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
