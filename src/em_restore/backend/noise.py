"""Noise models of EM detectors, estimated from a single image.

The model (:class:`NoiseModel`) is Poisson–Gaussian in ADU with a spatial
correlation kernel::

    z = mean + sqrt(var(mean)) * (w ⊛ g),   var(mean) = gain * (mean - offset) + readout_sigma**2

where ``w`` is unit white noise and ``g`` a small zero-phase kernel with
``sum(g**2) == 1`` (so ``g`` changes the *shape* of the noise spectrum, not the
marginal variance). ``g = [[1.0]]`` is white noise.

:func:`estimate_noise` fits this model to one 2-D image in two stages:

1. **Variance function** (Foi et al. 2008, "Practical Poissonian-Gaussian noise
   modeling and fitting for single-image raw-data"): a unit-norm high-pass
   residual ``d`` (Immerkær's 3×3 operator, blind to anything affine along x or
   along y) is binned by the local signal level. Pixels are sorted into bins by
   the mean of rows ``y±2..4`` (no row in common with ``d``) and each bin's
   abscissa is the mean of ``x ⊛ hp²``, the very average of the signal that
   ``var(d)`` sees; the binning variable is independent of the residual, so
   neither regression dilution nor signal curvature biases the fit. Each bin's
   variance is a 3.5σ-clipped mean of ``d²``; pixels near spikes, in exactly
   constant regions or with a local residual energy > 3× the first fit (edges,
   texture) are dropped; ``var_hp = a * level + b`` is fitted by iteratively
   reweighted least squares with Tukey weights and ``a >= 0`` (``a = 0`` when the
   slope is not significant at 2 standard errors).
2. **Correlation.** A high-pass filter sees only part of correlated noise
   (scan-line offsets are invisible to it, detector afterglow or a scintillator
   point spread halve it or worse), so pixel-difference estimators underestimate
   such noise 1.5–2× or more. Two analyses:

   * *scanned probe* (``modality="stem"/"sem"``, or when the correlation found
     below is along x only): noise is taken as independent between scan lines.
     The vertical second difference ``[1, -2, 1]ᵀ/√6`` then sees the *whole*
     marginal variance (line offsets included) while cancelling structure that is
     smooth along y; its variance function is fitted as in stage 1 and is the
     model's, and its autocorrelation along x gives a 1-D kernel ``(1, 2r+1)``.
   * *camera / isotropic* (``"tem"`` and ``None``): ``r = x - box15(x)`` is
     compared window by window with the high-pass prediction; windows without
     structure have the smallest, and a common, ratio ``t`` and are selected
     around the half-sample mode of ``log t``. Their pooled autocorrelation,
     corrected for the mean removal, gives the marginal variance (``t`` times the
     stage-1 function) and the noise power spectrum, whose zero-phase square root,
     cropped to ``radius`` and normalised, is the kernel. A correlation that is
     still large at lags 5–7 is structure (an atomic lattice, dense texture), not
     detector noise, and is rejected.

   The correlation is kept only when the evidence is clear (see
   :func:`estimate_noise`); otherwise the kernel is ``[[1.0]]`` and stage 1 is the
   model.

From ``var = a_tot * mean + b_tot`` one image cannot separate ``offset`` from
``readout_sigma`` (only ``b_tot = readout_sigma**2 - gain * offset`` is
identifiable). Convention when ``offset`` is not given: ``offset = max(0,
-b_tot / gain)`` and ``readout_sigma = sqrt(max(b_tot + gain * offset, 0))``, i.e.
a positive intercept is read noise at zero offset and a negative one an offset
with no read noise. The variance function, which is all that the variance
stabilisation and the denoisers use, is the same either way. Pass the camera's
``offset`` (from its metadata or a dark frame) to recover ``readout_sigma``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.fft
from scipy import ndimage as ndi

from ._args import MODALITIES, check_choice, check_image, check_int, check_real, short
from .noise_model import NoiseModel, check_kernel, pad_centred
from .noise_stats import (
    HP,
    OPS,
    RING,
    SCREEN,
    binned,
    clipped_var,
    half_sample_mode,
    highpass_residual,
    hp_energy_factor,
    residual,
    robust_linear_fit,
    selection_level,
)

__all__ = [
    "NoiseModel",
    "estimate_noise",
    "estimate_noise_kernel",
    "estimate_sigma",
    "highpass_residual",
]

#: Immerkær's noise operator divided by 6: unit L2 norm, sums to zero, and
#: annihilates any f(x) + g(y) and anything affine along x or along y.
_MODALITIES = MODALITIES
# Evidence needed to call the noise correlated: |t - 1| (excess marginal variance
# over the high-pass prediction) or off-centre kernel energy 1 - g_c**2.
# Detector-correlated noise decays within a few pixels; a flat-window
# autocorrelation with mean |rho| > this at lags 5..7 is structure (lattice, texture).
_LONG_RANGE = 0.1
_EVIDENCE = {None: (0.10, 0.05), "stem": (0.10, 0.05), "sem": (0.10, 0.05), "tem": (0.25, 0.15)}


# --------------------------------------------------------------------------- stage 1


@dataclasses.dataclass
class _Prepared:
    x: np.ndarray  # float image, outliers replaced by the 3x3 median
    valid: np.ndarray  # pixels usable for statistics
    outliers: np.ndarray  # detected spikes / dead / hot pixels
    sel: np.ndarray  # selection level (see selection_level)


def _prepare(image, name: str = "image") -> _Prepared:
    raw = np.asarray(image)
    x = check_image(image, name, min_ndim=2, max_ndim=2, min_size=16)
    x = np.array(_central_crop(x), dtype=np.float64)
    # exactly constant neighbourhoods (padding, masks, saturation plateaus)
    valid = ndi.maximum_filter(x, 9, mode="reflect") != ndi.minimum_filter(x, 9, mode="reflect")
    if raw.dtype.kind in "ui":  # saturated integer pixels
        sat = x == np.iinfo(raw.dtype).max
        if sat.any():
            valid &= ~ndi.binary_dilation(sat, np.ones((3, 3), bool))
    sel = selection_level(x)
    # outliers (X-ray spikes, dead / hot pixels) against a rough variance function
    med = ndi.median_filter(x, 3, mode="reflect")
    dev = x - med
    outliers = np.zeros(x.shape, dtype=bool)
    idx = np.flatnonzero(valid)
    if idx.size >= 2000:
        nb = int(np.clip(idx.size // 5000, 4, 24))
        ms = sel.ravel()[idx]
        d0, l0 = residual(x, "hp")
        lv, var, n = binned(ms, l0.ravel()[idx], d0.ravel()[idx], nb)
        a0 = robust_linear_fit(lv, var, n / 2.0)[0]
        # the scale of x - median3 itself includes correlated noise such as
        # scan-line offsets, which the high-pass residual does not see
        # (interpolated between bins, constant beyond: never extrapolated to 0)
        lv, var, n = binned(ms, med.ravel()[idx], dev.ravel()[idx], nb)
        order = np.argsort(lv)
        scale = np.sqrt(np.interp(med, lv[order], np.maximum.accumulate(var[order][::-1])[::-1]))
        # + 3 a0: a few quanta (electrons) of slack for Poisson tails at low counts
        outliers = (np.abs(dev) > 6.0 * scale + 3.0 * a0) & (dev != 0)
    if outliers.any():
        x = np.where(outliers, med, x)
        valid &= ~ndi.binary_dilation(outliers, np.ones((2 * RING + 1,) * 2, bool))
        sel = selection_level(x)
    # keep away from the image border (reflected data is not independent)
    valid[:RING, :] = valid[-RING:, :] = False
    valid[:, :RING] = valid[:, -RING:] = False
    return _Prepared(x=x, valid=valid, outliers=outliers, sel=sel)


_MAX_SIDE = 1024  # larger images are analysed on their central crop (time ~ pixels)


def _central_crop(x: np.ndarray) -> np.ndarray:
    h, w = x.shape
    y0, x0 = max(0, (h - _MAX_SIDE) // 2), max(0, (w - _MAX_SIDE) // 2)
    return x[y0 : y0 + _MAX_SIDE, x0 : x0 + _MAX_SIDE]


_TRIM_CACHE: dict[str, float] = {}


def _trim_correction(op: str) -> float:
    """Factor undoing the noise variance lost by the local-energy screening.

    Computed once per operator on white Gaussian noise (fixed seed); about 1 %.
    """
    if op not in _TRIM_CACHE:
        w = np.random.default_rng(12345).standard_normal((384, 384))
        d = ndi.correlate(w, OPS[op], mode="reflect")[8:-8, 8:-8]
        keep = ndi.uniform_filter(d * d, 5, mode="reflect") < SCREEN
        _TRIM_CACHE[op] = clipped_var(d) / clipped_var(d[keep])
    return _TRIM_CACHE[op]


def _fit_variance(p: _Prepared, d: np.ndarray, lvl: np.ndarray, op: str):
    """var(d) = a * level + b over the valid pixels; returns (a, b, se_a, level_mean).

    Two passes: the second drops pixels whose 5×5 residual energy exceeds
    ``SCREEN`` × the first fit (edges, texture) and corrects for the noise-only
    tail that this removes.
    """
    idx = np.flatnonzero(p.valid)
    if idx.size < 200:
        return 0.0, clipped_var(d), math.inf, float(np.mean(p.x))
    nb = int(np.clip(idx.size // 4000, 4, 32))
    lv, var, n = binned(p.sel.ravel()[idx], lvl.ravel()[idx], d.ravel()[idx], nb)
    a, b, se, xm = robust_linear_fit(lv, var, n / 2.0)
    pred = a * p.sel + b
    pred = np.maximum(pred, 0.05 * max(a * xm + b, 1e-300))
    keep = p.valid & (ndi.uniform_filter(d * d, 5, mode="reflect") < SCREEN * pred)
    idx2 = np.flatnonzero(keep)
    if idx2.size >= max(200, idx.size // 4):
        lv, var, n = binned(p.sel.ravel()[idx2], lvl.ravel()[idx2], d.ravel()[idx2], nb)
        a, b, se, xm = robust_linear_fit(lv, var, n / 2.0)
        f = _trim_correction(op)
        a, b, se = a * f, b * f, se * f
    if not a > 2.0 * se:  # slope not significant: signal-independent at this level
        a, b = 0.0, a * xm + b
    return a, b, se, xm


# --------------------------------------------------------------------------- stage 2


@dataclasses.dataclass
class _Flat:
    ratio: float  # marginal variance / high-pass-predicted variance on flat windows
    acf: np.ndarray  # normalised autocorrelation rho(k), (2L+1, 2L+1), rho(0) = 1
    fraction: float  # fraction of candidate pixels judged flat
    long_range: float  # mean |rho| at Chebyshev lags 5..7 (structure, not detector noise)


def _flat_acf(p: _Prepared, a: float, b: float, max_lag: int, window: int | None) -> _Flat | None:
    """2-D noise autocorrelation over structure-free windows.

    ``r = x - box_w(x)`` (a box reproduces planes, so smooth shading cancels).
    The local variance of ``r`` over each window, divided by the high-pass
    prediction ``a * mean + b``, is a ratio ``t`` that is smallest, and common, on
    windows without structure; the half-sample mode of ``log t`` (the mode of the
    log of a Gamma variable is unbiased for its scale) selects them. The masked,
    level-normalised autocorrelation of ``r`` over those pixels, corrected for the
    mean removal (``R_r = C ⋆ R``, ``C`` the autocorrelation of ``δ - box``, solved
    for a short-range ``R``), gives the marginal variance ratio and ``rho``.
    """
    h, w = p.x.shape
    window = 15 if window is None else window
    window = int(min(window, (min(h, w) // 4) | 1))
    if window < 5:
        return None
    hw = window // 2
    s = ndi.uniform_filter(p.x, window, mode="reflect")
    r = p.x - s
    vh = a * s + b
    var_r = ndi.uniform_filter(r * r, window, mode="reflect")
    frac_valid = ndi.uniform_filter(p.valid.astype(float), window, mode="reflect")
    cand = (frac_valid > 0.9) & (vh > 0) & (var_r > 0)
    cand[: hw + 1, :] = cand[-hw - 1 :, :] = False
    cand[:, : hw + 1] = cand[:, -hw - 1 :] = False
    n_c = int(cand.sum())
    if n_c < 4 * window**2:
        return None
    lt = np.full(p.x.shape, np.inf)
    lt[cand] = np.log(var_r[cand] / vh[cand])
    sub = lt[::3, ::3]
    sub = sub[np.isfinite(sub)]
    mode = half_sample_mode(sub)
    low = sub[sub <= mode]
    spread = 1.4826 * float(np.median(mode - low)) if low.size >= 10 else 0.0
    spread = max(spread, 0.5 * math.sqrt(2.0) / window)
    flat = cand & (np.abs(lt - mode) <= 2.5 * spread)
    if flat.sum() < 2 * window**2:
        return None
    u = np.where(flat, r / np.sqrt(np.where(vh > 0, vh, 1.0)), 0.0)
    K = window - 1
    shape = (scipy.fft.next_fast_len(h + K), scipy.fft.next_fast_len(w + K))
    num = scipy.fft.irfft2(np.abs(scipy.fft.rfft2(u, s=shape)) ** 2, s=shape)
    den = scipy.fft.irfft2(np.abs(scipy.fft.rfft2(flat.astype(float), s=shape)) ** 2, s=shape)
    lags = np.arange(-K, K + 1)
    iy, ix = np.ix_(lags % shape[0], lags % shape[1])
    den_k = np.round(den[iy, ix])
    r_r = np.where(den_k > 0, num[iy, ix] / np.maximum(den_k, 1.0), 0.0)
    # Undo the mean removal: R_r = C ⋆ R with C = δ + c', c' the broad
    # autocorrelation terms of the box. For noise correlated over a few pixels,
    # c' ⋆ R ≈ c' * S with S = sum(R), so R = R_r - c' S, and summing over the
    # box support |k| <= hw gives S = sum(R_r) / (1 + sum(c')).
    e = -np.ones((window, window)) / window**2
    e[hw, hw] += 1.0
    c1 = ndi.correlate(np.pad(e, K - hw), e, mode="constant")  # autocorrelation, |k| <= K
    c1[K, K] -= 1.0
    cheb = np.maximum(np.abs(lags)[:, None], np.abs(lags)[None, :])
    inner = cheb <= hw
    total = float(np.sum(r_r[inner])) / (1.0 + float(np.sum(c1[inner])))
    r_n = r_r - c1 * total
    if r_n[K, K] <= 0:
        return None
    ratio = float(r_n[K, K])
    rho = r_n / r_n[K, K]
    L = int(min(max_lag, K))
    acf = rho[K - L : K + L + 1, K - L : K + L + 1]
    ring = (cheb >= 5) & (cheb <= 7)
    long_range = float(np.mean(np.abs(rho[ring]))) if ring.any() else 0.0
    return _Flat(ratio=ratio, acf=acf, fraction=float(flat.sum()) / n_c, long_range=long_range)


def _scan_acf(p: _Prepared, d: np.ndarray, a: float, b: float, max_lag: int) -> np.ndarray:
    """Autocorrelation along x (lags -L..L) of the vertical residual ``d``.

    For noise independent between scan lines, the vertical second difference
    keeps its along-line autocorrelation exactly (weights 1 + 4 + 1 = 6) and
    cancels structure that is smooth along y, so no flat regions are needed.
    """
    v = a * p.sel + b
    ok = p.valid & (v > 0)
    v = np.where(ok, v, 1.0)
    ok &= ndi.uniform_filter(d * d, 5, mode="reflect") < SCREEN * v
    u = np.where(ok, d / np.sqrt(v), 0.0)
    n = scipy.fft.next_fast_len(p.x.shape[1] + max_lag)
    num = np.sum(scipy.fft.irfft(np.abs(scipy.fft.rfft(u, n=n, axis=1)) ** 2, n=n, axis=1), 0)
    m = ok.astype(float)
    den = np.sum(scipy.fft.irfft(np.abs(scipy.fft.rfft(m, n=n, axis=1)) ** 2, n=n, axis=1), 0)
    lags = np.arange(-max_lag, max_lag + 1)
    den_k = np.round(den[lags % n])
    r = np.where(den_k > 0, num[lags % n] / np.maximum(den_k, 1.0), 0.0)
    if r[max_lag] <= 0:
        return (lags == 0).astype(float)
    return r / r[max_lag]


def _taper(L: int) -> np.ndarray:
    """1 up to lag L/2, cosine roll-off to 0 at lag L + 1."""
    k = np.abs(np.arange(-L, L + 1)).astype(float)
    t = np.ones_like(k)
    start = L / 2.0
    roll = k > start
    t[roll] = 0.5 * (1 + np.cos(np.pi * (k[roll] - start) / (L + 1 - start)))
    return t


def _kernel_from_acf(rho: np.ndarray, radius: int) -> np.ndarray:
    """Zero-phase square root of the (tapered) PSD, cropped to ``radius``, unit energy.

    ``rho`` is 2-D ``(2L+1, 2L+1)`` (gives a square kernel) or 1-D ``(2L+1,)``
    along x (gives a ``(1, 2 radius + 1)`` kernel).
    """
    rho2 = np.atleast_2d(rho)
    ly, lx = rho2.shape[0] // 2, rho2.shape[1] // 2
    sym = 0.5 * (rho2 + rho2[::-1, ::-1])
    tap = sym * np.outer(_taper(ly), _taper(lx))
    n = int(max(64, 4 * max(ly, lx) + 8, 4 * radius + 8))
    ny = 1 if rho2.shape[0] == 1 else n
    spec = np.maximum(scipy.fft.fft2(pad_centred(tap, (ny, n))).real, 0.0)
    g = np.fft.fftshift(scipy.fft.ifft2(np.sqrt(spec)).real)
    cy, cx = ny // 2, n // 2
    ry = 0 if ny == 1 else radius
    g = g[cy - ry : cy + ry + 1, cx - radius : cx + radius + 1]
    g = 0.5 * (g + g[::-1, ::-1])
    return g / math.sqrt(float(np.sum(g * g)))


def _delta(shape: tuple[int, int]) -> np.ndarray:
    g = np.zeros(shape)
    g[shape[0] // 2, shape[1] // 2] = 1.0
    return g


def _off_centre_energy(g: np.ndarray) -> float:
    return 1.0 - float(g[g.shape[0] // 2, g.shape[1] // 2] ** 2)


def _signal_range(image, p: _Prepared) -> tuple[float, float]:
    """1st and 99th percentiles of the 9×9 local mean over the whole image."""
    x = np.asarray(image, dtype=np.float64)
    if x.shape == p.x.shape:
        sel = p.sel[p.valid] if p.valid.any() else p.sel
    else:  # large image analysed on a crop: the range is the whole image's
        step = max(1, int(math.sqrt(x.size / 2**20)))
        sel = ndi.uniform_filter(x, 2 * RING + 1, mode="reflect")[::step, ::step]
    lo, hi = np.percentile(sel, [1.0, 99.0])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- public API


def estimate_noise_kernel(
    residual_or_image,
    *,
    radius: int = 3,
    scan: bool = False,
    window: int | None = None,
    max_lag: int | None = None,
) -> np.ndarray:
    """Estimate the noise correlation kernel ``g`` (``noise = white ⊛ g``).

    Works on an image or on a noise-only residual. No white-noise decision is
    made here (see :func:`estimate_noise`, which also returns the variance).

    * ``scan=False`` (camera images, isotropic correlation): the level-normalised
      autocorrelation of ``x - box(x)`` over structure-free windows (found
      automatically, see the module docstring).
    * ``scan=True`` (STEM/SEM, noise independent between scan lines, correlated
      along them): the autocorrelation along x of the vertical second difference,
      which cancels smooth structure; gives a ``(1, 2 radius + 1)`` kernel.

    The autocorrelation is tapered, Fourier-transformed into a power spectrum,
    and its zero-phase square root is cropped to ``radius`` and normalised to unit
    energy.

    Parameters
    ----------
    residual_or_image : (rows, cols) array_like
        At least 16×16 pixels (a few hundred a side for a stable estimate).
    radius : int
        Half-size of the returned kernel, ``>= 0``.
    scan : bool
        Estimate a 1-D kernel along the fast-scan axis (x).
    window : int, optional
        Side of the flatness windows (``scan=False``; default 15).
    max_lag : int, optional
        Largest autocorrelation lag used (default ``2 * radius + 2``).

    Returns
    -------
    float64 ndarray, ``(2 radius + 1, 2 radius + 1)`` (or ``(1, 2 radius + 1)``
    with ``scan=True``), zero-phase, ``sum(g**2) == 1``.

    Examples
    --------
    >>> w = np.random.default_rng(0).standard_normal((128, 128))
    >>> g = estimate_noise_kernel(w, radius=1)
    >>> g.shape, bool(g[1, 1] > 0.99)
    ((3, 3), True)
    """
    radius = check_int(radius, "radius", low=0, high=32)
    if window is not None:
        window = check_int(window, "window", low=5)
    max_lag = 2 * radius + 2 if max_lag is None else check_int(max_lag, "max_lag", low=1)
    shape = (1, 2 * radius + 1) if scan else (2 * radius + 1,) * 2
    p = _prepare(residual_or_image, "residual_or_image")
    if scan:
        d, lvl = residual(p.x, "y")
        a, b = _fit_variance(p, d, lvl, "y")[:2]
        if a <= 0 and b <= 0:
            return _delta(shape)
        return _kernel_from_acf(_scan_acf(p, d, a, b, max_lag), radius)
    d, lvl = residual(p.x, "hp")
    a, b = _fit_variance(p, d, lvl, "hp")[:2]
    if a <= 0 and b <= 0:
        return _delta(shape)
    flat = _flat_acf(p, a, b, max_lag, window)
    if flat is None:
        return _delta(shape)
    return _kernel_from_acf(flat.acf, radius)


def estimate_sigma(image, *, kernel=None) -> float:
    """Robust standard deviation of additive, signal-independent noise.

    The unit-norm high-pass residual of :func:`highpass_residual` is measured by
    iterative 3.5σ clipping (edges, spikes and texture are rejected). A high-pass
    sees only part of correlated noise; pass the noise ``kernel`` (e.g.
    ``NoiseModel.kernel``) to correct for it: the result is divided by
    ``sqrt(c)``, ``c = ||hp ⊛ g||²`` the high-pass's share of the noise energy.

    Parameters
    ----------
    image : (rows, cols) array_like
    kernel : array_like, optional
        Noise correlation kernel (odd sides); ``None`` assumes white noise.

    Returns
    -------
    float

    Examples
    --------
    >>> w = np.random.default_rng(0).normal(0, 3.0, (256, 256))
    >>> round(estimate_sigma(w), 1)
    3.0
    """
    x = check_image(image, "image", min_ndim=2, max_ndim=2, min_size=3)
    d = ndi.correlate(x, HP, mode="reflect")
    if min(x.shape) > 4:
        d = d[1:-1, 1:-1]
    s = math.sqrt(clipped_var(d))
    if kernel is not None:
        s /= math.sqrt(hp_energy_factor(check_kernel(kernel)))
    return s


def estimate_noise(
    image,
    *,
    modality: str | None = None,
    correlated: bool | None = None,
    offset: float | None = None,
    radius: int = 3,
) -> NoiseModel:
    """Fit a Poisson–Gaussian, possibly correlated, noise model to one 2-D image.

    See the module docstring for the method. Robust to X-ray spikes, hot and dead
    pixels (replaced by the 3×3 median and excluded with their neighbourhoods),
    exactly constant regions and saturated integer pixels (excluded), edges and
    texture (clipped statistics, local-energy screening).

    Parameters
    ----------
    image : (rows, cols) array_like
        Raw detector image in ADU, any real dtype, at least 16×16 (a few hundred
        pixels a side for a good fit).
    modality : {"tem", "stem", "sem"}, optional
        Prior on the correlation. ``"stem"``/``"sem"`` (scanned probe): noise is
        taken as independent between scan lines and possibly correlated along them
        (afterglow, limited bandwidth, scan-line offsets); the marginal variance
        comes from vertical differences and the kernel is 1-D along x. ``"tem"``
        (pixelated camera): white unless the evidence for an isotropic correlation
        is strong (marginal variance > 1.25× the high-pass prediction or > 15 % of
        the kernel energy off-centre). ``None``: isotropic analysis with weaker
        thresholds (10 %, 5 %), switching to the scan analysis when the
        correlation is clearly along x only.
    correlated : bool, optional
        ``False`` forces white noise (kernel ``[[1]]``, the high-pass variance is
        the marginal variance); ``True`` always applies the estimated kernel and
        correction.
    offset : float, optional
        Known detector baseline (ADU). With it, ``readout_sigma`` is
        ``sqrt(max(b + gain * offset, 0))``; without it, see the convention in the
        module docstring.
    radius : int
        Half-size of the estimated kernel.

    Returns
    -------
    NoiseModel
        With ``signal_range`` set to the 1st–99th percentile of local means.

    Notes
    -----
    The isotropic (camera) analysis applies one correction factor, measured on
    the flattest windows, to the whole variance function, so correlated noise
    that is added on top of white shot noise is right at the level of the flat
    regions and approximate elsewhere; the scan analysis has no such limitation.
    Noise correlated *between* scan lines (slowly wandering line offsets) is
    underestimated by the scan analysis, and a kernel of small ``radius`` cannot
    represent offsets that are constant along whole lines (their variance is in
    the model, their shape only partly). One image at a single level (a flat
    field) cannot separate the gain from the intercept: the slope is then 0 and
    the variance at that level is returned as ``readout_sigma**2``. Clipping at 0
    or at the ADC range is not modelled (saturated plateaus are only excluded).

    Fine texture that fills the whole field is indistinguishable, by second-order
    statistics, from correlated noise: the isotropic analysis rejects correlations
    that are still present at lags 5–7 and keeps white noise, so an image that is
    *both* full of fine texture *and* recorded with strongly correlated camera
    noise (e.g. a scintillator point spread) gets its noise underestimated — pass
    ``correlated=True`` there. Below ~0.5 detected electrons per pixel the
    correlation analysis is skipped (unless ``correlated=True``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ramp = np.linspace(5, 200, 256)[None, :] * np.ones((256, 1))
    >>> nm = estimate_noise(rng.poisson(ramp).astype(np.uint16))
    >>> round(nm.gain, 1), nm.is_correlated(), nm.is_signal_dependent()
    (1.0, False, True)
    """
    if modality is not None:
        modality = check_choice(modality, "modality", _MODALITIES)
    if correlated is not None and not isinstance(correlated, bool | np.bool_):
        raise ValueError(f"correlated must be None, True or False; got {short(correlated)}.")
    if offset is not None:
        offset = check_real(offset, "offset", hint="offset is the detector baseline in ADU.")
    radius = check_int(radius, "radius", low=0, high=32)
    p = _prepare(image)
    d, lvl = residual(p.x, "hp")
    a, b, _, xm = _fit_variance(p, d, lvl, "hp")
    srange = _signal_range(image, p)
    a_tot, b_tot, kernel = a, b, np.ones((1, 1))
    t_tol, e_tol = _EVIDENCE[modality]
    max_lag = 2 * radius + 2
    # Below ~0.5 detected quanta per pixel the window statistics are too discrete
    # for a correlation analysis (Poisson counts of a few per window).
    sparse = a > 0 and (a * xm + b) < 0.5 * a * a
    if correlated is not False and (a > 0 or b > 0) and not (sparse and correlated is None):
        scan = modality in ("stem", "sem")
        if not scan:
            flat = _flat_acf(p, a, b, max_lag, None)
            if flat is not None:
                L = flat.acf.shape[0] // 2
                rx, ry = flat.acf[L, L + 1], flat.acf[L + 1, L]
                g = _kernel_from_acf(flat.acf, radius)
                strong = abs(flat.ratio - 1.0) > t_tol or _off_centre_energy(g) > e_tol
                if modality is None and strong and rx - ry > 0.1 and ry < 0.5 * rx:
                    scan = True  # correlated along the scan lines only
                elif correlated or (strong and flat.long_range < _LONG_RANGE):
                    kernel, a_tot, b_tot = g, a * flat.ratio, b * flat.ratio
        if scan:
            dy, lvly = residual(p.x, "y")
            ay, by, _, _ = _fit_variance(p, dy, lvly, "y")
            if ay > 0 or by > 0:
                g = _kernel_from_acf(_scan_acf(p, dy, ay, by, max_lag), radius)
                ratio = (ay * xm + by) / max(a * xm + b, 1e-300)
                if correlated or abs(ratio - 1.0) > t_tol or _off_centre_energy(g) > e_tol:
                    kernel, a_tot, b_tot = g, ay, by
    if a_tot <= 0 and b_tot <= 0 and np.ptp(p.x) > 0:
        # robust statistics see no noise (e.g. isolated counts on zeros): plain variance
        b_tot = float(np.mean(d[1:-1, 1:-1] ** 2))
    if offset is None:
        off = max(0.0, -b_tot / a_tot) if a_tot > 0 else 0.0
    else:
        off = offset
    return NoiseModel(
        gain=a_tot,
        offset=off,
        readout_sigma=math.sqrt(max(b_tot + a_tot * off, 0.0)),
        kernel=kernel,
        signal_range=srange,
    )
