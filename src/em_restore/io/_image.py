"""The in-memory result of reading any EM file: a lazy array plus its calibration."""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np


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


# ---------------------------------------------------------------------------
# Helpers shared by the format readers (private).
# ---------------------------------------------------------------------------

_LENGTH_TO_NM = {
    "m": 1e9,
    "cm": 1e7,
    "mm": 1e6,
    "um": 1e3,
    "nm": 1.0,
    "a": 0.1,
    "pm": 1e-3,
}

# Spellings met in vendor files, after lower-casing, removing blanks and
# mapping both micro signs (U+00B5, U+03BC) to "u".
_LENGTH_ALIASES = {
    "meter": "m",
    "meters": "m",
    "metre": "m",
    "metres": "m",
    "centimeter": "cm",
    "millimeter": "mm",
    "micron": "um",
    "microns": "um",
    "micrometer": "um",
    "micrometers": "um",
    "micrometre": "um",
    "micrometres": "um",
    "nanometer": "nm",
    "nanometers": "nm",
    "nanometre": "nm",
    "nanometres": "nm",
    "å": "a",
    "ang": "a",
    "angstrom": "a",
    "angstroms": "a",
    "ångström": "a",
    "ångstrom": "a",
    "picometer": "pm",
    "picometers": "pm",
}

_TIME_TO_S = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "us": 1e-6}
_TIME_TO_S.update({"ns": 1e-9, "min": 60.0, "minute": 60.0, "minutes": 60.0})
_TIME_TO_S.update({"millisecond": 1e-3, "microsecond": 1e-6, "nanosecond": 1e-9})  # UDUNITS

_UNCALIBRATED = {"", "pixel", "pixels", "px", "pix", "none", "[]", "unknown", "<auto>"}


def _normalise_unit(unit: object) -> str:
    text = "" if unit is None else str(unit)
    text = text.replace("\u00b5", "u").replace("\u03bc", "u")
    return "".join(text.split()).lower()


def _length_key(text: str) -> str | None:
    """Return the key of ``_LENGTH_TO_NM`` for a normalised unit, or None."""
    text = _LENGTH_ALIASES.get(text, text)
    return text if text in _LENGTH_TO_NM else None


def _split_reciprocal(text: str) -> tuple[str, bool]:
    """Strip "1/" or "^-1" from a normalised unit; report whether it was there."""
    if text.startswith("1/"):
        return text[2:], True
    for suffix in ("^-1", "**-1", "-1"):
        if text.endswith(suffix) and len(text) > len(suffix):
            return text[: -len(suffix)], True
    return text, False


