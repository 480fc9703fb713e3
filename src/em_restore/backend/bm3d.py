"""BM3D-class collaborative filtering for white *and* correlated Gaussian noise.

Pure numpy / scipy implementation (the ``bm3d`` PyPI package may not be
redistributed). Noise model: ``z = y + n`` with ``n = sigma · (w ⊛ g)``, ``w`` unit
white Gaussian noise and ``g`` an optional small odd kernel with ``sum(g**2) = 1``
(``g = None``: white noise). The noise power spectral density is
``sigma² |FFT(g)|²`` and its marginal standard deviation is ``sigma``.

Algorithm (Dabov et al. 2007; correlated noise after Mäkinen, Azzari & Foi 2020,
"Collaborative filtering of correlated noise: exact transform-domain variance for
improved shrinkage and patch matching")
----------------------------------------------------------------------------------
1. *Hard thresholding.* Reference patches lie on a grid of spacing ``step``
   anchored to absolute image coordinates (``origin``), plus the first and last
   row / column of positions so that every pixel is covered. For each reference the
   ``max_matches`` patches with the smallest sum of squared differences (SSD)
   within ``±search_radius`` are stacked (the reference first, then by increasing
   distance) and transformed by a separable orthonormal 3-D transform: 2-D DCT of
   each patch, then Haar (DCT when the group size is not a power of two) across
   the group. Coefficients are hard-thresholded at ``λ σ_k`` with
   ``λ = 2.7 · strength``, the group is inverted and aggregated with weight
   ``1 / Σ_retained σ_k²`` times a Kaiser window (β = 2).
2. *Wiener filtering* (``stage="both"``). Matching on the stage-1 estimate, groups
   of ``2 · max_matches`` patches (BM3D's 16 / 32), empirical Wiener shrinkage
   ``W = |Ŷ|² / (|Ŷ|² + strength² σ_k²)`` of the noisy group's 3-D spectrum, where
   ``Ŷ`` is the spectrum of the same group cut from the stage-1 estimate;
   aggregation with weight ``1 / Σ W² σ_k²``.

Correlated noise enters in two places:

* ``σ_k²``, the noise variance of 2-D DCT coefficient ``k`` of a patch, is
  ``sigma² ‖B_k ⊛ g‖²`` for the DCT basis function ``B_k`` (exact, computed once per
  call, see :func:`noise_coefficient_std`). Patches of a group are treated as
  independent and the group transform is orthonormal, so every 3-D coefficient
  with 2-D index ``k`` has variance ``σ_k²``.
* Candidate offsets ``d`` at which the noise of two patches is strongly
  correlated, ``|(g ⋆ g)(d)| > 0.5``, are excluded from matching (except the
  reference itself): with coloured noise the nearest patches by SSD are otherwise
  the reference shifted by a pixel or two, whose noise is nearly the same, so the
  group mean keeps the noise. Excluding them gains up to ~1 dB.

Stage-1 matching uses the noisy image itself. A matching pre-filter (sliding 2-D DCT
hard threshold, as BM3D does for high noise) was evaluated on the EM simulator: it
lowered the PSNR for white noise at every level tried (σ = 0.05 … 0.5 of the
signal range, by up to 1.8 dB) and changed it by only ±0.2 dB for correlated noise
once the correlated offsets are excluded, so it is not used (which also keeps the
support radius smaller).

The 3-D DC coefficient (group mean) is never thresholded or shrunk: constant images
are preserved and the local mean is unbiased.

Locality
--------
The output at a pixel depends only on input pixels within :func:`support_radius`
(Chebyshev distance). Processing a tile whose halo is at least that wide (clipped at
the image borders, not padded) with ``origin`` set to the tile's absolute top-left
position, then cropping the halo, reproduces the whole-image result up to
floating-point rounding (the matching distances are computed with position-
independent operations, so the matches are identical). Everything is deterministic.

Cost: the block matching and the group filtering run as compiled kernels
(:mod:`._bm3d_kernels`, numba) when numba imports: a 128² crop 130 → 73 ms on one
thread (2026-12-07); the numpy path below is the reference and the fallback.
numpy path: about 1.9 s per 512² frame (7.2 s per megapixel, 2026-12-04) with the defaults;
the matrix products use BLAS, whose threads bring little here and slow it down
badly when the cores are shared with other work. The bands of matches (at most 24 MB
of matching distances each) are matched and filtered side by side on the threads of
:mod:`._threads` and added in band order, so the result does not depend on the
number of threads. The bands are of equal height and come in multiples of four, so that
two or four threads share them evenly (512² frame: 0.78 → 0.62 s on two threads,
2026-12-08; the result moves by rounding only, 6e-15 of the signal).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import threading
from collections import OrderedDict

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from ._args import check_choice, check_image, check_int, check_real, short
from ._threads import pmap

__all__ = ["bm3d", "noise_coefficient_std", "support_radius"]

_LAMBDA_3D = 2.7  # hard threshold, in units of the coefficient noise std, at strength 1
_KAISER_BETA = 2.0
_WIENER_GROUP_FACTOR = 2  # stage-2 group size = 2 · max_matches (BM3D: 16 / 32)
_EXCLUDE_CORRELATION = 0.5  # skip candidate offsets whose noise correlates more than this
_BAND_BYTES = 24e6  # size of one band's table of matching distances (float32)
_BAND_MULTIPLE = 4  # bands come in multiples of this (even work for 2 or 4 threads)
_BATCH_COEFS = 1 << 18  # 3-D coefficients per filtering batch (per array)
_MEMO_PIXELS = 256 * 256  # stage-1 matches of images up to this size are remembered
_MEMO_ENTRIES = 16
_SPECTRA_BYTES = 96e6  # patch spectra of the noisy image remembered across stages, strengths
_KERNEL_TOL = 1e-6  # tolerance on sum(kernel**2) == 1
_SQRT_HALF = math.sqrt(0.5)
#: Use the compiled kernels of :mod:`._bm3d_kernels` (when numba is installed). False:
#: numpy only, the reference and the fallback. numba is imported on BM3D's first use.
COMPILED = importlib.util.find_spec("numba") is not None


def _kernels():
    from . import _bm3d_kernels

    return _bm3d_kernels


# ------------------------------------------------------------------ public helpers
def support_radius(
    *, patch_size: int = 8, search_radius: int = 12, stage: str = "both", **_
) -> int:
    """Radius (pixels, Chebyshev) of the input region one output pixel depends on.

    A pixel ``p`` receives contributions from groups one of whose patches covers it,
    i.e. whose reference lies within ``patch_size - 1 + search_radius`` of ``p``;
    each group depends on the whole search window of its reference (the ranking of
    the candidates), ``search_radius + patch_size - 1`` further. Stage 2 matches on
    and shrinks with the stage-1 estimate, hence::

        r1 = 2 * search_radius + patch_size - 1       # stage="hard"
        r2 = 2 * r1                                   # stage="both"

    Extra keyword arguments (the other :func:`bm3d` parameters) are accepted and
    ignored, so ``support_radius(**params)`` works.

    Examples
    --------
    >>> support_radius()
    62
    >>> support_radius(stage="hard", search_radius=8)
    23
    """
    p = check_int(patch_size, "patch_size", low=2, high=32)
    r = check_int(search_radius, "search_radius", low=0, high=64)
    stage = check_choice(stage, "stage", ("both", "hard"))
    r1 = 2 * r + p - 1
    return 2 * r1 if stage == "both" else r1


def noise_coefficient_std(sigma: float, kernel=None, patch_size: int = 8) -> np.ndarray:
    """Noise std of each orthonormal 2-D DCT coefficient of a ``patch_size²`` patch.

    For noise ``sigma · (white ⊛ kernel)`` the coefficient with basis function
    ``B_k`` has standard deviation ``sigma ‖B_k ⊛ kernel‖`` (full linear
    convolution; equivalently ``sigma² Σ_f |FFT(B_k)|² |FFT(kernel)|²`` on a grid
    holding it). For white noise (``kernel=None``) all equal ``sigma``.

    Returns
    -------
    float64 ndarray of shape ``(patch_size, patch_size)``, indexed ``(k_y, k_x)``.

    Examples
    --------
    >>> s = noise_coefficient_std(2.0, np.ones((1, 3)) / np.sqrt(3), patch_size=4)
    >>> bool(s[0, 0] > 2.0 > s[0, -1])  # smoothing along x boosts low frequencies
    True
    """
    sigma = check_real(sigma, "sigma", low=0, low_open=True, hint="Pass the noise std, > 0.")
    p = check_int(patch_size, "patch_size", low=2, high=32)
    g = _check_kernel(kernel)
    if g is None:
        return np.full((p, p), sigma)
    c = _dct_matrix(p)
    basis = c[:, None, :, None] * c[None, :, None, :]  # (ky, kx, u, v)
    shape = (p + g.shape[0] - 1, p + g.shape[1] - 1)
    spec = np.fft.fft2(basis, s=shape, axes=(-2, -1)) * np.fft.fft2(g, s=shape)
    var = np.mean(np.abs(spec) ** 2, axis=(-2, -1))  # Parseval
    return sigma * np.sqrt(var)


# ----------------------------------------------------------------- private helpers
def _check_kernel(kernel) -> np.ndarray | None:
    if kernel is None:
        return None
    g = np.asarray(kernel)
    if g.dtype.kind not in "biuf" or g.ndim != 2:
        raise ValueError(
            f"kernel must be a 2-D real array (noise = white ⊛ kernel) or None; got "
            f"{short(kernel)}. Pass e.g. kernel=np.ones((1, 3)) / np.sqrt(3)."
        )
    if g.shape[0] % 2 == 0 or g.shape[1] % 2 == 0:
        raise ValueError(
            f"kernel must have odd sizes so that it has a central pixel; got shape "
            f"{g.shape}. Pad it with a row / column of zeros."
        )
    g = g.astype(np.float64)
    if not np.isfinite(g).all():
        raise ValueError("kernel contains NaN or infinite values. Pass a finite kernel.")
    energy = float(np.sum(g * g))
    if not abs(energy - 1.0) <= _KERNEL_TOL:
        raise ValueError(
            f"kernel must be normalised to sum(kernel**2) == 1 so that sigma is the "
            f"marginal noise std; got sum(kernel**2) = {energy:.6g}. Use "
            f"kernel / np.sqrt((kernel**2).sum())."
        )
    return g


def _dct_matrix(p: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: ``C @ x == scipy.fft.dct(x, norm='ortho')``."""
    return scipy.fft.dct(np.eye(p), norm="ortho", axis=0)


