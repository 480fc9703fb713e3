"""Degradations of a clean specimen into a recorded EM image, each a seeded function.

Units: ``image`` values of a clean specimen are the *fraction of the incident dose
reaching the detector* (1.0 = vacuum / full beam); ``dose`` is in electrons per
pixel (e⁻/px); detector output is in ADU (analogue-to-digital units). See
``docs/simulator.md`` for the formulas.

All functions take the image first, accept any leading axes ``(..., rows, cols)``
unless stated, never modify their input and return new float64 arrays (integers
from :func:`quantize`). ``rng`` accepts ``None``, an int seed or a
:class:`numpy.random.Generator`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

from .. import psf as _psf
from .._args import as_rng, check_choice, check_image, check_int, check_real, check_shape

__all__ = [
    "AcquisitionConfig",
    "blur",
    "correlated_noise",
    "dead_pixels",
    "detector",
    "line_noise",
    "poisson_dose",
    "quantize",
    "random_acquisition_config",
    "scan_jitter",
    "simulate_acquisition",
    "xray_spikes",
]


# --------------------------------------------------------------------------- noise


def poisson_dose(image, dose, *, rng=None) -> np.ndarray:
    """Electron shot noise: Poisson counts with mean ``dose * image``.

    Parameters
    ----------
    image : (..., rows, cols) array_like
        Fraction of the incident dose reaching the detector in each pixel
        (``>= 0``; 1.0 = unobstructed beam). A flat field of 1.0 at dose ``D``
        gives ``Poisson(D)`` counts, mean and variance ``D``.
    dose : float or array_like
        Incident electrons per pixel (e⁻/px), ``>= 0``; an array must broadcast
        against ``image`` (e.g. one dose per frame, shape ``(T, 1, 1)``).
    rng : None, int or numpy.random.Generator

    Returns
    -------
    counts : float64 ndarray, same shape as ``image``
        Integer-valued electron counts.

    Examples
    --------
    >>> c = poisson_dose(np.ones((4, 4)), 10.0, rng=0)
    >>> c.dtype, bool((c == np.round(c)).all())
    (dtype('float64'), True)
    """
    img = check_image(image, "image", nonnegative=True)
    lam = _check_dose(dose, img.shape)
    gen = as_rng(rng)
    return gen.poisson(lam * img).astype(np.float64)


def _check_dose(dose, shape) -> np.ndarray | float:
    if np.ndim(dose) == 0:
        return check_real(dose, "dose", low=0, hint="dose is in electrons per pixel.")
    d = check_image(dose, "dose", min_ndim=0)
    if d.size and d.min() < 0:
        raise ValueError(f"dose must be >= 0 electrons per pixel; got minimum {d.min():g}.")
    try:
        np.broadcast_shapes(d.shape, shape)
    except ValueError:
        raise ValueError(
            f"dose of shape {d.shape} does not broadcast against image shape {shape}; "
            "use a scalar or e.g. shape (T, 1, 1) for one dose per frame."
        ) from None
    return d


def detector(
    counts,
    *,
    gain: float = 1.0,
    offset: float = 0.0,
    readout_sigma: float = 0.0,
    dark_current: float = 0.0,
    rng=None,
) -> np.ndarray:
    """Camera / detector response: dark current, gain, offset and read noise.

    ``out = gain * (counts + Poisson(dark_current)) + offset + Normal(0, readout_sigma)``

    so that for Poisson(``D``) input ``mean = gain (D + dark_current) + offset`` and
    ``var = gain² (D + dark_current) + readout_sigma²``.

    Parameters
    ----------
    counts : (..., rows, cols) array_like
        Detected electrons per pixel (e.g. from :func:`poisson_dose`).
    gain : float
        ADU per electron, ``> 0``.
    offset : float
        Baseline (bias) in ADU.
    readout_sigma : float
        Standard deviation of the Gaussian read noise in ADU, ``>= 0``.
    dark_current : float
        Mean thermal electrons per pixel per exposure (Poisson), ``>= 0``.
    rng : None, int or numpy.random.Generator

    Returns
    -------
    float64 ndarray in ADU, same shape as ``counts``.

    Examples
    --------
    >>> detector(np.full((2, 2), 3.0), gain=2.0, offset=10.0)
    array([[16., 16.],
           [16., 16.]])
    """
    c = check_image(counts, "counts")
    gain = check_real(gain, "gain", low=0, low_open=True, hint="gain is in ADU per electron.")
    offset = check_real(offset, "offset")
    readout_sigma = check_real(readout_sigma, "readout_sigma", low=0)
    dark_current = check_real(dark_current, "dark_current", low=0)
    gen = as_rng(rng)
    electrons = c + gen.poisson(dark_current, c.shape) if dark_current > 0 else c
    out = gain * electrons + offset
    if readout_sigma > 0:
        out = out + gen.normal(0.0, readout_sigma, c.shape)
    return out


def quantize(image, *, bits: int = 16, clip: bool = True) -> np.ndarray:
    """Round to the nearest integer and store as an unsigned ``bits``-bit ADC output.

    Parameters
    ----------
    image : (..., rows, cols) array_like
        Values in ADU.
    bits : int
        ADC depth, 1 to 32. The dtype is the smallest of uint8/uint16/uint32 that
        holds ``2**bits - 1``.
    clip : bool
        ``True`` saturates values outside ``[0, 2**bits - 1]`` (as a real ADC does);
        ``False`` raises ``ValueError`` instead.

    Returns
    -------
    uint8, uint16 or uint32 ndarray

    Examples
    --------
    >>> quantize(np.array([[-3.0, 1.4], [2.6, 300.0]]), bits=8)
    array([[  0,   1],
           [  3, 255]], dtype=uint8)
    """
    img = check_image(image, "image")
    bits = check_int(bits, "bits", low=1, high=32)
    top = 2**bits - 1
    r = np.rint(img)
    if not clip and r.size and (r.min() < 0 or r.max() > top):
        raise ValueError(
            f"image has values in [{r.min():g}, {r.max():g}], outside the {bits}-bit range "
            f"[0, {top}]; pass clip=True to saturate or raise bits."
        )
    dtype = np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32
    return np.clip(r, 0, top).astype(dtype)


# --------------------------------------------------------------------------- defects


def _exact_choice(gen: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    k = round(fraction * n)
    return gen.choice(n, size=k, replace=False) if k else np.zeros(0, dtype=np.int64)


_DIRECTIONS = np.array([(0, 1), (1, 0), (1, 1), (1, -1), (0, -1), (-1, 0), (-1, -1), (-1, 1)])


def xray_spikes(
    image,
    *,
    fraction: float,
    amplitude: float,
    rng=None,
    streak_length: int = 1,
    return_mask: bool = False,
):
    """Add X-ray / cosmic-ray hits: isolated hot pixels or short streaks.

    Each frame (last two axes) independently gets exactly
    ``round(fraction * rows * cols)`` events at distinct random pixels. An event
    adds ``amplitude * U(0.5, 1.5)`` to its pixel; with ``streak_length > 1`` it
    continues over ``L ~ U{1..streak_length}`` pixels in one of 8 directions,
    halving at each step.

    Parameters
    ----------
    image : (..., rows, cols) array_like
    fraction : float
        Events per pixel per frame, in [0, 1].
    amplitude : float
        Typical added value, in the units of ``image`` (``>= 0``).
    rng : None, int or numpy.random.Generator
    streak_length : int
        Longest streak in pixels (1 = hot pixels only).
    return_mask : bool
        Also return the boolean mask of affected pixels.

    Returns
    -------
    out : float64 ndarray
    mask : bool ndarray, same shape (only with ``return_mask=True``)

    Examples
    --------
    >>> out, mask = xray_spikes(np.zeros((10, 10)), fraction=0.05, amplitude=100,
    ...                         rng=0, return_mask=True)
    >>> int(mask.sum()), bool((out[mask] >= 50).all())
    (5, True)
    """
    img = check_image(image, "image")
    fraction = check_real(fraction, "fraction", low=0, high=1)
    amplitude = check_real(amplitude, "amplitude", low=0)
    streak_length = check_int(streak_length, "streak_length", low=1)
    gen = as_rng(rng)
    h, w = img.shape[-2:]
    frames = img.reshape(-1, h, w)
    out = frames.copy()
    mask = np.zeros(out.shape, dtype=bool)
    for t in range(frames.shape[0]):
        idx = _exact_choice(gen, h * w, fraction)
        if idx.size == 0:
            continue
        y, x = np.divmod(idx, w)
        value = amplitude * gen.uniform(0.5, 1.5, idx.size)
        if streak_length == 1:
            out[t, y, x] += value
            mask[t, y, x] = True
            continue
        length = gen.integers(1, streak_length + 1, idx.size)
        d = _DIRECTIONS[gen.integers(0, 8, idx.size)]
        for step in range(streak_length):
            sel = length > step
            yy, xx = y[sel] + step * d[sel, 0], x[sel] + step * d[sel, 1]
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            np.add.at(out[t], (yy[ok], xx[ok]), value[sel][ok] * 0.5**step)
            mask[t, yy[ok], xx[ok]] = True
    out = out.reshape(img.shape)
    return (out, mask.reshape(img.shape)) if return_mask else out


def dead_pixels(image, *, fraction: float, value: float = 0.0, rng=None, return_mask: bool = False):
    """Set a fixed random set of pixels to ``value`` (dead / stuck detector pixels).

    Exactly ``round(fraction * rows * cols)`` pixel positions are chosen once and
    are the same in every frame of a stack (a sensor defect does not move).

    Parameters
    ----------
    image : (..., rows, cols) array_like
    fraction : float
        Fraction of dead pixels, in [0, 1].
    value : float
        Reading of a dead pixel (0 = dead; a large value = stuck/hot).
    rng : None, int or numpy.random.Generator
    return_mask : bool
        Also return the boolean mask (same shape as ``image``).

    Returns
    -------
    out : float64 ndarray
    mask : bool ndarray (only with ``return_mask=True``)

    Examples
    --------
    >>> out = dead_pixels(np.ones((10, 10)), fraction=0.1, rng=0)
    >>> int((out == 0).sum())
    10
    """
    img = check_image(image, "image")
    fraction = check_real(fraction, "fraction", low=0, high=1)
    value = check_real(value, "value")
    gen = as_rng(rng)
    h, w = img.shape[-2:]
    m2 = np.zeros(h * w, dtype=bool)
    m2[_exact_choice(gen, h * w, fraction)] = True
    m2 = m2.reshape(h, w)
    out = img.copy()
    out[..., m2] = value
    if return_mask:
        return out, np.broadcast_to(m2, img.shape).copy()
    return out


# --------------------------------------------------------------------------- scanning


def _ar1(gen: np.random.Generator, n_series: int, n: int, sigma: float, rho: float) -> np.ndarray:
    """Stationary AR(1) series (n_series, n) with std sigma and lag-1 correlation rho."""
    e = gen.normal(0.0, sigma, (n_series, n))
    if rho == 0:
        return e
    innov = math.sqrt(1.0 - rho**2)
    out = np.empty_like(e)
    out[:, 0] = e[:, 0]
    e[:, 1:] *= innov
    for i in range(1, n):
        out[:, i] = rho * out[:, i - 1] + e[:, i]
    return out


def scan_jitter(
    image, *, sigma_px: float, rng=None, correlation: float = 0.0, return_shifts: bool = False
):
    """Shift every scan line (row) sideways by a random sub-pixel amount (STEM/SEM).

    ``out[..., r, x] = image[..., r, x - d_r]`` with cubic-spline interpolation
    along the row (mirror boundary); the shifts ``d_r`` (pixels, along x = the fast
    scan axis) form a stationary AR(1) sequence down the rows with standard
    deviation ``sigma_px`` and line-to-line correlation ``correlation`` (0 = white,
    0.9 = slowly wandering). Frames of a stack get independent shifts.

    Parameters
    ----------
    image : (..., rows, cols) array_like
    sigma_px : float
        Standard deviation of the line shifts in pixels, ``>= 0`` (0 = identity).
    rng : None, int or numpy.random.Generator
    correlation : float
        Lag-one correlation between consecutive lines, in [0, 1).
    return_shifts : bool
        Also return the shifts, shape ``image.shape[:-1]``.

    Returns
    -------
    out : float64 ndarray
    shifts : float64 ndarray (only with ``return_shifts=True``)

    Examples
    --------
    >>> img = np.random.default_rng(0).random((8, 8))
    >>> bool(np.array_equal(scan_jitter(img, sigma_px=0.0), img))
    True
    """
    img = check_image(image, "image")
    sigma_px = check_real(sigma_px, "sigma_px", low=0)
    correlation = check_real(correlation, "correlation", low=0, high=1, high_open=True)
    gen = as_rng(rng)
    h, w = img.shape[-2:]
    if sigma_px == 0:
        out, shifts = img.copy(), np.zeros(img.shape[:-1])
    else:
        rows = img.reshape(-1, w)
        shifts = _ar1(gen, rows.shape[0] // h, h, sigma_px, correlation).reshape(-1)
        coeff = ndi.spline_filter1d(rows, order=3, axis=1, mode="mirror")
        out = _spline_rows(coeff, shifts)
        out = out.reshape(img.shape)
        shifts = shifts.reshape(img.shape[:-1])
    return (out, shifts) if return_shifts else out


def _spline_rows(coeff: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Cubic B-spline evaluation of each row at ``x - shift[row]`` (mirror boundary).

    ``shifts`` has one value per row (shape (rows,)); the sample positions
    are ``arange(cols) - shift``. The four weights depend on the row only.
    """
    n = coeff.shape[1]
    base = np.floor(-shifts).astype(np.int64)  # position = x + base + f
    f = -shifts - base
    pad = int(np.abs(base).max()) + 3
    padded = np.pad(coeff, ((0, 0), (pad, pad)), mode="reflect")  # numpy reflect = mirror
    cols = np.arange(n)[None, :] + base[:, None] + pad
    rows = np.arange(coeff.shape[0])[:, None]
    out = np.zeros(coeff.shape)
    for k in (-1, 0, 1, 2):
        a = np.abs(f - k)
        wk = np.where(a < 1, 2 / 3 - a**2 + a**3 / 2, np.where(a < 2, (2 - a) ** 3 / 6, 0.0))
        out += wk[:, None] * padded[rows, cols + k]
    return out


