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
reference, the automatic classical denoiser, in the same run. These two train from
scratch (``from_scratch=True``, a 32-channel ``fast_denoiser``).

* **finetune**: fine-tuning, the default of ``em-restore train``, on data the bundled
  model never saw. The specimen is a mat of curved fibres, 1–3.5 px thick, on a smooth
  support. That kind is not among the bundled model's training kinds. The camera is an
  integrating one whose scintillator spreads each electron's light over a Gaussian of
  1.2 px *after* the shot noise, so the shot noise is correlated between pixels. Its
  read noise is correlated too (1 px). The simulator's cameras have neither: their
  blur acts before the shot noise, and their read noise is white. The dose is 12 e⁻/px,
  the gain 6 ADU/e⁻ and the offset 400 ADU. There are 6 training pairs, each with a
  2000 e⁻/px twin misregistered by up to ±2 px, and a step budget of ``--ft-steps``
  (1500 steps of 8 × 64² crops, about 3 minutes on the quiet 2-core CPU). The bench
  reports, on held-out images of the same kind: the input, the bundled model, a
  Gaussian whose sigma is chosen per image with the truth (the oracle), the
  fine-tuned model, and the same network trained from scratch on the same steps.

Run from the repository root::

    .venv/bin/python benchmarks/bench_train.py [--case all|paired|self|finetune]
        [--minutes 2.2] [--ft-steps 1500] [--json build/bench_train.json]
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
from scipy import ndimage
from scipy.optimize import minimize_scalar

from em_restore.backend import denoise as dn
from em_restore.backend import simulate as sim
from em_restore.backend.models import default_model_name, load_model, predict_frame
from em_restore.backend.models.datasets import NoisyData, PairedData
from em_restore.backend.models.fit import FitConfig, iter_train_model
from em_restore.backend.models.training import run_training

SIZE = 256
LOW, HIGH = 10.0, 1000.0
# finetune: the camera the bundled model never saw (module doc)
FT_DOSE, FT_HIGH = 12.0, 2000.0
FT_GAIN, FT_OFFSET, FT_SPREAD_PX, FT_READ_ADU, FT_READ_CORR_PX = 6.0, 400.0, 1.2, 6.0, 1.0


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


def fibre_mat(gen: np.random.Generator, size: int) -> np.ndarray:
    """Transmission of 14-25 curved fibres (1-3.5 px thick) over a smooth support."""
    thick = np.zeros((size, size))
    for _ in range(int(gen.integers(14, 26))):
        n = 6 * size
        heading = gen.uniform(0, 2 * math.pi) + np.cumsum(gen.normal(0, 0.02, n))
        y = gen.uniform(0, size) + np.cumsum(0.5 * np.sin(heading))
        x = gen.uniform(0, size) + np.cumsum(0.5 * np.cos(heading))
        inside = (y >= 0) & (y < size) & (x >= 0) & (x < size)
        line = np.zeros((size, size))
        line[y[inside].astype(int), x[inside].astype(int)] = 1.0
        fibre = ndimage.gaussian_filter(line, gen.uniform(1.0, 3.5))
        if fibre.max() > 0:
            thick += gen.uniform(0.4, 1.2) * fibre / fibre.max()
    support = ndimage.gaussian_filter(gen.standard_normal((size, size)), 12.0)
    support /= support.std() or 1.0
    return np.clip(np.exp(-0.8 * thick) * (1 + 0.06 * support), 0.05, 1.0)


def spread_camera(t: np.ndarray, dose: float, gen: np.random.Generator):
    """``(recording, noise-free expectation)``: light spread after the shot noise."""
    electrons = gen.poisson(dose * t).astype(float)
    read = ndimage.gaussian_filter(gen.standard_normal(t.shape), FT_READ_CORR_PX)
    read *= FT_READ_ADU / read.std()
    a = FT_GAIN * ndimage.gaussian_filter(electrons, FT_SPREAD_PX) + FT_OFFSET + read
    expected = FT_GAIN * ndimage.gaussian_filter(dose * t, FT_SPREAD_PX) + FT_OFFSET
    return np.clip(np.round(a), 0, 65535), expected


def unseen_recordings(seed: int, n: int):
    """``(noisy, high_dose_misregistered, truth)`` of the finetune case (module doc)."""
    noisy, high, truth = [], [], []
    for i in range(n):
        gen = np.random.default_rng([seed, 77, i])
        spec = fibre_mat(gen, SIZE + 8)
        here = sim.subpixel_crop(spec, (4.0, 4.0), (SIZE, SIZE))
        there = sim.subpixel_crop(spec, tuple(4.0 + gen.uniform(-2, 2, 2)), (SIZE, SIZE))
        x, t = spread_camera(np.maximum(here, 0), FT_DOSE, gen)
        h, _ = spread_camera(np.maximum(there, 0), FT_HIGH, gen)
        noisy.append(x)
        high.append(h)
        truth.append(t)
    return noisy, high, truth


