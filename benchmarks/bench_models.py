"""Deep denoisers against ``classical`` and against the ResNet-18 U-Net: quality and speed.

Held-out simulated set (seeds disjoint from training; ``em_restore.backend.simulate``):
TEM, STEM and SEM × doses 1, 3, 10, 30, 100 e⁻/px × 2 random specimens
(nanoparticles, vesicles, grids, tissue, lattices) with random detectors, blur and
defects for the modality (``random_acquisition_config``), 256² px: 30 images.
Truth = the noise-free expectation in ADU; PSNR/SSIM with ``data_range`` = the
truth's range.

Methods: ``classical`` (automatic, ``plan_denoise(..., modality=...)``), the bundled
networks (``em-denoise-fast``, ``em-denoise-fast-tem``), ``default`` (per image, the
modality's default network) and the reference U-Net with a ResNet-18 encoder
trained by the same recipe (``build/models/unet-resnet18``, made by
``scripts/train_default_models.py --which reference``; skipped when absent).

Speed: median end-to-end ``predict_frame`` time of a 512² frame (normalise, pad,
predict, undo) in-process on this machine's CPU, and ms per megapixel at 2048²,
for both networks, with the ratio; on a GPU, if one is present, the same for a 512²
frame including host↔device transfers.

``--held-out``: the honest proxy for data nobody simulated. Frames from the wide
simulator (``simulate.wide``, 256²) of every family in ``wide.HELD_OUT``, which the
shipped models' training leaves out: each held-out specimen family in each modality
it is imaged in (training distortions drawn as in training), and each held-out
distortion family in each modality it applies to (on top of a training draw of the
rest, on a training specimen); 2 and 20 e⁻/px (``--quick``: 5 e⁻/px). A frame with
nothing to restore (``visible``) is drawn again. PSNR per modality × resolution
(mesoscale / atomic) and per held-out family for: the noisy input, the automatic
``classical`` plan, a Gaussian and BM3D each at their oracle strength (tuned per
image with the truth), every shipped denoiser (``em-denoise-fast``,
``em-denoise-fast-tem``, ``em-denoise``, ``em-denoise-fast-v1``; the same weights are
scored once), ``default`` (per frame, the modality's default network: what
``em-restore denoise`` runs, e.g. ``em-denoise-fast-tem`` on TEM frames) plus
``--model LABEL=FOLDER[@N]`` (e.g. a training run; ``@N``: averaged over N
flips/rotations). It prints each model's worst margin
over classical per modality × resolution (target ≥ +1.5 dB) and over the oracle
Gaussian per family (target ≥ 0). ``--auto`` adds the automatic default (the default
network compared with the classical plan by risk and checked, and checked only) and
counts the frames where it is within 0.3 dB of the better of the two (issue 29).

Prints, never asserts. ``--quick``: 6 images, 5 timing repeats.

    .venv/bin/python benchmarks/bench_models.py [--quick]
    .venv/bin/python benchmarks/bench_models.py --held-out [--quick] [--model L=DIR] [--json F]
        [--auto]
    python3 benchmarks/bench_models.py --no-quality --gpu-only   # on a GPU machine
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.metrics import structural_similarity

from em_restore.backend import denoise as dn
from em_restore.backend import simulate as sim
from em_restore.backend.models import default_model_name, list_models, load_model, predict_frame
from em_restore.backend.simulate import wide

ROOT = Path(__file__).resolve().parents[1]
#: shipped models scored by --held-out when present: the new ones and the first default
HELD_OUT_MODELS = ("em-denoise-fast", "em-denoise-fast-tem", "em-denoise", "em-denoise-fast-v1")
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


def _default_of(models: dict, modality: str) -> tuple:
    """The shipped default network for ``modality`` (``default_model_name``), from
    ``models`` when it is there under its own name."""
    name = default_model_name(modality)
    for label, (model, ensemble) in models.items():
        if model.name == name and ensemble is None:
            return label, model
    return None, _loaded_default(name)


@functools.cache
def _loaded_default(name: str):
    """A default network not among the scored ones, loaded once per run, not per frame."""
    return load_model(name, device="cpu")


def quality(models: dict, size: int, quick: bool, classical: bool = True) -> None:
    rows = []
    labels = ["noisy", *(["classical"] if classical else []), *models, "default"]
    for name, modality, dose, noisy, truth in held_out(size, quick):
        row = {"name": name, "modality": modality, "dose": dose, "noisy": metrics(noisy, truth)}
        if classical:
            t0 = time.perf_counter()
            row["classical"] = metrics(dn.denoise(noisy, "classical", modality=modality), truth)
            row["t_classical"] = time.perf_counter() - t0
        for label, (model, ensemble) in models.items():
            row[label] = metrics(predict_frame(model, noisy, ensemble=ensemble), truth)
        known, model = _default_of(models, modality)  # what `em-restore denoise` runs
        row["default"] = row[known] if known else metrics(predict_frame(model, noisy), truth)
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
    for label in [*models, "default"] if classical else ():
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


# ----------------------------------------------------------------------- held out
HELD_DOSES = (2.0, 20.0)


def _held_out_pair(g, size, modality, dose, *, specimen=None, distortion=None):
    """One wide-simulator pair of a held-out family; the other families are training ones."""
    train_spec = wide.training_families()[0]
    if distortion is None:  # held-out specimen, training distortions drawn as in training
        return wide.wide_pair(
            g,
            (size, size),
            modality=modality,
            dose_range=(dose, dose),
            specimens=(specimen,),
            exclude_distortions=wide.HELD_OUT["distortions"],
        )
    # held-out distortion forced on top of a training draw of the rest
    plan = wide.plan_pair(
        np.random.default_rng(g.integers(2**32)),
        (size, size),
        modality=modality,
        dose_range=(dose, dose),
        specimens=[s for s in train_spec if modality in wide.specimen_modalities(s)],
        exclude_distortions=wide.HELD_OUT["distortions"],
    )
    return wide.wide_pair(
        g,
        (size, size),
        modality=modality,
        dose_range=(dose, dose),
        specimens=(plan.info.specimen,),
        distortions=(*plan.info.distortions, distortion),
    )


def visible(raw: np.ndarray, truth: np.ndarray) -> bool:
    """Whether a frame has something to restore: the noise-free image's 0.5-99.5
    percentile contrast is at least half the noise s.d. per pixel (robust s.d. of
    raw - truth). Atomic lattices blurred past their spacing, particles that fall
    outside the field or contrast lost to saturation give flat truths, where PSNR
    against the truth's range means nothing."""
    lo, hi = np.percentile(truth, [0.5, 99.5])
    d = np.asarray(raw, np.float64) - truth
    sd = 1.4826 * float(np.median(np.abs(d - np.median(d))))
    return hi - lo >= 0.5 * max(sd, 1e-12)


