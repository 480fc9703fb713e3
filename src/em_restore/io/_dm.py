"""Gatan DigitalMicrograph DM3 / DM4 reader.

A DM file is one tree of tags. Sizes and type descriptions are big-endian
(4-byte in DM3, 8-byte in DM4); values use the byte order named in the header.
Only the tree is parsed at open time: the pixel array is located (offset, type,
count) and read lazily, frame by frame.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._image import (
    EMImage,
    RawFrames,
    UnsupportedFileError,
    frame_chunks,
    is_time_unit,
    jsonable,
    lazy,
    spatial_axes_meta,
    spatial_to_nm,
    time_to_s,
    unsupported,
)

# DM tag value types -> struct codes (without byte order).
_SIMPLE = {
    2: "h",
    3: "i",
    4: "H",
    5: "I",
    6: "f",
    7: "d",
    8: "?",
    9: "b",
    10: "B",
    11: "q",
    12: "Q",
}
_STRUCT, _STRING, _ARRAY = 15, 18, 20
_GROUP_TAG, _DATA_TAG = 20, 21

# ImageData/DataType -> numpy type of one pixel.
_PIXEL_TYPES = {
    1: "i2",
    2: "f4",
    6: "u1",
    7: "i4",
    9: "i1",
    10: "u2",
    11: "u4",
    12: "f8",
    14: "u1",
    39: "i8",
    40: "u8",
}
_RGB_TYPES = {8, 23}  # packed B, G, R, A bytes per pixel
_COMPLEX_TYPES = {3, 4, 5, 13}

# Decode arrays up to this many elements into the tree (units, names, small
# lists); larger ones (pixels, thumbnails) are only located.
_SMALL_ARRAY = 4096
_MAX_DEPTH = 64
_HINT = "check that the file was fully copied, or re-save it from DigitalMicrograph"


@dataclass(frozen=True)
class _ArrayRef:
    """An array tag: where its values lie; ``small`` holds them if few."""

    offset: int
    dtype: np.dtype
    count: int
    small: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize


class _TagReader:
    """Walks a DM3/DM4 tag tree in a read-only buffer."""

    def __init__(self, buf: Any, version: int, little_endian: bool) -> None:
        self.buf = buf
        self.v4 = version == 4
        self.size_fmt = ">Q" if self.v4 else ">I"
        self.size_len = 8 if self.v4 else 4
        self.order = "<" if little_endian else ">"

    def _size(self, pos: int) -> tuple[int, int]:
        return struct.unpack_from(self.size_fmt, self.buf, pos)[0], pos + self.size_len

    def group(self, pos: int, depth: int = 0) -> tuple[dict | list, int]:
        """Parse a tag group; unnamed children make a list (ImageList, Dimension)."""
        if depth > _MAX_DEPTH:
            raise ValueError("tag tree nested too deeply")
        count, pos = self._size(pos + 2)  # skip the "sorted" and "open" flags
        if count > len(self.buf) - pos:
            raise ValueError(f"tag group claims {count} entries")
        entries = []
        for _ in range(count):
            label, value, pos = self.tag(pos, depth)
            entries.append((label, value))
        if entries and all(label == "" for label, _ in entries):
            return [value for _, value in entries], pos
        named: dict[str, Any] = {}
        for index, (label, value) in enumerate(entries):
            named.setdefault(label or f"[{index}]", value)
        return named, pos

    def tag(self, pos: int, depth: int) -> tuple[str, Any, int]:
        kind = self.buf[pos]
        (length,) = struct.unpack_from(">H", self.buf, pos + 1)
        label = bytes(self.buf[pos + 3 : pos + 3 + length]).decode("latin-1")
        pos += 3 + length + (8 if self.v4 else 0)  # DM4 adds the tag's byte size
        if kind == _GROUP_TAG:
            value, pos = self.group(pos, depth + 1)
        elif kind == _DATA_TAG:
            # never decode pixel arrays while parsing, however small
            value, pos = self.data(pos, decode=label != "Data")
        else:
            raise ValueError(f"unknown tag kind {kind} at byte {pos}")
        return label, value, pos

    def data(self, pos: int, decode: bool = True) -> tuple[Any, int]:
        if bytes(self.buf[pos : pos + 4]) != b"%%%%":
            raise ValueError(f"missing data marker at byte {pos}")
        ninfo, pos = self._size(pos + 4)
        if ninfo == 0 or ninfo > 100_000:
            raise ValueError(f"bad type description length {ninfo}")
        info = []
        for _ in range(ninfo):
            value, pos = self._size(pos)
            info.append(value)
        return self.value(info, pos, decode)

    def value(self, info: list[int], pos: int, decode: bool = True) -> tuple[Any, int]:
        kind = info[0]
        if kind in _SIMPLE:
            fmt = self.order + _SIMPLE[kind]
            return struct.unpack_from(fmt, self.buf, pos)[0], pos + struct.calcsize(fmt)
        if kind == _STRING:
            raw = bytes(self.buf[pos : pos + info[1]])
            return raw.decode("latin-1"), pos + info[1]
        if kind == _STRUCT:
            dtype = self._struct_dtype(info[3 : 3 + 2 * info[2]])
            return tuple(self._read(pos, dtype, 1)[0].tolist()), pos + dtype.itemsize
        if kind == _ARRAY:
            ref = self._array(info, pos, decode)
            return ref, pos + ref.nbytes
        raise ValueError(f"unknown DM value type {kind}")

    def _struct_dtype(self, pairs: list[int]) -> np.dtype:
        types = pairs[1::2]
        if any(t not in _SIMPLE for t in types):
            raise ValueError("unsupported field type in DM struct")
        return np.dtype([(f"f{i}", self.order + _SIMPLE[t]) for i, t in enumerate(types)])

    def _array(self, info: list[int], pos: int, decode: bool) -> _ArrayRef:
        element = info[1]
        if element in _SIMPLE:
            dtype, count = np.dtype(self.order + _SIMPLE[element]), info[2]
        elif element == _STRUCT:
            nfields = info[3]
            dtype = self._struct_dtype(info[4 : 4 + 2 * nfields])
            count = info[4 + 2 * nfields]
        else:
            raise ValueError(f"unsupported DM array element type {element}")
        ref = _ArrayRef(pos, dtype, count)
        if pos + ref.nbytes > len(self.buf):
            raise ValueError(f"array at byte {pos} runs past the end of the file")
        if decode and count <= _SMALL_ARRAY:
            ref = _ArrayRef(pos, dtype, count, self._read(pos, dtype, count))
        return ref

    def _read(self, pos: int, dtype: np.dtype, count: int) -> np.ndarray:
        raw = bytes(self.buf[pos : pos + dtype.itemsize * count])
        return np.frombuffer(raw, dtype=dtype, count=count)


def _parse_header(buf: Any, path: str) -> tuple[int, bool, int]:
    """Return (version, little_endian, root offset), or raise for a non-DM file."""
    if len(buf) < 24:
        raise unsupported(path, "file is too short to be a DigitalMicrograph file", _HINT)
    (version,) = struct.unpack_from(">I", buf, 0)
    if version not in (3, 4):
        raise unsupported(
            path, f"not a DM3/DM4 file (version field is {version})", "check the file type"
        )
    order_at = 8 if version == 3 else 12
    (order,) = struct.unpack_from(">I", buf, order_at)
    if order not in (0, 1):
        raise unsupported(path, f"bad byte-order flag {order} in DM header", _HINT)
    return version, order == 1, order_at + 4


def read_tags(path: str | os.PathLike) -> tuple[dict, int, bool]:
    """Parse the whole tag tree of a DM3/DM4 file (pixels are not read).

    Returns
    -------
    (dict, int, bool)
        The root tag group, the DM version and whether values are little-endian.
    """
    path = os.fspath(path)
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        version, little, root = _parse_header(buf, path)
        try:
            tree, _ = _TagReader(buf, version, little).group(root)
        except (struct.error, IndexError, ValueError, OverflowError) as exc:
            raise unsupported(path, f"DM tag tree is corrupt or truncated ({exc})", _HINT) from exc
    if not isinstance(tree, dict):
        raise unsupported(path, "DM root tag group has no named tags", _HINT)
    return tree, version, little


def parse_tag_bytes(raw: bytes, version: int = 4) -> dict:
    """Parse a DM tag tree embedded in another file (e.g. TIFF tag 65027)."""
    version_found, little, root = _parse_header(raw, "<embedded DM tags>")
    tree, _ = _TagReader(raw, version_found or version, little).group(root)
    return tree if isinstance(tree, dict) else {}


def as_text(value: Any) -> str:
    """Decode a DM string (uint16 array of UTF-16 code units, or str)."""
    if isinstance(value, _ArrayRef):
        if value.small is None or value.small.dtype.names:
            return ""
        value = value.small
    if isinstance(value, np.ndarray):
        return "".join(chr(int(c)) for c in value if int(c) != 0)
    return "" if value is None else str(value).rstrip("\x00")


def _plain(value: Any, depth: int = 0) -> Any:
    """Tag tree -> JSON types; uint16 arrays are DM's strings."""
    if isinstance(value, dict):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, _ArrayRef):
        if value.small is None:
            return f"<array of {value.count} {value.dtype}>"
        if value.small.dtype == np.dtype("<u2") or value.small.dtype == np.dtype(">u2"):
            return as_text(value)
        return jsonable(value.small)
    return jsonable(value)


