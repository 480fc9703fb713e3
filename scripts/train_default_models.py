"""Train the bundled default denoiser (and the reference U-Net) on the simulator only.

Reproducible: fixed seeds, deterministic algorithms, on the CPU by default (the
path that reproduces the shipped weights bit for bit on the same torch build and
thread count; a GPU run, ``--device cuda``, trains the same recipe faster but
not bit-identically). Every pair of images comes from
``em_restore.backend.simulate``; no third-party image is used.

Models (``--which``):

* ``fast`` → ``em-denoise-fast``: :class:`FastDenoiser`, TEM + STEM + SEM, doses
  0.1–1000 e⁻/px: ``em-denoise-fast-v1`` fine-tuned on the wide simulator
  (``simulate.wide``) without its held-out families, mixed 1:1 with the classic
  one, percentile inputs; written into the package (``src/em_restore/weights``)
  and made the default for STEM and images of unknown modality;
* ``fast-tem`` → ``em-denoise-fast-tem``: ``em-denoise-fast`` fine-tuned on TEM
  recordings alone (run after ``fast``); written into the package and made the TEM
  default;
* ``fast-sem`` → ``em-denoise-fast-sem``: the same on SEM recordings; the SEM default;
* ``quality-base`` then ``quality`` → ``em-denoise``: the same network family,
  twice as wide and deeper, trained as the default was made: v1's recipe on the
  classic simulator (stage 1, ``build/models/em-denoise-base``, not shipped), then
  the default's fine-tuning on the wide mix started from it; written into the
  package (``--which quality-base quality``);
* ``fast-v1`` → ``em-denoise-fast-v1``: the first default's recipe (classic
  simulator, percentile inputs), kept so that earlier results can be reproduced;
* ``reference`` → ``unet-resnet18``: the low-dose TEM paper's U-Net with a
  ResNet-18 encoder, **same recipe** (data, steps, batch, loss, schedule); written
  to ``build/models`` (56 MB: not shipped), used by ``benchmarks/bench_models.py``;
* ``burst`` → ``em-burst``: :class:`BurstDenseUNet`, the burst deblurring network,
  on simulated moving-stage TEM streams (3–7 registered frames, 5–300 e⁻/px per
  frame, 1–12 px of motion per frame with an irregular path), L1 + SSIM loss, best
  validation SSIM kept; written into the package.

Run from the repository root::

    .venv/bin/python scripts/train_default_models.py --which fast reference burst

Long CPU runs: train outside the checkout and resume as often as it takes
(``--out ~/.cache/em-restore/train --resume``; the state is rewritten at every
validation and an interrupted run leaves its best model so far, marked
``"complete": false``), then copy the model folder into ``src/em_restore/weights``.

The recipe, time, hardware and validation curve are stored in each model's
``config.json`` (``training``); the model cards in ``docs/models/`` quote them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from em_restore.backend.models import ModelConfig, TrainConfig, save_model, train
from em_restore.backend.models.burst import BurstTrainConfig, train_burst
from em_restore.backend.models.fit import STATE_FILE
from em_restore.backend.models.loop import load_training_state
from em_restore.backend.models.nets import network_params
from em_restore.backend.models.store import UNKNOWN_MODALITY
from em_restore.backend.models.training import (
    SimulationRecipe,
    TrainResult,
    TrainStep,
    Validation,
)
from em_restore.backend.simulate import wide

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_WEIGHTS = ROOT / "src" / "em_restore" / "weights"
REFERENCE_DIR = ROOT / "build" / "models"

#: Shipped denoisers: the wide simulator without its held-out families, inputs in
#: the frame's own noise units (gain- and offset-free), 0.1-1000 e-/px.
#: 2026-12-04, 20 000-step trials of the fast network on the 2-core CPU (13 min each),
#: mean PSNR on bench_models' 30 classic images / its 19 quick held-out frames / the
#: 32 validation pairs: noise rule with scale 4: 22.85 / 17.53 / 15.23 dB; noise rule
#: with percentiles: 22.11 / 17.81 / 14.44 dB; em-denoise-fast-v1 (30 000 steps on the
#: classic simulator): 26.17 / 18.11 dB. The wide data need far more steps than the
#: classic ones: 100 000 (a GPU run, or resumed CPU runs).
WIDE = SimulationRecipe(
    dose_range=(0.1, 1000.0),
    image_size=160,
    simulator="wide",
    exclude_specimens=wide.HELD_OUT["specimens"],
    exclude_distortions=wide.HELD_OUT["distortions"],
)
_COMMON = dict(batch=8, patch=96, pool=10000, val_images=32, val_every=1000, warmup=500)
RECIPE = dict(
    _COMMON,
    steps=100000,
    seed=20261204,
    normalisation={"kind": "noise", "scale": 4.0},
    recipe=WIDE,
)
#: The shipped em-denoise-fast (2026-12-06): em-denoise-fast-v1 fine-tuned on the wide
#: simulator (held-out families excluded) mixed 1:1 with the classic one, under v1's
#: percentile rule (gain- and offset-free too). Short trials on the 2-core CPU, 3000
#: steps each, mean PSNR on bench_models' 30 classic images / 19 quick held-out frames
#: (v1: 26.17 / 18.11 dB): from scratch, wide, noise rule 20.56 / 16.27; from scratch,
#: wide, percentiles 20.03 / 16.82; from scratch, classic, noise rule 22.09 / 15.44;
#: from scratch, classic, percentiles 22.34 / 15.97; v1 fine-tuned on the wide data
#: alone 24.42 / 19.72; v1 fine-tuned on the 1:1 mix 25.78 / 19.94.
#: Tried 2026-12-07, not adopted: the same fine-tune for 24 000 steps (--steps 24000,
#: --keep last; 22 min on 2 threads): 38 held-out frames 16.22 → 16.28 dB and the 19
#: quick ones 19.90 → 20.06, worst modality margin over classical −1.90 → −1.48 dB,
#: but x-jumps 14.10 → 10.40 and STEM meso 18.12 → 16.22 dB (same run). Its best
#: validation step (8000; 5000 in a 1-thread run, 19.18 dB on the quick frames) says
#: little: 32 validation pairs choose noisily between close steps.
WIDE_MIX = dataclasses.replace(WIDE, classic_fraction=0.5)
FINE_TUNE = dict(
    _COMMON,
    steps=8000,
    pool=4000,
    warmup=0,
    lr=3e-4,
    seed=20261206,
    normalisation={"kind": "percentile", "low": 0.1, "high": 99.9},
    recipe=WIDE_MIX,
    start="em-denoise-fast-v1",
)
#: em-denoise-fast-tem, the TEM default since 2026-12-07: the shipped em-denoise-fast
#: fine-tuned on TEM alone (the same 1:1 mix of the wide simulator without its held-out
#: families and the classic one, every pair a TEM recording). One network for three
#: modalities also learns the scanned ones' row offsets and stripes, and took TEM
#: gratings for them (bands painted across the bars); a TEM network has never seen
#: any. 12 000 steps (786 s on the 2-core CPU), against em-denoise-fast in the same
#: run: bench_models' 38 held-out frames, TEM meso / atomic 21.61 → 21.98 / 14.61 →
#: 15.83 dB (classical 22.52 / 16.51); the 10 classic TEM images 26.92 → 27.32 dB; the
#: 80 touching pairs 60 → 60 resolved, 4 → 3 merged; worse on honeycomb lattices. A
#: 4000-step trial (seed 20261206, pool 3000): 22.65 / 15.44, 27.21, 58 and 5 merged.
#: Tried 2026-12-08, not adopted: an atomic-resolution TEM network, this one fine-tuned
#: 12 000 more steps on the wide simulator's atomic families alone (held-out ones
#: excluded; SimulationRecipe.specimens) mixed 1:1 with the classic lattices (1049 s,
#: seed 20261208). bench_models' 5 held-out TEM atomic frames 15.83 → 16.07 dB (classical
#: 16.51), the 7 with the 5 e⁻/px ones 16.12 → 16.61 (16.74), but 18 frames of the
#: training atomic families at 2 and 20 e⁻/px (new seeds) 12.09 → 11.69: still below
#: the classical plan where it should win, and worse where the TEM network already wins.
TEM_FINE_TUNE = dict(
    FINE_TUNE,
    steps=12000,
    seed=20261207,
    recipe=dataclasses.replace(WIDE_MIX, modalities=("tem",)),
    start="em-denoise-fast",
)
#: em-denoise-fast-sem, the SEM default since 2026-12-07: the same fine-tune on SEM
#: recordings alone (1288 s on the shared 2-core CPU). Against em-denoise-fast, same run:
#: bench_models' 12 held-out SEM frames 16.27 → 16.65 dB (classical 14.80), the 6 quick
#: ones 20.72 → 20.89, the 10 classic SEM images 24.48 → 24.55; on the Zeiss SEM
#: micrograph of ../shared/data/formats the fidelity check rejects 6 of its 12 tiles, not
#: 11 (fine surface grains kept, not smoothed as noise).
SEM_FINE_TUNE = dict(TEM_FINE_TUNE, recipe=dataclasses.replace(WIDE_MIX, modalities=("sem",)))
#: em-denoise: the quality network (twice the width, deeper) in two stages, as the
#: default was made: v1's recipe on the classic simulator (``quality-base``, written to
#: build/models), then the default's fine-tuning on the wide mix, started from it.
QUALITY_ARCH = {"channels": 32, "unshuffle": 2, "blocks": (3, 4, 6)}
QUALITY_NET = dict(architecture="fast_denoiser", arch_params=QUALITY_ARCH)
#: The recipe of the first em-denoise-fast (now em-denoise-fast-v1, kept to
#: reproduce earlier results): the classic simulator, percentile inputs.
RECIPE_V1 = dict(_COMMON, steps=30000, seed=20261121)
#: Stage 1 runs 20 000 steps, not v1's 30 000 (the quality network's step costs 0.2 s
#: on the 2-core CPU, 3.5 times the fast one's: both stages then fit in 1.5 hours).
QUALITY_BASE = dict(RECIPE_V1, steps=20000)
#: Trained to the end 2026-12-07 on the 2-core CPU and not shipped: stage 1 26.44 dB on
#: bench_models' 30 classic images (v1 26.17) but 17.94 on the 19 quick held-out frames
#: (v1 18.11); stage 2 kept step 1000 (validation fell after it); on the quick frames
#: 18.84 dB (step 7000: 19.72, 8 passes 19.84) against em-denoise-fast's 19.90.
QUALITY_FINE_TUNE = dict(FINE_TUNE, start="em-denoise-base")
BURST_RECIPE = dict(steps=3000, batch=8, patch=64, pool=800, val_windows=24, seed=20261121)


def _specialist(modality: str, recipe: dict) -> dict:
    """The spec of em-denoise-fast fine-tuned on one modality's recordings (its default)."""
    name = f"em-denoise-fast-{modality}"
    return dict(
        name=name,
        folder=PACKAGE_WEIGHTS / name,
        architecture="fast_denoiser",
        arch_params={"channels": 16, "unshuffle": 2, "blocks": (2, 3, 4)},
        recipe=recipe,
        keep="last",
        modalities=(modality,),
        description=(
            f"Default denoiser for {modality.upper()}, 0.1-1000 e-/px: em-denoise-fast "
            f"fine-tuned on {modality.upper()} recordings alone (the em-restore wide simulator "
            "without its held-out families, mixed 1:1 with the classic one), percentile inputs."
        ),
    )


