"""Classical denoisers for additive noise, with a finite, documented support.

All filters take a float 2-D image whose noise is *additive* (signal-independent)
— for Poisson–Gaussian data, apply them to the output of
:func:`em_restore.backend.vst.forward_vst`, where ``sigma = 1`` — and return a
float64 array of the same shape. They are deterministic and, except :func:`tv`,
**local**: the output at a pixel depends only on input pixels within
:func:`support_radius` of it (``max(|dy|, |dx|) <= radius``). Cropping a tile with
a halo of that radius, filtering it and keeping its interior therefore gives
exactly (to rounding, < 1e-10) the whole-image result, which is what a tiled
(dask, out-of-core) application needs. At the image border every filter behaves
as if the image were mirrored (``scipy.ndimage`` ``mode="reflect"``,
``d c b a | a b c d``), so a caller that pads the image itself (by at least the
radius, with the same mirroring) gets the same result.

Each method has one main strength knob, :data:`STRENGTH_PARAM`, for automatic
calibration; the others have sensible defaults.

================  ============  =================================================
method            strength      support radius
================  ============  =================================================
``gaussian``      ``sigma_px``  ``int(4 sigma_px + 0.5)``
``median``        ``size``      ``size // 2`` (+1 with spike removal)
``nlm``           ``h``         ``patch_distance + patch_size // 2``
``tv``            ``weight``    ``None`` (global, iterative; see :func:`tv`)
``wavelet``       ``strength``  ``2 c (2**levels - 1) + (7 * 2**(levels-1)) // 2``
``remove_spikes`` (threshold)   ``size // 2``
================  ============  =================================================

Correlated noise: :func:`wavelet` uses the noise ``kernel`` (the correlation
kernel of :class:`em_restore.backend.noise.NoiseModel`) to set a threshold per
subband from the noise power in that subband. :func:`nlm`, :func:`tv` and
:func:`median` accept it for a uniform call signature and ignore it (NLM's
patch-distance correction ``2 sigma²`` holds for correlated noise too when the
patches are further apart than the correlation length; TV and the median have no
noise model).
"""

from __future__ import annotations

import collections
import hashlib
import math
import threading

import numpy as np
import scipy.fft
from scipy import ndimage as ndi

from ._args import check_choice, check_image, check_int, check_real, short
from ._threads import pmap
from .chambolle import chambolle

__all__ = [
    "METHODS",
    "STRENGTH_PARAM",
    "TV_HALO",
    "WAVELETS",
    "apply_filter",
    "gaussian",
    "median",
    "nlm",
    "remove_spikes",
    "support_radius",
    "tv",
    "wavelet",
]

#: The main strength parameter of each method (what a calibrator sweeps).
STRENGTH_PARAM = {
    "gaussian": "sigma_px",
    "median": "size",
    "nlm": "h",
    "tv": "weight",
    "wavelet": "strength",
}
METHODS = tuple(STRENGTH_PARAM)
#: Suggested tile halo for :func:`tv` (not exact; see its docstring).
TV_HALO = 48
#: Frames of at least twice this many rows are filtered by :func:`tv` in bands of
#: ``TV_BAND`` rows, each with :data:`TV_HALO` rows of its neighbours, side by side on
#: the threads of :mod:`._threads` (fixed bands: the result does not depend on the
#: number of threads; it differs from one whole-frame run as tiles do, by < 1e-6 sigma).
TV_BAND = 256