def _thumbnail_indices(tree: dict) -> set[int]:
    """ImageList indices that the root Thumbnails group names as thumbnails."""
    thumbs = tree.get("Thumbnails")
    thumbs = list(thumbs.values()) if isinstance(thumbs, dict) else thumbs or []
    return {t["ImageIndex"] for t in thumbs if isinstance(t, dict) and "ImageIndex" in t}


def _pick_image(tree: dict, path: str) -> dict:
    """The largest real image of ImageList.

    DM stores an RGB thumbnail (often the first image, and in small files the
    largest one) next to the data: skip images listed under Thumbnails and
    prefer non-RGB images.
    """
    images = tree.get("ImageList")
    images = list(images.values()) if isinstance(images, dict) else images or []
    thumbs = _thumbnail_indices(tree)
    best, best_key = None, None
    for index, image in enumerate(images):
        image_data = image.get("ImageData", {}) if isinstance(image, dict) else {}
        data = image_data.get("Data") if isinstance(image_data, dict) else None
        if not isinstance(data, _ArrayRef):
            continue
        key = (index not in thumbs, image_data.get("DataType") not in _RGB_TYPES, data.count)
        if best_key is None or key > best_key:
            best, best_key = image, key
    if best is None:
        raise unsupported(path, "DM file holds no image data", _HINT)
    return best