def oracle_gaussian(x: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """``(PSNR, sigma)`` of the Gaussian filter whose sigma the truth picks."""
    best = minimize_scalar(
        lambda s: -psnr(ndimage.gaussian_filter(x, s), truth),
        bounds=(0.3, 8.0),
        method="bounded",
        options={"xatol": 0.01},
    )
    return -float(best.fun), float(best.x)


def model_psnr(model, test) -> list[float]:
    noisy, _, truth = test
    return [psnr(predict_frame(model, x), t) for x, t in zip(noisy, truth, strict=True)]


def finetune_case(args) -> dict:
    """Fine-tuned vs bundled, oracle Gaussian and from scratch on unseen data."""
    train = unseen_recordings(11, 6)
    test = unseen_recordings(12, args.test)
    bundled = load_model(default_model_name("tem"), device="cpu")
    rows = {
        "input_psnr_db": float(
            np.mean([psnr(x, t) for x, t in zip(test[0], test[2], strict=True)])
        ),
        "bundled_psnr_db": float(np.mean(model_psnr(bundled, test))),
    }
    gauss = [oracle_gaussian(x, t) for x, t in zip(test[0], test[2], strict=True)]
    rows["oracle_gaussian_psnr_db"] = float(np.mean([g[0] for g in gauss]))
    rows["oracle_gaussian_sigma_px"] = [round(g[1], 2) for g in gauss]
    steps_per_epoch = 50
    epochs = max(1, round(args.ft_steps / steps_per_epoch))
    budget = dict(epochs=epochs, steps_per_epoch=steps_per_epoch, batch=8, patch=64)
    runs = {
        "fine_tuned": FitConfig(**budget),
        "from_scratch": FitConfig(
            **budget,
            from_scratch=True,
            architecture=bundled.config.architecture,
            arch_params=bundled.config.arch_params,
        ),
    }
    for label, cfg in runs.items():
        t0 = time.perf_counter()
        data = PairedData(train[0], train[1])
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / label
            result = run_training(iter_train_model(cfg, data, folder))
            seconds = time.perf_counter() - t0
            scores = model_psnr(load_model(folder, device="cpu"), test)
        rows[label] = {
            "psnr_db": float(np.mean(scores)),
            "lr": result.config.lr,
            "steps": len(result.history) * steps_per_epoch,
            "best_epoch": result.best_epoch,
            "val_psnr_db": result.best_psnr,
            "start_val_psnr_db": None if result.start is None else result.start["val_psnr_db"],
            "train_seconds": round(seconds, 1),
            "per_image_psnr_db": [round(v, 2) for v in scores],
        }
    return rows


def print_finetune(rows: dict) -> None:
    tuned, scratch = rows["fine_tuned"], rows["from_scratch"]
    print(
        f"finetune (unseen camera and specimen, 6 pairs, {tuned['steps']} steps):\n"
        f"  input            {rows['input_psnr_db']:6.2f} dB\n"
        f"  bundled model    {rows['bundled_psnr_db']:6.2f} dB\n"
        f"  oracle Gaussian  {rows['oracle_gaussian_psnr_db']:6.2f} dB "
        f"(sigma {min(rows['oracle_gaussian_sigma_px']):.2f}-"
        f"{max(rows['oracle_gaussian_sigma_px']):.2f} px)"
    )
    for label, r in (("fine-tuned", tuned), ("from scratch", scratch)):
        print(
            f"  {label:15s}  {r['psnr_db']:6.2f} dB (lr {r['lr']:g}, best epoch "
            f"{r['best_epoch']}, {r['train_seconds']:.0f} s incl. data)"
        )
    print(
        f"  fine-tuned vs bundled {tuned['psnr_db'] - rows['bundled_psnr_db']:+.2f} dB, "
        f"vs oracle Gaussian {tuned['psnr_db'] - rows['oracle_gaussian_psnr_db']:+.2f} dB, "
        f"vs from scratch {tuned['psnr_db'] - scratch['psnr_db']:+.2f} dB"
    )


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
    ap.add_argument("--case", choices=("all", "paired", "self", "finetune"), default="all")
    ap.add_argument("--ft-steps", type=int, default=1500, help="finetune: training steps")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = {}
    if args.case in ("all", "finetune"):
        rows["finetune"] = finetune_case(args)
        print_finetune(rows["finetune"])
    if args.case != "finetune":
        rows.update(scratch_cases(args))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


def scratch_cases(args) -> dict:
    """The paired and self-supervised cases, trained from scratch (module doc)."""
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
        from_scratch=True,
    )
    rows = {"classical_psnr_db": round(classical, 2)}
    for mode in [m for m in ("paired", "self") if args.case in ("all", m)]:
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
    return rows


if __name__ == "__main__":
    main()
