"""Deconvolution: non-blind Wiener and Richardson–Lucy, blind kernel estimation, the pipeline.

The public facade for the widget, the CLI and scripts (the liquid-cell TEM
two-stage pipeline: *denoise, then estimate the blur kernel and remove it*):

* :func:`plan_deconvolve` / :func:`iter_plan_deconvolve` look at **one** 2-D frame:
  stage 1 denoises it (by default the bundled denoising network,
  :func:`em_restore.backend.models.inference.plan_model`; or the automatic classical
  filters, :func:`em_restore.backend.denoise.iter_plan_denoise`), stage 2 estimates
  the kernel from the denoised frame
  (:func:`iter_estimate_kernel`; or takes a given kernel) and chooses the solver's
  regularisation. The result is a :class:`DeconvPlan`: small, JSON-serialisable
  (:meth:`DeconvPlan.to_metadata`), the kernel(s) included.
* :func:`iter_deconvolve` applies a plan to an image or a stack, frame by frame;
  :func:`deconvolve` does both in one call.
* The solvers are usable alone: :func:`wiener`, :func:`richardson_lucy` /
  :func:`iter_richardson_lucy` (optionally TV-regularised and accelerated),
  :func:`estimate_kernel` / :func:`iter_estimate_kernel`, and :func:`fit_kernel`
  (the kernel measured from a registered sharp reference, no latent image).

Kernels come from :mod:`em_restore.backend.psf` (forward operators, separate from
the solvers here); :func:`em_restore.backend.psf.parse_psf` reads the CLI's specs.

Boundaries and memory
---------------------
Every solver works on the frame padded by reflection and tapered to its mean over
the pad (:func:`periodic_pad`), so the circular FFT convolution has no seam at the
border and no wrap-around of the opposite edge. Memory is a few copies of the
padded frame; nothing grows with the kernel or the number of iterations (the
kernel estimate's normal equations are ``size² × size²``, independent of the
image).

Blind kernel estimation
-----------------------
Multi-scale alternating minimisation in the gradient domain (after Xu, Zheng & Jia
2013 and Pan et al. 2014), on the *denoised* frame:

* a pyramid from a 5 px kernel up to the full kernel canvas, scale factor √2;
* at each scale, a few rounds of: the sharp latent image
  ``x = argmin ‖k ⊛ x − y‖² + λ ‖∇x‖₀`` (half-quadratic splitting, closed form in
  Fourier), then the kernel ``k = argmin Σ ‖∂x ⊛ k − ∂y‖² + γ ‖k‖²`` over the
  interior (normal equations ``size² × size²`` built from FFT correlations), made
  nonnegative, thresholded at 10 % of its peak, stripped of small islands, and
  normalised to sum 1; ``λ`` decreases from round to round;
* the L0 gradient prior favours sharp latent images (the no-blur solution
  ``k = δ`` explains the data only with a noisy, dense-gradient ``x``, which it
  penalises), and the L2 energy prior ``γ ‖k‖²`` favours spread kernels: together
  they keep the kernel from collapsing to a delta on noisy data;
* the kernel's size is found by the estimate itself: the canvas (``max_size``,
  default ``min(31, short side / 8)``) bounds it, the thresholded support sets it,
  and the result is cropped to that support and centred on its centre of mass
  (sub-pixel), so the restored image is not shifted.

Measured limits are in ``docs/deconvolve.md`` and ``benchmarks/README.md``.

Richardson–Lucy
---------------
``x ← x · Kᵀ(y / K x) / (1 − τ div(∇x / |∇x|))`` (Dey et al. 2006 for the TV term),
with Biggs–Andrews vector extrapolation (``accelerate=True``). Data are shifted to
be positive (a constant passes through a kernel that sums to 1). Iterations stop
automatically when the relative change of the estimate falls below ``tol``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft as sfft
import scipy.linalg
import scipy.ndimage as ndi

from . import psf as _psf
from ._args import check_choice, check_image, check_int, check_real, short
from ._progress import Progress, drain, relay
from .denoise import DenoisePlan, _check_layout, apply_plan, iter_plan_denoise

__all__ = [
    "SOLVERS",
    "DeconvPlan",
    "apply_deconv_plan",
    "deconvolve",
    "deconvolve_lazy",
    "estimate_kernel",
    "fit_kernel",
    "iter_apply_deconv_plan",
    "iter_deconvolve",
    "iter_estimate_kernel",
    "iter_plan_deconvolve",
    "iter_richardson_lucy",
    "kernel_error",
    "periodic_pad",
    "plan_deconvolve",
    "richardson_lucy",
    "wiener",
]

SOLVERS = ("rl", "wiener")
#: TV weight of Richardson–Lucy chosen by the plan (dimensionless: RL-TV's weight
#: does not depend on the intensity scale). Measured on the simulated set
#: (denoised TEM, 10 and 1000 e⁻/px, true kernels): 0.001–0.003 give the best
#: mean PSNR (+1.3 to +1.5 dB over the denoised input); 0 amplifies noise, 0.01
#: flattens texture.
DEFAULT_TV = 0.002
#: Stop Richardson–Lucy when ‖x_k+1 − x_k‖ / ‖x_k‖ falls below this.
DEFAULT_TOL = 2e-3
DEFAULT_MAX_ITER = 150
_MIN_SIDE = 16
_THRESHOLD = 0.1  # kernel values below this fraction of the peak are set to 0
_ISLAND = 0.1  # connected parts of the kernel with less mass than this x the largest are dropped


# --------------------------------------------------------------------------- helpers
def periodic_pad(image: np.ndarray, margin: int) -> np.ndarray:
    """Pad by reflection and taper the pad to the frame's mean (periodic-smooth for FFTs).

    Parameters
    ----------
    image : (rows, cols) ndarray
    margin : int
        Pad width on every side (``>= 1``).

    Returns
    -------
    (rows + 2 margin, cols + 2 margin) float64 ndarray whose opposite edges both
    equal the frame's mean, so circular convolution has no seam; the frame is
    unchanged in the middle.
    """
    m = check_int(margin, "margin", low=1)
    frame = check_image(image, "image", max_ndim=2)
    return _taper_pad(frame, ((m, m), (m, m)))


def _taper_pad(frame: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """:func:`periodic_pad` with per-side widths; the taper is the narrower side's width."""
    padded = np.pad(frame, pads, mode="symmetric")
    c = float(np.mean(frame))

    def ramp(n: int, m: int) -> np.ndarray:
        d = np.minimum(np.arange(n), np.arange(n)[::-1]) + 0.5
        return np.sin(0.5 * np.pi * np.clip(d / m, 0.0, 1.0)) ** 2

    w = np.outer(ramp(padded.shape[0], min(pads[0])), ramp(padded.shape[1], min(pads[1])))
    return c + w * (padded - c)