MODELS = {
    "fast": dict(
        name="em-denoise-fast",
        folder=PACKAGE_WEIGHTS / "em-denoise-fast",
        architecture="fast_denoiser",
        # Full resolution halved (not quartered): the pixel-unshuffle-4 net of the
        # same cost learns slower and plateaus lower on this data (docs/models).
        arch_params={"channels": 16, "unshuffle": 2, "blocks": (2, 3, 4)},
        recipe=FINE_TUNE,
        description=(
            "All-modality denoiser (the default for STEM and images of unknown "
            "modality), 0.1-1000 e-/px: pixel-unshuffle U-Net, "
            "about 0.4 M parameters, percentile inputs; em-denoise-fast-v1 fine-tuned on the "
            "em-restore wide simulator (without its held-out families) mixed 1:1 with the "
            "classic one."
        ),
    ),
    "fast-tem": _specialist("tem", TEM_FINE_TUNE),
    "fast-sem": _specialist("sem", SEM_FINE_TUNE),
    # The quality model is trained as the default was: first on the classic simulator
    # (stage 1, v1's recipe; not shipped), then fine-tuned on the wide mix (stage 2).
    "quality-base": dict(
        name="em-denoise-base",
        folder=REFERENCE_DIR / "em-denoise-base",
        **QUALITY_NET,
        recipe=QUALITY_BASE,
        description=(
            "Stage 1 of em-denoise: the quality network trained on the classic em-restore "
            "simulator with v1's recipe; the start of em-denoise's fine-tuning. Not shipped."
        ),
    ),
    "quality": dict(
        name="em-denoise",
        folder=PACKAGE_WEIGHTS / "em-denoise",
        **QUALITY_NET,
        recipe=QUALITY_FINE_TUNE,
        # averaged over the 8 flips/rotations by default: 1.25 s per 512² on the 2-core
        # CPU (one pass 0.16 s), inside issue 28's 1.5 s
        ensemble=8,
        description=(
            "Quality denoiser for TEM, STEM and SEM, 0.1-1000 e-/px: the pixel-unshuffle "
            "U-Net at twice the width and deeper (about 2.3 M parameters), percentile "
            "inputs; trained on the classic em-restore simulator, then fine-tuned on the "
            "wide simulator (without its held-out families) mixed 1:1 with the classic one."
        ),
    ),
    "fast-v1": dict(
        name="em-denoise-fast-v1",
        folder=PACKAGE_WEIGHTS / "em-denoise-fast-v1",
        architecture="fast_denoiser",
        arch_params={"channels": 16, "unshuffle": 2, "blocks": (2, 3, 4)},
        recipe=RECIPE_V1,
        description=(
            "The first default denoiser (until 2026-12-04), kept to reproduce earlier "
            "results: percentile inputs, trained on the classic em-restore simulator."
        ),
    ),
    "reference": dict(
        name="unet-resnet18",
        folder=REFERENCE_DIR / "unet-resnet18",
        architecture="unet_resnet18",
        description=(
            "Reference: U-Net with a ResNet-18 encoder (the low-dose TEM paper's network), "
            "same training recipe as em-denoise-fast. Not shipped (56 MB)."
        ),
    ),
    "burst": dict(
        name="em-burst",
        folder=PACKAGE_WEIGHTS / "em-burst",
        architecture="burst_dense_unet",
        task="burst",
        description=(
            "Default burst deblurring network for fast TEM streams from a moving stage: "
            "shared-weight Dense U-Net per frame with max pooling across frames, 3-8 "
            "registered frames in, the sharp middle frame out; trained on the em-restore "
            "simulator only."
        ),
    ),
}


