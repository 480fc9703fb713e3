"""Clean synthetic specimens with ground truth.

Every generator returns ``(image, truth)``: a float64 image of shape ``shape``
with values roughly in [0, 1] (fraction of the incident dose reaching the
detector: bright-field transmission, or the scattered fraction for dark-field /
HAADF contrast), and a small dataclass (or list of them) describing what was
drawn.

Coordinates: pixel ``(i, j)`` has its centre at ``(i * pixel_size_nm,
j * pixel_size_nm)`` nm, so ``center_yx_nm / pixel_size_nm`` are array-index
coordinates (as used by ``scipy.ndimage`` and ``skimage.measure``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage as ndi
from scipy.spatial import cKDTree
from scipy.special import erf

from .._args import (
    as_rng,
    check_choice,
    check_int,
    check_pair,
    check_real,
    check_shape,
)
from .degrade import correlated_noise

__all__ = [
    "GridInfo",
    "LatticeInfo",
    "Particle",
    "SpecimenInfo",
    "TissueInfo",
    "Vesicle",
    "VesicleScene",
    "atomic_lattice",
    "calibration_grid",
    "nanoparticles",
    "projected_spheres",
    "random_specimen",
    "tissue_texture",
    "vesicles",
]

_MIN_SIDE = 8


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


@dataclass(frozen=True)
class GridInfo:
    """Ground truth of :func:`calibration_grid`."""

    kind: str
    pitch_nm: float
    bar_nm: float
    angle_deg: float
    offset_yx_nm: tuple[float, float]


@dataclass(frozen=True, eq=False)
class TissueInfo:
    """Ground truth of :func:`tissue_texture`.

    Attributes
    ----------
    cells : (rows, cols) int32 ndarray
        Cell label (1..n) of each pixel.
    membranes : (rows, cols) bool ndarray
        Pixels on a cell membrane.
    organelles : (rows, cols) uint8 ndarray
        0 cytoplasm, 1 nucleus, 2 mitochondrion, 3 vesicle.
    """

    cells: np.ndarray
    membranes: np.ndarray
    organelles: np.ndarray

    ORGANELLES = ("cytoplasm", "nucleus", "mitochondrion", "vesicle")


@dataclass(frozen=True, eq=False)
class LatticeInfo:
    """Ground truth of :func:`atomic_lattice`.

    Attributes
    ----------
    positions_yx_nm : (N, 2) ndarray
        Centres of the columns present (including those just outside the field
        whose tails reach into it).
    intensities : (N,) ndarray
        Peak intensity of each column above the background.
    vacancies_yx_nm : (M, 2) ndarray
        Centres of removed columns.
    a_yx_nm, b_yx_nm : (2,) ndarray
        Lattice vectors in nm, (y, x) components.
    """

    positions_yx_nm: np.ndarray
    intensities: np.ndarray
    vacancies_yx_nm: np.ndarray
    a_yx_nm: np.ndarray
    b_yx_nm: np.ndarray


@dataclass(frozen=True, eq=False)
class SpecimenInfo:
    """What :func:`random_specimen` drew: the generator, its arguments and its truth."""

    kind: str
    pixel_size_nm: float
    params: dict = field(default_factory=dict)
    truth: object = None


# --------------------------------------------------------------------------- helpers


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
    h, w = check_shape(shape, min_size=_MIN_SIDE)
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
    if placed is None:
        raise ValueError(
            f"could not place n={n} particles of {dmin:g}-{dmax:g} nm without overlap in "
            f"shape {(h, w)} at {p:g} nm/px; reduce n or diameters_nm, or enlarge shape."
        )
    centres, radii_px = placed
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
    h, w = check_shape(shape, min_size=_MIN_SIDE)
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
    if placed is None:
        raise ValueError(
            f"could not place n={n} vesicles of {dmin:g}-{dmax:g} nm without overlap in "
            f"shape {(h, w)} at {p:g} nm/px; reduce n or diameters_nm."
        )
    centres, radii = placed
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


def calibration_grid(
    shape,
    *,
    pixel_size_nm: float = 1.0,
    pitch_nm: float | None = None,
    bar_nm: float | None = None,
    kind: str = "grating",
    angle_deg: float = 0.0,
    offset_yx_nm: tuple[float, float] | None = None,
    low: float = 0.2,
    high: float = 1.0,
    supersample: int = 4,
    rng=None,
) -> tuple[np.ndarray, GridInfo]:
    """Calibration specimen: a cross-grating (grid of bars) or an array of squares.

    ``kind="grating"``: bars of width ``bar_nm`` along both directions with period
    ``pitch_nm`` read ``low``; the square holes between them read ``high``.
    ``kind="squares"``: isolated squares of side ``bar_nm`` on the ``pitch_nm``
    lattice read ``low``; the rest reads ``high``. Pixel values are the exact area
    fraction estimated on a ``supersample²`` sub-pixel grid (anti-aliased).

    Parameters
    ----------
    shape : (int, int)
    pixel_size_nm : float
    pitch_nm : float, optional
        Period; default 1/8 of the smaller side.
    bar_nm : float, optional
        Bar width (grating) or square side (squares); default ``pitch_nm / 4``
        (grating) or ``pitch_nm / 2`` (squares).
    kind : {"grating", "squares"}
    angle_deg : float
        Rotation, degrees counter-clockwise as displayed.
    offset_yx_nm : (float, float), optional
        Position of a bar crossing / square corner; default random (from ``rng``).
    low, high : float
        Values of bars and holes.
    supersample : int
    rng : None, int or numpy.random.Generator

    Returns
    -------
    image : (rows, cols) float64 ndarray
    truth : GridInfo

    Examples
    --------
    >>> img, info = calibration_grid((64, 64), pitch_nm=16, bar_nm=4, offset_yx_nm=(0, 0))
    >>> float(img[2, 2]), float(img[8, 8]), float(img[0, 8])  # crossing, hole, half bar
    (0.2, 1.0, 0.6)
    """
    h, w = check_shape(shape, min_size=_MIN_SIDE)
    p = check_real(pixel_size_nm, "pixel_size_nm", low=0, low_open=True)
    kind = check_choice(kind, "kind", ("grating", "squares"))
    if pitch_nm is None:
        pitch_nm = min(h, w) * p / 8
    pitch = check_real(pitch_nm, "pitch_nm", low=0, low_open=True)
    if bar_nm is None:
        bar_nm = pitch / (4 if kind == "grating" else 2)
    bar = check_real(bar_nm, "bar_nm", low=0, high=pitch, hint="It must not exceed pitch_nm.")
    angle = check_real(angle_deg, "angle_deg")
    low = check_real(low, "low")
    high = check_real(high, "high")
    ss = check_int(supersample, "supersample", low=1, high=16)
    gen = as_rng(rng)
    if offset_yx_nm is None:
        offset_yx_nm = tuple(float(v) for v in gen.uniform(0, pitch, 2))
    oy, ox = check_pair(offset_yx_nm, "offset_yx_nm")
    th = math.radians(angle)
    c, s = math.cos(th), math.sin(th)
    sub = (np.arange(ss) + 0.5) / ss - 0.5
    xs = ((np.arange(w)[:, None] + sub[None, :]).ravel() * p - ox)[None, :]
    image = np.empty((h, w))
    chunk = max(1, 2**20 // (w * ss * ss))
    for r0 in range(0, h, chunk):
        r1 = min(h, r0 + chunk)
        ys = ((np.arange(r0, r1)[:, None] + sub[None, :]).ravel() * p - oy)[:, None]
        u = np.mod(c * xs - s * ys, pitch) < bar
        v = np.mod(s * xs + c * ys, pitch) < bar
        on = (u | v) if kind == "grating" else (u & v)
        cover = on.reshape(r1 - r0, ss, w, ss).mean(axis=(1, 3))
        image[r0:r1] = high * (1.0 - cover) + low * cover
    return image, GridInfo(kind, pitch, bar, angle, (oy, ox))


def _smooth_step(d: np.ndarray) -> np.ndarray:
    """Anti-aliased inside-indicator from a signed distance in pixels (negative inside)."""
    return np.clip(0.5 - d, 0.0, 1.0)


def _blob_field(gen, shape, scale_px: float) -> np.ndarray:
    return correlated_noise(shape, sigma=1.0, corr_length_px=scale_px, rng=gen)


def tissue_texture(
    shape,
    *,
    pixel_size_nm: float = 5.0,
    cell_size_px: float | None = None,
    membrane_px: float = 1.5,
    mitochondria: int | None = None,
    n_vesicles: int | None = None,
    granules: float = 0.002,
    rng=None,
) -> tuple[np.ndarray, TissueInfo]:
    """Heavy-metal-stained biological section (TEM / back-scattered SEM look).

    Dark stained membranes on a textured grey cytoplasm (bright-field intensity):

    * cells: a Voronoi tessellation warped by a smooth random displacement field;
      cell membranes are dark lines of width ``membrane_px``;
    * cytoplasm: multi-scale texture (sum of correlated noise at 1.5, 4 and 12 px)
      plus a per-cell staining level;
    * a nucleus in some cells (grey, with dark heterochromatin patches from
      thresholded low-pass noise and a dark envelope);
    * mitochondria: ellipses with a dark double membrane, darker matrix and cristae;
    * vesicles: small circles with dark rims; granules: dark ribosome-like dots.

    Parameters
    ----------
    shape : (int, int)
    pixel_size_nm : float
        Recorded in nothing but the scale of the default features (kept for a
        uniform signature; structures are specified in pixels).
    cell_size_px : float, optional
        Typical cell diameter; default a third of the smaller side.
    membrane_px : float
        Membrane line width in pixels.
    mitochondria : int, optional
        Number of mitochondria; default about one per (cell_size/1.5)² of area.
    n_vesicles : int, optional
        Default about three per mitochondrion.
    granules : float
        Density of dark granules per pixel.
    rng : None, int or numpy.random.Generator

    Returns
    -------
    image : (rows, cols) float64 ndarray in [0, 1]
    truth : TissueInfo

    Examples
    --------
    >>> img, info = tissue_texture((64, 64), rng=0)
    >>> img.shape, bool(0 <= img.min() and img.max() <= 1), bool(info.membranes.any())
    ((64, 64), True, True)
    """
    h, w = check_shape(shape, min_size=16)
    check_real(pixel_size_nm, "pixel_size_nm", low=0, low_open=True)
    cell = (
        min(h, w) / 3 if cell_size_px is None else check_real(cell_size_px, "cell_size_px", low=4)
    )
    mem = check_real(membrane_px, "membrane_px", low=0.3)
    if mitochondria is None:
        mitochondria = max(1, round(h * w / (cell / 1.5) ** 2))
    n_mito = check_int(mitochondria, "mitochondria", low=0)
    if n_vesicles is None:
        n_vesicles = 3 * n_mito
    n_ves = check_int(n_vesicles, "n_vesicles", low=0)
    granules = check_real(granules, "granules", low=0, high=1)
    gen = as_rng(rng)

    # cells: warped Voronoi
    n_cells = max(2, round(h * w / cell**2))
    seeds = gen.uniform((0, 0), (h, w), (n_cells, 2))
    warp = cell * 0.15
    dy = _blob_field(gen, (h, w), cell / 3) * warp
    dx = _blob_field(gen, (h, w), cell / 3) * warp
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    tree = cKDTree(seeds)
    pts = np.stack([(yy + dy).ravel(), (xx + dx).ravel()], axis=1)
    dist, lab = tree.query(pts, k=2)
    labels = (lab[:, 0] + 1).reshape(h, w).astype(np.int32)
    # distance to the bisector between the two nearest seeds (pixels, approx.)
    s1, s2 = seeds[lab[:, 0]], seeds[lab[:, 1]]
    sep = np.linalg.norm(s2 - s1, axis=1)
    d_edge = ((dist[:, 1] ** 2 - dist[:, 0] ** 2) / (2 * np.maximum(sep, 1e-9))).reshape(h, w)
    membrane = np.exp(-0.5 * (d_edge / (0.5 * mem)) ** 2)
    membranes = d_edge < 0.5 * mem + 0.5

    # cytoplasm texture
    tex = sum(a * _blob_field(gen, (h, w), s) for a, s in ((0.05, 1.5), (0.04, 4.0), (0.04, 12.0)))
    level = gen.uniform(0.62, 0.78, n_cells + 1)
    image = level[labels] + tex
    organelles = np.zeros((h, w), dtype=np.uint8)

    # nuclei in about a third of the cells
    chrom = _blob_field(gen, (h, w), max(2.0, cell / 12))
    for c in np.flatnonzero(gen.random(n_cells) < 0.35):
        cy, cx = seeds[c]
        rn = cell * gen.uniform(0.18, 0.28)
        d = (np.hypot(yy - cy, xx - cx) - rn) * (labels == c + 1)
        inside = _smooth_step(d) * (labels == c + 1)
        nuc = 0.55 + 0.08 * chrom - 0.25 * (chrom > 0.8)
        image = image * (1 - inside) + nuc * inside
        image -= 0.3 * np.exp(-0.5 * (d / (0.6 * mem)) ** 2) * (labels == c + 1)
        organelles[inside > 0.5] = 1

    # mitochondria: ellipses with double membrane and cristae
    for _ in range(n_mito):
        cy, cx = gen.uniform((0, 0), (h, w))
        a = cell * gen.uniform(0.12, 0.25)
        b = a * gen.uniform(0.35, 0.6)
        th = gen.uniform(0, np.pi)
        half = int(a + 3 * mem + 2)
        y0, y1 = max(0, int(cy) - half), min(h, int(cy) + half + 1)
        x0, x1 = max(0, int(cx) - half), min(w, int(cx) + half + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        ly, lx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        u = lx * math.cos(th) - ly * math.sin(th)
        v = lx * math.sin(th) + ly * math.cos(th)
        d = (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1) * b
        inside = _smooth_step(d)
        period = gen.uniform(3.0, 6.0)
        cristae = np.exp(-0.5 * ((np.mod(u, period) - period / 2) / (0.35 * mem)) ** 2)
        inner = 0.45 - 0.15 * cristae * (np.abs(v) < 0.8 * b)
        reg = image[y0:y1, x0:x1]
        reg[:] = reg * (1 - inside) + inner * inside
        reg -= 0.35 * np.exp(-0.5 * (d / (0.6 * mem)) ** 2)
        organelles[y0:y1, x0:x1][inside > 0.5] = 2

    # small vesicles with dark rims
    for _ in range(n_ves):
        cy, cx = gen.uniform((0, 0), (h, w))
        r = gen.uniform(2.0, max(2.5, cell * 0.05))
        half = int(r + 3 * mem + 2)
        y0, y1 = max(0, int(cy) - half), min(h, int(cy) + half + 1)
        x0, x1 = max(0, int(cx) - half), min(w, int(cx) + half + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        d = np.hypot(yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx) - r
        inside = _smooth_step(d)
        reg = image[y0:y1, x0:x1]
        reg[:] = reg * (1 - inside) + 0.8 * inside
        reg -= 0.3 * np.exp(-0.5 * (d / (0.5 * mem)) ** 2)
        organelles[y0:y1, x0:x1][inside > 0.5] = 3

    # granules (ribosomes / glycogen): dark dots
    n_gran = gen.binomial(h * w, granules)
    dots = np.zeros((h, w))
    gy, gx = gen.integers(0, h, n_gran), gen.integers(0, w, n_gran)
    np.add.at(dots, (gy, gx), gen.uniform(0.5, 1.0, n_gran))
    dots = ndi.gaussian_filter(dots, 0.8) * (2 * np.pi * 0.8**2)

    image = image - 0.45 * membrane - 0.3 * dots
    image = ndi.gaussian_filter(image, 0.5)
    return np.clip(image, 0.0, 1.0), TissueInfo(labels, membranes, organelles)


def atomic_lattice(
    shape,
    *,
    pixel_size_nm: float = 0.02,
    lattice_nm: float | tuple[float, float] = (0.4, 0.4),
    gamma_deg: float = 90.0,
    angle_deg: float = 0.0,
    column_sigma_nm: float = 0.05,
    basis: Sequence[tuple[float, float, float]] | None = None,
    vacancies: float = 0.0,
    background: float = 0.05,
    origin_yx_nm: tuple[float, float] | None = None,
    rng=None,
) -> tuple[np.ndarray, LatticeInfo]:
    """HAADF-STEM image of a crystal in zone axis: Gaussian atomic columns.

    ``I = background + sum_j A_j g(r - r_j)`` with ``g`` a Gaussian of standard
    deviation ``column_sigma_nm`` (probe convolved with the column), integrated
    exactly over each pixel and scaled so that a column centred on a pixel peaks at
    ``A_j`` above the background. Columns sit at
    ``r = origin + i a + j b + (fa a + fb b)`` for each basis site ``(fa, fb, A)``.

    Parameters
    ----------
    shape : (int, int)
    pixel_size_nm : float
        Default 0.02 nm (20 pm).
    lattice_nm : float or (float, float)
        Lengths of the lattice vectors ``a`` and ``b`` in nm.
    gamma_deg : float
        Angle between ``a`` and ``b`` (90 = rectangular, 120 = hexagonal).
    angle_deg : float
        Direction of ``a``, degrees counter-clockwise as displayed from +x.
    column_sigma_nm : float
    basis : sequence of (fa, fb, amplitude), optional
        Sites in fractional coordinates and their peak intensities; default
        ``[(0, 0, 0.9)]``. E.g. perovskite-like ``[(0, 0, 0.9), (0.5, 0.5, 0.4)]``.
    vacancies : float
        Fraction of columns removed at random, in [0, 1].
    background : float
    origin_yx_nm : (float, float), optional
        Position of a lattice point; default random within the unit cell.
    rng : None, int or numpy.random.Generator

    Returns
    -------
    image : (rows, cols) float64 ndarray
    truth : LatticeInfo

    Examples
    --------
    >>> img, info = atomic_lattice((64, 64), origin_yx_nm=(0.32, 0.32))
    >>> round(float(img[16, 16]), 6), round(float(img.min()), 2)
    (0.95, 0.05)
    """
    h, w = check_shape(shape, min_size=_MIN_SIDE)
    p = check_real(pixel_size_nm, "pixel_size_nm", low=0, low_open=True)
    la, lb = check_pair(lattice_nm, "lattice_nm", low=0, low_open=True)
    gamma = check_real(gamma_deg, "gamma_deg", low=0, high=180, low_open=True, high_open=True)
    angle = check_real(angle_deg, "angle_deg")
    sigma = check_real(column_sigma_nm, "column_sigma_nm", low=0, low_open=True) / p
    vacancies = check_real(vacancies, "vacancies", low=0, high=1)
    background = check_real(background, "background")
    if basis is None:
        basis = [(0.0, 0.0, 0.9)]
    try:
        sites = np.array(basis, dtype=np.float64).reshape(-1, 3)
    except (ValueError, TypeError):
        raise ValueError(
            f"basis must be a sequence of (fa, fb, amplitude) triples; got {basis!r}."
        ) from None
    if not np.isfinite(sites).all() or sites.shape[0] == 0:
        raise ValueError(f"basis must hold at least one finite (fa, fb, amplitude); got {basis!r}.")
    gen = as_rng(rng)
    t1 = math.radians(angle)
    t2 = math.radians(angle + gamma)
    a_vec = la / p * np.array([-math.sin(t1), math.cos(t1)])  # (y, x) pixels
    b_vec = lb / p * np.array([-math.sin(t2), math.cos(t2)])
    if origin_yx_nm is None:
        origin = gen.random() * a_vec + gen.random() * b_vec
    else:
        origin = np.array(check_pair(origin_yx_nm, "origin_yx_nm")) / p
    cell_area = abs(a_vec[0] * b_vec[1] - a_vec[1] * b_vec[0])
    n_cols_est = h * w / cell_area * sites.shape[0]
    if n_cols_est > 2e6:
        raise ValueError(
            f"lattice_nm={lattice_nm!r} at pixel_size_nm={p:g} gives ~{n_cols_est:.0f} columns; "
            "use a larger lattice or pixel size (columns should span several pixels)."
        )
    margin = 4 * sigma + 2
    corners = (
        np.array(
            [
                [-margin, -margin],
                [-margin, w + margin],
                [h + margin, -margin],
                [h + margin, w + margin],
            ]
        )
        - origin
    )
    inv = np.linalg.inv(np.stack([a_vec, b_vec], axis=1))
    ij = corners @ inv.T
    i_rng = np.arange(math.floor(ij[:, 0].min()) - 1, math.ceil(ij[:, 0].max()) + 2)
    j_rng = np.arange(math.floor(ij[:, 1].min()) - 1, math.ceil(ij[:, 1].max()) + 2)
    ii, jj = np.meshgrid(i_rng, j_rng, indexing="ij")
    frac = np.stack([ii.ravel(), jj.ravel()], axis=1)[:, None, :] + sites[None, :, :2]
    pos = origin + frac[..., 0, None] * a_vec + frac[..., 1, None] * b_vec
    amp = np.broadcast_to(sites[:, 2], pos.shape[:2])
    pos, amp = pos.reshape(-1, 2), amp.reshape(-1)
    keep = ((pos >= -margin) & (pos <= np.array([h, w]) + margin)).all(axis=1)
    pos, amp = pos[keep], amp[keep]
    vac = gen.random(pos.shape[0]) < vacancies if vacancies > 0 else np.zeros(len(pos), bool)
    image = np.full((h, w), background, dtype=np.float64)
    _render_gaussians(image, pos[~vac], amp[~vac], sigma)
    info = LatticeInfo(pos[~vac] * p, amp[~vac].copy(), pos[vac] * p, a_vec * p, b_vec * p)
    return image, info


def _render_gaussians(out: np.ndarray, pos: np.ndarray, amp: np.ndarray, sigma: float) -> None:
    """Add pixel-integrated isotropic Gaussians (peak ``amp`` when centred on a pixel)."""
    if pos.shape[0] == 0:
        return
    h, w = out.shape
    half = math.ceil(4 * sigma) + 1
    off = np.arange(-half, half + 1)
    base = np.rint(pos).astype(np.int64)
    s2 = sigma * math.sqrt(2)

    def weights(c, b):
        edges = (b[:, None] + off[None, :])[:, :, None] + np.array([-0.5, 0.5])
        e = erf((edges - c[:, None, None]) / s2)
        return 0.5 * (e[..., 1] - e[..., 0])

    wy = weights(pos[:, 0], base[:, 0])
    wx = weights(pos[:, 1], base[:, 1])
    peak = erf(0.5 / s2) ** 2
    iy = base[:, 0, None] + off[None, :]
    ix = base[:, 1, None] + off[None, :]
    vals = (amp / peak)[:, None, None] * wy[:, :, None] * wx[:, None, :]
    yy = np.broadcast_to(iy[:, :, None], vals.shape)
    xx = np.broadcast_to(ix[:, None, :], vals.shape)
    ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    out += np.bincount((yy[ok] * w + xx[ok]), weights=vals[ok], minlength=h * w).reshape(h, w)


SPECIMEN_KINDS = ("nanoparticles", "vesicles", "grid", "tissue", "lattice")


def random_specimen(
    shape,
    *,
    rng=None,
    pixel_size_nm: float | None = None,
    kinds: Sequence[str] = SPECIMEN_KINDS,
) -> tuple[np.ndarray, SpecimenInfo]:
    """Draw one specimen of a random kind with random parameters (training data).

    Parameters
    ----------
    shape : (int, int)
        At least 32 x 32.
    rng : None, int or numpy.random.Generator
    pixel_size_nm : float, optional
        Default: drawn per kind (nanoparticles / vesicles 0.5–2 nm, grid 2–10 nm,
        tissue 2–10 nm, lattice 0.01–0.03 nm).
    kinds : sequence of str
        Subset of ``("nanoparticles", "vesicles", "grid", "tissue", "lattice")``.

    Returns
    -------
    image : (rows, cols) float64 ndarray
    info : SpecimenInfo
        ``kind``, ``pixel_size_nm``, the keyword arguments passed (``params``) and
        the generator's ``truth``.

    Examples
    --------
    >>> img, info = random_specimen((64, 64), rng=1)
    >>> img.shape, info.kind in ("nanoparticles", "vesicles", "grid", "tissue", "lattice")
    ((64, 64), True)
    """
    h, w = check_shape(shape, min_size=32)
    if isinstance(kinds, str) or not len(kinds):
        raise ValueError(f"kinds must be a non-empty sequence of kind names; got {kinds!r}.")
    for k in kinds:
        check_choice(k, "kinds", SPECIMEN_KINDS)
    gen = as_rng(rng)
    kind = str(kinds[gen.integers(len(kinds))])
    u = gen.uniform
    side = min(h, w)
    ranges = {
        "nanoparticles": (0.5, 2.0),
        "vesicles": (0.5, 2.0),
        "grid": (2.0, 10.0),
        "tissue": (2.0, 10.0),
        "lattice": (0.01, 0.03),
    }
    if pixel_size_nm is None:
        lo, hi = ranges[kind]
        p = float(math.exp(u(math.log(lo), math.log(hi))))
    else:
        p = check_real(pixel_size_nm, "pixel_size_nm", low=0, low_open=True)
    if kind == "nanoparticles":
        dmax_px = min(u(6, 30), side / 3)
        dmin_px = dmax_px * u(0.4, 1.0)
        params = dict(
            diameters_nm=(dmin_px * p, dmax_px * p),
            contrast="bright" if gen.random() < 0.7 else "dark",
            allow_touching_pairs=bool(gen.random() < 0.3),
        )
        params["n"] = max(1, int(u(0.03, 0.15) * h * w / (math.pi * (dmax_px / 2) ** 2)))
        fn = nanoparticles
    elif kind == "vesicles":
        dmax_px = min(u(30, 150), side / 1.5)
        params = dict(
            diameters_nm=(dmax_px * p * u(0.3, 0.8), dmax_px * p),
            membrane_nm=u(4.0, 5.0),
            liquid_nm=u(50, 500),
        )
        if params["membrane_nm"] >= params["diameters_nm"][0] / 2:
            params["diameters_nm"] = (
                params["membrane_nm"] * 3,
                max(dmax_px * p, params["membrane_nm"] * 3),
            )
        fn = vesicles
    elif kind == "grid":
        pitch = u(8, side / 2) * p
        params = dict(
            kind="grating" if gen.random() < 0.6 else "squares",
            pitch_nm=pitch,
            bar_nm=pitch * u(0.15, 0.6),
            angle_deg=u(-45, 45) if gen.random() < 0.5 else 0.0,
            low=u(0.05, 0.5),
        )
        fn = calibration_grid
    elif kind == "tissue":
        params = dict(cell_size_px=u(0.2, 0.6) * side, granules=u(0.0, 0.005))
        fn = tissue_texture
    else:
        a = u(0.25, 0.6)
        sigma_nm = max(u(0.03, 0.08), 1.2 * p)
        params = dict(
            lattice_nm=(a, a * u(0.8, 1.25)),
            gamma_deg=float(gen.choice([90.0, 120.0, u(70, 110)])),
            angle_deg=u(0, 180),
            column_sigma_nm=min(sigma_nm, 0.3 * a),
            vacancies=u(0, 0.05),
        )
        if gen.random() < 0.4:
            params["basis"] = [(0.0, 0.0, 0.9), (0.5, 0.5, u(0.2, 0.6))]
        fn = atomic_lattice
    image, truth = fn((h, w), pixel_size_nm=p, rng=gen, **params)
    return image, SpecimenInfo(kind, p, params, truth)
