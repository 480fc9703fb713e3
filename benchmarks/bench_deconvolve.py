"""Deconvolution quality and speed: blind two-stage pipeline against the true kernel.

Simulated set (fixed seeds, ``em_restore.backend.simulate``), 256² TEM images
(``AcquisitionConfig.low_dose_tem``: counting camera, X-ray spikes, dead pixels):

* specimens ``random_specimen(kinds=(kind,))`` cycling over nanoparticles, vesicles,
  tissue and grid (no atomic lattice: a lattice of Gaussian columns cannot be told
  apart from a Gaussian blur);
* blur families: Gaussian σ = 1, 2, 3 px; defocus disk radius 2, 3.5, 5 px; linear
  motion 5, 10, 15 px at varied angles;
* doses 10, 100, 1000 e⁻/px. The full run has every kernel at every dose (27 images);
  ``--quick`` 4 of them (same seeds).

Truth = the sharp noise-free expectation in ADU (the same specimen and dose with no
blur); input = the noisy blurred image. PSNR uses ``data_range`` = the truth's range.
Per image, in the same run:

* **input**: the noisy blurred image;
* **denoised**: stage 1 alone: the pipeline's default, the bundled TEM network
  (``plan_model(None, modality="tem")``), or with ``--denoise classical``
  ``plan_denoise(noisy, "classical", modality="tem")`` then ``apply_plan``; that plan
  is reused by both deconvolutions below;
* **blind**: ``plan_deconvolve(noisy, None, denoise=plan)`` then ``apply_deconv_plan``
  (kernel estimated from the image; RL-TV), with the kernel error
  ``kernel_error(plan.psf, true_kernel)`` (normalised L2, centres of mass aligned);
* **true-kernel RL**: the same pipeline given the true kernel (the baseline a blind
  method aims for);
* two references for the kernel error: the blind estimator (``estimate_kernel``)
  on the **noise-free** blurred image (the estimator's own bias), and the
  **oracle** ``fit_kernel(truth, noisy)``: the kernel fitted to the noisy frame by
  nonnegative least squares with the true sharp specimen known, i.e. what those
  counts support for a free-form kernel (noise, not the method, limits it); and
  the same oracle on the stage-1 output, ``fit_kernel(truth, denoised)``: the
  kernel the denoised frame still carries (the denoiser's own smoothing included).

The simulated input carries X-ray spikes (10 × dose) and dead pixels, which
dominate its PSNR at high dose: *blind − denoised* isolates what deconvolution
adds. Per-image seconds: denoise = plan + apply of stage 1; blind and RL = plan +
apply of the pipeline given that plan (each applies the denoiser again, and the
plan applies it once to estimate the kernel / choose the regularisation).

Targets (the issue): blind ≥ input + 2 dB; blind within 1.5 dB of true-kernel RL;
kernel error < 0.35 (mean and median reported). Then:

* **ringing** on a 256² vertical step edge (levels 0.2 and 1.0 × dose, 1000 e⁻/px)
  blurred by Gaussian σ = 2 px and by 11 px motion across the edge: overshoot =
  (max of the row-averaged restored profile on the bright side − bright level) /
  (bright − dark), undershoot likewise below the dark level, rows and columns within
  32 px of the border left out; blind (RL-TV) next to Wiener and RL given the true
  kernel (same denoise stage). Target: blind overshoot < 10 %.
* **runtime** on a 1024² blurred (Gaussian σ = 2 px) 1000 e⁻/px tissue frame
  (Poisson noise only, no spikes or dead pixels, so that the blind estimate without
  denoising finds a real kernel; its kernel error is printed): the blind pipeline
  without the denoise stage (``denoise=None``, plan + apply), RL with the true
  kernel, and scikit-image's ``unsupervised_wiener`` given the true kernel (on the
  image scaled to [0, 1]) as the baseline, timed in the same run; the denoise stage
  (plan + apply) separately.

Prints, never asserts.

Run from the repository root::

    .venv/bin/python benchmarks/bench_deconvolve.py            # 27 images, 1024² timings
    .venv/bin/python benchmarks/bench_deconvolve.py --quick    # 4 images, 512² timings
    .venv/bin/python benchmarks/bench_deconvolve.py --json out.json
    .venv/bin/python benchmarks/bench_deconvolve.py --denoise classical   # stage 1 classical
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from em_restore.backend import simulate as sim
from em_restore.backend.deconvolve import (
    apply_deconv_plan,
    estimate_kernel,
    fit_kernel,
    kernel_error,
    plan_deconvolve,
)
from em_restore.backend.denoise import apply_plan, plan_denoise
from em_restore.backend.models.inference import plan_model

SIZE = 256
KINDS = ("nanoparticles", "vesicles", "tissue", "grid")
DOSES = (10.0, 100.0, 1000.0)
KERNELS = (
    ("gaussian", 1.0),
    ("gaussian", 2.0),
    ("gaussian", 3.0),
    ("disk", 2.0),
    ("disk", 3.5),
    ("disk", 5.0),
    ("motion", 5.0),
    ("motion", 10.0),
    ("motion", 15.0),
)
FAMILIES = ("gaussian", "disk", "motion")
# Indices into the full set (kernel-major, dose-minor) for --quick: Gaussian 2 px at
# 1000, disk 3.5 px at 10, motion 10 px at 100, Gaussian 3 px at 100 e⁻/px; the four
# specimen kinds.
QUICK = (5, 12, 22, 7)
TARGET_GAIN_DB = 2.0
TARGET_GAP_DB = 1.5
TARGET_KERNEL_ERR = 0.35
TARGET_OVERSHOOT = 0.10
EDGE_MARGIN = 32


def psnr(x, truth: np.ndarray) -> float:
    truth = np.asarray(truth, dtype=np.float64)
    rng = float(truth.max() - truth.min()) or 1.0
    mse = float(np.mean((np.asarray(x, dtype=np.float64) - truth) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(rng * rng / mse)


def spec_name(spec: tuple) -> str:
    if spec[0] == "motion":
        return f"motion {spec[1]:g}px@{spec[2]:g}°"
    return f"{spec[0]} {spec[1]:g}px"


def dataset(quick: bool) -> list[dict]:
    """Every kernel at every dose; specimen kinds cycling; fixed seeds per index."""
    items = []
    for j, kern in enumerate(KERNELS):
        for d, dose in enumerate(DOSES):
            k = len(DOSES) * j + d
            if quick and k not in QUICK:
                continue
            spec = (*kern, float((15 + 35 * k) % 180)) if kern[0] == "motion" else kern
            items.append({"index": k, "kind": KINDS[k % len(KINDS)], "spec": spec, "dose": dose})
    if quick:
        items.sort(key=lambda it: QUICK.index(it["index"]))
    return items


def make_image(item: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(noisy blurred, sharp noise-free truth, noise-free blurred, true kernel)."""
    k = item["index"]
    clean, _ = sim.random_specimen((SIZE, SIZE), rng=1000 + k, kinds=(item["kind"],))
    cfg = sim.AcquisitionConfig.low_dose_tem(dose=item["dose"], psf=item["spec"])
    noisy, blurred = sim.simulate_acquisition(clean, cfg, rng=2000 + k, return_expected=True)
    truth = sim.simulate_acquisition(clean, cfg.replace(psf=None), rng=0, return_expected=True)[1]
    return noisy, truth, blurred, cfg.kernel()


