"""The noise model: Poisson–Gaussian variance ``a·level + b`` and a noise kernel.

:class:`NoiseModel` is what :func:`.noise.estimate_noise` returns and what every
restoration, the VST and the fidelity maps take; :func:`check_kernel` checks a kernel.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.fft

from ._args import KeyEquality, check_int, check_real, short

# --------------------------------------------------------------------------- model


def check_kernel(kernel: Any, name: str = "kernel") -> np.ndarray:
    g = np.asarray(kernel, dtype=float) if kernel is not None else np.ones((1, 1))
    if g.ndim != 2 or g.shape[0] % 2 == 0 or g.shape[1] % 2 == 0:
        raise ValueError(
            f"{name} must be a 2-D array with odd sides (centre = zero lag); got "
            f"{short(g)}. Use [[1.0]] for white noise."
        )
    if not np.isfinite(g).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    energy = float(np.sum(g * g))
    if energy <= 0:
        raise ValueError(f"{name} must not be all zeros. Use [[1.0]] for white noise.")
    g = g / math.sqrt(energy)
    g.setflags(write=False)
    return g


def pad_centred(g: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Kernel zero-padded to ``shape`` with its centre at index (0, 0) (folds if larger)."""
    out = np.zeros(shape)
    ky, kx = g.shape
    ys = (np.arange(ky) - ky // 2) % shape[0]
    xs = (np.arange(kx) - kx // 2) % shape[1]
    np.add.at(out, (ys[:, None], xs[None, :]), g)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class NoiseModel(KeyEquality):
    """Poisson–Gaussian noise in ADU with a spatial correlation kernel.

    ``var(pixel) = gain * (mean - offset) + readout_sigma**2`` and the noise field
    is ``sqrt(var) * (white ⊛ kernel)``.

    Parameters
    ----------
    gain : float
        ADU per detected electron, ``>= 0`` (0: signal-independent Gaussian noise).
    offset : float
        Baseline in ADU (mean at zero electrons).
    readout_sigma : float
        Signal-independent standard deviation in ADU, ``>= 0``.
    kernel : array_like, optional
        Odd-sided 2-D zero-phase kernel ``g``; normalised here to ``sum(g**2) == 1``
        and stored read-only. Default ``[[1.0]]`` (white noise).
    signal_range : (float, float), optional
        The range of local means (ADU) the model was estimated on, e.g. the 1st
        and 99th percentiles; used by :meth:`is_signal_dependent`.

    Examples
    --------
    >>> m = NoiseModel(gain=2.0, offset=100.0, readout_sigma=3.0)
    >>> float(m.variance(150.0))
    109.0
    >>> m.is_correlated(), NoiseModel.from_dict(m.to_dict()) == m
    (False, True)
    """

    gain: float
    offset: float
    readout_sigma: float
    kernel: np.ndarray = dataclasses.field(default_factory=lambda: np.ones((1, 1)))
    signal_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "gain", check_real(self.gain, "gain", low=0, hint="gain is ADU per electron."))
        s(self, "offset", check_real(self.offset, "offset"))
        s(self, "readout_sigma", check_real(self.readout_sigma, "readout_sigma", low=0))
        s(self, "kernel", check_kernel(self.kernel))
        if self.signal_range is not None:
            try:
                lo, hi = self.signal_range
            except (TypeError, ValueError):
                raise ValueError(
                    f"signal_range must be None or a (low, high) pair; got "
                    f"{short(self.signal_range)}."
                ) from None
            lo = check_real(lo, "signal_range[0]")
            hi = check_real(hi, "signal_range[1]", low=lo)
            s(self, "signal_range", (lo, hi))

    # -------------------------------------------------------------- properties

    def variance(self, mean) -> np.ndarray:
        """Marginal noise variance at a noise-free level ``mean`` (ADU²), clipped at 0."""
        m = np.asarray(mean, dtype=float)
        return np.maximum(self.gain * (m - self.offset) + self.readout_sigma**2, 0.0)

    def is_signal_dependent(self, *, threshold: float = 1.25) -> bool:
        """Whether the noise std varies by more than ``threshold`` × over the signal range.

        Uses :attr:`signal_range` (set by :func:`estimate_noise`); without it, any
        positive ``gain`` counts as signal-dependent.
        """
        if self.gain <= 0:
            return False
        if self.signal_range is None:
            return True
        v_lo, v_hi = self.variance(np.asarray(self.signal_range))
        if v_hi <= 0:
            return False
        return bool(v_lo <= 0 or v_hi / v_lo > threshold**2)

    def is_correlated(self, *, threshold: float = 0.02) -> bool:
        """Whether more than ``threshold`` of the kernel's energy lies off its centre."""
        g = self.kernel
        centre = g[g.shape[0] // 2, g.shape[1] // 2]
        return bool(1.0 - centre**2 > threshold)

    def psd(self, shape) -> np.ndarray:
        """Normalised noise power spectrum ``|FFT(g)|**2`` on a ``shape`` grid (mean 1).

        The kernel is zero-padded with its centre at index ``(0, 0)`` (unshifted
        FFT layout, as ``numpy.fft.fft2``); white noise gives all ones.
        """
        if isinstance(shape, int | np.integer):
            shape = (int(shape), int(shape))
        shape = tuple(check_int(s, f"shape[{i}]", low=1) for i, s in enumerate(shape))
        if len(shape) != 2:
            raise ValueError(f"shape must be (rows, cols); got {shape!r}.")
        return np.abs(scipy.fft.fft2(pad_centred(self.kernel, shape))) ** 2

    # ---------------------------------------------------------- serialisation

    def to_dict(self) -> dict:
        """JSON-able dict (kernel as a nested list rounded to 6 decimals)."""
        return {
            "model": "poisson-gaussian",
            "gain": float(self.gain),
            "offset": float(self.offset),
            "readout_sigma": float(self.readout_sigma),
            "kernel": np.round(self.kernel, 6).tolist(),
            "signal_range": None if self.signal_range is None else list(self.signal_range),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> NoiseModel:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"d must be a dict from NoiseModel.to_dict(); got {short(d)}.")
        missing = [k for k in ("gain", "offset", "readout_sigma") if k not in d]
        if missing:
            raise ValueError(f"d lacks key(s) {missing}; expected the output of to_dict().")
        sr = d.get("signal_range")
        return cls(
            gain=d["gain"],
            offset=d["offset"],
            readout_sigma=d["readout_sigma"],
            kernel=d.get("kernel", [[1.0]]),
            signal_range=None if sr is None else tuple(sr),
        )

    # -------------------------------------------------------------- equality

    def _key(self):
        return (
            self.gain,
            self.offset,
            self.readout_sigma,
            self.kernel.shape,
            np.round(self.kernel, 6).tobytes(),
            self.signal_range,
        )


def check_noise_model(noise, name: str, fix: str) -> NoiseModel:
    """``noise`` if it is a :class:`NoiseModel` with some noise; else a one-line error
    (``fix`` says what to pass instead)."""
    if not isinstance(noise, NoiseModel):
        raise ValueError(
            f"{name} must be a NoiseModel; got {type(noise).__name__} {short(noise)}. {fix}"
        )
    if noise.gain <= 0 and noise.readout_sigma <= 0:
        raise ValueError(
            f"{name} has no noise (gain 0, readout_sigma 0): nothing to test or stabilise "
            f"against. {fix}"
        )
    return noise
