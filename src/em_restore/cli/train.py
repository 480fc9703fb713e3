"""``em-restore train``: train your own denoiser or burst network (paired, self-supervised,
simulated)

Train a restoration network on your data and save it as a model folder (weights, config,
model card) that denoise/burst accept with --model. Modes: paired (--noisy low-dose or
blurry images with --clean high-dose or sharp images of the same areas: registered and
intensity-matched), self (--noisy images alone, Neighbor2Neighbor), simulated (--clean
images, or the built-in specimens, through the physics simulator). Training fine-tunes
the bundled model of the task and --modality (or --from MODEL) unless --from-scratch.
The best epoch (validation SSIM) is saved as soon as it is reached; Ctrl-C keeps it and
--resume continues.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import (
    UserError,
    command_parser,
    device_option,
    greyscale,
    input_files,
    modality_option,
)


def _training_images(spec: str | None, what: str) -> tuple[list[Any], list[str]]:
    """Images of a file or of every readable file in a folder (sorted by name)."""
    from em_restore import io

    if spec is None:
        return [], []
    files, _folder = input_files([spec])
    images = []
    for f in files:
        image = io.read(f)
        greyscale(image, str(f))
        images.append(image.data)
    return images, [f.name for f in files]


def _pair_by_name(noisy, noisy_names, clean, clean_names):
    """Pair two folders by file name when they hold the same names, else by order."""
    if len(clean) > 1 and sorted(noisy_names) == sorted(clean_names):
        index = {n: i for i, n in enumerate(clean_names)}
        clean = [clean[index[n]] for n in noisy_names]
    return noisy, clean


def _epoch_line(e: Any) -> str:
    score = (
        f"val PSNR {e.val_psnr:6.2f} dB  SSIM {e.val_ssim:.3f}"
        if e.val_ssim is not None
        else f"val loss {e.val_loss:.5f}"
    )
    mark = "  *best" if e.best else ""
    return f"epoch {e.epoch:3d}/{e.epochs}  train {e.train_loss:.5f}  {score}  ETA {e.eta}{mark}"


def _train(args: argparse.Namespace) -> int:
    from em_restore.backend.models import datasets as ds
    from em_restore.backend.models import fit as F
    from em_restore.backend.models.fit_config import check_task_mode
    from em_restore.backend.models.store import user_model_dir

    if args.output is None and args.name is None:
        raise UserError(
            "say where the model goes: -o MODEL_DIR, or --name NAME for the user models"
        )
    folder = Path(args.output) if args.output else user_model_dir() / args.name
    burst = args.task == "burst"
    try:
        check_task_mode(
            args.task,
            args.mode,
            "use --mode simulated (with --clean images of your specimens, or none for the "
            "built-in ones)",
        )
    except ValueError as err:
        raise UserError(str(err)) from None
    noisy, noisy_names = _training_images(args.noisy, "noisy")
    clean, clean_names = _training_images(args.clean, "clean")
    if args.mode in ("paired", "self") and not noisy:
        raise UserError(f"--mode {args.mode} needs --noisy FILE_OR_FOLDER")
    if args.mode == "paired" and not clean:
        raise UserError(
            "--mode paired needs --clean FILE_OR_FOLDER (the high-dose or sharp images)"
        )
    if args.mode == "self" and clean:
        raise UserError(
            "--mode self trains on noisy images alone; drop --clean or use --mode paired"
        )
    if args.mode == "simulated" and noisy:
        raise UserError("--mode simulated makes its own noisy images; drop --noisy")
    if args.mode == "paired":
        noisy, clean = _pair_by_name(noisy, noisy_names, clean, clean_names)
    data = ds.training_data(
        args.mode,
        noisy,
        clean,
        task=args.task,
        modality=args.modality,
        dose=args.dose,
        frames=args.frames,
        pool=args.pool,
        val_fraction=args.val_fraction,
        seed=args.seed,
    )
    cfg = F.FitConfig(
        architecture=args.arch,
        start=args.start,
        from_scratch=args.from_scratch,
        loss=args.loss,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch=args.batch,
        patch=args.patch,
        lr=args.lr,
        patience=args.patience,
        max_minutes=args.max_minutes,
        seed=args.seed,
    )
    modalities = (args.modality,) if args.mode == "simulated" else None
    gen = F.iter_train_model(
        cfg,
        data,
        folder,
        name=args.name,
        modalities=modalities,
        modality=args.modality,
        overwrite=args.overwrite,
        resume=args.resume,
        device=args.device,
    )
    verbose = not args.quiet
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            if verbose and isinstance(event, F.Epoch):
                print(_epoch_line(event), file=sys.stderr, flush=True)
            elif verbose and getattr(event, "message", "") == "preparing data":
                print(f"preparing {data.kind} data...", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        gen.close()
        kept = (folder / "config.json").is_file()
        print(
            "em-restore: training interrupted; "
            + (f"the best epoch so far is kept in {folder}" if kept else "no epoch finished")
            + f" (continue with --resume -o {folder})",
            file=sys.stderr,
        )
        return 130
    if verbose:
        if result.best_psnr is not None:
            score = (
                f"val PSNR {result.best_psnr:.2f} dB (input {result.input_psnr:.2f}), "
                f"SSIM {result.best_ssim:.3f} (input {result.input_ssim:.3f})"
            )
        else:
            score = f"val loss {result.best_val_loss:.5f} (self-supervised)"
        use = "burst STACK" if burst else "denoise IN"
        print(
            f"trained {folder.name} {result.origin()}, lr {result.config.lr:g}: best epoch "
            f"{result.best_epoch} of {len(result.history)}, {score}; {result.stop_reason}, "
            f"{result.seconds:.0f} s -> {folder}\nuse it: em-restore {use} -o OUT --model {folder}"
        )
    return 0


def add_parser(sub) -> None:
    from em_restore.backend.models.fit_config import (
        DATA_MODES,
        DOSE_DEFAULTS,
        LOSSES,
        POOL_DEFAULTS,
        TASK_ARCHITECTURES,
        TASKS,
        FitConfig,
    )

    d = FitConfig()  # the defaults, and the torch-free checks, are the backend's
    tr = command_parser(sub, "train", __doc__)
    tr.add_argument("--mode", required=True, choices=DATA_MODES)
    tr.add_argument("--task", choices=TASKS, default="denoise")
    tr.add_argument("--noisy", default=None, metavar="DIR_OR_FILE", help="noisy image(s)")
    tr.add_argument("--clean", default=None, metavar="DIR_OR_FILE", help="clean image(s)")
    tr.add_argument("-o", "--output", default=None, metavar="MODEL_DIR", help="model folder")
    tr.add_argument(
        "--name",
        default=None,
        help="model name (default: the folder's); alone: save it in the user model folder",
    )
    tr.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs (default {d.epochs})")
    tr.add_argument(
        "--steps-per-epoch",
        type=int,
        default=d.steps_per_epoch,
        help=f"default {d.steps_per_epoch}",
    )
    tr.add_argument("--max-minutes", type=float, default=None, help="stop after this long")
    tr.add_argument(
        "--from",
        dest="start",
        default=None,
        metavar="MODEL",
        help="model (name or folder) to fine-tune (default: the bundled model of the task "
        "and --modality)",
    )
    tr.add_argument(
        "--from-scratch",
        action="store_true",
        help="start from random weights of --arch instead of fine-tuning a model",
    )
    tr.add_argument(
        "--arch",
        choices=[a for task in TASKS for a in TASK_ARCHITECTURES[task]],
        default=None,
        help="network, with --from-scratch (default fast_denoiser; burst_dense_unet for "
        "--task burst); fine-tuning keeps the start model's",
    )
    tr.add_argument("--loss", choices=LOSSES, default=d.loss)
    tr.add_argument(
        "--patch", type=int, default=d.patch, help=f"training crop size (default {d.patch})"
    )
    tr.add_argument(
        "--batch", type=int, default=d.batch, help=f"crops per step (default {d.batch})"
    )
    tr.add_argument(
        "--lr",
        type=float,
        default=None,
        help="Adam learning rate (default: the backend's, lower when fine-tuning than from "
        "scratch; the summary prints the one used)",
    )
    tr.add_argument(
        "--patience", type=int, default=d.patience, help="early stopping after N epochs"
    )
    tr.add_argument("--val-fraction", type=float, default=0.15, help="held out (default 0.15)")
    modality_option(
        tr,
        "the images' modality: picks the bundled model to fine-tune and the simulated "
        "modality (default tem)",
        default="tem",
    )
    tr.add_argument(
        "--dose",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="simulated dose range in e-/px (default {:g} {:g}; burst {:g} {:g})".format(
            *DOSE_DEFAULTS["denoise"], *DOSE_DEFAULTS["burst"]
        ),
    )
    tr.add_argument("--frames", type=int, default=5, help="frames per burst window (default 5)")
    tr.add_argument(
        "--pool",
        type=int,
        default=None,
        help="simulated training images (default {denoise}; burst {burst})".format(**POOL_DEFAULTS),
    )
    tr.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    device_option(tr)
    tr.add_argument("--resume", action="store_true", help="continue an interrupted run")
    tr.add_argument("--overwrite", action="store_true", help="replace a model in MODEL_DIR")
    tr.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    tr.set_defaults(func=_train)


run = _train
