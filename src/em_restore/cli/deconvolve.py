"""``em-restore deconvolve``: denoise, estimate the blur kernel and remove it (blind unless
--psf)

Two-stage restoration: automatic denoising, then deconvolution. Without --psf the blur
kernel is estimated from the image (blind); --psf-out saves it. The kernel and the
parameters are planned on the middle frame of a stack and applied to every frame.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

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


def _read_psf(spec: str) -> tuple[Any, str]:
    """--psf: a spec (gaussian:2.0, disk:3, motion:11,35) or a 2-D kernel file."""
    import numpy as np

    from em_restore import io
    from em_restore.backend.psf import parse_psf

    kind = spec.partition(":")[0].strip().lower()
    if kind in {"gaussian", "disk", "motion"}:
        return parse_psf(spec), spec
    path = Path(spec)
    if not path.exists():
        raise UserError(
            f"--psf {spec!r} is neither a kernel spec (gaussian:SIGMA, disk:RADIUS, "
            "motion:LENGTH,ANGLE) nor an existing file; fix the spec or the path"
        )
    kernel = io.read(path)
    if kernel.data.ndim != 2:
        raise UserError(
            f"--psf file {spec!r} has shape {tuple(kernel.data.shape)}; a kernel is one 2-D "
            "image — save a single frame"
        )
    return np.asarray(kernel.data, dtype=np.float64), str(path)


def _deconvolve(args: argparse.Namespace) -> int:
    import numpy as np

    from em_restore import io
    from em_restore.backend import deconvolve as backend

    out = check_output(args.input, args.output, args.overwrite)
    psf_out = None
    if args.psf_out is not None:
        psf_out = Path(args.psf_out)
        if psf_out.resolve() in {Path(args.input).resolve(), out.resolve()}:
            raise UserError(
                f"--psf-out {str(psf_out)!r} is the input or the output; choose another name"
            )
        psf_out = check_output(args.input, psf_out, args.overwrite)
        if psf_out.suffix.lower() == ".zarr":
            raise UserError("--psf-out must be a .tif/.tiff file (the kernel is one small image)")
    fid_out = prepare_fidelity_out(args, out)
    if fid_out is not None and args.windows != 1:
        raise UserError(
            "--fidelity-out needs one kernel for the whole frame; drop --windows or --fidelity-out"
        )
    psf, source = (None, "blind") if args.psf is None else _read_psf(args.psf)
    if psf is not None and args.windows != 1:
        raise UserError("--windows applies to blind deconvolution; drop --psf or --windows")
    image = io.read(args.input)
    greyscale(image, args.input)
    drive = progress_printer(not args.quiet and sys.stderr.isatty())
    lead = image.data.shape[:-2]
    frame = np.asarray(image.data[tuple(n // 2 for n in lead)])
    stage1: object = None if args.no_denoise else "classical"
    if stage1 is not None and args.denoise == "model":
        from em_restore.backend.models.inference import plan_model

        stage1 = plan_model(
            None, modality=args.modality, metadata=image.metadata, device=args.device
        )
    plan = drive(
        backend.iter_plan_deconvolve(
            frame,
            psf,
            solver=args.solver,
            denoise=stage1,
            modality=args.modality,
            windows=(args.windows, args.windows),
            max_size=args.max_kernel_size,
        )
    )
    if wants_stream(args, image):
        restored = backend.deconvolve_lazy(image.data, plan)
    else:
        restored = drive(backend.iter_deconvolve(image.data, plan))
    meta = plan.to_metadata()
    if source != "blind":
        meta["psf_source"] = source
    metadata = {
        "operation": "deconvolve",
        "input": str(args.input),
        "deconvolve": meta,
        "em_restore_version": __version__,
    }
    shown = not args.quiet and sys.stderr.isatty()
    write_result(out, restored, image, metadata, scheduler=args.scheduler, progress=shown)
    if psf_out is not None:
        io.write_tiff(
            psf_out,
            plan.psf.astype(np.float32),
            metadata={"operation": "psf", "input": str(args.input), "psf_source": source},
            overwrite=True,
        )
    if not args.quiet:
        k = plan.psf
        kind = "estimated" if source == "blind" else "given"
        extra = f", kernel -> {psf_out}" if psf_out is not None else ""
        print(
            f"deconvolved {args.input} ({plan.solver}, {kind} kernel {k.shape[0]}x{k.shape[1]} px"
            f"{', denoised first' if plan.denoise is not None else ''}) -> {out}{extra}"
        )
    if fid_out is not None:
        from em_restore.backend.psf import convolve

        kernel = np.asarray(plan.psf, dtype=np.float64)

        def blur(x, kernel=kernel):
            return convolve(x, kernel)

        write_fidelity_out(fid_out, args, out, image, forward=blur)
    return 0


def add_parser(sub) -> None:
    dec = command_parser(sub, "deconvolve", __doc__)
    batch_io(dec)
    dec.add_argument("--psf-out", default=None, metavar="PSF.tif", help="save the kernel used")
    dec.add_argument(
        "--psf",
        default=None,
        metavar="SPEC_OR_FILE",
        help="known kernel: gaussian:SIGMA_PX, disk:RADIUS_PX, motion:LENGTH_PX,ANGLE_DEG "
        "or a 2-D kernel image file (default: blind estimation)",
    )
    dec.add_argument(
        "--solver",
        choices=("rl", "wiener"),
        default="rl",
        help="Richardson-Lucy with TV (default, no ringing) or Wiener (one pass)",
    )
    dec.add_argument(
        "--denoise",
        choices=("model", "classical"),
        default="model",
        help="stage 1: the bundled denoising network for the modality (default) or the "
        "automatic classical filters",
    )
    dec.add_argument(
        "--no-denoise", action="store_true", help="skip the denoise stage (clean data)"
    )
    modality_option(dec, "for the denoise stage")
    dec.add_argument(
        "--windows",
        type=int,
        default=1,
        help="N: one kernel per window of an N x N grid (spatially varying blur, blind only)",
    )
    dec.add_argument(
        "--max-kernel-size",
        type=int,
        default=None,
        help="largest kernel side in px, odd (default: min(31, short side / 8))",
    )
    restoration_options(dec, _deconvolve)


run = _deconvolve
