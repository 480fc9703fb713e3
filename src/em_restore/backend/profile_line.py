"""Line profiles: sampling an image along a line or polyline (:func:`sample_profile`).

Sub-pixel (linear or cubic) interpolation, averaged across a width of ``width``
pixels, with positions in the image's physical unit (from the pixel size); the
result is a :class:`LineProfile`. :func:`length_unit` names the unit. The sizing
on profiles is :mod:`.profile_fit`; :mod:`.profile` is the facade.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.ndimage as ndi

from ._args import check_image, check_int, check_real, short

__all__ = ["LineProfile", "length_unit", "sample_profile"]


@dataclass(frozen=True)
class LineProfile:
    """Intensity along a line: ``values[i]`` at distance ``positions[i]`` (in ``unit``).

    ``offsets`` are the perpendicular offsets (in ``unit``) averaged at each
    position (``[0.0]`` for a one-pixel-wide line); ``coords`` the (row, col)
    pixel coordinates of the centre-line samples (empty when built from arrays).
    """

    positions: np.ndarray
    values: np.ndarray
    unit: str = "px"
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1))
    coords: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    def __post_init__(self) -> None:
        pos = np.asarray(self.positions, dtype=float)
        val = np.asarray(self.values, dtype=float)
        if pos.ndim != 1 or val.shape != pos.shape:
            raise ValueError(
                f"positions and values must be 1-D arrays of the same length; got shapes "
                f"{pos.shape} and {val.shape}."
            )
        if pos.size < 2:
            raise ValueError(f"a profile needs at least 2 samples; got {pos.size}.")
        if not (np.isfinite(pos).all() and np.isfinite(val).all()):
            raise ValueError("the profile contains NaN or infinite values; sample a finite image.")
        step = np.diff(pos)
        if step.min() <= 0 or (step.max() - step.min()) > 1e-6 * step.max():
            raise ValueError("profile positions must be increasing and evenly spaced.")
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "values", val)
        object.__setattr__(self, "offsets", np.atleast_1d(np.asarray(self.offsets, float)))

    @property
    def step(self) -> float:
        return float(self.positions[1] - self.positions[0])

    def to_list(self) -> list[list[float]]:
        """``[[position, intensity], ...]`` (JSON-able)."""
        return [[float(p), float(v)] for p, v in zip(self.positions, self.values, strict=True)]


def _check_points(points: Any) -> np.ndarray:
    try:
        pts = np.asarray(points, dtype=float)
    except (TypeError, ValueError):
        pts = None
    if pts is None or pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
        raise ValueError(
            f"points must be a (k >= 2, 2) array of (row, col) vertices; got {short(points)}. "
            "Pass e.g. [(y0, x0), (y1, x1)]."
        )
    if not np.isfinite(pts).all():
        raise ValueError("points contain NaN or infinite coordinates; pass finite (row, col).")
    return pts


def _check_frame(image: Any) -> np.ndarray:
    shape = np.shape(image)
    if len(shape) == 3 and shape[-1] in (3, 4):
        raise ValueError(
            f"got an RGB(A) image of shape {shape}; line profiles need one greyscale channel. "
            "Convert it to greyscale (or pick one channel) first."
        )
    if len(shape) != 2:
        raise ValueError(
            f"image must be one 2-D frame (rows, cols); got shape {shape}. "
            "Pick a frame of the stack, e.g. image[t]."
        )
    return check_image(image, "image", min_ndim=2, max_ndim=2, min_size=2)


def sample_profile(
    image,
    points,
    *,
    width: int = 1,
    scale: float | tuple[float, float] = 1.0,
    unit: str = "px",
    step: float | None = None,
    order: int = 1,
) -> LineProfile:
    """Intensity along a line or polyline, averaged across ``width`` pixels.

    Parameters
    ----------
    image : (rows, cols) array_like
        One greyscale frame (RGB and stacks are refused with a clear message).
    points : (k, 2) array_like
        Vertices ``(row, col)`` in pixel (array-index) coordinates, ``k >= 2``.
    width : int
        Number of parallel lines, one pixel apart, averaged (perpendicular to each
        segment). ``1`` samples the centre line only.
    scale : float or (float, float)
        Pixel size (rows, cols) in ``unit``; positions are physical distances.
    unit : str
        Name of the physical unit (``"nm"``, ``"px"``...).
    step : float, optional
        Sample spacing in ``unit``; default one pixel (``min(scale)``).
    order : {1, 3}
        Interpolation: linear (no overshoot, default) or cubic spline.

    Returns
    -------
    LineProfile

    Raises
    ------
    ValueError
        Bad image (RGB, stack, NaN), bad points, or a line (with its width) that
        leaves the image.

    Examples
    --------
    >>> img = np.tile(np.arange(10.0), (5, 1))  # value = column index
    >>> p = sample_profile(img, [(2, 1), (2, 4)], scale=0.5, unit="nm")
    >>> p.positions.tolist(), p.values.tolist()
    ([0.0, 0.5, 1.0, 1.5], [1.0, 2.0, 3.0, 4.0])
    """
    img = _check_frame(image)
    pts = _check_points(points)
    width = check_int(width, "width", low=1, hint="Use width=1 for a single-pixel line.")
    order = check_int(order, "order", low=1, high=3)
    if isinstance(scale, tuple | list | np.ndarray):
        if len(scale) != 2:
            raise ValueError(f"scale must be a number or (row, col) pair; got {short(scale)}.")
        sy, sx = (check_real(s, "scale", low=0, low_open=True) for s in scale)
    else:
        sy = sx = check_real(scale, "scale", low=0, low_open=True)
    step = min(sy, sx) if step is None else check_real(step, "step", low=0, low_open=True)
    seg = np.diff(pts, axis=0)
    seg_len = np.hypot(seg[:, 0] * sy, seg[:, 1] * sx)
    if seg_len.sum() <= 0:
        raise ValueError("the line has zero length; give two different end points.")
    keep = seg_len > 0
    pts = np.vstack([pts[:1], pts[1:][keep]])
    seg, seg_len = seg[keep], seg_len[keep]
    cum = np.concatenate([[0.0], np.cumsum(seg_len)])
    n = math.floor(cum[-1] / step + 1e-9) + 1
    if n < 2:
        raise ValueError(
            f"the line is only {cum[-1]:.3g} {unit} long, shorter than one step ({step:g}); "
            "draw a longer line."
        )
    s = np.arange(n) * step
    k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(seg) - 1)
    t = (s - cum[k]) / seg_len[k]
    centre = pts[k] + t[:, None] * seg[k]
    # Unit perpendicular of each segment, in pixel space.
    nrm = np.hypot(seg[:, 0], seg[:, 1])
    perp = np.stack([-seg[:, 1] / nrm, seg[:, 0] / nrm], axis=1)[k]
    offs = np.arange(width) - (width - 1) / 2.0
    coords = centre[None, :, :] + offs[:, None, None] * perp[None, :, :]
    h, w = img.shape
    lo = coords.reshape(-1, 2).min(0)
    hi = coords.reshape(-1, 2).max(0)
    if lo[0] < -0.5 or lo[1] < -0.5 or hi[0] > h - 0.5 or hi[1] > w - 0.5:
        raise ValueError(
            f"the line (width {width}) leaves the {h}x{w} image: it reaches rows "
            f"{lo[0]:.1f} to {hi[0]:.1f}, cols {lo[1]:.1f} to {hi[1]:.1f}. Draw it inside the "
            "image or reduce the width."
        )
    flat = coords.reshape(-1, 2).T
    vals = ndi.map_coordinates(img, flat, order=order, mode="nearest", prefilter=order > 1)
    values = vals.reshape(width, n).mean(axis=0)
    # Perpendicular offsets in physical units (near-isotropic pixels assumed).
    return LineProfile(s, values, unit, offs * math.sqrt(sy * sx), centre)


def length_unit(unit: str | None) -> str:
    """Short name of a spatial unit for profiles: ``"px"`` when uncalibrated.

    Examples
    --------
    >>> length_unit("nanometer"), length_unit("pixel"), length_unit("nm")
    ('nm', 'px', 'nm')
    """
    unit = "" if unit is None else str(unit)
    unit = {"nanometer": "nm", "micrometer": "um", "angstrom": "A"}.get(unit, unit)
    return "px" if unit in ("pixel", "px", "", "frame") else unit
