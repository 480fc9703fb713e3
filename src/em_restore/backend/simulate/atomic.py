"""Atomic-resolution specimen families of the wide simulator (lattices, defects, HRTEM).

Every family is a function ``family(rng, shape) -> (image, params)`` returning a
float64 image ``>= 0`` in relative units (projected column density, peak about 1)
and the scalars it drew. Columns are Gaussians integrated exactly over each pixel
(erf), rendered on patches vectorised over columns. Lattice parameters run from 2
to 20 px, at any orientation, with vacancies, strain, thermal jitter, amorphous
patches and thickness variation drawn per image. ``hrtem`` images a projected
potential through a weak-phase-object contrast transfer function with random
defocus, spherical aberration and astigmatism, so contrast reverses with
frequency as in real HRTEM. See ``docs/simulator.md``, section "Wide simulator".

Examples
--------
>>> img, params = atomic_specimen(np.random.default_rng(0), (64, 64), "square")
>>> img.shape, params["structure"], bool(2 <= params["spacing_px"] <= 20)
((64, 64), 'square', True)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.fft
import scipy.ndimage as ndi
from scipy.special import erf

from .mesoscale import fourier_gaussian, loguniform, power_law_field, smooth_field

__all__ = [
    "ATOMIC_FAMILIES",
    "LATTICE_STRUCTURES",
    "atomic_specimen",
    "ctf_image",
    "lattice_columns",
    "render_columns",
]

#: structure -> nearest-neighbour distance of its main columns, in lattice parameters
LATTICE_STRUCTURES = {
    "square": 1.0,
    "hexagonal": 1.0,
    "honeycomb": 1 / math.sqrt(3),
    "rectangular": 1.0,
    "centred": 0.8,
    "dumbbell": 0.35,
    "perovskite": 0.5,
}


def render_columns(shape, positions, amplitudes, sigma: float) -> np.ndarray:
    """Sum of pixel-integrated isotropic Gaussians, each peaking at its amplitude when
    centred on a pixel.

    Parameters
    ----------
    shape : (int, int)
    positions : (N, 2) array of ``(y, x)`` in pixels
    amplitudes : (N,) array
    sigma : float
        Standard deviation in pixels, ``> 0``.

    Examples
    --------
    >>> img = render_columns((9, 9), [[4.0, 4.0]], [2.0], 1.0)
    >>> round(float(img[4, 4]), 6)
    2.0
    """
    h, w = shape
    pos = np.asarray(positions, dtype=float).reshape(-1, 2)
    amp = np.asarray(amplitudes, dtype=float).reshape(-1)
    if not len(pos):
        return np.zeros((h, w))
    half = math.ceil(3 * sigma) + 1
    off = np.arange(-half, half + 1)
    base = np.rint(pos).astype(np.int64)
    s2 = sigma * math.sqrt(2.0)
    edges = off - 0.5
    edges = np.append(edges, half + 0.5)

    def weights(c, b):
        e = erf((b[:, None] + edges[None, :] - c[:, None]) / s2)
        return 0.5 * np.diff(e, axis=1)

    wy = weights(pos[:, 0], base[:, 0])
    wx = weights(pos[:, 1], base[:, 1])
    iy = base[:, 0, None] + off
    ix = base[:, 1, None] + off
    oky = (iy >= 0) & (iy < h)
    okx = (ix >= 0) & (ix < w)
    wy *= oky * (amp / erf(0.5 / s2) ** 2)[:, None]
    wx *= okx
    vals = wy[:, :, None] * wx[:, None, :]
    flat = np.clip(iy, 0, h - 1)[:, :, None] * w + np.clip(ix, 0, w - 1)[:, None, :]
    return np.bincount(flat.ravel(), weights=vals.ravel(), minlength=h * w).reshape(h, w)


def _basis(rng, structure: str):
    """(b/a ratio, angle between a and b in degrees, [(fa, fb, amplitude), ...])."""
    if structure == "square":
        return 1.0, 90.0, [(0, 0, 1.0)]
    if structure == "rectangular":
        return rng.uniform(1.2, 2.2), 90.0, [(0, 0, 1.0)]
    if structure == "centred":
        return rng.uniform(1.2, 2.0), 90.0, [(0, 0, 1.0), (0.5, 0.5, rng.uniform(0.3, 1.0))]
    if structure == "hexagonal":
        return 1.0, 60.0, [(0, 0, 1.0)]
    if structure == "honeycomb":
        return 1.0, 60.0, [(1 / 3, 1 / 3, 1.0), (2 / 3, 2 / 3, rng.uniform(0.4, 1.0))]
    if structure == "dumbbell":
        ratio = math.sqrt(2) * rng.uniform(0.9, 1.1)
        e = rng.uniform(0.12, 0.3) / (2 * ratio)  # half the pair separation, in units of b
        a2 = rng.uniform(0.5, 1.0)
        return ratio, 90.0, [(0, -e, 1.0), (0, e, a2), (0.5, 0.5 - e, 1.0), (0.5, 0.5 + e, a2)]
    if structure == "perovskite":
        o = rng.uniform(0.03, 0.2)
        return 1.0, 90.0, [(0, 0, 1.0), (0.5, 0.5, rng.uniform(0.2, 0.8)), (0.5, 0, o), (0, 0.5, o)]
    raise ValueError(f"structure must be one of {sorted(LATTICE_STRUCTURES)}; got {structure!r}.")


def lattice_columns(shape, spacing_px, angle_rad, ratio, gamma_deg, basis, origin, margin=4.0):
    """Column positions ``(N, 2)`` and amplitudes ``(N,)`` of a lattice covering ``shape``.

    ``a = spacing_px (cos θ, −sin θ)`` in ``(x, y)`` display convention (rows grow
    downwards), ``b`` of length ``ratio · spacing_px`` at ``gamma_deg`` from ``a``;
    sites at ``origin + (i + fa) a + (j + fb) b``. Columns more than ``margin`` px
    outside the field are dropped.

    Examples
    --------
    >>> pos, amp = lattice_columns((20, 20), 5.0, 0.0, 1.0, 90.0, [(0, 0, 1.0)], (0.0, 0.0))
    >>> bool(np.isclose(np.sort(np.unique(np.round(pos[:, 1], 6)))[:2], [0.0, 5.0]).all())
    True
    """
    h, w = shape
    t2 = angle_rad + math.radians(gamma_deg)
    a_vec = spacing_px * np.array([-math.sin(angle_rad), math.cos(angle_rad)])
    b_vec = ratio * spacing_px * np.array([-math.sin(t2), math.cos(t2)])
    m = np.column_stack([a_vec, b_vec])
    corners = np.array(
        [[-margin, -margin], [-margin, w + margin], [h + margin, -margin], [h + margin, w + margin]]
    ) - np.asarray(origin)
    ij = corners @ np.linalg.inv(m).T
    lo, hi = np.floor(ij.min(axis=0)) - 1, np.ceil(ij.max(axis=0)) + 1
    ii, jj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    pos, amp = [], []
    for fa, fb, a in basis:
        p = (
            np.asarray(origin)
            + np.outer((ii + fa).ravel(), a_vec)
            + np.outer((jj + fb).ravel(), b_vec)
        )
        pos.append(p)
        amp.append(np.full(len(p), float(a)))
    pos, amp = np.concatenate(pos), np.concatenate(amp)
    ok = (pos[:, 0] > -margin) & (pos[:, 0] < h - 1 + margin)
    ok &= (pos[:, 1] > -margin) & (pos[:, 1] < w - 1 + margin)
    return pos[ok], amp[ok]


def _sample(field: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return ndi.map_coordinates(field, pos.T, order=1, mode="nearest")


def _draw_crystal(rng, shape, structure, spacing=None, angle=None):
    """Columns of one crystal with strain, jitter and intensity variation, plus params."""
    spacing = loguniform(rng, 2.0, 20.0) if spacing is None else spacing
    angle = rng.uniform(0, 2 * math.pi) if angle is None else angle
    ratio, gamma, basis = _basis(rng, structure)
    origin = rng.uniform(0, spacing, 2)
    pos, amp = lattice_columns(shape, spacing, angle, ratio, gamma, basis, origin)
    nn = LATTICE_STRUCTURES[structure] * spacing
    sigma = max(0.3, rng.uniform(0.08, 0.3) * nn)
    strain = 0.0
    if rng.random() < 0.5:
        strain = rng.uniform(0.02, 0.3) * spacing
        scale = loguniform(rng, 3 * spacing, max(3 * spacing, 0.7 * min(shape)) + 1)
        for axis in (0, 1):
            pos[:, axis] += strain * _sample(smooth_field(rng, shape, scale), pos)
    jitter = rng.uniform(0, 0.04) * spacing
    pos += rng.normal(0, jitter, pos.shape)
    amp *= np.maximum(1 + rng.normal(0, rng.uniform(0, 0.15), len(amp)), 0.05)
    params = {
        "structure": structure,
        "spacing_px": spacing,
        "angle_rad": angle,
        "column_sigma_px": sigma,
        "strain_px": strain,
    }
    return pos, amp, sigma, params


def _vacate(rng, pos, amp):
    frac = rng.uniform(0, 0.15) if rng.random() < 0.6 else 0.0
    keep = rng.random(len(amp)) >= frac
    return pos[keep], amp[keep], frac


def _amorphous_columns(rng, shape, spacing, disorder):
    """Jittered hexagonal grid with jitter ``disorder · spacing``: short-range order only."""
    pos, _ = lattice_columns(
        shape, spacing, rng.uniform(0, 6.3), 1.0, 60.0, [(0, 0, 1.0)], rng.uniform(0, spacing, 2)
    )
    pos = pos + rng.normal(0, disorder * spacing, pos.shape)
    return pos, rng.uniform(0.3, 1.0, len(pos))


def _finish(rng, shape, pos, amp, sigma):
    """Render columns on a background with optional thickness wedge and carbon texture."""
    img = render_columns(shape, pos, amp, sigma)
    if rng.random() < 0.4:
        img *= np.exp(rng.uniform(0.1, 0.6) * smooth_field(rng, shape, loguniform(rng, 20, 200)))
    img += rng.uniform(0, 0.2)
    if rng.random() < 0.5:
        img += _carbon(rng, shape, rng.uniform(0.01, 0.1))
    return np.maximum(img, 0.0)


def _carbon(rng, shape, amplitude):
    grain = fourier_gaussian(
        power_law_field(rng, shape, rng.uniform(0, 1.5)), rng.uniform(0.5, 1.5)
    )
    return amplitude * np.maximum(1 + grain / max(float(grain.std()), 1e-12), 0.0)


def _lattice_family(structure: str) -> Callable:
    def family(rng, shape):
        pos, amp, sigma, params = _draw_crystal(rng, shape, structure)
        pos, amp, params["vacancies"] = _vacate(rng, pos, amp)
        params["amorphous_patch"] = rng.random() < 0.25
        if params["amorphous_patch"]:
            patch = smooth_field(rng, shape, loguniform(rng, 10, min(shape))) > rng.uniform(
                0.3, 1.5
            )
            inside = _sample(patch.astype(float), pos) > 0.5
            apos, aamp = _amorphous_columns(rng, shape, params["spacing_px"], rng.uniform(0.3, 0.6))
            ain = _sample(patch.astype(float), apos) > 0.5
            pos = np.concatenate([pos[~inside], apos[ain]])
            amp = np.concatenate([amp[~inside], aamp[ain] * float(amp.mean())])
        return _finish(rng, shape, pos, amp, sigma), params

    family.__doc__ = f"A {structure} lattice of atomic columns (see the module docstring)."
    return family


_CRYSTALS = ("square", "hexagonal", "rectangular", "centred", "dumbbell", "perovskite")


def grain_boundary(rng, shape):
    """Two crystals of different orientation (same or different structure) meeting at a
    straight or curved boundary, with an optional disordered gap."""
    structure = _CRYSTALS[int(rng.integers(len(_CRYSTALS)))]
    spacing = loguniform(rng, 2.0, 20.0)
    angle = rng.uniform(0, 2 * math.pi)
    second = structure if rng.random() < 0.7 else _CRYSTALS[int(rng.integers(len(_CRYSTALS)))]
    tilt = rng.uniform(math.radians(5), math.radians(85)) * rng.choice([-1, 1])
    g1 = _draw_crystal(rng, shape, structure, spacing, angle)
    g2 = _draw_crystal(rng, shape, second, spacing * rng.uniform(0.9, 1.1), angle + tilt)
    phi = rng.uniform(0, math.pi)
    normal = np.array([math.sin(phi), math.cos(phi)])
    centre = np.array(shape, dtype=float) * rng.uniform(0.3, 0.7, 2)
    bend = rng.uniform(0, 0.3) * min(shape) * (rng.random() < 0.5)
    field = smooth_field(rng, shape, 0.5 * min(shape)) if bend else None
    gap = rng.uniform(0, 0.5) * spacing

    def side(pos):
        s = (pos - centre) @ normal
        return s + bend * _sample(field, pos) if bend else s

    s1, s2 = side(g1[0]), side(g2[0])
    pos = np.concatenate([g1[0][s1 < -gap / 2], g2[0][s2 > gap / 2]])
    amp = np.concatenate([g1[1][s1 < -gap / 2], g2[1][s2 > gap / 2]])
    pos, amp, vac = _vacate(rng, pos, amp)
    img = _finish(rng, shape, pos, amp, 0.5 * (g1[2] + g2[2]))
    return img, {**g1[3], "second_structure": second, "tilt_rad": tilt, "vacancies": vac}


def amorphous(rng, shape):
    """Amorphous film: columns with short-range order only (jitter 0.3–0.6 spacing)."""
    spacing = loguniform(rng, 2.0, 12.0)
    pos, amp = _amorphous_columns(rng, shape, spacing, rng.uniform(0.3, 0.6))
    sigma = max(0.3, rng.uniform(0.1, 0.35) * spacing)
    return _finish(rng, shape, pos, amp, sigma), {"spacing_px": spacing, "column_sigma_px": sigma}


def nanoparticles_on_carbon(rng, shape):
    """Crystalline particles (1–6, random structure and orientation, faceted or round)
    on amorphous carbon; column intensity follows the projected thickness of a sphere."""
    n = int(rng.integers(1, 7))
    img = _carbon(rng, shape, rng.uniform(0.05, 0.3))
    pos_all, amp_all, sig = [], [], []
    for _ in range(n):
        radius = rng.uniform(0.08, 0.4) * min(shape)
        structure = _CRYSTALS[int(rng.integers(len(_CRYSTALS)))]
        spacing = loguniform(rng, 2.0, max(2.0, min(20.0, radius / 2.5)))
        pos, amp, sigma, _ = _draw_crystal(rng, shape, structure, spacing)
        centre = rng.uniform(0, 1, 2) * (np.array(shape) - 1)
        rel = pos - centre
        rho = np.hypot(rel[:, 0], rel[:, 1])
        facets = int(rng.integers(4, 9)) if rng.random() < 0.6 else 0
        if facets:
            turn = rng.uniform(0, 2 * math.pi)
            k = np.arange(facets) * 2 * math.pi / facets + turn
            extent = (rel @ np.stack([np.sin(k), np.cos(k)])).max(axis=1) / radius
        else:
            extent = rho / radius
        inside = extent < 1
        thick = np.sqrt(np.maximum(1 - (rho[inside] / (radius * 1.3)) ** 2, 0.05))
        pos_all.append(pos[inside])
        amp_all.append(amp[inside] * thick * rng.uniform(0.5, 1.0))
        sig.append(sigma)
    pos, amp = np.concatenate(pos_all), np.concatenate(amp_all)
    pos, amp, vac = _vacate(rng, pos, amp)
    img += render_columns(shape, pos, amp, float(np.mean(sig)))
    return np.maximum(img, 0.0), {"n_particles": n, "vacancies": vac}


def ctf_image(potential, phase_max, defocus, cs, astigmatism, astig_angle, envelope_k):
    """Bright-field HRTEM intensity of a phase object (pixel units, k in cycles/px).

    ``ψ = exp(i φ V / max V)``, ``I = |F⁻¹[F[ψ] · exp(−iχ(k)) · E(k)]|²`` with
    ``χ = π (Δf + A cos 2(φ_k − φ_A)) k² + (π/2) C_s k⁴`` and
    ``E = exp(−(k / k_E)²)``.  ``Δf`` and ``A`` are in px², ``C_s`` in px⁴ (the
    wavelength is absorbed into them). A weak phase object images as
    ``1 + 2 φ V * F⁻¹[sin χ · E]``: contrast reverses where ``sin χ`` changes sign.

    Examples
    --------
    >>> v = np.zeros((32, 32)); v[16, 16] = 1
    >>> i = ctf_image(v, 0.3, 0.0, 0.0, 0.0, 0.0, 1e9)  # no aberration: no contrast
    >>> bool(np.allclose(i, 1.0))
    True
    """
    v = np.asarray(potential, dtype=float)
    vmax = float(v.max())
    psi = np.exp(1j * phase_max * (v / vmax if vmax > 0 else v))
    fy = scipy.fft.fftfreq(v.shape[0])[:, None]
    fx = scipy.fft.fftfreq(v.shape[1])[None, :]
    k2 = fy * fy + fx * fx
    phi = np.arctan2(fy, fx)
    chi = math.pi * (defocus + astigmatism * np.cos(2 * (phi - astig_angle))) * k2
    chi += 0.5 * math.pi * cs * k2 * k2
    transfer = np.exp(-1j * chi - k2 / envelope_k**2)
    return np.abs(scipy.fft.ifft2(scipy.fft.fft2(psi) * transfer)) ** 2


def hrtem(rng, shape):
    """Phase-contrast HRTEM: a crystal, grain boundary or particles-on-carbon potential
    imaged through a random CTF (defocus ±4 a², C_s 0–3 a⁴, astigmatism, envelope)."""
    source = ("crystal", "grain_boundary", "nanoparticles")[int(rng.integers(3))]
    if source == "crystal":
        structure = _CRYSTALS[int(rng.integers(len(_CRYSTALS)))]
        potential, params = ATOMIC_FAMILIES[structure](rng, shape)
    elif source == "grain_boundary":
        potential, params = grain_boundary(rng, shape)
    else:
        potential, params = nanoparticles_on_carbon(rng, shape)
    a = float(params.get("spacing_px", 6.0))
    defocus = rng.uniform(-4.0, 4.0) * a * a
    cs = rng.uniform(0, 3.0) * a**4
    astig = rng.uniform(0, 0.5) * abs(defocus) * (rng.random() < 0.5)
    env = rng.uniform(1.0, 3.0) / a + 0.05
    phase = loguniform(rng, 0.1, 1.5)
    img = ctf_image(potential, phase, defocus, cs, astig, rng.uniform(0, math.pi), env)
    return img, {
        "source": source,
        "spacing_px": a,
        "defocus_px2": defocus,
        "cs_px4": cs,
        "phase_rad": phase,
        "envelope_cpp": env,
    }


ATOMIC_FAMILIES: dict[str, Callable] = {
    **{s: _lattice_family(s) for s in LATTICE_STRUCTURES},
    "grain_boundary": grain_boundary,
    "amorphous": amorphous,
    "nanoparticles_on_carbon": nanoparticles_on_carbon,
    "hrtem": hrtem,
}


def atomic_specimen(rng: np.random.Generator, shape, family: str) -> tuple[np.ndarray, dict]:
    """One specimen of an atomic family, scaled to a peak of 1, with its drawn params."""
    img, params = ATOMIC_FAMILIES[family](rng, tuple(shape))
    peak = float(img.max())
    return (img / peak if peak > 0 else img), {"family": family, **params}
