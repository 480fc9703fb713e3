"""How a network's input is put on a common scale, and how its output is mapped back.

A model's config names its *rule* (``normalisation``); the rule, computed on the
whole frame (never per tile, so tiles agree), gives a :class:`Norm` whose
:meth:`~Norm.forward` maps ADU to the network's units and :meth:`~Norm.inverse`
maps the network's output back to ADU. Training uses the same :class:`Norm` for
the input and the target.

Rules
-----
``{"kind": "percentile", "low": p, "high": q}``
    ``xn = (x - P_p) / (P_q - P_p)`` with the frame's percentiles (scale 1 for a
    flat frame). Gain- and offset-free, but the network must guess from the
    picture alone how noisy it is, and it guesses from what its training data
    looked like.

``{"kind": "noise", "scale": k}`` or ``{"kind": "noise", "low": p, "high": q}``
    The frame's own noise model sets the units. The Poisson–Gaussian model
    ``var = gain·(mean − offset) + readout²`` is estimated on the frame
    (:func:`~em_restore.backend.noise.estimate_noise`; or passed in), the
    generalised Anscombe transform ``f`` (:func:`stabilise`, continued linearly
    below zero counts so that it is invertible everywhere) makes the noise of
    unit variance, and ::

        xn = (f(x) − median f(x)) / k

    (with ``low``/``high`` instead of ``scale``: ``xn = (f(x) − P_p f) / (P_q f − P_p f)``,
    the percentile rule in the stabilised domain: the signal always spans about
    [0, 1] and the noise, now of one level everywhere in the frame, is
    ``1 / (P_q f − P_p f)``), so the noise has standard deviation ``1/k`` whatever the
    detector, the gain,
    the offset or the dose, and the signal is measured in noise standard
    deviations: the network is told how noisy the frame is instead of guessing.
    Back: ``x̂ = f⁻¹(k·ŷ + median)`` with the algebraic inverse (training targets
    are ``f`` of the noise-free expectation, so the algebraic inverse is exact).
    Under ``a·x + b`` (``a > 0``) the estimated model maps to ``gain·a``,
    ``offset·a + b``, ``readout·a``, ``f`` is unchanged, and the restoration maps
    by the same ``a·x̂ + b`` (tested for ``a`` in {0.1, 7, 300} and ``b`` in
    {0, 1000}). A frame without measurable noise (a noise-free rendering, a flat
    field) gets Gaussian noise of 1e-3 of its 0.1–99.9 percentile range, which
    is also affine-equivariant. A frame whose stabilised 0.1–99.9 percentile span
    exceeds :data:`SPAN_MAX` noise s.d. (beyond any dose the networks were trained
    on, or a noise estimate fooled by the content) gets its noise variance scaled
    up to that span.

Outliers: both rules hand :func:`~.inference.replace_outliers` the input on the
``[0, 1]`` scale of its own 0.1–99.9 percentiles (the percentile rule's units),
so X-ray spikes and dead pixels are treated alike under both.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "NORMALISATIONS",
    "Norm",
    "check_rule",
    "frame_noise",
    "normaliser",
    "outlier_units",
    "stabilise",
    "unstabilise",
]

NORMALISATIONS = ("percentile", "noise")
_KEYS = {
    "percentile": ({"kind", "low", "high"},),
    "noise": ({"kind", "scale"}, {"kind", "low", "high"}),
}
#: Gaussian noise given to a frame without measurable noise, in its percentile range.
_FLOOR = 1e-3
#: Largest 0.1-99.9 percentile span of a stabilised frame, in noise s.d.: four times
#: that of a full-contrast frame at 1000 e⁻/px (2√1000 ≈ 63). A frame that measures
#: more (a nearly noise-free recording, or a noise estimate fooled by its content)
#: is treated as having the noise that gives this span.
SPAN_MAX = 256.0


def check_rule(rule: Any) -> dict:
    """A normalisation rule, checked and with floats; a one-line ``ValueError`` otherwise.

    Examples
    --------
    >>> check_rule({"kind": "noise", "scale": 4})
    {'kind': 'noise', 'scale': 4.0}
    >>> check_rule({"kind": "percentile", "low": 0.1, "high": 99.9})
    {'kind': 'percentile', 'low': 0.1, 'high': 99.9}
    """
    kind = rule.get("kind") if isinstance(rule, dict) else None
    if kind not in NORMALISATIONS:
        raise ValueError(
            "normalisation must be {'kind': 'percentile', 'low': ..., 'high': ...} or "
            f"{{'kind': 'noise', 'scale': ...}}; got {rule!r}."
        )
    keysets = _KEYS[kind]
    if not any(set(rule) <= k for k in keysets):
        extra = sorted(set(rule) - set().union(*keysets))
        raise ValueError(
            f"normalisation has unknown key(s) {', '.join(extra) or 'in this combination'}; "
            f"{kind!r} takes " + " or ".join(str(sorted(k - {"kind"})) for k in keysets) + "."
        )

    def num(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    if kind == "noise" and "scale" not in rule and ("low" in rule or "high" in rule):
        low, high = rule.get("low"), rule.get("high")
        if not (num(low) and num(high) and 0 <= low < high <= 100):
            raise ValueError(
                "normalisation percentiles must satisfy 0 <= low < high <= 100; "
                f"got {low!r}, {high!r}."
            )
        return {"kind": "noise", "low": float(low), "high": float(high)}
    if kind == "noise":
        k = rule.get("scale")
        if not (num(k) and k > 0):
            raise ValueError(f"normalisation scale must be a number > 0; got {k!r}.")
        return {"kind": "noise", "scale": float(k)}
    low, high = rule.get("low"), rule.get("high")
    if not (num(low) and num(high) and 0 <= low < high <= 100):
        raise ValueError(
            f"normalisation percentiles must satisfy 0 <= low < high <= 100; got {low!r}, {high!r}."
        )
    return {"kind": "percentile", "low": float(low), "high": float(high)}


def _percentile_range(x: np.ndarray, low: float, high: float) -> tuple[float, float]:
    lo, hi = (float(v) for v in np.percentile(x, [low, high]))
    scale = hi - lo
    if not math.isfinite(scale) or scale <= 0:
        scale = 1.0
    return lo, scale


@dataclass(frozen=True)
class Norm:
    """One frame's normalisation: ``forward`` ADU → network units, ``inverse`` back.

    ``kind`` is the rule's kind; ``lo``/``scale`` the affine part (percentile: the
    whole map; noise: the median of the stabilised frame and ``k``); ``noise`` the
    :class:`~em_restore.backend.noise.NoiseModel` (noise rule only).
    """

    kind: str
    lo: float
    scale: float
    noise: Any = None

    def forward(self, x) -> np.ndarray:
        """ADU → network units (float32)."""
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "noise":
            x = stabilise(x, self.noise)
        return ((x - self.lo) / self.scale).astype(np.float32)

    def inverse(self, y, dtype=np.float32) -> np.ndarray:
        """Network units → ADU (``dtype``, float32 by default)."""
        v = np.asarray(y, dtype=np.float64) * self.scale + self.lo
        if self.kind == "noise":
            v = unstabilise(v, self.noise)
        return v.astype(dtype, copy=False)

    def to_dict(self) -> dict:
        """What the result's metadata records (the noise model, when there is one)."""
        d = {"kind": self.kind, "lo": self.lo, "scale": self.scale}
        if self.noise is not None:
            d["noise"] = self.noise.to_dict()
        return d