_MODEL_PLAN = []


def stage1(noisy: np.ndarray, how: str) -> tuple[object, np.ndarray, str]:
    """(the plan given to ``plan_deconvolve(denoise=...)``, the denoised frame, its name).

    ``how="model"``: the pipeline's default, the bundled TEM denoiser (loaded once);
    ``"classical"``: ``plan_denoise(noisy, "classical", modality="tem")``.
    """
    if how == "model":
        if not _MODEL_PLAN:
            _MODEL_PLAN.append(plan_model(None, modality="tem"))
        mplan = _MODEL_PLAN[0]
        return mplan, mplan.apply_frame(noisy), mplan.model.name
    dplan = plan_denoise(noisy, "classical", modality="tem")
    return dplan, apply_plan(noisy, dplan), dplan.calibration.get("chosen", dplan.method)


def run_image(item: dict, how: str) -> dict:
    noisy, truth, blurred, kernel = make_image(item)
    t0 = time.perf_counter()
    dplan, denoised, denoiser = stage1(noisy, how)
    t_denoise = time.perf_counter() - t0

    t0 = time.perf_counter()
    bplan = plan_deconvolve(noisy, None, denoise=dplan)
    blind = apply_deconv_plan(noisy, bplan)
    t_blind = time.perf_counter() - t0

    t0 = time.perf_counter()
    tplan = plan_deconvolve(noisy, kernel, denoise=dplan)
    rl = apply_deconv_plan(noisy, tplan)
    t_rl = time.perf_counter() - t0

    # What limits the kernel error: the estimator alone on the noise-free blurred
    # frame, and the oracle (the true specimen known, the kernel fitted to the noisy
    # frame by nonnegative least squares, same canvas): the best free-form kernel
    # the noisy data support.
    noise_free = estimate_kernel(blurred)
    oracle = fit_kernel(truth, noisy)
    oracle_denoised = fit_kernel(truth, denoised)

    return {
        "specimen": item["kind"],
        "family": item["spec"][0],
        "kernel": spec_name(item["spec"]),
        "dose": item["dose"],
        "psnr_input": psnr(noisy, truth),
        "psnr_denoised": psnr(denoised, truth),
        "psnr_blind": psnr(blind, truth),
        "psnr_true_rl": psnr(rl, truth),
        "kernel_error": kernel_error(bplan.psf, kernel),
        "kernel_error_noise_free": kernel_error(noise_free, kernel),
        "kernel_error_oracle": kernel_error(oracle, kernel),
        "kernel_error_oracle_denoised": kernel_error(oracle_denoised, kernel),
        "kernel_size": [int(s) for s in bplan.psf.shape],
        "true_kernel_size": [int(s) for s in kernel.shape],
        "denoiser": denoiser,
        "t_denoise": t_denoise,
        "t_blind": t_blind,
        "t_true_rl": t_rl,
    }


