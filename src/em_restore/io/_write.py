"""Arguments of the image writers (TIFF and zarr), checked once for both.

:func:`writing` refuses an existing path (unless overwriting), checks the axes
against the data, and turns the pixel size, unit and frame interval into the scale
and unit of every axis, as :func:`.write_tiff` and :func:`.write_zarr` record them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["check_axes", "pixel_sizes", "scales", "writing"]


def writing(
    path: str | os.PathLike,
    data: Any,
    pixel_size_nm,
    unit: str,
    axes: str,
    overwrite: bool,
    frame_interval,
) -> tuple[Path, tuple[float, float] | None, list, list]:
    """``(path, (y, x) pixel size or None, scale per axis, unit per axis)`` of a write."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"'{path}' already exists; choose another name or pass overwrite=True to replace it"
        )
    check_axes(axes, data.ndim)
    sizes = pixel_sizes(pixel_size_nm)
    return (path, sizes, *scales(axes, sizes, unit, frame_interval))


def check_axes(axes: str, ndim: int) -> None:
    """One letter per array dimension, each once, ending in ``yx`` (or ``yxc``)."""
    if len(axes) != ndim or len(set(axes)) != ndim:
        raise ValueError(f"axes {axes!r} must name each of the {ndim} array dimensions once")
    if not (axes.endswith("yx") or axes.endswith("yxc")):
        raise ValueError(f"axes {axes!r} must end with 'yx' (or 'yxc' for colour)")


def pixel_sizes(pixel_size_nm: Any) -> tuple[float, float] | None:
    """``(y, x)`` pixel size from one number or a pair; ``None`` when uncalibrated."""
    if pixel_size_nm is None:
        return None
    if np.ndim(pixel_size_nm) == 0:
        size = float(pixel_size_nm)
        return size, size
    size_y, size_x = (float(v) for v in pixel_size_nm)
    return size_y, size_x


def scales(axes: str, sizes, unit: str, frame_interval) -> tuple[list, list]:
    """Scale and unit of every axis: pixel size (or 1 pixel), channel, s or frame."""
    scale, units = [], []
    for letter in axes:
        if letter in "yx":
            scale.append(sizes[0 if letter == "y" else 1] if sizes else 1.0)
            units.append(unit if sizes else "pixel")
        elif letter == "c":
            scale.append(1.0)
            units.append("channel")
        elif letter == "t" and frame_interval:
            scale.append(float(frame_interval))
            units.append("s")
        else:
            scale.append(1.0)
            units.append("frame")
    return scale, units
