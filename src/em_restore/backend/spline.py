"""Cubic B-spline interpolation of a 2-D image, for sub-pixel crops and shifts.

Shared by frame registration (:mod:`.burst`), the live simulated sources and the
simulator's drifting streams; an image is prefiltered once and then cropped at any
sub-pixel offset (mirror boundary; integer offsets give an exact copy).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage as ndi

__all__ = ["Spline"]


def _bspline3(t: np.ndarray) -> np.ndarray:
    a = np.abs(t)
    return np.where(a < 1, 2 / 3 - a**2 + a**3 / 2, np.where(a < 2, (2 - a) ** 3 / 6, 0.0))


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    """Whole-sample mirror indexing (scipy mode "mirror": d c b | a b c d | c b a)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * n - 2
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx)


class Spline:
    """Cubic B-spline of a 2-D image (mirror boundary), prefiltered once."""

    def __init__(self, image: np.ndarray) -> None:
        self.coeff = ndi.spline_filter(image, order=3, mode="mirror", output=np.float64)

    def crop(self, oy: float, ox: float, h: int, w: int) -> np.ndarray:
        """``out[i, j] = spline(oy + i, ox + j)``, exact for integer offsets."""
        ny, nx = self.coeff.shape
        iy, ix = math.floor(oy), math.floor(ox)
        fy, fx = oy - iy, ox - ix
        ry = _mirror(np.arange(iy - 1, iy + h + 2), ny)
        rx = _mirror(np.arange(ix - 1, ix + w + 2), nx)
        c = self.coeff[np.ix_(ry, rx)]
        ks = np.arange(-1, 3)
        wy, wx = _bspline3(fy - ks), _bspline3(fx - ks)
        tmp = sum(wy[k] * c[k : k + h] for k in range(4))
        return sum(wx[k] * tmp[:, k : k + w] for k in range(4))
