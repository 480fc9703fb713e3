"""Blur-kernel estimation: blind multi-scale estimation and the fit to a sharp reference.

:func:`estimate_kernel` / :func:`iter_estimate_kernel` find a free-form kernel from
one (denoised) frame; :func:`fit_kernel` fits it to a registered sharp reference
(no latent image); :func:`kernel_error` compares two kernels up to a shift. The
pipeline that calls them is :mod:`em_restore.backend.deconvolve`.

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
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Generator
from typing import Any

import numpy as np
import scipy.fft as sfft
import scipy.linalg
import scipy.ndimage as ndi

from . import _threads
from . import psf as _psf
from ._args import check_int, check_real
from ._progress import Progress, drain
from .solvers import FFT_WORKERS, check_frame, check_psf, fast_pads, taper_pad

__all__ = [
    "center_kernel",
    "default_kernel_size",
    "estimate_kernel",
    "fit_kernel",
    "iter_estimate_kernel",
    "kernel_error",
]

_THRESHOLD = 0.1  # kernel values below this fraction of the peak are set to 0
_BETA_MAX, _BETA_RATE = 1e5, 2.0  # half-quadratic splitting: penalty schedule
# Measured on bench_deconvolve's 27 blurs (issue 34): rate 2.83 was 15 % faster at 1024²
# but raised the kernel error 0.561 → 0.594 and lost 0.10 dB on disks; warm-starting each
# round's latent from the previous one (at β = 1 or 100) was 29 % faster but lost 1.8 dB on
# motion blurs. Both stay off.
# With 3 rounds at the finest scale (below), stopping at β = 2e4 or 1e4 instead of 1e5 was
# 5 % faster at 1024² but lost 0.16 / 0.17 dB of blind PSNR (disks 0.46 / 0.24 dB): off.
#: The FINE_SCALES finest scales (most of the cost: the finest holds about half of all
#: the pixels of the pyramid) run FINE_ROUNDS rounds, the coarser ones ``iterations``.
#: bench_deconvolve.py's 27 images, same run (issue 34): the finest at 3 rounds (1, 3)
#: gave blind 24.92 → 25.07 dB, gap to true-kernel RL 1.24 → 1.09 dB, kernel error
#: 0.632 → 0.569 (disks 25.19 → 24.88 dB, Gaussians 24.82 → 25.42, motion 24.74 →
#: 24.89), 15 % faster at 1024²; the two finest at 3 (2, 3): 24.87 dB, gap 1.29 dB,
#: 23 % faster; one round at the two finest (2, 1): 2.2× faster but −0.44 dB on disks.
#: Frames under FINE_MIN_PIXELS keep every round: they are quick, and on a 128² window
#: three rounds widened a 1 px Gaussian's estimate from 1.50 to 1.76 px.
FINE_SCALES, FINE_ROUNDS, FINE_MIN_PIXELS = 1, 3, 256 * 256
# Also measured and rejected (2026-12-06, eight 1024² TEM frames, 4 specimens × Gaussian /
# disk / motion blurs at 100 and 1000 e⁻/px, classical stage 1): estimating the kernel on
# the 512² (724²) crop with the most gradient energy instead of the whole frame made the
# estimate 3-4× (about 2×) faster but the restorations lost 0.42 dB (0.15 dB) on average,
# up to 2.0 dB (0.66 dB) on one frame (whole frame: mean 30.31 dB, kernel error 0.412).
#: The latent step's inner loops are compiled (:mod:`._blind_kernels`) when numba is
#: installed; the numpy code is the reference and the fallback (set False to use it).
COMPILED = importlib.util.find_spec("numba") is not None
# Also measured and rejected (2026-12-07, bench_deconvolve's 27 images, network stage,
# same run): the kernel step's correlations in single precision on the smallest
# wrap-free FFT sides (kernel estimate 12 % faster) moved no mean kernel error by more
# than noise but flipped two estimates (vesicles, Gaussian 2 px, 1000 e⁻/px: 30.27 →
# 26.05 dB): blind mean 24.92 → 24.76 dB, gap to true-kernel RL 1.24 → 1.40 dB.
_ISLAND = 0.1  # connected parts of the kernel with less mass than this x the largest are dropped


def _kernels():
    from . import _blind_kernels

    return _blind_kernels


@functools.lru_cache(maxsize=16)
def _gradient_power(shape: tuple[int, int]) -> np.ndarray:
    """``|D̂x|² + |D̂y|²`` in float32 for an rfft2 of ``shape`` (read-only; cached per shape)."""
    dx, dy = _grad_otfs(shape)
    out = (np.abs(dx) ** 2 + np.abs(dy) ** 2).astype(np.float32)
    out.setflags(write=False)
    return out


def _grad_otfs(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    dx = np.zeros(shape)
    dx[0, 0], dx[0, -1] = -1.0, 1.0  # forward differences x[i+1] - x[i]
    dy = np.zeros(shape)
    dy[0, 0], dy[-1, 0] = -1.0, 1.0
    return sfft.rfft2(dx), sfft.rfft2(dy)


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
    a = check_psf(estimate, "estimate")
    b = check_psf(truth, "truth")
    n = max(*a.shape, *b.shape) + 4
    n += 1 - n % 2

    def embed(k: np.ndarray) -> np.ndarray:
        out = np.zeros((n, n))
        oy, ox = (n - k.shape[0]) // 2, (n - k.shape[1]) // 2
        out[oy : oy + k.shape[0], ox : ox + k.shape[1]] = k
        return center_kernel(out)

    ea, eb = embed(a), embed(b)
    return float(np.linalg.norm(ea - eb) / np.linalg.norm(eb))


# --------------------------------------------------------------------------- blind
def _l0_latent(
    y: np.ndarray, otf: np.ndarray, lam: float, spec_y: np.ndarray | None = None
) -> np.ndarray:
    """``argmin ‖k ⊛ x − y‖² + λ‖∇x‖₀`` by half-quadratic splitting (closed form per step).

    ``spec_y``: ``rfft2(y)`` when the caller has it (the rounds of a scale share it).

    The spatial and spectral steps run as compiled kernels (:mod:`._blind_kernels`,
    bit for bit the numpy steps) when numba imports (:data:`COMPILED`).
    """
    if spec_y is None:
        spec_y = sfft.rfft2(y, workers=FFT_WORKERS)
    # Single precision: the latent only guides the kernel step (solved in double), and
    # its FFTs and updates take about half the time.
    num0 = (np.conj(otf) * spec_y).astype(np.complex64)
    den0 = (np.abs(otf) ** 2).astype(np.float32)
    dden = _gradient_power(y.shape)
    x = y.astype(np.float32)
    step = _compiled_step if COMPILED else _numpy_step
    buffers: dict[str, np.ndarray] = {}
    beta = 2.0 * lam
    while beta < _BETA_MAX:
        x = step(x, num0, den0, dden, lam, beta, buffers)
        beta *= _BETA_RATE
    return x.astype(np.float64)


def _numpy_step(x, num0, den0, dden, lam, beta, buf) -> np.ndarray:
    """One half-quadratic round in numpy (the reference of :func:`_compiled_step`)."""
    if not buf:
        buf.update({n: np.empty_like(x) for n in ("gx", "gy", "div", "mag", "tmp")})
        buf["keep"] = np.empty(x.shape, bool)
        buf["inv"] = np.empty(den0.shape, np.float32)
    gx, gy, div, mag, tmp, keep, inv = (
        buf[n] for n in ("gx", "gy", "div", "mag", "tmp", "keep", "inv")
    )
    # Circular forward differences and their adjoint by slicing (no np.roll copies).
    np.subtract(x[:, 1:], x[:, :-1], out=gx[:, :-1])
    np.subtract(x[:, :1], x[:, -1:], out=gx[:, -1:])
    np.subtract(x[1:], x[:-1], out=gy[:-1])
    np.subtract(x[:1], x[-1:], out=gy[-1:])
    np.multiply(gx, gx, out=mag)
    np.multiply(gy, gy, out=tmp)
    mag += tmp
    np.greater_equal(mag, lam / beta, out=keep)
    # a real reciprocal and a multiply, not a complex division
    np.multiply(dden, beta, out=inv)
    inv += den0
    np.reciprocal(inv, out=inv)
    if not keep.any():  # nothing kept: the gradient term is 0, and so is its spectrum
        return sfft.irfft2(num0 * inv, s=x.shape, workers=FFT_WORKERS)
    np.multiply(gx, keep, out=gx)
    np.multiply(gy, keep, out=gy)
    # conj(D̂x) ĝx + conj(D̂y) ĝy is the spectrum of Dxᵀ gx + Dyᵀ gy: one FFT, not two.
    div[:, 1:] = gx[:, :-1]
    div[:, :1] = gx[:, -1:]
    div -= gx
    div[1:] += gy[:-1]
    div[:1] += gy[-1:]
    div -= gy
    num = sfft.rfft2(div, workers=FFT_WORKERS)
    num *= beta
    num += num0
    num *= inv
    return sfft.irfft2(num, s=x.shape, workers=FFT_WORKERS)


def _compiled_step(x, num0, den0, dden, lam, beta, buf) -> np.ndarray:
    """:func:`_numpy_step` by the kernels of :mod:`._blind_kernels`, rows on the shared threads."""
    kern = _kernels()
    if not buf:
        buf["div"] = np.empty_like(x)
        buf["num0"] = num0.view(np.float32).reshape(*num0.shape, 2)
    div = buf["div"]
    thr = np.float32(lam / beta)  # numpy compares float32 with a Python float in float32
    kept = sum(
        _threads.pmap(
            lambda b: kern.shrink_divergence(x, thr, div, *b), _threads.row_blocks(x.shape[0])
        )
    )
    # Nothing kept: the gradient term and its spectrum are 0 (no transform needed).
    num = np.empty_like(num0) if kept == 0 else sfft.rfft2(div, workers=FFT_WORKERS)
    spec = num.view(np.float32).reshape(*num.shape, 2)
    b32 = np.float32(beta)
    _threads.pmap(
        lambda b: kern.update_spectrum(spec, buf["num0"], den0, dden, b32, kept == 0, *b),
        _threads.row_blocks(num.shape[0]),
    )
    return sfft.irfft2(num, s=x.shape, workers=FFT_WORKERS)


def _normal_equations(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    size: int,
    margin: int | tuple[slice, slice],
    targets: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Normal equations of ``min Σ_pairs ‖g ⊛ k − b‖²`` over the interior, ``size²`` unknowns.

    Each pair is (regressor ``g``, target ``b``), same shape; only target pixels at
    least ``margin`` from the border count. Returns ``(N, c)``: ``N`` is
    ``size² × size²`` (built from FFT autocorrelations), ``c`` has ``size²`` entries;
    unknowns in row-major order of the ``size × size`` kernel. ``targets``, when
    given, keeps the masked targets' spectra for the next call with the same targets
    (the rounds of one scale share them).
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
    targets = {} if targets is None else targets
    for i, (g, b) in enumerate(pairs):  # spectra summed: one inverse FFT each for all pairs
        gm = np.zeros_like(g)
        gm[inner] = g[inner]
        if i not in targets:
            bm = np.zeros_like(b)
            bm[inner] = b[inner]
            targets[i] = sfft.rfft2(bm, shape, workers=FFT_WORKERS)
        spec_gm = sfft.rfft2(gm, shape, workers=FFT_WORKERS)
        power = power + (spec_gm.real**2 + spec_gm.imag**2)
        # (a named operand: numpy reuses a temporary for the product, which changes its
        # rounding; this keeps the estimate bit for bit that of the uncached code)
        conj_g = np.conj(sfft.rfft2(g, shape, workers=FFT_WORKERS))
        cross_power = cross_power + targets[i] * conj_g
    ac = sfft.irfft2(power, shape, workers=FFT_WORKERS)
    cc = sfft.irfft2(cross_power, shape, workers=FFT_WORKERS)
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
    x: np.ndarray,
    y: np.ndarray,
    size: int,
    gamma: float,
    margin: int | tuple[slice, slice],
    targets: dict | None = None,
) -> np.ndarray:
    """``argmin Σ_d ‖∂_d x ⊛ k − ∂_d y‖²_interior + γ‖k‖²`` (normal equations, size² unknowns).

    ``targets``: a cache of ``y``'s gradients and their spectra, shared by the calls
    with the same ``y``, ``size`` and ``margin`` (see :func:`_normal_equations`).
    """
    targets = {} if targets is None else targets
    if "dy" not in targets:
        targets["dy"] = (np.diff(y, axis=1)[:-1, :], np.diff(y, axis=0)[:, :-1])
    by_x, by_y = targets["dy"]
    pairs = [(np.diff(x, axis=1)[:-1, :], by_x), (np.diff(x, axis=0)[:, :-1], by_y)]
    normal, cross = _normal_equations(pairs, size, margin, targets)
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
    r = check_frame(reference, "reference")
    b = check_frame(blurred, "blurred")
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
        Latent/kernel rounds per scale (on frames of at least
        :data:`FINE_MIN_PIXELS`, the :data:`FINE_SCALES` finest scales run at most
        :data:`FINE_ROUNDS`).
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
    y = check_frame(image)
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
    # Fewer rounds at the finest scales only where they cost (and the data are plenty).
    fine = FINE_SCALES if y.size >= FINE_MIN_PIXELS else 0
    schedule = [
        min(iterations, FINE_ROUNDS) if i >= len(sizes) - fine else iterations
        for i in range(len(sizes))
    ]
    total = sum(schedule)
    done = 0
    k: np.ndarray | None = None
    for si, size in enumerate(sizes):
        rounds = schedule[si]
        scale = size / max_size
        ys = ndi.zoom(y, scale, order=1, grid_mode=True, mode="nearest") if scale < 1 else y
        k = _psf.gaussian_psf(0.5, size=size) if k is None else _resize_kernel(k, size)
        margin = size
        yp = taper_pad(ys, fast_pads(ys.shape, margin))
        # The data's gradients (one shorter than the frame), away from the pad.
        inner = (slice(margin, margin + ys.shape[0] - 1), slice(margin, margin + ys.shape[1] - 1))
        weight = lam
        spec_y = sfft.rfft2(yp, workers=FFT_WORKERS)  # the rounds share the data's spectra
        targets: dict = {}
        for _ in range(rounds):
            otf = _psf.psf_to_otf(k, yp.shape, real=True)
            x = _l0_latent(yp, otf, weight, spec_y)
            k = _kernel_step(x, yp, size, gamma, inner, targets)
            weight = max(weight * 0.9, 1e-4)
            done += 1
            yield Progress(done, total, f"kernel estimate, scale {size}px")
    assert k is not None
    return center_kernel(_crop_support(k))


def estimate_kernel(image, **kw) -> np.ndarray:
    """:func:`iter_estimate_kernel` run to the end (same parameters)."""
    return drain(iter_estimate_kernel(image, **kw))
