"""``em-restore live``: restore frames while they are recorded (folder, growing stack,
synthetic)

Restore an acquisition while it is recorded: each new frame of SOURCE is denoised (the
fast network by default) or, with --burst N, fused with the N-1 frames before it, and
appended to OUT.zarr. SOURCE: a folder into which image files appear (name order;
.part/.tmp and hidden names ignored), a growing .tif/.mrc stack, or
synthetic[:fps=20,size=512,frames=N,dose=20,speed=1.5,pool=48,seed=0]. See docs/live.md.

SOURCE is a folder (new files, one frame each), a growing TIFF/MRC stack, or the
synthetic microscope ``synthetic[:fps=20,size=512,frames=N,dose=20,speed=1.5]``.
Restored frames are appended to OUT.zarr one by one (resizable time axis), so the
store is readable at any moment; the run stops after ``--stop-after`` frames,
after ``--idle-timeout`` seconds without a new frame, when the source ends, or on
Ctrl-C, and the last line gives frames done, fps and latency p50/p95.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from em_restore import __version__

from ._common import command_parser, device_option


def add_parser(sub: Any) -> None:
    live = command_parser(sub, "live", __doc__)
    live.add_argument("source", help="folder, stack file or synthetic[:key=value,...]")
    live.add_argument("-o", "--output", required=True, help="OUT.zarr (appended frame by frame)")
    live.add_argument(
        "--burst",
        type=int,
        default=None,
        metavar="N",
        help="fuse each frame with the N-1 before it (classical Wiener; --method mean)",
    )
    live.add_argument(
        "--method",
        default=None,
        help="denoise: network (default) or a classical filter (gaussian, nlm, ...); "
        "burst: classical (default) or mean",
    )
    live.add_argument("--model", default=None, help="denoise model name or folder")
    device_option(live)
    live.add_argument("--stop-after", type=int, default=None, metavar="N", help="stop after N")
    live.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds without a new frame",
    )
    live.add_argument(
        "--policy",
        choices=("queue", "drop"),
        default="queue",
        help="when frames come faster than they are restored: queue them (default) or drop "
        "the oldest (counted)",
    )
    live.add_argument("--queue", type=int, default=8, help="queue length in frames (default 8)")
    live.add_argument(
        "--workers",
        type=int,
        default=1,
        help="denoise: frames restored at once (default 1; 2 with --threads 1 on a 2-core CPU)",
    )
    live.add_argument(
        "--threads", type=int, default=None, help="torch threads per frame (default torch's)"
    )
    live.add_argument("--overwrite", action="store_true", help="replace an existing OUT.zarr")
    live.add_argument("-q", "--quiet", action="store_true", help="print only the last line")
    live.set_defaults(func=run)


def _output(path: str, overwrite: bool) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".zarr":
        raise ValueError(
            f"live output {path!r} has extension {out.suffix!r}; live frames are appended to a "
            "zarr store: use OUT.zarr"
        )
    if out.exists() and not overwrite:
        raise FileExistsError(f"output {path!r} already exists; pass --overwrite to replace it")
    return out


def run(args: argparse.Namespace) -> int:
    from em_restore.backend import live as L
    from em_restore.backend.live_sources import open_source

    out = _output(args.output, args.overwrite)
    mode = "burst" if args.burst is not None else "denoise"
    restorer = L.plan_live(
        mode,
        method=args.method,
        frames=args.burst or 5,
        model=args.model,
        device=args.device,
    )
    if args.threads is not None and mode == "denoise" and args.method in (None, "network"):
        import torch

        torch.set_num_threads(max(1, args.threads))
    source = open_source(args.source)
    gen = L.iter_live(
        source,
        restorer,
        policy=args.policy,
        queue_size=args.queue,
        stop_after=args.stop_after,
        idle_timeout=args.idle_timeout,
        workers=args.workers,
    )
    store = None
    interrupted = threading.Event()

    def on_sigint(_signum, _frame) -> None:
        # Ctrl-C: the source ends, the frames in hand are finished and written; a
        # second Ctrl-C interrupts at once.
        interrupted.set()
        source.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    summary = None
    try:
        while True:
            try:
                rec = next(gen)
            except StopIteration as stop:
                summary = stop.value
                break
            if store is None:
                meta = {"source": args.source, "live": restorer.to_metadata()}
                meta["em_restore_version"] = __version__
                store = L.LiveZarr(out, rec.restored.shape, metadata=meta, overwrite=args.overwrite)
            store.append(rec.restored, rec.index)
            if not args.quiet and rec.done % 10 == 0:
                print(
                    f"\rlive: {rec.done} frames, {rec.fps:.1f} fps, latency "
                    f"{rec.latency_s * 1e3:.0f} ms, {rec.dropped} dropped",
                    end="",
                    file=sys.stderr,
                )
    finally:
        gen.close()
        if in_main:
            signal.signal(signal.SIGINT, previous)
        if summary is not None and interrupted.is_set():
            summary = dataclasses.replace(summary, stopped="interrupted")
        if store is not None:
            store.close(summary)
    if not args.quiet:
        print(file=sys.stderr)
    if store is None:
        print(f"live: no frame arrived from {source.name} ({summary.stopped}); nothing written")
        return 0
    print(summary.line() + f" -> {out}")
    return 0
