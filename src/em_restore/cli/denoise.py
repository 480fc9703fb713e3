"""``em-restore denoise``: denoise an image or stack (automatic by default)

Denoise an image or stack. By default the bundled model for the modality (--modality,
else the file's metadata, else TEM) restores it; --model NAME_OR_DIR picks any trained
model; --method classical picks a filter and its strength by self-supervised calibration
on the image itself (no tuning).
"""

from __future__ import annotations

import argparse
import sys

from em_restore import __version__

from ._common import (
    UserError,
    batch_io,
    check_output,
    command_parser,
    greyscale,
    modality_option,
    progress_printer,
    restoration_options,
    wants_stream,
    write_result,
)
from .check import prepare_fidelity_out, write_fidelity_out


def _denoise(args: argparse.Namespace) -> int:
    from em_restore import io
    from em_restore.backend import denoise as backend

    if args.method is not None and args.model is not None:
        raise UserError("--method and --model exclude each other; pass one of them")
    if args.method is not None and args.method not in backend.METHODS:
        raise UserError(
            f"unknown --method {args.method!r}; choose one of {', '.join(backend.METHODS)} "
            "(or --model NAME for a trained model)"
        )
    if args.ensemble is not None and args.method is not None:
        raise UserError("--ensemble applies to models; a --method filter has no ensemble")
    if args.strength is not None and args.model is not None:
        raise UserError("--strength applies to --method filters; models have no strength")
    if args.method is None and args.model is None:
        # The bundled model for the modality is the default: on the held-out benchmark
        # it beats 'classical' in PSNR and runs ~100x faster (docs/models/em-denoise-fast.md).
        if args.strength is not None:
            raise UserError(
                "--strength applies to --method filters (e.g. --method tv --strength 2); "
                "the default model has no strength"
            )
        args.model = "auto"
    if args.no_fallback and args.model != "auto":
        raise UserError(
            "--no-fallback applies to the default model (its fidelity check and classical "
            "fallback); a --model or --method runs alone already"
        )
    if args.no_compare and (args.model != "auto" or args.no_fallback):
        raise UserError(
            "--no-compare applies to the checked default model (its comparison with the "
            "classical plan); drop --model/--method/--no-fallback or drop --no-compare"
        )
    out = check_output(args.input, args.output, args.overwrite)
    fid_out = prepare_fidelity_out(args, out)
    image = io.read(args.input)
    greyscale(image, args.input)
    shown = not args.quiet and sys.stderr.isatty()
    drive = progress_printer(shown)
    lazy = wants_stream(args, image)
    plan = None
    if args.method is None:
        restored, plan, summary = _denoise_model(args, image, drive, lazy)
        record = plan.to_metadata()
    else:
        restored, record, summary = _denoise_classical(args, image, drive, backend, lazy)
    metadata = {
        "operation": "denoise",
        "input": str(args.input),
        "denoise": record,
        "em_restore_version": __version__,
    }
    write_result(out, restored, image, metadata, scheduler=args.scheduler, progress=shown)
    if not args.quiet:
        print(f"denoised {args.input} with {summary} -> {out}")
        if hasattr(plan, "notice"):
            print(plan.notice())
    write_fidelity_out(fid_out, args, out, image)
    return 0


def _denoise_classical(args, image, drive, backend, lazy=False):
    import numpy as np

    params = None
    if args.strength is not None:
        if args.method not in backend.STRENGTH_PARAM:
            raise UserError(
                f"--strength is not used by method {args.method!r}; "
                f"it applies to {', '.join(backend.STRENGTH_PARAM)}"
            )
        params = {backend.STRENGTH_PARAM[args.method]: args.strength}
    lead = image.data.shape[:-2]
    frame = np.asarray(image.data[tuple(n // 2 for n in lead)])
    plan = drive(
        backend.iter_plan_denoise(frame, args.method, modality=args.modality, params=params)
    )
    if lazy:
        restored = backend.denoise_lazy(image.data, plan)
    else:
        restored = drive(backend.iter_denoise(image.data, plan))
    shown = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in plan.params.items()
    )
    return restored.astype(np.float32, copy=False), plan.to_metadata(), f"{plan.method} ({shown})"


def _denoise_model(args, image, drive, lazy=False):
    from em_restore.backend.models.guarded import GuardedPlan
    from em_restore.backend.models.inference import plan_model

    plan = plan_model(
        None if args.model == "auto" else args.model,
        modality=args.modality,
        metadata=image.metadata,
        device=args.device,
        **({} if args.tile is None else {"tile": args.tile}),
        ensemble=args.ensemble,
    )
    if args.model == "auto" and not args.no_fallback:
        # compared with the classical plan by risk, checked against the counts
        plan = GuardedPlan(plan, compare=not args.no_compare)
    restored = plan.lazy(image.data) if lazy else drive(plan.iter_apply(image.data))
    m = plan.model
    source = getattr(plan, "model_plan", plan).modality_source
    summary = (
        f"model {m.name} (sha256 {m.sha256[:12]}, modality {plan.modality or 'tem'}: "
        f"{source}, {m.device}{', checked' if hasattr(plan, 'notice') else ''})"
    )
    return restored, plan, summary


def add_parser(sub) -> None:
    den = command_parser(sub, "denoise", __doc__)
    batch_io(den)
    den.add_argument(
        "--method",
        default=None,
        help="a classical filter instead of the model: classical (automatic choice), "
        "gaussian, median, nlm, tv, wavelet, bm3d",
    )
    den.add_argument(
        "--model",
        default=None,
        metavar="NAME_OR_DIR",
        help="'auto' (default: the bundled model for the modality), a name "
        "(`em-restore models`) or a model folder",
    )
    modality_option(
        den, "picks the default model; for filters, checks STEM/SEM noise for scan correlation"
    )
    den.add_argument(
        "--no-fallback",
        action="store_true",
        help="the default model's result everywhere: skip its fidelity check and the "
        "classical fallback where the counts do not support it",
    )
    den.add_argument(
        "--no-compare",
        action="store_true",
        help="the default model checked against the counts only (fast): do not also make "
        "the classical plan's result and blend the two by their estimated risk",
    )
    den.add_argument(
        "--strength",
        type=float,
        default=None,
        help="fix a filter's strength instead of calibrating it (with --method)",
    )
    den.add_argument(
        "--tile",
        type=int,
        default=None,
        help="model tile side in px (a multiple of the network's stride, larger than the "
        "overlap; default: the model's inference default, 1152)",
    )
    den.add_argument(
        "--ensemble",
        type=int,
        default=None,
        choices=(1, 2, 4, 8),
        help="average the model over this many flips/rotations (each a full pass; "
        "default: the model's own, 1 for em-denoise-fast)",
    )
    restoration_options(den, _denoise)


run = _denoise