def held_out_set(size: int, quick: bool):
    """``(label, family, modality, scale, dose, raw, truth)`` over every held-out family."""
    doses = (5.0,) if quick else HELD_DOSES
    cases = []
    for fam in wide.HELD_OUT["specimens"]:
        for m in wide.specimen_modalities(fam):
            cases += [("specimen", fam, m, d) for d in doses]
    for fam in wide.HELD_OUT["distortions"]:
        for m in wide.APPLIES[fam]:
            cases += [("distortion", fam, m, d) for d in doses]
    items = []
    for k, (what, fam, modality, dose) in enumerate(cases):
        kw = {"specimen": fam} if what == "specimen" else {"distortion": fam}
        for attempt in range(50):  # a frame with nothing to restore is drawn again
            g = np.random.default_rng([4242, k, attempt])
            raw, truth, info = _held_out_pair(g, size, modality, dose, **kw)
            if visible(raw, truth):
                break
        label = f"{modality} {info.specimen}+{fam if what == 'distortion' else '-'} {dose:g}e"
        items.append((label, fam, modality, info.scale, dose, raw.astype(np.float64), truth))
    return items


#: share of a frame's pixels at its maximum from which --auto calls the frame saturated
CEILING_SHARE = 0.05


def at_ceiling(raw: np.ndarray) -> float:
    """Share of the pixels at the frame's maximum value (a saturated detector's ceiling)."""
    return float(np.mean(raw == raw.max()))


