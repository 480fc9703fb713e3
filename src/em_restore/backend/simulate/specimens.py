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
from .particles import (
    MIN_SIDE,
    Particle,
    Vesicle,
    VesicleScene,
    nanoparticles,
    projected_spheres,
    vesicles,
)
from .recording import correlated_noise

__all__ = [
    "SPECIMEN_KINDS",
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
    h, w = check_shape(shape, min_size=MIN_SIDE)
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
    h, w = check_shape(shape, min_size=MIN_SIDE)
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