def _fast_pads(shape: tuple[int, ...], margin: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Pads of at least ``margin`` whose padded sides are fast FFT lengths (2, 3, 5-smooth).

    An FFT of a side with a large prime factor (1024 + 2·31 = 2·3·181) takes several
    times longer than one of the next 5-smooth length; the extra pixels go after
    the frame.
    """
    n0, n1 = shape[-2:]
    e0 = sfft.next_fast_len(n0 + 2 * margin, real=True) - n0 - 2 * margin
    e1 = sfft.next_fast_len(n1 + 2 * margin, real=True) - n1 - 2 * margin
    return (margin, margin + e0), (margin, margin + e1)


def _check_psf(psf: Any, name: str = "psf") -> np.ndarray:
    k = check_image(psf, name, min_ndim=2, max_ndim=2)
    if k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError(
            f"{name} must have odd sides so it has a central pixel; got shape {k.shape}. "
            "Pad it with a row/column of zeros."
        )
    if k.min() < 0 or k.sum() <= 0:
        raise ValueError(
            f"{name} must be nonnegative with a positive sum; got min {k.min():g}, sum "
            f"{k.sum():g}. Pass a blur kernel (e.g. psf.gaussian_psf(2.0))."
        )
    return k / k.sum()


def _frame(image: Any, name: str = "image") -> np.ndarray:
    arr = image if isinstance(image, np.ndarray) else np.asarray(image)
    _check_layout(arr.shape, name, stack=False)
    return check_image(arr, name, max_ndim=2, min_size=_MIN_SIDE)


def _grad_otfs(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    dx = np.zeros(shape)
    dx[0, 0], dx[0, -1] = -1.0, 1.0  # forward differences x[i+1] - x[i]
    dy = np.zeros(shape)
    dy[0, 0], dy[-1, 0] = -1.0, 1.0
    return sfft.rfft2(dx), sfft.rfft2(dy)


def _noise_sd(image: np.ndarray) -> float:
    """Robust s.d. of white noise (MAD of the normalised Laplacian-like residual)."""
    r = (4 * image[1:-1, 1:-1] - image[:-2, 1:-1] - image[2:, 1:-1] - image[1:-1, :-2]) - image[
        1:-1, 2:
    ]
    return float(1.4826 * np.median(np.abs(r - np.median(r))) / math.sqrt(20.0))


def center_kernel(k: np.ndarray) -> np.ndarray:
    """Shift a kernel (bilinear, sub-pixel) so its centre of mass is its central pixel."""
    k = np.asarray(k, dtype=np.float64)
    yy, xx = np.indices(k.shape)
    total = k.sum()
    cy, cx = (k * yy).sum() / total, (k * xx).sum() / total
    out = ndi.shift(k, (k.shape[0] // 2 - cy, k.shape[1] // 2 - cx), order=1, mode="constant")
    out = np.maximum(out, 0)
    return out / out.sum()


def kernel_error(estimate, truth) -> float:
    """Normalised L2 error ``‖k̂ − k‖ / ‖k‖`` after centring both on their centre of mass.

    Both kernels are embedded in a common canvas and shifted (sub-pixel) so their
    centres of mass coincide: blind deconvolution cannot tell a shifted kernel from
    a shifted image, so the shift is not an error.
    """
    a = _check_psf(estimate, "estimate")
    b = _check_psf(truth, "truth")
    n = max(*a.shape, *b.shape) + 4
    n += 1 - n % 2

    def embed(k: np.ndarray) -> np.ndarray:
        out = np.zeros((n, n))
        oy, ox = (n - k.shape[0]) // 2, (n - k.shape[1]) // 2
        out[oy : oy + k.shape[0], ox : ox + k.shape[1]] = k
        return center_kernel(out)

    ea, eb = embed(a), embed(b)
    return float(np.linalg.norm(ea - eb) / np.linalg.norm(eb))


# --------------------------------------------------------------------------- Wiener
def wiener(image, psf, *, balance: float | None = None) -> np.ndarray:
    """Wiener–Tikhonov deconvolution with a Laplacian regulariser (one FFT pass).

    ``X = conj(K) Y / (|K|² + balance |L|²)`` with ``L`` the discrete Laplacian,
    on the frame padded by :func:`periodic_pad`.

    Parameters
    ----------
    image : (rows, cols) array_like
    psf : (ky, kx) array_like
        Odd-sized nonnegative kernel (normalised here).
    balance : float, optional
        Regularisation ``> 0``. Default: automatic, ``(σ / s)²`` with ``σ`` the
        image's white-noise s.d. (robust Laplacian estimate) and ``s`` the s.d. of
        its Laplacian-filtered signal, bounded to ``[3e-3, 1]`` (below that, exact zeros
        of a motion kernel's spectrum amplify the border's inconsistency).

    Returns
    -------
    float64 ndarray of the image's shape.
    """
    y = _frame(image)
    k = _check_psf(psf)
    if balance is None:
        balance = auto_balance(y)
    balance = check_real(balance, "balance", low=0, low_open=True, hint="Use e.g. 0.01.")
    m = max(k.shape) + 8
    yp = periodic_pad(y, m)
    shape = yp.shape
    otf = _psf.psf_to_otf(k, shape, real=True)
    lap = np.zeros(shape)
    lap[0, 0] = 4.0
    lap[0, 1] = lap[1, 0] = lap[0, -1] = lap[-1, 0] = -1.0
    lap_otf = sfft.rfft2(lap)
    spec = sfft.rfft2(yp) * np.conj(otf) / (np.abs(otf) ** 2 + balance * np.abs(lap_otf) ** 2)
    out = sfft.irfft2(spec, s=shape)
    return out[m:-m, m:-m]


def auto_balance(image: np.ndarray) -> float:
    """Wiener balance from the noise-to-signal ratio of the Laplacian-filtered frame."""
    y = np.asarray(image, dtype=np.float64)
    sigma = _noise_sd(y)
    lap = ndi.laplace(y)
    signal = float(np.std(lap)) / math.sqrt(20.0)
    if signal <= 0:
        return 1.0
    return float(np.clip((sigma / signal) ** 2, 3e-3, 1.0))


# --------------------------------------------------------------------------- RL
def iter_richardson_lucy(
    image,
    psf,
    *,
    tv: float = DEFAULT_TV,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    accelerate: bool = True,
) -> Generator[Progress, None, np.ndarray]:
    """Richardson–Lucy deconvolution, optionally TV-regularised and accelerated.

    Parameters
    ----------
    image : (rows, cols) array_like
        Any real values: the data are shifted to be positive and shifted back.
    psf : (ky, kx) array_like
        Odd-sized nonnegative kernel (normalised here).
    tv : float
        Total-variation weight ``τ >= 0`` (dimensionless; 0 = plain RL).
    max_iter : int
        Iteration cap.
    tol : float
        Stop when the relative change of the estimate falls below this (``> 0``).
    accelerate : bool
        Biggs–Andrews vector extrapolation (typically 2–5× fewer iterations).

    Yields
    ------
    Progress
        After every iteration (``total = max_iter``); close the generator to stop.

    Returns
    -------
    float64 ndarray of the image's shape. The number of iterations run and the
    last relative change are in the generator's last :class:`Progress` message.
    """
    y = _frame(image)
    k = _check_psf(psf)
    tv = check_real(tv, "tv", low=0, high=0.2, hint="Use e.g. tv=0.002.")
    max_iter = check_int(max_iter, "max_iter", low=1, high=100000)
    tol = check_real(tol, "tol", low=0, low_open=True)
    span = float(np.ptp(y)) or 1.0
    shift = -min(float(y.min()), 0.0) + 0.01 * span
    m = max(k.shape) + 8
    pads = _fast_pads(y.shape, m)
    yp = _taper_pad(y + shift, pads)
    shape = yp.shape
    inner = (slice(m, m + y.shape[0]), slice(m, m + y.shape[1]))
    otf = _psf.psf_to_otf(k, shape, real=True)
    otf_adj = np.conj(otf)
    floor = 1e-6 * span
    eps = 1e-3 * span

    def conv(a: np.ndarray, f: np.ndarray) -> np.ndarray:
        return sfft.irfft2(sfft.rfft2(a) * f, s=shape)

    # Bertero–Boccacci boundary: the object extends over the pad, the data term counts the
    # observed pixels only, and the update is normalised by Kᵀ(mask).
    mask = np.zeros(shape)
    mask[inner] = 1.0
    norm = np.maximum(conv(mask, otf_adj), 1e-3)
    x = yp.copy()
    x_prev: np.ndarray | None = None
    g1: np.ndarray | None = None
    g2: np.ndarray | None = None
    for it in range(1, max_iter + 1):
        z = x
        if accelerate and g1 is not None and g2 is not None and x_prev is not None:
            a = float(np.sum(g1 * g2) / max(float(np.sum(g2 * g2)), 1e-300))
            a = min(max(a, 0.0), 0.95)
            z = np.maximum(x + a * (x - x_prev), floor)
        corr = conv(mask * yp / np.maximum(conv(z, otf), floor), otf_adj) / norm
        if tv > 0:
            gx = np.roll(z, -1, 1) - z
            gy = np.roll(z, -1, 0) - z
            mag = np.sqrt(gx * gx + gy * gy + eps * eps)
            gx /= mag
            gy /= mag
            div = gx - np.roll(gx, 1, 1) + gy - np.roll(gy, 1, 0)
            corr /= np.maximum(1.0 - tv * div, 0.2)
        x_new = np.maximum(z * corr, floor)
        g2, g1 = g1, x_new - z
        x_prev, x = x, x_new
        change = float(
            np.linalg.norm(x[inner] - x_prev[inner])
            / max(float(np.linalg.norm(x_prev[inner])), 1e-300)
        )
        yield Progress(it, max_iter, f"RL iteration {it}, change {change:.2e}")
        if change < tol:
            break
    return x[inner] - shift


def richardson_lucy(image, psf, **kw) -> np.ndarray:
    """:func:`iter_richardson_lucy` run to the end (same parameters).

    Examples
    --------
    >>> from em_restore.backend.psf import convolve, gaussian_psf
    >>> truth = np.zeros((48, 48)); truth[16:32, 16:32] = 1.0
    >>> k = gaussian_psf(1.5)
    >>> blurred = convolve(truth, k)
    >>> out = richardson_lucy(blurred, k, tv=0.0, max_iter=200, tol=1e-6)
    >>> bool(np.abs(out - truth).mean() < 0.5 * np.abs(blurred - truth).mean())
    True
    """
    return drain(iter_richardson_lucy(image, psf, **kw))


# --------------------------------------------------------------------------- blind
def _l0_latent(y: np.ndarray, otf: np.ndarray, lam: float) -> np.ndarray:
    """``argmin ‖k ⊛ x − y‖² + λ‖∇x‖₀`` by half-quadratic splitting (closed form per step)."""
    shape = y.shape
    dx, dy = _grad_otfs(shape)
    # Single precision: the latent only guides the kernel step (solved in double), and
    # its FFTs and updates take about half the time.
    num0 = (np.conj(otf) * sfft.rfft2(y)).astype(np.complex64)
    den0 = (np.abs(otf) ** 2).astype(np.float32)
    dden = (np.abs(dx) ** 2 + np.abs(dy) ** 2).astype(np.float32)
    x = y.astype(np.float32)
    beta = 2.0 * lam
    while beta < 1e5:
        gx = np.roll(x, -1, axis=1) - x
        gy = np.roll(x, -1, axis=0) - x
        keep = (gx * gx + gy * gy) >= lam / beta
        gx *= keep
        gy *= keep
        # conj(D̂x) ĝx + conj(D̂y) ĝy is the spectrum of Dxᵀ gx + Dyᵀ gy: one FFT, not two.
        div = np.roll(gx, 1, axis=1) - gx + np.roll(gy, 1, axis=0) - gy
        num = num0 + beta * sfft.rfft2(div)
        x = sfft.irfft2(num / (den0 + beta * dden), s=shape)
        beta *= 2.0
    return x.astype(np.float64)


def _normal_equations(
    pairs: list[tuple[np.ndarray, np.ndarray]], size: int, margin: int | tuple[slice, slice]
) -> tuple[np.ndarray, np.ndarray]:
    """Normal equations of ``min Σ_pairs ‖g ⊛ k − b‖²`` over the interior, ``size²`` unknowns.

    Each pair is (regressor ``g``, target ``b``), same shape; only target pixels at
    least ``margin`` from the border count. Returns ``(N, c)``: ``N`` is
    ``size² × size²`` (built from FFT autocorrelations), ``c`` has ``size²`` entries;
    unknowns in row-major order of the ``size × size`` kernel.
    """
    r = size // 2
    h, w = pairs[0][0].shape
    shape = (
        sfft.next_fast_len(h + 2 * size, real=True),
        sfft.next_fast_len(w + 2 * size, real=True),
    )
    if isinstance(margin, tuple):
        inner = margin
    else:
        inner = (slice(margin, h - margin), slice(margin, w - margin))
    lags = np.arange(-(size - 1), size)
    offs = np.arange(-r, r + 1)
    power = cross_power = 0.0
    for g, b in pairs:  # the pairs' spectra are summed: one inverse FFT each for all pairs
        gm = np.zeros_like(g)
        gm[inner] = g[inner]
        bm = np.zeros_like(b)
        bm[inner] = b[inner]
        spec_gm = sfft.rfft2(gm, shape)
        power = power + (spec_gm.real**2 + spec_gm.imag**2)
        cross_power = cross_power + sfft.rfft2(bm, shape) * np.conj(sfft.rfft2(g, shape))
    ac = sfft.irfft2(power, shape)
    cc = sfft.irfft2(cross_power, shape)
    auto = ac[np.ix_(lags % shape[0], lags % shape[1])]
    cross = cc[np.ix_(offs % shape[0], offs % shape[1])]
    oy, ox = (a.ravel() for a in np.meshgrid(offs, offs, indexing="ij"))
    normal = auto[(oy[None, :] - oy[:, None]) + size - 1, (ox[None, :] - ox[:, None]) + size - 1]
    return normal, cross.ravel()


def _exact_normal_equations(
    g: np.ndarray, b: np.ndarray, size: int, margin: int
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`_normal_equations` for one pair, without the Toeplitz approximation.

    ``N_ij = Σ_{p ∈ interior} g(p − i) g(p − j)`` exactly (one FFT correlation per
    kernel pixel ``i``; a few seconds for a 31² kernel on a 256² frame), where
    :func:`_normal_equations` uses the autocorrelation of the interior-masked ``g``,
    which miscounts the pairs near the border of the interior.
    """
    r = size // 2
    if margin < r:
        raise ValueError(f"margin {margin} < kernel radius {r}")
    h, w = g.shape
    shape = (
        sfft.next_fast_len(h + 2 * size, real=True),
        sfft.next_fast_len(w + 2 * size, real=True),
    )
    offs = np.arange(-r, r + 1)
    spec_g = np.conj(sfft.rfft2(g, shape))
    bm = np.zeros_like(b)
    bm[margin : h - margin, margin : w - margin] = b[margin : h - margin, margin : w - margin]
    cc = sfft.irfft2(sfft.rfft2(bm, shape) * spec_g, shape)
    cross = cc[np.ix_(offs % shape[0], offs % shape[1])].ravel()
    normal = np.empty((size * size, size * size))
    ys, xs = slice(margin, h - margin), slice(margin, w - margin)
    u = np.zeros((size, h, w))
    for iy in range(size):
        dy = offs[iy]
        u[:] = 0.0
        for ix, dx in enumerate(offs):  # u_i(p) = g(p - i) on the interior
            u[ix, ys, xs] = g[margin - dy : h - margin - dy, margin - dx : w - margin - dx]
        corr = sfft.irfft2(sfft.rfft2(u, shape) * spec_g, shape)
        rows = corr[:, offs[:, None] % shape[0], offs[None, :] % shape[1]]
        normal[iy * size : (iy + 1) * size] = rows.reshape(size, -1)
    return normal, cross


def _add_ridge(normal: np.ndarray, gamma: float) -> np.ndarray:
    """``N + γ · mean(diag N) · I`` (the kernel's L2 prior, relative to the data)."""
    ridge = gamma * float(np.trace(normal)) / normal.shape[0] + 1e-12
    normal[np.diag_indices_from(normal)] += ridge
    return normal


def _kernel_step(
    x: np.ndarray, y: np.ndarray, size: int, gamma: float, margin: int | tuple[slice, slice]
) -> np.ndarray:
    """``argmin Σ_d ‖∂_d x ⊛ k − ∂_d y‖²_interior + γ‖k‖²`` (normal equations, size² unknowns)."""
    pairs = [
        (np.diff(x, axis=1)[:-1, :], np.diff(y, axis=1)[:-1, :]),
        (np.diff(x, axis=0)[:, :-1], np.diff(y, axis=0)[:, :-1]),
    ]
    normal, cross = _normal_equations(pairs, size, margin)
    k = scipy.linalg.solve(_add_ridge(normal, gamma), cross, assume_a="pos")
    return _clean_kernel(k.reshape(size, size))


def _nonnegative_quadratic(normal: np.ndarray, cross: np.ndarray, iterations: int) -> np.ndarray:
    """``argmin_{k ≥ 0} ½ kᵀNk − cᵀk`` by accelerated projected gradient (FISTA)."""
    step = 1.0 / float(scipy.linalg.eigvalsh(normal, subset_by_index=[normal.shape[0] - 1] * 2)[0])
    k = np.maximum(scipy.linalg.solve(normal, cross, assume_a="pos"), 0.0)  # warm start
    z = k.copy()
    t = 1.0
    for _ in range(iterations):
        k_next = np.maximum(z - step * (normal @ z - cross), 0.0)
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        z = k_next + ((t - 1.0) / t_next) * (k_next - k)
        k, t = k_next, t_next
    return k


def _check_canvas(size: Any, name: str, shape: tuple[int, ...]) -> int:
    """A kernel canvas side for a frame: odd, 3–101, at most half the short side (None: default)."""
    if size is None:
        return default_kernel_size(shape)
    size = check_int(size, name, low=3, high=101, hint=f"Use e.g. {name}=31.")
    if size % 2 == 0:
        raise ValueError(f"{name} must be odd; got {size}. Use {size + 1}.")
    half = min(shape) // 2
    if size > half:
        raise ValueError(
            f"{name}={size} is too large for a {shape[0]}x{shape[1]} frame; "
            f"use {name} <= {half - (1 - half % 2)}."
        )
    return size


def fit_kernel(
    reference, blurred, *, size: int | None = None, gamma: float = 0.1, iterations: int = 500
) -> np.ndarray:
    """The kernel that blurs a sharp ``reference`` into a registered ``blurred`` frame.

    The non-blind counterpart of :func:`estimate_kernel`: with a sharp view of the
    same field (an in-focus or high-dose reference of a calibration specimen, or a
    simulation's ground truth), the kernel is fitted directly, without a latent
    image: ``argmin_{k ≥ 0} ‖k ⊛ r − b‖² + γ·mean(diag)·‖k‖²`` over the interior, in
    intensity (both frames mean-removed and scaled by the reference's 0.1–99.9 %
    range, the reference's mean removed from both), solved with the nonnegativity
    constraint; then thresholded at 10 % of
    its peak, stripped of small islands, cropped to its support and centred like
    :func:`estimate_kernel`'s result. The noise of ``blurred`` only adds variance
    (no denoising, no bias), so ``bench_deconvolve.py`` uses it with the true
    specimen as the *oracle*: the best free-form kernel the noisy frame supports.

    Parameters
    ----------
    reference, blurred : (rows, cols) array_like
        Same shape, registered (a constant shift only moves the kernel, which is
        re-centred), in the same intensity units.
    size : int, optional
        Odd side of the kernel canvas; default :func:`default_kernel_size`.
    gamma : float
        Weight of the L2 prior, relative to the mean diagonal of the normal equations.
        The default suits noisy frames (the simulated set of ``bench_deconvolve``);
        for a nearly noise-free pair use ``1e-3``: smooth specimens make the fit
        ill-conditioned, and a large weight then spreads the kernel.
    iterations : int
        Projected-gradient iterations of the nonnegative solve.

    Returns
    -------
    psf : (n, n) float64 ndarray
        Nonnegative, sums to 1, odd ``n <= size``, centre of mass at the centre.

    Examples
    --------
    >>> from em_restore.backend.psf import convolve, motion_psf
    >>> sharp = np.random.default_rng(0).random((96, 96))
    >>> k = motion_psf(7, 30)
    >>> bool(kernel_error(fit_kernel(sharp, convolve(sharp, k), size=11, gamma=1e-3), k) < 0.1)
    True
    """
    r = _frame(reference, "reference")
    b = _frame(blurred, "blurred")
    if r.shape != b.shape:
        raise ValueError(
            f"reference {r.shape[0]}x{r.shape[1]} and blurred {b.shape[0]}x{b.shape[1]} "
            "differ in shape; crop both to the same registered field."
        )
    size = _check_canvas(size, "size", r.shape)
    gamma = check_real(gamma, "gamma", low=0)
    iterations = check_int(iterations, "iterations", low=1, high=100_000)
    lo, hi = np.percentile(r, [0.1, 99.9])
    if hi <= lo:
        raise ValueError("reference is flat: it carries no structure to fit a kernel to.")
    # One offset for both: a kernel that sums to 1 passes a constant unchanged.
    mean = r.mean()
    r = (r - mean) / (hi - lo)
    b = (b - mean) / (hi - lo)
    normal, cross = _exact_normal_equations(r, b, size, size // 2)
    k = _nonnegative_quadratic(_add_ridge(normal, gamma), cross, iterations).reshape(size, size)
    return center_kernel(_crop_support(_clean_kernel(k)))


def _clean_kernel(k: np.ndarray) -> np.ndarray:
    k = np.maximum(k, 0.0)
    if k.max() <= 0:
        out = np.zeros_like(k)
        out[k.shape[0] // 2, k.shape[1] // 2] = 1.0
        return out
    k[k < _THRESHOLD * k.max()] = 0.0
    labels, n = ndi.label(k > 0, structure=np.ones((3, 3)))
    if n > 1:
        mass = ndi.sum(k, labels, index=np.arange(1, n + 1))
        keep = np.flatnonzero(mass >= _ISLAND * mass.max()) + 1
        k = k * np.isin(labels, keep)
    return k / k.sum()


def _crop_support(k: np.ndarray) -> np.ndarray:
    """Smallest odd square around the centre that holds the whole support (1 px margin)."""
    c = k.shape[0] // 2
    ys, xs = np.nonzero(k > 0)
    if ys.size == 0:
        return np.ones((1, 1))
    half = int(max(np.abs(ys - c).max(), np.abs(xs - c).max())) + 1
    half = min(half, c)
    out = k[c - half : c + half + 1, c - half : c + half + 1]
    return out / out.sum()


def _resize_kernel(k: np.ndarray, size: int) -> np.ndarray:
    z = np.maximum(ndi.zoom(k, size / k.shape[0], order=1), 0.0)
    out = np.zeros((size, size))
    c = min(z.shape[0], size)
    o1, o2 = (size - c) // 2, (z.shape[0] - c) // 2
    out[o1 : o1 + c, o1 : o1 + c] = z[o2 : o2 + c, o2 : o2 + c]
    if out.sum() <= 0:
        out[size // 2, size // 2] = 1.0
    return out / out.sum()


def default_kernel_size(shape: tuple[int, int]) -> int:
    """The kernel canvas for a frame: ``min(31, short side / 8)``, odd, at least 5."""
    n = int(min(31, max(5, min(shape) // 8)))
    return n - (1 - n % 2)


def iter_estimate_kernel(
    image,
    *,
    max_size: int | None = None,
    iterations: int = 5,
    lam: float = 0.01,
    gamma: float = 0.02,
    max_pixels: int = 1024 * 1024,
) -> Generator[Progress, None, np.ndarray]:
    """Estimate a free-form blur kernel from one (denoised) frame; a generator.

    See the module docstring for the method.

    Parameters
    ----------
    image : (rows, cols) array_like
        A frame with little noise: the output of the denoise stage (the pipeline
        :func:`iter_plan_deconvolve` passes it). At least 16×16.
    max_size : int, optional
        Odd side of the kernel canvas (the largest blur it can find). Default
        :func:`default_kernel_size`.
    iterations : int
        Latent/kernel rounds per scale.
    lam : float
        Initial weight of the L0 gradient prior, on data scaled to [0, 1] (0.1 %
        and 99.9 % percentiles); it decreases by 10 % per round.
    gamma : float
        Weight of the kernel's L2 prior, relative to the mean diagonal of the
        normal equations.
    max_pixels : int
        Larger frames are estimated on their central crop of this many pixels.

    Yields
    ------
    Progress
        After every round of every scale.

    Returns
    -------
    psf : (n, n) float64 ndarray
        Nonnegative, sums to 1, odd size ``n <= max_size`` (the support found),
        centre of mass at the central pixel.
    """
    y = _frame(image)
    max_size = _check_canvas(max_size, "max_size", y.shape)
    iterations = check_int(iterations, "iterations", low=1, high=100)
    lam = check_real(lam, "lam", low=0, low_open=True)
    gamma = check_real(gamma, "gamma", low=0)
    side = math.isqrt(check_int(max_pixels, "max_pixels", low=64 * 64))
    if y.shape[0] * y.shape[1] > side * side:
        h, w = min(y.shape[0], side), min(y.shape[1], side)
        oy, ox = (y.shape[0] - h) // 2, (y.shape[1] - w) // 2
        y = y[oy : oy + h, ox : ox + w]
    lo, hi = np.percentile(y, [0.1, 99.9])
    if hi <= lo:
        # A flat frame carries no information about blur.
        yield Progress(1, 1, "flat frame: no blur to estimate")
        return np.ones((1, 1))
    y = (y - lo) / (hi - lo)
    sizes = [max_size]
    while sizes[-1] > 5:
        sizes.append(max(3, round(sizes[-1] / math.sqrt(2)) | 1))
    sizes = sizes[::-1]
    total = len(sizes) * iterations
    done = 0
    k: np.ndarray | None = None
    for size in sizes:
        scale = size / max_size
        ys = ndi.zoom(y, scale, order=1, grid_mode=True, mode="nearest") if scale < 1 else y
        k = _psf.gaussian_psf(0.5, size=size) if k is None else _resize_kernel(k, size)
        margin = size
        yp = _taper_pad(ys, _fast_pads(ys.shape, margin))
        # The data's gradients (one shorter than the frame), away from the pad.
        inner = (slice(margin, margin + ys.shape[0] - 1), slice(margin, margin + ys.shape[1] - 1))
        weight = lam
        for _ in range(iterations):
            otf = _psf.psf_to_otf(k, yp.shape, real=True)
            x = _l0_latent(yp, otf, weight)
            k = _kernel_step(x, yp, size, gamma, inner)
            weight = max(weight * 0.9, 1e-4)
            done += 1
            yield Progress(done, total, f"kernel estimate, scale {size}px")
    assert k is not None
    return center_kernel(_crop_support(k))


def estimate_kernel(image, **kw) -> np.ndarray:
    """:func:`iter_estimate_kernel` run to the end (same parameters)."""
    return drain(iter_estimate_kernel(image, **kw))


# --------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class DeconvPlan:
    """Everything needed to deconvolve frames as planned on one frame.

    Attributes
    ----------
    psfs : tuple of ndarray
        One kernel, or one per window (row-major over ``windows``).
    psf_source : str
        ``"blind"`` (estimated), ``"given"`` (an array) or the spec given
        (``"gaussian:2.0"``...).
    solver : {"rl", "wiener"}
    params : dict
        Solver parameters: ``tv``, ``max_iter``, ``tol``, ``accelerate`` (RL) or
        ``balance`` (Wiener).
    denoise : DenoisePlan, ModelPlan or None
        Stage 1: a filter plan, a denoising network
        (:class:`~em_restore.backend.models.inference.ModelPlan`), or ``None``
        (deconvolve the raw data).
    windows : (int, int)
        ``(1, 1)`` for one kernel over the frame; ``(ny, nx)`` for the spatially
        varying mode (overlapping windows blended smoothly).
    estimation : dict
        How the kernel was estimated (``max_size``, ``iterations``...), JSON-able.
    """

    psfs: tuple
    psf_source: str
    solver: str
    params: dict
    denoise: Any
    windows: tuple[int, int] = (1, 1)
    estimation: dict = field(default_factory=dict)

    @property
    def psf(self) -> np.ndarray:
        """The kernel (the central window's in the spatially varying mode)."""
        return self.psfs[len(self.psfs) // 2]

    def to_metadata(self) -> dict:
        """Plain JSON-able dict that :meth:`from_metadata` turns back into this plan."""
        from em_restore import __version__

        meta = {
            "solver": self.solver,
            "params": dict(self.params),
            "psf_source": self.psf_source,
            "psfs": [k.tolist() for k in self.psfs],  # full precision: exact round trip
            "windows": list(self.windows),
            "denoise": None if self.denoise is None else self.denoise.to_metadata(),
            "estimation": dict(self.estimation),
            "em_restore_version": __version__,
        }
        json.dumps(meta)
        return meta

    @classmethod
    def from_metadata(cls, meta: dict) -> DeconvPlan:
        """Rebuild a plan from :meth:`to_metadata` (e.g. a result layer's metadata)."""
        if not isinstance(meta, dict) or "psfs" not in meta or "solver" not in meta:
            raise ValueError(
                f"meta must be the dict returned by DeconvPlan.to_metadata(); got {short(meta)}."
            )
        den = meta.get("denoise")
        return cls(
            psfs=tuple(_check_psf(np.asarray(k, dtype=float)) for k in meta["psfs"]),
            psf_source=str(meta.get("psf_source", "given")),
            solver=check_choice(meta["solver"], "meta['solver']", SOLVERS),
            params=dict(meta.get("params", {})),
            denoise=None if den is None else _stage1_from_metadata(den),
            windows=tuple(int(v) for v in meta.get("windows", (1, 1))),  # type: ignore[arg-type]
            estimation=dict(meta.get("estimation", {})),
        )


def _is_model_plan(obj: Any) -> bool:
    """A :class:`~em_restore.backend.models.inference.ModelPlan` (duck-typed: no torch import)."""
    return callable(getattr(obj, "apply_frame", None)) and hasattr(obj, "model")


def _plan_stage1(x: np.ndarray, denoise: Any, modality: str | None):
    """Stage 1's plan from the ``denoise`` argument (see :func:`iter_plan_deconvolve`)."""
    if denoise is None or isinstance(denoise, DenoisePlan) or _is_model_plan(denoise):
        return denoise
    if isinstance(denoise, str) and denoise == "model":
        from .models.inference import plan_model

        yield Progress(0, 1, "loading the denoising model")
        return plan_model(None, modality=modality)
    return (yield from iter_plan_denoise(x, denoise, modality=modality))


def _apply_stage1(x: np.ndarray, plan: Any) -> np.ndarray:
    """One frame through stage 1 (a filter plan or a model), float64."""
    if plan is None:
        return x
    if isinstance(plan, DenoisePlan):
        return apply_plan(x, plan).astype(np.float64)
    return np.asarray(plan.apply_frame(x), dtype=np.float64)


def _stage1_from_metadata(meta: dict):
    """Stage 1 rebuilt from its metadata; a model must be the same weights (hash)."""
    if meta.get("method") != "model":
        return DenoisePlan.from_metadata(meta)
    from .models.inference import DEFAULT_OVERLAP, DEFAULT_TILE, ModelPlan
    from .models.store import load_model

    rec = meta.get("model") or {}
    model = load_model(rec.get("name"))
    if rec.get("sha256") and model.sha256 != rec["sha256"]:
        raise ValueError(
            f"the denoise stage used model {rec.get('name')!r} with weights "
            f"{str(rec['sha256'])[:12]}…, but the installed one is {model.sha256[:12]}…; "
            "install the version that made the result, or plan again."
        )
    plan = ModelPlan(
        model,
        modality=meta.get("modality"),
        modality_source=str(meta.get("modality_source", "")),
        tile=int(meta.get("tile", DEFAULT_TILE)),
        overlap=int(meta.get("overlap", DEFAULT_OVERLAP)),
    )
    if meta.get("noise"):  # the network's input units, as recorded
        from .noise import NoiseModel

        plan.noise = NoiseModel.from_dict(meta["noise"])
    return plan


def _window_boxes(shape: tuple[int, int], windows: tuple[int, int]) -> list[tuple[int, ...]]:
    """Overlapping windows: each grid cell grown by half a cell on every side (clipped)."""
    boxes = []
    h, w = shape
    ny, nx = windows
    ch, cw = h / ny, w / nx
    for i in range(ny):
        for j in range(nx):
            y0 = max(round((i - 0.5) * ch), 0)
            y1 = min(round((i + 1.5) * ch), h)
            x0 = max(round((j - 0.5) * cw), 0)
            x1 = min(round((j + 1.5) * cw), w)
            boxes.append((y0, y1, x0, x1))
    return boxes


def _window_weight(box: tuple[int, ...], shape: tuple[int, int]) -> np.ndarray:
    """sin² taper towards interior window edges (flat along the frame border)."""
    y0, y1, x0, x1 = box

    def ramp(a: int, b: int, n: int) -> np.ndarray:
        length = b - a
        t = np.arange(length) + 0.5
        rise = np.ones(length) if a == 0 else np.sin(0.5 * np.pi * np.clip(t / (length / 4), 0, 1))
        fall = (
            np.ones(length)
            if b == n
            else np.sin(0.5 * np.pi * np.clip((length - t) / (length / 4), 0, 1))
        )
        return (rise * fall) ** 2 + 1e-6

    return np.outer(ramp(y0, y1, shape[0]), ramp(x0, x1, shape[1]))


def _check_windows(windows: Any) -> tuple[int, int]:
    if isinstance(windows, int | np.integer):
        windows = (windows, windows)
    try:
        ny, nx = (check_int(v, "windows", low=1, high=16) for v in windows)
    except (TypeError, ValueError):
        raise ValueError(
            f"windows must be an int or a (rows, cols) pair of ints in 1..16; got "
            f"{short(windows)}. Use windows=(1, 1) for one kernel, (3, 3) for a varying one."
        ) from None
    return (ny, nx)


def iter_plan_deconvolve(
    image,
    psf: Any = None,
    *,
    solver: str = "rl",
    denoise: Any = "model",
    modality: str | None = None,
    windows: Any = (1, 1),
    max_size: int | None = None,
    tv: float | None = None,
    balance: float | None = None,
) -> Generator[Progress, None, DeconvPlan]:
    """Plan the two-stage pipeline on one frame (denoise → kernel → solver); a generator.

    Parameters
    ----------
    image : (rows, cols) array_like
        One representative frame of raw data. Never modified.
    psf : None, str or array_like
        ``None`` (default): blind, the kernel is estimated from the denoised frame.
        A spec ``"gaussian:SIGMA"``, ``"disk:RADIUS"``, ``"motion:LENGTH,ANGLE"``
        (:func:`em_restore.backend.psf.parse_psf`) or a kernel array: non-blind.
    solver : {"rl", "wiener"}
        Richardson–Lucy with TV (default; no ringing) or Wiener–Tikhonov (one pass).
    denoise : "model", "classical", a method name, a plan, or None
        Stage 1. ``"model"`` (default): the bundled denoising network for the
        modality (:func:`~em_restore.backend.models.inference.plan_model`; a
        ``ModelPlan`` may be passed instead). ``"classical"`` or a filter name:
        planned on this frame (:func:`~em_restore.backend.denoise.iter_plan_denoise`;
        a ``DenoisePlan`` may be passed). ``None``: no denoising (clean data).
        On the simulated benchmark the network gives the better kernels and
        images (``docs/deconvolve.md``).
    modality : {"tem", "stem", "sem"}, optional
        Passed to the denoise stage (TEM when not given).
    windows : int or (int, int)
        ``(1, 1)``: one kernel. ``(ny, nx)``: blind estimation per overlapping window
        (spatially varying blur), blended with a sin² taper.
    max_size : int, optional
        Kernel canvas for blind estimation (default :func:`default_kernel_size` of
        the window).
    tv, balance : float, optional
        Override the solver's automatic regularisation.

    Yields
    ------
    Progress

    Returns
    -------
    DeconvPlan
    """
    x = _frame(image)
    solver = check_choice(solver, "solver", SOLVERS)
    windows = _check_windows(windows)
    given = None
    source = "blind"
    if psf is not None:
        if isinstance(psf, str):
            source = psf
            given = _psf.parse_psf(psf)
        else:
            source = "given"
            given = _check_psf(psf)
        if windows != (1, 1):
            raise ValueError(
                "windows apply to blind estimation only; pass psf=None for a spatially "
                "varying kernel, or windows=(1, 1) with a given psf."
            )
    dplan = yield from _plan_stage1(x, denoise, modality)
    if dplan is not None:
        yield Progress(0, 1, "denoising")
    clean = _apply_stage1(x, dplan)
    estimation: dict[str, Any] = {}
    if given is not None:
        psfs: tuple = (given,)
    else:
        boxes = _window_boxes(clean.shape, windows)
        found = []
        for i, (y0, y1, x0, x1) in enumerate(boxes):
            part = clean[y0:y1, x0:x1]
            size = default_kernel_size(part.shape) if max_size is None else max_size
            where = f"window {i + 1}/{len(boxes)}: " if len(boxes) > 1 else ""
            found.append((yield from relay(iter_estimate_kernel(part, max_size=size), where)))
        psfs = tuple(found)
        estimation = {
            "max_size": max_size if max_size is not None else "auto",
            "iterations": 5,
            "lam": 0.01,
            "gamma": 0.02,
            "sizes": [int(k.shape[0]) for k in psfs],
        }
    if solver == "rl":
        params: dict[str, Any] = {
            "tv": DEFAULT_TV if tv is None else check_real(tv, "tv", low=0, high=0.2),
            "max_iter": DEFAULT_MAX_ITER,
            "tol": DEFAULT_TOL,
            "accelerate": True,
        }
    else:
        b = auto_balance(clean) if balance is None else balance
        params = {"balance": check_real(b, "balance", low=0, low_open=True)}
    return DeconvPlan(psfs, source, solver, params, dplan, windows, estimation)


def plan_deconvolve(image, psf: Any = None, **kw) -> DeconvPlan:
    """:func:`iter_plan_deconvolve` run to the end (same parameters)."""
    return drain(iter_plan_deconvolve(image, psf, **kw))


def _solve(y: np.ndarray, k: np.ndarray, plan: DeconvPlan) -> Generator[Progress, None, np.ndarray]:
    if plan.solver == "wiener":
        yield Progress(0, 1, "Wiener")
        out = wiener(y, k, balance=plan.params["balance"])
        yield Progress(1, 1, "Wiener")
        return out
    p = plan.params
    return (
        yield from iter_richardson_lucy(
            y, k, tv=p["tv"], max_iter=p["max_iter"], tol=p["tol"], accelerate=p["accelerate"]
        )
    )


def iter_apply_deconv_plan(image2d, plan: DeconvPlan) -> Generator[Progress, None, np.ndarray]:
    """Deconvolve one 2-D frame with a plan (denoise stage, then the solver); a generator.

    Returns
    -------
    float32 ndarray of the frame's shape.
    """
    if not isinstance(plan, DeconvPlan):
        raise ValueError(
            f"plan must be a DeconvPlan; got {type(plan).__name__}. "
            "Make one with plan_deconvolve(frame)."
        )
    x = _frame(image2d, "image2d")
    if plan.denoise is not None:
        yield Progress(0, 1, "denoising")
        x = _apply_stage1(x, plan.denoise)
    boxes = _window_boxes(x.shape, plan.windows)
    if len(boxes) != len(plan.psfs):
        raise ValueError(
            f"plan has {len(plan.psfs)} kernel(s) for {len(boxes)} window(s); make a new plan."
        )
    if len(boxes) == 1:
        out = yield from _solve(x, plan.psfs[0], plan)
        return out.astype(np.float32)
    acc = np.zeros_like(x)
    wsum = np.zeros_like(x)
    for i, (box, k) in enumerate(zip(boxes, plan.psfs, strict=True)):
        y0, y1, x0, x1 = box
        part = yield from relay(_solve(x[y0:y1, x0:x1], k, plan), f"window {i + 1}/{len(boxes)}: ")
        w = _window_weight(box, x.shape)
        acc[y0:y1, x0:x1] += w * part
        wsum[y0:y1, x0:x1] += w
    return (acc / wsum).astype(np.float32)


def apply_deconv_plan(image2d, plan: DeconvPlan) -> np.ndarray:
    """:func:`iter_apply_deconv_plan` run to the end."""
    return drain(iter_apply_deconv_plan(image2d, plan))


def iter_deconvolve(array, plan: DeconvPlan) -> Generator[Progress, None, np.ndarray]:
    """Apply a plan to every 2-D frame of an image or stack; a generator of :class:`Progress`.

    Parameters
    ----------
    array : (..., rows, cols) numpy or dask array
        Read one frame at a time (dask arrays stay lazy until then). Never modified.
    plan : DeconvPlan

    Yields
    ------
    Progress
        ``done`` frames of ``total``, with the solver's own progress in the message.

    Returns
    -------
    float32 ndarray of the input shape.
    """
    if not isinstance(plan, DeconvPlan):
        raise ValueError(
            f"plan must be a DeconvPlan; got {type(plan).__name__}. "
            "Make one with plan_deconvolve(frame)."
        )
    shape = tuple(int(s) for s in array.shape)
    _check_layout(shape, "array", stack=True)
    if np.dtype(array.dtype).kind not in "biuf":
        raise ValueError(
            f"array must be a real numeric array; got dtype {array.dtype}. "
            "Convert with array.astype(float)."
        )
    lead = shape[:-2]
    total = int(np.prod(lead, dtype=np.int64))
    out = np.empty(shape, dtype=np.float32)
    yield Progress(0, total, "deconvolving")
    for n, idx in enumerate(np.ndindex(*lead)):
        frame = array[idx]
        frame = np.asarray(frame.compute() if hasattr(frame, "compute") else frame)
        where = f"frame {n + 1}/{total}: " if lead else ""
        gen = iter_apply_deconv_plan(frame, plan)
        # Frame-level progress: done = frames finished, the solver's step in the message.
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                out[idx] = stop.value
                break
            yield Progress(n, total, where + p.message)
        yield Progress(n + 1, total, f"frame {n + 1}/{total} done" if lead else "done")
    return out


def deconvolve_lazy(array, plan: DeconvPlan):
    """A dask array applying ``plan`` to every frame of ``array`` when computed.

    One whole frame per chunk (the solver works on whole frames: FFTs, windows), any
    leading axes, float32; equal to :func:`iter_deconvolve`. Nothing is computed
    here, and computing it holds only the frames in flight, so a stack of any
    length is deconvolved in bounded memory (e.g. written chunk by chunk by
    :func:`em_restore.io.write_zarr`).

    Examples
    --------
    >>> import dask.array as da
    >>> plan = plan_deconvolve(np.ones((32, 32)), "gaussian:1.0", denoise=None)
    >>> lazy = deconvolve_lazy(da.ones((3, 32, 32), chunks=(1, 32, 32)), plan)
    >>> lazy.chunks[0], lazy.dtype
    ((1, 1, 1), dtype('float32'))
    """
    import dask.array as da

    if not isinstance(plan, DeconvPlan):
        raise ValueError(
            f"plan must be a DeconvPlan; got {type(plan).__name__}. "
            "Make one with plan_deconvolve(frame)."
        )
    if not isinstance(array, da.Array):
        array = da.asarray(array)
    shape = tuple(int(s) for s in array.shape)
    _check_layout(shape, "array", stack=True)
    if np.dtype(array.dtype).kind not in "biuf":
        raise ValueError(
            f"array must be a real numeric array; got dtype {array.dtype}. "
            "Convert with array.astype(float)."
        )
    array = array.rechunk((1,) * (array.ndim - 2) + (-1, -1))

    def block(data: np.ndarray) -> np.ndarray:
        out = np.empty(data.shape, dtype=np.float32)
        for idx in np.ndindex(*data.shape[:-2]):
            out[idx] = apply_deconv_plan(data[idx], plan)
        return out

    return da.map_blocks(
        block, array, dtype=np.float32, meta=np.empty((0,) * array.ndim, np.float32)
    )


def deconvolve(image, psf: Any = None, **kw) -> tuple[np.ndarray, DeconvPlan]:
    """Plan on the image (the middle frame of a stack) and deconvolve all of it.

    Parameters
    ----------
    image : (..., rows, cols) array_like or dask array
    psf : None, str or array_like
        ``None`` for blind deconvolution; see :func:`iter_plan_deconvolve`.
    **kw
        Passed to :func:`iter_plan_deconvolve`.

    Returns
    -------
    restored : float32 ndarray of the input shape
    plan : DeconvPlan (the kernel is ``plan.psf``)
    """
    shape = tuple(int(s) for s in np.shape(image)) if not hasattr(image, "chunks") else image.shape
    _check_layout(tuple(shape), "image", stack=True)
    lead = shape[:-2]
    frame = image[tuple(n // 2 for n in lead)] if lead else image
    frame = np.asarray(frame.compute() if hasattr(frame, "compute") else frame)
    plan = plan_deconvolve(frame, psf, **kw)
    return drain(iter_deconvolve(image, plan)), plan
