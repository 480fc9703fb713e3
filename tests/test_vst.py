"""Variance stabilisation (em_restore.backend.vst): stabilised variance, unbiased inverse."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from em_restore.backend import simulate as sim
from em_restore.backend.noise import NoiseModel, estimate_noise
from em_restore.backend.vst import forward_vst, inverse_vst

POISSON = NoiseModel(gain=1.0, offset=0.0, readout_sigma=0.0)
CAMERA = NoiseModel(gain=8.0, offset=100.0, readout_sigma=4.0)  # high_dose_tem detector


def _flat(noise: NoiseModel, lam: float, seed: int) -> np.ndarray:
    """A 512² flat field: gain * Poisson(lam) + offset + N(0, read²)."""
    cfg = sim.AcquisitionConfig(
        dose=lam, gain=noise.gain, offset=noise.offset, readout_sigma=noise.readout_sigma
    )
    return sim.simulate_acquisition(np.ones((512, 512)), cfg, rng=seed)


@pytest.mark.parametrize("noise", [POISSON, CAMERA], ids=["poisson", "camera"])
def test_stabilised_variance(noise):
    # var(f) over 262144 pixels has a relative standard error of 0.3 %
    var = {lam: forward_vst(_flat(noise, lam, 1), noise).var() for lam in (1, 2, 5, 20, 100)}
    for lam in (5, 20, 100):
        assert var[lam] == pytest.approx(1.0, abs=0.03)  # measured: 0.999–1.015
    assert var[2] == pytest.approx(1.0, abs=0.10)  # measured: 0.92 (Poisson), 1.02 (camera)
    # documented breakdown below ~2 e-/px: 0.72 (Poisson), 0.93 (read noise helps)
    assert var[1] < (0.8 if noise is POISSON else 0.97)


def _expected_f_poisson(lam: float) -> float:
    k = np.arange(0, int(lam + 20 * np.sqrt(lam) + 30))
    return float(np.sum(stats.poisson.pmf(k, lam) * 2.0 * np.sqrt(k + 0.375)))


def _expected_f_camera(lam: float) -> float:
    """E[f(z)] for the camera model: Poisson sum times Gauss–Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    weights = weights / weights.sum()
    k = np.arange(0, int(lam + 20 * np.sqrt(lam) + 30))
    z = 8.0 * k[:, None] + 100.0 + 4.0 * nodes[None, :]
    ef = forward_vst(z, CAMERA) @ weights
    return float(np.sum(stats.poisson.pmf(k, lam) * ef))


def test_unbiased_inverse_beats_algebraic_at_low_counts():
    # E[f(z)] computed exactly; the inverse should return the mean count.
    for lam in (0.5, 1.0, 2.0, 3.0):
        ef = np.array([_expected_f_poisson(lam)])
        err_unbiased = abs(inverse_vst(ef, POISSON)[0] - lam)
        err_algebraic = abs(inverse_vst(ef, POISSON, method="algebraic")[0] - lam)
        assert err_unbiased < 0.01  # measured: <= 0.0064
        assert err_algebraic > 0.1  # measured: 0.12–0.25
        assert err_algebraic > 10 * err_unbiased
    for lam in (0.5, 1.0, 2.0, 5.0):
        ef = np.array([_expected_f_camera(lam)])
        err_unbiased = abs((inverse_vst(ef, CAMERA)[0] - 100.0) / 8.0 - lam)
        err_algebraic = abs((inverse_vst(ef, CAMERA, method="algebraic")[0] - 100.0) / 8.0 - lam)
        assert err_unbiased < 0.05  # electrons; measured: <= 0.04
        assert err_algebraic > 3 * err_unbiased  # measured: 0.18–0.25 e-


def test_unbiased_inverse_on_simulated_mean():
    # the mean of the stabilised image of a flat field at 1 e-/px maps back to 1 e-
    z = _flat(CAMERA, 1.0, 2)
    d = np.array([forward_vst(z, CAMERA).mean()])
    assert (inverse_vst(d, CAMERA)[0] - 100.0) / 8.0 == pytest.approx(1.0, abs=0.06)
    assert (inverse_vst(d, CAMERA, method="algebraic")[0] - 100.0) / 8.0 < 0.85


def test_round_trips():
    levels = np.linspace(100.0, 10_000.0, 50)
    for noise in (POISSON, CAMERA):
        f = forward_vst(levels, noise)
        np.testing.assert_allclose(inverse_vst(f, noise, method="algebraic"), levels, rtol=1e-12)
    # the unbiased inverse of f(noise-free mean) returns about mean + gain / 4
    # (it inverts E[f], not f); at >= 100 e- the O(1/D) terms are < 0.02 e-
    high = levels[levels >= 900.0]
    err_e = (inverse_vst(forward_vst(high, CAMERA), CAMERA) - high) / 8.0
    np.testing.assert_allclose(err_e, 0.25, atol=0.02)
    # below the transform of zero counts the inverse clips at the offset
    assert inverse_vst(np.array([0.0, 0.5, 1.0]), CAMERA).tolist() == [100.0] * 3


def test_gaussian_model_is_affine():
    nm = NoiseModel(gain=0.0, offset=50.0, readout_sigma=4.0)
    z = np.array([[46.0, 50.0], [58.0, 62.0]])
    np.testing.assert_allclose(forward_vst(z, nm), [[-1.0, 0.0], [2.0, 3.0]])
    for method in ("unbiased", "algebraic", "asymptotic"):
        np.testing.assert_allclose(inverse_vst(forward_vst(z, nm), nm, method=method), z)


def test_end_to_end_with_estimated_model():
    # estimate the model on a low-dose image, stabilise: unit variance on the flat background
    clean = sim.nanoparticles((256, 256), pixel_size_nm=0.5, rng=0)[0]
    noisy, expected = sim.simulate_acquisition(
        clean, sim.AcquisitionConfig.high_dose_tem(dose=10.0), rng=3, return_expected=True
    )
    nm = estimate_noise(noisy, modality="tem")
    f = forward_vst(noisy, nm)
    bg = expected == np.median(expected)
    resid = f[bg] - forward_vst(expected[bg], nm)
    keep = np.abs(resid - np.median(resid)) < 8.0  # dead pixels / spikes
    assert resid[keep].var() == pytest.approx(1.0, abs=0.05)
    assert forward_vst(noisy, nm).dtype == np.float64


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: forward_vst(np.array([1.0, np.nan]), POISSON), "image"),
        (lambda: forward_vst(np.ones(3), {"gain": 1.0}), "noise"),
        (lambda: forward_vst(np.ones(3), NoiseModel(0.0, 0.0, 0.0)), "noise"),
        (lambda: inverse_vst(np.array([np.inf]), POISSON), "stabilised"),
        (lambda: inverse_vst(np.ones(3), POISSON, method="exact"), "method"),
    ],
)
def test_bad_input_raises_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()