#: Orthogonal wavelets available without PyWavelets (decomposition low-pass,
#: PyWavelets' ``dec_lo``). Any other orthogonal PyWavelets name works when
#: ``pywt`` is importable.
_WAVELET_TABLE = {
    "db1": (0.7071067811865476, 0.7071067811865476),
    "db2": (-0.12940952255126037, 0.2241438680420134, 0.8365163037378079, 0.48296291314453416),
    "db3": (
        0.03522629188570953,
        -0.08544127388202666,
        -0.13501102001025458,
        0.45987750211849154,
        0.8068915093110925,
        0.33267055295008263,
    ),
    "db4": (
        -0.010597401785069032,
        0.0328830116668852,
        0.030841381835560764,
        -0.18703481171909309,
        -0.027983769416859854,
        0.6308807679298589,
        0.7148465705529157,
        0.2303778133088965,
    ),
    "sym4": (
        -0.07576571478927333,
        -0.02963552764599851,
        0.49761866763201545,
        0.8037387518059161,
        0.29785779560527736,
        -0.09921954357684722,
        -0.012603967262037833,
        0.0322231006040427,
    ),
    "coif1": (
        -0.015655728135791993,
        -0.07273261951252645,
        0.3848648468648578,
        0.8525720202116004,
        0.3378976624574818,
        -0.07273261951252645,
    ),
}
_WAVELET_TABLE["haar"] = _WAVELET_TABLE["db1"]
_WAVELET_TABLE["sym2"] = _WAVELET_TABLE["db2"]
_WAVELET_TABLE["sym3"] = _WAVELET_TABLE["db3"]
WAVELETS = tuple(sorted(_WAVELET_TABLE))

_WINDOW = 7  # side of the local-variance window of the adaptive wavelet threshold (level 0)


# --------------------------------------------------------------------------- helpers


def _image(image) -> np.ndarray:
    return check_image(image, "image", min_ndim=2, max_ndim=2)


def _sigma(sigma, name: str = "sigma", *, positive: bool = True) -> float:
    return check_real(
        sigma,
        name,
        low=0,
        low_open=positive,
        hint=f"{name} is the noise standard deviation in image units (1 after a VST).",
    )


def _odd_size(size, name: str = "size") -> int:
    v = check_int(size, name, low=1, hint=f"Use an odd {name} such as 3 or 5.")
    if v % 2 == 0:
        raise ValueError(f"{name} must be odd (centred window); got {v}. Use {v - 1} or {v + 1}.")
    return v


# --------------------------------------------------------------------------- support


def support_radius(method: str, **params) -> int | None:
    """Half-width of the input region that determines one output pixel.

    Parameters
    ----------
    method : {"gaussian", "median", "nlm", "tv", "wavelet", "remove_spikes"}
    **params
        The parameters the filter will be called with (defaults apply to the
        others; unknown names are ignored so a full parameter dict can be passed).

    Returns
    -------
    int or None
        ``None`` for :func:`tv` (global). For :func:`median` and
        :func:`remove_spikes` the radius holds when ``sigma`` is given (the default
        ``sigma=None`` estimates the noise from the whole image).

    Examples
    --------
    >>> support_radius("gaussian", sigma_px=2.0), support_radius("nlm", h=0.8)
    (8, 8)
    >>> support_radius("wavelet", strength=1.0), support_radius("tv", weight=0.1) is None
    (42, True)
    """
    method = check_choice(method, "method", (*METHODS, "remove_spikes"))
    if method == "gaussian":
        s = check_real(params.get("sigma_px", 1.0), "sigma_px", low=0)
        return int(4.0 * s + 0.5)
    if method == "median":
        size = _odd_size(params.get("size", 3))
        spikes = params.get("spike_threshold", 5.0) is not None
        return size // 2 + (1 if spikes else 0)
    if method == "remove_spikes":
        return _odd_size(params.get("size", 3)) // 2
    if method == "nlm":
        ps = check_int(params.get("patch_size", 5), "patch_size", low=1)
        pd = check_int(params.get("patch_distance", 6), "patch_distance", low=0)
        return pd + ps // 2
    if method == "tv":
        return None
    levels = check_int(params.get("levels", 3), "levels", low=1, high=8)
    lo = _lowpass(params.get("wavelet", "db2"))
    c = (_odd_length(lo) - 1) // 2
    return _wavelet_radius(c, levels)


# --------------------------------------------------------------------------- gaussian