def _dimensions(image_data: dict, path: str) -> list[int]:
    dims = image_data.get("Dimensions")
    dims = list(dims.values()) if isinstance(dims, dict) else dims
    if not dims or not all(isinstance(n, int) and n > 0 for n in dims):
        raise unsupported(path, "DM image has no valid Dimensions tag", _HINT)
    if len(dims) not in (2, 3):
        raise unsupported(
            path,
            f"{len(dims)}-D DM data (spectrum, spectrum image or 4D-STEM) is not an image stack",
            "export the image or image stack you want from DigitalMicrograph as DM or TIFF",
        )
    return [int(n) for n in dims]


def _pixel_type(image_data: dict, data: _ArrayRef, order: str, path: str) -> tuple[np.dtype, bool]:
    """Pixel dtype (with file byte order) and whether it is packed RGB."""
    code = image_data.get("DataType")
    if code in _COMPLEX_TYPES:
        raise unsupported(
            path,
            f"complex DM data (DataType {code}, e.g. an FFT) is not supported",
            "save the real-space image instead",
        )
    if code in _RGB_TYPES:
        return np.dtype("u1"), True
    if code in _PIXEL_TYPES:
        return np.dtype(order + _PIXEL_TYPES[code]), False
    if data.dtype.names is None:  # unknown code: trust the array's own type
        return data.dtype, False
    raise unsupported(path, f"unsupported DM DataType {code}", _HINT)


def _calibrations(image_data: dict, ndim: int) -> list[tuple[float, str, float]]:
    """(scale, unit, origin) per DM dimension (x first), defaults if missing."""
    dims = image_data.get("Calibrations", {}).get("Dimension", [])
    dims = list(dims.values()) if isinstance(dims, dict) else dims
    out = []
    for i in range(ndim):
        cal = dims[i] if i < len(dims) and isinstance(dims[i], dict) else {}
        out.append((cal.get("Scale", 1.0), as_text(cal.get("Units", "")), cal.get("Origin", 0.0)))
    return out