def _group_transform(n: int) -> np.ndarray:
    """Orthonormal transform across a group of ``n`` patches, as a matrix (row 0: mean).

    Reference for :func:`_group_forward` / :func:`_group_inverse`, which apply it
    without BLAS.
    """
    if n & (n - 1):  # not a power of two
        return _dct_matrix(n)
    t = np.ones((1, 1))
    while t.shape[0] < n:  # Haar
        m = t.shape[0]
        t = np.vstack([np.kron(t, [1.0, 1.0]), np.kron(np.eye(m), [1.0, -1.0])])
        t /= math.sqrt(2.0)
    return t


def _group_forward(x: np.ndarray) -> np.ndarray:
    """``_group_transform(n) @ x`` along axis 0 (Haar butterflies, or a DCT)."""
    n = x.shape[0]
    if n & (n - 1):
        return scipy.fft.dct(x, axis=0, norm="ortho")
    out = np.empty_like(x)
    cur, m = x, n
    while m > 1:
        even, odd = cur[0:m:2], cur[1:m:2]
        np.subtract(even, odd, out=out[m // 2 : m])
        out[m // 2 : m] *= _SQRT_HALF
        cur = even + odd
        cur *= _SQRT_HALF
        m //= 2
    out[0] = cur[0]
    return out


def _group_inverse(y: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_group_forward`."""
    n = y.shape[0]
    if n & (n - 1):
        return scipy.fft.idct(y, axis=0, norm="ortho")
    cur, m = y[0:1], 1
    while m < n:
        diff = y[m : 2 * m]
        nxt = np.empty((2 * m, *y.shape[1:]), y.dtype)
        np.add(cur, diff, out=nxt[0::2])
        np.subtract(cur, diff, out=nxt[1::2])
        nxt *= _SQRT_HALF
        cur, m = nxt, 2 * m
    return cur


def _grid(n: int, p: int, step: int, origin: int) -> np.ndarray:
    """Positions ``0 <= i <= n - p`` with ``(i + origin) % step == 0``, plus 0 and ``n - p``.

    The extra first / last positions cover the borders; in a tile they only affect
    pixels within the halo, which is cropped.
    """
    pos = np.arange((-origin) % step, n - p + 1, step)
    return np.unique(np.concatenate([[0], pos, [n - p]])).astype(np.intp)


def _box_sum(a: np.ndarray, p: int, axis: int) -> np.ndarray:
    """Sums of ``p`` consecutive entries along ``axis`` (length ``n - p + 1``).

    Binary doubling with slice additions only (no running sums), so every output
    is computed by the same operations wherever it lies: bit-identical under tiling.
    """
    out_len = a.shape[axis] - p + 1

    def part(arr, start, length):
        idx = [slice(None)] * arr.ndim
        idx[axis] = slice(start, start + length)
        return arr[tuple(idx)]

    result, offset, power, width, rem = None, 0, a, 1, p
    while True:
        if rem & 1:
            piece = part(power, offset, out_len)
            result = piece.copy() if result is None else result + piece
            offset += width
        rem >>= 1
        if not rem:
            return result
        length = power.shape[axis] - width
        power = part(power, 0, length) + part(power, width, length)
        width *= 2


def _box_sum_at(a: np.ndarray, p: int, axis: int, starts: np.ndarray) -> np.ndarray:
    """``_box_sum(a, p, axis)`` at the positions ``starts`` only (the same values, bit for bit).

    The same binary doubling, but the widest partial sum is formed only where it is
    needed: the matching wants the sums at the reference grid, every ``step``-th
    position, so the last (and largest) addition shrinks by that factor.
    """
    starts = np.asarray(starts, dtype=np.intp)
    result, offset, power, width, rem = None, 0, a, 1, p
    prev = half = None
    while True:
        if rem & 1:
            idx = starts + offset
            if power is None:  # the top level, formed at ``idx`` only
                piece = np.take(prev, idx, axis=axis) + np.take(prev, idx + half, axis=axis)
            else:
                piece = np.take(power, idx, axis=axis)
            result = piece if result is None else result + piece
            offset += width
        rem >>= 1
        if not rem:
            return result
        if rem == 1:
            prev, half, power = power, width, None
        else:
            length = power.shape[axis] - width
            idx = [slice(None)] * power.ndim
            lo, hi = list(idx), list(idx)
            lo[axis], hi[axis] = slice(0, length), slice(width, width + length)
            power = power[tuple(lo)] + power[tuple(hi)]
        width *= 2


def _excluded_offsets(g: np.ndarray | None, r: int) -> np.ndarray | None:
    """``(2r+1, 2r+1)`` mask of offsets whose noise correlation exceeds the limit."""
    if g is None:
        return None
    cy, cx = g.shape[0] - 1, g.shape[1] - 1
    size = (2 * cy + 1, 2 * cx + 1)  # no wrap-around: circular == linear correlation
    acf = np.fft.fftshift(np.fft.irfft2(np.abs(np.fft.rfft2(g, size)) ** 2, size))
    nd = 2 * r + 1
    mask = np.zeros((nd, nd), bool)
    ry, rx = min(r, cy), min(r, cx)
    mask[r - ry : r + ry + 1, r - rx : r + rx + 1] = (
        np.abs(acf[cy - ry : cy + ry + 1, cx - rx : cx + rx + 1]) > _EXCLUDE_CORRELATION
    )
    mask[r, r] = False
    return mask if mask.any() else None


def _min_candidates(h, w, p, r, ys, xs, excluded) -> int:
    """Fewest admissible candidates (in-image, not excluded) of any reference."""
    nd = 2 * r + 1
    allowed = np.ones((nd, nd)) if excluded is None else (~excluded).astype(float)
    table = np.zeros((nd + 1, nd + 1))
    table[1:, 1:] = allowed.cumsum(0).cumsum(1)
    y_lo = r - np.minimum(r, ys)[:, None]
    y_hi = r + np.minimum(r, h - p - ys)[:, None] + 1
    x_lo = r - np.minimum(r, xs)[None, :]
    x_hi = r + np.minimum(r, w - p - xs)[None, :] + 1
    count = table[y_hi, x_hi] - table[y_lo, x_hi] - table[y_hi, x_lo] + table[y_lo, x_lo]
    return round(float(count.min()))


def _match(m, ys, xs, p, r, n, excluded):
    """Top-``n`` matches (SSD on ``m``) for the references ``ys × xs``.

    Returns the matched positions ``(qy, qx)``, each ``(len(ys) * len(xs), n)``:
    the reference first, then by increasing distance (ties in raster order).
    """
    if COMPILED:
        nd = 2 * r + 1
        excl = np.zeros(nd * nd, bool) if excluded is None else excluded.ravel()
        mf = np.ascontiguousarray(m, dtype=np.float32)
        return _kernels().match(mf, ys.astype(np.intp), xs.astype(np.intp), p, r, n, excl)
    h, w = m.shape
    nd = 2 * r + 1
    mf = m.astype(np.float32)
    mp = np.pad(mf, r)
    ny, nx = ys.size, xs.size
    dist = np.empty((ny, nx, nd * nd), np.float32)
    row_lo, row_hi = int(ys[0]), int(ys[-1]) + p
    a = mf[row_lo:row_hi, None, :]
    yrel = ys - row_lo
    shifted_x = xs[None, :] + np.arange(-r, r + 1)[:, None]  # (nd, nx)
    col_bad = (shifted_x < 0) | (shifted_x > w - p)
    for iy, dy in enumerate(range(-r, r + 1)):
        rows = mp[r + row_lo + dy : r + row_hi + dy]
        sq = a - sliding_window_view(rows, w, axis=1)  # (rows, nd: shift dx, w)
        sq *= sq
        s = _box_sum_at(_box_sum_at(sq, p, 0, yrel), p, 2, xs)  # (ny, nd, nx)
        s[:, col_bad] = np.inf
        s[((ys + dy) < 0) | ((ys + dy) > h - p)] = np.inf
        dist[:, :, iy * nd : (iy + 1) * nd] = s.transpose(0, 2, 1)
    if excluded is not None:
        dist[:, :, excluded.ravel()] = np.inf
    dist[:, :, r * nd + r] = -1.0  # the reference always comes first
    flat = dist.reshape(ny * nx, nd * nd)
    if n < nd * nd:
        sel = np.argpartition(flat, n - 1, axis=1)[:, :n]
        sel.sort(axis=1)  # raster order, so that the stable sort breaks ties by it
    else:
        sel = np.tile(np.arange(nd * nd), (ny * nx, 1))
    d = np.take_along_axis(flat, sel, axis=1)
    sel = np.take_along_axis(sel, np.argsort(d, axis=1, kind="stable"), axis=1)
    qy = (ys[:, None, None] + (sel.reshape(ny, nx, n) // nd - r)).reshape(-1, n)
    qx = (xs[None, :, None] + (sel.reshape(ny, nx, n) % nd - r)).reshape(-1, n)
    return qy, qx


# The transforms avoid large matrix products on purpose: multi-threaded BLAS brings
# little here and is several times slower when the cores are shared.
def _patch_spectra(img: np.ndarray, row0: int, row1: int, c: np.ndarray) -> np.ndarray:
    """Orthonormal 2-D DCT ``C X Cᵀ`` of every ``p × p`` patch with top row in ``[row0, row1)``.

    Separable over all positions at once (1-D DCTs of every row window, then of every
    column window of those), so each patch's spectrum is computed by the same
    operations wherever it lies. Shape ``(row1 - row0, cols - p + 1, p²)``, the
    coefficients in ``(k_y, k_x)`` raster order.
    """
    p = c.shape[0]
    if COMPILED:
        out = np.empty((row1 - row0, img.shape[1] - p + 1, p * p))
        _kernels().patch_spectra(np.ascontiguousarray(img, dtype=np.float64), row0, row1, c, out)
        return out
    rows = sliding_window_view(img[row0 : row1 + p - 1], p, axis=1) @ c.T  # (y, x, k_x)
    spec = sliding_window_view(rows, p, axis=0) @ c.T  # (y, x, k_x, k_y)
    return spec.swapaxes(2, 3).reshape(row1 - row0, -1, p * p)


class _Stage:
    """One collaborative-filtering pass: hard thresholding or Wiener (with a pilot).

    The image is filtered band by band (:meth:`band`, independent, so bands can run
    side by side); :meth:`result` adds the bands' slabs in band order and normalises.
    """

    def __init__(self, z, pilot, *, var2d, strength, p, n, memo=None):
        self.z, self.pilot, self.p, self.n, self.memo = z, pilot, p, n, memo
        self.c = _dct_matrix(p)
        var = var2d.ravel()
        self.var = np.maximum(var, 1e-12 * var.max())  # guards 0/0 for exotic kernels
        self.thr = _LAMBDA_3D * strength * np.sqrt(self.var)
        self.noise_var = strength * strength * self.var
        self.win = np.outer(np.kaiser(p, _KAISER_BETA), np.kaiser(p, _KAISER_BETA)).ravel()
        self.offs = (np.arange(p)[:, None] * z.shape[1] + np.arange(p)[None, :]).ravel()

    def band(self, qy, qx, per_batch):
        """Filter the groups of one band of matches ``(qy, qx)``, each ``(groups, n)``.

        The 2-D spectra of every patch whose top row lies in the band are computed
        once, however many groups each patch joins (on average 16 / 9 of them in stage
        1 and 32 / 9 in stage 2 with the defaults). Returns ``(row0, num, tl)``: the
        weighted estimates aggregated on rows ``row0 ..`` of the image (flattened) and
        the group weight of each patch at its top-left pixel.
        """
        row0, row1 = int(qy.min()), int(qy.max()) + 1
        w = self.z.shape[1]
        spectra = _noisy_spectra(self.z, row0, row1, self.c, self.memo)
        pilot = None if self.pilot is None else _patch_spectra(self.pilot, row0, row1, self.c)
        if COMPILED:
            return self._band_compiled(qy, qx, row0, row1, spectra, pilot)
        num = np.zeros((row1 - row0 + self.p - 1) * w)
        tl = np.zeros(num.size)
        for i in range(0, qy.shape[0], per_batch):
            gy, gx = qy[i : i + per_batch].T - row0, qx[i : i + per_batch].T  # group axis first
            est, weight = self._filter(spectra[gy, gx], None if pilot is None else pilot[gy, gx])
            base = gy * w + gx
            num += np.bincount((base[:, :, None] + self.offs).ravel(), est.ravel(), num.size)
            tl += np.bincount(base.ravel(), np.tile(weight, self.n), num.size)
        return row0, num, tl

    def _band_compiled(self, qy, qx, row0, row1, spectra, pilot):
        """:meth:`band` by :mod:`._bm3d_kernels`: the patch spectra added per position
        (each position inverted once), the same result to rounding."""
        p, w = self.p, self.z.shape[1]
        rows, cols = row1 - row0, w - p + 1
        acc = np.zeros((rows * cols, p * p))
        tl = np.zeros(rows * cols)
        hard = pilot is None
        _kernels().filter_band(
            np.ascontiguousarray(spectra),
            np.ascontiguousarray(spectra if hard else pilot),
            np.ascontiguousarray(qy, dtype=np.intp),
            np.ascontiguousarray(qx, dtype=np.intp),
            row0,
            self.thr,
            self.noise_var,
            self.var,
            hard,
            _group_transform(self.n),
            acc,
            tl,
        )
        num = np.zeros((rows + p - 1) * w)
        _kernels().overlap_add(acc, tl, self.c, self.win, rows, cols, w, num)
        tl_img = np.zeros((rows + p - 1, w))
        tl_img[:rows, :cols] = tl.reshape(rows, cols)
        return row0, num, tl_img.ravel()

    def _inverse(self, spec):
        n, b, q = spec.shape
        x = _group_inverse(spec).reshape(n * b, self.p, self.p)
        x = np.matmul(self.c.T, x)
        x = np.matmul(self.c.T, x.swapaxes(1, 2)).swapaxes(1, 2)
        return x.reshape(n, b, q)

    def _filter(self, patches, pilot):
        """Shrink the groups of 2-D patch spectra ``(n, b, p²)``: estimates and weights."""
        spec = _group_forward(patches)
        if pilot is None:
            keep = np.abs(spec) > self.thr
            keep[0, :, 0] = True
            spec *= keep
            weight = 1.0 / (keep.sum(axis=0) * self.var).sum(axis=1)
        else:
            gain = _group_forward(pilot)
            gain *= gain
            gain /= gain + self.noise_var
            gain[0, :, 0] = 1.0
            spec *= gain
            gain *= gain
            weight = 1.0 / (gain.sum(axis=0) * self.var).sum(axis=1)
        est = self._inverse(spec)
        est *= weight[:, None] * self.win
        return est, weight

    def result(self, parts):
        """Add the bands' ``(row0, num, tl)`` in order and divide by the window weights."""
        h, w = self.z.shape
        p = self.p
        num, tl_all = np.zeros(h * w), np.zeros(h * w)
        for row0, part, tl in parts:
            num[row0 * w : row0 * w + part.size] += part
            tl_all[row0 * w : row0 * w + tl.size] += tl
        tl = tl_all.reshape(h, w)[: h - p + 1, : w - p + 1]
        den = np.zeros((h, w))
        win = self.win.reshape(p, p)
        for u in range(p):
            for v in range(p):
                den[u : u + h - p + 1, v : v + w - p + 1] += win[u, v] * tl
        return num.reshape(h, w) / den


# Stage-1 matches depend on the noisy image and the geometry only, not on the
# strength: the calibration of a plan filters the same small crops at several
# strengths, and looks them up here (keyed by the image's bytes, so exact).
_MATCHES: OrderedDict = OrderedDict()
_MATCHES_LOCK = threading.Lock()  # the calibration filters crops in threads


def _match_memo(img: np.ndarray, geometry: tuple, excluded, digest=None) -> tuple | None:
    if img.size > _MEMO_PIXELS:
        return None
    digest = _digest(img) if digest is None else digest
    mask = b"" if excluded is None else np.packbits(excluded).tobytes()
    return (img.shape, img.dtype.str, digest, geometry, mask)


# The 2-D spectra of the noisy image's patches are the same in both stages and at
# every strength: remembered per band (keyed by the image's digest, so exact), at most
# _SPECTRA_BYTES in all. Read only, by both the numpy and the compiled filtering.
_SPECTRA: OrderedDict = OrderedDict()
_SPECTRA_LOCK = threading.Lock()


def _digest(img: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=16).digest()


def _noisy_spectra(z: np.ndarray, row0: int, row1: int, c: np.ndarray, memo) -> np.ndarray:
    if memo is None:
        return _patch_spectra(z, row0, row1, c)
    key = (memo, row0, row1, c.shape[0], COMPILED)  # the two paths agree to rounding only
    with _SPECTRA_LOCK:
        out = _SPECTRA.get(key)
        if out is not None:
            _SPECTRA.move_to_end(key)
            return out
    out = _patch_spectra(z, row0, row1, c)
    if out.nbytes <= _SPECTRA_BYTES / 4:
        with _SPECTRA_LOCK:
            _SPECTRA[key] = out
            while sum(a.nbytes for a in _SPECTRA.values()) > _SPECTRA_BYTES:
                _SPECTRA.popitem(last=False)
    return out


def _collaborative(
    z, match_img, pilot, *, var2d, strength, p, r, step, n, origin, excluded, memo=None
):
    h, w = z.shape
    ys_all = _grid(h, p, step, origin[0])
    xs = _grid(w, p, step, origin[1])
    n = min(n, _min_candidates(h, w, p, r, ys_all, xs, excluded))
    stage = _Stage(z, pilot, var2d=var2d, strength=strength, p=p, n=n, memo=memo)
    nd = 2 * r + 1
    band_rows = max(1, int(_BAND_BYTES // (4 * xs.size * nd * nd)))
    bands_needed = -(-ys_all.size // band_rows)
    if bands_needed > 1:
        # equal bands, a multiple of _BAND_MULTIPLE of them: the threads share the work
        # evenly (170 reference rows at 512² were 56 + 56 + 56 + 2: one of two threads
        # did two thirds). The split depends on the image only, never on the threads.
        count = -(-bands_needed // _BAND_MULTIPLE) * _BAND_MULTIPLE
        band_rows = -(-ys_all.size // count)
    per_batch = max(1, _BATCH_COEFS // (n * p * p))
    match_key = None
    if pilot is None:
        known = memo[1] if memo is not None and match_img is z else None  # z's digest
        match_key = _match_memo(match_img, (p, r, step, n, origin), excluded, known)
    with _MATCHES_LOCK:
        bands = _MATCHES.get(match_key) if match_key is not None else None
        if bands is not None:
            _MATCHES.move_to_end(match_key)
    if bands is None:
        bands = pmap(
            lambda b0: _match(match_img, ys_all[b0 : b0 + band_rows], xs, p, r, n, excluded),
            range(0, ys_all.size, band_rows),
        )
        if match_key is not None:
            with _MATCHES_LOCK:
                _MATCHES[match_key] = bands
                while len(_MATCHES) > _MEMO_ENTRIES:
                    _MATCHES.popitem(last=False)
    return stage.result(pmap(lambda band: stage.band(*band, per_batch), bands))


# ---------------------------------------------------------------------- the filter
def bm3d(
    image,
    *,
    sigma: float,
    kernel: np.ndarray | None = None,
    strength: float = 1.0,
    stage: str = "both",
    patch_size: int = 8,
    search_radius: int = 12,
    step: int = 3,
    max_matches: int = 16,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Denoise a 2-D image with additive white or correlated Gaussian noise (BM3D).

    Parameters
    ----------
    image : (rows, cols) real array
        Noisy image ``z = y + n``, at least ``patch_size`` pixels along each axis.
        For Poisson / shot noise apply a variance-stabilising transform first.
    sigma : float > 0
        Marginal noise standard deviation, in the image's units.
    kernel : 2-D array of odd sizes with ``sum(kernel**2) == 1``, optional
        Correlated noise ``n = sigma · (white ⊛ kernel)`` (PSD
        ``sigma² |FFT(kernel)|²``), e.g. ``np.ones((1, 5)) / np.sqrt(5)`` for noise
        correlated along the fast scan axis. ``None`` (default): white noise.
    strength : float in [0, 10]
        Scales the hard threshold (``λ = 2.7 · strength``) and the noise variance in
        the Wiener step (``strength² σ_k²``): 1 = standard BM3D, larger = smoother,
        0 returns the input unchanged.
    stage : {"both", "hard"}
        ``"hard"`` returns the hard-thresholding estimate only (~3× faster,
        typically 0.4–0.9 dB worse).
    patch_size : int in [2, 32]
        Side of the square patches (8 is standard).
    search_radius : int in [0, 64]
        Matches are searched within ``±search_radius`` pixels of the reference.
    step : int in [1, patch_size]
        Spacing of the reference-patch grid (smaller = slower, slightly better).
    max_matches : int in [1, 256]
        Patches per group in stage 1; stage 2 uses twice as many. Powers of two use
        the Haar transform across the group. Reduced automatically where the image
        offers fewer candidates.
    origin : (int, int)
        Absolute position of ``image[0, 0]`` in a larger image when processing
        tiles. It anchors the reference grid so that tiles with a halo of
        :func:`support_radius` (clipped at the image borders) reproduce the
        whole-image result.

    Returns
    -------
    float64 ndarray of the input shape.

    Raises
    ------
    ValueError
        Naming the offending parameter: non-real, non-2-D, too small or non-finite
        ``image``; ``sigma <= 0``; a kernel that is not 2-D, odd-sized, finite and
        normalised; integers out of range; a bad ``stage`` or ``origin``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(np.linspace(0, 1, 48), (48, 1))
    >>> noisy = clean + 0.1 * rng.standard_normal(clean.shape)
    >>> out = bm3d(noisy, sigma=0.1)
    >>> bool(np.std(out - clean) < 0.3 * np.std(noisy - clean))
    True
    """
    p = check_int(patch_size, "patch_size", low=2, high=32, hint="8 is standard.")
    r = check_int(search_radius, "search_radius", low=0, high=64, hint="12 is standard.")
    step = check_int(step, "step", low=1, high=p, hint="3 is standard; at most patch_size.")
    n1 = check_int(max_matches, "max_matches", low=1, high=256, hint="16 is standard.")
    stage = check_choice(stage, "stage", ("both", "hard"))
    sigma = check_real(sigma, "sigma", low=0, low_open=True, hint="Pass the noise std, > 0.")
    strength = check_real(strength, "strength", low=0, high=10, hint="1 is standard.")
    g = _check_kernel(kernel)
    try:
        oy, ox = origin
    except (TypeError, ValueError):
        raise ValueError(
            f"origin must be a (row, col) pair of ints; got {short(origin)}. "
            f"Pass the tile's absolute top-left position, e.g. origin=(0, 0)."
        ) from None
    origin = (check_int(oy, "origin[0]"), check_int(ox, "origin[1]"))

    arr = np.asarray(image)
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"image must be a real numeric array; got dtype {arr.dtype}. "
            f"Convert with np.asarray(image, dtype=float)."
        )
    if arr.ndim != 2:
        raise ValueError(
            f"image must be 2-D (rows, cols); got shape {arr.shape}. Process stacks frame by frame."
        )
    if min(arr.shape) < p:
        raise ValueError(
            f"image must be at least patch_size={p} pixels along each axis; got shape "
            f"{arr.shape}. Use a smaller patch_size or a larger image."
        )
    z = check_image(arr, "image", max_ndim=2)  # finite, in range, float64
    if strength == 0.0:
        return z.copy()

    common = dict(
        var2d=noise_coefficient_std(sigma, g, p) ** 2,
        strength=strength,
        p=p,
        r=r,
        step=step,
        origin=origin,
        excluded=_excluded_offsets(g, r),
        memo=(z.shape, _digest(z)) if z.size <= _MEMO_PIXELS else None,
    )
    basic = _collaborative(z, z, None, n=n1, **common)
    if stage == "hard":
        return basic
    return _collaborative(z, basic, basic, n=_WIENER_GROUP_FACTOR * n1, **common)
