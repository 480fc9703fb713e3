"""Particle sizing on a line profile: the projected-sphere model and its fit.

:func:`sphere_profile` is the model (a sphere's chord thickness, blurred exactly by
a Gaussian average over perpendicular offsets and a 1-D Gaussian along the line);
:func:`analyse_profile` finds the background and the noise, detects the particles,
fits each group of neighbours with the model and measures diameter, FWHM, edge
width and the pair criterion (see :mod:`.profile` for the model and the edge width).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np
import scipy.ndimage as ndi
from scipy.optimize import least_squares
from scipy.signal import find_peaks

from ._args import check_choice, check_real
from .profile_line import LineProfile

__all__ = [
    "PairMeasurement",
    "ParticleMeasurement",
    "ProfileAnalysis",
    "analyse_profile",
    "sphere_profile",
]

_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(9)
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()
_FINE = 4  # model evaluated on a grid 4x finer than the samples, then blurred


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
