"""npe2 sample-data contributions: the bundled simulated examples.

Each sample is read through :mod:`em_restore.io`, so it opens with its pixel
size exactly as a user's own file would.
"""

from __future__ import annotations

from typing import Any

from em_restore import io
from em_restore._napari._layers import layer_data_tuple
from em_restore.samples import sample_path

LayerData = list[tuple[Any, dict[str, Any], str]]


def _layers(*files: tuple[str, str, bool]) -> LayerData:
    out = []
    for filename, name, visible in files:
        data, kwargs, kind = layer_data_tuple(io.read(sample_path(filename)), name)
        kwargs["visible"] = visible
        out.append((data, kwargs, kind))
    return out


def nanoparticles() -> LayerData:
    """Gold-like nanoparticles at 5 e⁻/px and their 1000 e⁻/px twin."""
    return _layers(
        ("nanoparticles_1000e.tif", "nanoparticles 1000 e⁻/px", False),
        ("nanoparticles_5e.tif", "nanoparticles 5 e⁻/px", True),
    )


def vesicles() -> LayerData:
    """Liquid-cell TEM vesicles, noisy and blurred, with the clean truth."""
    return _layers(
        ("vesicles_clean.tif", "vesicles truth", False),
        ("vesicles_noisy.tif", "vesicles noisy+blurred", True),
    )


def stream() -> LayerData:
    """A moving-stage stream (motion blur + drift + noise) with sharp references."""
    return _layers(
        ("stream_sharp.tif", "stream sharp references", False),
        ("stream_noisy.tif", "stream noisy", True),
    )
