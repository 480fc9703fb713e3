"""``em-restore check``: map where a restoration is not supported by the raw counts

Compare a restoration (from em-restore or any other tool) with its raw input: under a
correct restoration raw - restored is the noise the raw's own noise model predicts. MAP
is float32, the shape of RAW, in [0, 1]: higher = less supported (0.5 = flagged). See
docs/fidelity.md.

The map is :func:`em_restore.backend.fidelity.fidelity` of the result against its raw
input, frame by frame (one frame in memory at a time), written as a float32 TIFF or
zarr with the summary in its metadata. The noise model is estimated once, on the
raw's middle frame, unless the restoration's own metadata carries one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from em_restore import __version__

from ._common import UserError, check_output, command_parser, modality_option, write_result


def add_parser(sub: Any) -> None:
    chk = command_parser(sub, "check", __doc__)
    chk.add_argument("raw", help="the raw image or stack (any format `info` reads)")
    chk.add_argument("restored", help="its restoration, same shape and units")
    chk.add_argument("-o", "--output", required=True, help="MAP.tif/.tiff or .zarr")
    modality_option(
        chk, "prior for the noise estimate (scanned probe: correlated along x, line offsets)"
    )
    chk.add_argument("--json", action="store_true", help="print the summary as JSON")
    chk.add_argument("--overwrite", action="store_true", help="replace an existing MAP")
    chk.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    chk.set_defaults(func=run)


def _noise_of(raw: Any, modality: str | None):
    import numpy as np

    from em_restore.backend.fidelity import fidelity_noise

    lead = raw.shape[:-2]
    mid = tuple(n // 2 for n in lead)
    return fidelity_noise(np.asarray(raw[mid], dtype=np.float64), modality=modality)


def fidelity_stack(raw: Any, restored: Any, modality: str | None, forward=None):
    """(lazy map, noise model): the map of ``restored`` against ``raw``, frame by frame."""
    from em_restore.backend.fidelity import fidelity_lazy

    noise = _noise_of(raw, modality)
    return fidelity_lazy(raw, restored, noise, modality=modality, forward=forward), noise


def summarise(fmap: Any, noise: Any) -> dict:
    """Flagged area over the whole map (computed frame by frame), with the noise model."""
    import numpy as np

    from em_restore.backend.fidelity import FLAG_LEVEL

    lead = fmap.shape[:-2]
    fractions = []
    for idx in np.ndindex(*lead):
        frame = np.asarray(fmap[idx])
        fractions.append(float((frame >= FLAG_LEVEL).mean()))
    return {
        "flagged_fraction": round(float(np.mean(fractions)), 5),
        "frames_flagged": [round(f, 5) for f in fractions] if lead else None,
        "flag_level": FLAG_LEVEL,
        "noise": noise.to_dict(),
    }


def write_map(out: Path, fmap: Any, like: Any, metadata: dict) -> None:
    """Write a map (numpy or dask) with the calibration of the image ``like``."""
    write_result(out, fmap, like, metadata)


def check_image_pair(raw: Any, restored: Any, modality: str | None, forward=None):
    """(map, summary) of a restoration against its raw data: a frame once, in full (χ²,
    regions); a stack lazily, frame by frame, with the flagged area per frame."""
    import numpy as np

    from em_restore.backend.fidelity import fidelity

    if len(raw.shape) == 2:
        one = forward[0] if isinstance(forward, list | tuple) else forward
        x = np.asarray(raw, dtype=np.float64)
        f = fidelity(
            x,
            np.asarray(restored, dtype=np.float64),
            _noise_of(x, modality),
            modality=modality,
            forward=one,
        )
        return f.map, f.summary
    fmap, noise = fidelity_stack(raw, restored, modality, forward)
    fmap = fmap.persist() if fmap.nbytes < 2**30 else fmap
    return fmap, summarise(fmap, noise)


def run(args: argparse.Namespace) -> int:

    from em_restore import io

    out = check_output(
        args.raw, args.output, args.overwrite, what="fidelity map", also=[args.restored]
    )
    raw = io.read(args.raw)
    restored = io.read(args.restored)
    for image, path in ((raw, args.raw), (restored, args.restored)):
        if "c" in image.axes:
            raise UserError(
                f"{path!r} is an RGB/RGBA image; the check works on greyscale data in the "
                "raw's units — check the greyscale restoration"
            )
    if tuple(raw.data.shape) != tuple(restored.data.shape):
        raise UserError(
            f"raw {args.raw!r} has shape {tuple(raw.data.shape)} but restored "
            f"{args.restored!r} has {tuple(restored.data.shape)}; check the restoration of "
            "the same image (same frames, no crop)"
        )
    if min(raw.data.shape[-2:]) < 16:
        raise UserError(
            f"the frames are {raw.data.shape[-2]}×{raw.data.shape[-1]} px; the fidelity tests "
            "need at least 16×16 px — check a larger image"
        )
    fmap, summary = check_image_pair(raw.data, restored.data, args.modality)
    metadata = {
        "operation": "fidelity",
        "raw": str(args.raw),
        "restored": str(args.restored),
        "fidelity": summary,
        "em_restore_version": __version__,
    }
    write_map(out, fmap, raw, metadata)
    if args.json:
        print(json.dumps({"output": str(out), **summary}, indent=2))
    elif not args.quiet:
        print(notice(summary) + f" -> {out}")
    return 0


def notice(summary: dict) -> str:
    """One line: how much of the area the data do not support."""
    frac = summary["flagged_fraction"]
    chi2 = summary.get("chi2_ratio")
    extra = f", χ² ratio {chi2:.3f}" if chi2 is not None else ""
    if frac <= 0.05:
        return f"fidelity: supported by the counts ({frac:.1%} of the area flagged{extra})"
    return f"fidelity: {frac:.1%} of the area is not supported by the counts{extra}; see the map"


def prepare_fidelity_out(args: argparse.Namespace, output: Path) -> Path | None:
    """``--fidelity-out``, checked before any work is done (None when not asked for)."""
    path = getattr(args, "fidelity_out", None)
    if path is None:
        return None
    out = check_output(args.input, path, args.overwrite, what="fidelity map", also=[output])
    if out.resolve() == output.resolve():
        raise UserError("--fidelity-out is the output itself; give the map its own name")
    return out


def write_fidelity_out(
    out: Path | None,
    args: argparse.Namespace,
    output: Path,
    image: Any,
    *,
    raw_frames: Any = None,
    forward=None,
) -> dict | None:
    """The map of the written result against its input, into ``out``.

    The result is read back from ``output`` (lazily), so a stack is checked one frame
    at a time however it was computed. ``raw_frames`` replaces the raw stack when the
    result's frames are some of its frames (burst: the window centres); ``forward``
    is applied to the result first (deconvolution: its kernel), one callable or one
    per frame.
    """
    if out is None:
        return None

    from em_restore import io

    result = io.read(output)
    raw = image.data if raw_frames is None else raw_frames
    modality = getattr(args, "modality", None)
    fmap, summary = check_image_pair(raw, result.data, modality, forward)
    write_map(
        out,
        fmap,
        result,
        {
            "operation": "fidelity",
            "raw": str(args.input),
            "restored": str(output),
            "fidelity": summary,
            "em_restore_version": __version__,
        },
    )
    if not args.quiet:
        print(notice(summary) + f" -> {out}")
    return summary
