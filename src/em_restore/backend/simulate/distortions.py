"""Distortion terms of the wide simulator, one small function each.

Two kinds, and the difference matters for training targets:

* **signal** terms are deterministic given their parameters (contrast, blur,
  scan geometry, charging, non-linear response, afterglow, detector MTF,
  saturation); the target goes through them too;
* **noise / defect** terms are random or destroy information (shot, excess,
  dark, read and fast-scan noise, fixed-pattern gain, row offsets, X-rays, dead
  and black pixels, dead columns, zero lines, quantisation); the target never
  sees them.

Linear signal filters (MTF, afterglow) act on the *noisy* detected signal, so
their noise is correlated as on a real integrating camera or a slow scintillator,
while the expectation goes through the same filter. See ``docs/simulator.md``,
section "Wide simulator", for every formula and range.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> s = integrating(np.full((64, 64), 50.0), rng, excess_k=1.0)
>>> bool(abs(s.mean() / 50 - 1) < 0.02), bool(abs(s.var() / (50 * 2) - 1) < 0.1)
(True, True)
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage as ndi
import scipy.signal

__all__ = [
    "afterglow",
    "ar1_rows",
    "black_pixels",
    "charging",
    "contrast",
    "counting",
    "dead_columns",
    "dead_pixels",
    "fast_scan_noise",
    "fixed_pattern",
    "flyback_offset",
    "integrating",
    "line_jitter_shifts",
    "quantise",
    "rate_gain",
    "resample",
    "row_offset_gain",
    "scan_coordinates",
    "x_jump_shifts",
    "xray_hits",
    "zero_lines",
]

CONTRASTS = ("bright_exp", "bright_linear", "dark", "topographic", "direct")


# --------------------------------------------------------------------------- signal


def contrast(c: np.ndarray, mode: str, strength: float, background: float) -> np.ndarray:
    """Fraction of the beam reaching the detector, ``>= 0``, from a specimen ``c``.

    * ``bright_exp``: ``b = background · exp(−strength · c)`` (mass-thickness);
    * ``bright_linear``: ``b = background · max(1 − strength · c, 0)``;
    * ``dark``: ``b = background + strength · c`` (HAADF, SE yield);
    * ``topographic``: ``b = background + strength · (c + 4 |∇c|)`` (SEM edge brightening);
    * ``direct``: ``b = background · c`` (HRTEM, already an intensity).
    """
    if mode == "bright_exp":
        return background * np.exp(-strength * c)
    if mode == "bright_linear":
        return background * np.maximum(1.0 - strength * c, 0.0)
    if mode == "dark":
        return background + strength * c
    if mode == "topographic":
        gy, gx = np.gradient(c)
        return background + strength * (c + 4.0 * np.hypot(gy, gx))
    if mode == "direct":
        return background * c
    raise ValueError(f"mode must be one of {CONTRASTS}; got {mode!r}.")


def ar1_rows(rng: np.random.Generator, n: int, sigma: float, rho: float) -> np.ndarray:
    """Stationary AR(1) series of length ``n``: s.d. ``sigma``, lag-one correlation ``rho``."""
    e = rng.standard_normal(n) * sigma
    if rho <= 0:
        return e
    e[1:] *= math.sqrt(1 - rho * rho)
    return scipy.signal.lfilter([1.0], [1.0, -rho], e)


def line_jitter_shifts(rng, rows: int, sigma: float, rho: float) -> np.ndarray:
    """Per-row x shifts (px) of line jitter: AR(1) down the rows."""
    return ar1_rows(rng, rows, sigma, rho)


def x_jump_shifts(rng, rows: int, n_jumps: int, amplitude: float) -> np.ndarray:
    """Per-row x shifts (px) of scan x-jumps: at ``n_jumps`` random rows the scan steps
    sideways by ``±U(0.3, 1) · amplitude``, either for good (a step) or for that row only
    (a glitch), with equal probability."""
    out = np.zeros(rows)
    for r in rng.integers(1, rows, n_jumps):
        jump = rng.choice([-1, 1]) * rng.uniform(0.3, 1.0) * amplitude
        if rng.random() < 0.5:
            out[r:] += jump
        else:
            out[r] += jump
    return out


def flyback_offset(cols: int, amplitude: float, length: float) -> np.ndarray:
    """x error (px) along a row after flyback: the beam lags by ``amplitude · exp(−x / length)``."""
    return -amplitude * np.exp(-np.arange(cols) / length)


def scan_coordinates(
    shape, *, scale=(1.0, 1.0), drift=(0.0, 0.0), bow=0.0, row_shifts=None, flyback=None
) -> tuple[np.ndarray, np.ndarray]:
    """Specimen coordinates sampled by each pixel of a raster scan.

    ``y(r) = c_y + s_y (r − c_y) + v_y r + q r² / H``, ``x(r, j) = c_x + s_x (j − c_x) +
    v_x r + d_r + f_j``: scan scaling ``s``, slow-scan drift ``v`` (px per row),
    accelerating drift ``q`` (``bow``), per-row shifts ``d_r`` (jitter, x-jumps) and the
    flyback error ``f_j``; ``c`` is the field centre.
    """
    h, w = shape
    r = np.arange(h, dtype=float)
    j = np.arange(w, dtype=float)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y = cy + scale[0] * (r - cy) + drift[0] * (r - cy) + bow * (r - cy) ** 2 / h
    x_row = drift[1] * (r - cy) + (0.0 if row_shifts is None else row_shifts)
    x_col = cx + scale[1] * (j - cx) + (0.0 if flyback is None else flyback)
    return np.broadcast_to(y[:, None], shape), x_row[:, None] + x_col[None, :]


def resample(image: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """``image`` at coordinates ``(yy, xx)``, bilinear, mirrored beyond the edges."""
    return ndi.map_coordinates(image, [yy, xx], order=1, mode="mirror")


def charging(
    b: np.ndarray, *, threshold: float, strength: float, tau_x: float, tau_y: float, sign: float
) -> np.ndarray:
    """SEM charging streaks: charge ``q = max(b − threshold, 0)`` builds up on bright
    features and leaks along the scan, ``s = q ⊛ exp(−x/τ_x)`` causally along each row,
    then ``⊛ exp(−y/τ_y)`` down the rows; ``b' = max(b + sign · strength · s, 0)``."""
    q = np.maximum(b - threshold, 0.0)
    a = math.exp(-1.0 / tau_x)
    s = scipy.signal.lfilter([1.0 - a], [1.0, -a], q, axis=1)
    if tau_y > 0:
        ay = math.exp(-1.0 / tau_y)
        s = scipy.signal.lfilter([1.0 - ay], [1.0, -ay], s, axis=0)
    return np.maximum(b + sign * strength * s, 0.0)


