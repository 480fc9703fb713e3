"""Burst deblurring of fast image streams: registration, classical fusion, the burst network.

A stream from a moving stage is cut into windows of ``frames`` consecutive frames
(``stride`` apart). Each window becomes one restored frame, **registered to the
window's middle frame** (index ``frames // 2`` of the window):

1. :func:`register_window`: sub-pixel translation of every frame onto the middle
   one. Consecutive frames are matched by normalised cross-correlation computed
   over their overlap only (zero-padded FFTs, Padfield's masked NCC, scored
   ``ncc * sqrt(overlap fraction)`` so a periodic specimen prefers the shortest
   consistent shift); the chained estimate seeds a direct match to the middle frame
   (NCC within ±3 px), refined by Gauss–Newton (Lucas–Kanade) on the overlap with
   cubic-spline interpolation. Frames are smoothed (Gaussian, 2 px then 1.5 px)
   before matching, which is what makes it work at a few e⁻/px.
2. :func:`align_window`: every frame resampled onto the middle frame's grid (cubic
   spline); the pixels it does not cover are marked in a mask and filled with the
   middle frame's values (the **common area** is the AND of the masks).
3. Fusion of the aligned window:

   * ``"mean"``: the masked mean of the aligned frames (noise down by √N, blur
     averaged);
   * ``"classical"`` (the baseline that needs no training): **multi-frame
     Wiener–Tikhonov deconvolution** with each frame's motion kernel taken from
     the registration (a straight segment of the measured stage velocity times the
     exposure fraction), :func:`fuse_wiener`;
   * ``"fba"``: **Fourier burst accumulation** (Delbracio & Sapiro, 2015): each
     spatial frequency is a weighted mean of the frames' Fourier coefficients with
     weights ``w_k ∝ (G_σ * |F_k|)^p``: the frame least attenuated in a direction
     dominates it. Made for hand-shake, where blur directions differ between
     frames; on a moving stage they do not, and at EM doses it loses to the plain
     mean (measured: ``benchmarks/bench_burst.py``). Kept for comparison;
   * ``"network"``: a burst network (:class:`~.models.nets.BurstDenseUNet`): copies
     of one shared-weight Dense U-Net, one per frame, exchanging information by
     max pooling across frames after every block, so the result does not depend on
     the frames' order and any number of frames works. Input: each aligned frame,
     its mask and its stage velocity, normalised with the middle frame's
     percentiles; output: the sharp middle frame (residual over the masked mean).

:class:`BurstPlan` records the choices (method, window, stride, model name and
hash); :func:`iter_burst` runs a whole stack as a generator of
:class:`~.denoise.Progress` (cancel between yields); :func:`burst_lazy` builds a
dask array computing each output frame on demand. A stack larger than memory is
streamed in two passes: :func:`registrations_lazy` registers every window (small
result, recorded in the output's metadata), then :func:`burst_lazy` with those
shifts fuses and writes one frame at a time.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft as sfft
import scipy.ndimage as ndi

from ._args import check_choice, check_image, check_int, check_real
from ._progress import Progress, drain
from .spline import Spline

__all__ = [
    "METHODS",
    "AlignedWindow",
    "BurstPlan",
    "FrameSpectrum",
    "align_window",
    "burst",
    "burst_lazy",
    "fuse_fba",
    "fuse_mean",
    "fuse_wiener",
    "iter_burst",
    "motion_kernels",
    "output_centres",
    "phase_shift",
    "plan_burst",
    "register_fast",
    "register_window",
    "registrations_lazy",
    "window_velocity",
]

METHODS = ("network", "classical", "fba", "mean")
DEFAULT_FRAMES = 5
COARSE_SIGMA = 2.0
FINE_SIGMA = 1.5
LOCAL_RADIUS = 3
MIN_OVERLAP = 0.25
GLOBAL_SIDE = 512  # px: the all-shifts search runs on frames binned to at most this


# --------------------------------------------------------------------------- registration
def _prep(frame: np.ndarray, sigma: float) -> np.ndarray:
    a = ndi.gaussian_filter(frame, sigma, mode="reflect")
    sd = float(a.std())
    return (a - a.mean()) / (sd if sd > 0 else 1.0)


def _ncc_map(ref: np.ndarray, mov: np.ndarray):
    """NCC of ``ref(p)`` with ``mov(p - s)`` over their overlap, for every integer shift.

    Returns ``(ncc, overlap_fraction, sy, sx)`` on the FFT grid (``sy``/``sx`` the
    shift of each row/column).
    """
    h, w = ref.shape
    H, W = sfft.next_fast_len(2 * h - 1, real=True), sfft.next_fast_len(2 * w - 1, real=True)

    def f(x):
        return sfft.rfft2(x, (H, W))

    def corr(x, y):  # Σ_q x(q) y(q - s)
        return sfft.irfft2(x * np.conj(y), (H, W))

    ones = np.ones_like(ref)
    fa, fb, fo = f(ref), f(mov), f(ones)
    n = np.maximum(np.round(corr(fo, fo)), 1.0)
    sa, sb = corr(fa, fo), corr(fo, fb)
    cov = corr(fa, fb) - sa * sb / n
    va = np.maximum(corr(f(ref * ref), fo) - sa * sa / n, 0.0)
    vb = np.maximum(corr(fo, f(mov * mov)) - sb * sb / n, 0.0)
    ncc = cov / np.sqrt(va * vb + 1e-12)
    sy = np.fft.fftfreq(H, 1.0 / H)
    sx = np.fft.fftfreq(W, 1.0 / W)
    return ncc, n / (h * w), sy, sx


def _best_shift(ref, mov, centre=None, radius: int = LOCAL_RADIUS, min_overlap=MIN_OVERLAP):
    """The integer shift maximising NCC × √overlap, and its NCC.

    Without ``centre``: over every shift (FFT, on frames binned to at most
    :data:`GLOBAL_SIDE` px so memory stays small on 4k frames; the binned shift is
    scaled back and refined locally by the caller). With ``centre``: over the
    ``(2·radius + 1)²`` shifts around it, directly at full resolution.
    """
    if centre is not None:
        return _local_shift(ref, mov, np.asarray(centre, dtype=np.float64), radius, min_overlap)
    b = max(1, math.ceil(max(ref.shape) / GLOBAL_SIDE))
    if b > 1:
        s, score = _best_shift(_bin(ref, b), _bin(mov, b), None, radius, min_overlap)
        return s * b, score
    ncc, frac, sy, sx = _ncc_map(ref, mov)
    score = np.where(frac >= min_overlap, ncc * np.sqrt(frac), -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
    return np.array([sy[iy], sx[ix]], dtype=np.float64), float(ncc[iy, ix])


def _bin(x: np.ndarray, b: int) -> np.ndarray:
    h, w = (x.shape[0] // b) * b, (x.shape[1] // b) * b
    return x[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3))


def _local_shift(ref, mov, centre, radius, min_overlap):
    """:func:`_best_shift` over the shifts within ``radius`` of ``centre`` (same score)."""
    h, w = ref.shape
    best, best_score, best_ncc = None, -np.inf, -1.0
    cy, cx = int(centre[0]), int(centre[1])
    for dy in range(cy - radius, cy + radius + 1):
        for dx in range(cx - radius, cx + radius + 1):
            rows, cols = h - abs(dy), w - abs(dx)
            if rows <= 0 or cols <= 0 or rows * cols < min_overlap * h * w:
                continue
            a = ref[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)]
            m = mov[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
            a = a - a.mean()
            m = m - m.mean()
            ncc = float((a * m).sum() / math.sqrt(float((a * a).sum() * (m * m).sum()) + 1e-12))
            score = ncc * math.sqrt(rows * cols / (h * w))
            if score > best_score:
                best, best_score, best_ncc = (dy, dx), score, ncc
    if best is None:  # the seed lies outside the allowed overlap
        return centre, -1.0
    return np.array(best, dtype=np.float64), best_ncc


def _refine(ref: np.ndarray, mov: np.ndarray, s: np.ndarray, iters: int = 20) -> np.ndarray:
    """Gauss–Newton on ``Σ (mov(p - s) - ref(p))²`` over the overlap (spline interpolation)."""
    h, w = ref.shape
    coeff = ndi.spline_filter(mov, 3, mode="mirror")
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    b = math.ceil(3 * FINE_SIGMA) + 1  # the smoothing's reflected border is not data
    inner = (yy >= b) & (yy <= h - 1 - b) & (xx >= b) & (xx <= w - 1 - b)
    s0 = s.copy()
    for _ in range(iters):
        cy, cx = yy - s[0], xx - s[1]
        valid = inner & (cy >= b) & (cy <= h - 1 - b) & (cx >= b) & (cx <= w - 1 - b)
        if valid.sum() < MIN_OVERLAP * h * w / 2:
            break
        warped = ndi.map_coordinates(coeff, [cy, cx], order=3, mode="mirror", prefilter=False)
        gy, gx = np.gradient(warped)
        gy, gx, r = gy[valid], gx[valid], (warped - ref)[valid]
        a = np.array([[gy @ gy, gy @ gx], [gy @ gx, gx @ gx]])
        if np.linalg.cond(a) > 1e8:
            break
        step = np.linalg.solve(a, np.array([gy @ r, gx @ r]))
        s = s + step
        if float(np.hypot(*step)) < 1e-3:
            break
    if not np.isfinite(s).all() or np.abs(s - s0).max() > 2 * LOCAL_RADIUS:
        return s0  # diverged (flat overlap): keep the integer match
    return s


def register_window(frames, *, reference: int | None = None) -> np.ndarray:
    """Sub-pixel translations registering every frame of a window onto one of them.

    Parameters
    ----------
    frames : (T, rows, cols) array_like
        ``T >= 2`` frames of a stream, in time order, each at least 16×16.
    reference : int, optional
        Index of the reference frame; default the middle one, ``T // 2``.

    Returns
    -------
    shifts : (T, 2) float64 ndarray
        ``(dy, dx)`` such that ``frames[k](p - shifts[k]) ≈ frames[reference](p)``
        (``shifts[reference] = 0``): in a stream, the field of view of frame ``k``
        is offset by ``shifts[k]`` from the reference's.

    Examples
    --------
    >>> import scipy.ndimage as ndi
    >>> scene = ndi.gaussian_filter(np.random.default_rng(0).random((90, 120)), 2)
    >>> window = np.stack([scene[10:70, 10 + 5 * k : 70 + 5 * k] for k in range(3)])
    >>> np.round(register_window(window), 2).tolist()
    [[0.0, -5.0], [0.0, 0.0], [0.0, 5.0]]
    """
    x = _check_window(frames)
    t = x.shape[0]
    ref = t // 2 if reference is None else check_int(reference, "reference", low=0, high=t - 1)
    coarse = [_prep(f, COARSE_SIGMA) for f in x]
    fine = [_prep(f, FINE_SIGMA) for f in x]
    chain = np.zeros((t, 2))
    for k in range(ref + 1, t):
        chain[k] = chain[k - 1] + _best_shift(coarse[k - 1], coarse[k])[0]
    for k in range(ref - 1, -1, -1):
        chain[k] = chain[k + 1] + _best_shift(coarse[k + 1], coarse[k])[0]
    shifts = np.zeros((t, 2))
    for k in range(t):
        if k != ref:
            s0, _ = _best_shift(coarse[ref], coarse[k], centre=np.round(chain[k]))
            shifts[k] = _refine(fine[ref], fine[k], s0)
    return shifts


def _check_window(frames) -> np.ndarray:
    x = frames.compute() if hasattr(frames, "compute") else frames
    x = check_image(x, "frames", min_ndim=3, max_ndim=3, min_size=16)
    if x.shape[0] < 2:
        raise ValueError(
            f"a burst needs at least 2 frames; got {x.shape[0]}. Pass a (T, rows, cols) stack "
            "of consecutive frames of the stream."
        )
    return x


# --------------------------------------------------------------------------- fast registration
FAST_SIDE = 512  # px: phase correlation runs on frames binned to at most this
FAST_SIGMA = 2.5  # px (binned): Gaussian low-pass of the cross-power spectrum
FAST_TAPER = 0.15  # Tukey window of the refinement: fraction of each side tapered
FAST_UPSAMPLE = 20  # sub-pixel search step 1/20 binned px, then a parabola


class FrameSpectrum:
    """One frame prepared for :func:`phase_shift`: binned, windowed, Fourier transformed.

    Made once per frame; a stream registers each new frame against the previous
    one's spectrum, so every frame is prepared exactly once.
    """

    __slots__ = ("bin", "binned", "shape", "spectrum")

    def __init__(self, frame: np.ndarray, *, side: int = FAST_SIDE) -> None:
        x = np.asarray(frame, dtype=np.float64)
        self.shape = x.shape
        self.bin = max(1, math.ceil(max(x.shape) / side))
        x = _bin(x, self.bin) if self.bin > 1 else x
        self.binned = x - x.mean()
        self.spectrum = sfft.fft2(self.binned * _hann2(self.binned.shape))


def _hann2(shape: tuple[int, int]) -> np.ndarray:
    wy, wx = (np.hanning(n + 2)[1:-1] for n in shape)  # never exactly 0 inside
    return wy[:, None] * wx[None, :]


def _tukey(n: int) -> np.ndarray:
    """Flat top, cosine tapers over :data:`FAST_TAPER` of ``n`` (more signal than Hann)."""
    x = np.minimum(np.arange(n), np.arange(n)[::-1]) + 0.5
    edge = max(FAST_TAPER * n / 2, 1.0)
    return np.sin(0.5 * np.pi * np.clip(x / edge, 0.0, 1.0)) ** 2


def _overlap_spectra(ref: np.ndarray, mov: np.ndarray, m: np.ndarray):
    """Spectra of ``ref`` and ``mov`` windowed on the specimen area both see at shift ``m``.

    A window fixed to the frame biases phase correlation towards zero shift (the
    window's own edges correlate); windowing the common area in each frame removes it.
    """
    h, w = ref.shape
    dy, dx = int(m[0]), int(m[1])
    ry = slice(max(0, dy), h + min(0, dy))  # mov(q) = ref(q + m): rows of ref mov sees
    rx = slice(max(0, dx), w + min(0, dx))
    my = slice(max(0, -dy), h - max(0, dy))
    mx = slice(max(0, -dx), w - max(0, dx))
    a, b = ref[ry, rx], mov[my, mx]
    win = _tukey(a.shape[0])[:, None] * _tukey(a.shape[1])[None, :]
    a = (a - a.mean()) * win
    b = (b - b.mean()) * win
    return sfft.fft2(a), sfft.fft2(b)


def _lowpass(shape: tuple[int, int], sigma: float) -> np.ndarray:
    fy = sfft.fftfreq(shape[0])[:, None]
    fx = sfft.fftfreq(shape[1])[None, :]
    return np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))


def _upsampled_peak(cross: np.ndarray, centre: np.ndarray, up: int) -> np.ndarray:
    """Peak of the inverse DFT of ``cross`` on a grid of step ``1/up`` around ``centre``.

    Matrix-multiply DFT of a ±1.5 px neighbourhood (Guizar-Sicairos et al., 2008), then
    a parabola through the best sample and its neighbours on each axis.
    """
    n = math.ceil(1.5 * up) * 2 + 1
    offs = (np.arange(n) - n // 2) / up
    h, w = cross.shape
    ky = sfft.ifftshift(np.arange(h) - h // 2)
    kx = sfft.ifftshift(np.arange(w) - w // 2)
    ey = np.exp(2j * np.pi * np.outer(centre[0] + offs, ky) / h)  # (n, h)
    ex = np.exp(2j * np.pi * np.outer(kx, centre[1] + offs) / w)  # (w, n)
    c = (ey @ cross @ ex).real
    iy, ix = np.unravel_index(int(np.argmax(c)), c.shape)
    peak = np.array([offs[iy], offs[ix]], dtype=np.float64)
    for axis, i in ((0, iy), (1, ix)):
        if 0 < i < n - 1:
            line = c[i - 1 : i + 2, ix] if axis == 0 else c[iy, i - 1 : i + 2]
            den = line[0] - 2 * line[1] + line[2]
            if den < 0:
                peak[axis] += 0.5 * (line[0] - line[2]) / den / up
    return centre + peak


def _smoothed_cross(ref_f: np.ndarray, mov_f: np.ndarray) -> np.ndarray:
    # Not whitened: at a few e-/px phase-only correlation is dominated by noise
    # (median error 1.0 px against 0.12 px on bench_burst's windows).
    return ref_f * np.conj(mov_f) * _lowpass(ref_f.shape, FAST_SIGMA)


def phase_shift(ref: FrameSpectrum, mov: FrameSpectrum) -> np.ndarray:
    """The translation ``s`` with ``mov(p - s) ≈ ref(p)``, by FFT cross-correlation.

    The cross-power spectrum of the Hann-windowed frames is low-passed by a Gaussian
    of :data:`FAST_SIGMA` binned px (the shot noise lives at high frequencies); one
    inverse FFT gives the integer peak. Then both frames are windowed again, with a
    flat-topped Tukey window, on the specimen area they share at that shift (a
    window fixed to the frame biases the peak towards zero) and the peak is refined
    by an upsampled DFT around it (:data:`FAST_UPSAMPLE`) and a parabola. Cost at
    1024²: three 512² FFTs, one inverse, two small matrix products.
    """
    if ref.shape != mov.shape:
        raise ValueError(
            f"frames to register must have the same shape; got {ref.shape} and {mov.shape}."
        )
    cross = _smoothed_cross(ref.spectrum, mov.spectrum)
    corr = sfft.ifft2(cross).real
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    h, w = corr.shape
    coarse = np.array([iy - h if iy > h // 2 else iy, ix - w if ix > w // 2 else ix], float)
    if abs(coarse[0]) > h // 2 - 4 or abs(coarse[1]) > w // 2 - 4:
        return coarse * ref.bin  # almost no overlap: nothing better to refine on
    fa, fb = _overlap_spectra(ref.binned, mov.binned, coarse)
    residual = _upsampled_peak(_smoothed_cross(fa, fb), np.zeros(2), FAST_UPSAMPLE)
    return (coarse + residual) * ref.bin


def register_fast(frames, *, reference: int | None = None) -> np.ndarray:
    """:func:`register_window`'s contract, by chained phase correlation (each frame once).

    Every frame is transformed once (:class:`FrameSpectrum`) and registered to the
    previous one (:func:`phase_shift`); the shifts to the reference are the running
    sums of those steps. About 20× faster than :func:`register_window` at 1024²,
    within 0.15 px median on ``benchmarks/bench_burst.py``'s windows (measured in
    ``benchmarks/bench_live.py``).

    Examples
    --------
    >>> import scipy.ndimage as ndi
    >>> scene = ndi.gaussian_filter(np.random.default_rng(0).random((90, 120)), 2)
    >>> window = np.stack([scene[10:70, 10 + 5 * k : 70 + 5 * k] for k in range(3)])
    >>> np.round(register_fast(window), 1).tolist()
    [[0.0, -5.0], [0.0, 0.0], [0.0, 5.0]]
    """
    x = _check_window(frames)
    t = x.shape[0]
    ref = t // 2 if reference is None else check_int(reference, "reference", low=0, high=t - 1)
    spectra = [FrameSpectrum(f) for f in x]
    steps = np.zeros((t, 2))
    for k in range(1, t):
        steps[k] = phase_shift(spectra[k - 1], spectra[k])
    position = np.cumsum(steps, axis=0)
    return position - position[ref]


# --------------------------------------------------------------------------- alignment
@dataclass(frozen=True)
class AlignedWindow:
    """A window resampled onto its reference frame's grid.

    ``frames[k]`` is frame ``k`` moved onto the reference; where it does not cover
    the reference's field of view ``masks[k]`` is False and the value is the
    reference's. ``shifts`` as returned by :func:`register_window`.
    """

    frames: np.ndarray  # (T, H, W) float64
    masks: np.ndarray  # (T, H, W) bool
    shifts: np.ndarray  # (T, 2)
    reference: int

    @property
    def common(self) -> np.ndarray:
        """Pixels seen by every frame."""
        return self.masks.all(axis=0)


def align_window(frames, shifts=None, *, reference: int | None = None) -> AlignedWindow:
    """Register (unless ``shifts`` is given) and resample a window onto its reference.

    Examples
    --------
    >>> import scipy.ndimage as ndi
    >>> scene = ndi.gaussian_filter(np.random.default_rng(0).random((90, 120)), 2)
    >>> window = np.stack([scene[10:70, 10 + 5 * k : 70 + 5 * k] for k in range(3)])
    >>> aw = align_window(window)
    >>> bool(np.allclose(aw.frames[0][:, :55], window[1][:, :55], atol=1e-4))
    True
    >>> int(aw.masks[0].sum()), int(aw.common.sum())  # 60 x 55 px seen by frame 0
    (3300, 3000)
    """
    x = _check_window(frames)
    t, h, w = x.shape
    ref = t // 2 if reference is None else check_int(reference, "reference", low=0, high=t - 1)
    if shifts is None:
        shifts = register_window(x, reference=ref)
    s = np.asarray(shifts, dtype=np.float64)
    if s.shape != (t, 2) or not np.isfinite(s).all():
        raise ValueError(f"shifts must be a finite ({t}, 2) array; got shape {s.shape}.")
    out = np.empty_like(x)
    masks = np.ones(x.shape, dtype=bool)
    rows = np.arange(h)[:, None]
    cols = np.arange(w)[None, :]
    tol = 0.01  # px: a hair past the edge is still the edge pixel
    for k in range(t):
        dy, dx = s[k]
        if k == ref or (dy == 0 and dx == 0):
            out[k] = x[k]
            continue
        out[k] = Spline(x[k]).crop(-dy, -dx, h, w)
        masks[k] = ((rows - dy >= -tol) & (rows - dy <= h - 1 + tol) & (cols - dx >= -tol)) & (
            cols - dx <= w - 1 + tol
        )
        out[k] = np.where(masks[k], out[k], x[ref])
    return AlignedWindow(out, masks, s, ref)


# --------------------------------------------------------------------------- fusion
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
    (:func:`~em_restore.backend.deconvolve.auto_balance`), so noise sets it; frames
    are extended periodically (:func:`~em_restore.backend.deconvolve.periodic_pad`)
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
    from .deconvolve import auto_balance, periodic_pad

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


# --------------------------------------------------------------------------- plan
def output_centres(n_frames: int, frames: int, stride: int) -> list[int]:
    """Indices of the input frames the outputs are registered to (window middles).

    Examples
    --------
    >>> output_centres(10, 5, 1)
    [2, 3, 4, 5, 6, 7]
    >>> output_centres(10, 4, 3)
    [2, 5, 8]
    """
    return [s + frames // 2 for s in range(0, n_frames - frames + 1, stride)]


@dataclass
class BurstPlan:
    """How a stream is restored: method, window, stride and (network) the model.

    Build with :func:`plan_burst`. :meth:`to_metadata` gives the JSON record for a
    result (with the model's name and weights hash).
    """

    method: str = "network"
    frames: int = DEFAULT_FRAMES
    stride: int = 1
    model: Any = None  # LoadedModel for "network"
    fba_p: float = 11.0
    exposure: float = 1.0
    tile: int = 512
    overlap: int = 64
    extra: dict = field(default_factory=dict)

    def fuse(self, aligned: AlignedWindow) -> np.ndarray:
        """One restored frame (float32) from an aligned window."""
        if self.method == "mean":
            out = fuse_mean(aligned)
        elif self.method == "classical":
            out = fuse_wiener(aligned, exposure=self.exposure)
        elif self.method == "fba":
            out = fuse_fba(aligned, p=self.fba_p)
        else:
            from .models.burst import predict_burst

            out = predict_burst(self.model, aligned, tile=self.tile, overlap=self.overlap)
        return np.asarray(out, dtype=np.float32)

    def restore_window(self, frames) -> tuple[np.ndarray, np.ndarray]:
        """Register, align and fuse one window: ``(restored frame, shifts)``."""
        aligned = align_window(frames)
        return self.fuse(aligned), aligned.shifts

    def to_metadata(self) -> dict:
        from em_restore import __version__

        meta = {
            "method": self.method,
            "frames": self.frames,
            "stride": self.stride,
            "registration": "translation: masked NCC + Gauss-Newton, to each window's middle",
            "em_restore_version": __version__,
        }
        if self.method == "classical":
            meta["fusion"] = {"name": "multi_frame_wiener", "exposure": self.exposure}
        if self.method == "fba":
            meta["fusion"] = {"name": "fourier_burst_accumulation", "p": self.fba_p}
        if self.method == "network":
            meta["model"] = self.model.to_metadata()
            meta["device"] = str(self.model.device)
            meta["tile"], meta["overlap"] = self.tile, self.overlap
        meta.update(self.extra)
        return meta


def plan_burst(
    method: str = "network",
    *,
    frames: int = DEFAULT_FRAMES,
    stride: int = 1,
    model=None,
    device=None,
    fba_p: float = 11.0,
    exposure: float = 1.0,
) -> BurstPlan:
    """Check the choices and load the model (``method="network"``).

    ``model``: a registered name or folder of a burst model; default the bundled
    ``em-burst``. ``exposure``: the fraction of the frame period the detector
    integrates (``"classical"``). Raises ``ValueError`` (one line, with the fix) on
    bad input.
    """
    method = check_choice(method, "method", METHODS)
    frames = check_int(frames, "frames", low=2)
    stride = check_int(stride, "stride", low=1)
    loaded = None
    if method == "network":
        from .models.burst import DEFAULT_BURST_MODEL
        from .models.store import ModelError, load_model

        loaded = load_model(model or DEFAULT_BURST_MODEL, device=device)
        if loaded.config.task != "burst":
            raise ModelError(
                f"model {loaded.name!r} is a {loaded.config.task} model, not a burst model; "
                "pick one listed by `em-restore models --task burst`."
            )
    elif model is not None:
        raise ValueError(f"model is only used with method='network'; got method={method!r}.")
    fba_p = check_real(fba_p, "fba_p", low=0)
    exposure = check_real(exposure, "exposure", low=0, high=1, low_open=True)
    return BurstPlan(method, frames, stride, loaded, fba_p, exposure)


def _check_stack(stack, frames: int) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in stack.shape)
    if len(shape) != 3:
        hint = " (a single frame)" if len(shape) == 2 else ""
        raise ValueError(
            f"burst needs a (T, rows, cols) stack of stream frames; got shape {shape}{hint}. "
            "Open the whole stream as one stack."
        )
    t = shape[0]
    if t < 2:
        raise ValueError(
            f"burst needs at least 2 frames; the stack has {t}. Open the whole stream, "
            "not a single frame."
        )
    if frames > t:
        raise ValueError(
            f"window of {frames} frames is longer than the stack ({t} frames); use frames <= {t}."
        )
    if min(shape[1:]) < 16:
        raise ValueError(
            f"frames must be at least 16×16 pixels; got {shape[1:]}. "
            "Select a larger region of the stream."
        )
    return shape  # type: ignore[return-value]


def iter_burst(stack, plan: BurstPlan) -> Generator[Progress, None, tuple[np.ndarray, dict]]:
    """Restore a stream window by window; yields Progress, returns ``(out, info)``.

    ``out`` is ``(n_out, rows, cols)`` float32, output ``i`` registered to input
    frame ``info["centres"][i]``; ``info["shifts"]`` lists each window's
    registration (``(frames, 2)`` lists). ``stack`` may be numpy or dask (read one
    window at a time); it is never modified.
    """
    t, h, w = _check_stack(stack, plan.frames)
    centres = output_centres(t, plan.frames, plan.stride)
    out = np.empty((len(centres), h, w), dtype=np.float32)
    shifts = []
    yield Progress(0, len(centres), f"burst ({plan.method}, {plan.frames} frames)")
    for i, c in enumerate(centres):
        start = c - plan.frames // 2
        window = stack[start : start + plan.frames]
        out[i], s = plan.restore_window(window)
        shifts.append(np.round(s, 4).tolist())
        yield Progress(i + 1, len(centres), f"window {i + 1}/{len(centres)} (frame {c})")
    return out, {"centres": centres, "shifts": shifts}


def burst(stack, method: str = "network", **kw) -> tuple[np.ndarray, dict]:
    """:func:`iter_burst` with a fresh :func:`plan_burst` (keywords go to it).

    Returns ``(out, metadata)``: the restored frames and the plan's record with the
    centres and shifts.
    """
    plan = plan_burst(method, **kw)
    out, info = drain(iter_burst(stack, plan))
    return out, {**plan.to_metadata(), **info}


def _window_starts(stack, plan: BurstPlan) -> tuple[tuple[int, int, int], list[int], list[int]]:
    shape = _check_stack(stack, plan.frames)
    centres = output_centres(shape[0], plan.frames, plan.stride)
    return shape, centres, [c - plan.frames // 2 for c in centres]


def registrations_lazy(stack, plan: BurstPlan):
    """A dask array ``(n_out, frames, 2)`` of every window's registration shifts.

    The first pass of a streamed burst: each chunk reads one window and registers
    it (:func:`register_window`). Computing it holds only the windows in flight;
    the result is small (16 bytes per frame per window), so it can go into the
    output's metadata *before* the frames are written, and :func:`burst_lazy`
    reuses it instead of registering again.
    """
    import dask
    import dask.array as da

    _, _, starts = _window_starts(stack, plan)

    def one(window) -> np.ndarray:
        return register_window(np.asarray(window))[None]

    parts = [
        da.from_delayed(
            dask.delayed(one)(stack[s : s + plan.frames]),
            shape=(1, plan.frames, 2),
            dtype=np.float64,
        )
        for s in starts
    ]
    return da.concatenate(parts, axis=0)


def burst_lazy(stack, plan: BurstPlan, shifts=None):
    """A dask array of the restored stream, one output frame per chunk, computed on demand.

    Nothing is computed here; each chunk reads only its own window of ``stack``.
    ``shifts``: the windows' registrations, ``(n_out, frames, 2)`` (from
    :func:`registrations_lazy`); without them each chunk registers its window
    itself. The same shifts give the same frames as :func:`iter_burst`.
    """
    import dask
    import dask.array as da

    (_, h, w), centres, starts = _window_starts(stack, plan)
    if shifts is not None:
        shifts = np.asarray(shifts, dtype=np.float64)
        if shifts.shape != (len(centres), plan.frames, 2):
            raise ValueError(
                f"shifts must have shape {(len(centres), plan.frames, 2)} (one registration "
                f"per window); got {shifts.shape}. Compute them with registrations_lazy."
            )

    def one(window, s) -> np.ndarray:
        aligned = align_window(np.asarray(window), s)
        return plan.fuse(aligned)[None]

    parts = [
        da.from_delayed(
            dask.delayed(one)(stack[s : s + plan.frames], None if shifts is None else shifts[i]),
            shape=(1, h, w),
            dtype=np.float32,
        )
        for i, s in enumerate(starts)
    ]
    return da.concatenate(parts, axis=0)
