"""``em-restore burst``: restore a fast stream: each window of frames -> one sharp frame

Burst deblurring of a stream from a moving stage. Each window of N consecutive frames
(every S frames) is registered to its middle frame and fused into one sharp frame by the
burst network (default), the classical multi-frame Wiener deconvolution, Fourier burst
accumulation or the registered mean. Output: a stack, frame i registered to input frame
centre_i (in the file's metadata).
"""

from __future__ import annotations

import argparse
import sys

from em_restore import __version__

from ._common import (
    UserError,
    batch_io,
    check_output,
    check_scheduler,
    command_parser,
    compute,
    greyscale,
    restoration_options,
    write_result,
)
from .check import prepare_fidelity_out, write_fidelity_out


def _burst(args: argparse.Namespace) -> int:
    import numpy as np

    from em_restore import io
    from em_restore.backend import burst as backend

    out = check_output(args.input, args.output, args.overwrite)
    fid_out = prepare_fidelity_out(args, out)
    if args.model is not None and args.method != "network":
        raise UserError("--model applies to --method network; drop --model or the --method")
    image = io.read(args.input)
    greyscale(image, args.input)
    shape = tuple(int(n) for n in image.data.shape)
    if len(shape) == 2 or (len(shape) == 3 and shape[0] < 2):
        raise UserError(
            f"{args.input!r} holds a single frame {shape}; burst needs a stack of consecutive "
            "frames of a stream (T, rows, cols) — open the whole stream"
        )
    if len(shape) != 3:
        raise UserError(
            f"{args.input!r} has shape {shape} (axes {image.axes!r}); burst needs one stream "
            "(T, rows, cols) — split the other axes first"
        )
    if args.frames > shape[0]:
        raise UserError(
            f"--frames {args.frames} is more than the {shape[0]} frames of {args.input!r}; "
            f"use --frames {shape[0]} or fewer"
        )
    plan = backend.plan_burst(
        args.method,
        frames=args.frames,
        stride=args.stride,
        model=args.model,
        device=args.device,
        exposure=args.exposure,
    )
    shown = not args.quiet and sys.stderr.isatty()
    check_scheduler(args)  # a stream is always computed lazily
    # Two passes, each one window at a time: register every window (small result,
    # into the metadata before any pixel is written), then fuse with those shifts.
    shifts = compute(
        backend.registrations_lazy(image.data, plan), args.scheduler, shown, "windows registered"
    )
    restored = backend.burst_lazy(image.data, plan, shifts)
    info = {
        "centres": backend.output_centres(shape[0], plan.frames, plan.stride),
        "shifts": np.round(shifts, 4).tolist(),
    }
    metadata = {
        "operation": "burst",
        "input": str(args.input),
        "burst": {**plan.to_metadata(), **info},
        "em_restore_version": __version__,
    }
    write_result(
        out,
        restored,
        image,
        metadata,
        frame_step=args.stride,
        scheduler=args.scheduler,
        progress=shown,
    )
    if not args.quiet:
        what = f"model {plan.model.name}" if plan.model is not None else plan.method
        print(
            f"burst {args.input}: {len(info['centres'])} frame(s) from windows of {args.frames} "
            f"(stride {args.stride}, {what}) -> {out}"
        )
    if fid_out is not None:
        forwards = backend.fidelity_forwards(shifts, plan.exposure)
        raw = image.data[np.asarray(info["centres"])]
        write_fidelity_out(fid_out, args, out, image, raw_frames=raw, forward=forwards)
    return 0


def add_parser(sub) -> None:
    bur = command_parser(sub, "burst", __doc__)
    batch_io(bur, "stream stack(s) (T, rows, cols)")
    bur.add_argument("--frames", type=int, default=5, help="frames per window, >= 2 (default 5)")
    bur.add_argument("--stride", type=int, default=1, help="frames between windows (default 1)")
    bur.add_argument(
        "--method",
        choices=("network", "classical", "fba", "mean"),
        default="network",
        help="burst network (default), classical multi-frame Wiener, Fourier burst "
        "accumulation, or the registered mean",
    )
    bur.add_argument("--model", default=None, help="burst model name or folder (default: em-burst)")
    bur.add_argument(
        "--exposure",
        type=float,
        default=1.0,
        help="fraction of the frame time the detector integrates, for --method classical",
    )
    restoration_options(bur, _burst)


run = _burst