def rate_gain(lam: np.ndarray, kind: str, scale: float, gamma: float = 1.0) -> np.ndarray:
    """Non-linear detector response as a gain that depends on the *mean* rate ``λ``.

    ``f(λ) = λ r(λ)``: ``"saturating"`` ``r = 1 / (1 + λ / scale)`` (PMT droop,
    counting coincidence loss); ``"power"`` ``r = (max(λ, 10⁻³ scale) / scale)^(γ−1)``.
    Multiplying the detected counts by ``r(λ)`` keeps ``E[out] = f(λ)`` exactly.
    """
    if kind == "saturating":
        return 1.0 / (1.0 + lam / scale)
    return (np.maximum(lam, 1e-3 * scale) / scale) ** (gamma - 1.0)


def afterglow(signal: np.ndarray, fraction: float, tau_px: float) -> np.ndarray:
    """Detector afterglow along the raster: ``out = (1 − f) s + f · (s ⊛ (1−α) αⁿ)``,
    ``α = exp(−1/τ)``, run in scan order (the tail carries over from a row's end into
    the next row's start). DC gain 1; a step decays as ``f exp(−n/τ)``."""
    a = math.exp(-1.0 / tau_px)
    flat = signal.ravel()
    tail = scipy.signal.lfilter([1.0 - a], [1.0, -a], flat, zi=[a * flat[0]])[0]
    return ((1.0 - fraction) * flat + fraction * tail).reshape(signal.shape)


# --------------------------------------------------------------------------- noise