def _decision(record: dict) -> str:
    """The automatic default's decision on a frame, in a few words."""
    blend = record.get("blend", {})
    parts = []
    if record.get("tiles_fallen_back"):
        parts.append(f"{record['tiles_fallen_back']}/{record['tiles']} tiles fell back")
    if "reason" in blend:
        parts.append(f"weight {blend.get('weight', 1.0):.2f} ({blend['reason'].split(':')[0]})")
    elif blend:
        parts.append(f"network weight {blend['weight']:.2f} by risk")
    if "reason" in record:
        parts.append(record["reason"])
    return "; ".join(parts) or "not compared"


def gaussian_oracle(raw: np.ndarray, truth: np.ndarray) -> float:
    """Best PSNR of a Gaussian filter over sigma (truth-tuned), on the raw ADU."""
    return max(
        metrics(ndi.gaussian_filter(raw, s, mode="reflect"), truth)[0]
        for s in (0.3, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6)
    )


def bm3d_oracle(raw: np.ndarray, plan: dn.DenoisePlan, truth: np.ndarray) -> float:
    """Best PSNR of BM3D (in the classical plan's stabilised domain) over its strength."""
    common = {k: v for k, v in plan.params.items() if k in (*dn._COMMON, "sigma")}
    best = -math.inf
    for s in (0.5, 0.7, 1.0, 1.4, 2.0):
        p = dn.DenoisePlan(
            "bm3d",
            {**dn._FIXED["bm3d"], **common, dn.STRENGTH_PARAM["bm3d"]: s},
            plan.noise,
            plan.stabilise,
            "bm3d",
        )
        best = max(best, metrics(dn.apply_plan(raw, p), truth)[0])
    return best