def burst_record(result: TrainResult, cfg: BurstTrainConfig) -> dict:
    """Training record of a burst model (validation scored by SSIM, not L1)."""
    record = result.record(cfg)
    record.pop("best_val_l1")
    record["best_val_ssim"] = round(1.0 - result.best_loss, 5)
    record["validation"] = [
        {"step": v.step, "ssim": round(1.0 - v.loss, 5), "psnr": round(v.psnr, 3)}
        for v in result.history
        if isinstance(v, Validation)
    ]
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--which", nargs="+", choices=sorted(MODELS), default=["fast"])
    ap.add_argument("--device", default="cpu", help="cpu (reproducible), cuda, mps or auto")
    ap.add_argument("--steps", type=int, default=None, help="default: the model's recipe")
    ap.add_argument(
        "--pool", type=int, default=None, help="simulated training pairs (default: the recipe's)"
    )
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (part of the recipe)")
    ap.add_argument(
        "--workers", type=int, default=1, help="processes simulating the pool (same pool)"
    )
    ap.add_argument("--out", type=Path, default=None, help="write every model under this folder")
    ap.add_argument(
        "--keep",
        choices=("best", "last"),
        default=None,
        help="weights written at the end: the best validation's or the last step's "
        "(default: the model's recipe, else best)",
    )
    ap.add_argument(
        "--resume",
        action="store_true",
        help=f"go on from the model folder's {STATE_FILE} left by an interrupted run "
        "(the result is bit-identical to an uninterrupted run)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for key in args.which:
        spec = MODELS[key]
        is_burst = spec.get("task") == "burst"
        recipe = dict(BURST_RECIPE if is_burst else spec.get("recipe", RECIPE))
        if args.steps is not None:
            recipe["steps"] = args.steps
        if args.pool is not None:
            recipe["pool"] = args.pool
        stage = next((m for m in MODELS.values() if m["name"] == recipe.get("start")), None)
        if stage is not None and stage["folder"].parent == REFERENCE_DIR:
            # an unshipped earlier stage starts from its folder (under --out if given)
            recipe["start"] = str(args.out / stage["folder"].name if args.out else stage["folder"])
        config_class = BurstTrainConfig if is_burst else TrainConfig
        if not is_burst:
            recipe["arch_params"] = dict(spec.get("arch_params", {}))
        cfg = config_class(architecture=spec["architecture"], **recipe)
        if cfg.warmup > cfg.steps:  # a short rehearsal (--steps): the warm-up fits inside it
            cfg = dataclasses.replace(cfg, warmup=cfg.steps)
        run = train_burst if is_burst else train
        t0 = time.perf_counter()
        folder = (args.out / spec["folder"].name) if args.out else spec["folder"]
        seen: list = []

        def model_config(net, record, spec=spec, cfg=cfg):
            record["device"] = args.device
            return ModelConfig(
                name=spec["name"],
                architecture=spec["architecture"],
                arch_params=network_params(net),
                normalisation=cfg.normalisation,
                task=spec.get("task", "denoise"),
                modalities=spec.get(
                    "modalities",
                    ("tem",) if spec.get("task") == "burst" else ("tem", "stem", "sem"),
                ),
                description=spec["description"],
                training=record,
                ensemble=spec.get("ensemble", 1),
            )

        def checkpoint(net, event, t0=t0, cfg=cfg, folder=folder, seen=seen, is_burst=is_burst):
            # An interrupted run leaves its best checkpoint so far, marked incomplete.
            partial = TrainResult(net, event.step, event.loss, event.psnr, [*seen, event])
            partial.seconds = time.perf_counter() - t0
            rec = burst_record(partial, cfg) if is_burst else partial.record(cfg)
            record = {**rec, "complete": False}
            save_model(folder, net, model_config(net, record), overwrite=True)

        def show(event, t0=t0, key=key, seen=seen, is_burst=is_burst):
            if isinstance(event, Validation):
                seen.append(event)
                flag = " *" if event.best else ""
                score = f"SSIM {1 - event.loss:.4f}" if is_burst else f"L1 {event.loss:.5f}"
                print(
                    f"[{key}] step {event.step:5d}/{event.total}  val {score}  "
                    f"PSNR {event.psnr:6.2f} dB  {time.perf_counter() - t0:7.0f} s{flag}",
                    flush=True,
                )
            elif isinstance(event, TrainStep) and event.step % 50 == 0:
                print(f"[{key}] step {event.step:5d} loss {event.loss:.5f}", end="\r", flush=True)

        # Every run leaves everything needed to go on at each validation (--resume).
        state = folder / STATE_FILE
        resumable = {"checkpoint": state, "resume": args.resume}
        if not is_burst:
            resumable["workers"] = args.workers
        folder.mkdir(parents=True, exist_ok=True)
        result = run(
            cfg,
            log=lambda m, key=key: print(f"[{key}] {m}", flush=True),
            on_event=show,
            device=args.device,
            on_best=checkpoint,
            **resumable,
        )
        rec = burst_record(result, cfg) if is_burst else result.record(cfg)
        keep = args.keep or spec.get("keep", "best")
        if keep == "last":
            # the weights after the last step (the checkpoint's network), not the best
            # validation's: 32 validation pairs choose noisily between close steps
            result.net.load_state_dict(load_training_state(state)["net"])
            rec = {**rec, "kept": "last", "last_step": cfg.steps}
        save_model(folder, result.net, model_config(result.net, rec), overwrite=True)
        state.unlink(missing_ok=True)  # finished: the model folder is all that is kept
        print(
            f"[{key}] saved {folder} (best step {result.best_step}, val PSNR "
            f"{result.best_psnr:.2f} dB, {result.seconds:.0f} s)"
        )
    if {"fast", "fast-tem", "fast-sem"} & set(args.which) and args.out is None:
        # the all-modality network for STEM and images of unknown modality; the TEM and
        # SEM specialists for theirs once they are in the package
        general = MODELS["fast"]["name"]

        def specialist(key):
            spec = MODELS[key]
            return spec["name"] if (spec["folder"] / "config.json").exists() else general

        defaults = {
            "tem": specialist("fast-tem"),
            "stem": general,
            "sem": specialist("fast-sem"),
            UNKNOWN_MODALITY: general,
        }
        (PACKAGE_WEIGHTS / "defaults.json").write_text(json.dumps(defaults, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
