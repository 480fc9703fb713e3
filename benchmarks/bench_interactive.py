"""Interactive speed of the classical paths, each as a ratio to a yardstick timed in the same run.

Issue 34: preview is where a microscopist decides whether to trust a method. Figures
(median of ``--repeats`` runs, seconds, and their ratio to the yardstick):

* ``plan + apply``: ``plan_denoise(frame, "classical")`` then ``apply_plan`` on a 512²
  simulated low-dose TEM frame (nanoparticles, ``AcquisitionConfig.low_dose_tem(dose=5)``);
* ``cli denoise``: the same through ``em_restore.cli.main(["denoise", IN, "-o", OUT,
  "--method", "classical"])`` in-process (start-up, i.e. imports, excluded; reading
  and writing the TIFFs included);
* ``bm3d apply``: ``bm3d`` at the plan's defaults on the stabilised 512² frame, ms/MP;
* ``blind 1024²``: ``plan_deconvolve(frame, None, denoise=None)`` + ``apply_deconv_plan``
  on a 1024² TEM frame at 1000 e⁻/px blurred by a Gaussian of 2 px (the frame of
  ``bench_deconvolve.py``'s runtime section); ``--stage1`` adds the pipeline of
  ``em-restore deconvolve --denoise classical`` (classical plan and apply on the
  frame, then the blind estimate and RL).

Yardsticks: scikit-image ``denoise_nl_means`` (fast mode, 5×5 patches, ±6 px) on the
same 512² frame; scikit-image ``richardson_lucy`` (30 iterations, 15×15 kernel) on
the 1024² frame.

``--profile``: a cProfile top-15 (own time) of the classical plan on the 512² frame.
``--plans``: the plan chosen on each ``bench_denoise.py --quick`` image and on a few
more (method, strength), to compare before / after a speed-up.

Prints, never asserts. Run from the repository root::

    .venv/bin/python benchmarks/bench_interactive.py [--repeats 3] [--profile] [--plans]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from em_restore.backend import simulate as sim
from em_restore.backend.bm3d import bm3d
from em_restore.backend.deconvolve import apply_deconv_plan, plan_deconvolve
from em_restore.backend.denoise import apply_plan, plan_denoise


def tem_frame(size: int = 512, seed: int = 3) -> np.ndarray:
    clean, _ = sim.nanoparticles((size, size), pixel_size_nm=0.5, rng=seed)
    cfg = sim.AcquisitionConfig.low_dose_tem(dose=5)
    return np.asarray(sim.simulate_acquisition(clean, cfg, rng=seed + 1), dtype=np.float32)


def blurred_frame(size: int = 1024, seed: int = 11) -> np.ndarray:
    clean, _ = sim.random_specimen((size, size), rng=seed, kinds=("tissue",))
    cfg = sim.AcquisitionConfig.low_dose_tem(
        dose=1000.0, psf=("gaussian", 2.0), spike_fraction=0.0, dead_fraction=0.0
    )
    return np.asarray(sim.simulate_acquisition(clean, cfg, rng=seed + 1), dtype=np.float32)


def clock(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def nlm_yardstick(frame: np.ndarray) -> None:
    from skimage.restoration import denoise_nl_means, estimate_sigma

    x = frame.astype(np.float64)
    sigma = float(estimate_sigma(x))
    denoise_nl_means(x, patch_size=5, patch_distance=6, h=0.8 * sigma, sigma=sigma, fast_mode=True)


def rl_yardstick(frame: np.ndarray) -> None:
    from skimage.restoration import richardson_lucy

    x = frame.astype(np.float64)
    x = (x - x.min()) / (x.max() - x.min())
    yy, xx = np.mgrid[-7:8, -7:8]
    k = np.exp(-(yy**2 + xx**2) / (2 * 2.0**2))
    richardson_lucy(x, k / k.sum(), num_iter=30, clip=False)


def classical(frame: np.ndarray):
    plan = plan_denoise(frame, "classical")
    apply_plan(frame, plan)
    return plan


def cli_denoise(frame: np.ndarray, repeats: int) -> float:
    import tifffile

    from em_restore import cli

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "frame.tif"
        tifffile.imwrite(src, frame)
        count = iter(range(10**6))

        def once():
            out = Path(tmp) / f"out{next(count)}.tif"
            rc = cli.main(["denoise", str(src), "-o", str(out), "--method", "classical", "-q"])
            if rc != 0:
                raise RuntimeError(f"em-restore denoise returned {rc}")

        return clock(once, repeats)


def bm3d_ms_per_mp(frame: np.ndarray, repeats: int) -> float:
    from em_restore.backend.noise import estimate_noise
    from em_restore.backend.vst import forward_vst

    z = np.asarray(forward_vst(frame.astype(np.float64), estimate_noise(frame)))
    return 1e3 * clock(lambda: bm3d(z, sigma=1.0), repeats) / (z.size / 1e6)


def blind(frame: np.ndarray, stage1) -> None:
    plan = plan_deconvolve(frame, None, denoise=stage1)
    apply_deconv_plan(frame, plan)


def profile(frame: np.ndarray) -> None:
    # cProfile sees only the calling thread: profile with the pool off (one thread),
    # so the figures are the work itself, not the main thread waiting on the pool.
    from em_restore.backend import _threads

    saved, _threads.THREADS = _threads.THREADS, 1
    prof = cProfile.Profile()
    try:
        prof.enable()
        plan_denoise(frame, "classical")
        prof.disable()
    finally:
        _threads.THREADS = saved
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(15)
    print(
        "\ncProfile of plan_denoise(512² low-dose TEM frame, 'classical'), "
        "top 15 by own time (one thread):"
    )
    print(buf.getvalue())
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
    print("top 25 by cumulative time:")
    print(buf.getvalue())


def plan_set():
    """(name, frame, modality): the bench_denoise --quick images and a few more."""
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_denoise as bd

    items = [(name, noisy, mod) for name, mod, noisy, _ in bd.dataset(256, True)]
    for dose in (1, 20, 100):
        clean, _ = sim.tissue_texture((256, 256), rng=dose)
        cfg = sim.AcquisitionConfig.low_dose_tem(dose=dose)
        items.append((f"tem tissue {dose}", sim.simulate_acquisition(clean, cfg, rng=5), "tem"))
    items.append(("tem particles 5 (512², no modality)", tem_frame(), None))
    return items


def print_plans() -> None:
    print("\nplans (label chosen, and the best score):")
    for name, frame, modality in plan_set():
        plan = plan_denoise(frame, "classical", modality=modality)
        cal = plan.calibration
        best = min(cal["scores"].values())
        print(f"  {name:40s} {cal.get('chosen', plan.method):32s} {best:.6g}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile top-15 of the classical plan")
    ap.add_argument("--plans", action="store_true", help="print the plans of a set of frames")
    ap.add_argument("--stage1", action="store_true", help="also blind, --denoise classical")
    ap.add_argument("--no-timings", action="store_true")
    args = ap.parse_args(argv)
    frame = tem_frame()
    if args.profile:
        profile(frame)
    if args.plans:
        print_plans()
    if args.no_timings:
        return 0
    n = args.repeats
    t_nlm = clock(lambda: nlm_yardstick(frame), max(n, 3))
    plan = classical(frame)
    t_plan = clock(lambda: classical(frame), n)
    t_cli = cli_denoise(frame, n)
    bm3d_mp = bm3d_ms_per_mp(frame, n)
    big = blurred_frame()
    t_rl = clock(lambda: rl_yardstick(big), max(n, 3))
    t_blind = clock(lambda: blind(big, None), n)
    rows = [
        ("yardstick: skimage NLM fast 5x5 ±6, 512²", t_nlm, "NLM"),
        (f"classical plan + apply, 512² (chose {plan.calibration['chosen']})", t_plan, "NLM"),
        ("em-restore denoise --method classical, 512² (in-process)", t_cli, "NLM"),
        ("bm3d apply, 512² (ms/MP in the next column)", bm3d_mp * 0.262144 / 1e3, "NLM"),
        ("yardstick: skimage richardson_lucy 30 it, 15x15, 1024²", t_rl, "RL"),
        ("blind deconvolution 1024² (plan + apply, denoise=None)", t_blind, "RL"),
    ]
    if args.stage1:
        rows.append(
            (
                "blind deconvolution 1024² (--denoise classical)",
                clock(lambda: blind(big, "classical"), 1),
                "RL",
            )
        )
    print(f"\nmedian of {n} runs (yardsticks of max({n}, 3)):")
    print(f"| {'what':62s} | seconds | ratio |")
    print(f"|{'-' * 64}|---------|-------|")
    for what, t, ref in rows:
        ratio = t / (t_nlm if ref == "NLM" else t_rl)
        print(f"| {what:62s} | {t:7.2f} | {ratio:5.1f}× {ref} |")
    print(f"bm3d apply: {bm3d_mp:.0f} ms/MP")
    return 0


if __name__ == "__main__":
    sys.exit(main())