#: Below this (electrons + 3/8 + s²) the square root is continued by its tangent.
_T0 = 0.25


def stabilise(x: np.ndarray, noise) -> np.ndarray:
    """The generalised Anscombe transform, continued below zero counts by its tangent.

    ``t = (x − offset)/gain + 3/8 + (readout/gain)²``; ``f = 2√t`` for ``t ≥ t₀``
    and ``2√t₀ + (t − t₀)/√t₀`` below (``t₀`` = 1/4), so that values under the
    estimated zero level (read noise, an offset estimated a little high) stay
    distinct and :func:`unstabilise` inverts it exactly everywhere, where
    :func:`~em_restore.backend.vst.forward_vst` clips. ``gain == 0``:
    ``(x − offset)/readout``.
    """
    if noise.gain <= 0:
        return (x - noise.offset) / noise.readout_sigma
    t = (x - noise.offset) / noise.gain + 0.375 + (noise.readout_sigma / noise.gain) ** 2
    r0 = math.sqrt(_T0)
    return np.where(t >= _T0, 2.0 * np.sqrt(np.maximum(t, _T0)), 2.0 * r0 + (t - _T0) / r0)


def unstabilise(f: np.ndarray, noise) -> np.ndarray:
    """The exact inverse of :func:`stabilise`."""
    if noise.gain <= 0:
        return f * noise.readout_sigma + noise.offset
    r0 = math.sqrt(_T0)
    t = np.where(f >= 2.0 * r0, (f / 2.0) ** 2, _T0 + (f - 2.0 * r0) * r0)
    return (t - 0.375 - (noise.readout_sigma / noise.gain) ** 2) * noise.gain + noise.offset


