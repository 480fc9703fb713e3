"""The eight flips and rotations used to augment training pairs and bursts."""

from __future__ import annotations

import numpy as np

__all__ = ["dihedral", "dihedral_vec", "undo_dihedral"]


def dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations (``k`` in 0..7) of the last two axes."""
    a = np.rot90(a, k % 4, axes=(-2, -1))
    return a[..., ::-1] if k >= 4 else a


def undo_dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """The inverse of :func:`dihedral` ``(., k)``: ``undo_dihedral(dihedral(a, k), k) == a``."""
    a = a[..., ::-1] if k >= 4 else a
    return np.rot90(a, -(k % 4), axes=(-2, -1))


def dihedral_vec(v: np.ndarray, k: int) -> np.ndarray:
    """``(..., 2)`` displacements ``(dy, dx)`` under the image transform ``dihedral(., k)``."""
    v = np.asarray(v, dtype=np.float32)
    for _ in range(k % 4):  # np.rot90 (counter-clockwise): (dy, dx) -> (-dx, dy)
        v = np.stack([-v[..., 1], v[..., 0]], axis=-1)
    if k >= 4:  # then a left-right flip
        v = np.stack([v[..., 0], -v[..., 1]], axis=-1)
    return v
