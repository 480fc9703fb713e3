"""``em-restore profile``: line profile with particle sizing (diameter, edge width, pair
resolution)

Sample a line (or polyline) across particles and size them with a projected-sphere fit:
centre, diameter, FWHM, edge width and, for neighbours, whether (d1+d2)/2 < l. Positions
and sizes are in the file's physical unit (px if it has none).
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ._common import (
    UserError,
    command_parser,
)


def _parse_line(text: str) -> list[tuple[float, float]]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) < 4 or len(values) % 2:
        raise UserError(
            f"--line must be Y0,X0,Y1,X1 (or more Y,X pairs for a polyline) in pixels; "
            f"got {text!r}."
        )
    return list(zip(values[::2], values[1::2], strict=True))


def _frame_of(image: Any, frame: int | None) -> tuple[Any, str]:
    """The 2-D frame to measure, and a note naming it for a stack."""
    if "c" in image.axes:
        raise UserError(
            f"{image.metadata.get('format', 'this')} image has colour channels (axes "
            f"{image.axes!r}); line profiles need a greyscale image. Convert it to greyscale."
        )
    lead = image.data.shape[:-2]
    if not lead:
        if frame not in (None, 0):
            raise UserError(f"--frame {frame} given but the image is a single frame; drop it.")
        return image.data, ""
    n = math.prod(lead)
    index = 0 if frame is None else frame
    if not 0 <= index < n:
        raise UserError(f"--frame must be in 0..{n - 1} for this stack of {n} frames; got {index}.")
    return image.data.reshape((n, *image.data.shape[-2:]))[index], f"frame {index} of {n}"


def _profile(args: argparse.Namespace) -> int:
    import numpy as np

    from em_restore import io
    from em_restore.backend.profile import length_unit, measure_line

    points = _parse_line(args.line)
    image = io.read(args.input)
    frame, note = _frame_of(image, args.frame)
    unit = length_unit(image.spatial_unit)
    prof, res = measure_line(
        np.asarray(frame),
        points,
        width=args.width,
        scale=image.pixel_size if unit != "px" else 1.0,
        unit=unit,
        appearance=args.appearance,
    )
    if args.json:
        out = {
            "unit": unit,
            "file": str(args.input),
            "frame": args.frame if note else None,
            "line": [list(p) for p in points],
            "width": args.width,
            "profile": prof.to_list(),
            **res.to_dict(),  # background, noise, blur_sigma, particles, pairs
        }
        print(json.dumps(out, indent=1))
        return 0
    print(
        f"{args.input}{' (' + note + ')' if note else ''}: {len(prof.positions)} samples over "
        f"{prof.positions[-1]:.4g} {unit}, width {args.width} px, background "
        f"{res.background:.4g}, noise {res.noise:.3g}"
    )
    if not res.particles:
        print("no particle found on this line (draw it across particles, from background to "
              "background)")  # fmt: skip
    for i, p in enumerate(res.particles):
        edge = "n/a" if p.edge_width is None else f"{p.edge_width:.4g}"
        fwhm = "n/a" if p.fwhm is None else f"{p.fwhm:.4g}"
        print(
            f"particle {i}: centre {p.center:.4g} {unit}, diameter {p.diameter:.4g} {unit}, "
            f"FWHM {fwhm}, edge width {edge} ({p.appearance})"
        )
    for q in res.pairs:
        verdict = "resolved" if q.resolved else "NOT resolved"
        print(
            f"pair {q.first}-{q.second}: distance {q.distance:.4g} {unit}, "
            f"(d1+d2)/2 {q.distance - q.gap:.4g} {unit}: {verdict}"
        )
    return 0


def add_parser(sub) -> None:
    prof = command_parser(sub, "profile", __doc__)
    prof.add_argument("input", help="input file (any format `info` reads)")
    prof.add_argument(
        "--line",
        required=True,
        metavar="Y0,X0,Y1,X1",
        help="end points in pixels (row, column); more pairs make a polyline",
    )
    prof.add_argument("--width", type=int, default=1, help="average this many parallel lines")
    prof.add_argument("--frame", type=int, default=None, help="frame of a stack (default 0)")
    prof.add_argument(
        "--appearance",
        choices=("auto", "dark", "bright"),
        default="auto",
        help="particles darker (bright-field TEM) or brighter (HAADF) than the background",
    )
    prof.add_argument("--json", action="store_true", help="print JSON (profile, particles, pairs)")
    prof.set_defaults(func=_profile)


run = _profile