def _measurable(noise, x: np.ndarray):
    """``noise``, or a Gaussian floor when it holds (almost) no noise."""
    from ..noise import NoiseModel

    lo, span = _percentile_range(x, 0.1, 99.9)
    floor = _FLOOR * span
    # the mean, not the median: at low dose most pixels count zero electrons
    sd = math.sqrt(max(float(noise.variance(float(np.mean(x)))), 0.0)) if noise else 0.0
    if sd > floor * 1e-3:
        return noise
    return NoiseModel(gain=0.0, offset=lo, readout_sigma=floor)


def frame_noise(frame):
    """The noise model the ``noise`` rule estimates on a frame, or ``None`` when the
    frame is too small or too uniform to fit one (the rule then uses its floor)."""
    from ..noise import estimate_noise

    try:
        return estimate_noise(np.asarray(frame, dtype=np.float64))
    except ValueError:
        return None


def normaliser(frame, rule: dict, *, noise=None) -> Norm:
    """The :class:`Norm` of one 2-D float frame under ``rule`` (see the module doc).

    ``noise``: the frame's :class:`~em_restore.backend.noise.NoiseModel` when it is
    already known (a stack estimates it once); estimated here otherwise.

    Examples
    --------
    >>> x = np.random.default_rng(0).poisson(40.0, (256, 256)) * 3.0 + 100.0
    >>> n = normaliser(x, {"kind": "noise", "scale": 1.0})
    >>> round(float(n.forward(x).std()), 1)            # unit noise
    1.0
    >>> m = normaliser(7 * x + 1000, {"kind": "noise", "scale": 1.0})
    >>> bool(np.allclose(m.forward(7 * x + 1000), n.forward(x), atol=0.05))
    True
    """
    x = np.asarray(frame, dtype=np.float64)
    if rule["kind"] == "percentile":
        lo, scale = _percentile_range(x, rule["low"], rule["high"])
        return Norm("percentile", lo, scale)
    if noise is None:
        noise = frame_noise(x)
    noise = _measurable(noise, x)
    f = stabilise(x, noise)
    lo, span = _percentile_range(f, 0.1, 99.9)
    if span > SPAN_MAX:  # more than any dose the networks know: cap what they are told
        q = (span / SPAN_MAX) ** 2
        noise = dataclasses.replace(
            noise, gain=noise.gain * q, readout_sigma=noise.readout_sigma * math.sqrt(q)
        )
        f = stabilise(x, noise)
    if "scale" in rule:
        return Norm("noise", float(np.median(f)), float(rule["scale"]), noise)
    lo, span = _percentile_range(f, rule["low"], rule["high"])
    return Norm("noise", lo, span, noise)


def outlier_units(xn: np.ndarray) -> tuple[float, float]:
    """``(lo, span)`` putting ``xn``'s 0.1–99.9 percentiles on ``[0, 1]`` for the outlier rule."""
    return _percentile_range(xn, 0.1, 99.9)