def line_noise(image, *, sigma: float, rng=None, correlation: float = 0.0) -> np.ndarray:
    """Add a random offset to each scan line (row): horizontal streaks.

    ``out[..., r, :] = image[..., r, :] + o_r``; the offsets are constant along the
    fast-scan axis (x) and form a stationary AR(1) sequence down the rows
    (standard deviation ``sigma``, lag-one correlation ``correlation``). This
    raises the variance of row means by ``sigma²`` and leaves every row's internal
    variance unchanged.

    Parameters
    ----------
    image : (..., rows, cols) array_like
    sigma : float
        Standard deviation of the offsets in the units of ``image``, ``>= 0``.
    rng : None, int or numpy.random.Generator
    correlation : float
        Lag-one correlation between consecutive lines, in [0, 1).

    Returns
    -------
    float64 ndarray

    Examples
    --------
    >>> out = line_noise(np.zeros((4, 5)), sigma=1.0, rng=0)
    >>> bool((out.std(axis=1) == 0).all())
    True
    """
    img = check_image(image, "image")
    sigma = check_real(sigma, "sigma", low=0)
    correlation = check_real(correlation, "correlation", low=0, high=1, high_open=True)
    gen = as_rng(rng)
    if sigma == 0:
        return img.copy()
    h = img.shape[-2]
    n_frames = img.size // (h * img.shape[-1])
    offs = _ar1(gen, n_frames, h, sigma, correlation).reshape(*img.shape[:-1], 1)
    return img + offs


