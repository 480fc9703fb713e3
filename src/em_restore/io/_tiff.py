"""TIFF reader and writer.

Calibration is looked up, in order, in: our own JSON (written by
:func:`write_tiff`), ImageJ metadata, DigitalMicrograph private tags,
FEI/Thermo and Zeiss SEM tags, and a metric ResolutionUnit. A TIFF with none
of these is uncalibrated.

DigitalMicrograph-written TIFFs carry, per dimension (x, y, z):
units in tags 65003 / 65004 / 65005, origins in 65006 / 65007 / 65008,
scales in 65009 / 65010 / 65011 and long unit names in 65012 / 65013 / 65014;
tag 65027 embeds the DM tag tree (DM4 layout).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import tifffile

from .._atomic import atomic_path
from ._image import (
    EMImage,
    RawFrames,
    frame_axis,
    is_time_unit,
    jsonable,
    lazy,
    spatial_axes_meta,
    spatial_to_nm,
    unsupported,
)
from ._write import writing

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
OUR_KEY = "em_restore"
_DM_UNIT = {"x": 65003, "y": 65004, "z": 65005}
_DM_SCALE = {"x": 65009, "y": 65010, "z": 65011}
_DM_TAGS = 65027
_METRIC_RESUNIT = {3: "cm", 4: "mm", 5: "um"}
_AXIS_LETTERS = {"Y": "y", "X": "x", "S": "c", "C": "c", "T": "t", "Z": "z", "I": "t", "Q": "t"}
_IMAGEJ_DTYPES = {np.dtype("uint8"), np.dtype("uint16"), np.dtype("int16"), np.dtype("float32")}
_IMAGEJ_NO_UNIT = {"", "pixel", "pixels", "inch", "in"}
_BIGTIFF_BYTES = 2**32 - 2**25  # leave room for tags below the 4 GB TIFF limit
_HINT = (
    "re-save it as an uncompressed TIFF (e.g. with ImageJ/Fiji) or check the file was copied fully"
)


# -- reading -----------------------------------------------------------------


class _TiffPages:
    """Frames of a TIFF series decoded page by page, on demand.

    For compressed or scattered pages: the file is opened on the first read
    and the handle kept, behind a lock, for later reads.
    """

    def __init__(self, path: str, series: int, n_frames: int, frame_shape, dtype) -> None:
        self.path = path
        self.series = series
        self.frame_shape = tuple(frame_shape)
        self.shape = (n_frames, *self.frame_shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(dtype).newbyteorder("=")
        self._tif: tifffile.TiffFile | None = None
        self._lock = threading.Lock()

    def __getstate__(self):
        return {**self.__dict__, "_tif": None, "_lock": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __dask_tokenize__(self):
        return (self.path, os.path.getmtime(self.path), self.series, self.shape)

    def _page(self, index: int) -> np.ndarray:
        with self._lock:
            if self._tif is None:
                self._tif = tifffile.TiffFile(self.path)
            page = self._tif.asarray(key=index, series=self.series)
        return np.asarray(page, dtype=self.dtype).reshape(self.frame_shape)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            return self._page(int(first))[rest]
        indices = np.atleast_1d(np.arange(self.shape[0])[first])
        frames = [self._page(int(i))[rest] for i in indices]
        if not frames:
            return np.empty((0, *self.frame_shape), self.dtype)[(slice(None), *rest)]
        return np.stack(frames)


def _frame_ndim(axes: str) -> int:
    """Number of trailing axes that make one frame: YX, or YXS / SYX (RGB)."""
    if axes.endswith("YXS") or axes.endswith("SYX"):
        return 3
    if axes.endswith("YX"):
        return 2
    raise ValueError(f"TIFF series axes {axes!r} do not end with Y, X")


def _page_offsets(series: tifffile.TiffPageSeries, n_frames: int, frame_bytes: int):
    """Byte offset of each frame, or None when frames must be decoded."""
    if series.dataoffset is not None:
        return [series.dataoffset + i * frame_bytes for i in range(n_frames)]
    pages = list(series.pages)
    if len(pages) != n_frames or any(p is None for p in pages):
        return None
    offsets = []
    for page in pages:
        if not (page.is_final and page.is_contiguous) or page.nbytes != frame_bytes:
            return None
        offsets.append(page.dataoffsets[0])
    return offsets


def _lazy_series(path: str, tif: tifffile.TiffFile, index: int) -> da.Array:
    """Dask array of a series: raw frames read on demand (pread), else decoded per page."""
    series = tif.series[index]
    shape, axes = tuple(series.shape), series.axes
    nf = _frame_ndim(axes)
    frame_shape, lead = shape[-nf:], shape[:-nf]
    n_frames = int(np.prod(lead)) if lead else 1
    dtype = series.dtype.newbyteorder(tif.byteorder)
    frame_bytes = int(np.prod(frame_shape)) * dtype.itemsize
    offsets = _page_offsets(series, n_frames, frame_bytes)
    if offsets is not None:
        source = RawFrames(path, dtype, frame_shape, offsets, stacked=True)
        source.check_size()
    elif len(series.pages) == n_frames:
        source = _TiffPages(path, index, n_frames, frame_shape, dtype)
    else:  # several frames per page (rare): decode the series as one block
        return _whole_series(path, index, shape, dtype)
    stack = lazy(source, (1, *frame_shape))
    return stack.reshape(shape) if lead else stack[0]


def _whole_series(path: str, index: int, shape, dtype) -> da.Array:
    def load() -> np.ndarray:
        return tifffile.imread(path, series=index).astype(dtype.newbyteorder("="))

    return da.from_delayed(_delayed(load), shape=shape, dtype=dtype.newbyteorder("="))


def _delayed(func):
    from dask import delayed

    return delayed(func, pure=True)()


def _tag(page: tifffile.TiffPage, code: int, default: Any = None) -> Any:
    tag = page.tags.get(code)
    return default if tag is None else tag.value


def _resolution_size(page: tifffile.TiffPage, code: int) -> float | None:
    """Pixel size (1 / pixels-per-unit) from X/YResolution, or None."""
    value = _tag(page, code)
    if not value:
        return None
    num, den = value if isinstance(value, tuple) else (value, 1)
    return den / num if num and den else None


def _ours(tif: tifffile.TiffFile, shape: tuple) -> dict | None:
    """The calibration write_tiff stored (ImageJ Info or shaped JSON), if it fits."""
    for item in tif.shaped_metadata or ():
        if isinstance(item, dict) and OUR_KEY in item:
            return _check_ours(item[OUR_KEY], shape)
    info = (tif.imagej_metadata or {}).get("Info")
    if not isinstance(info, str) or OUR_KEY not in info:
        return None
    try:
        doc = json.loads(info)
    except ValueError:
        return None
    return _check_ours(doc.get(OUR_KEY), shape) if isinstance(doc, dict) else None


def _check_ours(doc: Any, shape: tuple) -> dict | None:
    if not isinstance(doc, dict) or list(doc.get("shape", [])) != list(shape):
        return None  # edited elsewhere since we wrote it: trust the file's own tags
    return doc


def _imagej_unit(raw: Any) -> str:
    text = str(raw or "")
    return text.replace("\\u00B5", "µ").replace("\\u00b5", "µ")


def _calibration(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> dict:
    """Spatial and stack calibration from the first source that has one."""
    for source in (_from_imagej, _from_dm, _from_fei, _from_zeiss, _from_resunit):
        try:
            found = source(tif, page)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            found = None
        if found:
            return found
    return {"size": (1.0, 1.0), "unit": ("", ""), "source": "none"}


def _from_imagej(tif, page) -> dict | None:
    ij = tif.imagej_metadata
    if not ij:
        return None
    unit = _imagej_unit(ij.get("unit", ""))
    if unit.strip().lower() in _IMAGEJ_NO_UNIT:
        return None  # ImageJ's defaults for an uncalibrated (e.g. 72 dpi) image
    size = (_resolution_size(page, 283), _resolution_size(page, 282))
    stack = {}
    if ij.get("finterval"):
        stack["t"] = (ij["finterval"], ij.get("tunit", "s") or "s")
    if ij.get("spacing"):
        stack["z"] = (ij["spacing"], unit)
    return {"size": size, "unit": (unit, unit), "source": "imagej", "stack": stack}


def _from_dm(tif, page) -> dict | None:
    if _DM_SCALE["x"] not in page.tags:
        return None
    size = (_tag(page, _DM_SCALE["y"]), _tag(page, _DM_SCALE["x"]))
    unit = (_tag(page, _DM_UNIT["y"], ""), _tag(page, _DM_UNIT["x"], ""))
    found = {"size": size, "unit": unit, "source": "digitalmicrograph"}
    if _DM_SCALE["z"] in page.tags:
        z_step, z_unit = _tag(page, _DM_SCALE["z"]), _tag(page, _DM_UNIT["z"], "")
        found["stack"] = {"t" if is_time_unit(z_unit) else "z": (z_step, z_unit)}
    found["vendor"] = _dm_vendor(page)
    return found


def _dm_vendor(page) -> dict:
    """Microscope fields from the DM ImageTags tree embedded in tag 65027."""
    raw = _tag(page, _DM_TAGS)
    if not isinstance(raw, (bytes, bytearray)):
        return {}
    from ._dm import parse_tag_bytes, vendor_fields

    try:  # the embedded tree is the image's ImageTags group
        return vendor_fields({"ImageTags": parse_tag_bytes(bytes(raw))})
    except Exception:  # vendor extras are optional: never fail the read for them
        return {}


def _from_fei(tif, page) -> dict | None:
    fei = tif.fei_metadata
    if not fei:
        return None
    scan = fei.get("Scan") or fei.get("EScan") or {}
    size = (scan.get("PixelHeight"), scan.get("PixelWidth"))
    if size[1] is None:
        return None
    return {"size": size, "unit": ("m", "m"), "source": "fei", "vendor": {"fei": fei}}


def _from_zeiss(tif, page) -> dict | None:
    sem = tif.sem_metadata
    if not sem or "ap_image_pixel_size" not in sem:
        return None
    _, value, unit = sem["ap_image_pixel_size"]
    return {"size": (value, value), "unit": (unit, unit), "source": "zeiss"}


def _from_resunit(tif, page) -> dict | None:
    unit = _METRIC_RESUNIT.get(int(_tag(page, 296, 2)))
    size = (_resolution_size(page, 283), _resolution_size(page, 282))
    if unit is None or size[1] is None:
        return None  # inch / none: 72 dpi defaults are no calibration
    return {"size": size, "unit": (unit, unit), "source": "resolutionunit"}


def _our_axes(axes: str) -> str:
    """tifffile axis codes -> ours, keeping each letter unique."""
    out = []
    for code in axes:
        letter = _AXIS_LETTERS.get(code, "q")
        for spare in (letter, "t", "z", "q", "r", "s", "u", "v", "w"):
            if spare not in out:
                out.append(spare)
                break
    return "".join(out)


def _axis_scale(letter: str, cal: dict, spatial: dict) -> tuple[float, str]:
    if letter in spatial:
        return spatial[letter]
    if letter == "c":
        return 1.0, "channel"
    step = cal.get("stack", {}).get(letter)
    if step is None:
        return 1.0, "frame"
    if letter == "t" or is_time_unit(step[1]):
        return frame_axis(*step)[1:]
    value, unit = spatial_to_nm(*step)
    return (value, unit) if unit != "pixel" else (1.0, "frame")


def read_tiff(path: str | os.PathLike) -> EMImage:
    """Read the first image series of a TIFF file lazily.

    Parameters
    ----------
    path : str or os.PathLike
        ``.tif`` / ``.tiff`` file.

    Returns
    -------
    EMImage
        Axes from the file ("yx", "tyx", "zyx", "yxc"...); RGB samples last.
    """
    path = os.fspath(path)
    with _tifffile_errors() as errors:
        try:
            tif = tifffile.TiffFile(path)
        except (tifffile.TiffFileError, ValueError, IndexError, EOFError) as exc:
            raise unsupported(path, f"not a readable TIFF file ({exc})", _HINT) from exc
        with tif:
            if not tif.series:
                raise unsupported(path, "the TIFF holds no image", _HINT)
            _check_complete(path, tif, errors)
            pixels = _lazy_series(path, tif, 0)
            series = tif.series[0]
            axes = _our_axes(series.axes)
            pixels, axes = _colour_last(pixels, axes)
            ours = _ours(tif, tuple(pixels.shape))
            if ours is not None:
                return _from_ours(path, pixels, ours)
            cal = _calibration(tif, series.keyframe)
    return _assemble(path, pixels, axes, cal)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _tifffile_errors() -> Iterator[list[str]]:
    """Collect what tifffile logs: it reports broken IFD chains only there."""
    handler = _Collect()
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _check_complete(path: str, tif: tifffile.TiffFile, errors: list[str]) -> None:
    """Refuse a file whose page chain is broken or shorter than its header says.

    tifffile only logs such damage and falls back to the pages it finds, which
    would silently turn a truncated stack into a single image.
    """
    broken = [m for m in errors if "page offset" in m or "corrupted" in m]
    if broken:
        raise unsupported(path, f"file is truncated or corrupt ({broken[0]})", _HINT)
    series = tif.series[0]
    found = int(np.prod(series.shape))
    expected = None
    if tif.is_imagej and tif.imagej_metadata:
        images = int(tif.imagej_metadata.get("images", 1) or 1)
        expected = images * int(np.prod(series.keyframe.shape))
    elif tif.is_shaped and tif.shaped_metadata and "shape" in tif.shaped_metadata[0]:
        expected = int(np.prod(tif.shaped_metadata[0]["shape"]))
    if expected is not None and found < expected:
        raise unsupported(
            path,
            f"file is truncated (header announces {expected} pixels, found {found})",
            "copy the file again or re-export it",
        )


def _colour_last(pixels: da.Array, axes: str) -> tuple[da.Array, str]:
    """Planar RGB (c, y, x) -> (y, x, c): colour is always last for us."""
    if axes.endswith("cyx"):
        pixels = da.moveaxis(pixels, -3, -1)
        axes = axes[:-3] + "yxc"
    return pixels, axes


def _from_ours(path: str, pixels: da.Array, doc: dict) -> EMImage:
    meta = dict(doc.get("metadata") or {})
    meta.update(
        format="tiff",
        source=path,
        original_pixel_size=doc.get("original_pixel_size", meta.get("original_pixel_size")),
        original_unit=doc.get("original_unit", meta.get("original_unit")),
        calibration_source="em_restore",
    )
    scale = tuple(float(s) for s in doc["scale"])
    return EMImage(pixels, str(doc["axes"]), scale, tuple(doc["units"]), jsonable(meta))


def _assemble(path: str, pixels: da.Array, axes: str, cal: dict) -> EMImage:
    (size_y, size_x), (unit_y, unit_x) = cal["size"], cal["unit"]
    spatial = {"y": spatial_to_nm(size_y, unit_y), "x": spatial_to_nm(size_x, unit_x)}
    pairs = [_axis_scale(letter, cal, spatial) for letter in axes]
    meta = spatial_axes_meta(
        path,
        "tiff",
        (size_y, size_x),
        (unit_y, unit_x),
        calibration_source=cal["source"],
        **cal.get("vendor", {}),
    )
    scale = tuple(float(p[0]) for p in pairs)
    return EMImage(pixels, axes, scale, tuple(p[1] for p in pairs), meta)


# -- writing -----------------------------------------------------------------


def _pages(data: Any, frame_ndim: int) -> Iterator[np.ndarray]:
    """Frame by frame, so a dask stack is never held in memory at once."""
    lead = data.shape[: data.ndim - frame_ndim]
    for index in np.ndindex(*lead):
        frame = data[index]
        yield np.asarray(frame.compute() if hasattr(frame, "compute") else frame)


def _imagej_axes(axes: str) -> str | None:
    """ImageJ axis string, or None if ImageJ cannot hold these axes."""
    table = {"yx": "YX", "tyx": "TYX", "zyx": "ZYX", "yxc": "YXS", "tyxc": "TYXS", "zyxc": "ZYXS"}
    return table.get(axes)


def _write_kwargs(data, axes, sizes, unit, scale, units, doc) -> dict[str, Any]:
    dtype = np.dtype(data.dtype)
    ij_axes = _imagej_axes(axes)
    rgb = axes.endswith("c") and data.shape[-1] in (3, 4)
    big = dtype.itemsize * int(np.prod(data.shape)) > _BIGTIFF_BYTES
    imagej = ij_axes is not None and dtype in _IMAGEJ_DTYPES and (not rgb or dtype == np.uint8)
    imagej = imagej and not big  # ImageJ cannot open BigTIFF
    if axes.endswith("c") and not rgb:
        imagej = False
    kwargs: dict[str, Any] = {"shape": data.shape, "dtype": dtype}
    if rgb:
        kwargs["photometric"] = "rgb"
    else:
        kwargs["photometric"] = "minisblack"
    if sizes:
        kwargs["resolution"] = (1.0 / sizes[1], 1.0 / sizes[0])
    if imagej:
        ij = {
            "axes": ij_axes,
            "unit": unit if sizes else "pixel",
            "Info": json.dumps({OUR_KEY: doc}),
        }
        if "t" in axes and units[0] == "s":
            ij["finterval"] = scale[0]
        kwargs.update(imagej=True, metadata=ij)
    else:
        kwargs.update(metadata={OUR_KEY: doc}, resolutionunit="NONE")
        kwargs["bigtiff"] = big
    return kwargs


def write_tiff(
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
    """Write an image or stack as a calibrated TIFF, atomically.

    The file is ImageJ-compatible (uint8, uint16, int16 and float32 data;
    resolution = 1 / pixel size, ImageJ ``unit``) and always carries our own
    JSON (axes, scale, units, metadata) so :func:`read` restores them exactly.
    Other dtypes are written as plain TIFF with that JSON in the description.

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    data : numpy.ndarray or dask.array.Array
        Pixels; the dtype is kept. Dask stacks are written frame by frame.
    pixel_size_nm : float or (float, float), optional
        Pixel size (y, x) in ``unit``; None writes an uncalibrated image.
    unit : str
        Unit of ``pixel_size_nm`` ("nm", or "1/nm" for diffraction).
    axes : str
        One letter per axis, ending in "yx" (or "yxc" for RGB): "yx", "tyx", "zyx".
    metadata : dict, optional
        JSON-serialisable extras stored with the calibration.
    overwrite : bool
        Replace an existing file. Without it an existing path is refused.
    frame_interval : float, optional
        Time between frames in s (for a "t" axis).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    ValueError
        If ``axes`` does not match ``data``.
    """
    path, sizes, scale, units = writing(
        path, data, pixel_size_nm, unit, axes, overwrite, frame_interval
    )
    doc = {
        "version": 1,
        "shape": list(data.shape),
        "axes": axes,
        "scale": scale,
        "units": units,
        "original_pixel_size": list(sizes) if sizes else [1.0, 1.0],
        "original_unit": unit if sizes else "pixel",
        "metadata": jsonable(metadata or {}),
    }
    kwargs = _write_kwargs(data, axes, sizes, unit, scale, units, doc)
    frame_ndim = 3 if axes.endswith("c") else 2
    _atomic_write(path, _pages(data, frame_ndim), kwargs)
    return path


def _atomic_write(path: Path, pages: Iterator[np.ndarray], kwargs: dict) -> None:
    """Write to a temporary file next to ``path``, then rename over it."""
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, pages, **kwargs)


__all__ = ["TIFF_MAGICS", "read_tiff", "write_tiff"]
