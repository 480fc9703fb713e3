"""MRC / MRCS / ST reader (MRC2014, with the IMOD and FEI variants).

The 1024-byte header is followed by ``nsymbt`` bytes of extended header and
then the raw pixels, x fastest. Pixel size is ``cella / mx`` in Å.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from ._image import (
    EMImage,
    RawFrames,
    frame_chunks,
    lazy,
    spatial_axes_meta,
    spatial_to_nm,
    unsupported,
)

HEADER_BYTES = 1024
_MODES = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}
_COMPLEX_MODES = {3: "complex int16", 4: "complex float32"}
_IMOD_STAMP = 1146047817
_HINT = "re-export the stack as MRC2014 (mode 0, 1, 2, 6 or 12) or as TIFF"


def _byte_order(header: bytes) -> str:
    """'<' or '>': from the machine stamp, else from which reading looks sane."""
    stamp = header[212:214]
    if stamp in (b"\x44\x44", b"\x44\x41"):
        return "<"
    if stamp == b"\x11\x11":
        return ">"
    for order in "<>":
        nx, ny, nz, mode = struct.unpack_from(order + "4i", header, 0)
        if 0 < nx < 2**20 and 0 < ny < 2**20 and 0 < nz < 2**24 and 0 <= mode < 200:
            return order
    return "<"


def looks_like_mrc(header: bytes) -> bool:
    """Cheap check of an MRC header: positive sizes, a known mode, sane nsymbt."""
    if len(header) < HEADER_BYTES:
        return False
    order = _byte_order(header)
    nx, ny, nz, mode = struct.unpack_from(order + "4i", header, 0)
    (nsymbt,) = struct.unpack_from(order + "i", header, 92)
    known = mode in _MODES or mode in _COMPLEX_MODES or mode == 101
    return min(nx, ny, nz) > 0 and known and nsymbt >= 0


def parse_header(header: bytes, path: str) -> dict:
    """Decode the fields of an MRC header that the reader needs.

    Parameters
    ----------
    header : bytes
        At least the first 1024 bytes of the file.
    path : str
        File name for error messages.

    Returns
    -------
    dict
        ``order``, ``shape`` (nz, ny, nx), ``mode``, ``dtype``, ``nsymbt``,
        ``sampling`` (mx, my, mz), ``cell`` (Å), ``exttyp`` and ``labels``.
    """
    if len(header) < HEADER_BYTES:
        raise unsupported(path, "file is shorter than the 1024-byte MRC header", _HINT)
    order = _byte_order(header)
    nx, ny, nz, mode = struct.unpack_from(order + "4i", header, 0)
    mx, my, mz = struct.unpack_from(order + "3i", header, 28)
    cell = struct.unpack_from(order + "3f", header, 40)
    (nsymbt,) = struct.unpack_from(order + "i", header, 92)
    if min(nx, ny, nz) <= 0 or nsymbt < 0:
        raise unsupported(path, f"invalid MRC header (nx, ny, nz = {nx}, {ny}, {nz})", _HINT)
    return {
        "order": order,
        "shape": (nz, ny, nx),
        "mode": mode,
        "dtype": _dtype(header, order, mode, path),
        "nsymbt": nsymbt,
        "sampling": (mx, my, mz),
        "cell": cell,
        "exttyp": header[104:108].decode("latin-1").strip("\x00 "),
        "labels": _labels(header, order),
    }


def _dtype(header: bytes, order: str, mode: int, path: str) -> np.dtype:
    if mode in _COMPLEX_MODES:
        raise unsupported(
            path,
            f"MRC mode {mode} ({_COMPLEX_MODES[mode]}, e.g. an FFT) holds complex numbers, "
            "not an image",
            "export the real-space image instead",
        )
    if mode not in _MODES:
        raise unsupported(path, f"unsupported MRC mode {mode}", _HINT)
    if mode == 0 and _imod_unsigned_bytes(header, order):
        return np.dtype("u1")
    return np.dtype(order + _MODES[mode])


def _imod_unsigned_bytes(header: bytes, order: str) -> bool:
    """Old IMOD files store mode 0 as unsigned unless flag bit 0 says signed."""
    stamp, flags = struct.unpack_from(order + "2i", header, 152)
    return stamp == _IMOD_STAMP and not flags & 1


def _labels(header: bytes, order: str) -> list[str]:
    (count,) = struct.unpack_from(order + "i", header, 220)
    count = min(max(count, 0), 10)
    raw = [header[224 + 80 * i : 304 + 80 * i] for i in range(count)]
    return [r.decode("latin-1").strip("\x00 ") for r in raw]


def _pixel_size_angstrom(info: dict) -> tuple[float, float]:
    """(y, x) pixel size in Å; <= 0 when the header has none (mx = 0, cella < 0)."""
    (mx, my, _), (ax, ay, _) = info["sampling"], info["cell"]
    size_x = ax / mx if mx > 0 else 0.0
    size_y = ay / my if my > 0 else 0.0
    return size_y, size_x


def read_mrc(path: str | os.PathLike) -> EMImage:
    """Read an MRC image, movie or stack lazily.

    Parameters
    ----------
    path : str or os.PathLike
        ``.mrc``, ``.mrcs`` or ``.st`` file.

    Returns
    -------
    EMImage
        "yx" when nz == 1, else "tyx" with one frame per section (unit "frame").
    """
    path = os.fspath(path)
    with open(path, "rb") as handle:
        info = parse_header(handle.read(HEADER_BYTES), path)
    nz, ny, nx = info["shape"]
    offset = HEADER_BYTES + info["nsymbt"]
    frame_bytes = ny * nx * info["dtype"].itemsize
    offsets = [offset + i * frame_bytes for i in range(nz)]
    raw = RawFrames(path, info["dtype"], (ny, nx), offsets, stacked=nz > 1)
    raw.check_size()
    pixels = lazy(raw, frame_chunks(raw.shape, 1 if nz > 1 else 0))
    size_y, size_x = _pixel_size_angstrom(info)
    scale_y, unit_y = spatial_to_nm(size_y, "Å")
    scale_x, unit_x = spatial_to_nm(size_x, "Å")
    meta = spatial_axes_meta(
        path,
        "mrc",
        (size_y, size_x),
        "Å",
        mrc_mode=info["mode"],
        extended_header_type=info["exttyp"],
        extended_header_bytes=info["nsymbt"],
        labels=info["labels"],
    )
    if nz > 1:
        return EMImage(pixels, "tyx", (1.0, scale_y, scale_x), ("frame", unit_y, unit_x), meta)
    return EMImage(pixels, "yx", (scale_y, scale_x), (unit_y, unit_x), meta)
