"""Training losses: SSIM in torch (burst and "train your own"), the paired losses,
the choice ``auto`` stands for, and Neighbor2Neighbor's sub-sampling for
self-supervised training (the formulas are in :mod:`.fit`'s doc)."""

from __future__ import annotations

import numpy as np

__all__ = [
    "N2N_GAMMA",
    "loss_for",
    "loss_value",
    "n2n_indices",
    "n2n_subsample",
    "ssim_torch",
]

#: Weight of Neighbor2Neighbor's regulariser (Huang et al. 2021).
N2N_GAMMA = 2.0


def ssim_torch(x, y, *, data_range: float = 1.0, window: int = 11, sigma: float = 1.5):
    """Mean SSIM of two ``(B, 1, H, W)`` tensors (Gaussian window, valid region)."""
    import torch
    import torch.nn.functional as F

    ax = torch.arange(window, dtype=x.dtype, device=x.device) - window // 2
    g = torch.exp(-(ax**2) / (2 * sigma * sigma))
    g = g / g.sum()
    k = (g[:, None] * g[None, :])[None, None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def f(z):
        return F.conv2d(z, k)

    mx, my = f(x), f(y)
    vx = f(x * x) - mx * mx
    vy = f(y * y) - my * my
    cxy = f(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def loss_for(kind: str, self_supervised: bool, burst: bool) -> str:
    """The loss ``auto`` stands for, or ``kind`` after checking it fits the data."""
    if self_supervised:
        if kind not in ("auto", "l2"):
            raise ValueError(
                f"self-supervised training needs the l2 loss (a noisy target is unbiased only "
                f"in the mean); got {kind!r}: choose 'auto' or 'l2'."
            )
        return "l2"
    if kind == "auto":
        return "l1+ssim" if burst else "l1"
    return kind


def loss_value(kind: str, pred, target):
    """The loss ``kind`` (one of :data:`~.fit_config.LOSSES` but ``auto``) of ``pred``."""
    import torch.nn.functional as F

    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "l2":
        return F.mse_loss(pred, target)
    if kind == "ssim":
        return 1 - ssim_torch(pred, target).mean()
    if kind == "l1+ssim":
        return F.l1_loss(pred, target) + (1 - ssim_torch(pred, target).mean())
    if kind == "gradient":
        d = pred - target
        return (
            F.l1_loss(pred, target)
            + (d[..., 1:, :] - d[..., :-1, :]).abs().mean()
            + (d[..., :, 1:] - d[..., :, :-1]).abs().mean()
        )
    raise ValueError(f"unknown loss {kind!r}")  # pragma: no cover - checked before


# Neighbour cells of each position in a 2×2 cell (index dy*2+dx), sharing an edge.
_NEIGHBOURS = np.array([[1, 2], [0, 3], [0, 3], [1, 2]])


def n2n_indices(gen: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell pixel choices ``(i1, i2)`` of two neighbouring pixels in each 2×2 cell."""
    i1 = gen.integers(4, size=shape)
    i2 = _NEIGHBOURS[i1, gen.integers(2, size=shape)]
    return i1, i2


def n2n_subsample(x, i1, i2):
    """Sub-images ``(g1, g2)`` of ``x`` (B, 1, 2h, 2w) for cell choices (B, 1, h, w)."""
    import torch.nn.functional as F

    cells = F.pixel_unshuffle(x, 2)
    return cells.gather(1, i1), cells.gather(1, i2)
