"""PNG / JPEG reader (Pillow).

Pillow's ``Image.open`` reads only the header, so shape and dtype are known
without decoding; pixels are decoded in one dask task on demand. These
formats carry no EM calibration: pixel size is 1 pixel.
"""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
from dask import delayed
from PIL import Image, UnidentifiedImageError

from ._image import EMImage, spatial_axes_meta, unsupported

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
_HINT = "re-save the image as PNG, JPEG or TIFF"

# Pillow mode -> (mode to convert to or None, numpy dtype, channels or 0 for grey)
_MODES = {
    "1": ("L", "u1", 0),
    "L": (None, "u1", 0),
    "LA": ("L", "u1", 0),
    "La": ("L", "u1", 0),
    "I;16": (None, "u2", 0),
    "I;16L": (None, "u2", 0),
    "I;16B": (None, "u2", 0),
    "F": (None, "f4", 0),
    "RGB": (None, "u1", 3),
    "RGBA": (None, "u1", 4),
    "RGBa": ("RGBA", "u1", 4),
    "CMYK": ("RGB", "u1", 3),
    "YCbCr": ("RGB", "u1", 3),
    "LAB": ("RGB", "u1", 3),
    "HSV": ("RGB", "u1", 3),
}


def _plan(image: Image.Image) -> tuple[str | None, np.dtype, int]:
    """How to decode: target mode, dtype and number of colour channels."""
    mode = image.mode
    if mode == "P" or mode == "PA":
        rgba = mode == "PA" or "transparency" in image.info
        return ("RGBA", np.dtype("u1"), 4) if rgba else ("RGB", np.dtype("u1"), 3)
    if mode == "I":  # PNG has no 32-bit grey: "I" there means 16-bit
        return None, np.dtype("u2" if image.format == "PNG" else "i4"), 0
    if mode not in _MODES:
        raise ValueError(f"unsupported colour mode {mode!r}")
    target, dtype, channels = _MODES[mode]
    return target, np.dtype(dtype), channels


def _decode(path: str, target: str | None, dtype: np.dtype, shape: tuple) -> np.ndarray:
    with Image.open(path) as image:
        if target is not None:
            image = image.convert(target)
        pixels = np.asarray(image)
    return pixels.astype(dtype, copy=False).reshape(shape)


def read_png(path: str | os.PathLike) -> EMImage:
    """Read a PNG or JPEG lazily (grey: "yx"; RGB(A): "yxc").

    Parameters
    ----------
    path : str or os.PathLike
        ``.png``, ``.jpg`` or ``.jpeg`` file.

    Returns
    -------
    EMImage
        Uncalibrated (pixel) image with the file's bit depth.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            target, dtype, channels = _plan(image)
            width, height = image.size
            fmt = (image.format or "image").lower()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise unsupported(path, f"not a readable PNG/JPEG image ({exc})", _HINT) from exc
    shape = (height, width, channels) if channels else (height, width)
    task = delayed(_decode, pure=True)(path, target, dtype, shape)
    pixels = da.from_delayed(task, shape=shape, dtype=dtype)
    axes = "yxc" if channels else "yx"
    scale = (1.0,) * len(shape)
    units = ("pixel", "pixel", "channel") if channels else ("pixel", "pixel")
    meta = spatial_axes_meta(path, fmt, (1.0, 1.0), "pixel")
    return EMImage(pixels, axes, scale, units, meta)


__all__ = ["JPEG_MAGIC", "PNG_MAGIC", "read_png"]
