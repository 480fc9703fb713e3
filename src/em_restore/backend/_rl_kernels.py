"""Compiled element-wise steps of Richardson–Lucy (numba), used when numba imports.

:func:`em_restore.backend.solvers.iter_richardson_lucy` spends, between its FFT
convolutions, about twenty numpy passes per iteration over the padded frame in one
thread. Here they are three passes, over blocks of rows on the threads of
:mod:`._threads`, each the same float64 operations in the same order as the numpy
code (so the iterates are bit for bit the numpy ones):

* :func:`extrapolate`: ``z = max(x + a (x − x_prev), floor)`` (Biggs–Andrews);
* :func:`ratio`: ``r = (mask y) / max(K z, floor)``;
* :func:`update`: ``corr = Kᵀr / norm``, divided by ``max(1 − τ div(∇z/|∇z|_ε), 0.2)``
  when ``τ > 0`` (circular forward differences, their adjoint), then
  ``x_new = max(z corr, floor)`` and the step ``g = x_new − z``.

Everything runs without the GIL. Compiled once per machine and cached next to this
file (numba's ``cache=True``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["extrapolate", "ratio", "update"]

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}  # IEEE division, as numpy


@numba.njit(**_JIT)
def extrapolate(x, x_prev, a, floor, out, r0, r1):  # pragma: no cover - compiled
    """Rows r0:r1 of ``out = max(x + a (x − x_prev), floor)``."""
    for i in range(r0, r1):
        for j in range(x.shape[1]):
            out[i, j] = max(x[i, j] + a * (x[i, j] - x_prev[i, j]), floor)


@numba.njit(**_JIT)
def ratio(masked, blurred, floor, out, r0, r1):  # pragma: no cover - compiled
    """Rows r0:r1 of ``out = masked / max(blurred, floor)``."""
    for i in range(r0, r1):
        for j in range(masked.shape[1]):
            out[i, j] = masked[i, j] / max(blurred[i, j], floor)


@numba.njit(**_JIT)
def _unit_gradient(z, i, eps2, nx, ny):  # pragma: no cover - compiled
    """Row ``i`` of ``∇z / sqrt(|∇z|² + ε²)`` (circular forward differences)."""
    h, w = z.shape
    below = i + 1 if i + 1 < h else 0
    for j in range(w):
        right = j + 1 if j + 1 < w else 0
        gx = z[i, right] - z[i, j]
        gy = z[below, j] - z[i, j]
        mag = math.sqrt(gx * gx + gy * gy + eps2)
        nx[j] = gx / mag
        ny[j] = gy / mag


@numba.njit(**_JIT)
def update(z, back, norm, tv, eps2, floor, x_new, step, r0, r1):  # pragma: no cover - compiled
    """Rows r0:r1 of the multiplicative update: ``x_new`` and ``step = x_new − z``.

    ``back`` is ``Kᵀ r``; ``tv`` the TV weight (0: none); ``eps2`` is ``ε²``.
    """
    h, w = z.shape
    nx = np.empty(w)
    ny = np.empty(w)
    ny_up = np.empty(w)
    if tv > 0:
        _unit_gradient(z, (r0 - 1) % h, eps2, nx, ny_up)
    for i in range(r0, r1):
        if tv > 0:
            _unit_gradient(z, i, eps2, nx, ny)
        for j in range(w):
            corr = back[i, j] / norm[i, j]
            if tv > 0:
                left = nx[j - 1] if j > 0 else nx[w - 1]
                div = ((nx[j] - left) + ny[j]) - ny_up[j]
                corr = corr / max(1.0 - tv * div, 0.2)
            v = max(z[i, j] * corr, floor)
            x_new[i, j] = v
            step[i, j] = v - z[i, j]
        if tv > 0:
            for j in range(w):
                ny_up[j] = ny[j]
