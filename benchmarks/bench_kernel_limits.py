"""What limits the blind kernel error: regularisation sweeps on the deconvolution set.

The same 27 simulated images, seeds and stage 1 (the bundled TEM network) as
``bench_deconvolve.py``. Per image, the kernel error (``kernel_error``, normalised L2
after centring) of

* the **oracle** ``fit_kernel(true specimen, frame, gamma=γ)`` (nonnegative least
  squares given the sharp specimen) on the *noisy* frame and on the *denoised*
  frame, for ridge weights ``γ`` in ``ORACLE_GAMMAS`` (``fit_kernel``'s default is
  0.1);
* the **blind estimator** ``estimate_kernel(denoised, gamma=γ)`` for kernel-prior
  weights ``γ`` in ``BLIND_GAMMAS`` (0.02 is the pipeline's default, so that column
  is the pipeline's kernel error).

For each sweep it also prints the *hindsight* figure: every image at its own best
``γ``, chosen knowing the true kernel. No automatic rule can beat it, so it bounds
what choosing the regularisation per image could give: if the hindsight figure of a
sweep is above the target, no choice of that weight reaches it.

Prints a table (mean / median / images under 0.35, per blur family and overall), never
asserts. About 15 minutes on the project's 2-core CPU (``--quick``: 4 images).

Run from the repository root::

    .venv/bin/python benchmarks/bench_kernel_limits.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_deconvolve import (
    FAMILIES,
    TARGET_KERNEL_ERR,
    dataset,
    make_image,
    spec_name,
    stage1,
)

from em_restore.backend.deconvolve import estimate_kernel, fit_kernel, kernel_error

ORACLE_GAMMAS = (0.001, 0.01, 0.03, 0.1, 0.3)
BLIND_GAMMAS = (0.005, 0.02, 0.08, 0.3)


def run_image(item: dict) -> dict:
    noisy, truth, _, kernel = make_image(item)
    _, denoised, _ = stage1(noisy, "model")
    row: dict = {
        "index": item["index"],
        "family": item["spec"][0],
        "kernel": spec_name(item["spec"]),
        "dose": item["dose"],
    }
    for name, frame in (("oracle_noisy", noisy), ("oracle_denoised", denoised)):
        row[name] = [kernel_error(fit_kernel(truth, frame, gamma=g), kernel) for g in ORACLE_GAMMAS]
    row["blind"] = [kernel_error(estimate_kernel(denoised, gamma=g), kernel) for g in BLIND_GAMMAS]
    return row


def columns() -> list[tuple[str, str, int | None]]:
    """(label, row key, index into the sweep or None for the per-image best)."""
    out: list[tuple[str, str, int | None]] = []
    for key, gammas in (
        ("oracle_noisy", ORACLE_GAMMAS),
        ("oracle_denoised", ORACLE_GAMMAS),
        ("blind", BLIND_GAMMAS),
    ):
        out += [(f"{key} γ={g:g}", key, i) for i, g in enumerate(gammas)]
        out.append((f"{key} best γ per image (hindsight)", key, None))
    return out


def value(row: dict, key: str, i: int | None) -> float:
    return min(row[key]) if i is None else row[key][i]


def stats(rows: list[dict], key: str, i: int | None) -> str:
    v = np.array([value(r, key, i) for r in rows])
    ok = int(np.sum(v < TARGET_KERNEL_ERR))
    return f"{v.mean():.3f} / {np.median(v):.3f} ({ok}/{v.size})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 images")
    ap.add_argument("--json", help="also write every figure to this JSON file")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    rows = []
    for item in dataset(args.quick):
        r = run_image(item)
        rows.append(r)
        sweeps = " ".join(
            f"{k}=[{', '.join(f'{v:.2f}' for v in r[k])}]"
            for k in ("oracle_noisy", "oracle_denoised", "blind")
        )
        print(f"{r['index']:2d} {r['kernel']} {r['dose']:g} e⁻/px {sweeps}", flush=True)

    groups = [(f, [r for r in rows if r["family"] == f]) for f in FAMILIES]
    groups = [(f, g) for f, g in groups if g] + [("all", rows)]
    print(
        f"\n# Kernel error, mean / median (images < {TARGET_KERNEL_ERR}); "
        f"oracle γ: fit_kernel's ridge, blind γ: estimate_kernel's kernel prior"
    )
    print("| sweep | " + " | ".join(f"{f} (n={len(g)})" for f, g in groups) + " |")
    print("|---|" + "---|" * len(groups))
    for label, key, i in columns():
        print(f"| {label} | " + " | ".join(stats(g, key, i) for _, g in groups) + " |")
    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "quick": args.quick,
                    "oracle_gammas": ORACLE_GAMMAS,
                    "blind_gammas": BLIND_GAMMAS,
                    "rows": rows,
                    "total_s": total,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
