"""Which of two restorations is closer to the truth, judged from the raw frame alone.

Stein's unbiased risk estimate (SURE). For a frame ``z = x + n`` with Gaussian noise
``n ~ N(0, Σ)`` and any (weakly differentiable) restoration ``f``,

    E‖f(z) − x‖² = E[‖z − f(z)‖² − tr Σ + 2 tr(Σ J_f(z))]

where ``J_f`` is the Jacobian of ``f``. The trace is estimated by Monte Carlo (Ramani,
Blu & Unser 2008, "Monte-Carlo SURE"), with one probe ``b`` drawn from the frame's own
noise model (:class:`~em_restore.backend.noise.NoiseModel`: the Poisson–Gaussian
variance at the restored level, shaped by the model's correlation kernel, so
``E[b bᵀ] = Σ``) and a step ``δ`` (:data:`PROBE_STEP`, in units of the noise):

    d_f = bᵀ (f(z + δ b) − f(z)) / δ  ≈  tr(Σ J_f)

For the blend ``f₂ + α (f₁ − f₂)`` of two restorations, with ``e = f₁ − f₂``, the
estimate is a quadratic in ``α`` whose constant terms (``‖z − x‖²``, ``tr Σ``) cancel:

    R(α) = const − 2α [⟨z − f₂, e⟩ − (d₁ − d₂)] + α² ‖e‖²,

lowest at ``α* = [⟨z − f₂, e⟩ − (d₁ − d₂)] / ‖e‖²``, clipped to [0, 1].

Two guards, both measured (``docs/fidelity.md``, ``benchmarks/bench_fidelity.py``):

* **Tolerance.** Where the two restorations are close, ``d₁ − d₂`` is the small
  difference of two large traces, and the noise model (estimated from the frame; Poisson
  at a few e⁻/px is not Gaussian) is right only to some tens of percent. The weight is
  the largest of ``f₁`` that the estimate allows with ``d₁ − d₂`` wrong by
  :data:`TOLERANCE` of itself: ``α = [⟨z − f₂, e⟩ − Δd + τ|Δd|] / ‖e‖²``. The first
  restoration (the network) is kept unless the data say clearly otherwise.
* **Same grey levels.** The estimate measures closeness to the frame's expected
  counts. A network that moves the grey levels (it undoes an offset, a brightness
  change or a detector response that the counts themselves hold) is not judged by it:
  where the two results' mean levels differ by more than :data:`LEVEL_TOLERANCE` of the
  range, :func:`blend_weight` keeps the first.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from .fidelity import model_variance
from .noise import NoiseModel

__all__ = [
    "LEVEL_TOLERANCE",
    "PROBE_SEED",
    "PROBE_STEP",
    "TOLERANCE",
    "blend_weight",
    "divergence",
    "level_shift",
    "noise_probe",
]

#: Step of the Monte-Carlo probe, in units of the noise (the perturbation is 0.1 σ).
PROBE_STEP = 0.1
#: Relative error allowed on the divergence difference, in favour of the first result.
TOLERANCE = 0.1
#: Results whose mean levels differ by more than this fraction of the range are not blended.
LEVEL_TOLERANCE = 0.01
#: Seed of the probe: the same frame gets the same decision.
PROBE_SEED = 20261207


def noise_probe(noise: NoiseModel, level, *, seed: int = PROBE_SEED) -> np.ndarray:
    """One draw of the noise model at ``level`` (a restoration of the frame), float32.

    ``sqrt(var(level)) * (white ⊛ kernel)``: the variance the model gives each pixel
    at that level (floored as in the fidelity test: :func:`~.fidelity.model_variance`), with
    the model's spatial correlation (periodic borders).
    """
    var = model_variance(noise, np.asarray(level, dtype=np.float64))
    white = np.random.default_rng(seed).standard_normal(var.shape)
    if noise.kernel.size > 1:
        white = ndi.convolve(white, noise.kernel, mode="wrap")
    return (np.sqrt(var) * white).astype(np.float32)


def divergence(restored, perturbed, probe, step: float = PROBE_STEP) -> float:
    """``bᵀ (f(z + δ b) − f(z)) / δ``: the Monte-Carlo estimate of ``tr(Σ J_f)``."""
    diff = np.asarray(perturbed, dtype=np.float64) - np.asarray(restored, dtype=np.float64)
    return float(np.sum(np.asarray(probe, dtype=np.float64) * diff) / step)


def level_shift(first, second) -> float:
    """Difference of the two results' mean levels, as a fraction of the second's range
    (its 1st to 99th percentile)."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    lo, hi = np.percentile(b, [1, 99])
    span = float(hi - lo) or float(np.ptp(b)) or 1.0
    return float((b.mean() - a.mean()) / span)


def blend_weight(
    raw,
    first,
    second,
    div_first: float,
    div_second: float,
    *,
    tolerance: float = TOLERANCE,
    level_tolerance: float = LEVEL_TOLERANCE,
) -> tuple[float, dict]:
    """(weight of ``first``, record) of the risk-optimal blend ``second + α (first − second)``.

    ``div_first``, ``div_second``: :func:`divergence` of each result with the same probe.
    The record holds the weight, the level shift, the estimated difference in mean
    squared error between the first result and the blend (ADU², per pixel: how much the
    blend is expected to gain) and, if the first is kept for a reason, the reason.
    """
    z = np.asarray(raw, dtype=np.float64)
    f1 = np.asarray(first, dtype=np.float64)
    f2 = np.asarray(second, dtype=np.float64)
    shift = level_shift(f1, f2)
    record: dict = {"level_shift": round(shift, 5)}
    e = f1 - f2
    energy = float(np.sum(e * e))
    if abs(shift) > level_tolerance:
        record.update(weight=1.0, expected_gain=0.0)
        record["reason"] = (
            f"the two results' mean levels differ by {abs(shift):.1%} of the range: the "
            "network moved the grey levels, which the counts cannot judge"
        )
        return 1.0, record
    if energy == 0.0:
        record.update(weight=1.0, expected_gain=0.0, reason="the two results are identical")
        return 1.0, record
    dd = float(div_first - div_second)
    pull = float(np.sum((z - f2) * e)) - dd + tolerance * abs(dd)
    alpha = float(np.clip(pull / energy, 0.0, 1.0))
    # R(1) - R(α) = ‖e‖² (1 - α²) - 2 pull (1 - α): ‖e‖² (1 - α)² at an inner optimum
    gain = (energy * (1 - alpha * alpha) - 2 * pull * (1 - alpha)) / z.size
    record.update(
        weight=round(alpha, 4),
        divergence_difference=round(dd / z.size, 6),
        expected_gain=round(max(gain, 0.0), 6),
    )
    return alpha, record
