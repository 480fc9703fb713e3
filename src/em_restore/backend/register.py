"""Frame registration of a burst window: shifts, sub-pixel refinement, alignment.

:func:`register_window`: sub-pixel translation of every frame of a window onto one
reference frame (default the middle one). Consecutive frames are matched by
normalised cross-correlation computed over their overlap only (zero-padded FFTs,
Padfield's masked NCC, scored ``ncc * sqrt(overlap fraction)`` so a periodic
specimen prefers the shortest consistent shift); the chained estimate seeds a
direct match to the reference (NCC within ±3 px), refined by Gauss–Newton
(Lucas–Kanade, :func:`refine_shift`) on the overlap with cubic-spline
interpolation. Frames are smoothed (Gaussian, 2 px then 1.5 px) before matching,
which is what makes it work at a few e⁻/px.

:func:`register_fast`: the same contract by chained phase correlation
(:class:`FrameSpectrum`, :func:`phase_shift`), each frame transformed once (live
streams).

:func:`align_window`: every frame resampled onto the reference's grid (cubic
spline); the pixels it does not cover are marked in a mask and filled with the
reference's values (:class:`AlignedWindow`; the **common area** is the AND of the
masks). Fusion of the aligned window is :mod:`em_restore.backend.fuse`.

Examples
--------
Three frames of a scene, the field of view moving 5 px per frame, registered both ways:

>>> import scipy.ndimage as ndi
>>> scene = ndi.gaussian_filter(np.random.default_rng(0).random((90, 120)), 2)
>>> window = np.stack([scene[10:70, 10 + 5 * k : 70 + 5 * k] for k in range(3)])
>>> np.round(register_window(window), 2).tolist()
[[0.0, -5.0], [0.0, 0.0], [0.0, 5.0]]
>>> np.round(register_fast(window), 1).tolist()
[[0.0, -5.0], [0.0, 0.0], [0.0, 5.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
import scipy.ndimage as ndi

from ._args import check_image, check_int
from .spline import Spline

__all__ = [
    "COARSE_SIGMA",
    "FAST_SIDE",
    "FAST_SIGMA",
    "FAST_TAPER",
    "FAST_UPSAMPLE",
    "FINE_SIGMA",
    "GLOBAL_SIDE",
    "LOCAL_RADIUS",
    "MIN_OVERLAP",
    "AlignedWindow",
    "FrameSpectrum",
    "align_window",
    "phase_shift",
    "refine_shift",
    "register_fast",
    "register_window",
]

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


def refine_shift(ref: np.ndarray, mov: np.ndarray, s: np.ndarray, iters: int = 20) -> np.ndarray:
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

    Example: the module's docstring.
    """
    x, ref = _check_window(frames, reference)
    t = x.shape[0]
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
            shifts[k] = refine_shift(fine[ref], fine[k], s0)
    return shifts


def _check_window(frames, reference: int | None) -> tuple[np.ndarray, int]:
    """A window of ``T >= 2`` frames as an array, and its reference index (default the middle)."""
    x = frames.compute() if hasattr(frames, "compute") else frames
    x = check_image(x, "frames", min_ndim=3, max_ndim=3, min_size=16)
    t = x.shape[0]
    if t < 2:
        raise ValueError(
            f"a burst needs at least 2 frames; got {t}. Pass a (T, rows, cols) stack "
            "of consecutive frames of the stream."
        )
    ref = t // 2 if reference is None else check_int(reference, "reference", low=0, high=t - 1)
    return x, ref


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

    Example: the module's docstring.
    """
    x, ref = _check_window(frames, reference)
    t = x.shape[0]
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
    x, ref = _check_window(frames, reference)
    t, h, w = x.shape
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
