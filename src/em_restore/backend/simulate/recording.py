"""The degradation terms of an EM recording (shot noise, detector, ADC, defects, scan
noise, blur), each a seeded function; :mod:`.acquisition` chains them.

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

import math

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

from .. import psf as _psf
from .._args import as_rng, check_image, check_int, check_real, check_shape

__all__ = [
    "blur",
    "correlated_noise",
    "dead_pixels",
    "detector",
    "line_noise",
    "poisson_dose",
    "quantize",
    "scan_jitter",
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