def summarise(rows: list[dict], label: str) -> dict:
    gain = np.array([r["psnr_blind"] - r["psnr_input"] for r in rows])
    gap = np.array([r["psnr_true_rl"] - r["psnr_blind"] for r in rows])
    over_den = np.array([r["psnr_blind"] - r["psnr_denoised"] for r in rows])
    kerr = np.array([r["kernel_error"] for r in rows])
    kfree = np.array([r["kernel_error_noise_free"] for r in rows])
    korc = np.array([r["kernel_error_oracle"] for r in rows])
    kden = np.array([r["kernel_error_oracle_denoised"] for r in rows])
    return {
        "set": label,
        "images": len(rows),
        "psnr_input": float(np.mean([r["psnr_input"] for r in rows])),
        "psnr_denoised": float(np.mean([r["psnr_denoised"] for r in rows])),
        "psnr_blind": float(np.mean([r["psnr_blind"] for r in rows])),
        "psnr_true_rl": float(np.mean([r["psnr_true_rl"] for r in rows])),
        "gain_blind_over_input": float(gain.mean()),
        "gain_blind_over_denoised": float(over_den.mean()),
        "gap_true_rl_minus_blind": float(gap.mean()),
        "worst_gap": float(gap.max()),
        "kernel_error_mean": float(kerr.mean()),
        "kernel_error_median": float(np.median(kerr)),
        "images_gain_ok": int(np.sum(gain >= TARGET_GAIN_DB)),
        "images_gap_ok": int(np.sum(gap <= TARGET_GAP_DB)),
        "images_kernel_ok": int(np.sum(kerr < TARGET_KERNEL_ERR)),
        "kernel_error_noise_free_mean": float(kfree.mean()),
        "kernel_error_noise_free_median": float(np.median(kfree)),
        "kernel_error_oracle_mean": float(korc.mean()),
        "kernel_error_oracle_median": float(np.median(korc)),
        "images_oracle_ok": int(np.sum(korc < TARGET_KERNEL_ERR)),
        "kernel_error_oracle_denoised_mean": float(kden.mean()),
        "kernel_error_oracle_denoised_median": float(np.median(kden)),
    }


def ok(flag: bool) -> str:
    return "PASS" if flag else "FAIL"


