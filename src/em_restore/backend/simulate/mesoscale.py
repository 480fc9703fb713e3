"""Mesoscale specimen families of the wide simulator (particles, fields, membranes, grains).

Every family is a function ``family(rng, shape) -> (image, params)``: a float64
image ``>= 0`` in relative units (projected density or signal, about 0..1) and
the scalars it drew, over wide ranges, so that a network trained on them meets
many kinds of structure rather than one simulator's look. Objects are rendered
on patches around their centres, vectorised over objects (no per-object Python
loop), so a 160² field costs a few milliseconds. See ``docs/simulator.md``,
section "Wide simulator", for the formulas and ranges.

Examples
--------
>>> img, params = meso_specimen(np.random.default_rng(0), (64, 64), "spheres")
>>> img.shape, bool(img.min() >= 0), params["family"]
((64, 64), True, 'spheres')
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.fft
from scipy.spatial import cKDTree

__all__ = [
    "MESO_FAMILIES",
    "SUPPORTS",
    "add_support",
    "fourier_gaussian",
    "loguniform",
    "meso_specimen",
    "power_law_field",
    "render_patches",
    "smooth_field",
]

#: Largest total patch area (objects x pixels per patch) rendered per family call;
#: beyond it the object count is reduced, which bounds the cost of crowded fields.
_PATCH_BUDGET = 300_000


def loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A draw from the log-uniform distribution on ``[lo, hi]`` (``0 < lo <= hi``)."""
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


# --------------------------------------------------------------------------- fields


def _freq2(shape: tuple[int, int]) -> np.ndarray:
    """Squared spatial frequency (cycles/px)² on the ``rfft2`` grid of ``shape``."""
    fy = scipy.fft.fftfreq(shape[0])[:, None]
    fx = scipy.fft.rfftfreq(shape[1])[None, :]
    return fy * fy + fx * fx


def fourier_gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    """Periodic Gaussian filter of standard deviation ``sigma`` px (exact in Fourier space)."""
    if sigma <= 0:
        return image.copy()
    spec = scipy.fft.rfft2(image)
    spec *= np.exp(-2.0 * math.pi**2 * sigma**2 * _freq2(image.shape))
    return scipy.fft.irfft2(spec, s=image.shape)


def _unit(field: np.ndarray) -> np.ndarray:
    field = field - field.mean()
    return field / max(float(field.std()), 1e-12)


