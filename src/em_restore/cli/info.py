"""``em-restore info``: print shape, dtype, pixel size and unit of a file"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import command_parser


def _info(args: argparse.Namespace) -> int:
    from em_restore import io

    images = io.read_all(args.file)
    summary = describe(images[0], args.file)
    others = images[0].metadata.get("other_signals", [])
    if len(images) > 1 or others:  # every image signal, then what is not an image
        summary["image_signals"] = [
            {"title": im.metadata.get("title"), **describe(im, args.file)} for im in images
        ]
        summary["other_signals"] = others
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(format_summary(summary))
    for s in summary.get("image_signals", []):
        shape, (_, px) = " × ".join(map(str, s["shape"])), s["pixel_size"]
        print(f"image:      {s['title']!r} {shape} {s['dtype']} {px:.6g} {s['unit']}")
    for o in summary.get("other_signals", []):
        print(f"not opened: {o['title']!r} {o['kind']} {' × '.join(map(str, o['shape']))}")
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


def add_parser(sub) -> None:
    info = command_parser(sub, "info", __doc__)
    info.add_argument("file", help="TIFF, MRC, DM3/DM4, EMD, TIA (.emi/.ser), PNG or JPEG")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_info)


run = _info
