"""The torch device a model runs on, chosen once for inference, training and loading."""

from __future__ import annotations

from typing import Any

__all__ = ["select_device"]


def select_device(device: Any = None):
    """``None``/``"auto"``: CUDA, else Apple MPS, else CPU; otherwise ``torch.device(device)``."""
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'mps'; got {device!r}."
        ) from None
