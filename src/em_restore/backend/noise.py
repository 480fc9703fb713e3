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
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.fft
from scipy import ndimage as ndi

from ._args import MODALITIES, check_choice, check_image, check_int, check_real, short

__all__ = [
    "NoiseModel",
    "estimate_noise",
    "estimate_noise_kernel",
    "estimate_sigma",
    "highpass_residual",
]

#: Immerkær's noise operator divided by 6: unit L2 norm, sums to zero, and
#: annihilates any f(x) + g(y) and anything affine along x or along y.
_HP = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]) / 6.0
_CLIP_K = 3.5
# variance of a standard normal truncated to |x| < k
_CLIP_VAR = 1.0 - 2.0 * _CLIP_K * math.exp(-0.5 * _CLIP_K**2) / math.sqrt(2 * math.pi) / math.erf(
    _CLIP_K / math.sqrt(2.0)
)
_RING = 4  # half-size of the selection window (rows y±2..4, 9 columns)
_MODALITIES = MODALITIES
# Evidence needed to call the noise correlated: |t - 1| (excess marginal variance
# over the high-pass prediction) or off-centre kernel energy 1 - g_c**2.
# Detector-correlated noise decays within a few pixels; a flat-window
# autocorrelation with mean |rho| > this at lags 5..7 is structure (lattice, texture).
_LONG_RANGE = 0.1
_EVIDENCE = {None: (0.10, 0.05), "stem": (0.10, 0.05), "sem": (0.10, 0.05), "tem": (0.25, 0.15)}


# --------------------------------------------------------------------------- model


def check_kernel(kernel: Any, name: str = "kernel") -> np.ndarray:
    g = np.asarray(kernel, dtype=float) if kernel is not None else np.ones((1, 1))
    if g.ndim != 2 or g.shape[0] % 2 == 0 or g.shape[1] % 2 == 0:
        raise ValueError(
            f"{name} must be a 2-D array with odd sides (centre = zero lag); got "
            f"{short(g)}. Use [[1.0]] for white noise."
        )
    if not np.isfinite(g).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    energy = float(np.sum(g * g))
    if energy <= 0:
        raise ValueError(f"{name} must not be all zeros. Use [[1.0]] for white noise.")
    g = g / math.sqrt(energy)
    g.setflags(write=False)
    return g


