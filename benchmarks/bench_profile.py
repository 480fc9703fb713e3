"""Particle sizing on line profiles: diameter, edge width and pair resolution.

The low-dose TEM paper's faithfulness check, on simulated bright-field TEM
nanoparticles with exact ground truth (``em_restore.backend.simulate``):

* particles of 20-200 nm at 1 and 2 nm/px, an instrument blur of 1 px (Gaussian);
* images: **clean** (the noise-free expectation), **raw** at 5 and 1000 e⁻/px,
  **restored** (the project's default denoiser, ``em-restore denoise`` without
  options: the bundled model for TEM) and **classical** (``--method classical``)
  at both doses;
* one line (3 px wide) through each isolated particle, chosen to avoid the
  others, and one through each pair of neighbours (touching pairs from the
  simulator and sintered/separated pairs at gaps of -2, -1, +1, +2 px);
* figures: median and 90th-percentile |diameter error| (%), median |edge-width
  error| (px) against the edge width of the exact blurred model, detection
  misses, and pairs classified correctly ("resolved" = ``(d1+d2)/2 < l``).

Targets (issue 8): median diameter error <= 2 % on clean and <= 3 % on
default-restored 5 e⁻/px images; edge width within 1 px on clean images; pairs
classified correctly.

Run::

    .venv/bin/python benchmarks/bench_profile.py            # about 6 minutes
    .venv/bin/python benchmarks/bench_profile.py --quick    # 2 scenes, about 1 minute
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from em_restore.backend import simulate as sim
from em_restore.backend.denoise import denoise
from em_restore.backend.models import default_model_name, load_model, predict_frame
from em_restore.backend.profile import analyse_profile, sample_profile, sphere_profile

PSF_PX = 1.0
WIDTH = 3
EDGE_FRACTION = 0.05
# (pixel size nm, diameter range nm, image side px)
SCENES = [
    (1.0, (20.0, 60.0), 256),
    (1.0, (60.0, 120.0), 320),
    (2.0, (40.0, 120.0), 256),
    (2.0, (120.0, 200.0), 320),
]
PAIR_GAPS_PX = (-2.0, -1.0, 1.0, 2.0)
DOSES = (5.0, 1000.0)


def acquisition(dose: float) -> sim.AcquisitionConfig:
    if dose < 100:
        return sim.AcquisitionConfig.low_dose_tem(dose=dose, psf=("gaussian", PSF_PX))
    return sim.AcquisitionConfig.high_dose_tem(dose=dose, psf=("gaussian", PSF_PX))


def _segment_clear(a, b, others, margin):
    """True when the segment a-b stays ``margin`` px away from every other sphere."""
    a, b = np.asarray(a), np.asarray(b)
    d = b - a
    for (qy, qx), r in others:
        t = np.clip(np.dot((qy, qx) - a, d) / np.dot(d, d), 0, 1)
        if np.hypot(*((qy, qx) - (a + t * d))) < r + margin:
            return False
    return True


def line_through(centres, radii, others, shape):
    """A line through the given centres, extended onto the background, avoiding others."""
    centres = np.asarray(centres, float)
    rmax = float(max(radii))
    ext = rmax + max(0.8 * rmax, 8.0)
    mid = centres.mean(axis=0)
    if len(centres) == 2:
        u = (centres[1] - centres[0]) / np.linalg.norm(centres[1] - centres[0])
        half = np.linalg.norm(centres[1] - centres[0]) / 2 + ext
        cand = [u]
    else:
        half = ext
        cand = [np.array([math.sin(t), math.cos(t)]) for t in np.radians(np.arange(0, 180, 15))]
    for u in cand:
        a, b = mid - half * u, mid + half * u
        inside = all(2 <= v <= s - 3 for p in (a, b) for v, s in zip(p, shape, strict=True))
        if inside and _segment_clear(a, b, others, 4.0):
            return a, b, half
    return None


def true_edge_width(diameter_px: float, mu_t: float, offsets_px) -> float:
    """Edge width of the exact blurred model (px), by the module's crossing rule."""
    r = diameter_px / 2
    x = np.arange(-r - 12 * PSF_PX, r + 12 * PSF_PX, 0.01)
    y = sphere_profile(
        x,
        centers=[0.0],
        radii=[r],
        amplitudes=[mu_t / (2 * r)],
        background=1.0,
        saturation=1.0,
        sigma=PSF_PX,
        offsets=offsets_px,
        appearance="dark",
    )
    dev = 1.0 - y
    level = EDGE_FRACTION * dev[np.argmin(np.abs(x))]
    outside = x[(dev <= level) & (x > 0)]
    return 2 * float(outside.min()) - diameter_px


