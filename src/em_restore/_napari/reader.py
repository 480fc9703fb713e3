"""npe2 reader contribution: any file :mod:`em_restore.io` understands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    """Read one or several files into image layer data tuples (lazy)."""
    paths = [path] if isinstance(path, str) else list(path)
    return [layer_data_tuple(io.read(p), Path(p).stem) for p in paths]