def held_out_quality(
    models: dict, size: int, quick: bool, json_out: Path | None, auto: bool = False
) -> None:
    """PSNR on the held-out families, per modality and resolution and per family.

    ``auto``: also the automatic default (``GuardedPlan``: compared with the classical
    plan by risk, then checked; and checked only), with issue 29's count of frames
    within 0.3 dB of the better of the default network and the classical plan."""
    print(
        f"\nheld-out families (never in the shipped models' training): specimens "
        f"{', '.join(wide.HELD_OUT['specimens'])}; distortions "
        f"{', '.join(wide.HELD_OUT['distortions'])}; {size}² px"
    )
    labels = ["noisy", "classical", "gaussian*", "bm3d*", *models, "default"]
    if auto:
        labels += ["checked", "auto"]
    rows = []
    for label, fam, modality, scale, dose, raw, truth in held_out_set(size, quick):
        plan = dn.plan_denoise(raw, "classical", modality=modality)
        row = {
            "label": label,
            "family": fam,
            "modality": modality,
            "scale": scale,
            "dose": dose,
            "noisy": metrics(raw, truth)[0],
            "classical": metrics(dn.apply_plan(raw, plan), truth)[0],
            "gaussian*": gaussian_oracle(raw, truth),
            "bm3d*": bm3d_oracle(raw, plan, truth),
        }
        for name, (model, ensemble) in models.items():
            row[name] = metrics(predict_frame(model, raw, ensemble=ensemble), truth)[0]
        known, model = _default_of(models, modality)  # the modality's shipped default
        row["default"] = row[known] if known else metrics(predict_frame(model, raw), truth)[0]
        if auto:
            from em_restore.backend.models import plan_model
            from em_restore.backend.models.guarded import GuardedPlan

            mp = plan_model(None, modality=modality, device="cpu")
            row["checked"] = metrics(GuardedPlan(mp, compare=False).apply_frame(raw), truth)[0]
            out, _, record = GuardedPlan(mp).apply_frame_checked(raw)
            row["auto"] = metrics(out, truth)[0]
            row["auto_why"] = _decision(record)
            row["at_ceiling"] = at_ceiling(raw)
        rows.append(row)
        print(f"{label:<44} " + "  ".join(f"{k} {row[k]:6.2f}" for k in labels), flush=True)
    groups = [
        *[
            (f"{m.upper()} {s}", lambda r, m=m, s=s: r["modality"] == m and r["scale"] == s)
            for m in ("tem", "stem", "sem")
            for s in ("meso", "atomic")
        ],
        *[(f"family {f}", lambda r, f=f: r["family"] == f) for f in wide.HELD_OUT["specimens"]],
        *[(f"family {f}", lambda r, f=f: r["family"] == f) for f in wide.HELD_OUT["distortions"]],
        ("all", lambda r: True),
    ]
    print("\n| held-out subset | images | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    table = {}
    for title, keep in groups:
        sel = [r for r in rows if keep(r)]
        if not sel:
            continue
        means = {k: float(np.mean([r[k] for r in sel])) for k in labels}
        table[title] = {"images": len(sel), **means}
        print(f"| {title} | {len(sel)} | " + " | ".join(f"{means[k]:.2f}" for k in labels) + " |")
    print("(gaussian*, bm3d*: at their oracle strength, tuned per image with the truth)")
    for name in [*models, "default"]:
        over_classical = [
            table[t][name] - table[t]["classical"]
            for t in table
            if not t.startswith(("family", "all"))
        ]
        over_gauss = [
            table[t][name] - table[t]["gaussian*"] for t in table if t.startswith("family")
        ]
        print(
            f"{name}: worst modality/resolution margin over classical "
            f"{min(over_classical):+.2f} dB "
            f"(target ≥ +1.5); worst family margin over the oracle Gaussian "
            f"{min(over_gauss):+.2f} dB (target ≥ 0)"
        )
    if auto:
        for key in ("checked", "auto"):
            ok = [r[key] >= max(r["default"], r["classical"]) - 0.3 for r in rows]
            print(
                f"{key}: ≥ max(default network, classical) − 0.3 dB on {sum(ok)}/{len(ok)} "
                f"frames ({np.mean(ok):.0%}); mean {np.mean([r[key] for r in rows]):.2f} dB "
                f"(default network {np.mean([r['default'] for r in rows]):.2f}, "
                f"classical {np.mean([r['classical'] for r in rows]):.2f})"
            )
        misses = [r for r in rows if r["auto"] < max(r["default"], r["classical"]) - 0.3]
        clipped = [r for r in rows if r["at_ceiling"] >= CEILING_SHARE]
        print(
            f"auto's misses: {len(misses)}, of which {sum(r in clipped for r in misses)} on the "
            f"{len(clipped)} frames with ≥ {CEILING_SHARE:.0%} of their pixels at the ceiling "
            "(saturated: the counts judge neither the level nor the risk there)"
        )
        for r in misses:
            print(
                f"  {r['label']}: default {r['default']:.2f}, classical {r['classical']:.2f}, "
                f"auto {r['auto']:.2f} dB; {r['at_ceiling']:.1%} at the ceiling; {r['auto_why']}"
            )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"rows": rows, "table": table}, indent=1))
        print(f"wrote {json_out}")


def _load(spec: str, device: str = "cpu") -> tuple:
    """``NAME_OR_DIR[@N]`` → (the loaded model, its ensemble: N, or None for its own)."""
    name, at, n = spec.rpartition("@")
    if not at or not n.isdigit():
        return load_model(spec, device=device), None
    return load_model(name, device=device), int(n)


