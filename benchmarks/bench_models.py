"""Deep denoisers against ``classical`` and against the ResNet-18 U-Net: quality and speed.

Held-out simulated set (seeds disjoint from training; ``em_restore.backend.simulate``):
TEM, STEM and SEM × doses 1, 3, 10, 30, 100 e⁻/px × 2 random specimens
(nanoparticles, vesicles, grids, tissue, lattices) with random detectors, blur and
defects for the modality (``random_acquisition_config``), 256² px: 30 images.
Truth = the noise-free expectation in ADU; PSNR/SSIM with ``data_range`` = the
truth's range.

Methods: ``classical`` (automatic, ``plan_denoise(..., modality=...)``), the bundled
default model (``em-denoise-fast``) and the reference U-Net with a ResNet-18 encoder
trained by the same recipe (``build/models/unet-resnet18``, made by
``scripts/train_default_models.py --which reference``; skipped when absent).

Speed: median end-to-end ``predict_frame`` time of a 512² frame (normalise, pad,
predict, undo) in-process on this machine's CPU, and ms per megapixel at 2048²,
for both networks, with the ratio; on a GPU, if one is present, the same for a 512²
frame including host↔device transfers.

Prints, never asserts. ``--quick``: 6 images, 5 timing repeats.

    .venv/bin/python benchmarks/bench_models.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity

from em_restore.backend import denoise as dn
from em_restore.backend import simulate as sim
from em_restore.backend.models import default_model_name, load_model, predict_frame

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "build" / "models" / "unet-resnet18"
DOSES = (1.0, 3.0, 10.0, 30.0, 100.0)


def held_out(size: int, quick: bool):
    plan = [(m, d, r) for m in ("tem", "stem", "sem") for d in DOSES for r in range(2)]
    if quick:
        plan = [(m, d, 0) for m in ("tem", "stem", "sem") for d in (3.0, 30.0)]
    items = []
    for k, (modality, dose, rep) in enumerate(plan):
        g = np.random.default_rng([777, k, rep])
        clean, info = sim.random_specimen((size, size), rng=g)
        cfg = sim.random_acquisition_config(g, modality=modality).replace(dose=dose)
        noisy, truth = sim.simulate_acquisition(clean, cfg, rng=g, return_expected=True)
        items.append((f"{modality} {info.kind} {dose:g}e", modality, dose, noisy, truth))
    return items


def metrics(x, truth) -> tuple[float, float]:
    r = float(np.ptp(truth)) or 1.0
    x = np.asarray(x, dtype=np.float64)
    mse = float(np.mean((x - truth) ** 2))
    return 10 * math.log10(r * r / mse), float(structural_similarity(truth, x, data_range=r))


def quality(models: dict, size: int, quick: bool, classical: bool = True) -> None:
    rows = []
    labels = ["noisy", *(["classical"] if classical else []), *models]
    for name, modality, dose, noisy, truth in held_out(size, quick):
        row = {"name": name, "modality": modality, "dose": dose, "noisy": metrics(noisy, truth)}
        if classical:
            t0 = time.perf_counter()
            row["classical"] = metrics(dn.denoise(noisy, "classical", modality=modality), truth)
            row["t_classical"] = time.perf_counter() - t0
        for label, model in models.items():
            row[label] = metrics(predict_frame(model, noisy), truth)
        rows.append(row)
        shown = "  ".join(f"{k} {row[k][0]:6.2f}" for k in labels)
        print(f"{name:<34} {shown}", flush=True)
    print("\n| subset | images | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    subsets = [
        ("dose ≤ 10 e⁻/px", lambda r: r["dose"] <= 10),
        ("dose > 10 e⁻/px", lambda r: r["dose"] > 10),
        *[(m.upper(), lambda r, m=m: r["modality"] == m) for m in ("tem", "stem", "sem")],
        ("all", lambda r: True),
    ]
    for title, keep in subsets:
        sel = [r for r in rows if keep(r)]
        if not sel:
            continue
        cells = [
            f"{np.mean([r[k][0] for r in sel]):.2f} dB / {np.mean([r[k][1] for r in sel]):.3f}"
            for k in labels
        ]
        print(f"| {title} | {len(sel)} | " + " | ".join(cells) + " |")
    low = [r for r in rows if r["dose"] <= 10]
    for label in models if classical else ():
        gain = np.mean([r[label][0] - r["classical"][0] for r in low]) if low else float("nan")
        wins = sum(r[label][0] > r["classical"][0] for r in rows)
        print(
            f"{label}: mean gain over classical at ≤ 10 e⁻/px {gain:+.2f} dB; "
            f"beats classical on {wins}/{len(rows)} images"
        )
    if "em-denoise-fast" in models and "unet-resnet18" in models:
        d = np.mean([r["em-denoise-fast"][0] - r["unet-resnet18"][0] for r in rows])
        dl = np.mean([r["em-denoise-fast"][0] - r["unet-resnet18"][0] for r in low])
        print(f"em-denoise-fast − unet-resnet18: {d:+.2f} dB (all), {dl:+.2f} dB (≤ 10 e⁻/px)")
    if classical:
        print(f"classical time per 256² image: {np.mean([r['t_classical'] for r in rows]):.1f} s")


def clock(fn, repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def speed(paths: dict, repeats: int) -> None:
    rng = np.random.default_rng(0)
    f512 = rng.poisson(10, (512, 512)).astype(np.uint16)
    f2k = rng.poisson(10, (2048, 2048)).astype(np.uint16)
    print(f"\nCPU: {torch.get_num_threads()} threads, torch {torch.__version__}")
    cpu = {}
    for label, path in paths.items():
        m = load_model(path, device="cpu")
        t512 = clock(lambda m=m: predict_frame(m, f512), repeats)
        t2k = clock(lambda m=m: predict_frame(m, f2k), max(1, repeats // 4))
        cpu[label] = t512
        print(f"{label:<18} 512²: {1e3 * t512:7.1f} ms   2048²: {1e3 * t2k / 4.194304:7.1f} ms/MP")
    if len(cpu) == 2:
        (fast, a), (ref, b) = cpu.items()
        print(f"speed-up of {fast} over {ref} at 512²: {b / a:.1f}×")
    if torch.cuda.is_available():
        print(f"\nGPU: {torch.cuda.get_device_name()}")
        for label, path in paths.items():
            m = load_model(path, device="cuda")

            def run(m=m):
                predict_frame(m, f512)
                torch.cuda.synchronize()

            print(f"{label:<18} 512² incl. transfers: {1e3 * clock(run, 50):6.2f} ms (paper: 8 ms)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--no-quality", action="store_true")
    ap.add_argument(
        "--no-classical",
        action="store_true",
        help="networks only (the classical denoiser takes ~15 s per image)",
    )
    ap.add_argument(
        "--reference",
        type=Path,
        default=REFERENCE,
        help=f"the reference U-Net's model folder (default: {REFERENCE.relative_to(ROOT)})",
    )
    args = ap.parse_args()
    paths = {"em-denoise-fast": default_model_name("tem")}
    ref = args.reference
    if (ref / "config.json").is_file():
        training = load_model(ref, device="cpu").config.training or {}
        if training.get("complete") is False:
            print(
                f"(reference at {ref} is an interrupted run, best step "
                f"{training.get('best_step')} of {training['config']['steps']}: "
                "resume it with scripts/train_default_models.py --which reference --resume)"
            )
        paths["unet-resnet18"] = str(ref)
    else:
        print(
            f"(reference U-Net not found at {ref}: run "
            "scripts/train_default_models.py --which reference)"
        )
    models = {k: load_model(v, device="cpu") for k, v in paths.items()}
    if not args.no_quality:
        quality(models, args.size, args.quick, classical=not args.no_classical)
    speed(paths, 5 if args.quick else 20)


if __name__ == "__main__":
    main()
