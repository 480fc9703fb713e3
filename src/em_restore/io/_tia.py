"""FEI / Thermo Fisher TIA reader (.ser pixels + .emi metadata).

TIA writes the pixels and their calibration (in metres) to ``<stem>_1.ser``
(``_2.ser``... for further detectors) and the microscope conditions, as XML,
to ``<stem>.emi``. Either file can be opened; the other is found by name.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ._image import (
    EMImage,
    RawFrames,
    UnsupportedFileError,
    frame_axis,
    frame_chunks,
    lazy,
    spatial_axes_meta,
    spatial_to_nm,
    unsupported,
)

SER_MAGIC = (0x4949, 0x0197)
_IMAGE_SERIES, _SPECTRUM_SERIES = 0x4122, 0x4120
_TIME_TAG, _TIME_POSITION_TAG = 0x4152, 0x4142
_PIXEL_TYPES = {1: "u1", 2: "u2", 3: "u4", 4: "i1", 5: "i2", 6: "i4", 7: "f4", 8: "f8"}
# Per-image header: 2 x (offset f8, delta f8, element i4), type i2, size x i4, size y i4.
_IMAGE_HEADER = struct.Struct("<ddiddihii")
_HINT = "copy the .emi together with its _1.ser file, or export the image as TIFF from TIA"


def companion_ser(emi: Path) -> Path:
    """The .ser holding the pixels of an .emi (TIA names it ``<stem>_1.ser``)."""
    return emi.with_name(f"{emi.stem}_1.ser")


def companion_emi(ser: Path) -> Path | None:
    """The .emi that goes with ``<stem>_<n>.ser``, if it exists."""
    match = re.fullmatch(r"(.*)_\d+", ser.stem)
    if match is None:
        return None
    emi = ser.with_name(match.group(1) + ".emi")
    return emi if emi.is_file() else None


def _dimension(buf: Any, pos: int) -> tuple[dict, int]:
    size, offset, delta, element, desc_len = struct.unpack_from("<iddii", buf, pos)
    pos += 28
    description = bytes(buf[pos : pos + desc_len]).decode("latin-1")
    pos += desc_len
    (units_len,) = struct.unpack_from("<i", buf, pos)
    units = bytes(buf[pos + 4 : pos + 4 + units_len]).decode("latin-1")
    dim = {"size": size, "offset": offset, "delta": delta, "element": element}
    dim.update(description=description, units=units)
    return dim, pos + 4 + units_len


def parse_ser_header(buf: Any, path: str) -> dict:
    """Decode a .ser header, its dimension records and the data offsets.

    Parameters
    ----------
    buf : bytes-like
        The whole file (a read-only mmap is fine).
    path : str
        For error messages.

    Returns
    -------
    dict
        ``version``, ``data_type``, ``tag_type``, ``total``, ``valid``,
        ``dimensions`` (list of dicts), ``data_offsets`` and ``tag_offsets``.
    """
    order, series_id, version = struct.unpack_from("<3H", buf, 0)
    if (order, series_id) != SER_MAGIC:
        raise unsupported(path, "not a TIA .ser file (bad magic bytes)", _HINT)
    data_type, tag_type, total, valid = struct.unpack_from("<4i", buf, 6)
    wide = version >= 0x220  # offsets became 8 bytes in version 0x220
    offset_fmt = "<q" if wide else "<i"
    (offset_array,) = struct.unpack_from(offset_fmt, buf, 22)
    pos = 30 if wide else 26
    (ndims,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    if not (0 <= ndims <= 8 and 0 <= valid <= total and total < len(buf)):
        raise unsupported(path, "corrupt .ser header", _HINT)
    dims = []
    for _ in range(ndims):
        dim, pos = _dimension(buf, pos)
        dims.append(dim)
    step = 8 if wide else 4
    data_offsets = struct.unpack_from(f"<{total}{offset_fmt[1]}", buf, offset_array)
    tag_offsets = struct.unpack_from(f"<{total}{offset_fmt[1]}", buf, offset_array + step * total)
    return {
        "version": version,
        "data_type": data_type,
        "tag_type": tag_type,
        "total": total,
        "valid": valid,
        "dimensions": dims,
        "data_offsets": list(data_offsets[:valid]),
        "tag_offsets": list(tag_offsets[:valid]),
    }


def _image_headers(buf: Any, offsets: list[int], path: str) -> list[tuple]:
    headers = [_IMAGE_HEADER.unpack_from(buf, off) for off in offsets]
    first = headers[0]
    for other in headers[1:]:
        if other[6:9] != first[6:9]:
            raise unsupported(path, "images of different size or type in one .ser", _HINT)
    return headers


def _frame_times(buf: Any, header: dict) -> list[float]:
    """Acquisition time (s) of each element, from the per-element time tags."""
    if header["tag_type"] not in (_TIME_TAG, _TIME_POSITION_TAG):
        return []
    times = []
    for off in header["tag_offsets"][:2]:
        tag_id, seconds = struct.unpack_from("<Hi", buf, off)
        if tag_id not in (_TIME_TAG, _TIME_POSITION_TAG):
            return []
        times.append(float(seconds))
    return times


def _frame_step(header: dict, times: list[float]) -> float | None:
    """Frame step in s: a time-calibrated series dimension, else time-tag spacing."""
    dims = header["dimensions"]
    if len(dims) == 1 and dims[0]["units"].strip().lower() in ("s", "sec", "seconds"):
        return dims[0]["delta"]
    if len(times) == 2 and times[1] > times[0]:
        return times[1] - times[0]
    return None


def read_emi_info(emi: Path | None) -> dict[str, Any]:
    """Microscope conditions from the ObjectInfo XML at the end of an .emi file."""
    if emi is None or not emi.is_file() or emi.stat().st_size == 0:
        return {}
    with open(emi, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        start = buf.rfind(b"<ObjectInfo>")  # near the end: rfind touches only the tail
        end = buf.rfind(b"</ObjectInfo>")
        if start < 0 or end < start:
            return {}
        raw = bytes(buf[start : end + len(b"</ObjectInfo>")])
    try:
        root = ET.fromstring(raw.decode("latin-1"))
    except ET.ParseError:
        return {}
    return _emi_fields(root)


def _emi_fields(root: ET.Element) -> dict[str, Any]:
    description = {}
    for item in root.iter("Data"):
        label = (item.findtext("Label") or "").strip()
        if not label:
            continue
        unit = (item.findtext("Unit") or "").strip()
        key = f"{label} ({unit})" if unit else label
        description[key] = (item.findtext("Value") or "").strip()
    info: dict[str, Any] = {"tia_description": description}
    voltage = root.findtext("ExperimentalConditions/MicroscopeConditions/AcceleratingVoltage")
    if voltage:
        info["voltage_V"] = _number(voltage)
    for label, key in (("Magnification (x)", "magnification"), ("Mode", "mode")):
        if label in description:
            info[key] = _number(description[label])
    if "Microscope" in description:
        info["microscope"] = description["Microscope"]
    return info


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def _spatial_unit(info: dict) -> str:
    """TIA stores image calibration in SI without a unit: metres, or 1/m in diffraction."""
    mode = str(info.get("mode", ""))
    return "1/m" if "diffraction" in mode.lower() else "m"


def _resolve(path: Path) -> tuple[Path, Path | None]:
    """(ser, emi) for a path to either file."""
    if path.suffix.lower() == ".emi":
        ser = companion_ser(path)
        if not ser.is_file():
            raise unsupported(path, f"its pixel file '{ser.name}' is missing", _HINT)
        return ser, path
    return path, companion_emi(path)


def read_tia(path: str | os.PathLike) -> EMImage:
    """Read a TIA image or image series (.emi or .ser) lazily.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.emi`` file or one of its ``_<n>.ser`` files.

    Returns
    -------
    EMImage
        "yx" for one image, "tyx" for a series. TIA stores rows bottom-up:
        they are flipped (lazily) so that row 0 is the top of the image.
    """
    opened = Path(path)
    ser, emi = _resolve(opened)
    with open(ser, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        header = _parse_checked(buf, ser)
        if header["data_type"] == _SPECTRUM_SERIES:
            raise unsupported(ser, "it holds spectra, not images", "open an image .ser")
        if header["valid"] == 0:
            raise unsupported(ser, "the .ser holds no recorded image", _HINT)
        images = _image_headers(buf, header["data_offsets"], os.fspath(ser))
        times = _frame_times(buf, header)
    return _build(opened, ser, emi, header, images, times)


def _parse_checked(buf: Any, ser: Path) -> dict:
    try:
        return parse_ser_header(buf, os.fspath(ser))
    except UnsupportedFileError:
        raise
    except (struct.error, IndexError, ValueError, OverflowError) as exc:
        raise unsupported(ser, f"the .ser file is truncated or corrupt ({exc})", _HINT) from exc


def _build(opened: Path, ser: Path, emi: Path | None, header: dict, images, times) -> EMImage:
    _, delta_x, _, _, delta_y, _, code, size_x, size_y = images[0]
    if code not in _PIXEL_TYPES:
        raise unsupported(ser, f"unsupported TIA pixel type {code} (complex?)", _HINT)
    offsets = [off + _IMAGE_HEADER.size for off in header["data_offsets"]]
    stacked = len(offsets) > 1
    raw = RawFrames(ser, "<" + _PIXEL_TYPES[code], (size_y, size_x), offsets, stacked)
    raw.check_size()
    pixels = lazy(raw, frame_chunks(raw.shape, 1 if stacked else 0))[..., ::-1, :]
    info = read_emi_info(emi)
    unit = _spatial_unit(info)
    scale_y, unit_y = spatial_to_nm(delta_y, unit)
    scale_x, unit_x = spatial_to_nm(delta_x, unit)
    meta = spatial_axes_meta(
        opened,
        "tia",
        (delta_y, delta_x),
        unit,
        ser=os.fspath(ser),
        emi=os.fspath(emi) if emi else None,
        ser_dimensions=header["dimensions"],
        **info,
    )
    if not stacked:
        return EMImage(pixels, "yx", (scale_y, scale_x), (unit_y, unit_x), meta)
    letter, step, step_unit = frame_axis(_frame_step(header, times), "s")
    scale = (step, scale_y, scale_x)
    return EMImage(pixels, letter + "yx", scale, (step_unit, unit_y, unit_x), meta)


__all__ = ["companion_emi", "companion_ser", "read_tia"]
