"""Zarr stores for results: OME-Zarr (NGFF 0.5), chunked, written chunk by chunk.

Layout: a Zarr v3 group whose ``"0"`` array holds the pixels (one frame per chunk,
``dimension_names`` = the axes), with the NGFF 0.5 ``ome`` attribute (``multiscales``:
axes with their type and unit — ``nanometer``, ``second`` — and the scale of the
one level), so napari-ome-zarr, ome-zarr-py and other OME-Zarr readers place it at
its physical size, and our own ``"em_restore"`` attribute (axes, scale, units,
metadata) that :func:`read_zarr` restores exactly. NGFF 0.5 is the version for Zarr
v3 (0.4 is Zarr v2 only). Written to a temporary folder and renamed into place, so a
failed write never leaves a store that looks complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ._image import EMImage, jsonable, spatial_to_nm, time_to_s, unsupported
from ._write import writing

_NGFF_TYPES = {"t": "time", "z": "space", "y": "space", "x": "space", "c": "channel"}
_NGFF_UNITS = {"nm": "nanometer", "s": "second"}
_NGFF_VERSION = "0.5"
# NGFF orders axes time, channel, then space (z, y, x); colour last (yxc) is not allowed
_NGFF_ORDER = "tczyx"


def write_zarr(
    path: str | os.PathLike,
    data: Any,
    *,
    pixel_size_nm: float | tuple[float, float] | None = None,
    unit: str = "nm",
    axes: str = "yx",
    metadata: dict | None = None,
    overwrite: bool = False,
    frame_interval: float | None = None,
) -> Path:
    """Write an image or stack to a zarr store (same arguments as ``write_tiff``).

    Dask arrays are written chunk by chunk (one frame per chunk), never
    gathered in memory.
    """
    import zarr

    path, sizes, scale, units = writing(
        path, data, pixel_size_nm, unit, axes, overwrite, frame_interval
    )
    array = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    frame_ndim = 3 if axes.endswith("c") else 2
    array = array.rechunk((1,) * (array.ndim - frame_ndim) + array.shape[-frame_ndim:])
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        if _ngff_axes_ok(axes):
            group.attrs["ome"] = {
                "version": _NGFF_VERSION,
                "multiscales": [_ngff(axes, scale, units)],
            }
        group.attrs["em_restore"] = {
            "version": 1,
            "axes": axes,
            "scale": scale,
            "units": units,
            "original_pixel_size": list(sizes) if sizes else [1.0, 1.0],
            "original_unit": unit if sizes else "pixel",
            "metadata": jsonable(metadata or {}),
        }
        target = group.create_array(
            "0",
            shape=array.shape,
            chunks=array.chunksize,
            dtype=array.dtype,
            dimension_names=list(axes),
        )
        _store_joined(array, target)
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _store_joined(array: da.Array, target) -> None:
    """``da.store``, returning only when no thread still writes (also after an error).

    dask re-raises a failed chunk at once while other threads finish theirs; with
    our own pool, leaving the ``with`` waits for them, so the partial store can then
    be removed for good. A cluster (another scheduler) manages its own workers.
    """
    import dask

    lazy = da.store(array, target, lock=False, compute=False)
    if dask.config.get("scheduler", None) not in (None, "threads", "threading"):
        dask.compute(lazy)
        return
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        dask.compute(lazy, scheduler="threads", pool=pool)


def _ngff_axes_ok(axes: str) -> bool:
    """NGFF wants 2 to 5 axes, at least 2 spatial, in the order t, c, z, y, x."""
    order = [_NGFF_ORDER.index(a) for a in axes]
    return 2 <= len(axes) <= 5 and order == sorted(order) and axes.endswith("yx")


def _ngff(axes: str, scale: list, units: list) -> dict:
    """One NGFF ``multiscales`` entry: the axes, their units, one full-resolution level."""
    ngff_axes = []
    for letter, unit in zip(axes, units, strict=True):
        entry = {"name": letter, "type": _NGFF_TYPES.get(letter, "space")}
        if unit in _NGFF_UNITS:
            entry["unit"] = _NGFF_UNITS[unit]
        ngff_axes.append(entry)
    return {
        "name": "em_restore",
        "axes": ngff_axes,
        "datasets": [
            {
                "path": "0",
                "coordinateTransformations": [
                    {"type": "scale", "scale": [float(v) for v in scale]}
                ],
            }
        ],
    }


def read_zarr(path: str | os.PathLike) -> EMImage:
    """Open a store written by :func:`write_zarr` (or a plain NGFF image) lazily."""
    import zarr

    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
        array = group["0"]
    except Exception as exc:
        raise unsupported(
            path, f"not a zarr image store ({type(exc).__name__})", "write it with em-restore"
        ) from exc
    ours = dict(group.attrs.get("em_restore", {}))
    data = da.from_zarr(array)
    ngff = _ngff_calibration(group.attrs, data.ndim)
    if ours.get("axes") and len(ours["axes"]) == data.ndim:
        axes, scale, units = ours["axes"], ours["scale"], ours["units"]
    elif ngff is not None:  # an OME-Zarr image written by another tool
        axes, scale, units = ngff
    else:
        axes = ("tzyx"[-data.ndim :]) if data.ndim <= 4 else None
        if axes is None:
            raise unsupported(path, f"{data.ndim}-D data", "save at most 4-D (t, z, y, x)")
        scale, units = [1.0] * data.ndim, ["pixel"] * data.ndim
    metadata = {
        "format": "zarr",
        "source": str(path),
        "original_pixel_size": ours.get("original_pixel_size", [1.0, 1.0]),
        "original_unit": ours.get("original_unit", "pixel"),
        **ours.get("metadata", {}),
    }
    return EMImage(data, axes, tuple(scale), tuple(units), metadata)


def _ngff_calibration(attrs: Any, ndim: int) -> tuple[str, list, list] | None:
    """Axes, scale and units (nm, s) of the first level of NGFF 0.4/0.5 ``multiscales``."""
    try:
        multiscales = attrs.get("ome", {}).get("multiscales") or attrs.get("multiscales")
        entry = multiscales[0]
        names = [str(a["name"]).lower() for a in entry["axes"]]
        level = entry["datasets"][0]
        if level["path"] != "0" or len(names) != ndim or any(n not in "tczyx" for n in names):
            return None
        scale = next(t["scale"] for t in level["coordinateTransformations"] if t["type"] == "scale")
    except (AttributeError, IndexError, KeyError, TypeError, StopIteration):
        return None
    steps, units = [], []
    for name, axis, step in zip(names, entry["axes"], scale, strict=True):
        unit = axis.get("unit", "")
        if name == "t":
            value, out = time_to_s(step, unit or "frame")
        elif name == "c":
            value, out = 1.0, "pixel"
        else:
            value, out = spatial_to_nm(step, unit)
        steps.append(value)
        units.append(out)
    return "".join(names), steps, units