def _pad_centred(g: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Kernel zero-padded to ``shape`` with its centre at index (0, 0) (folds if larger)."""
    out = np.zeros(shape)
    ky, kx = g.shape
    ys = (np.arange(ky) - ky // 2) % shape[0]
    xs = (np.arange(kx) - kx // 2) % shape[1]
    np.add.at(out, (ys[:, None], xs[None, :]), g)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class NoiseModel:
    """Poisson–Gaussian noise in ADU with a spatial correlation kernel.

    ``var(pixel) = gain * (mean - offset) + readout_sigma**2`` and the noise field
    is ``sqrt(var) * (white ⊛ kernel)``.

    Parameters
    ----------
    gain : float
        ADU per detected electron, ``>= 0`` (0: signal-independent Gaussian noise).
    offset : float
        Baseline in ADU (mean at zero electrons).
    readout_sigma : float
        Signal-independent standard deviation in ADU, ``>= 0``.
    kernel : array_like, optional
        Odd-sided 2-D zero-phase kernel ``g``; normalised here to ``sum(g**2) == 1``
        and stored read-only. Default ``[[1.0]]`` (white noise).
    signal_range : (float, float), optional
        The range of local means (ADU) the model was estimated on, e.g. the 1st
        and 99th percentiles; used by :meth:`is_signal_dependent`.

    Examples
    --------
    >>> m = NoiseModel(gain=2.0, offset=100.0, readout_sigma=3.0)
    >>> float(m.variance(150.0))
    109.0
    >>> m.is_correlated(), NoiseModel.from_dict(m.to_dict()) == m
    (False, True)
    """

    gain: float
    offset: float
    readout_sigma: float
    kernel: np.ndarray = dataclasses.field(default_factory=lambda: np.ones((1, 1)))
    signal_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "gain", check_real(self.gain, "gain", low=0, hint="gain is ADU per electron."))
        s(self, "offset", check_real(self.offset, "offset"))
        s(self, "readout_sigma", check_real(self.readout_sigma, "readout_sigma", low=0))
        s(self, "kernel", check_kernel(self.kernel))
        if self.signal_range is not None:
            try:
                lo, hi = self.signal_range
            except (TypeError, ValueError):
                raise ValueError(
                    f"signal_range must be None or a (low, high) pair; got "
                    f"{short(self.signal_range)}."
                ) from None
            lo = check_real(lo, "signal_range[0]")
            hi = check_real(hi, "signal_range[1]", low=lo)
            s(self, "signal_range", (lo, hi))

    # -------------------------------------------------------------- properties

    def variance(self, mean) -> np.ndarray:
        """Marginal noise variance at a noise-free level ``mean`` (ADU²), clipped at 0."""
        m = np.asarray(mean, dtype=float)
        return np.maximum(self.gain * (m - self.offset) + self.readout_sigma**2, 0.0)

    def is_signal_dependent(self, *, threshold: float = 1.25) -> bool:
        """Whether the noise std varies by more than ``threshold`` × over the signal range.

        Uses :attr:`signal_range` (set by :func:`estimate_noise`); without it, any
        positive ``gain`` counts as signal-dependent.
        """
        if self.gain <= 0:
            return False
        if self.signal_range is None:
            return True
        v_lo, v_hi = self.variance(np.asarray(self.signal_range))
        if v_hi <= 0:
            return False
        return bool(v_lo <= 0 or v_hi / v_lo > threshold**2)

    def is_correlated(self, *, threshold: float = 0.02) -> bool:
        """Whether more than ``threshold`` of the kernel's energy lies off its centre."""
        g = self.kernel
        centre = g[g.shape[0] // 2, g.shape[1] // 2]
        return bool(1.0 - centre**2 > threshold)

    def psd(self, shape) -> np.ndarray:
        """Normalised noise power spectrum ``|FFT(g)|**2`` on a ``shape`` grid (mean 1).

        The kernel is zero-padded with its centre at index ``(0, 0)`` (unshifted
        FFT layout, as ``numpy.fft.fft2``); white noise gives all ones.
        """
        if isinstance(shape, int | np.integer):
            shape = (int(shape), int(shape))
        shape = tuple(check_int(s, f"shape[{i}]", low=1) for i, s in enumerate(shape))
        if len(shape) != 2:
            raise ValueError(f"shape must be (rows, cols); got {shape!r}.")
        return np.abs(scipy.fft.fft2(_pad_centred(self.kernel, shape))) ** 2

    # ---------------------------------------------------------- serialisation

    def to_dict(self) -> dict:
        """JSON-able dict (kernel as a nested list rounded to 6 decimals)."""
        return {
            "model": "poisson-gaussian",
            "gain": float(self.gain),
            "offset": float(self.offset),
            "readout_sigma": float(self.readout_sigma),
            "kernel": np.round(self.kernel, 6).tolist(),
            "signal_range": None if self.signal_range is None else list(self.signal_range),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> NoiseModel:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"d must be a dict from NoiseModel.to_dict(); got {short(d)}.")
        missing = [k for k in ("gain", "offset", "readout_sigma") if k not in d]
        if missing:
            raise ValueError(f"d lacks key(s) {missing}; expected the output of to_dict().")
        sr = d.get("signal_range")
        return cls(
            gain=d["gain"],
            offset=d["offset"],
            readout_sigma=d["readout_sigma"],
            kernel=d.get("kernel", [[1.0]]),
            signal_range=None if sr is None else tuple(sr),
        )

    # -------------------------------------------------------------- equality

    def _key(self):
        return (
            self.gain,
            self.offset,
            self.readout_sigma,
            self.kernel.shape,
            np.round(self.kernel, 6).tobytes(),
            self.signal_range,
        )

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


# --------------------------------------------------------------------------- helpers

#: Vertical second difference / sqrt(6): unit norm, zero on anything affine along
#: y. For noise that is independent between scan lines (rows) it sees the whole
#: marginal variance, however the noise is correlated along the line.
_HP_Y = np.array([[1.0], [-2.0], [1.0]]) / math.sqrt(6.0)
_OPS = {"hp": _HP, "y": _HP_Y}
_SCREEN = 3.0  # drop pixels whose 5x5 residual energy exceeds 3x the prediction


def highpass_residual(image) -> np.ndarray:
    """Unit-norm high-pass residual (Immerkær's 3×3 operator / 6), reflect borders.

    For white noise of variance σ² its variance is σ²; it is zero on anything
    affine along x or along y (so it ignores scan-line offsets and smooth shading).

    Examples
    --------
    >>> yy, xx = np.mgrid[:8, :8]
    >>> float(np.abs(highpass_residual(3.0 * xx + yy**2)[1:-1, 1:-1]).max())
    0.0
    """
    x = check_image(image, "image", min_ndim=2, max_ndim=2)
    return ndi.correlate(x, _HP, mode="reflect")


def _clipped_var(values: np.ndarray) -> float:
    """Variance of zero-mean values by iterative 3.5σ clipping (Gaussian-corrected).

    When more than half of the values are exactly 0 (isolated counts at very low
    dose) the plain mean square is returned.
    """
    v = np.asarray(values).ravel()
    if v.size == 0:
        return 0.0
    s = 1.4826 * float(np.median(np.abs(v)))
    if s == 0:  # mostly exact zeros (sparse counts): clipping would cut the signal
        return float(np.mean(v * v))
    for _ in range(5):
        keep = np.abs(v) < _CLIP_K * s
        s_new = math.sqrt(float(np.mean(v[keep] ** 2)) / _CLIP_VAR) if keep.any() else s
        done = abs(s_new - s) <= 1e-4 * s
        s = s_new
        if done:
            break
    return s * s


def _hp_energy_factor(kernel: np.ndarray) -> float:
    """Var of the high-pass residual / marginal variance, for noise = white ⊛ kernel."""
    g = np.asarray(kernel, dtype=float)
    g = g / math.sqrt(float(np.sum(g * g)))
    eq = ndi.convolve(np.pad(g, 2), _HP[::-1, ::-1], mode="constant")  # hp ⊛ g, full support
    return float(np.sum(eq * eq))


def _selection_level(x: np.ndarray) -> np.ndarray:
    """Local level for binning: mean of rows ``y±2..4`` over 9 columns (54 pixels).

    It shares no row with the 3-row support of the residuals, so for white noise
    and for noise correlated along scan lines (line offsets, afterglow) it is
    independent of them: sorting pixels into bins by it biases neither the
    residual variance nor the abscissa (no regression dilution).
    """
    rows = ndi.uniform_filter1d(x, 2 * _RING + 1, axis=1, mode="reflect")
    pad = np.pad(rows, ((_RING, _RING), (0, 0)), mode="reflect")
    h = x.shape[0]
    offs = [dy for dy in range(-_RING, _RING + 1) if abs(dy) >= 2]
    return sum(pad[_RING + dy : _RING + dy + h] for dy in offs) / len(offs)


def _residual(x: np.ndarray, op: str) -> tuple[np.ndarray, np.ndarray]:
    """High-pass residual ``d`` and the level its variance sees, ``x ⊛ op²``.

    The weights ``op²`` sum to 1, so ``E[var(d) | bin] = a E[lvl | bin] + b`` holds
    exactly for a linear variance function, whatever the curvature of the signal.
    """
    k = _OPS[op]
    return ndi.correlate(x, k, mode="reflect"), ndi.correlate(x, k * k, mode="reflect")


def _binned(level_sel, level_abs, values, n_bins):
    """Equal-count bins of ``level_sel``; per bin mean(level_abs), clipped var(values), n."""
    order = np.argsort(level_sel, kind="stable")
    chunks = np.array_split(order, n_bins)
    lv, var, n = [], [], []
    for idx in chunks:
        if idx.size < 50:
            continue
        lv.append(float(np.mean(level_abs[idx])))
        var.append(_clipped_var(values[idx]))
        n.append(idx.size)
    return np.array(lv), np.array(var), np.array(n, dtype=float)


def _wls(x, y, w, nonneg_slope):
    sw = float(np.sum(w))
    xm, ym = float(np.sum(w * x)) / sw, float(np.sum(w * y)) / sw
    sxx = float(np.sum(w * (x - xm) ** 2))
    a = float(np.sum(w * (x - xm) * (y - ym))) / sxx if sxx > 0 else 0.0
    if nonneg_slope and a < 0:
        a = 0.0
    return a, ym - a * xm


def _robust_linear_fit(x, y, n_eff):
    """IRLS fit ``y ≈ a x + b`` (a >= 0) with Tukey weights; var(y_i) = 2 fit_i² / n_eff_i.

    Returns ``(a, b, se_a, x_mean)``: the slope's standard error from the sampling
    errors and the weighted mean abscissa (where the line is best determined).
    """
    if x.size == 0:
        return 0.0, 0.0, math.inf, 0.0
    if not np.any(y > 0):
        return 0.0, 0.0, math.inf, float(np.mean(x))
    floor = 1e-9 * float(np.max(np.abs(y)))
    a, b = 0.0, float(np.median(y))
    tukey = np.ones_like(y)
    for _ in range(25):
        fit = np.maximum(a * x + b, floor)
        sd = fit * np.sqrt(2.0 / n_eff)
        a_new, b_new = _wls(x, y, tukey / sd**2, True)
        r = (y - np.maximum(a_new * x + b_new, floor)) / sd
        # residual scale: at least the sampling error (texture inflates some bins)
        s = max(1.4826 * float(np.median(np.abs(r))), 1.0)
        u = r / (4.685 * s)
        tukey = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
        if np.count_nonzero(tukey) < 2:
            tukey = np.ones_like(y)
        done = abs(a_new - a) <= 1e-7 * (abs(a) + 1e-12) and abs(b_new - b) <= 1e-7 * (
            abs(b) + 1e-12
        )
        a, b = a_new, b_new
        if done:
            break
    w = tukey * n_eff / (2.0 * np.maximum(a * x + b, floor) ** 2)
    sw = float(np.sum(w))
    xm = float(np.sum(w * x)) / sw if sw > 0 else float(np.mean(x))
    sxx = float(np.sum(w * (x - xm) ** 2))
    se_a = 1.0 / math.sqrt(sxx) if sxx > 0 else math.inf
    return a, b, se_a, xm


def _half_sample_mode(v: np.ndarray) -> float:
    """Half-sample mode of a 1-D sample (Bickel & Frühwirth 2006)."""
    v = np.sort(np.asarray(v, dtype=float))
    while v.size > 3:
        h = (v.size + 1) // 2
        widths = v[h - 1 :] - v[: v.size - h + 1]
        i = int(np.argmin(widths))
        v = v[i : i + h]
    if v.size == 3:
        lo, hi = v[1] - v[0], v[2] - v[1]
        v = v[:2] if lo < hi else (v[1:] if lo > hi else v[1:2])
    return float(np.mean(v))


# --------------------------------------------------------------------------- stage 1


@dataclasses.dataclass
class _Prepared:
    x: np.ndarray  # float image, outliers replaced by the 3x3 median
    valid: np.ndarray  # pixels usable for statistics
    outliers: np.ndarray  # detected spikes / dead / hot pixels
    sel: np.ndarray  # selection level (see _selection_level)


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
    sel = _selection_level(x)
    # outliers (X-ray spikes, dead / hot pixels) against a rough variance function
    med = ndi.median_filter(x, 3, mode="reflect")
    dev = x - med
    outliers = np.zeros(x.shape, dtype=bool)
    idx = np.flatnonzero(valid)
    if idx.size >= 2000:
        nb = int(np.clip(idx.size // 5000, 4, 24))
        ms = sel.ravel()[idx]
        d0, l0 = _residual(x, "hp")
        lv, var, n = _binned(ms, l0.ravel()[idx], d0.ravel()[idx], nb)
        a0 = _robust_linear_fit(lv, var, n / 2.0)[0]
        # the scale of x - median3 itself includes correlated noise such as
        # scan-line offsets, which the high-pass residual does not see
        # (interpolated between bins, constant beyond: never extrapolated to 0)
        lv, var, n = _binned(ms, med.ravel()[idx], dev.ravel()[idx], nb)
        order = np.argsort(lv)
        scale = np.sqrt(np.interp(med, lv[order], np.maximum.accumulate(var[order][::-1])[::-1]))
        # + 3 a0: a few quanta (electrons) of slack for Poisson tails at low counts
        outliers = (np.abs(dev) > 6.0 * scale + 3.0 * a0) & (dev != 0)
    if outliers.any():
        x = np.where(outliers, med, x)
        valid &= ~ndi.binary_dilation(outliers, np.ones((2 * _RING + 1,) * 2, bool))
        sel = _selection_level(x)
    # keep away from the image border (reflected data is not independent)
    valid[:_RING, :] = valid[-_RING:, :] = False
    valid[:, :_RING] = valid[:, -_RING:] = False
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
        d = ndi.correlate(w, _OPS[op], mode="reflect")[8:-8, 8:-8]
        keep = ndi.uniform_filter(d * d, 5, mode="reflect") < _SCREEN
        _TRIM_CACHE[op] = _clipped_var(d) / _clipped_var(d[keep])
    return _TRIM_CACHE[op]


def _fit_variance(p: _Prepared, d: np.ndarray, lvl: np.ndarray, op: str):
    """var(d) = a * level + b over the valid pixels; returns (a, b, se_a, level_mean).

    Two passes: the second drops pixels whose 5×5 residual energy exceeds
    ``_SCREEN`` × the first fit (edges, texture) and corrects for the noise-only
    tail that this removes.
    """
    idx = np.flatnonzero(p.valid)
    if idx.size < 200:
        return 0.0, _clipped_var(d), math.inf, float(np.mean(p.x))
    nb = int(np.clip(idx.size // 4000, 4, 32))
    lv, var, n = _binned(p.sel.ravel()[idx], lvl.ravel()[idx], d.ravel()[idx], nb)
    a, b, se, xm = _robust_linear_fit(lv, var, n / 2.0)
    pred = a * p.sel + b
    pred = np.maximum(pred, 0.05 * max(a * xm + b, 1e-300))
    keep = p.valid & (ndi.uniform_filter(d * d, 5, mode="reflect") < _SCREEN * pred)
    idx2 = np.flatnonzero(keep)
    if idx2.size >= max(200, idx.size // 4):
        lv, var, n = _binned(p.sel.ravel()[idx2], lvl.ravel()[idx2], d.ravel()[idx2], nb)
        a, b, se, xm = _robust_linear_fit(lv, var, n / 2.0)
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
    mode = _half_sample_mode(sub)
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
    ok &= ndi.uniform_filter(d * d, 5, mode="reflect") < _SCREEN * v
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
    spec = np.maximum(scipy.fft.fft2(_pad_centred(tap, (ny, n))).real, 0.0)
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
        sel = ndi.uniform_filter(x, 2 * _RING + 1, mode="reflect")[::step, ::step]
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
        d, lvl = _residual(p.x, "y")
        a, b = _fit_variance(p, d, lvl, "y")[:2]
        if a <= 0 and b <= 0:
            return _delta(shape)
        return _kernel_from_acf(_scan_acf(p, d, a, b, max_lag), radius)
    d, lvl = _residual(p.x, "hp")
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
    d = ndi.correlate(x, _HP, mode="reflect")
    if min(x.shape) > 4:
        d = d[1:-1, 1:-1]
    s = math.sqrt(_clipped_var(d))
    if kernel is not None:
        s /= math.sqrt(_hp_energy_factor(check_kernel(kernel)))
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
    d, lvl = _residual(p.x, "hp")
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
            dy, lvly = _residual(p.x, "y")
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