def _positive(value: object) -> float | None:
    """``float(value)`` if it is a finite number > 0, else None."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    return number


def spatial_to_nm(value: object, unit: object) -> tuple[float, str]:
    """Convert a pixel size to nm (or 1/nm for reciprocal space).

    Parameters
    ----------
    value : float-like
        Pixel size as written in the file.
    unit : str
        Its unit as written in the file ("m", "µm", "micron", "Å", "1/nm"...).

    Returns
    -------
    (float, str)
        ``(size, "nm")`` or ``(size, "1/nm")``; ``(1.0, "pixel")`` when the
        file carries no usable calibration (no unit, size <= 0, NaN); the value
        and unit unchanged when the unit is not a length (e.g. "eV").
    """
    number = _positive(value)
    text = _normalise_unit(unit)
    if number is None or text in _UNCALIBRATED:
        return 1.0, "pixel"
    base, reciprocal = _split_reciprocal(text)
    key = _length_key(base)
    if key is None:
        return number, str(unit).strip()
    factor = _LENGTH_TO_NM[key]
    if reciprocal:
        return number / factor, "1/nm"
    return number * factor, "nm"


def time_to_s(value: object, unit: object = "s") -> tuple[float, str]:
    """Convert a frame step to seconds; ``(1.0, "frame")`` when unknown."""
    number = _positive(value)
    factor = _TIME_TO_S.get(_normalise_unit(unit))
    if number is None or factor is None:
        return 1.0, "frame"
    return number * factor, "s"


def is_time_unit(unit: object) -> bool:
    """True when ``unit`` names a time unit (s, ms, µs...)."""
    return _normalise_unit(unit) in _TIME_TO_S


def jsonable(obj: Any, _depth: int = 0) -> Any:
    """Return a copy of ``obj`` made only of JSON types.

    numpy scalars become Python numbers, small arrays lists, bytes text;
    non-finite floats become None; anything else becomes its ``str``.
    Large arrays are summarised (their pixels must never land in metadata).
    """
    if _depth > 40:
        return None
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return jsonable(obj.item(), _depth + 1)
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj[:4096]).decode("latin-1").rstrip("\x00")
    if isinstance(obj, np.ndarray):
        if obj.size > 256:
            return f"<array shape={list(obj.shape)} dtype={obj.dtype}>"
        return jsonable(obj.tolist(), _depth + 1)
    if isinstance(obj, dict):
        return {str(k): jsonable(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, _depth + 1) for v in obj]
    return str(obj)


def one_line(text: object) -> str:
    """Collapse ``text`` to one line (error messages must be one line)."""
    return " ".join(str(text).split())


def unsupported(path: object, problem: str, hint: str) -> UnsupportedFileError:
    """Build the one-line error: which file, what is wrong, what to do."""
    name = os.path.basename(os.fspath(path)) if path is not None else "?"
    return UnsupportedFileError(one_line(f"cannot read '{name}': {problem} — {hint}"))


def spatial_axes_meta(
    path: object,
    fmt: str,
    pixel_size: tuple[object, object],
    unit: object,
    **extra: Any,
) -> dict[str, Any]:
    """The metadata keys every reader must fill, made JSON-safe."""
    unit_y, unit_x = unit if isinstance(unit, (tuple, list)) else (unit, unit)
    meta = {
        "format": fmt,
        "source": os.fspath(path),
        "original_pixel_size": [jsonable(pixel_size[0]), jsonable(pixel_size[1])],
        "original_unit": jsonable(unit_x if unit_x == unit_y else [unit_y, unit_x]),
    }
    meta.update(jsonable(extra))
    return meta


def frame_axis(step: object = None, unit: object = "s") -> tuple[str, float, str]:
    """Letter, scale and unit of a frame axis: "t" in s when known, else frames."""
    scale, out_unit = time_to_s(step, unit)
    return "t", scale, out_unit


class RawFrames:
    """Read-only frames of raw pixels in a file, read on demand.

    Used for every uncompressed format (MRC, DM, SER, contiguous TIFF): nothing is
    read at open time; each frame is read with one positioned read when it is asked
    for and copied out in native byte order. Frames are read, not memory-mapped:
    pages of a mapped file stay in the process's resident memory once touched, so
    streaming a stack through a map grows with the stack (bench_stream.py).

    Parameters
    ----------
    path : str
        File to map.
    dtype : numpy.dtype
        Pixel type with the file's byte order.
    frame_shape : tuple of int
        Shape of one frame (y, x) or (y, x, c).
    offsets : sequence of int
        Byte offset of each frame in the file.
    stacked : bool
        If False the array is just one frame (``len(offsets) == 1``).
    """

    def __init__(self, path, dtype, frame_shape, offsets, stacked=True):
        self.path = os.fspath(path)
        self.file_dtype = np.dtype(dtype)
        self.dtype = self.file_dtype.newbyteorder("=")
        self.frame_shape = tuple(int(n) for n in frame_shape)
        self.offsets = tuple(int(o) for o in offsets)
        self.stacked = stacked
        lead = (len(self.offsets),) if stacked else ()
        self.shape = lead + self.frame_shape
        self.ndim = len(self.shape)
        self._frame_bytes = int(np.prod(self.frame_shape)) * self.file_dtype.itemsize
        self._lock = threading.Lock()

    def check_size(self, problem_path: object = None) -> None:
        """Raise UnsupportedFileError if the frames run past the end of the file."""
        size = os.path.getsize(self.path)
        end = max(self.offsets, default=0) + self._frame_bytes
        if min(self.offsets, default=0) < 0 or end > size:
            raise unsupported(
                problem_path or self.path,
                f"file is truncated (pixel data needs {end} bytes, file has {size})",
                "copy the file again from the microscope PC or re-export it",
            )

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_lock"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __dask_tokenize__(self):
        return (
            self.path,
            os.path.getmtime(self.path),
            str(self.file_dtype),
            self.shape,
            self.offsets[:1],
            len(self.offsets),
        )

    def _frame(self, index: int) -> np.ndarray:
        start, n = self.offsets[index], self._frame_bytes
        with open(self.path, "rb") as fh:
            if hasattr(os, "pread"):
                raw = os.pread(fh.fileno(), n, start)
            else:  # pragma: no cover - Windows
                fh.seek(start)
                raw = fh.read(n)
        if len(raw) != n:
            raise unsupported(
                self.path,
                f"file is truncated (frame {index} needs {n} bytes at {start})",
                "copy the file again from the microscope PC or re-export it",
            )
        return np.frombuffer(raw, dtype=self.file_dtype).reshape(self.frame_shape)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if not self.stacked:
            return np.array(self._frame(0)[key], dtype=self.dtype)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            return np.array(self._frame(int(first))[rest], dtype=self.dtype)
        indices = np.arange(len(self.offsets))[first]
        frames = [self._frame(int(i))[rest] for i in np.atleast_1d(indices)]
        if not frames:
            empty = np.empty((0, *self.frame_shape), self.dtype)
            return empty[(slice(None), *rest)]
        return np.stack(frames).astype(self.dtype, copy=False)


def lazy(array_like: Any, chunks: Any) -> da.Array:
    """Wrap an array-like (RawFrames, h5py dataset...) in dask without reading it."""
    meta = np.empty((0,) * array_like.ndim, dtype=array_like.dtype)
    return da.from_array(array_like, chunks=chunks, name=False, meta=meta, asarray=False)


def frame_chunks(shape: tuple[int, ...], n_lead: int = 1) -> tuple[int, ...]:
    """One chunk per frame: 1 along the leading axes, full along the rest."""
    return tuple(1 if i < n_lead else n for i, n in enumerate(shape))
