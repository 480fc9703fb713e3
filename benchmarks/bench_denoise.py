"""Denoising quality and speed: automatic ``classical`` against oracle-tuned methods.

Synthetic set (fixed seeds, ``em_restore.backend.simulate``), 256² images:

* TEM, counting camera (``AcquisitionConfig.low_dose_tem``), doses 1, 5, 20, 100 e⁻/px,
  specimens nanoparticles, tissue_texture, vesicles;
* STEM HAADF (``AcquisitionConfig.stem``: probe blur, scan jitter, line noise), doses
  5, 20, 100 e⁻/px, specimens atomic_lattice, dark-field nanoparticles, tissue_texture.

Ground truth = the noise-free expectation in ADU (``return_expected=True``); PSNR and
SSIM use ``data_range`` = that truth's range. Per image: the noisy input; every method
with its **oracle** strength (grid search with the truth over the calibration grid
and its geometric midpoints); ``classical`` (no truth: noise estimated from the
image, method and strength by the self-supervised calibration); the gap oracle-best −
classical in dB. Then timings in ms per megapixel of each of our filters beside
scikit-image's own function on the same data, and plan / apply times on a 512² frame.

Prints, never asserts. ``--quick``: 4 images, no timings.

Run from the repository root::

    .venv/bin/python benchmarks/bench_denoise.py [--quick] [--size 256]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from em_restore.backend import denoise as dn
from em_restore.backend import simulate as sim

METHODS = ("gaussian", "median", "nlm", "tv", "wavelet", "bm3d")


def specimen(kind: str, size: int, seed: int) -> np.ndarray:
    shape = (size, size)
    if kind == "nanoparticles":
        return sim.nanoparticles(shape, pixel_size_nm=0.5, rng=seed)[0]
    if kind == "nanoparticles_df":
        return sim.nanoparticles(shape, pixel_size_nm=0.5, contrast="dark", rng=seed)[0]
    if kind == "tissue_texture":
        return sim.tissue_texture(shape, rng=seed)[0]
    if kind == "vesicles":
        return sim.vesicles(shape, pixel_size_nm=1.0, rng=seed)[0]
    if kind == "atomic_lattice":
        return sim.atomic_lattice(shape, rng=seed)[0]
    raise ValueError(kind)


def dataset(size: int, quick: bool):
    """(name, modality, noisy, truth) with fixed seeds."""
    items = []
    if quick:
        plan = [
            ("tem", "nanoparticles", 5),
            ("tem", "tissue_texture", 20),
            ("stem", "atomic_lattice", 20),
            ("stem", "tissue_texture", 5),
        ]
    else:
        plan = [
            ("tem", kind, dose)
            for kind in ("nanoparticles", "tissue_texture", "vesicles")
            for dose in (1, 5, 20, 100)
        ] + [
            ("stem", kind, dose)
            for kind in ("atomic_lattice", "nanoparticles_df", "tissue_texture")
            for dose in (5, 20, 100)
        ]
    for k, (modality, kind, dose) in enumerate(plan):
        clean = specimen(kind, size, seed=100 + k)
        if modality == "tem":
            config = sim.AcquisitionConfig.low_dose_tem(dose=float(dose))
        else:
            config = sim.AcquisitionConfig.stem(dose=float(dose))
        noisy, truth = sim.simulate_acquisition(clean, config, rng=200 + k, return_expected=True)
        items.append((f"{modality} {kind} {dose:g}e", modality, noisy, truth))
    return items


def metrics(x: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    rng = float(np.ptp(truth))
    x = np.asarray(x, dtype=np.float64)
    return (
        float(peak_signal_noise_ratio(truth, x, data_range=rng)),
        float(structural_similarity(truth, x, data_range=rng)),
    )


def oracle_grid(method: str) -> list:
    grid = sorted(dn._GRID[method])
    if method == "median":
        return grid
    mids = [round(math.sqrt(a * b), 4) for a, b in itertools.pairwise(grid)]
    return sorted({*grid, *mids})


def run_image(name, modality, noisy, truth) -> dict:
    t0 = time.perf_counter()
    plan = dn.plan_denoise(noisy, "classical", modality=modality)
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    auto = dn.apply_plan(noisy, plan)
    t_apply = time.perf_counter() - t0
    row = {
        "name": name,
        "modality": modality,
        "noisy": metrics(noisy, truth),
        "classical": metrics(auto, truth),
        "chosen": plan.calibration.get("chosen", plan.method),
        "t_plan": t_plan,
        "t_apply": t_apply,
        "noise": plan.noise,
    }
    param = dn.STRENGTH_PARAM
    for method in METHODS:
        best = None
        for s in oracle_grid(method):
            p = dn.DenoisePlan(
                method,
                {**plan_params(plan, method), param[method]: s},
                plan.noise,
                plan.stabilise,
                method,
            )
            psnr, ssim = metrics(dn.apply_plan(noisy, p), truth)
            if best is None or psnr > best[1]:
                best = (s, psnr, ssim)
        row[method] = best
    best_method = max(METHODS, key=lambda m: row[m][1])
    row["oracle"] = (best_method, *row[best_method])
    row["gap"] = row["oracle"][2] - row["classical"][0]
    return row


def plan_params(plan: dn.DenoisePlan, method: str) -> dict:
    """The classical plan's common settings (noise s.d., despiking) with ``method``'s defaults."""
    common = {k: v for k, v in plan.params.items() if k in (*dn._COMMON, "sigma")}
    return {**dn._FIXED[method], **common}


def summary(rows: list[dict], label: str) -> None:
    if not rows:
        return
    gaps = np.array([r["gap"] for r in rows])
    print(f"\n## {label}: {len(rows)} images")
    print("| method | mean PSNR (dB) | mean SSIM |")
    print("|---|---|---|")
    print(
        f"| noisy | {np.mean([r['noisy'][0] for r in rows]):.2f} | "
        f"{np.mean([r['noisy'][1] for r in rows]):.3f} |"
    )
    for m in METHODS:
        print(
            f"| {m} (oracle strength) | {np.mean([r[m][1] for r in rows]):.2f} | "
            f"{np.mean([r[m][2] for r in rows]):.3f} |"
        )
    print(
        f"| oracle best per image | {np.mean([r['oracle'][2] for r in rows]):.2f} | "
        f"{np.mean([r['oracle'][3] for r in rows]):.3f} |"
    )
    print(
        f"| **classical (no ground truth)** | {np.mean([r['classical'][0] for r in rows]):.2f} | "
        f"{np.mean([r['classical'][1] for r in rows]):.3f} |"
    )
    print(
        f"gap oracle-best − classical: mean {gaps.mean():.2f} dB, worst {gaps.max():.2f} dB, "
        f"within 0.5 dB: {np.mean(gaps <= 0.5):.0%} ({int(np.sum(gaps <= 0.5))}/{gaps.size})"
    )


def timings(size: int = 512, repeats: int = 1) -> None:
    from skimage.filters import gaussian as sk_gaussian
    from skimage.filters import median as sk_median
    from skimage.morphology import footprint_rectangle
    from skimage.restoration import (
        denoise_nl_means,
        denoise_tv_chambolle,
        denoise_wavelet,
    )

    from em_restore.backend import filters
    from em_restore.backend.bm3d import bm3d

    clean = specimen("tissue_texture", size, seed=7)
    noisy = sim.simulate_acquisition(clean, sim.AcquisitionConfig.low_dose_tem(dose=20), rng=8)
    plan = dn.plan_denoise(noisy, "gaussian", modality="tem", params={"sigma_px": 1.0})
    z = dn._to_work(noisy.astype(np.float64), plan)
    mp = z.size / 1e6

    def clock(fn) -> float:
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return 1e3 * best / mp

    try:
        square = footprint_rectangle((5, 5))
    except Exception:  # older scikit-image
        square = np.ones((5, 5), bool)
    pairs = [
        (
            "gaussian σ=1.5 px",
            lambda: filters.gaussian(z, sigma_px=1.5),
            lambda: sk_gaussian(z, sigma=1.5, mode="reflect", preserve_range=True),
        ),
        (
            "median 5×5",
            lambda: filters.median(z, size=5, sigma=1.0),
            lambda: sk_median(z, square, mode="reflect"),
        ),
        (
            "NLM 5×5 patches, ±6 px",
            lambda: filters.nlm(z, sigma=1.0, h=0.8),
            lambda: denoise_nl_means(
                z, patch_size=5, patch_distance=6, h=0.8, sigma=1.0, fast_mode=True
            ),
        ),
        (
            "TV",
            lambda: filters.tv(z, weight=1.0, sigma=1.0),
            lambda: denoise_tv_chambolle(z, weight=1.0),
        ),
        (
            "wavelet db2, 3 levels",
            lambda: filters.wavelet(z, sigma=1.0),
            lambda: denoise_wavelet(
                z, sigma=1.0, wavelet="db2", wavelet_levels=3, mode="soft", method="BayesShrink"
            ),
        ),
        ("BM3D (no scikit-image equivalent)", lambda: bm3d(z, sigma=1.0), None),
    ]
    print(f"\n## Speed on a {size}² float64 frame (ms per megapixel, best of {repeats})")
    print("| filter | em_restore | scikit-image | ratio |")
    print("|---|---|---|---|")
    for name, ours, theirs in pairs:
        a = clock(ours)
        if theirs is None:
            print(f"| {name} | {a:.0f} | – | – |")
            continue
        b = clock(theirs)
        print(f"| {name} | {a:.0f} | {b:.0f} | {a / b:.2f} |")

    t0 = time.perf_counter()
    plan = dn.plan_denoise(noisy, "classical", modality="tem")
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    dn.apply_plan(noisy, plan)
    t_apply = time.perf_counter() - t0
    print(
        f"\nplan_denoise(classical) on {size}²: {t_plan:.1f} s "
        f"(chose {plan.calibration['chosen']}); apply_plan: {t_apply:.2f} s"
    )
    stem = sim.simulate_acquisition(
        specimen("atomic_lattice", size, seed=9), sim.AcquisitionConfig.stem(dose=20), rng=10
    )
    t0 = time.perf_counter()
    plan = dn.plan_denoise(stem, "classical", modality="stem")
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    dn.apply_plan(stem, plan)
    t_apply = time.perf_counter() - t0
    print(
        f"plan_denoise(classical) on a {size}² STEM frame: {t_plan:.1f} s "
        f"(chose {plan.calibration['chosen']}); apply_plan: {t_apply:.2f} s"
    )
    for method in METHODS:
        t0 = time.perf_counter()
        p = dn.plan_denoise(noisy, method, modality="tem")
        t_plan = time.perf_counter() - t0
        t0 = time.perf_counter()
        dn.apply_plan(noisy, p)
        print(f"plan_denoise({method}) {t_plan:.1f} s, apply_plan {time.perf_counter() - t0:.2f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 images, no timings")
    parser.add_argument("--size", type=int, default=256, help="image side (default 256)")
    parser.add_argument("--no-timings", action="store_true")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    rows = []
    print(
        "| image | noisy PSNR/SSIM | "
        + " | ".join(METHODS)
        + " | classical | chosen | gap dB | plan s |"
    )
    print("|---|---|" + "---|" * len(METHODS) + "---|---|---|---|")
    for name, modality, noisy, truth in dataset(args.size, args.quick):
        r = run_image(name, modality, noisy, truth)
        rows.append(r)
        cells = " | ".join(f"{r[m][1]:.2f} ({r[m][0]:g})" for m in METHODS)
        print(
            f"| {name} | {r['noisy'][0]:.2f}/{r['noisy'][1]:.3f} | {cells} | "
            f"{r['classical'][0]:.2f}/{r['classical'][1]:.3f} | {r['chosen']} | "
            f"{r['gap']:+.2f} | {r['t_plan']:.1f} |",
            flush=True,
        )
    for modality in ("tem", "stem"):
        summary([r for r in rows if r["modality"] == modality], modality.upper())
    summary(rows, "all")
    print(
        f"\nmean plan time {np.mean([r['t_plan'] for r in rows]):.1f} s, "
        f"apply {np.mean([r['t_apply'] for r in rows]):.2f} s per {args.size}² image"
    )
    if not (args.quick or args.no_timings):
        timings()
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