def vendor_fields(image: dict) -> dict[str, Any]:
    """Microscope, exposure and acquisition fields of a DM image (and its tag tree)."""
    tags = image.get("ImageTags", {}) if isinstance(image.get("ImageTags"), dict) else {}
    scope = tags.get("Microscope Info", {}) if isinstance(tags.get("Microscope Info"), dict) else {}
    bar = tags.get("DataBar", {}) if isinstance(tags.get("DataBar"), dict) else {}
    fields = {
        "voltage_V": scope.get("Voltage"),
        "magnification": scope.get("Indicated Magnification"),
        "actual_magnification": scope.get("Actual Magnification"),
        "microscope": as_text(scope.get("Name", "")) or None,
        "illumination_mode": as_text(scope.get("Illumination Mode", "")) or None,
        "exposure_s": bar.get("Exposure Time (s)"),
        "acquisition_date": as_text(bar.get("Acquisition Date", "")) or None,
        "acquisition_time": as_text(bar.get("Acquisition Time", "")) or None,
        "detector": as_text(bar.get("Device Name", "")) or None,
        "image_name": as_text(image.get("Name", "")) or None,
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    fields["dm_tags"] = _plain(tags)
    return fields


def _stack_axis(cal: tuple[float, str, float]) -> tuple[str, float, str]:
    """Axis letter, step and unit for DM's third dimension."""
    scale, unit, _ = cal
    if is_time_unit(unit):
        step, out_unit = time_to_s(scale, unit)
        return "t", step, out_unit
    step, out_unit = spatial_to_nm(scale, unit)
    if out_unit == "nm":
        return "z", step, out_unit
    return "t", 1.0, "frame"


def read_dm(path: str | os.PathLike) -> EMImage:
    """Read a DM3/DM4 image or image stack lazily.

    Parameters
    ----------
    path : str or os.PathLike
        ``.dm3`` or ``.dm4`` file.

    Returns
    -------
    EMImage
        Axes "yx" or "tyx"/"zyx" (stacks, DM's third dimension first);
        "yxc" for RGB images.
    """
    path = os.fspath(path)
    tree, version, little = read_tags(path)
    image = _pick_image(tree, path)
    image_data = image["ImageData"]
    data = image_data["Data"]
    dims = _dimensions(image_data, path)
    dtype, rgb = _pixel_type(image_data, data, "<" if little else ">", path)
    frame_shape = (dims[1], dims[0], 4) if rgb else (dims[1], dims[0])
    n_frames = dims[2] if len(dims) == 3 else 1
    frame_bytes = int(np.prod(frame_shape)) * dtype.itemsize
    if frame_bytes * n_frames != data.nbytes:
        raise unsupported(
            path,
            f"DM Dimensions {dims} do not match the {data.nbytes}-byte pixel array",
            _HINT,
        )
    offsets = [data.offset + i * frame_bytes for i in range(n_frames)]
    raw = RawFrames(path, dtype, frame_shape, offsets, stacked=len(dims) == 3)
    raw.check_size()
    pixels = lazy(raw, frame_chunks(raw.shape, 1 if len(dims) == 3 else 0))
    return _assemble(path, version, image, image_data, pixels, dims, rgb)


def _assemble(path, version, image, image_data, pixels, dims, rgb) -> EMImage:
    cals = _calibrations(image_data, len(dims))
    (sx, ux, _), (sy, uy, _) = cals[0], cals[1]
    scale_y, unit_y = spatial_to_nm(sy, uy)
    scale_x, unit_x = spatial_to_nm(sx, ux)
    axes, scale, units = "yx", [scale_y, scale_x], [unit_y, unit_x]
    if len(dims) == 3:
        letter, step, unit = _stack_axis(cals[2])
        axes, scale, units = letter + axes, [step, *scale], [unit, *units]
    if rgb:
        pixels = pixels[..., [2, 1, 0]]  # stored as B, G, R, A
        axes, scale, units = axes + "c", [*scale, 1.0], [*units, "channel"]
    meta = spatial_axes_meta(
        path,
        f"dm{version}",
        (sy, sx),
        (uy, ux),
        calibrations=[{"scale": s, "unit": u, "origin": o} for s, u, o in cals],
        **vendor_fields(image),
    )
    return EMImage(pixels, axes, tuple(float(s) for s in scale), tuple(units), meta)


__all__ = ["UnsupportedFileError", "as_text", "parse_tag_bytes", "read_dm", "read_tags"]