def correlated_noise(shape, *, sigma: float = 1.0, corr_length_px: float, rng=None) -> np.ndarray:
    """Stationary Gaussian random field with Gaussian correlation (periodic).

    Covariance ``C(d) = sigma² exp(-d² / (2 corr_length_px²))``, obtained by
    filtering white noise with a Gaussian of standard deviation
    ``corr_length_px / sqrt(2)`` in Fourier space and rescaling to exact variance
    ``sigma²``. Useful for thickness / illumination variations and correlated
    detector noise.

    Parameters
    ----------
    shape : (rows, cols) or (..., rows, cols) tuple of int
        Leading axes give independent fields.
    sigma : float
        Standard deviation, ``>= 0``.
    corr_length_px : float
        Correlation length in pixels, ``>= 0`` (0 = white noise).
    rng : None, int or numpy.random.Generator

    Returns
    -------
    float64 ndarray of ``shape``

    Examples
    --------
    >>> f = correlated_noise((64, 64), sigma=2.0, corr_length_px=4.0, rng=0)
    >>> f.shape, bool(1.0 < f.std() < 3.0)
    ((64, 64), True)
    """
    try:
        dims = tuple(int(s) for s in shape)
    except TypeError:
        dims = ()
    if len(dims) < 2:
        raise ValueError(f"shape must be (rows, cols) or (..., rows, cols); got {shape!r}.")
    check_shape(dims[-2:], "shape", min_size=1)
    for i, d in enumerate(dims[:-2]):
        check_int(d, f"shape[{i}]", low=1)
    sigma = check_real(sigma, "sigma", low=0)
    ell = check_real(corr_length_px, "corr_length_px", low=0)
    gen = as_rng(rng)
    white = gen.standard_normal(dims)
    if ell == 0:
        return sigma * white
    h, w = dims[-2:]
    s = ell / math.sqrt(2.0)
    fy = scipy.fft.fftfreq(h)[:, None]
    fx = scipy.fft.rfftfreq(w)[None, :]
    gain = np.exp(-2 * np.pi**2 * s**2 * (fy**2 + fx**2))
    field = scipy.fft.irfft2(scipy.fft.rfft2(white, axes=(-2, -1)) * gain, s=(h, w), axes=(-2, -1))
    # Parseval: variance of filtered unit white noise = mean |G|^2 over the full grid.
    full = np.exp(
        -2
        * np.pi**2
        * s**2
        * (scipy.fft.fftfreq(h)[:, None] ** 2 + scipy.fft.fftfreq(w)[None, :] ** 2)
    )
    return field * (sigma / math.sqrt(np.mean(full**2)))


