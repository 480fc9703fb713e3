"""Line profiles and particle sizing on them (the low-dose TEM paper's measurement).

The low-dose TEM paper shows that a restoration is faithful by measuring
particles on line profiles: the diameter of a particle in the restored image
against the high-dose one, the *edge width* (pseudo-diameter where the profile
meets the background, minus the fitted diameter) and, for two neighbours, the
distance ``l`` between their centres and whether ``(d1 + d2) / 2 < l`` (they are
resolved). This module is that measurement, headless:

* :func:`sample_profile` samples a line or polyline with sub-pixel (linear or
  cubic) interpolation, averaging across a width of ``width`` pixels, with
  positions in the image's physical unit (from the pixel size);
* :func:`analyse_profile` finds the background and the noise, detects the
  particles, and fits each group of neighbouring particles with a **projected
  sphere** model, then measures FWHM, edge width and the pair criterion;
* :func:`pair_resolution` decides whether two neighbours are resolved: two
  particles fitted apart, and a dip between them that noise does not explain;
* :func:`sphere_profile` is the model itself (public so that benchmarks and
  tests can build exact profiles with known answers).

The model
---------
A sphere of radius ``R`` centred at ``c`` on the line projects to the chord
thickness ``t(x, o) = 2 sqrt(R² - (x - c)² - o²)`` at perpendicular offset ``o``.
Particles combine as a weighted thickness ``T = Σ a_i t_i`` and the intensity is
``b + s (1 - exp(-k T)) / k`` (``s = -1`` for particles darker than the
background, ``+1`` for brighter ones; ``k -> 0`` is linear). This one family
covers mass-thickness bright-field TEM (``b exp(-μ t)``: ``k = 1/b``,
``a = b μ``) and HAADF-like linear contrast (``k = 0``), with any offset. The
optical blur is an isotropic Gaussian of standard deviation ``σ`` applied to
the 2-D intensity: exactly, as a Gaussian average over perpendicular offsets
(Gauss–Hermite nodes) followed by a 1-D Gaussian along the line; the averaging
across the line's width is part of the same offset average. Diameters are
therefore not biased by blur or width; ``σ`` is fitted.

Edge width
----------
As in the paper: the *pseudo-diameter*, the distance between the two points
where the particle's profile meets the background, minus the fitted diameter.
Both points are read on the particle's own **fitted** profile (its sphere with
the fitted blur, without its neighbours), where it falls to ``edge_fraction``
(default 5 %) of its peak contrast: noise does not move them, and a touching
neighbour does not hide the background on one side. FWHM is read on the same
curve.

Examples
--------
>>> import numpy as np
>>> x = np.arange(0.0, 60.0, 0.5)
>>> y = sphere_profile(x, centers=[30.0], radii=[10.0], amplitudes=[0.02], background=1.0)
>>> res = analyse_profile(LineProfile(x, y, unit="nm"))
>>> round(res.particles[0].diameter, 3), res.particles[0].appearance
(20.0, 'bright')
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.ndimage as ndi
from scipy.optimize import least_squares
from scipy.signal import find_peaks

from ._args import check_choice, check_image, check_int, check_real, short

__all__ = [
    "LineProfile",
    "PairMeasurement",
    "PairResolution",
    "ParticleMeasurement",
    "ProfileAnalysis",
    "analyse_profile",
    "length_unit",
    "measure_line",
    "pair_resolution",
    "sample_profile",
    "sphere_profile",
]

_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(9)
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()
_FINE = 4  # model evaluated on a grid 4x finer than the samples, then blurred


# --------------------------------------------------------------------------- sampling


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


# --------------------------------------------------------------------------- the model


def _intensity(T: np.ndarray, background: float, k: float, sign: float) -> np.ndarray:
    if k * T.max(initial=0.0) < 1e-6:
        contrast = T
    else:
        contrast = -np.expm1(-k * T) / k
    return background + sign * contrast


def sphere_profile(
    x,
    *,
    centers,
    radii,
    amplitudes,
    background: float,
    saturation: float = 0.0,
    sigma: float = 0.0,
    offsets=(0.0,),
    appearance: str = "bright",
) -> np.ndarray:
    """The projected-sphere profile model, evaluated at evenly spaced ``x``.

    ``background + s (1 - exp(-saturation T)) / saturation`` with the weighted
    thickness ``T = Σ amplitudes_i · 2 sqrt(radii_i² - (x - centers_i)² - o²)``
    averaged over the perpendicular ``offsets`` ``o`` (the line's width), blurred
    by an isotropic 2-D Gaussian of standard deviation ``sigma`` (same unit as
    ``x``); ``s = +1`` for ``appearance="bright"`` particles, ``-1`` for "dark".

    Examples
    --------
    >>> x = np.linspace(-2, 2, 5)
    >>> sphere_profile(x, centers=[0], radii=[1], amplitudes=[1], background=0).tolist()
    [0.0, 0.0, 2.0, 0.0, 0.0]
    """
    x = np.asarray(x, dtype=float)
    sign = 1.0 if check_choice(appearance, "appearance", ("bright", "dark")) == "bright" else -1.0
    return _model(x, np.asarray(centers, float), np.asarray(radii, float),
                  np.asarray(amplitudes, float), float(background), float(saturation),
                  float(sigma), np.atleast_1d(np.asarray(offsets, float)), sign)  # fmt: skip


def _model(x, c, r, a, b, k, sigma, offsets, sign) -> np.ndarray:
    n_off = len(offsets)
    if sigma <= 0:
        grid, o = x, offsets[:, None]
        wts = np.full((n_off, 1), 1.0 / n_off)
    else:  # 2-D Gaussian blur: Gauss-Hermite across the line, 1-D filter along it
        dx = (x[1] - x[0]) / _FINE
        pad = math.ceil(4 * sigma / dx) + 1
        grid = x[0] + dx * np.arange(-pad, _FINE * (len(x) - 1) + pad + 1)
        o = (offsets[:, None] + sigma * _GH_NODES[None, :]).reshape(-1, 1)
        wts = np.tile(_GH_WEIGHTS, n_off).reshape(-1, 1) / n_off
    # Intensities (not thicknesses) are averaged: the blur acts on the image.
    inten = np.sum(wts * _intensity(_thickness(grid, c, r, a, o), b, k, sign), axis=0)
    if sigma <= 0:
        return inten
    blurred = ndi.gaussian_filter1d(inten, sigma / dx, mode="nearest", truncate=4.0)
    return blurred[pad : pad + _FINE * (len(x) - 1) + 1 : _FINE]


def _thickness(x, c, r, a, o) -> np.ndarray:
    """(n_offsets, n_x) weighted projected thickness at each perpendicular offset."""
    T = np.zeros((o.shape[0], x.size))
    for ci, ri, ai in zip(c, r, a, strict=True):
        T += ai * 2.0 * np.sqrt(np.maximum(ri * ri - o * o - (x[None, :] - ci) ** 2, 0.0))
    return T


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class ParticleMeasurement:
    """One particle on a profile (lengths in the profile's unit)."""

    center: float
    diameter: float
    fwhm: float | None
    edge_width: float | None
    pseudo_diameter: float | None
    contrast: float  # peak deviation from the background (intensity units)
    appearance: str  # "dark" or "bright" against the background


@dataclass(frozen=True)
class PairMeasurement:
    """Two neighbouring particles: resolved when ``(d1 + d2) / 2 < distance``."""

    first: int
    second: int
    distance: float
    gap: float  # distance - (d1 + d2) / 2
    resolved: bool


@dataclass(frozen=True)
class ProfileAnalysis:
    """Everything measured on one profile."""

    unit: str
    background: float
    noise: float
    blur_sigma: float | None
    particles: list[ParticleMeasurement]
    pairs: list[PairMeasurement]
    fit: np.ndarray  # the fitted model at the profile's positions (background where none)

    def to_dict(self) -> dict:
        """JSON-able summary (without the fitted curve)."""
        return {
            "unit": self.unit,
            "background": self.background,
            "noise": self.noise,
            "blur_sigma": self.blur_sigma,
            "particles": [asdict(p) for p in self.particles],
            "pairs": [asdict(p) for p in self.pairs],
        }


def _noise_level(y: np.ndarray) -> float:
    """White-noise sigma from second differences (blind to smooth trends), with
    sigma clipping so that edges do not count (a MAD alone is biased on the
    integer counts of low-dose data)."""
    # Lag-2 second differences: interpolated samples are correlated with their
    # immediate neighbours (linear interpolation), not with samples 2 apart.
    d2 = y[4:] - 2 * y[2:-2] + y[:-4]
    keep = np.ones(d2.size, bool)
    for _ in range(5):
        sd = float(np.std(d2[keep]))
        new = np.abs(d2 - np.median(d2[keep])) <= 3.5 * sd
        if new.sum() < 4 or (new == keep).all():
            break
        keep = new
    return sd / math.sqrt(6.0)


def _background_guess(y: np.ndarray) -> float:
    """Clipped mean of both ends (a median is biased on low-dose integer counts)."""
    m = max(3, len(y) // 10)
    ends = np.concatenate([y[:m], y[-m:]])
    keep = np.abs(ends - np.median(ends)) <= 3 * max(float(np.std(ends)), 1e-12)
    return float(ends[keep].mean())


def _crossing(x, dev, start: int, direction: int, level: float, stop: float | None):
    """First position walking from ``start`` where ``dev`` falls to ``level``."""
    i = start
    n = len(dev)
    while 0 <= i + direction < n:
        j = i + direction
        if stop is not None and (x[j] - stop) * direction > 0:
            return None
        if dev[j] <= level:
            if dev[i] == dev[j]:
                return float(x[j])
            t = (dev[i] - level) / (dev[i] - dev[j])
            return float(x[i] + t * (x[j] - x[i]))
        i = j
    return None


def _detect(x, dev, noise_s: float, min_prominence: float | None):
    peak = float(dev.max())
    floor = max(5.0 * noise_s, 0.12 * peak) if min_prominence is None else min_prominence
    idx, props = find_peaks(dev, prominence=floor, height=floor)
    if len(idx) == 0:
        return []
    step = x[1] - x[0]
    out = []
    for i, left, right in zip(idx, props["left_bases"], props["right_bases"], strict=True):
        half = 0.5 * dev[i]
        lo = _crossing(x, dev, i, -1, half, x[left] if left < i else None)
        hi = _crossing(x, dev, i, +1, half, x[right] if right > i else None)
        widths = [d for d in ((x[i] - lo) if lo else None, (hi - x[i]) if hi else None) if d]
        hw = min(widths) if widths else 2 * step
        # Half maximum of a projected sphere is at sqrt(3)/2 of its radius.
        out.append((float(x[i]), max(hw / 0.866, 1.5 * step), float(dev[i])))
    return out


def _groups(cands, step):
    """Merge candidates whose extents overlap: they are fitted together."""
    groups: list[list] = []
    for c in sorted(cands):
        lo = c[0] - 1.3 * c[1] - 3 * step
        if groups and lo < groups[-1][-1][0] + 1.3 * groups[-1][-1][1] + 3 * step:
            groups[-1].append(c)
        else:
            groups.append([c])
    return groups


def _windows(groups, x):
    """Each group's share of the profile: up to halfway to the neighbouring groups."""
    if not groups:
        return []
    edges = [(min(c - r for c, r, _ in g), max(c + r for c, r, _ in g)) for g in groups]
    cuts = [x[0]] + [0.5 * (edges[i][1] + edges[i + 1][0]) for i in range(len(groups) - 1)]
    return list(zip(cuts, [*cuts[1:], x[-1]], strict=True))


def _fit_group(x, y, group, window, b0, sign, offsets, step, noise, attenuation):
    """Least-squares fit of one group of neighbouring spheres on its window.

    Free parameters: background ``b`` and blur ``sigma`` (shared), and per particle
    centre, radius and amplitude. The saturation is not free (noise trades it
    against the radius): ``k = 1/b`` for attenuating (bright-field, zero-offset)
    data, i.e. ``b exp(-mu t)``, else ``0`` (linear). A soft-L1 loss, quadratic
    up to 6x the noise (no bias on skewed Poisson counts), keeps dead pixels
    and X-ray spikes from pulling the fit. Returns ``[b, sigma, k, c..., r..., a...]``.
    """
    n = len(group)
    c0 = np.array([g[0] for g in group])
    r0 = np.array([g[1] for g in group])
    a0 = np.array([max(g[2], 1e-12) / (2 * g[1]) for g in group])
    sel = (x >= window[0]) & (x <= window[1])
    xs, ys = x[sel], y[sel]
    scale_y = max(float(np.abs(ys - b0).max()), 1e-12)
    p0 = np.concatenate([[b0, step], c0, r0, a0])
    lower = np.concatenate(
        [[-np.inf, 0.0], c0 - r0 - 2 * step, np.full(n, 0.5 * step), np.zeros(n)]
    )
    upper = np.concatenate(
        [[np.inf, max(2.0 * r0.max(), 4 * step)], c0 + r0 + 2 * step,
         3.0 * r0 + 4 * step, np.full(n, np.inf)]
    )  # fmt: skip
    if attenuation:
        lower[0] = 1e-9  # k = 1/b needs b > 0
    p0 = np.clip(p0, lower, upper)

    def saturation(b):
        return 1.0 / b if attenuation else 0.0

    def resid(p):
        b, sig = p[:2]
        c, r, a = p[2 : 2 + n], p[2 + n : 2 + 2 * n], p[2 + 2 * n :]
        return (_model(xs, c, r, a, b, saturation(b), sig, offsets, sign) - ys) / scale_y

    x_scale = np.concatenate(
        [[scale_y, step], np.full(n, step), np.full(n, step), np.maximum(a0, 1e-12)]
    )
    f_scale = max(6.0 * noise, 1e-3 * scale_y) / scale_y
    res = least_squares(
        resid,
        p0,
        bounds=(lower, upper),
        x_scale=x_scale,
        loss="soft_l1",
        f_scale=f_scale,
        max_nfev=400 * (n + 1),
    )
    b = res.x[0]
    return np.concatenate([[b, res.x[1], saturation(b)], res.x[2:]])


def _smoothed(y: np.ndarray, noise: float, b0: float):
    """Lightest Gaussian smoothing (1-8 samples) under which the strongest feature
    stands 10x above the smoothed noise: detection only, the fit uses raw data."""
    for sig in (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0):
        smooth = ndi.gaussian_filter1d(y, sig, mode="nearest")
        noise_s = noise / math.sqrt(2 * math.sqrt(math.pi) * sig)
        if np.abs(smooth - b0).max() >= 10 * noise_s:
            break
    return smooth, noise_s


def _own_curve(c, r, a, b, k, sig, offsets, sign, step):
    """One particle's fitted profile alone, finely sampled: (x, deviation)."""
    half = r + 6 * sig + 2 * step
    xf = c + np.linspace(-half, half, 2 * math.ceil(half / (step / 20)) + 1)
    dev = sign * (_model(xf, [c], [r], [a], b, k, sig, offsets, sign) - b)
    return xf, dev


def _full_width(xf: np.ndarray, dev: np.ndarray, level: float) -> float | None:
    """Distance between the outermost crossings of ``level`` (interpolated)."""
    above = np.flatnonzero(dev > level)
    if above.size == 0 or above[0] == 0 or above[-1] == len(xf) - 1:
        return None
    i, j = above[0], above[-1]
    lo = xf[i - 1] + (level - dev[i - 1]) / (dev[i] - dev[i - 1]) * (xf[i] - xf[i - 1])
    hi = xf[j] + (dev[j] - level) / (dev[j] - dev[j + 1]) * (xf[j + 1] - xf[j])
    return float(hi - lo)


def _merge_overlapping(group, p):
    """Candidates with the two most-overlapping fitted neighbours merged, or None.

    Real neighbours may touch or sinter slightly; centres closer than 70 % of the
    sum of radii mean a noise dip split one particle in two.
    """
    n = len(group)
    c, r = p[3 : 3 + n], p[3 + n : 3 + 2 * n]
    order = np.argsort(c)
    ratio = [(c[j] - c[i]) / (r[i] + r[j]) for i, j in itertools.pairwise(order)]
    k = int(np.argmin(ratio))
    if ratio[k] >= 0.7:
        return None
    i, j = order[k], order[k + 1]
    lo, hi = min(c[i] - r[i], c[j] - r[j]), max(c[i] + r[i], c[j] + r[j])
    joined = (0.5 * (lo + hi), 0.5 * (hi - lo), max(group[i][2], group[j][2]))
    return [g for m, g in enumerate(group) if m not in (i, j)] + [joined]


def analyse_profile(
    profile: LineProfile,
    *,
    appearance: str = "auto",
    background: float | None = None,
    edge_fraction: float = 0.05,
    min_prominence: float | None = None,
) -> ProfileAnalysis:
    """Detect and size the particles on a line profile.

    Parameters
    ----------
    profile : LineProfile
        From :func:`sample_profile`. Draw the line so that it starts and ends on
        the background (the background level is estimated at both ends, then
        refined by the fit).
    appearance : {"auto", "dark", "bright"}
        Particles darker (bright-field TEM) or brighter (HAADF, SEM) than the
        background; "auto" takes the larger deviation from the background.
    background : float, optional
        Background intensity, if known.
    edge_fraction : float
        The profile "meets the background" where the particle's fitted profile
        falls to this fraction of its peak contrast.
    min_prominence : float, optional
        Smallest peak (in intensity units) counted as a particle; default
        ``max(5 x smoothed noise, 12 % of the strongest peak)``.

    Returns
    -------
    ProfileAnalysis
        Particles sorted by centre; pairs of consecutive neighbours whose surfaces are
        closer than their mean radius.

    Notes
    -----
    Detection uses the lightest smoothing that lifts the strongest feature 10x
    above the noise; the fit (robust soft-L1 loss, so dead pixels and X-ray
    spikes do not pull it) uses the raw samples. FWHM and the pseudo-diameter
    are read on each particle's own fitted curve (blur included), so noise does
    not move them and a touching neighbour does not hide the background.
    """
    appearance = check_choice(appearance, "appearance", ("auto", "dark", "bright"))
    edge_fraction = check_real(edge_fraction, "edge_fraction", low=0, high=0.5, low_open=True)
    x, y = profile.positions, profile.values
    if len(x) < 8:
        raise ValueError(
            f"particle sizing needs a profile of at least 8 samples; got {len(x)}. "
            "Draw a longer line across the particle and some background."
        )
    step = profile.step
    noise = _noise_level(y)
    b0 = _background_guess(y) if background is None else check_real(background, "background")
    smooth, noise_s = _smoothed(y, noise, b0)
    if appearance == "auto":
        appearance = "dark" if (b0 - smooth.min()) > (smooth.max() - b0) else "bright"
    sign = 1.0 if appearance == "bright" else -1.0
    # Dark particles on a positive background with positive data: attenuation.
    atten = sign < 0 and b0 > 0 and float(smooth.min()) > 0
    dev = sign * (smooth - b0)
    cands = _detect(x, dev, noise_s, min_prominence) if dev.max() > 0 else []
    fit = np.full_like(y, b0)
    measured = []  # (centre, group, ParticleMeasurement)
    sigmas, backgrounds = [], []
    groups = _groups(cands, step)
    for gi, (group, window) in enumerate(zip(groups, _windows(groups, x), strict=True)):
        p = _fit_group(x, y, group, window, b0, sign, profile.offsets, step, noise, atten)
        while len(group) > 1 and (merged := _merge_overlapping(group, p)) is not None:
            group = merged  # two fitted spheres that mostly overlap are one particle
            p = _fit_group(x, y, group, window, b0, sign, profile.offsets, step, noise, atten)
        n = len(group)
        b, sig, k = p[:3]
        c, r, a = p[3 : 3 + n], p[3 + n : 3 + 2 * n], p[3 + 2 * n :]
        keep = a * r > 1e-12
        if not keep.any():
            continue
        sigmas.append(sig)
        backgrounds.append(b)
        model = _model(x, c[keep], r[keep], a[keep], b, k, sig, profile.offsets, sign)
        span = np.abs(model - b) > 1e-9 * max(abs(b), 1.0)
        fit[span] = model[span]
        for ci, ri, ai in zip(c[keep], r[keep], a[keep], strict=True):
            xf, own = _own_curve(ci, ri, ai, b, k, sig, profile.offsets, sign, step)
            peak = float(own.max())
            pseudo = _full_width(xf, own, edge_fraction * peak)
            measured.append(
                (
                    float(ci),
                    gi,
                    ParticleMeasurement(
                        center=float(ci),
                        diameter=float(2 * ri),
                        fwhm=_full_width(xf, own, 0.5 * peak),
                        edge_width=None if pseudo is None else pseudo - 2 * float(ri),
                        pseudo_diameter=pseudo,
                        contrast=peak,
                        appearance=appearance,
                    ),
                )
            )
    measured.sort(key=lambda m: m[0])
    particles = [m[2] for m in measured]
    pairs: list[PairMeasurement] = []
    for i in range(len(particles) - 1):
        p1, p2 = particles[i], particles[i + 1]
        dist = p2.center - p1.center
        gap = dist - 0.5 * (p1.diameter + p2.diameter)
        if gap < 0.25 * (p1.diameter + p2.diameter):  # neighbours: closer than a mean radius
            pairs.append(PairMeasurement(i, i + 1, dist, gap, bool(gap > 0)))
    return ProfileAnalysis(
        unit=profile.unit,
        background=float(np.median(backgrounds)) if backgrounds else b0,
        noise=noise,
        blur_sigma=float(np.median(sigmas)) if sigmas else None,
        particles=particles,
        pairs=pairs,
        fit=fit,
    )


# --------------------------------------------------------------------------- resolution


#: Variance factor of a mean of consecutive profile samples: linear interpolation
#: correlates neighbouring samples (lag-1 correlation up to 0.5), so n samples
#: average like n / 2 independent ones at worst.
_INTERP_VARIANCE = 2.0


@dataclass(frozen=True)
class PairResolution:
    """Whether two neighbouring particles are resolved on a profile, and why.

    ``first`` and ``second`` index ``analysis.particles`` (``None`` when not
    found); ``distance`` and ``gap`` are the fitted ones; ``dip`` is the depth of
    the dip between the two maxima (intensity units, on the data) and
    ``dip_sigma`` its standard error; ``reason`` says which condition decided.
    """

    resolved: bool
    first: int | None
    second: int | None
    distance: float | None
    gap: float | None
    dip: float | None
    dip_sigma: float | None
    reason: str

    @property
    def significance(self) -> float | None:
        """``dip / dip_sigma`` (``inf`` on a noise-free profile)."""
        if self.dip is None or self.dip_sigma is None:
            return None
        return self.dip / self.dip_sigma if self.dip_sigma > 0 else math.inf


def _matched(analysis: ProfileAnalysis, centers) -> tuple[int | None, int | None, str]:
    """Indices of the fitted particles nearest the expected centres, or the first
    fitted pair when no centres are given."""
    parts = analysis.particles
    if centers is None:
        if not analysis.pairs:
            n = len(parts)
            return None, None, f"{n} particle{'s' * (n != 1)} fitted, no neighbouring pair"
        return analysis.pairs[0].first, analysis.pairs[0].second, ""
    if not parts:
        return None, None, "no particle fitted"
    c1, c2 = sorted(centers)
    i, j = (min(range(len(parts)), key=lambda k: abs(parts[k].center - c)) for c in (c1, c2))
    if i == j:
        return i, j, "merged: one particle fitted over both"
    reach = 0.5 * (c2 - c1)
    if abs(parts[i].center - c1) > reach or abs(parts[j].center - c2) > reach:
        return i, j, "a particle of the pair was not found"
    return i, j, ""


def _window_mean(x, dev, centre: float, half: float) -> tuple[float, int]:
    sel = np.abs(x - centre) <= half + 1e-9 * max(1.0, abs(half))
    if not sel.any():
        sel = np.abs(x - centre) == np.abs(x - centre).min()
    return float(dev[sel].mean()), int(sel.sum())


def pair_resolution(
    profile: LineProfile,
    centers=None,
    *,
    analysis: ProfileAnalysis | None = None,
    z: float = 3.0,
    tolerance: float | None = None,
) -> PairResolution:
    """Are two neighbouring particles resolved on this profile? (a testable Rayleigh rule)

    A pair is **resolved** when all of these hold:

    1. the fit finds two separate particles, one near each expected centre
       (within half the expected distance), not one particle over both;
    2. their fitted surfaces do not overlap, ``distance > (d1 + d2) / 2`` (the
       low-dose TEM paper's criterion);
    3. the profile itself dips between the two maxima, significantly: with ``P``
       the mean deviation from the background over the central quarter-radius of
       the weaker particle and ``S`` the mean over the fitted gap (at least one
       step either side of its middle), the dip ``D = P - S`` exceeds ``z`` times
       its standard error ``sqrt(2 σ² (1/n_P + 1/n_S))``. ``σ`` is the profile's
       noise per sample (:attr:`ProfileAnalysis.noise`: averaged across the
       line's width already) and the factor 2 allows for the correlation that
       interpolation puts between neighbouring samples. On noise-free data any
       dip counts; on noisy data a shallow dip is not told from noise;
    4. with ``tolerance``, the fitted centre distance is within ``tolerance`` of
       the expected one (a restoration that draws the dip in the wrong place
       does not resolve the pair).

    Parameters
    ----------
    profile : LineProfile
        A line through both particles, starting and ending on the background.
    centers : (float, float), optional
        Expected centres of the two particles along the profile (its unit), e.g.
        from a reference image. Default: the first pair of neighbours fitted.
    analysis : ProfileAnalysis, optional
        :func:`analyse_profile` of ``profile``, if already computed.
    z : float
        Significance of the dip, in standard errors (3: a false "resolved" on
        about one pure-noise profile in 700).
    tolerance : float, optional
        Largest accepted error of the fitted centre distance (profile unit);
        needs ``centers``.

    Returns
    -------
    PairResolution

    Examples
    --------
    >>> x = np.arange(0.0, 100.0, 1.0)
    >>> def pair(gap):
    ...     return sphere_profile(x, centers=[35.0, 35.0 + 20.0 + gap], radii=[10.0, 10.0],
    ...                           amplitudes=[0.02, 0.02], background=1.0, saturation=1.0,
    ...                           sigma=1.0, appearance="dark")
    >>> pair_resolution(LineProfile(x, pair(3.0)), (35.0, 58.0)).resolved
    True
    >>> pair_resolution(LineProfile(x, pair(-3.0)), (35.0, 52.0)).reason
    'fitted spheres overlap'
    """
    z = check_real(z, "z", low=0)
    if tolerance is not None:
        if centers is None:
            raise ValueError(
                "tolerance needs the expected centres; pass centers=(c1, c2) or drop tolerance."
            )
        tolerance = check_real(tolerance, "tolerance", low=0)
    if centers is not None:
        try:
            c = [float(v) for v in centers]
        except (TypeError, ValueError):
            c = []
        if len(c) != 2 or not all(map(math.isfinite, c)) or c[0] == c[1]:
            raise ValueError(
                f"centers must be two different finite positions along the profile; got "
                f"{short(centers)}. Pass e.g. centers=(35.0, 58.0)."
            )
        centers = c
    if analysis is None:
        analysis = analyse_profile(profile)
    i, j, why = _matched(analysis, centers)
    if why:
        return PairResolution(False, i, j, None, None, None, None, why)
    p1, p2 = sorted((analysis.particles[i], analysis.particles[j]), key=lambda p: p.center)
    distance = p2.center - p1.center
    gap = distance - 0.5 * (p1.diameter + p2.diameter)
    out = {"first": i, "second": j, "distance": distance, "gap": gap}
    if gap <= 0:
        return PairResolution(
            False, **out, dip=None, dip_sigma=None, reason="fitted spheres overlap"
        )
    sign = 1.0 if p1.appearance == "bright" else -1.0
    x, dev = profile.positions, sign * (profile.values - analysis.background)
    step = profile.step
    peaks = [_window_mean(x, dev, p.center, max(step, p.diameter / 8)) for p in (p1, p2)]
    peak, n_peak = min(peaks)
    middle = 0.5 * (p1.center + p1.diameter / 2 + p2.center - p2.diameter / 2)
    saddle, n_saddle = _window_mean(x, dev, middle, max(step, gap / 2))
    dip = peak - saddle
    sigma = math.sqrt(_INTERP_VARIANCE * analysis.noise**2 * (1 / n_peak + 1 / n_saddle))
    out |= {"dip": dip, "dip_sigma": sigma}
    if dip <= 0 or dip < z * sigma:
        return PairResolution(False, **out, reason=f"dip {dip:.3g} under {z:g} x {sigma:.3g}")
    if tolerance is not None:
        err = distance - abs(centers[1] - centers[0])
        if abs(err) > tolerance:
            return PairResolution(
                False, **out, reason=f"distance off by {err:+.3g} (tolerance {tolerance:g})"
            )
    return PairResolution(True, **out, reason=f"dip {dip / sigma if sigma else math.inf:.3g} sigma")


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


def measure_line(
    image,
    points,
    *,
    width: int = 1,
    scale: float | tuple[float, float] = 1.0,
    unit: str = "px",
    appearance: str = "auto",
) -> tuple[LineProfile, ProfileAnalysis]:
    """:func:`sample_profile` then :func:`analyse_profile` (the CLI's and widget's call)."""
    prof = sample_profile(image, points, width=width, scale=scale, unit=unit)
    return prof, analyse_profile(prof, appearance=appearance)