def clock(fn, repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def speed(paths: dict, repeats: int, cpu_too: bool = True) -> None:
    rng = np.random.default_rng(0)
    f512 = rng.poisson(10, (512, 512)).astype(np.uint16)
    f2k = rng.poisson(10, (2048, 2048)).astype(np.uint16)
    if cpu_too:
        print(f"\nCPU: {torch.get_num_threads()} threads, torch {torch.__version__}")
    cpu = {}
    for label, path in paths.items() if cpu_too else ():
        m, ens = _load(path)
        ens = m.config.ensemble if ens is None else ens
        t512 = clock(lambda m=m, e=ens: predict_frame(m, f512, ensemble=e), repeats)
        t2k = clock(lambda m=m, e=ens: predict_frame(m, f2k, ensemble=e), max(1, repeats // 4))
        cpu[label] = t512
        print(
            f"{label:<18} 512²: {1e3 * t512:7.1f} ms   2048²: {1e3 * t2k / 4.194304:7.1f} ms/MP"
            f"   ({ens} pass{'es' if ens > 1 else ''})"
        )
    if "em-denoise-fast" in cpu and "unet-resnet18" in cpu:
        ratio = cpu["unet-resnet18"] / cpu["em-denoise-fast"]
        print(f"speed-up of em-denoise-fast over unet-resnet18 at 512²: {ratio:.1f}×")
    for label, target in (("em-denoise-fast", 0.150), ("em-denoise", 1.5)):
        if label in cpu:
            print(f"{label} at 512²: {1e3 * cpu[label]:.0f} ms (issue 28: ≤ {1e3 * target:.0f} ms)")
    if torch.cuda.is_available():
        print(f"\nGPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
        for label, path in paths.items():
            m, ens = _load(path, device="cuda")
            ens = m.config.ensemble if ens is None else ens

            def run(m=m, e=ens):
                predict_frame(m, f512, ensemble=e)
                torch.cuda.synchronize()

            print(
                f"{label:<18} 512² incl. transfers: {1e3 * clock(run, 50):6.2f} ms "
                f"({ens} pass{'es' if ens > 1 else ''}; the paper: 8 ms)"
            )
    elif not cpu_too:
        print("\n--gpu-only: no GPU here (torch.cuda.is_available() is False)")


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
    ap.add_argument(
        "--held-out",
        action="store_true",
        help="score on the wide simulator's held-out families instead (see docstring)",
    )
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="LABEL=NAME_OR_DIR[@N]",
        help="also score this model (repeatable), e.g. a training run's folder; @N: "
        "averaged over N flips/rotations (1, 2, 4, 8; default the model's own)",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the held-out rows here")
    ap.add_argument(
        "--gpu-only", action="store_true", help="speed on the GPU only (with --no-quality)"
    )
    ap.add_argument(
        "--auto",
        action="store_true",
        help="with --held-out: also the automatic default, compared and checked only",
    )
    args = ap.parse_args()
    if args.held_out:
        present = {e.name: e.config.weights_sha256 for e in list_models("denoise")}
        paths, seen = {}, set()
        for n in HELD_OUT_MODELS:  # the same weights under two names are scored once
            if n in present and present[n] not in seen:
                paths[n] = n
                seen.add(present[n])
        paths.update(dict(spec.split("=", 1) for spec in args.model))
        models = {k: _load(v) for k, v in paths.items()}
        held_out_quality(models, args.size, args.quick, args.json, args.auto)
        return
    paths = {"em-denoise-fast": "em-denoise-fast"}
    for name in ("em-denoise-fast-tem", "em-denoise"):
        if name in {e.name for e in list_models("denoise")}:
            paths[name] = name
    paths.update(dict(spec.split("=", 1) for spec in args.model))
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
    models = {k: _load(v) for k, v in paths.items()}
    if not args.no_quality:
        quality(models, args.size, args.quick, classical=not args.no_classical)
    speed(paths, 5 if args.quick else 20, cpu_too=not args.gpu_only)


if __name__ == "__main__":
    main()
