"""Compiled inner loops of :mod:`.bm3d` (numba), used when numba imports.

Two kernels replace the numpy code of :mod:`.bm3d` step for step:

* :func:`match`, the block matching: the same float32 squared differences, summed
  over rows and then over columns in the same binary-doubling order as
  ``bm3d._box_sum_at`` (so the distances are bit for bit the numpy ones and the
  matches identical, whatever a tile's position), and the ``n`` smallest per
  reference with ties broken by the offset's raster order;
* :func:`filter_band` and :func:`overlap_add`, the collaborative filtering of one
  band: every group gathered from the band's patch spectra, its Haar transform
  across the group (the numpy butterflies, in the same order), hard thresholding
  or Wiener shrinkage with the pilot, the inverse across the group, and the
  weighted patch spectra added up *per patch position*; then every position's sum
  is inverted once (the 2-D inverse DCT is linear, so this equals inverting each
  group's patches and adding them, with 16/9 and 32/9 times fewer inverse
  transforms), windowed and added into the image.

The results agree with the numpy path to rounding (about 1e-14 of the signal,
``tests/test_bm3d.py``). Everything runs without the GIL, so the bands still run
side by side on the threads of :mod:`._threads`. Compiled once per machine and
cached next to this file (numba's ``cache=True``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["filter_band", "match", "overlap_add", "patch_spectra"]

_SQRT_HALF = math.sqrt(0.5)
_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}  # IEEE division, as numpy


@numba.njit(**_JIT)
def _haar_forward(a, out):  # pragma: no cover - compiled
    """``out = T a`` along axis 0 (``bm3d._group_forward``'s butterflies); ``a`` is spent."""
    n, q = a.shape
    m = n
    while m > 1:
        h = m // 2
        for i in range(h):
            ev, od, dif, sm = a[2 * i], a[2 * i + 1], out[h + i], a[i]  # rows: 1-D loops
            for k in range(q):
                e = ev[k]
                o = od[k]
                dif[k] = (e - o) * _SQRT_HALF
                sm[k] = (e + o) * _SQRT_HALF
        m = h
    out0, a0 = out[0], a[0]
    for k in range(q):
        out0[k] = a0[k]


@numba.njit(**_JIT)
def _haar_inverse(y, r):  # pragma: no cover - compiled
    """``r = Tᵀ y`` along axis 0 (``bm3d._group_inverse``'s butterflies)."""
    n, q = y.shape
    r0, y0 = r[0], y[0]
    for k in range(q):
        r0[k] = y0[k]
    m = 1
    while m < n:
        for i in range(m - 1, -1, -1):  # downwards: r[i] is read before it is overwritten
            ri, yi, ev, od = r[i], y[m + i], r[2 * i], r[2 * i + 1]
            for k in range(q):
                a = ri[k]
                d = yi[k]
                ev[k] = (a + d) * _SQRT_HALF
                od[k] = (a - d) * _SQRT_HALF
        m *= 2


@numba.njit(**_JIT)
def _matrix_along_groups(tmat, a, out, transpose):  # pragma: no cover - compiled
    """``out = tmat @ a`` (or ``tmat.T @ a``): the group transform when n is not a power of 2."""
    n, q = a.shape
    for i in range(n):
        for k in range(q):
            out[i, k] = 0.0
        for j in range(n):
            t = tmat[j, i] if transpose else tmat[i, j]
            for k in range(q):
                out[i, k] += t * a[j, k]


@numba.njit(**_JIT)
def filter_band(
    spec, pil, qy, qx, row0, thr, noise_var, var, hard, tmat, acc, tl
):  # pragma: no cover
    """Filter every group of one band and add the results up per patch position.

    ``spec``, ``pil``: ``(rows, cols, p²)`` 2-D DCT spectra of the band's patches (the
    noisy image and the pilot; ``pil`` is ignored when ``hard``); ``qy``, ``qx``:
    ``(groups, n)`` matched positions (absolute rows, ``row0`` the band's first);
    ``thr``, ``noise_var``, ``var``: per 2-D coefficient, as in ``bm3d._Stage``;
    ``tmat``: the group transform (used when ``n`` is not a power of two).
    Adds into ``acc`` ``(rows · cols, p²)`` the weighted patch spectra and into
    ``tl`` ``(rows · cols)`` the group weights, at each patch's position.
    """
    cols = spec.shape[1]
    q = spec.shape[2]
    g_count, n = qy.shape
    pow2 = (n & (n - 1)) == 0
    s = np.empty((n, q))
    t = np.empty((n, q))
    ps = np.empty((n, q))
    pt = np.empty((n, q))
    col = np.empty(q)
    for g in range(g_count):
        for j in range(n):
            y = qy[g, j] - row0
            x = qx[g, j]
            sj, src = s[j], spec[y, x]
            for k in range(q):
                sj[k] = src[k]
            if not hard:
                pj, psrc = ps[j], pil[y, x]
                for k in range(q):
                    pj[k] = psrc[k]
        if pow2:
            _haar_forward(s, t)
            if not hard:
                _haar_forward(ps, pt)
        else:
            _matrix_along_groups(tmat, s, t, False)
            if not hard:
                _matrix_along_groups(tmat, ps, pt, False)
        # t: the group's 3-D spectrum. Its DC (group mean of the patch means) is kept
        # as it is, with gain 1.
        for k in range(q):
            col[k] = 0.0
        col[0] = 1.0
        # (row by row, the group's DC coefficient t[0, 0] left out of the first row)
        if hard:
            for i in range(n):
                ti = t[i]
                for k in range(1 if i == 0 else 0, q):
                    keep = abs(ti[k]) > thr[k]
                    col[k] += 1.0 if keep else 0.0
                    ti[k] = ti[k] if keep else 0.0
        else:
            for i in range(n):
                ti, pti = t[i], pt[i]
                for k in range(1 if i == 0 else 0, q):
                    p2 = pti[k] * pti[k]
                    w = p2 / (p2 + noise_var[k])
                    ti[k] *= w
                    col[k] += w * w
        total = 0.0
        for k in range(q):
            total += col[k] * var[k]
        weight = 1.0 / total
        for i in range(n):
            ti = t[i]
            for k in range(q):
                ti[k] *= weight
        if pow2:
            _haar_inverse(t, s)
        else:
            _matrix_along_groups(tmat, t, s, True)
        for j in range(n):
            pos = (qy[g, j] - row0) * cols + qx[g, j]
            dst, sj = acc[pos], s[j]
            for k in range(q):
                dst[k] += sj[k]
            tl[pos] += weight


@numba.njit(**_JIT)
def overlap_add(acc, tl, c, win, rows, cols, w, num):  # pragma: no cover - compiled
    """``num[(y+u)·w + x+v] += win[u, v] · (Cᵀ S C)[u, v]`` for each position with a weight.

    ``acc``: ``(rows · cols, p²)`` summed patch spectra ``S`` (row-major ``k_y, k_x``);
    ``c``: the DCT matrix; ``win``: the flattened Kaiser window; ``num``: the band's
    rows of the image, flattened (``w`` columns).
    """
    p = c.shape[0]
    tmp = np.empty((p, p))
    out = np.empty(p)
    for y in range(rows):
        for x in range(cols):
            pos = y * cols + x
            if tl[pos] == 0.0:
                continue
            spec = acc[pos]
            for u in range(p):  # tmp = Cᵀ S (over k_y), inner loops contiguous
                tu = tmp[u]
                for b in range(p):
                    tu[b] = 0.0
                for a in range(p):
                    cau = c[a, u]
                    off = a * p
                    for b in range(p):
                        tu[b] += cau * spec[off + b]
            for u in range(p):  # then tmp C (over k_x), windowed and added
                for v in range(p):
                    out[v] = 0.0
                tu = tmp[u]
                for b in range(p):
                    t_ub = tu[b]
                    cb = c[b]
                    for v in range(p):
                        out[v] += t_ub * cb[v]
                base = (y + u) * w + x
                wu = u * p
                for v in range(p):
                    num[base + v] += win[wu + v] * out[v]


@numba.njit(**_JIT)
def _levels(lev, length):  # pragma: no cover - compiled
    """``lev[b][i] = lev[b-1][i] + lev[b-1][i + 2^(b-1)]`` along axis 1 (pairwise sums)."""
    w = lev.shape[2]
    width = 1
    for b in range(1, lev.shape[0]):
        for i in range(length - 2 * width + 1):
            lo_ = lev[b - 1, i]
            hi_ = lev[b - 1, i + width]
            dst = lev[b, i]
            for c in range(w):
                dst[c] = lo_[c] + hi_[c]
        width *= 2


@numba.njit(**_JIT)
def match(mf, ys, xs, p, r, n, excl):  # pragma: no cover - compiled
    """Top-``n`` matches by SSD on the float32 image ``mf``, as ``bm3d._match`` returns them.

    ``ys``, ``xs``: reference rows / columns (sorted); ``excl``: ``(2r+1)²`` booleans,
    the offsets left out. Returns ``(qy, qx)``, each ``(len(ys) · len(xs), n)``: the
    reference first, then by increasing distance (ties in raster order of the offset).
    """
    h, w = mf.shape
    nd = 2 * r + 1
    ny = ys.size
    nx = xs.size
    big = np.float32(np.inf)
    nlev = 1
    while (1 << nlev) <= p:
        nlev += 1
    # p's binary decomposition, lowest bit first: (level, offset) of each piece, the
    # order in which bm3d._box_sum_at adds them
    pl = np.empty(nlev, np.intp)
    po = np.empty(nlev, np.intp)
    npc = 0
    offset = 0
    for b in range(nlev):
        if (p >> b) & 1:
            pl[npc] = b
            po[npc] = offset
            offset += 1 << b
            npc += 1
    row_lo = ys[0]
    rows = ys[ny - 1] + p - row_lo
    # offset-major: each offset's distances are written side by side (an (ny, nx, nd²)
    # table, written with a stride of nd², evicted the sums from the cache: 2× slower at 512²)
    dist = np.empty((nd * nd, ny, nx), np.float32)
    lev = np.zeros((nlev, rows, w), np.float32)
    clev = np.zeros((nlev, 1, w), np.float32)
    for iy in range(nd):
        dy = iy - r
        for ix in range(nd):
            dx = ix - r
            o = iy * nd + ix
            if excl[o]:
                dist[o] = big
                continue
            c_lo = max(0, -dx)
            c_hi = min(w, w - dx)
            # squared differences on every row of the band (outside the image: 0, and
            # only out-of-range candidates, set to inf below, use them)
            for i in range(rows):
                ya = row_lo + i
                yb = ya + dy
                if yb < 0 or yb >= h:
                    for cc in range(w):
                        lev[0, i, cc] = 0.0
                    continue
                for cc in range(c_lo):
                    lev[0, i, cc] = 0.0
                ra = mf[ya, c_lo:c_hi]
                rb = mf[yb, c_lo + dx : c_hi + dx]
                out = lev[0, i, c_lo:c_hi]
                for k in range(c_hi - c_lo):
                    d = ra[k] - rb[k]
                    out[k] = d * d
                for cc in range(c_hi, w):
                    lev[0, i, cc] = 0.0
            _levels(lev, rows)
            for yi in range(ny):
                y0 = ys[yi]
                if y0 + dy < 0 or y0 + dy > h - p:
                    for xi in range(nx):
                        dist[o, yi, xi] = big
                    continue
                yr = y0 - row_lo
                c0 = clev[0, 0]
                src0 = lev[pl[0], yr]
                for cc in range(w):  # sums over the patch's rows
                    c0[cc] = src0[cc]
                for k in range(1, npc):
                    srck = lev[pl[k], yr + po[k]]
                    for cc in range(w):
                        c0[cc] = c0[cc] + srck[cc]
                width = 1
                for b in range(1, nlev):  # then over its columns, the same way
                    lo_ = clev[b - 1, 0]
                    hi_ = clev[b - 1, 0, width:]
                    dst = clev[b, 0]
                    for k in range(w - 2 * width + 1):
                        dst[k] = lo_[k] + hi_[k]
                    width *= 2
                drow = dist[o, yi]
                for xi in range(nx):
                    x0 = xs[xi]
                    if x0 + dx < 0 or x0 + dx > w - p:
                        drow[xi] = big
                        continue
                    total = clev[pl[0], 0, x0]
                    for k in range(1, npc):
                        total = total + clev[pl[k], 0, x0 + po[k]]
                    drow[xi] = total
    ref = r * nd + r
    qy = np.empty((ny * nx, n), np.intp)
    qx = np.empty((ny * nx, n), np.intp)
    bd = np.empty(n, np.float32)
    bi = np.empty(n, np.intp)
    for yi in range(ny):
        for xi in range(nx):
            dist[ref, yi, xi] = -1.0  # the reference always comes first
            k = 0
            for o in range(nd * nd):  # insertion into the n best so far
                d = dist[o, yi, xi]
                if k == n and not d < bd[n - 1]:
                    continue  # a tie keeps the earlier offset
                j = k if k < n else n - 1
                while j > 0 and d < bd[j - 1]:
                    bd[j] = bd[j - 1]
                    bi[j] = bi[j - 1]
                    j -= 1
                bd[j] = d
                bi[j] = o
                if k < n:
                    k += 1
            g = yi * nx + xi
            for j in range(n):
                qy[g, j] = ys[yi] + bi[j] // nd - r
                qx[g, j] = xs[xi] + bi[j] % nd - r
    return qy, qx


@numba.njit(**_JIT)
def patch_spectra(img, row0, row1, c, out):  # pragma: no cover - compiled
    """``out[y, x] = C P Cᵀ`` (raster ``k_y, k_x``) of the patch at ``(row0 + y, x)``.

    ``bm3d._patch_spectra``'s separable transform: the 1-D DCT of every row window
    first (each shared by the ``p`` patches that contain it), then of every column
    window of those. ``out`` is ``(row1 - row0, cols - p + 1, p²)``.
    """
    p = c.shape[0]
    cols = img.shape[1] - p + 1
    nr = row1 - row0 + p - 1
    rows = np.empty((nr, cols, p))
    for r in range(nr):
        src = img[row0 + r]
        for x in range(cols):
            dst = rows[r, x]
            for k in range(p):
                ck = c[k]
                acc = 0.0
                for v in range(p):
                    acc += src[x + v] * ck[v]
                dst[k] = acc
    tmp = np.empty(p)
    for y in range(row1 - row0):
        for x in range(cols):
            o = out[y, x]
            for k in range(p):
                ck = c[k]
                for b in range(p):
                    tmp[b] = 0.0
                for u in range(p):
                    cu = ck[u]
                    rs = rows[y + u, x]
                    for b in range(p):
                        tmp[b] += cu * rs[b]
                off = k * p
                for b in range(p):
                    o[off + b] = tmp[b]
