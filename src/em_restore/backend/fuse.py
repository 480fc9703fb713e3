"""Fusion of a registered burst window into one frame: mean, multi-frame Wiener, FBA.

The window comes aligned onto its reference frame
(:func:`em_restore.backend.register.align_window`):

* :func:`fuse_mean`: the masked mean of the aligned frames (noise down by √N, blur
  averaged);
* :func:`fuse_wiener` (the baseline that needs no training): **multi-frame
  Wiener–Tikhonov deconvolution** with each frame's motion kernel taken from the
  registration (:func:`motion_kernels`: a straight segment of the measured stage
  velocity, :func:`window_velocity`, times the exposure fraction);
* :func:`fuse_fba`: **Fourier burst accumulation** (Delbracio & Sapiro, 2015): each
  spatial frequency is a weighted mean of the frames' Fourier coefficients with
  weights ``w_k ∝ (G_σ * |F_k|)^p``: the frame least attenuated in a direction
  dominates it. Made for hand-shake, where blur directions differ between frames;
  on a moving stage they do not, and at EM doses it loses to the plain mean
  (measured: ``benchmarks/bench_burst.py``). Kept for comparison.

The burst network's fusion is :func:`em_restore.backend.models.burst.predict_burst`.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
import scipy.ndimage as ndi

from ._args import check_real
from .register import AlignedWindow

__all__ = [
    "fuse_fba",
    "fuse_mean",
    "fuse_wiener",
    "motion_kernels",
    "window_velocity",
]


def window_velocity(shifts) -> np.ndarray:
    """Stage velocity at each frame of a window, px/frame, from its registration shifts.

    Central differences inside the window, one-sided at its ends (``np.gradient``).

    Examples
    --------
    >>> window_velocity([[0, -4], [0, 0], [0, 4]]).tolist()
    [[0.0, 4.0], [0.0, 4.0], [0.0, 4.0]]
    """
    s = np.asarray(shifts, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2 or s.shape[0] < 2:
        raise ValueError(f"shifts must have shape (T >= 2, 2); got {s.shape}.")
    return np.gradient(s, axis=0)


def motion_kernels(shifts, exposure: float = 1.0) -> list[np.ndarray]:
    """Each frame's motion-blur kernel: a segment of ``exposure × velocity`` (px).

    A stream exposing each frame for ``exposure`` of its period while the stage
    moves at the registered velocity blurs it along that straight segment.
    """
    exposure = check_real(exposure, "exposure", low=0, high=1, low_open=True)
    from . import psf as _psf

    u = np.linspace(-0.5, 0.5, 65)[:, None]
    return [_psf.path_psf(u * v * exposure) for v in window_velocity(shifts)]


def fuse_wiener(
    aligned: AlignedWindow, *, exposure: float = 1.0, balance: float | None = None
) -> np.ndarray:
    """Multi-frame Wiener–Tikhonov deconvolution with the motion kernels of the registration.

    ``X = Σ_k conj(K_k) Y_k / (Σ_k |K_k|² + λ |L|²)``: the least-squares sharp
    frame explaining every aligned frame ``Y_k`` through its own straight motion
    blur ``K_k`` (:func:`motion_kernels`, from the stage velocity the registration
    measured), with a Laplacian ``L`` regulariser. ``λ = T × b`` with ``b`` the
    automatic single-image balance of the registered mean
    (:func:`~em_restore.backend.solvers.auto_balance`), so noise sets it; frames
    are extended periodically (:func:`~em_restore.backend.solvers.periodic_pad`)
    so the border does not ring. No training and no kernel estimation.

    Parameters
    ----------
    aligned : AlignedWindow
    exposure : float
        Fraction of the frame period the detector integrates, in (0, 1].
    balance : float, optional
        ``λ`` itself (> 0); default automatic as above.
    """
    from . import psf as _psf
    from .solvers import auto_balance, periodic_pad

    t = aligned.frames.shape[0]
    kernels = motion_kernels(aligned.shifts, exposure)
    margin = max(k.shape[0] for k in kernels) + 8
    padded = [periodic_pad(f, margin) for f in aligned.frames]
    shape = padded[0].shape
    if balance is None:
        balance = t * auto_balance(fuse_mean(aligned))
    balance = check_real(balance, "balance", low=0, low_open=True)
    lap = np.zeros(shape)
    lap[0, 0] = 4.0
    lap[0, 1] = lap[1, 0] = lap[0, -1] = lap[-1, 0] = -1.0
    num = np.zeros((shape[0], shape[1] // 2 + 1), dtype=np.complex128)
    den = balance * np.abs(sfft.rfft2(lap)) ** 2
    for f, k in zip(padded, kernels, strict=True):
        otf = _psf.psf_to_otf(k, shape, real=True)
        num += np.conj(otf) * sfft.rfft2(f)
        den += np.abs(otf) ** 2
    out = sfft.irfft2(num / den, s=shape)
    return out[margin:-margin, margin:-margin]


def fuse_mean(aligned: AlignedWindow) -> np.ndarray:
    """Masked mean of the aligned frames (the reference covers every pixel)."""
    m = aligned.masks
    return (aligned.frames * m).sum(axis=0) / np.maximum(m.sum(axis=0), 1)


def fuse_fba(aligned: AlignedWindow, *, p: float = 11.0, smooth: float | None = None) -> np.ndarray:
    """Fourier burst accumulation of an aligned window (Delbracio & Sapiro, 2015).

    ``out = F⁻¹[Σ_k w_k F_k]`` with ``w_k = (G_σ * |F_k|)^p / Σ_j (G_σ * |F_j|)^p``:
    per frequency, the frames whose motion blur attenuates it least dominate. The
    DC term is the plain mean, so intensities are preserved; ``p = 0`` is the mean
    and ``p → ∞`` the per-frequency maximum. Frames are extended by reflection to
    twice their size before the FFT, so the image border does not ring.

    Parameters
    ----------
    aligned : AlignedWindow
    p : float
        Weight exponent (>= 0); 11 as in the paper.
    smooth : float, optional
        Standard deviation, in frequency samples, of the Gaussian smoothing of the
        magnitudes (it averages out noise); default ``max(rows, cols) / 50``.
    """
    p = check_real(p, "p", low=0)
    x = aligned.frames
    t, h, w = x.shape
    ext = np.concatenate([x, x[:, ::-1]], axis=1)
    ext = np.concatenate([ext, ext[:, :, ::-1]], axis=2)  # even-symmetric: no edge jumps
    f = sfft.rfft2(ext, axes=(-2, -1))
    sig = max(2 * h, 2 * w) / 50.0 if smooth is None else check_real(smooth, "smooth", low=0)
    mag = np.abs(f)
    if sig > 0:
        mag = np.stack([ndi.gaussian_filter(m, sig, mode="wrap") for m in mag])
    logw = p * np.log(np.maximum(mag, 1e-30))
    logw -= logw.max(axis=0, keepdims=True)
    wts = np.exp(logw)
    wts /= wts.sum(axis=0, keepdims=True)
    wts[:, 0, 0] = 1.0 / t
    out = sfft.irfft2((wts * f).sum(axis=0), s=ext.shape[-2:], axes=(-2, -1))
    return out[:h, :w]