def pair_scene(p: float, rng: np.random.Generator, shape: int = 256):
    """Rows of particle pairs at the gaps PAIR_GAPS_PX (thicknesses add where they overlap)."""
    centres, radii, pairs = [], [], []
    rows = np.linspace(40, shape - 40, len(PAIR_GAPS_PX))
    for row, gap in zip(rows, PAIR_GAPS_PX, strict=True):
        d1, d2 = rng.uniform(20, 40, 2) / p
        c1 = (row + rng.uniform(-2, 2), shape / 2 - (d1 / 2 + gap / 2) + rng.uniform(-3, 3))
        c2 = (c1[0] + rng.uniform(-1, 1), 0.0)
        dist = d1 / 2 + d2 / 2 + gap
        c2 = (c2[0], c1[1] + math.sqrt(dist**2 - (c2[0] - c1[0]) ** 2))
        pairs.append((len(centres), len(centres) + 1, gap))
        centres += [c1, c2]
        radii += [d1 / 2, d2 / 2]
    thick_nm = sim.projected_spheres((shape, shape), centres, radii) * p
    mu = math.log(2) / (30.0)
    parts = [
        sim.Particle((c[0] * p, c[1] * p), 2 * r * p, pair=i // 2)
        for i, (c, r) in enumerate(zip(centres, radii, strict=True))
    ]
    return np.exp(-mu * thick_nm), parts, mu, pairs


def particle_scene(p, drange, side, rng):
    # About 5 % coverage, so that lines through single particles find background.
    n = max(3, round(0.05 * side * side / (math.pi * (0.25 * sum(drange) / p) ** 2)))
    clean, parts = sim.nanoparticles(
        (side, side), pixel_size_nm=p, diameters_nm=drange, n=n, allow_touching_pairs=1, rng=rng
    )
    mu = math.log(2) / (0.5 * (drange[0] + drange[1]))
    pairs = [(i, i + 1, None) for i in range(0, len(parts) - 1, 2) if parts[i].pair is not None]
    return clean, parts, mu, pairs


def jobs_for(parts, pairs, p, shape):
    """(kind, indices, line) for every isolated particle and every pair."""
    geo = [(pt.center_yx_px(p), pt.diameter_nm / 2 / p) for pt in parts]
    in_pair = {i for a, b, _ in pairs for i in (a, b)}
    out = []
    for i, (c, r) in enumerate(geo):
        if i in in_pair:
            continue
        line = line_through([c], [r], [g for j, g in enumerate(geo) if j != i], shape)
        if line:
            out.append(("single", (i,), line))
    for a, b, gap in pairs:
        others = [g for j, g in enumerate(geo) if j not in (a, b)]
        line = line_through([geo[a][0], geo[b][0]], [geo[a][1], geo[b][1]], others, shape)
        if line:
            out.append(("pair", (a, b, gap), line))
    return out


def measure(image, job, parts, p, mu):
    kind, idx, (a, b, _half) = job
    prof = sample_profile(image, [a, b], width=WIDTH, scale=p, unit="nm")
    res = analyse_profile(prof, appearance="dark")
    start = np.asarray(a)
    u = (np.asarray(b) - start) / np.linalg.norm(np.asarray(b) - start)
    rows = []
    found = []
    for i in idx[:2] if kind == "pair" else idx:
        pt = parts[i]
        along = float(np.dot(np.asarray(pt.center_yx_px(p)) - start, u)) * p
        near = [q for q in res.particles if abs(q.center - along) < pt.diameter_nm / 4]
        q = min(near, key=lambda q: abs(q.center - along)) if near else None
        found.append(q)
        d_px = pt.diameter_nm / p
        truth_edge = true_edge_width(d_px, mu * pt.diameter_nm, prof.offsets / p)
        rows.append(
            {
                "kind": kind,
                "pixel_nm": p,
                "diameter_nm": pt.diameter_nm,
                "found": q is not None,
                "diameter_err_pct": None if q is None else 100 * (q.diameter / pt.diameter_nm - 1),
                "edge_err_px": None
                if q is None or q.edge_width is None
                else q.edge_width / p - truth_edge,
            }
        )
    pair = None
    if kind == "pair":
        gap = idx[2]
        truth = True if gap is None else gap > 0
        q1, q2 = found
        if q1 is None or q2 is None or q1 is q2:
            measured = False  # merged into one: not resolved
        else:
            pr = [x for x in res.pairs if {res.particles[x.first].center,
                                           res.particles[x.second].center}
                  == {q1.center, q2.center}]  # fmt: skip
            measured = pr[0].resolved if pr else True  # fitted apart: resolved
        pair = {"gap_px": 1.0 if gap is None else gap, "truth": truth, "measured": measured}
    return rows, pair


def summarise(name, rows, pairs):
    d = np.array([abs(r["diameter_err_pct"]) for r in rows if r["found"]])
    e = np.array([abs(r["edge_err_px"]) for r in rows if r["edge_err_px"] is not None])
    miss = sum(not r["found"] for r in rows)
    ok = sum(p["truth"] == p["measured"] for p in pairs)
    return {
        "image": name,
        "particles": len(rows),
        "missed": miss,
        "median_abs_diameter_err_pct": float(np.median(d)) if d.size else math.nan,
        "p90_abs_diameter_err_pct": float(np.percentile(d, 90)) if d.size else math.nan,
        "median_abs_edge_err_px": float(np.median(e)) if e.size else math.nan,
        "pairs_correct": ok,
        "pairs": len(pairs),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two scenes only")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    scenes = SCENES[:1] + SCENES[2:3] if args.quick else SCENES
    t0 = time.perf_counter()
    kinds = ("raw", "restored", "classical")
    conditions = ["clean"] + [f"{k} {d:g} e/px" for d in DOSES for k in kinds]
    model = load_model(default_model_name("tem"))
    results = {c: ([], []) for c in conditions}
    builds = []
    for s, (p, drange, side) in enumerate(scenes):
        builds.append((p, side, *particle_scene(p, drange, side, np.random.default_rng([8, s]))))
    for s, p in enumerate(sorted({sc[0] for sc in scenes})):
        builds.append((p, 256, *pair_scene(p, np.random.default_rng([9, s]))))
    for b, (p, side, clean, parts, mu, pairs) in enumerate(builds):
        jobs = jobs_for(parts, pairs, p, (side, side))
        images = {}
        for dose in DOSES:
            noisy, expected = sim.simulate_acquisition(
                clean, acquisition(dose), rng=np.random.default_rng([10, b, int(dose)]),
                return_expected=True,
            )  # fmt: skip
            noisy = noisy.astype(np.float32)
            if dose == DOSES[-1]:
                images["clean"] = expected
            images[f"raw {dose:g} e/px"] = noisy
            images[f"restored {dose:g} e/px"] = predict_frame(model, noisy)
            images[f"classical {dose:g} e/px"] = denoise(noisy, "classical", modality="tem")
        for name, img in images.items():
            for job in jobs:
                rows, pair = measure(img, job, parts, p, mu)
                results[name][0].extend(rows)
                if pair:
                    results[name][1].append(pair)
        print(f"scene {b + 1}/{len(builds)} ({p:g} nm/px, {len(jobs)} lines) "
              f"{time.perf_counter() - t0:5.0f} s", file=sys.stderr, flush=True)  # fmt: skip
    table = [summarise(c, *results[c]) for c in conditions]
    print(f"\nparticle sizing on line profiles ({WIDTH} px wide), PSF sigma {PSF_PX:g} px")
    print(f"{'image':22s} {'n':>4s} {'miss':>4s} {'|dD| med %':>10s} {'p90 %':>7s} "
          f"{'|dEdge| med px':>14s} {'pairs ok':>9s}")  # fmt: skip
    for r in table:
        print(
            f"{r['image']:22s} {r['particles']:4d} {r['missed']:4d} "
            f"{r['median_abs_diameter_err_pct']:10.2f} {r['p90_abs_diameter_err_pct']:7.2f} "
            f"{r['median_abs_edge_err_px']:14.2f} {r['pairs_correct']:5d}/{r['pairs']:<3d}"
        )
    clean = table[0]
    restored5 = next(r for r in table if r["image"] == "restored 5 e/px")
    print("\ntargets:")
    print(f"  clean diameter median {clean['median_abs_diameter_err_pct']:.2f} % (<= 2 %)")
    print(f"  restored 5 e/px diameter median {restored5['median_abs_diameter_err_pct']:.2f} % "
          "(<= 3 %)")  # fmt: skip
    print(f"  clean edge width median error {clean['median_abs_edge_err_px']:.2f} px (<= 1 px)")
    print(f"  clean pairs correct {clean['pairs_correct']}/{clean['pairs']}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": table, "rows": {c: results[c][0] for c in conditions},
                       "pairs": {c: results[c][1] for c in conditions}}, f, indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
