"""The in-memory result of reading any EM file: a lazy array plus its calibration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dask.array as da


class UnsupportedFileError(ValueError):
    """Raised when a file is not one the readers understand (or is corrupt).

    The message is one line naming the file, the problem and what to do.
    """


@dataclass
class EMImage:
    """A lazily read EM image or stack.

    Attributes
    ----------
    data : dask.array.Array
        Pixels, never read at open time. Axes as in ``axes``; the last two are
        always (y, x). Vendor dtype is kept.
    axes : str
        One letter per axis of ``data``: ``"yx"``, ``"tyx"`` (frames / time),
        ``"zyx"``; ``"c"`` for colour (RGB/RGBA, last axis of PNG/JPEG/TIFF).
    scale : tuple of float
        Step per axis in ``units``. Spatial axes are in nm (pm and µm are
        converted; reciprocal space is in 1/nm); an uncalibrated spatial axis
        has step 1.0 and unit ``"pixel"``.
    units : tuple of str
        Unit per axis: ``"nm"``, ``"1/nm"``, ``"pixel"``, ``"s"``, ``"frame"``...
    metadata : dict
        ``format`` (reader name), ``source`` (path), ``original_pixel_size`` and
        ``original_unit`` (as written in the file), plus vendor fields that matter
        (voltage, magnification, exposure...) when present. JSON-serialisable.
    """

    data: da.Array
    axes: str
    scale: tuple[float, ...]
    units: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.data.ndim
        if not (len(self.axes) == len(self.scale) == len(self.units) == n):
            raise ValueError(
                f"EMImage axes {self.axes!r}, scale {self.scale} and units {self.units} "
                f"must each have one entry per array dimension ({n})"
            )

    @property
    def pixel_size(self) -> tuple[float, float]:
        """(y, x) pixel size in ``spatial_unit``."""
        iy, ix = self._spatial_indices()
        return (self.scale[iy], self.scale[ix])

    @property
    def spatial_unit(self) -> str:
        return self.units[self._spatial_indices()[1]]

    def _spatial_indices(self) -> tuple[int, int]:
        return (self.axes.index("y"), self.axes.index("x"))
