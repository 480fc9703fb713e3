"""Risk estimates from the raw frame alone (Monte-Carlo SURE) and the blend they choose."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from em_restore.backend.noise import NoiseModel
from em_restore.backend.risk import (
    PROBE_STEP,
    blend_weight,
    divergence,
    level_shift,
    noise_probe,
)
from tests.conftest import range_psnr


@pytest.fixture(scope="module")
def scene():
    """A specimen with edges and smooth regions, and its raw frame (white Gaussian noise)."""
    g = np.random.default_rng(5)
    yy, xx = np.mgrid[:256, :256]
    truth = 100 + 20 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    for _ in range(12):
        cy, cx, r = g.uniform(20, 236), g.uniform(20, 236), g.uniform(5, 18)
        truth += 30 * ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)
    sigma = 12.0
    raw = truth + sigma * g.standard_normal(truth.shape)
    return raw, truth, NoiseModel(gain=0.0, offset=0.0, readout_sigma=sigma)


def smooth(z, s):
    return ndi.gaussian_filter(np.asarray(z, np.float64), s, mode="wrap")


def test_the_divergence_of_a_linear_filter_is_its_trace(scene):
    raw, _, noise = scene
    probe = noise_probe(noise, raw)
    for s in (0.8, 2.0):
        delta = np.zeros(raw.shape)
        delta[0, 0] = 1.0
        exact = noise.readout_sigma**2 * raw.size * smooth(delta, s)[0, 0]  # σ² tr(G)
        est = divergence(smooth(raw, s), smooth(raw + PROBE_STEP * probe, s), probe)
        assert est == pytest.approx(exact, rel=0.05)


def test_the_probe_is_a_draw_of_the_noise_model():
    level = np.full((256, 256), 50.0)
    level[:, 128:] = 400.0
    kernel = np.array([[0.0, 0.3, 0.0], [0.3, 1.0, 0.3], [0.0, 0.3, 0.0]])
    noise = NoiseModel(gain=2.0, offset=10.0, readout_sigma=3.0, kernel=kernel)
    b = noise_probe(noise, level).astype(np.float64)
    for half, lv in ((b[:, :128], 50.0), (b[:, 128:], 400.0)):
        assert half.var() == pytest.approx(2.0 * (lv - 10.0) + 9.0, rel=0.05)
    # the model's correlation: neighbours along x correlate as the kernel says
    g = noise.kernel
    expected = float(np.sum(g[:, 1:] * g[:, :-1]))  # kernel autocorrelation at lag 1
    right = b[:, 1:127] * b[:, 2:128]
    assert right.mean() / b[:, :128].var() == pytest.approx(expected, abs=0.03)
    np.testing.assert_array_equal(b, noise_probe(noise, level))  # seeded: reproducible


def test_the_blend_weight_is_near_the_oracle_weight(scene):
    raw, truth, noise = scene
    probe = noise_probe(noise, raw)
    nudged = raw + PROBE_STEP * probe
    for s1, s2 in ((0.6, 3.0), (1.2, 4.0), (3.0, 0.7)):
        f1, f2 = smooth(raw, s1), smooth(raw, s2)
        d1 = divergence(f1, smooth(nudged, s1), probe)
        d2 = divergence(f2, smooth(nudged, s2), probe)
        alpha, rec = blend_weight(raw, f1, f2, d1, d2, tolerance=0.0)
        e = f1 - f2
        oracle = float(np.clip(np.sum((truth - f2) * e) / np.sum(e * e), 0, 1))
        best = range_psnr(f2 + oracle * e, truth)
        got = range_psnr(f2 + alpha * e, truth)
        assert got >= best - 0.1, (s1, s2, alpha, oracle)
        assert got >= max(range_psnr(f1, truth), range_psnr(f2, truth)) - 0.05
        assert rec["weight"] == pytest.approx(alpha, abs=1e-4)
        # the tolerance leans towards the first result, never away from it
        assert blend_weight(raw, f1, f2, d1, d2)[0] >= alpha


def test_a_correct_first_result_is_kept(scene):
    raw, truth, noise = scene
    probe = noise_probe(noise, raw)
    f2 = smooth(raw, 2.0)
    d2 = divergence(f2, smooth(raw + PROBE_STEP * probe, 2.0), probe)
    alpha, rec = blend_weight(raw, truth, f2, 0.0, d2)  # the truth has no divergence
    assert alpha == 1.0 and rec["expected_gain"] == 0.0


def test_results_on_other_grey_levels_are_not_blended(scene):
    raw, truth, _ = scene
    f2 = smooth(raw, 2.0)
    shifted = smooth(raw, 0.7) + 0.05 * np.ptp(truth)  # the first moved the levels
    assert level_shift(shifted, f2) == pytest.approx(
        -0.05 * np.ptp(truth) / np.ptp(np.percentile(f2, [1, 99])), rel=0.05
    )
    alpha, rec = blend_weight(raw, shifted, f2, 0.0, 0.0)
    assert alpha == 1.0 and "grey levels" in rec["reason"]
