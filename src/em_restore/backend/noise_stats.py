"""Robust statistics of the noise estimator: high-pass residuals, clipped variances,
the signal-level selection and binning, and robust weighted line fits.

The building blocks of :func:`.noise.estimate_noise` (stage 1: the Poisson–Gaussian
variance line; stage 2: the noise correlation).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage as ndi

from ._args import check_image

HP = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]) / 6.0
CLIP_K = 3.5
# variance of a standard normal truncated to |x| < k
CLIP_VAR = 1.0 - 2.0 * CLIP_K * math.exp(-0.5 * CLIP_K**2) / math.sqrt(2 * math.pi) / math.erf(
    CLIP_K / math.sqrt(2.0)
)
RING = 4  # half-size of the selection window (rows y±2..4, 9 columns)


# --------------------------------------------------------------------------- helpers

#: Vertical second difference / sqrt(6): unit norm, zero on anything affine along
#: y. For noise that is independent between scan lines (rows) it sees the whole
#: marginal variance, however the noise is correlated along the line.
HP_Y = np.array([[1.0], [-2.0], [1.0]]) / math.sqrt(6.0)
OPS = {"hp": HP, "y": HP_Y}
SCREEN = 3.0  # drop pixels whose 5x5 residual energy exceeds 3x the prediction


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
    return ndi.correlate(x, HP, mode="reflect")


def clipped_var(values: np.ndarray) -> float:
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
        keep = np.abs(v) < CLIP_K * s
        s_new = math.sqrt(float(np.mean(v[keep] ** 2)) / CLIP_VAR) if keep.any() else s
        done = abs(s_new - s) <= 1e-4 * s
        s = s_new
        if done:
            break
    return s * s


def hp_energy_factor(kernel: np.ndarray) -> float:
    """Var of the high-pass residual / marginal variance, for noise = white ⊛ kernel."""
    g = np.asarray(kernel, dtype=float)
    g = g / math.sqrt(float(np.sum(g * g)))
    eq = ndi.convolve(np.pad(g, 2), HP[::-1, ::-1], mode="constant")  # hp ⊛ g, full support
    return float(np.sum(eq * eq))


def selection_level(x: np.ndarray) -> np.ndarray:
    """Local level for binning: mean of rows ``y±2..4`` over 9 columns (54 pixels).

    It shares no row with the 3-row support of the residuals, so for white noise
    and for noise correlated along scan lines (line offsets, afterglow) it is
    independent of them: sorting pixels into bins by it biases neither the
    residual variance nor the abscissa (no regression dilution).
    """
    rows = ndi.uniform_filter1d(x, 2 * RING + 1, axis=1, mode="reflect")
    pad = np.pad(rows, ((RING, RING), (0, 0)), mode="reflect")
    h = x.shape[0]
    offs = [dy for dy in range(-RING, RING + 1) if abs(dy) >= 2]
    return sum(pad[RING + dy : RING + dy + h] for dy in offs) / len(offs)


def residual(x: np.ndarray, op: str) -> tuple[np.ndarray, np.ndarray]:
    """High-pass residual ``d`` and the level its variance sees, ``x ⊛ op²``.

    The weights ``op²`` sum to 1, so ``E[var(d) | bin] = a E[lvl | bin] + b`` holds
    exactly for a linear variance function, whatever the curvature of the signal.
    """
    k = OPS[op]
    return ndi.correlate(x, k, mode="reflect"), ndi.correlate(x, k * k, mode="reflect")


def binned(level_sel, level_abs, values, n_bins):
    """Equal-count bins of ``level_sel``; per bin mean(level_abs), clipped var(values), n."""
    order = np.argsort(level_sel, kind="stable")
    chunks = np.array_split(order, n_bins)
    lv, var, n = [], [], []
    for idx in chunks:
        if idx.size < 50:
            continue
        lv.append(float(np.mean(level_abs[idx])))
        var.append(clipped_var(values[idx]))
        n.append(idx.size)
    return np.array(lv), np.array(var), np.array(n, dtype=float)


def wls(x, y, w, nonneg_slope):
    sw = float(np.sum(w))
    xm, ym = float(np.sum(w * x)) / sw, float(np.sum(w * y)) / sw
    sxx = float(np.sum(w * (x - xm) ** 2))
    a = float(np.sum(w * (x - xm) * (y - ym))) / sxx if sxx > 0 else 0.0
    if nonneg_slope and a < 0:
        a = 0.0
    return a, ym - a * xm


def robust_linear_fit(x, y, n_eff):
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
        a_new, b_new = wls(x, y, tukey / sd**2, True)
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


def half_sample_mode(v: np.ndarray) -> float:
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
