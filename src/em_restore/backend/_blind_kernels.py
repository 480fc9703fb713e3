"""Compiled inner loops of the blind estimator's L0 latent step (numba), used when numba imports.

:func:`em_restore.backend.blind._l0_latent` alternates, for a rising penalty ``β``, a
spatial step (forward differences, the L0 hard threshold of the gradient magnitude,
the adjoint of the differences) and a spectral step (the closed-form update of the
latent's spectrum). In numpy each is a dozen passes over the frame, in one thread;
here each is one pass, and the rows (spectral rows) are split between the threads of
:mod:`._threads`:

* :func:`shrink_divergence` writes ``Dxᵀ gx + Dyᵀ gy`` for a block of rows, where
  ``g = ∇x`` is kept only where ``|∇x|² >= λ/β``. The same float32 operations in the
  same order as the numpy code (``gx² + gy²``, then
  ``((gx[j-1] − gx[j]) + gy[i-1]) − gy[i]``), so the result is bit for bit the numpy
  one; returns how many pixels were kept;
* :func:`update_spectrum` writes ``(β·F(div) + num0) / (den0 + β·dden)`` (real and
  imaginary parts scaled separately, as numpy's complex-by-real products do), or
  ``num0 / (den0 + β·dden)`` when nothing was kept (``F(0) = 0``: no transform).

Everything runs without the GIL. Compiled once per machine and cached next to this
file (numba's ``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["shrink_divergence", "update_spectrum"]

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}  # IEEE division, as numpy


@numba.njit(**_JIT)
def _masked_gradient(x, i, thr, gx, gy):  # pragma: no cover - compiled
    """Row ``i`` of the circular forward differences, zeroed where ``gx² + gy² < thr``."""
    h, w = x.shape
    below = i + 1 if i + 1 < h else 0
    kept = 0
    zero = np.float32(0.0)
    for j in range(w - 1):  # no wrap-around inside the row: a loop the compiler vectorises
        a = x[i, j + 1] - x[i, j]
        b = x[below, j] - x[i, j]
        keep = a * a + b * b >= thr
        gx[j] = a if keep else zero
        gy[j] = b if keep else zero
        kept += keep
    a = x[i, 0] - x[i, w - 1]
    b = x[below, w - 1] - x[i, w - 1]
    keep = a * a + b * b >= thr
    gx[w - 1] = a if keep else zero
    gy[w - 1] = b if keep else zero
    return kept + keep


@numba.njit(**_JIT)
def shrink_divergence(x, thr, div, r0, r1):  # pragma: no cover - compiled
    """``div[r0:r1] = (Dxᵀ gx + Dyᵀ gy)[r0:r1]``, thresholded gradient; returns pixels kept."""
    h, w = x.shape
    gx = np.empty(w, np.float32)
    gy = np.empty(w, np.float32)
    gy_up = np.empty(w, np.float32)
    _masked_gradient(x, (r0 - 1) % h, thr, gx, gy_up)  # gx of the row above: unused
    kept = 0
    for i in range(r0, r1):
        kept += _masked_gradient(x, i, thr, gx, gy)
        div[i, 0] = ((gx[w - 1] - gx[0]) + gy_up[0]) - gy[0]
        for j in range(1, w):
            div[i, j] = ((gx[j - 1] - gx[j]) + gy_up[j]) - gy[j]
        for j in range(w):
            gy_up[j] = gy[j]
    return kept


@numba.njit(**_JIT)
def update_spectrum(num, num0, den0, dden, beta, empty, r0, r1):  # pragma: no cover - compiled
    """Rows r0:r1 of ``num = (β·num + num0) / (den0 + β·dden)`` (``num0 / (…)`` when ``empty``).

    ``num`` and ``num0`` are complex64 spectra viewed as float32 ``(rows, cols, 2)``;
    ``beta`` is float32.
    """
    one = np.float32(1.0)
    for i in range(r0, r1):
        for j in range(num.shape[1]):
            inv = one / (dden[i, j] * beta + den0[i, j])
            if empty:
                num[i, j, 0] = num0[i, j, 0] * inv
                num[i, j, 1] = num0[i, j, 1] * inv
            else:
                num[i, j, 0] = (num[i, j, 0] * beta + num0[i, j, 0]) * inv
                num[i, j, 1] = (num[i, j, 1] * beta + num0[i, j, 1]) * inv