def counting(lam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counting detector: ``n ~ Poisson(λ)``, mean = variance = ``λ``."""
    return rng.poisson(lam).astype(np.float64)


def integrating(lam: np.ndarray, rng: np.random.Generator, excess_k: float) -> np.ndarray:
    """Integrating detector (scintillator, PMT): ``n ~ Poisson(λ)``, then each electron's
    signal is Gamma-distributed, ``s ~ Gamma(k n, 1/k)``: mean ``λ``, variance
    ``λ (1 + 1/k)`` (excess noise factor ``1 + 1/k``)."""
    n = rng.poisson(lam)
    return rng.gamma(excess_k * n, 1.0 / excess_k)


def fixed_pattern(rng, shape, pixel_sigma: float, column_sigma: float) -> np.ndarray:
    """Fixed-pattern gain map ``(1 + σ_p ε_ij)(1 + σ_c ε_j)``, mean 1 (flat-field error)."""
    pix = 1.0 + pixel_sigma * rng.standard_normal(shape)
    col = 1.0 + column_sigma * rng.standard_normal(shape[1])
    return np.maximum(pix * col[None, :], 0.0)


def fast_scan_noise(rng, shape, sigma: float, rho: float, hum: float, hum_period: float):
    """Amplifier noise in scan order: AR(1) along the raster (s.d. ``sigma``, lag-one
    correlation ``rho``: band-limited) plus mains hum ``hum · sin(2π t / T + φ)``."""
    h, w = shape
    noise = ar1_rows(rng, h * w, sigma, rho)
    if hum > 0:
        t = np.arange(h * w) * 1.0
        noise += hum * np.sin(2 * math.pi * t / hum_period + rng.uniform(0, 2 * math.pi))
    return noise.reshape(shape)


def row_offset_gain(a, rng, baseline, gain_sigma, offset_sigma, rho) -> np.ndarray:
    """Row-to-row gain and offset: ``out_r = (1 + γ_r)(a_r − baseline) + baseline + δ_r``,
    ``γ`` and ``δ`` AR(1) down the rows (s.d. ``gain_sigma``, ``offset_sigma``)."""
    h = a.shape[0]
    g = 1.0 + ar1_rows(rng, h, gain_sigma, rho)
    d = ar1_rows(rng, h, offset_sigma, rho)
    return g[:, None] * (a - baseline) + baseline + d[:, None]


def xray_hits(a, rng, rate: float, amplitude: float) -> np.ndarray:
    """X-ray hits: ``Poisson(rate · H W)`` events, each ``amplitude · U(0.5, 2)`` with a
    1–3 px tail in a random direction, halving per pixel."""
    h, w = a.shape
    out = a.copy()
    n = rng.poisson(rate * h * w)
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    amp = amplitude * rng.uniform(0.5, 2.0, n)
    dirs = np.array([(0, 1), (1, 0), (1, 1), (1, -1), (0, -1), (-1, 0), (-1, -1), (-1, 1)])
    d = dirs[rng.integers(0, 8, n)]
    tail = rng.integers(0, 4, n)
    for k in range(4):
        sel = tail >= k
        yy, xx = ys[sel] + k * d[sel, 0], xs[sel] + k * d[sel, 1]
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        np.add.at(out, (yy[ok], xx[ok]), amp[sel][ok] * 0.5**k)
    return out


def dead_pixels(a, rng, fraction: float, value: float) -> np.ndarray:
    """A fraction of pixels stuck at ``value`` (dead: 0 or bias; hot: the top)."""
    out = a.copy()
    out.ravel()[rng.random(a.size) < fraction] = value
    return out


def dead_columns(a, rng, n: int, value: float) -> np.ndarray:
    """``n`` columns stuck at ``value``, each from a random row to the bottom or whole."""
    out = a.copy()
    h, w = a.shape
    for col in rng.integers(0, w, n):
        start = int(rng.integers(0, h)) if rng.random() < 0.5 else 0
        out[start:, col] = value
    return out


def black_pixels(a, rng, fraction: float) -> np.ndarray:
    """Isolated pixels read as 0 (dropped samples of a scanning detector)."""
    return dead_pixels(a, rng, fraction, 0.0)


def zero_lines(a, rng, n: int) -> np.ndarray:
    """``n`` scan lines lost: whole rows, or a row from a random pixel onwards, read 0."""
    out = a.copy()
    h, w = a.shape
    for row in rng.integers(0, h, n):
        start = int(rng.integers(0, w)) if rng.random() < 0.5 else 0
        out[row, start:] = 0.0
    return out


def quantise(a: np.ndarray, step: float) -> np.ndarray:
    """ADC quantisation to multiples of ``step`` ADU (nearest)."""
    return step * np.rint(a / step)