def gaussian(image, *, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing (``scipy.ndimage.gaussian_filter``, truncated at 4 σ).

    Parameters
    ----------
    image : (rows, cols) array_like
    sigma_px : float
        Standard deviation of the kernel in pixels, ``>= 0`` (0 returns a copy).

    Returns
    -------
    float64 ndarray; support radius ``int(4 sigma_px + 0.5)``.

    Examples
    --------
    >>> out = gaussian(np.eye(5), sigma_px=1.0)
    >>> out.shape, round(float(out.sum()), 6)
    ((5, 5), 5.0)
    """
    x = _image(image)
    s = check_real(sigma_px, "sigma_px", low=0, hint="sigma_px is the blur width in pixels.")
    if s == 0:
        return x.astype(np.float64, copy=True)
    return ndi.gaussian_filter(x, s, mode="reflect", truncate=4.0)


# --------------------------------------------------------------------------- spikes / median


def remove_spikes(
    image,
    *,
    threshold: float = 5.0,
    sigma=None,
    size: int = 3,
    return_mask: bool = False,
):
    """Replace X-ray spikes, hot and dead pixels by the local median.

    A pixel is replaced when ``|x - median_size(x)| > threshold * sigma``.

    Parameters
    ----------
    image : (rows, cols) array_like
    threshold : float
        In units of ``sigma``, ``> 0``. At 5 a Gaussian-noise pixel is flagged with
        probability ~1e-6.
    sigma : float or array_like, optional
        Noise standard deviation: a scalar, or a per-pixel map of the image's shape
        (e.g. ``sqrt(noise.variance(local_mean))`` for raw Poisson data). Default:
        :func:`em_restore.backend.noise.estimate_sigma` of the whole image, which
        makes the result depend on the whole image (not tile-exact).
    size : int
        Odd side of the median window (3 for isolated pixels, 5 for short streaks).
    return_mask : bool
        Also return the boolean mask of replaced pixels.

    Returns
    -------
    out : float64 ndarray
    mask : bool ndarray (only with ``return_mask=True``)

    Examples
    --------
    >>> img = np.zeros((7, 7)); img[3, 3] = 100.0
    >>> out, mask = remove_spikes(img, sigma=1.0, return_mask=True)
    >>> float(out[3, 3]), int(mask.sum())
    (0.0, 1)
    """
    x = _image(image)
    threshold = check_real(threshold, "threshold", low=0, low_open=True)
    size = _odd_size(size)
    if sigma is None:
        from .noise import estimate_sigma

        s = estimate_sigma(x)
    elif np.ndim(sigma) == 0:
        s = _sigma(sigma, positive=False)
    else:
        s = check_image(sigma, "sigma", min_ndim=2, max_ndim=2)
        if s.shape != x.shape or (s < 0).any():
            raise ValueError(
                f"sigma must be a scalar or a non-negative map of the image's shape "
                f"{x.shape}; got {short(s)}."
            )
    med = ndi.median_filter(x, size, mode="reflect")
    mask = np.abs(x - med) > threshold * s
    out = np.where(mask, med, x)
    return (out, mask) if return_mask else out


def median(image, *, size: int, spike_threshold: float | None = 5.0, sigma=None, kernel=None):
    """Median filter, after :func:`remove_spikes` (3×3) unless ``spike_threshold`` is None.

    Parameters
    ----------
    image : (rows, cols) array_like
    size : int
        Odd side of the square window, ``>= 1`` (1: spike removal only).
    spike_threshold : float or None
        Threshold of the spike removal in units of ``sigma``; ``None`` skips it.
    sigma : float or array_like, optional
        Noise standard deviation for the spike removal (see :func:`remove_spikes`;
        pass it for tile-exact results).
    kernel : ignored
        Noise correlation kernel, accepted for a uniform signature.

    Returns
    -------
    float64 ndarray; support radius ``size // 2`` (+1 with spike removal).

    Examples
    --------
    >>> img = np.arange(25.0).reshape(5, 5); img[2, 2] = 1e6
    >>> float(median(img, size=3, sigma=1.0)[2, 2])
    13.0
    """
    x = _image(image)
    size = _odd_size(size)
    if spike_threshold is not None:
        x = remove_spikes(x, threshold=spike_threshold, sigma=sigma, size=3)
    if size == 1:
        return x.astype(np.float64, copy=True)
    return ndi.median_filter(x, size, mode="reflect")


# --------------------------------------------------------------------------- NLM / TV


def nlm(
    image,
    *,
    sigma: float,
    h: float,
    patch_size: int = 5,
    patch_distance: int = 6,
    kernel=None,
) -> np.ndarray:
    """Non-local means (scikit-image, fast mode, with the ``2 sigma²`` bias correction).

    Weights ``exp(-max(d² - 2 sigma², 0) / (h sigma)²)``, ``d²`` the mean squared
    difference of ``patch_size``² patches (uniform weights), over a search window
    of ``2 patch_distance + 1`` pixels a side.

    Parameters
    ----------
    image : (rows, cols) array_like
    sigma : float
        Noise standard deviation, ``> 0``.
    h : float
        Filtering strength **in units of sigma** (scikit-image's ``h`` is
        ``h * sigma``), ``> 0``; ~0.6–1.0 is typical.
    patch_size, patch_distance : int
        Patch side and search half-width, pixels.
    kernel : ignored
        Noise correlation kernel, accepted for a uniform signature.

    Returns
    -------
    float64 ndarray; support radius ``patch_distance + patch_size // 2`` (verified
    tile-exact). The image is mirror-padded by that radius first, so the border
    behaves like the other filters'.

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(0.0, 1.0, (32, 32))
    >>> bool(nlm(img, sigma=1.0, h=0.8).std() < img.std())
    True
    """
    from skimage.restoration import denoise_nl_means

    x = _image(image)
    sigma = _sigma(sigma)
    h = check_real(h, "h", low=0, low_open=True, hint="h is relative to sigma; try 0.8.")
    ps = check_int(patch_size, "patch_size", low=1)
    pd = check_int(patch_distance, "patch_distance", low=0)
    r = pd + ps // 2
    # mirror like the other filters (scikit-image's own padding omits the edge pixel)
    xp = np.pad(x, r, mode="symmetric")
    out = denoise_nl_means(
        xp, patch_size=ps, patch_distance=pd, h=h * sigma, sigma=sigma, fast_mode=True
    )
    return np.asarray(out, dtype=np.float64)[r : r + x.shape[0], r : r + x.shape[1]].copy()


def tv(
    image,
    *,
    weight: float,
    sigma: float = 1.0,
    max_num_iter: int = 200,
    kernel=None,
) -> np.ndarray:
    """Total-variation denoising (Chambolle's algorithm, :mod:`.chambolle`, in float32).

    Minimises ``||u - x||² / 2 + weight * sigma * TV(u)``: the ``weight`` is
    **relative to sigma** (scikit-image's ``weight`` is ``weight * sigma``), so
    the same value suits any noise level; ~0.5–3 is typical. Exactly
    ``max_num_iter`` iterations are run: scikit-image's early stop compares the
    energy of the *whole* image between iterations, so tiles would stop at
    different iterations (and its default tolerance stops far from convergence).

    The filter is iterative and not strictly local (information travels a pixel
    or two per iteration), so ``support_radius("tv")`` is ``None``. The influence
    decays fast: with 200 iterations and ``weight = 3``, a tile halo of
    :data:`TV_HALO` = 48 px changes the interior by < 1e-6 sigma (32 px: < 1e-3
    sigma); see ``tests/test_filters.py``. Frames of ``2 * TV_BAND`` rows or more
    are filtered that way, in bands of :data:`TV_BAND` rows side by side on the
    shared threads.

    Parameters
    ----------
    image : (rows, cols) array_like
    weight : float
        Strength relative to ``sigma``, ``>= 0`` (0 returns a copy).
    sigma : float
        Noise standard deviation, ``> 0``.
    max_num_iter : int
        Number of iterations (time is linear in it: ~0.4 s for 512² at 200).
    kernel : ignored
        Noise correlation kernel, accepted for a uniform signature.

    Returns
    -------
    float64 ndarray

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(0.0, 1.0, (32, 32))
    >>> bool(tv(img, weight=1.0, max_num_iter=50).std() < 0.5 * img.std())
    True
    """
    x = _image(image)
    weight = check_real(weight, "weight", low=0, hint="weight is relative to sigma; try 1.0.")
    sigma = _sigma(sigma)
    it = check_int(max_num_iter, "max_num_iter", low=1)
    if weight == 0:
        return x.astype(np.float64, copy=True)
    h = x.shape[0]
    if h < 2 * TV_BAND:
        return chambolle(x, weight * sigma, it).astype(np.float64)
    starts = list(range(0, h - TV_BAND // 2, TV_BAND))  # a short last band joins the one before

    def band(k: int) -> np.ndarray:
        y0, y1 = starts[k], starts[k + 1] if k + 1 < len(starts) else h
        lo, hi = max(y0 - TV_HALO, 0), min(y1 + TV_HALO, h)
        return chambolle(x[lo:hi], weight * sigma, it)[y0 - lo : y1 - lo]

    return np.concatenate(pmap(band, range(len(starts))), axis=0).astype(np.float64)


# --------------------------------------------------------------------------- wavelet


def _lowpass(name) -> np.ndarray:
    if not isinstance(name, str):
        raise ValueError(f"wavelet must be a wavelet name such as 'db2'; got {short(name)}.")
    if name in _WAVELET_TABLE:
        return np.array(_WAVELET_TABLE[name], dtype=float)
    try:
        import pywt
    except ImportError:
        raise ValueError(
            f"wavelet must be one of {', '.join(WAVELETS)} (install PyWavelets for "
            f"others); got {name!r}."
        ) from None
    try:
        w = pywt.Wavelet(name)
    except ValueError:
        raise ValueError(f"wavelet {name!r} is not a PyWavelets wavelet; try 'db2'.") from None
    if not w.orthogonal:
        raise ValueError(
            f"wavelet must be orthogonal (the undecimated transform uses one filter pair); "
            f"{name!r} is not. Try 'db2', 'sym4' or 'coif1'."
        )
    return np.array(w.dec_lo, dtype=float)


def _odd_length(lo: np.ndarray) -> int:
    n = lo.size
    return n + 1 if n % 2 == 0 else n


def _filter_pair(name) -> tuple[np.ndarray, np.ndarray]:
    """Analysis low/high-pass filters, odd length (zero-padded), each of norm 1/√2.

    ``|H|² + |G|² = 1`` at every frequency (orthogonal QMF pair scaled by 1/√2),
    so the undecimated transform is a tight frame and its adjoint inverts it.
    """
    lo = _lowpass(name)
    n = lo.size
    hi = np.array([(-1) ** (k + 1) * lo[n - 1 - k] for k in range(n)])
    if n % 2 == 0:
        lo, hi = np.append(lo, 0.0), np.append(hi, 0.0)
    return lo / math.sqrt(2.0), hi / math.sqrt(2.0)


def _window(level: int) -> int:
    """Odd side of the local-variance window at ``level``: about 7 * 2**level."""
    return (_WINDOW * 2**level) | 1


def _wavelet_radius(c: int, levels: int) -> int:
    """Analysis reach + threshold window + synthesis reach (deepest level dominates)."""
    reach = c * (2**levels - 1)  # sum of c 2**j, j < levels
    return 2 * reach + _window(levels - 1) // 2


def _corr(x: np.ndarray, f: np.ndarray, step: int, axis: int, adjoint: bool) -> np.ndarray:
    """Correlation along ``axis`` with ``f`` dilated by ``step`` (mirror borders).

    ``out[i] = sum_k f[k] x[i + (k - c) step]``, ``c = len(f) // 2``; the adjoint
    uses ``x[i - (k - c) step]``. Shifted slices are summed in a fixed order, so
    the result at a pixel depends on its neighbourhood only (bit-identical in a
    tile).
    """
    c = f.size // 2
    pad = c * step
    widths = [(0, 0), (0, 0)]
    widths[axis] = (pad, pad)
    xp = np.pad(x, widths, mode="symmetric")
    n = x.shape[axis]
    out = np.zeros_like(x)
    for k, fk in enumerate(f):
        if fk == 0.0:
            continue
        off = (k - c) * step * (-1 if adjoint else 1)
        sl = [slice(None), slice(None)]
        sl[axis] = slice(pad + off, pad + off + n)
        out += fk * xp[tuple(sl)]
    return out


def _subband_noise(lo, hi, levels: int, kernel, n: int = 256) -> list[list[float]]:
    """Noise variance per detail subband for unit-variance noise of kernel ``kernel``.

    ``E = mean_ω |H_eq(ω)|² P(ω)``, ``P`` the normalised noise power spectrum
    (ones for white noise), on an ``n × n`` frequency grid (exact for filters
    shorter than ``n``).
    """
    w = 2.0 * np.pi * np.fft.fftfreq(n)

    def resp(f, step):
        k = np.arange(f.size) - f.size // 2
        return np.abs(np.exp(-1j * np.outer(w * step, k)) @ f) ** 2

    if kernel is None:
        psd = None
    else:
        g = np.asarray(kernel, dtype=float)
        g = g / math.sqrt(float(np.sum(g * g)))
        grid = np.zeros((n, n))
        ys = (np.arange(g.shape[0]) - g.shape[0] // 2) % n
        xs = (np.arange(g.shape[1]) - g.shape[1] // 2) % n
        np.add.at(grid, (ys[:, None], xs[None, :]), g)
        psd = np.abs(scipy.fft.fft2(grid)) ** 2
    out = []
    low = np.ones(n)
    for j in range(levels):
        step = 2**j
        lj, hj = resp(lo, step) * low, resp(hi, step) * low
        bands = []
        for fy, fx in ((hj, lj), (lj, hj), (hj, hj)):  # (y-high x-low), (y-low x-high), diag
            if psd is None:
                bands.append(float(np.mean(fy) * np.mean(fx)))
            else:
                bands.append(float(np.mean(np.outer(fy, fx) * psd)))
        out.append(bands)
        low = lj
    return out


#: Analyses of small images are remembered (the calibration tries several strengths on
#: each crop, and the analysis does not depend on the strength): at most this many, of
#: images up to _ANALYSIS_PIXELS. Keyed by the image's bytes and the transform: exact.
_ANALYSIS_ENTRIES = 8
_ANALYSIS_PIXELS = 160 * 160
_ANALYSES: collections.OrderedDict = collections.OrderedDict()
_ANALYSES_LOCK = threading.Lock()


def _wavelet_analysis(x, lo, hi, levels: int, radius: int):
    """Undecimated analysis of ``x``: the coarsest approximation and, per level, the three
    detail bands with their local mean squares over the level's window (read-only)."""
    key = None
    if x.size <= _ANALYSIS_PIXELS:
        digest = hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16).digest()
        key = (x.shape, x.dtype.str, digest, lo.tobytes(), hi.tobytes(), levels)
        with _ANALYSES_LOCK:
            hit = _ANALYSES.get(key)
            if hit is not None:
                _ANALYSES.move_to_end(key)
                return hit
    approx = np.pad(x, radius, mode="symmetric")
    analysis = []
    for j in range(levels):
        step = 2**j
        rl = _corr(approx, lo, step, 1, False)
        rh = _corr(approx, hi, step, 1, False)
        bands = (
            _corr(rl, hi, step, 0, False),  # high along y
            _corr(rh, lo, step, 0, False),  # high along x
            _corr(rh, hi, step, 0, False),  # diagonal
        )
        approx = _corr(rl, lo, step, 0, False)
        win = _window(j)
        weights = np.ones(win) / win
        locals_ = []
        for y in bands:
            local = ndi.correlate1d(y * y, weights, axis=0, mode="reflect")
            locals_.append(ndi.correlate1d(local, weights, axis=1, mode="reflect"))
        for a in (*bands, *locals_):
            a.setflags(write=False)
        analysis.append((bands, tuple(locals_)))
    approx.setflags(write=False)
    out = (approx, analysis)
    if key is not None:
        with _ANALYSES_LOCK:
            _ANALYSES[key] = out
            while len(_ANALYSES) > _ANALYSIS_ENTRIES:
                _ANALYSES.popitem(last=False)
    return out


def wavelet(
    image,
    *,
    sigma: float,
    strength: float = 1.0,
    wavelet: str = "db2",
    levels: int = 3,
    kernel=None,
) -> np.ndarray:
    """Undecimated wavelet shrinkage with a spatially adaptive BayesShrink threshold.

    The image is decomposed by an undecimated (stationary, "à trous") orthogonal
    wavelet transform — translation invariant and *local*, unlike the decimated
    transform — into ``levels`` × 3 detail subbands. Each coefficient ``y`` is
    soft-thresholded at ``T = strength * σn² / σx``, where ``σn²`` is the noise
    variance in its subband and ``σx² = max(mean_W(y²) - σn², 0)`` the local signal
    variance over a square window ``W`` of ``7 · 2**j + 1`` pixels (7 at level 0)
    at level ``j``
    (BayesShrink of Chang, Yu & Vetterli 2000, estimated locally instead of per
    subband so that the filter is tile-exact). ``strength = 0`` reconstructs the
    input exactly (tight frame).

    Parameters
    ----------
    image : (rows, cols) array_like
    sigma : float
        Noise standard deviation (marginal), ``> 0``.
    strength : float
        Multiplier of the BayesShrink thresholds, ``>= 0`` (the calibration knob).
    wavelet : str
        Orthogonal wavelet: ``"db1"``–``"db4"``, ``"sym4"``, ``"coif1"`` built in,
        any orthogonal PyWavelets name when ``pywt`` is installed.
    levels : int
        Decomposition levels, 1–8.
    kernel : array_like, optional
        Noise correlation kernel (``NoiseModel.kernel``); the subband noise
        variances are ``sigma² ∫ |H_subband|² PSD``, so correlated noise (more power
        at low frequencies, or along x) is thresholded per subband correctly.

    Returns
    -------
    float64 ndarray; support radius ``2 c (2**levels - 1) + w // 2``, ``c`` the
    half-length of the (odd-padded) filters and ``w`` the deepest window (42 for
    db2 with 3 levels).

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(0.0, 1.0, (64, 64))
    >>> bool(np.allclose(wavelet(img, sigma=1.0, strength=0.0), img))
    True
    >>> bool(wavelet(img, sigma=1.0).std() < 0.5)
    True
    """
    x = _image(image)
    sigma = _sigma(sigma)
    strength = check_real(strength, "strength", low=0, hint="strength 1 is BayesShrink.")
    levels = check_int(levels, "levels", low=1, high=8)
    lo, hi = _filter_pair(wavelet)
    if kernel is not None:
        from .noise import check_kernel

        kernel = check_kernel(kernel)
    radius = _wavelet_radius(lo.size // 2, levels)
    approx, analysis = _wavelet_analysis(x, lo, hi, levels, radius)
    noise_var = _subband_noise(lo, hi, levels, kernel)
    details = []
    for j in range(levels):
        bands, locals_ = analysis[j]
        if strength > 0:
            shrunk = []
            for y, local, e in zip(bands, locals_, noise_var[j], strict=True):
                vn = sigma * sigma * e
                sx = np.sqrt(np.maximum(local - vn, 0.0))
                thr = np.divide(strength * vn, sx, out=np.full_like(sx, np.inf), where=sx > 0)
                shrunk.append(np.sign(y) * np.maximum(np.abs(y) - thr, 0.0))
            bands = tuple(shrunk)
        details.append(bands)
    for j in reversed(range(levels)):
        step = 2**j
        by, bx, bd = details[j]
        rl = _corr(approx, lo, step, 0, True) + _corr(by, hi, step, 0, True)
        rh = _corr(bx, lo, step, 0, True) + _corr(bd, hi, step, 0, True)
        approx = _corr(rl, lo, step, 1, True) + _corr(rh, hi, step, 1, True)
    return approx[radius:-radius, radius:-radius].copy()


# --------------------------------------------------------------------------- dispatch


def apply_filter(image, method: str, *, sigma: float = 1.0, kernel=None, **params) -> np.ndarray:
    """Run ``method`` with the noise ``sigma`` / ``kernel`` passed where it is used.

    Parameters
    ----------
    image : (rows, cols) array_like
    method : {"gaussian", "median", "nlm", "tv", "wavelet"}
    sigma : float
        Noise standard deviation (ignored by ``gaussian``; the spike-removal scale
        of ``median``).
    kernel : array_like, optional
        Noise correlation kernel (used by ``wavelet``).
    **params
        The method's own parameters, its strength (:data:`STRENGTH_PARAM`) included.

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(0.0, 1.0, (32, 32))
    >>> np.array_equal(apply_filter(img, "gaussian", sigma_px=1.0), gaussian(img, sigma_px=1.0))
    True
    """
    method = check_choice(method, "method", METHODS)
    fn = {"gaussian": gaussian, "median": median, "nlm": nlm, "tv": tv, "wavelet": wavelet}[method]
    if method != "gaussian":
        params = {"sigma": sigma, "kernel": kernel, **params}
    return fn(image, **params)
