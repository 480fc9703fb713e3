"""npe2 reader contribution: any file :mod:`em_restore.io` understands.

A file opens as one layer per image signal (a Velox EMD with DF4 segments, DPC and
iDPC opens each, named by its title); spectra and 4-D data in the same file are
listed in every layer's metadata (``em_restore.other_signals``), not opened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import dask.array as da

from em_restore import io
from em_restore._napari._layers import layer_data_tuple

LayerData = list[tuple[Any, dict[str, Any], str]]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], LayerData] | None:
    """Return a reader for ``path``, or None so napari can try another plugin."""
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(io.can_read(p) for p in paths):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> LayerData:
    """Read one or several files into image layer data tuples (lazy), one per image signal."""
    paths = [path] if isinstance(path, str) else list(path)
    layers = []
    for p in paths:
        images = io.read_all(p)
        for image in images:
            name = image.metadata.get("title") if len(images) > 1 else None
            layers.append(layer_data_tuple(_displayable(image), name or Path(p).stem))
    return layers


def _displayable(image: io.EMImage) -> io.EMImage:
    """napari shows no complex images: a complex signal (Velox DPC) as its magnitude."""
    if not image.data.dtype.kind == "c":
        return image
    meta = {**image.metadata, "shown": "magnitude |z| of complex data (read the file for z)"}
    return replace(image, data=da.absolute(image.data), metadata=meta)