def print_summary(table: list[dict]) -> None:
    print("\n## Summary (mean PSNR in dB; gain = blind − input; gap = true-kernel RL − blind)")
    print(
        "| set | n | input | denoised | blind | true-kernel RL | gain | blind − denoised | "
        "gap (worst) | kernel err mean / median | gain ≥ 2 | gap ≤ 1.5 | err < 0.35 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in table:
        n = s["images"]
        print(
            f"| {s['set']} | {n} | {s['psnr_input']:.2f} | {s['psnr_denoised']:.2f} | "
            f"{s['psnr_blind']:.2f} | {s['psnr_true_rl']:.2f} | "
            f"{s['gain_blind_over_input']:+.2f} | {s['gain_blind_over_denoised']:+.2f} | "
            f"{s['gap_true_rl_minus_blind']:.2f} ({s['worst_gap']:.2f}) | "
            f"{s['kernel_error_mean']:.3f} / {s['kernel_error_median']:.3f} | "
            f"{s['images_gain_ok']}/{n} | {s['images_gap_ok']}/{n} | "
            f"{s['images_kernel_ok']}/{n} |"
        )
    a = table[-1]
    print("\ntargets (all images, on the means):")
    print(
        f"  blind ≥ input + {TARGET_GAIN_DB:g} dB: {a['gain_blind_over_input']:+.2f} dB "
        f"{ok(a['gain_blind_over_input'] >= TARGET_GAIN_DB)}"
    )
    print(
        f"  blind within {TARGET_GAP_DB:g} dB of true-kernel RL: "
        f"{a['gap_true_rl_minus_blind']:.2f} dB "
        f"{ok(a['gap_true_rl_minus_blind'] <= TARGET_GAP_DB)}"
    )
    print(
        f"  kernel error < {TARGET_KERNEL_ERR:g}: mean {a['kernel_error_mean']:.3f} "
        f"{ok(a['kernel_error_mean'] < TARGET_KERNEL_ERR)}, median "
        f"{a['kernel_error_median']:.3f} {ok(a['kernel_error_median'] < TARGET_KERNEL_ERR)}"
    )
    print("\n## What limits the kernel error (mean / median; images under the target)")
    print(
        "| set | blind (the pipeline) | blind on the noise-free frame | "
        "oracle on the noisy frame | oracle on the denoised frame |"
    )
    print("|---|---|---|---|---|")
    for s in table:
        n = s["images"]
        print(
            f"| {s['set']} | {s['kernel_error_mean']:.3f} / {s['kernel_error_median']:.3f} "
            f"({s['images_kernel_ok']}/{n}) | {s['kernel_error_noise_free_mean']:.3f} / "
            f"{s['kernel_error_noise_free_median']:.3f} | {s['kernel_error_oracle_mean']:.3f} / "
            f"{s['kernel_error_oracle_median']:.3f} ({s['images_oracle_ok']}/{n}) | "
            f"{s['kernel_error_oracle_denoised_mean']:.3f} / "
            f"{s['kernel_error_oracle_denoised_median']:.3f} |"
        )
    print(
        "oracle = fit_kernel(true sharp specimen, frame): the kernel fitted with the true "
        "specimen known (nonnegative least squares, default prior). On the noisy frame: "
        "what the counts support; on the denoised frame: what stage 1 leaves for stage 2."
    )


# --------------------------------------------------------------------------- ringing
def ringing(restored: np.ndarray, dark: float, bright: float, edge: int) -> tuple[float, float]:
    """(overshoot, undershoot) as fractions of the step, on the row-averaged profile."""
    m = EDGE_MARGIN
    profile = np.asarray(restored, dtype=np.float64)[m:-m].mean(axis=0)
    step = bright - dark
    over = (float(profile[edge:-m].max()) - bright) / step
    under = (dark - float(profile[m:edge].min())) / step
    return over, under


def edge_figures(how: str, seed: int = 7) -> list[dict]:
    dose = 1000.0
    edge = SIZE // 2
    clean = np.full((SIZE, SIZE), 0.2)
    clean[:, edge:] = 1.0
    out = []
    for b, spec in enumerate((("gaussian", 2.0), ("motion", 11.0, 0.0))):
        cfg = sim.AcquisitionConfig.low_dose_tem(dose=dose, psf=spec)
        noisy = sim.simulate_acquisition(clean, cfg, rng=seed + b)
        truth = sim.simulate_acquisition(clean, cfg.replace(psf=None), rng=0, return_expected=True)[
            1
        ]
        dark, bright = float(truth[:, :edge].mean()), float(truth[:, edge:].mean())
        kernel = cfg.kernel()
        dplan, denoised, _ = stage1(noisy, how)
        bplan = plan_deconvolve(noisy, None, denoise=dplan)
        results = {
            "denoised only": denoised,
            "blind (RL-TV)": apply_deconv_plan(noisy, bplan),
            "true kernel, RL-TV": apply_deconv_plan(
                noisy, plan_deconvolve(noisy, kernel, denoise=dplan)
            ),
            "true kernel, Wiener": apply_deconv_plan(
                noisy, plan_deconvolve(noisy, kernel, solver="wiener", denoise=dplan)
            ),
        }
        for method, img in results.items():
            over, under = ringing(img, dark, bright, edge)
            out.append(
                {
                    "blur": spec_name(spec),
                    "method": method,
                    "overshoot": over,
                    "undershoot": under,
                    "psnr": psnr(img, truth),
                    "kernel_error": kernel_error(bplan.psf, kernel)
                    if method.startswith("blind")
                    else None,
                }
            )
    return out


def print_edges(rows: list[dict]) -> None:
    print(
        f"\n## Step-edge ringing ({SIZE}² vertical step, 0.2 / 1.0 × 1000 e⁻/px; "
        f"row-averaged profile, {EDGE_MARGIN} px border left out)"
    )
    print("| blur | method | overshoot | undershoot | PSNR dB | kernel err |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        kerr = "–" if r["kernel_error"] is None else f"{r['kernel_error']:.3f}"
        print(
            f"| {r['blur']} | {r['method']} | {100 * r['overshoot']:.1f} % | "
            f"{100 * r['undershoot']:.1f} % | {r['psnr']:.2f} | {kerr} |"
        )
    blind = [r for r in rows if r["method"].startswith("blind")]
    worst = max(r["overshoot"] for r in blind)
    print(
        f"target: blind overshoot < {100 * TARGET_OVERSHOOT:g} %: worst {100 * worst:.1f} % "
        f"{ok(worst < TARGET_OVERSHOOT)}"
    )


# --------------------------------------------------------------------------- runtime
def runtime(size: int, how: str, seed: int = 11) -> dict:
    from skimage.restoration import unsupervised_wiener

    clean, _ = sim.random_specimen((size, size), rng=seed, kinds=("tissue",))
    # Poisson noise only: without the denoise stage, X-ray spikes and dead pixels
    # make the blind estimate collapse to a delta, whose RL converges at once and
    # would time nothing representative.
    cfg = sim.AcquisitionConfig.low_dose_tem(
        dose=1000.0, psf=("gaussian", 2.0), spike_fraction=0.0, dead_fraction=0.0
    )
    noisy = sim.simulate_acquisition(clean, cfg, rng=seed + 1)
    truth = sim.simulate_acquisition(clean, cfg.replace(psf=None), rng=0, return_expected=True)[1]
    kernel = cfg.kernel()
    res: dict = {"size": size, "blur": spec_name(cfg.psf), "dose": cfg.dose}

    t0 = time.perf_counter()
    plan = plan_deconvolve(noisy, None, denoise=None)
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    blind = apply_deconv_plan(noisy, plan)
    res["blind_plan_s"] = t_plan
    res["blind_apply_s"] = time.perf_counter() - t0
    res["blind_s"] = t_plan + res["blind_apply_s"]
    res["blind_psnr"] = psnr(blind, truth)
    res["blind_kernel_error"] = kernel_error(plan.psf, kernel)

    t0 = time.perf_counter()
    rl = apply_deconv_plan(noisy, plan_deconvolve(noisy, kernel, denoise=None))
    res["true_rl_s"] = time.perf_counter() - t0
    res["true_rl_psnr"] = psnr(rl, truth)

    x = noisy.astype(np.float64)
    lo, hi = float(x.min()), float(x.max())
    t0 = time.perf_counter()
    sk, _ = unsupervised_wiener((x - lo) / (hi - lo), kernel, rng=0)
    res["skimage_unsupervised_wiener_s"] = time.perf_counter() - t0
    res["skimage_unsupervised_wiener_psnr"] = psnr(sk * (hi - lo) + lo, truth)

    _MODEL_PLAN.clear()  # time the model's loading too
    t0 = time.perf_counter()
    if how == "model":
        dplan = plan_model(None, modality="tem")
        res["denoiser"] = dplan.model.name
    else:
        dplan = plan_denoise(noisy, "classical", modality="tem")
        res["denoiser"] = dplan.calibration.get("chosen", dplan.method)
    res["denoise_plan_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    dplan.apply_frame(noisy) if how == "model" else apply_plan(noisy, dplan)
    res["denoise_apply_s"] = time.perf_counter() - t0
    res["denoise_s"] = res["denoise_plan_s"] + res["denoise_apply_s"]
    base = res["skimage_unsupervised_wiener_s"]
    res["ratio_blind_to_skimage"] = res["blind_s"] / base
    res["ratio_true_rl_to_skimage"] = res["true_rl_s"] / base
    return res


def print_runtime(r: dict) -> None:
    n = r["size"]
    base = r["skimage_unsupervised_wiener_s"]
    print(
        f"\n## Runtime at {n}² ({r['blur']}, {r['dose']:g} e⁻/px; ratio to scikit-image's "
        "unsupervised_wiener with the true kernel, same run)"
    )
    print("| step | seconds | ratio | PSNR dB |")
    print("|---|---|---|---|")
    print(
        f"| blind, no denoise (plan {r['blind_plan_s']:.1f} s + apply "
        f"{r['blind_apply_s']:.1f} s; kernel err {r['blind_kernel_error']:.3f}) | "
        f"{r['blind_s']:.1f} | {r['ratio_blind_to_skimage']:.2f} | {r['blind_psnr']:.2f} |"
    )
    print(
        f"| RL-TV, true kernel, no denoise | {r['true_rl_s']:.1f} | "
        f"{r['ratio_true_rl_to_skimage']:.2f} | {r['true_rl_psnr']:.2f} |"
    )
    print(
        f"| skimage unsupervised_wiener, true kernel | {base:.1f} | 1.00 | "
        f"{r['skimage_unsupervised_wiener_psnr']:.2f} |"
    )
    print(
        f"| denoise stage (plan {r['denoise_plan_s']:.1f} s + apply "
        f"{r['denoise_apply_s']:.1f} s, chose {r['denoiser']}) | {r['denoise_s']:.1f} | "
        f"{r['denoise_s'] / base:.2f} | – |"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 images, timings at 512²")
    ap.add_argument("--json", help="also write every figure to this JSON file")
    ap.add_argument(
        "--runtime-size", type=int, help="side of the timing frame (default 1024; --quick 512)"
    )
    ap.add_argument("--no-runtime", action="store_true", help="skip the timing section")
    ap.add_argument(
        "--denoise",
        choices=("model", "classical"),
        default="model",
        help="stage 1: the bundled network (the pipeline's default) or the classical filters",
    )
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    items = dataset(args.quick)
    print(
        f"# Deconvolution on {len(items)} simulated {SIZE}² TEM images (PSNR in dB), "
        f"denoise stage: {args.denoise}"
    )
    print(
        "| specimen | kernel | dose | input | denoised | blind | true-kernel RL | gain | gap | "
        "kernel err | noise-free err | oracle err | oracle err, denoised | est. size | "
        "denoise s | blind s | RL s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for item in items:
        r = run_image(item, args.denoise)
        rows.append(r)
        print(
            f"| {r['specimen']} | {r['kernel']} | {r['dose']:g} | {r['psnr_input']:.2f} | "
            f"{r['psnr_denoised']:.2f} | {r['psnr_blind']:.2f} | {r['psnr_true_rl']:.2f} | "
            f"{r['psnr_blind'] - r['psnr_input']:+.2f} | "
            f"{r['psnr_true_rl'] - r['psnr_blind']:+.2f} | {r['kernel_error']:.3f} | "
            f"{r['kernel_error_noise_free']:.3f} | {r['kernel_error_oracle']:.3f} | "
            f"{r['kernel_error_oracle_denoised']:.3f} | "
            f"{r['kernel_size'][0]} ({r['true_kernel_size'][0]}) | {r['t_denoise']:.1f} | "
            f"{r['t_blind']:.1f} | {r['t_true_rl']:.1f} |",
            flush=True,
        )
    table = [summarise([r for r in rows if r["family"] == f], f) for f in FAMILIES]
    table = [s for s in table if s["images"]]
    for dose in DOSES:
        sub = [r for r in rows if r["dose"] == dose]
        if sub:
            table.append(summarise(sub, f"{dose:g} e⁻/px"))
    table.append(summarise(rows, "all"))
    print_summary(table)
    print(f"({time.perf_counter() - t_start:.0f} s so far)", flush=True)

    edges = edge_figures(args.denoise)
    print_edges(edges)
    print(f"({time.perf_counter() - t_start:.0f} s so far)", flush=True)

    timing = None
    if not args.no_runtime:
        size = args.runtime_size or (512 if args.quick else 1024)
        timing = runtime(size, args.denoise)
        print_runtime(timing)

    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "quick": args.quick,
                    "denoise": args.denoise,
                    "rows": rows,
                    "summary": table,
                    "edge": edges,
                    "runtime": timing,
                    "total_s": total,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
