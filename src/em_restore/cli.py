"""``em-restore``: the headless twin of the napari plugin.

Every subcommand calls the same backend functions as the widgets. User errors
(bad file, bad option) print one line to stderr and exit with status 2; a
traceback means a bug in em-restore.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from em_restore import __version__

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input, reported as one line, no traceback."""


def _info(args: argparse.Namespace) -> int:
    from em_restore import io

    image = io.read(args.file)
    summary = describe(image, args.file)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return 0


def describe(image: Any, path: str | Path) -> dict[str, Any]:
    """Plain-dict summary of an :class:`em_restore.io.EMImage` (no pixels read)."""
    py, px = image.pixel_size
    frames = [
        {"axis": a, "length": int(n), "step": s, "unit": u}
        for a, n, s, u in zip(image.axes, image.data.shape, image.scale, image.units, strict=True)
        if a not in "yxc"
    ]
    return {
        "file": str(path),
        "format": image.metadata.get("format"),
        "shape": [int(n) for n in image.data.shape],
        "axes": image.axes,
        "dtype": str(image.data.dtype),
        "pixel_size": [py, px],
        "unit": image.spatial_unit,
        "frames": frames,
        "size_mb": round(image.data.nbytes / 1e6, 3),
    }


def format_summary(s: dict[str, Any]) -> str:
    shape = " × ".join(str(n) for n in s["shape"])
    py, px = s["pixel_size"]
    size = f"{px:.6g} {s['unit']}" if py == px else f"{py:.6g} × {px:.6g} {s['unit']} (y × x)"
    lines = [
        f"file:       {s['file']}",
        f"format:     {s['format']}",
        f"shape:      {shape} ({s['axes']})",
        f"dtype:      {s['dtype']}",
        f"pixel size: {size}",
    ]
    for f in s["frames"]:
        lines.append(f"axis {f['axis']}:     {f['length']} × {f['step']:.6g} {f['unit']}")
    lines.append(f"size:       {s['size_mb']:.3f} MB")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="em-restore",
        description="Restore electron-microscopy images (headless twin of the napari plugin).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    info = sub.add_parser("info", help="print shape, dtype, pixel size and unit of a file")
    info.add_argument("file", help="TIFF, MRC, DM3/DM4, EMD, TIA (.emi/.ser), PNG or JPEG")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``em-restore`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (UserError, ValueError, OSError) as exc:
        # ValueError covers io.UnsupportedFileError and the backend's input checks;
        # OSError covers missing, unreadable and refused (existing) files.
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"em-restore: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("em-restore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
