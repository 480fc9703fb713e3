"""Particle specimens: nanoparticles (spheres, polygons, rods; sparse to crowded) and
vesicles with membrane proteins in liquid, with their ground truth (see
:mod:`.specimens` for the conventions: values in [0, 1], pixel centres at
``(i, j) * pixel_size_nm``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._args import (
    as_rng,
    check_choice,
    check_int,
    check_pair,
    check_real,
    check_shape,
)
from .recording import correlated_noise

__all__ = [
    "MIN_SIDE",
    "Particle",
    "Vesicle",
    "VesicleScene",
    "nanoparticles",
    "projected_spheres",
    "vesicles",
]

#: The smallest side a specimen generator accepts.
MIN_SIDE = 8


# --------------------------------------------------------------------------- truth


@dataclass(frozen=True)
class Particle:
    """A spherical particle.

    Attributes
    ----------
    center_yx_nm : (float, float)
        Centre in nm (divide by the pixel size for array-index coordinates).
    diameter_nm : float
    pair : int or None
        Index of the near-touching pair this particle belongs to, if any.
    """

    center_yx_nm: tuple[float, float]
    diameter_nm: float
    pair: int | None = None

    @property
    def radius_nm(self) -> float:
        return self.diameter_nm / 2

    @property
    def volume_nm3(self) -> float:
        return 4 / 3 * math.pi * self.radius_nm**3

    def center_yx_px(self, pixel_size_nm: float) -> tuple[float, float]:
        """Centre in array-index (row, col) coordinates."""
        return (self.center_yx_nm[0] / pixel_size_nm, self.center_yx_nm[1] / pixel_size_nm)


@dataclass(frozen=True)
class Vesicle:
    """A lipid vesicle: hollow sphere of outer ``diameter_nm`` and wall ``membrane_nm``."""

    center_yx_nm: tuple[float, float]
    diameter_nm: float
    membrane_nm: float


@dataclass(frozen=True, eq=False)
class VesicleScene:
    """Ground truth of :func:`vesicles`."""

    vesicles: list[Vesicle]
    proteins: list[Particle]
    liquid_thickness_nm: np.ndarray


def _sphere_thickness(out: np.ndarray, cy: float, cx: float, r: float, ss: int = 16) -> None:
    """Add the pixel-averaged projected thickness of a sphere (pixel units) into ``out``.

    Exact integration of ``t = 2 sqrt(r² - rho²)`` along x within each pixel
    (closed form), midpoint rule with ``ss`` sub-rows along y.
    """
    if r <= 0:
        return
    h, w = out.shape
    i0, i1 = max(0, math.floor(cy - r - 0.5)), min(h, math.ceil(cy + r + 0.5) + 1)
    j0, j1 = max(0, math.floor(cx - r - 0.5)), min(w, math.ceil(cx + r + 0.5) + 1)
    if i0 >= i1 or j0 >= j1:
        return
    ys = (np.arange(i0 * ss, i1 * ss) + 0.5) / ss - 0.5 - cy
    r2 = np.maximum(r * r - ys * ys, 0.0)[:, None]
    rr = np.sqrt(r2)
    xe = np.clip((np.arange(j0, j1 + 1) - 0.5 - cx)[None, :], -rr, rr)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(rr > 0, xe / np.where(rr > 0, rr, 1.0), 0.0)
    prim = xe * np.sqrt(np.maximum(r2 - xe * xe, 0.0)) + r2 * np.arcsin(np.clip(ratio, -1, 1))
    strip = np.diff(prim, axis=1)  # integral of t over the column, per sub-row
    out[i0:i1, j0:j1] += strip.reshape(i1 - i0, ss, j1 - j0).mean(axis=1)


def projected_spheres(shape, centers_px, radii_px) -> np.ndarray:
    """Summed projected thickness (in pixels) of spheres, pixel-averaged exactly.

    Unlike :func:`nanoparticles`, spheres may overlap (sintered particles) or
    leave the field; thicknesses add. Used to build exact test and benchmark
    scenes (e.g. pairs at a chosen gap).

    Examples
    --------
    >>> t = projected_spheres((32, 32), [(16.0, 16.0)], [6.0])
    >>> bool(abs(t.sum() / (4 / 3 * np.pi * 6.0**3) - 1) < 1e-4)  # the sphere's volume
    True
    """
    h, w = check_shape(shape, min_size=1)
    centres = np.asarray(centers_px, dtype=float).reshape(-1, 2)
    radii = np.asarray(radii_px, dtype=float).reshape(-1)
    if len(centres) != len(radii):
        raise ValueError(
            f"centers_px and radii_px must have the same length; got {len(centres)} and "
            f"{len(radii)}."
        )
    if not (np.isfinite(centres).all() and np.isfinite(radii).all()) or (radii < 0).any():
        raise ValueError("centers_px must be finite and radii_px finite and >= 0.")
    out = np.zeros((h, w))
    for (cy, cx), r in zip(centres, radii, strict=True):
        _sphere_thickness(out, float(cy), float(cx), float(r))
    return out


def _place_disks(
    gen: np.random.Generator,
    shape: tuple[int, int],
    radii: np.ndarray,
    *,
    gap: float,
    inside: bool,
    n_pairs: int = 0,
    pair_gap: float = 0.0,
    batch: int = 64,
    tries: int = 200,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Random sequential placement of non-overlapping disks (pixel units).

    The first ``2 * n_pairs`` radii form near-touching pairs (surface gap
    ``pair_gap``); other surfaces are at least ``gap`` apart. A hash grid of cell
    ``2 max(r) + gap`` keeps each test local, so placement is ~linear in the number
    of disks. Returns (centres (n, 2), radii (n,)) or None when a disk does not fit
    after ``batch * tries`` random candidates.
    """
    h, w = shape
    n = radii.size
    centres = np.zeros((n, 2))
    placed_r = np.zeros(n)
    if n == 0:
        return centres, placed_r
    cell = max(2.0 * float(radii.max()) + gap, 1.0)
    grid: dict[tuple[int, int], list[int]] = {}
    k = 0

    def bounds(r):
        if inside:
            return (r + 0.5, r + 0.5), (h - 1.5 - r, w - 1.5 - r)
        return (0.0, 0.0), (h - 1.0, w - 1.0)

    def free(y, x, r):
        (ly, lx), (hy, hx) = bounds(r)
        if not (ly <= y <= hy and lx <= x <= hx):
            return False
        gy, gx = int(y // cell), int(x // cell)
        for cy in (gy - 1, gy, gy + 1):
            for cx in (gx - 1, gx, gx + 1):
                for j in grid.get((cy, cx), ()):
                    py, px = centres[j]
                    if math.hypot(y - py, x - px) < r + placed_r[j] + gap:
                        return False
        return True

    def add(y, x, r):
        nonlocal k
        centres[k] = y, x
        placed_r[k] = r
        grid.setdefault((int(y // cell), int(x // cell)), []).append(k)
        k += 1

    units = [(2 * p, 2 * p + 1) for p in range(n_pairs)] + [(i,) for i in range(2 * n_pairs, n)]
    for unit in units:
        r1 = float(radii[unit[0]])
        lo, hi = bounds(r1)
        if hi[0] < lo[0] or hi[1] < lo[1]:
            return None
        r2 = float(radii[unit[-1]])
        done = False
        for _ in range(tries):
            c1 = gen.uniform(lo, hi, (batch, 2)).tolist()
            ang = gen.uniform(0, 2 * np.pi, batch).tolist() if len(unit) == 2 else None
            for b, (y, x) in enumerate(c1):
                if not free(y, x, r1):
                    continue
                if ang is None:
                    add(y, x, r1)
                    done = True
                    break
                d = r1 + r2 + pair_gap
                y2, x2 = y + d * math.sin(ang[b]), x + d * math.cos(ang[b])
                if free(y2, x2, r2):
                    add(y, x, r1)
                    add(y2, x2, r2)
                    done = True
                    break
            if done:
                break
        if not done:
            return None
    return centres, placed_r


def _placed(placed, what: str, dmin: float, dmax: float, shape, p: float, more: str = ""):
    """:func:`_place_disks`' result, or the one-line error when nothing fitted."""
    if placed is None:
        raise ValueError(
            f"could not place {what} of {dmin:g}-{dmax:g} nm without overlap in shape "
            f"{tuple(shape)} at {p:g} nm/px; reduce n or diameters_nm{more}."
        )
    return placed


def _range_or_value(value, name: str, default: tuple[float, float]) -> tuple[float, float]:
    if value is None:
        return default
    lo, hi = check_pair(value, name, low=0, low_open=True)
    if hi < lo:
        raise ValueError(f"{name} must be (min, max) with min <= max; got {value!r}.")
    return lo, hi


# --------------------------------------------------------------------------- specimens


def nanoparticles(
    shape,
    *,
    pixel_size_nm: float = 1.0,
    diameters_nm: float | tuple[float, float] | None = None,
    n: int | None = None,
    mu: float | None = None,
    background: float | None = None,
    contrast: str = "bright",
    allow_touching_pairs: bool | int = False,
    pair_gap_nm: float | None = None,
    min_gap_nm: float | None = None,
    rng=None,
) -> tuple[np.ndarray, list[Particle]]:
    """Dense spherical nanoparticles on a thin support (e.g. Au/Pt on carbon).

    The projected thickness of a sphere of radius ``r`` at distance ``rho`` from
    its centre is ``t = 2 sqrt(r² - rho²)``; it is averaged exactly over each pixel
    (closed-form along x, 16 sub-rows along y), so ``sum(t) * pixel_size_nm**2`` is
    the sphere volume to ~1e-4. Contrast:

    * ``"bright"`` (bright-field TEM, mass-thickness): ``I = background * exp(-mu t)``,
      so ``-log(I / background) / mu`` recovers ``t`` exactly;
    * ``"dark"`` (HAADF-like): ``I = background + mu t``.

    Particles lie entirely inside the field and do not overlap: surfaces are at
    least ``min_gap_nm`` apart, except the requested near-touching pairs whose
    surfaces are exactly ``pair_gap_nm`` apart.

    Parameters
    ----------
    shape : (int, int)
        Image shape, each side ``>= 8``.
    pixel_size_nm : float
        Pixel size in nm.
    diameters_nm : float or (float, float), optional
        Fixed diameter or uniform range (nm). Default 6 to 16 pixels.
    n : int, optional
        Number of particles (including pair members). Default: ~12 % area coverage.
    mu : float, optional
        Attenuation (bright, 1/nm) or scattering (dark, intensity per nm). Default
        ``ln 2 / mean diameter`` (bright: a mean particle transmits 50 % at its
        centre) or ``0.9 / max diameter`` (dark).
    background : float, optional
        Support/vacuum level: default 1.0 (bright) or 0.05 (dark).
    contrast : {"bright", "dark"}
    allow_touching_pairs : bool or int
        Number of near-touching pairs; ``True`` means ``max(1, n // 10)`` (none
        when ``n < 2``).
    pair_gap_nm : float, optional
        Surface-to-surface gap within a pair; default 1 pixel.
    min_gap_nm : float, optional
        Smallest surface gap between other particles; default
        ``3 px + 10 % of the largest diameter``.
    rng : None, int or numpy.random.Generator

    Returns
    -------
    image : (rows, cols) float64 ndarray
    particles : list of Particle
        Pair members come first, pair by pair (``Particle.pair`` set).

    Raises
    ------
    ValueError
        For invalid arguments, or when ``n`` particles do not fit.

    Examples
    --------
    >>> img, parts = nanoparticles((64, 64), pixel_size_nm=0.5, n=4, rng=0)
    >>> img.shape, len(parts), bool(img.max() <= 1.0)
    ((64, 64), 4, True)
    """
    h, w = check_shape(shape, min_size=MIN_SIDE)
    p = check_real(pixel_size_nm, "pixel_size_nm", low=0, low_open=True)
    contrast = check_choice(contrast, "contrast", ("bright", "dark"))
    dmin, dmax = _range_or_value(diameters_nm, "diameters_nm", (6 * p, 16 * p))
    if dmax / p + 3 > min(h, w):
        raise ValueError(
            f"diameters_nm up to {dmax:g} nm ({dmax / p:.1f} px) do not fit in shape {(h, w)}; "
            "use smaller diameters, a larger pixel_size_nm or a larger shape."
        )
    dmean = 0.5 * (dmin + dmax)
    if n is None:
        n = max(1, round(0.12 * h * w / (math.pi * (dmean / 2 / p) ** 2)))
    n = check_int(n, "n", low=0)
    if isinstance(allow_touching_pairs, bool | np.bool_):
        n_pairs = min(max(1, n // 10), n // 2) if allow_touching_pairs else 0
    else:
        n_pairs = check_int(allow_touching_pairs, "allow_touching_pairs", low=0)
    if 2 * n_pairs > n:
        raise ValueError(
            f"allow_touching_pairs={n_pairs} needs {2 * n_pairs} particles but n={n}; "
            "raise n or ask for fewer pairs."
        )
    pair_gap = p if pair_gap_nm is None else check_real(pair_gap_nm, "pair_gap_nm", low=0)
    min_gap = (
        3 * p + 0.1 * dmax if min_gap_nm is None else check_real(min_gap_nm, "min_gap_nm", low=0)
    )
    if mu is None:
        mu = math.log(2) / dmean if contrast == "bright" else 0.9 / dmax
    mu = check_real(mu, "mu", low=0)
    if background is None:
        background = 1.0 if contrast == "bright" else 0.05
    background = check_real(background, "background", low=0)
    gen = as_rng(rng)

    diam = gen.uniform(dmin, dmax, n)
    diam[2 * n_pairs :] = np.sort(diam[2 * n_pairs :])[::-1]  # big ones first: packs better
    placed = _place_disks(
        gen,
        (h, w),
        diam / 2 / p,
        gap=min_gap / p,
        inside=True,
        n_pairs=n_pairs,
        pair_gap=pair_gap / p,
    )
    centres, radii_px = _placed(
        placed, f"n={n} particles", dmin, dmax, (h, w), p, ", or enlarge shape"
    )
    thick = np.zeros((h, w))
    particles = []
    for i in range(n):
        _sphere_thickness(thick, centres[i, 0], centres[i, 1], radii_px[i])
        particles.append(
            Particle(
                center_yx_nm=(float(centres[i, 0] * p), float(centres[i, 1] * p)),
                diameter_nm=float(2 * radii_px[i] * p),
                pair=i // 2 if i < 2 * n_pairs else None,
            )
        )
    thick *= p  # nm
    if contrast == "bright":
        image = background * np.exp(-mu * thick)
    else:
        image = background + mu * thick
    return image, particles


def vesicles(
    shape,
    *,
    pixel_size_nm: float = 1.0,
    n: int | None = None,
    diameters_nm: float | tuple[float, float] = (30.0, 120.0),
    membrane_nm: float = 4.5,
    liquid_nm: float = 150.0,
    liquid_variation: float = 0.2,
    liquid_corr_nm: float | None = None,
    mu_liquid: float = 1 / 300,
    mu_membrane: float = 0.006,
    n_proteins: int | None = None,
    protein_diameters_nm: float | tuple[float, float] = (4.0, 10.0),
    mu_protein: float = 0.01,
    cut_by_edge: bool = True,
    rng=None,
) -> tuple[np.ndarray, VesicleScene]:
    """Liquid-cell TEM scene: lipid vesicles and proteins in a liquid layer.

    Bright-field transmission ``I = exp(-mu_liquid L - mu_membrane s - mu_protein q)``
    with ``L`` the liquid thickness (``liquid_nm`` times a smooth random field of
    relative standard deviation ``liquid_variation``, as from a bulging window),
    ``s`` the projected thickness of the vesicle walls (hollow spheres:
    ``t(R) - t(R - membrane_nm)``, darkest where the beam is tangent, i.e. dark
    rings) and ``q`` that of small spherical proteins. ``mu_membrane`` and
    ``mu_protein`` are the *excess* attenuation over the displaced liquid.

    Parameters
    ----------
    shape : (int, int)
    pixel_size_nm : float
    n : int, optional
        Number of vesicles; default ~20 % area coverage (at least 1). Vesicles
        do not overlap.
    diameters_nm : float or (float, float)
        Outer diameter (range), nm.
    membrane_nm : float
        Bilayer thickness, nm (4–5 nm for lipids).
    liquid_nm : float
        Mean liquid thickness, nm.
    liquid_variation : float
        Relative standard deviation of the liquid thickness (clipped at 5 %).
    liquid_corr_nm : float, optional
        Correlation length of the thickness variation; default half the field.
    mu_liquid, mu_membrane, mu_protein : float
        Attenuation coefficients, 1/nm.
    n_proteins : int, optional
        Default about one per 2000 nm² of field.
    protein_diameters_nm : float or (float, float)
    cut_by_edge : bool
        ``True`` (default): vesicle centres anywhere in the field, so some are cut
        by the edge; ``False``: every vesicle lies entirely inside.
    rng : None, int or numpy.random.Generator

    Returns
    -------
    image : (rows, cols) float64 ndarray
    truth : VesicleScene

    Examples
    --------
    >>> img, scene = vesicles((96, 96), pixel_size_nm=1.0, n=2, rng=0)
    >>> len(scene.vesicles), bool(0 < img.min() < img.max() < 1)
    (2, True)
    """
    h, w = check_shape(shape, min_size=MIN_SIDE)
    p = check_real(pixel_size_nm, "pixel_size_nm", low=0, low_open=True)
    dmin, dmax = _range_or_value(diameters_nm, "diameters_nm", (30.0, 120.0))
    m = check_real(membrane_nm, "membrane_nm", low=0, low_open=True)
    if m >= dmin / 2:
        raise ValueError(
            f"membrane_nm={m:g} must be smaller than the smallest vesicle radius "
            f"({dmin / 2:g} nm); reduce it or raise diameters_nm."
        )
    liquid_nm = check_real(liquid_nm, "liquid_nm", low=0)
    liquid_variation = check_real(liquid_variation, "liquid_variation", low=0)
    corr = (
        0.5 * min(h, w) * p
        if liquid_corr_nm is None
        else check_real(liquid_corr_nm, "liquid_corr_nm", low=0)
    )
    mu_liquid = check_real(mu_liquid, "mu_liquid", low=0)
    mu_membrane = check_real(mu_membrane, "mu_membrane", low=0)
    mu_protein = check_real(mu_protein, "mu_protein", low=0)
    pmin, pmax = _range_or_value(protein_diameters_nm, "protein_diameters_nm", (4.0, 10.0))
    area_nm2 = h * w * p * p
    if n is None:
        n = max(1, round(0.2 * area_nm2 / (math.pi * ((dmin + dmax) / 4) ** 2)))
    n = check_int(n, "n", low=0)
    if n_proteins is None:
        n_proteins = round(area_nm2 / 2000)
    n_proteins = check_int(n_proteins, "n_proteins", low=0)
    gen = as_rng(rng)

    field_ = correlated_noise((h, w), sigma=1.0, corr_length_px=corr / p, rng=gen)
    liquid = liquid_nm * np.maximum(1.0 + liquid_variation * field_, 0.05)

    diam = np.sort(gen.uniform(dmin, dmax, n))[::-1]
    placed = _place_disks(gen, (h, w), diam / 2 / p, gap=2.0, inside=not cut_by_edge)
    centres, radii = _placed(placed, f"n={n} vesicles", dmin, dmax, (h, w), p)
    shell = np.zeros((h, w))
    ves = []
    for (cy, cx), r in zip(centres, radii, strict=True):
        _sphere_thickness(shell, cy, cx, r)
        inner = np.zeros((h, w))
        _sphere_thickness(inner, cy, cx, r - m / p)
        shell -= inner
        ves.append(Vesicle((float(cy * p), float(cx * p)), float(2 * r * p), m))
    prot_t = np.zeros((h, w))
    proteins = []
    pd = gen.uniform(pmin, pmax, n_proteins)
    pc = gen.uniform((0, 0), (h - 1, w - 1), (n_proteins, 2))
    for (cy, cx), d in zip(pc, pd, strict=True):
        _sphere_thickness(prot_t, cy, cx, d / 2 / p)
        proteins.append(Particle((float(cy * p), float(cx * p)), float(d)))
    image = np.exp(-mu_liquid * liquid - (mu_membrane * shell + mu_protein * prot_t) * p)
    return image, VesicleScene(ves, proteins, liquid)