def blur(image, psf, *, boundary: str = "reflect") -> np.ndarray:
    """Blur with a kernel; thin wrapper over :func:`em_restore.backend.psf.convolve`.

    Parameters
    ----------
    image : (..., rows, cols) array_like
    psf : (ky, kx) array_like
        Kernel, centre at ``(ky // 2, kx // 2)``.
    boundary : {"reflect", "wrap"}

    Returns
    -------
    ndarray, float64 (float32 for float32 input)
    """
    return _psf.convolve(image, psf, boundary=boundary)


# --------------------------------------------------------------------------- pipeline

_PSF_KINDS = {"gaussian": 1, "disk": 1, "motion": 2}


def _resolve_psf(spec) -> np.ndarray | None:
    if spec is None:
        return None
    if isinstance(spec, np.ndarray):
        return spec
    kind, *args = spec
    if kind == "gaussian":
        return _psf.gaussian_psf(args[0])
    if kind == "disk":
        return _psf.disk_psf(args[0])
    return _psf.motion_psf(args[0], args[1])


@dataclass(frozen=True, eq=False)
class AcquisitionConfig:
    """How a clean specimen is recorded: dose, blur, detector and defects.

    Parameters
    ----------
    modality : {"tem", "stem", "sem"}
        ``"tem"``: parallel beam onto a pixelated camera (spikes, dead pixels).
        ``"stem"``/``"sem"``: scanned probe, serial detector (scan jitter, line noise).
    dose : float
        Incident electrons per pixel (e⁻/px), ``>= 0``.
    psf : None, ndarray or tuple
        Blur before detection: ``None``; a kernel (2-D, odd, sums to 1); or a spec
        ``("gaussian", sigma_px)``, ``("disk", radius_px)``,
        ``("motion", length_px, angle_deg)``.
    gain : float
        ADU per electron, ``> 0``.
    offset : float
        Detector baseline in ADU.
    readout_sigma : float
        Gaussian read noise in ADU.
    dark_current : float
        Mean dark electrons per pixel (Poisson).
    spike_fraction : float
        X-ray hits per pixel per frame (``"tem"`` only).
    spike_amplitude : float
        Mean hit energy as a multiple of ``dose`` electrons (10 = ten unobstructed
        pixels' worth).
    dead_fraction : float
        Fraction of dead pixels (read 0 ADU; ``"tem"`` only).
    scan_jitter : float
        Standard deviation of line shifts in pixels (``"stem"``/``"sem"`` only).
    line_noise : float
        Standard deviation of per-line offsets in ADU (``"stem"``/``"sem"`` only).
    bits : int or None
        ADC depth; ``None`` keeps float64 output, otherwise unsigned integers with
        saturation.

    Examples
    --------
    >>> cfg = AcquisitionConfig.low_dose_tem(dose=5.0)
    >>> cfg.modality, cfg.dose
    ('tem', 5.0)
    """

    modality: str = "tem"
    dose: float = 100.0
    psf: Any = None
    gain: float = 1.0
    offset: float = 0.0
    readout_sigma: float = 0.0
    dark_current: float = 0.0
    spike_fraction: float = 0.0
    spike_amplitude: float = 10.0
    dead_fraction: float = 0.0
    scan_jitter: float = 0.0
    line_noise: float = 0.0
    bits: int | None = None

    MODALITIES: ClassVar[tuple[str, ...]] = ("tem", "stem", "sem")

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "modality", check_choice(self.modality, "modality", self.MODALITIES))
        s(self, "dose", check_real(self.dose, "dose", low=0, hint="dose is in e⁻/px."))
        s(self, "psf", self._check_psf(self.psf))
        s(self, "gain", check_real(self.gain, "gain", low=0, low_open=True))
        s(self, "offset", check_real(self.offset, "offset"))
        s(self, "readout_sigma", check_real(self.readout_sigma, "readout_sigma", low=0))
        s(self, "dark_current", check_real(self.dark_current, "dark_current", low=0))
        for name in ("spike_fraction", "dead_fraction"):
            s(self, name, check_real(getattr(self, name), name, low=0, high=1))
        s(self, "spike_amplitude", check_real(self.spike_amplitude, "spike_amplitude", low=0))
        s(self, "scan_jitter", check_real(self.scan_jitter, "scan_jitter", low=0))
        s(self, "line_noise", check_real(self.line_noise, "line_noise", low=0))
        if self.bits is not None:
            s(self, "bits", check_int(self.bits, "bits", low=1, high=32))
        scanning = self.modality in ("stem", "sem")
        for name in ("spike_fraction", "dead_fraction"):
            if scanning and getattr(self, name) > 0:
                raise ValueError(
                    f"{name}={getattr(self, name):g} models a pixelated camera but modality is "
                    f"{self.modality!r}; set {name}=0 or modality='tem'."
                )
        for name in ("scan_jitter", "line_noise"):
            if not scanning and getattr(self, name) > 0:
                raise ValueError(
                    f"{name}={getattr(self, name):g} models a scanned probe but modality is "
                    f"'tem'; set {name}=0 or modality='stem' / 'sem'."
                )

    @staticmethod
    def _check_psf(spec):
        if spec is None:
            return None
        if isinstance(spec, np.ndarray):
            k = check_image(spec, "psf", min_ndim=2, max_ndim=2)
            if k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0 or k.min() < 0:
                raise ValueError(
                    f"psf kernel must be odd-sized and nonnegative; got shape {k.shape}, "
                    f"min {k.min():g}. Build one with em_restore.backend.psf."
                )
            k = k / k.sum() if k.sum() > 0 else k
            k = k.copy()
            k.setflags(write=False)
            return k
        if isinstance(spec, tuple | list) and spec and spec[0] in _PSF_KINDS:
            kind = spec[0]
            if len(spec) != 1 + _PSF_KINDS[kind]:
                raise ValueError(
                    f"psf spec {tuple(spec)!r} needs {_PSF_KINDS[kind]} number(s) after "
                    f"{kind!r}, e.g. ('gaussian', 1.0), ('disk', 2.0) or ('motion', 5.0, 30.0)."
                )
            args = tuple(
                check_real(a, f"psf[{i + 1}]", low=0 if i == 0 else None)
                for i, a in enumerate(spec[1:])
            )
            return (kind, *args)
        raise ValueError(
            f"psf must be None, a 2-D kernel or a spec like ('gaussian', 1.0), ('disk', 2.0), "
            f"('motion', 5.0, 30.0); got {spec!r}."
        )

    def kernel(self) -> np.ndarray | None:
        """The blur kernel this config applies (``None`` for no blur)."""
        return _resolve_psf(self.psf)

    def replace(self, **changes) -> AcquisitionConfig:
        """Copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def _key(self):
        vals = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = (v.shape, v.tobytes())
            vals.append(v)
        return tuple(vals)

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    # ----------------------------------------------------------------- presets

    @classmethod
    def low_dose_tem(cls, **overrides) -> AcquisitionConfig:
        """Direct electron detector in counting mode, dose-limited (beam-sensitive)."""
        base = dict(
            modality="tem",
            dose=10.0,
            psf=("gaussian", 0.5),
            gain=1.0,
            offset=0.0,
            readout_sigma=0.0,
            dark_current=0.0,
            spike_fraction=1e-5,
            spike_amplitude=10.0,
            dead_fraction=1e-4,
            bits=16,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def high_dose_tem(cls, **overrides) -> AcquisitionConfig:
        """Scintillator-coupled CMOS/CCD camera in integrating mode, high dose."""
        base = dict(
            modality="tem",
            dose=1000.0,
            psf=("gaussian", 1.0),
            gain=8.0,
            offset=100.0,
            readout_sigma=4.0,
            dark_current=0.5,
            spike_fraction=1e-5,
            spike_amplitude=20.0,
            dead_fraction=1e-4,
            bits=16,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def stem(cls, **overrides) -> AcquisitionConfig:
        """Scanning TEM (e.g. HAADF): probe blur, scan jitter and line noise."""
        base = dict(
            modality="stem",
            dose=50.0,
            psf=("gaussian", 1.0),
            gain=10.0,
            offset=200.0,
            readout_sigma=5.0,
            dark_current=0.0,
            scan_jitter=0.3,
            line_noise=3.0,
            bits=16,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def sem(cls, **overrides) -> AcquisitionConfig:
        """Scanning electron microscope, secondary electrons with a scintillator/PMT."""
        base = dict(
            modality="sem",
            dose=20.0,
            psf=("gaussian", 1.5),
            gain=50.0,
            offset=1000.0,
            readout_sigma=30.0,
            dark_current=0.0,
            scan_jitter=0.2,
            line_noise=20.0,
            bits=16,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def liquid_cell_tem(cls, **overrides) -> AcquisitionConfig:
        """Liquid-cell TEM: low dose (radiolysis), chromatic blur from the thick liquid."""
        base = dict(
            modality="tem",
            dose=20.0,
            psf=("gaussian", 1.5),
            gain=1.0,
            offset=0.0,
            readout_sigma=0.0,
            dark_current=0.0,
            spike_fraction=1e-5,
            spike_amplitude=10.0,
            dead_fraction=1e-4,
            bits=16,
        )
        return cls(**{**base, **overrides})


PRESETS = ("low_dose_tem", "high_dose_tem", "stem", "sem", "liquid_cell_tem")


def simulate_acquisition(
    clean, config: AcquisitionConfig | None = None, *, rng=None, return_expected: bool = False
):
    """Record a clean specimen: blur, scan jitter, shot noise, defects, detector, ADC.

    Steps, in order (each skipped when its parameter is zero / ``None``):

    1. ``b = max(convolve(clean, config.kernel(), boundary="reflect"), 0)``
    2. ``b = scan_jitter(b, sigma_px=config.scan_jitter)`` (stem / sem)
    3. ``n = poisson_dose(b, config.dose)`` (electrons)
    4. ``n = xray_spikes(n, fraction=spike_fraction, amplitude=spike_amplitude * dose)``
    5. ``a = detector(n, gain, offset, readout_sigma, dark_current)`` (ADU)
    6. ``a = line_noise(a, sigma=config.line_noise)`` (stem / sem)
    7. ``a = dead_pixels(a, fraction=dead_fraction, value=0)``
    8. ``a = quantize(a, bits=bits)`` when ``bits`` is set.

    Parameters
    ----------
    clean : (..., rows, cols) array_like
        Fraction of the dose reaching the detector (``>= 0``, 1 = vacuum). Frames
        of a stack get independent noise.
    config : AcquisitionConfig, optional
        Default ``AcquisitionConfig()`` (TEM, 100 e⁻/px, Poisson noise only).
    rng : None, int or numpy.random.Generator
    return_expected : bool
        Also return the noise-free expectation in ADU,
        ``gain * (dose * b + dark_current) + offset`` (after blur and jitter), e.g.
        as a training target.

    Returns
    -------
    noisy : float64 ndarray in ADU, or uint8/16/32 when ``config.bits`` is set
    expected : float64 ndarray (only with ``return_expected=True``)

    Examples
    --------
    >>> noisy = simulate_acquisition(np.ones((32, 32)), AcquisitionConfig.high_dose_tem(), rng=0)
    >>> noisy.dtype, 7000 < float(noisy.mean()) < 10000
    (dtype('uint16'), True)
    """
    img = check_image(clean, "clean", nonnegative=True)
    if config is None:
        config = AcquisitionConfig()
    if not isinstance(config, AcquisitionConfig):
        raise ValueError(
            f"config must be an AcquisitionConfig; got {type(config).__name__}. "
            "Use e.g. AcquisitionConfig.low_dose_tem()."
        )
    gen = as_rng(rng)
    c = config
    k = c.kernel()
    b = img if k is None else np.maximum(_psf.convolve(img, k), 0.0)
    if c.scan_jitter > 0:
        b = np.maximum(scan_jitter(b, sigma_px=c.scan_jitter, rng=gen), 0.0)
    n = poisson_dose(b, c.dose, rng=gen)
    if c.spike_fraction > 0:
        n = xray_spikes(n, fraction=c.spike_fraction, amplitude=c.spike_amplitude * c.dose, rng=gen)
    a = detector(
        n,
        gain=c.gain,
        offset=c.offset,
        readout_sigma=c.readout_sigma,
        dark_current=c.dark_current,
        rng=gen,
    )
    if c.line_noise > 0:
        a = line_noise(a, sigma=c.line_noise, rng=gen)
    if c.dead_fraction > 0:
        a = dead_pixels(a, fraction=c.dead_fraction, value=0.0, rng=gen)
    if c.bits is not None:
        a = quantize(a, bits=c.bits)
    if return_expected:
        return a, c.gain * (c.dose * b + c.dark_current) + c.offset
    return a


def _loguniform(gen: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(gen.uniform(math.log(lo), math.log(hi))))


def random_acquisition_config(rng=None, *, modality: str | None = None) -> AcquisitionConfig:
    """Draw a plausible random acquisition (for diverse training data).

    Parameters
    ----------
    rng : None, int or numpy.random.Generator
    modality : {"tem", "stem", "sem"}, optional
        Fixed modality; default drawn uniformly.

    Returns
    -------
    AcquisitionConfig
        Dose log-uniform (TEM 1–1000, STEM 5–500, SEM 2–200 e⁻/px); blur ``None``
        (25 %) or a Gaussian / disk / (TEM) motion kernel of 0.5–4 px; detector
        parameters from the ranges of the presets; 16-bit output.

    Examples
    --------
    >>> random_acquisition_config(0) == random_acquisition_config(0)
    True
    """
    gen = as_rng(rng)
    if modality is None:
        modality = str(gen.choice(AcquisitionConfig.MODALITIES))
    modality = check_choice(modality, "modality", AcquisitionConfig.MODALITIES)
    kinds = ["gaussian", "disk"] + (["motion"] if modality == "tem" else [])
    psf = None
    if gen.random() >= 0.25:
        kind = kinds[gen.integers(len(kinds))]
        if kind == "gaussian":
            psf = ("gaussian", round(gen.uniform(0.5, 2.5), 3))
        elif kind == "disk":
            psf = ("disk", round(gen.uniform(1.0, 4.0), 3))
        else:
            psf = ("motion", round(gen.uniform(1.0, 8.0), 3), round(gen.uniform(0, 180), 1))
    u = gen.uniform
    if modality == "tem":
        dose = _loguniform(gen, 1.0, 1000.0)
        if gen.random() < 0.5:  # counting direct detector
            det = dict(gain=1.0, offset=0.0, readout_sigma=0.0, dark_current=0.0)
        else:  # integrating scintillator camera
            det = dict(gain=u(2, 12), offset=u(0, 200), readout_sigma=u(1, 8), dark_current=u(0, 1))
        extra = dict(
            spike_fraction=_loguniform(gen, 1e-6, 1e-4) if gen.random() < 0.5 else 0.0,
            spike_amplitude=u(5, 30),
            dead_fraction=_loguniform(gen, 1e-5, 1e-3) if gen.random() < 0.5 else 0.0,
        )
    elif modality == "stem":
        dose = _loguniform(gen, 5.0, 500.0)
        gain = u(2, 20)
        det = dict(gain=gain, offset=u(0, 500), readout_sigma=u(0, 10), dark_current=0.0)
        extra = dict(scan_jitter=u(0, 0.6), line_noise=u(0, 0.5) * gain)
    else:
        dose = _loguniform(gen, 2.0, 200.0)
        gain = u(20, 100)
        det = dict(gain=gain, offset=u(200, 2000), readout_sigma=u(5, 60), dark_current=0.0)
        extra = dict(scan_jitter=u(0, 0.5), line_noise=u(0, 0.5) * gain)
    return AcquisitionConfig(modality=modality, dose=dose, psf=psf, bits=16, **det, **extra)