def smooth_field(rng: np.random.Generator, shape, scale_px: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation length ``scale_px``."""
    return _unit(fourier_gaussian(rng.standard_normal(shape), scale_px / math.sqrt(2.0)))


def power_law_field(rng: np.random.Generator, shape, beta: float) -> np.ndarray:
    """Zero-mean, unit-variance random field with power spectrum ``|k|^-beta``.

    ``beta = 0`` is white noise, 2 is Brownian-like (rough), 4 smooth and cloudy.
    """
    k2 = _freq2(shape)
    k2[0, 0] = np.inf
    spec = scipy.fft.rfft2(rng.standard_normal(shape)) * k2 ** (-beta / 4.0)
    return _unit(scipy.fft.irfft2(spec, s=shape))


# --------------------------------------------------------------------------- patches


def render_patches(shape, centres, half_px, value_fn: Callable, *params) -> np.ndarray:
    """Sum of objects, each evaluated on a square patch around its centre.

    Parameters
    ----------
    shape : (int, int)
    centres : (N, 2) float array
        Object centres ``(y, x)`` in pixels (pixel ``(i, j)`` has its centre at ``(i, j)``).
    half_px : (N,) array
        Half-width of each object's patch in pixels; objects are grouped by it so that
        small objects do not pay for the largest one's patch.
    value_fn : callable
        ``value_fn(Y, X, *params_n) -> (n, P, P)`` values at offsets ``Y = (n, P, 1)``,
        ``X = (n, 1, P)`` from the centres; each ``params_n`` is that group's slice of
        ``params`` shaped ``(n, 1, 1)``.
    *params : (N,) arrays

    Returns
    -------
    float64 ndarray of ``shape``; objects add where they overlap.

    Examples
    --------
    >>> disk = lambda Y, X, r: (Y**2 + X**2 <= r**2).astype(float)
    >>> img = render_patches((9, 9), [[4.0, 4.0]], [3], disk, np.array([2.0]))
    >>> int(img.sum())
    13
    """
    h, w = shape
    out = np.zeros(h * w)
    centres = np.asarray(centres, dtype=float).reshape(-1, 2)
    if not len(centres):
        return out.reshape(h, w)
    halves = np.maximum(np.ceil(np.asarray(half_px, dtype=float)), 1).astype(np.int64)
    groups = np.floor(np.log2(halves) * 2).astype(np.int64)  # sizes within a factor √2
    for g in np.unique(groups):
        sel = np.flatnonzero(groups == g)
        half = int(halves[sel].max())
        off = np.arange(-half, half + 1)
        base = np.rint(centres[sel]).astype(np.int64)
        iy = base[:, 0, None] + off
        ix = base[:, 1, None] + off
        Y = (iy - centres[sel, 0, None])[:, :, None]
        X = (ix - centres[sel, 1, None])[:, None, :]
        vals = value_fn(Y, X, *(np.asarray(p, dtype=float)[sel, None, None] for p in params))
        ok = ((iy >= 0) & (iy < h))[:, :, None] & ((ix >= 0) & (ix < w))[:, None, :]
        ok &= vals != 0
        flat = (iy[:, :, None] * w + ix[:, None, :])[ok]
        out += np.bincount(flat, weights=vals[ok], minlength=h * w)
    return out.reshape(h, w)


def _sphere(Y, X, r, amp):
    return amp * np.sqrt(np.maximum(r * r - Y * Y - X * X, 0.0)) / r


def _capsule(Y, X, r, half_len, cos_t, sin_t, amp):
    along = X * cos_t + Y * sin_t
    perp = Y * cos_t - X * sin_t
    d2 = perp * perp + np.maximum(np.abs(along) - half_len, 0.0) ** 2
    return amp * np.sqrt(np.maximum(r * r - d2, 0.0)) / r


_MAX_SIDES = 8


def _polygon_fn(apothems: np.ndarray) -> Callable:
    """Faceted convex polygon: a plate whose edges ramp over ``ramp`` px (pyramid facets).

    The facet facing a pixel is the one whose normal is nearest in angle (exact for
    regular polygons); ``apothems[i, k]`` scales facet ``k`` of object ``i``.
    """

    def value(Y, X, index, r, n_sides, angle, ramp, amp):
        k = np.floor((np.arctan2(Y, X) - angle) * n_sides / (2 * math.pi) + 0.5) % n_sides
        phi = angle + 2.0 * math.pi * k / n_sides
        scale = apothems[index.astype(np.int64), k.astype(np.int64)]
        d = X * np.cos(phi) + Y * np.sin(phi) - r * scale
        return amp * np.clip((0.5 - d) / (ramp + 1.0), 0.0, 1.0)

    return value


def _centres(rng, shape, n, margin=0.0):
    h, w = shape
    return np.column_stack(
        [rng.uniform(-margin, h - 1 + margin, n), rng.uniform(-margin, w - 1 + margin, n)]
    )


def _count(coverage: float, area: float, mean_area: float, patch_area: float) -> int:
    n = max(1, round(coverage * area / max(mean_area, 1e-9)))
    return int(min(n, max(1, _PATCH_BUDGET // max(patch_area, 1.0)), 5000))


def _radii(rng, n, r_mean, spread):
    """Log-normal radii with relative spread ``spread`` about ``r_mean`` (px, >= 0.7)."""
    return np.maximum(r_mean * np.exp(spread * rng.standard_normal(n)), 0.7)


def _spheres(rng, shape, coverage, r_mean, spread):
    area = shape[0] * shape[1]
    n = _count(coverage, area, math.pi * r_mean**2, (2 * r_mean * math.exp(2 * spread) + 3) ** 2)
    r = _radii(rng, n, r_mean, spread)
    amp = rng.uniform(0.5, 1.0, n) * (r / r.max()) ** rng.uniform(0, 1)
    return render_patches(shape, _centres(rng, shape, n, r_mean), r + 1, _sphere, r, amp)


def _rods(rng, shape, coverage, r_mean, spread, aspect):
    area = shape[0] * shape[1]
    half_len = r_mean * (aspect - 1)
    mean_area = math.pi * r_mean**2 + 4 * r_mean * half_len
    n = _count(coverage, area, mean_area, (2 * (half_len + r_mean) + 3) ** 2)
    r = _radii(rng, n, r_mean, spread)
    hl = r * (aspect - 1) * np.exp(0.3 * rng.standard_normal(n))
    theta = rng.uniform(0, math.pi, n) if rng.random() < 0.7 else np.full(n, rng.uniform(0, 3.2))
    amp = rng.uniform(0.5, 1.0, n)
    return render_patches(
        shape,
        _centres(rng, shape, n, r_mean),
        r + hl + 1,
        _capsule,
        r,
        hl,
        np.cos(theta),
        np.sin(theta),
        amp,
    )


def _polygons(rng, shape, coverage, r_mean, spread):
    area = shape[0] * shape[1]
    n = _count(coverage, area, 2.6 * r_mean**2, (4.4 * r_mean * math.exp(2 * spread) + 5) ** 2)
    r = _radii(rng, n, r_mean, spread)
    sides = rng.integers(3, _MAX_SIDES + 1, n)
    irregular = rng.uniform(0, 0.25)
    apothems = np.exp(irregular * rng.standard_normal((n, _MAX_SIDES)))
    # circumradius of a regular n-gon is r / cos(pi/n): the patch must hold the corners
    half = r * max(float(np.exp(irregular * 2.5)), 1.0) / np.cos(math.pi / sides) + 2
    ramp = r * rng.uniform(0, 1.0, n) * (rng.random() < 0.6)
    amp = rng.uniform(0.4, 1.0, n)
    angle = rng.uniform(0, 2 * math.pi, n)
    return render_patches(
        shape,
        _centres(rng, shape, n, r_mean),
        half,
        _polygon_fn(apothems),
        np.arange(n),
        r,
        sides,
        angle,
        ramp,
        amp,
    )


def _particle_sizes(rng, shape):
    return loguniform(rng, 1.5, min(shape) / 6), rng.uniform(0.0, 0.5)


def spheres(rng, shape):
    """Projected spheres ``t = √(r² − ρ²)/r``, log-normal radii, overlaps add."""
    cov = loguniform(rng, 0.02, 1.5)
    r_mean, spread = _particle_sizes(rng, shape)
    return _spheres(rng, shape, cov, r_mean, spread), {"coverage": cov, "radius_px": r_mean}


def rods(rng, shape):
    """Projected cylinders with hemispherical caps (capsules), aspect 1.5–12."""
    cov = loguniform(rng, 0.02, 1.0)
    r_mean = loguniform(rng, 1.0, min(shape) / 12)
    aspect = loguniform(rng, 1.5, 12.0)
    img = _rods(rng, shape, cov, r_mean, rng.uniform(0, 0.4), aspect)
    return img, {"coverage": cov, "radius_px": r_mean, "aspect": aspect}


def polygons(rng, shape):
    """Faceted convex polygons (3–8 sides), flat plates or pyramids with sloping facets."""
    cov = loguniform(rng, 0.02, 1.2)
    r_mean, spread = _particle_sizes(rng, shape)
    return _polygons(rng, shape, cov, r_mean, spread), {"coverage": cov, "radius_px": r_mean}


def _mixed(rng, shape, cov):
    r_mean, spread = _particle_sizes(rng, shape)
    weights = rng.dirichlet(np.ones(3))
    img = _spheres(rng, shape, cov * weights[0], r_mean, spread)
    img += _polygons(rng, shape, cov * weights[1], r_mean, spread)
    img += _rods(rng, shape, cov * weights[2], r_mean / 2, spread, loguniform(rng, 1.5, 6))
    return img, {"coverage": cov, "radius_px": r_mean}


def sparse_particles(rng, shape):
    """Few isolated particles of mixed shape (coverage 0.3–8 %) on a wide empty field."""
    return _mixed(rng, shape, loguniform(rng, 0.003, 0.08))


def crowded_particles(rng, shape):
    """Touching and overlapping particles of mixed shape (coverage 0.8–3, densities add)."""
    return _mixed(rng, shape, loguniform(rng, 0.8, 3.0))


def blobs(rng, shape):
    """Smooth blobs: soft level sets of a smooth random field, 1–3 grey levels."""
    scale = loguniform(rng, 2.0, min(shape) / 3)
    f = smooth_field(rng, shape, scale)
    edge = loguniform(rng, 0.02, 1.0)
    levels = int(rng.integers(1, 4))
    thresholds = np.sort(rng.uniform(-1.2, 1.2, levels))
    img = sum(1.0 / (1.0 + np.exp(-(f - t) / edge)) for t in thresholds) / levels
    shading = rng.uniform(0, 0.5)
    img = img * np.exp(shading * smooth_field(rng, shape, scale * 2))
    return img, {"scale_px": scale, "edge": edge, "levels": levels}


def power_law(rng, shape):
    """Random field with power spectrum ``|k|^-β``, β in [0.5, 4.5], mapped linearly,
    exponentially or by magnitude."""
    beta = rng.uniform(0.5, 4.5)
    f = power_law_field(rng, shape, beta)
    mapping = ("linear", "exp", "abs")[int(rng.integers(3))]
    s = rng.uniform(0.1, 0.4)
    if mapping == "linear":
        img = np.maximum(0.5 + s * f, 0.0)
    elif mapping == "exp":
        img = np.exp(2 * s * f)
    else:
        img = np.abs(f)
    return img, {"beta": beta, "mapping": mapping}


def fibres(rng, shape):
    """Smooth random curves (heading random walk) with Gaussian cross-section, 1–2 widths."""
    h, w = shape
    n = int(loguniform(rng, 1, 60))
    step = 0.5
    length = loguniform(rng, 10, 2 * (h + w))
    n_pts = int(length / step)
    curv = loguniform(rng, 0.002, 0.15)
    head = rng.uniform(0, 2 * math.pi, (n, 1)) + np.cumsum(
        rng.normal(0, curv * math.sqrt(step), (n, n_pts)), axis=1
    )
    start = _centres(rng, shape, n)
    y = start[:, :1] + step * np.cumsum(np.sin(head), axis=1)
    x = start[:, 1:] + step * np.cumsum(np.cos(head), axis=1)
    lengths = np.minimum(n_pts, rng.integers(n_pts // 4 + 1, n_pts + 1, n))
    amp = rng.uniform(0.3, 1.0, n)
    widths = np.array([loguniform(rng, 0.4, 6.0) for _ in range(2)])
    cls = rng.integers(0, 2, n) if rng.random() < 0.5 else np.zeros(n, dtype=np.int64)
    img = np.zeros(shape)
    for c in np.unique(cls):
        sel = cls == c
        keep = (np.arange(n_pts)[None, :] < lengths[sel, None]).ravel()
        yy, xx = y[sel].ravel()[keep], x[sel].ravel()[keep]
        wt = np.repeat(amp[sel], n_pts)[keep] * step
        img += fourier_gaussian(_splat(shape, yy, xx, wt), widths[c]) * (
            math.sqrt(2 * math.pi) * widths[c]
        )
    img = np.maximum(img, 0.0)  # FFT round-off
    return img, {"n_fibres": n, "width_px": float(widths[0]), "curvature": curv}


def _splat(shape, y, x, weights) -> np.ndarray:
    """Bilinear splat of weighted points; points outside the field are dropped."""
    h, w = shape
    y0, x0 = np.floor(y), np.floor(x)
    fy, fx = y - y0, x - x0
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    out = np.zeros(h * w)
    for dy, dx, wt in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        out += np.bincount(yy[ok] * w + xx[ok], weights=(weights * wt)[ok], minlength=h * w)
    return out.reshape(h, w)


def _vesicle(Y, X, r, sep, sigma, lumen, amp, a2, a3, p2, p3):
    rho = np.sqrt(Y * Y + X * X)
    phi = np.arctan2(Y, X)
    d = rho - r * (1 + a2 * np.cos(2 * phi + p2) + a3 * np.cos(3 * phi + p3))
    wall = np.exp(-((d - sep / 2) ** 2) / (2 * sigma**2))
    wall += np.where(sep > 0, np.exp(-((d + sep / 2) ** 2) / (2 * sigma**2)), 0.0)
    return amp * wall + lumen / (1 + np.exp(np.clip(d / 0.7, -50, 50)))


def membranes(rng, shape):
    """Closed membranes (deformed rings, single or bilayer walls, lumen density) and/or
    open bilayers along level sets of a smooth field."""
    sep = loguniform(rng, 2.0, 8.0) if rng.random() < 0.7 else 0.0
    sigma = loguniform(rng, 0.4, 2.0)
    img = np.zeros(shape)
    kind = ("closed", "open", "both")[int(rng.integers(3))]
    if kind != "open":
        r_mean = loguniform(rng, 4.0, min(shape) / 3)
        n = _count(
            loguniform(rng, 0.05, 1.5),
            shape[0] * shape[1],
            math.pi * r_mean**2,
            (3 * r_mean + 2 * sep + 6 * sigma) ** 2,
        )
        r = _radii(rng, n, r_mean, rng.uniform(0, 0.5))
        a2, a3 = rng.uniform(0, 0.25, n), rng.uniform(0, 0.12, n)
        half = r * (1 + a2 + a3) + sep + 4 * sigma + 1
        img += render_patches(
            shape,
            _centres(rng, shape, n, r_mean),
            half,
            _vesicle,
            r,
            np.full(n, sep),
            np.full(n, sigma),
            rng.uniform(0, 0.4, n) * rng.random(),
            rng.uniform(0.5, 1.0, n),
            a2,
            a3,
            rng.uniform(0, 6.3, n),
            rng.uniform(0, 6.3, n),
        )
    if kind != "closed":
        f = smooth_field(rng, shape, loguniform(rng, 6.0, min(shape) / 2))
        gy, gx = np.gradient(f)
        d = f / np.maximum(np.hypot(gy, gx), 1e-6)  # distance to the zero level set
        wall = np.exp(-((np.abs(d) - sep / 2) ** 2) / (2 * sigma**2))
        img += rng.uniform(0.5, 1.0) * wall
    return img, {"kind": kind, "bilayer_px": sep, "wall_sigma_px": sigma}


def voronoi(rng, shape):
    """Voronoi grains: per-grain level and gradient, boundaries as dark or bright lines."""
    h, w = shape
    n = int(loguniform(rng, 4, max(5.0, h * w / 60)))
    seeds = _centres(rng, shape, n, 5.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    warp = rng.uniform(0, 3.0)
    if warp > 0.3:
        scale = loguniform(rng, 5.0, min(shape) / 2)
        yy += warp * smooth_field(rng, shape, scale)
        xx += warp * smooth_field(rng, shape, scale)
    pts = np.column_stack([yy.ravel(), xx.ravel()])
    dist, idx = cKDTree(seeds).query(pts, k=2)
    gap = np.linalg.norm(seeds[idx[:, 1]] - seeds[idx[:, 0]], axis=1)
    to_edge = (dist[:, 1] ** 2 - dist[:, 0] ** 2) / (2 * np.maximum(gap, 1e-9))
    level = rng.uniform(0.2, 1.0, n)
    grad = rng.normal(0, rng.uniform(0, 0.02), (n, 2))
    rel = pts - seeds[idx[:, 0]]
    grain = level[idx[:, 0]] + np.einsum("ij,ij->i", grad[idx[:, 0]], rel)
    width = loguniform(rng, 0.4, 3.0)
    b_amp = rng.uniform(-0.6, 0.6)
    img = np.maximum(grain + b_amp * np.exp(-(to_edge**2) / (2 * width**2)), 0.0)
    return img.reshape(h, w), {"n_grains": n, "boundary_px": width, "boundary_amp": b_amp}


def _grating_profile(phase, kind, duty, period):
    if kind == "sine":
        return 0.5 + 0.5 * np.cos(2 * math.pi * phase)
    dist = np.abs(phase - np.rint(phase)) * period  # px from the nearest bar centre
    return np.clip(duty * period / 2 - dist + 0.5, 0.0, 1.0)


def gratings(rng, shape):
    """Line gratings and cross-gratings: period 3–60 px, any orientation, sine or square
    bars (duty 0.15–0.85), optionally bent by a smooth phase warp."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    period = loguniform(rng, 3.0, 60.0)
    theta = rng.uniform(0, math.pi)
    kind = "sine" if rng.random() < 0.3 else "square"
    duty = rng.uniform(0.15, 0.85)
    bend = rng.uniform(0, 0.5) * (rng.random() < 0.4)
    warp = bend * smooth_field(rng, shape, loguniform(rng, 10.0, 2 * max(shape))) if bend else 0
    cross = rng.random() < 0.4

    def lines(t):
        u = xx * math.cos(t) + yy * math.sin(t)
        return _grating_profile(u / period + warp + rng.random(), kind, duty, period)

    img = lines(theta)
    if cross:
        second = lines(theta + math.pi / 2 + rng.normal(0, 0.05))
        img = np.maximum(img, second) if rng.random() < 0.5 else img * second
    return img, {"period_px": period, "angle_rad": theta, "profile": kind, "cross": cross}


MESO_FAMILIES: dict[str, Callable] = {
    "polygons": polygons,
    "rods": rods,
    "spheres": spheres,
    "blobs": blobs,
    "power_law": power_law,
    "fibres": fibres,
    "membranes": membranes,
    "voronoi": voronoi,
    "gratings": gratings,
    "sparse_particles": sparse_particles,
    "crowded_particles": crowded_particles,
}


def meso_specimen(rng: np.random.Generator, shape, family: str) -> tuple[np.ndarray, dict]:
    """One specimen of a mesoscale family, scaled to a peak of 1, with its drawn params.

    A draw whose objects all fell outside the field is drawn again (a few times at most).
    """
    for _ in range(8):
        img, params = MESO_FAMILIES[family](rng, tuple(shape))
        peak = float(img.max())
        if peak > 0:
            break
    return (img / peak if peak > 0 else img), {"family": family, **params}


# --------------------------------------------------------------------------- support

SUPPORTS = ("amorphous", "holey", "textured")


def add_support(rng: np.random.Generator, image: np.ndarray, kind: str) -> tuple[np.ndarray, dict]:
    """Add a support film under a specimen (projected densities add).

    * ``"amorphous"``: carbon film, ``t0 + s·F``, ``F`` a power-law field (β 0–1.5)
      smoothed by 0.4–1.2 px, ``t0`` 0–0.3, ``s`` 0.02–0.2;
    * ``"holey"``: the same film with holes where a smooth field (scale 8–80 px) is
      below a threshold;
    * ``"textured"``: a smooth power-law texture (β 2.5–4, amplitude 0.05–0.3).
    """
    shape = image.shape
    if kind == "textured":
        film = rng.uniform(0.05, 0.3) * (1 + power_law_field(rng, shape, rng.uniform(2.5, 4)))
        return image + np.maximum(film, 0.0), {"support": kind}
    t0, s = rng.uniform(0.0, 0.3), loguniform(rng, 0.02, 0.2)
    grain = fourier_gaussian(
        power_law_field(rng, shape, rng.uniform(0, 1.5)), rng.uniform(0.4, 1.2)
    )
    film = np.maximum(t0 + s * _unit(grain), 0.0)
    if kind == "holey":
        holes = smooth_field(rng, shape, loguniform(rng, 8.0, 80.0))
        film *= 1.0 / (1.0 + np.exp(-(holes - rng.uniform(-1, 0.5)) / 0.1))
    return image + film, {"support": kind, "support_thickness": t0, "support_roughness": s}
