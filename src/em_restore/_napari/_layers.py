"""Convert between :class:`em_restore.io.EMImage` and napari layer data tuples."""

from __future__ import annotations

from typing import Any

import numpy as np

from em_restore.io import EMImage

# napari has one scale per axis and no per-axis unit before 0.6; we keep the
# units in metadata too so the writer and the measurement tools can read them.


def contrast_limits_from_first_frame(image: EMImage) -> tuple[float, float] | None:
    """Robust display range from one frame only, so opening a stack stays lazy."""
    if "c" in image.axes:
        return None
    index = tuple(0 for _ in range(image.data.ndim - 2))
    frame = np.asarray(image.data[index].compute(), dtype=np.float64)
    finite = frame[np.isfinite(frame)]
    if finite.size == 0:
        return None
    lo, hi = np.percentile(finite, [0.1, 99.9])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1.0
    return (float(lo), float(hi))


def layer_data_tuple(image: EMImage, name: str) -> tuple[Any, dict[str, Any], str]:
    """napari ``(data, kwargs, "image")`` for a read file, at its physical scale."""
    rgb = "c" in image.axes
    spatial = [i for i, a in enumerate(image.axes) if a != "c"]
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": tuple(image.scale[i] for i in spatial),
        "units": tuple(_napari_unit(image.units[i]) for i in spatial),
        "axis_labels": tuple(image.axes[i] for i in spatial),
        "rgb": rgb,
        "metadata": {
            "em_restore": {
                "axes": image.axes,
                "scale": list(image.scale),
                "units": list(image.units),
                **image.metadata,
            }
        },
    }
    limits = contrast_limits_from_first_frame(image)
    if limits is not None:
        kwargs["contrast_limits"] = limits
    return (image.data, kwargs, "image")


def _napari_unit(unit: str) -> str | None:
    """napari's units go through pint: map ours to names pint knows."""
    return {
        "nm": "nm",
        "1/nm": "1/nm",
        "s": "s",
        "pixel": "pixel",
        "frame": "pixel",
    }.get(unit, "pixel")
