"""Fidelity maps: a correct restoration passes, invented and erased detail is found.

Every test uses the simulator's noise-free expected counts as the correct
restoration and changes it the way a bad restoration would; the map must flag the
change and little else.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from em_restore.backend import fidelity as fid
from em_restore.backend import simulate as sim
from em_restore.backend.fidelity import (
    FLAG_LEVEL,
    fidelity,
    fidelity_lazy,
    fidelity_noise,
    iter_fidelity,
)
from em_restore.backend.noise import NoiseModel
from em_restore.backend.psf import convolve, gaussian_psf

N = 192


def _disk(c, r, n=N, soft=1.5):
    yy, xx = np.mgrid[:n, :n]
    return np.clip((r - np.hypot(yy - c[0], xx - c[1])) / soft + 0.5, 0, 1)


@pytest.fixture(scope="module")
def tem5():
    """A 5 e-/px TEM frame with its expected counts and the true noise model."""
    clean, _ = sim.nanoparticles((N, N), pixel_size_nm=1.0, rng=3)
    cfg = sim.AcquisitionConfig(modality="tem", dose=5.0)
    raw, truth = sim.simulate_acquisition(clean, cfg, rng=4, return_expected=True)
    return raw.astype(np.float64), truth, NoiseModel(gain=1.0, offset=0.0, readout_sigma=0.0)


def _flagged(m, mask):
    return float((m[mask] >= FLAG_LEVEL).mean())


def test_the_expected_counts_pass(tem5):
    raw, truth, nm = tem5
    for noise in (nm, None):  # the true model and the one estimated from the frame
        f = fidelity(raw, truth, noise)
        assert f.map.shape == raw.shape and f.map.dtype == np.float32
        assert 0.0 <= f.map.min() and f.map.max() <= 1.0
        assert f.summary["flagged_fraction"] <= 0.02
        assert f.summary["chi2_ratio"] == pytest.approx(1.0, abs=0.05)


def test_correlated_scan_noise_passes_once_whitened():
    rng = np.random.default_rng(0)
    truth = 200 + 80 * ndi.gaussian_filter(rng.random((N, N)), 6)
    g = np.array([[0.3, 1.0, 0.3]])
    noise = ndi.correlate(rng.standard_normal((N, N)), g / np.sqrt((g**2).sum()), mode="wrap")
    raw = truth + 5.0 * noise
    nm = NoiseModel(gain=0.0, offset=0.0, readout_sigma=5.0, kernel=g)
    assert fidelity(raw, truth, nm).summary["flagged_fraction"] <= 0.02
    white = NoiseModel(gain=0.0, offset=0.0, readout_sigma=5.0)
    # told the noise is white, the correlated residual looks like structure
    assert fidelity(raw, truth, white).summary["chi2_ratio"] == pytest.approx(1.0, abs=0.1)


def test_a_faint_painted_disk_is_flagged_and_nothing_else(tem5):
    raw, truth, nm = tem5
    disk = _disk((96, 96), 12)
    painted = truth + 0.15 * ndi.gaussian_filter(truth, 8) * disk  # 15 % contrast, 24 px
    f = fidelity(raw, painted, nm)
    inside = disk > 0.9
    far = ndi.distance_transform_edt(disk < 0.01) > 24
    assert f.map[inside].mean() > 0.6
    assert _flagged(f.map, far) < 0.02
    assert f.summary["regions"][0]["test"] == "mean"
    y0, x0, y1, x1 = f.summary["regions"][0]["bbox"]
    assert y0 <= 96 <= y1 and x0 <= 96 <= x1


def test_invented_zero_mean_fringes_are_found_by_the_detail_test(tem5):
    raw, truth, nm = tem5
    yy, xx = np.mgrid[:N, :N]
    patch = _disk((96, 96), 30, soft=6)
    fringes = np.cos(2 * np.pi * (xx * 0.8 + yy * 0.6) / 6.0)
    painted = truth + 0.3 * ndi.gaussian_filter(truth, 8) * patch * fringes
    f = fidelity(raw, painted, nm)
    assert abs(float(np.mean(painted - truth))) < 0.01  # zero mean: the mean test is blind
    assert f.map[patch > 0.9].mean() > 0.7
    assert f.summary["tests"]["detail"] > f.summary["tests"]["mean"]


def test_erased_particles_are_flagged(tem5):
    _, truth, nm = tem5
    feat = np.maximum(_disk((60, 60), 6), _disk((130, 120), 7))
    with_particles = truth * (1 - 0.6 * feat)
    raw = np.random.default_rng(9).poisson(with_particles).astype(float)
    f = fidelity(raw, truth, nm)  # the restoration lost both particles
    for c in ((60, 60), (130, 120)):
        assert f.map[c] > 0.9
    assert fidelity(raw, with_particles, nm).summary["flagged_fraction"] <= 0.02


@pytest.mark.parametrize("with_holes", [False, True])
def test_fine_mean_test_is_the_window_z_score_at_2px_steps(with_holes):
    """_fine_mean_z against a direct sum over every window (interior blocks)."""
    g = np.random.default_rng(5)
    e = g.standard_normal((48, 40)).astype(np.float32)
    valid = g.random(e.shape) > 0.1 if with_holes else None
    if valid is not None:
        e[~valid] = 0  # as _normalised_residual leaves them
    sides = (8, 12)
    got = fid._fine_mean_z(e, None if valid is None else np.nonzero(~valid), sides)
    v = np.ones(e.shape) if valid is None else valid.astype(float)
    want = np.zeros_like(got)
    for bi in range(got.shape[0]):
        for bj in range(got.shape[1]):
            best = 0.0
            for p in (2 * bi, 2 * bi + 1):  # half-blocks inside the block
                for q in (2 * bj, 2 * bj + 1):
                    for s in sides:
                        k = s // 2
                        y0, x0 = 2 * (p - k // 2), 2 * (q - k // 2)
                        if y0 < 0 or x0 < 0 or y0 + s > e.shape[0] or x0 + s > e.shape[1]:
                            best = np.nan
                            continue
                        win = (slice(y0, y0 + s), slice(x0, x0 + s))
                        z = abs(e[win].sum()) / np.sqrt(max(v[win].sum(), 1.0))
                        best = max(best, z)
            want[bi, bj] = best
    inner = np.isfinite(want)
    assert inner.sum() > 20
    np.testing.assert_allclose(got[inner], want[inner], rtol=1e-5)


def test_fine_steps_find_small_erased_particles_off_the_block_grid(tem5, monkeypatch):
    """Particles 8-10 px across, centred between blocks, at 35 % contrast, 5 e-/px:
    the mean test at 2 px steps scores them higher than the 4 px grid alone and flags
    more of them, without flagging the correct restoration."""
    _, truth, nm = tem5
    centres = [(22 + 36 * i, 22 + 36 * j) for i in range(5) for j in range(5)]
    feat = np.zeros_like(truth)
    for c in centres:
        feat = np.maximum(feat, _disk(c, 4.5, soft=1.0))
    with_particles = truth * (1 - 0.35 * feat)
    raw = np.random.default_rng(11).poisson(with_particles).astype(float)
    fine = fidelity(raw, truth, nm).map
    monkeypatch.setattr(fid, "FINE_SCALES", ())
    coarse = fidelity(raw, truth, nm).map
    at = tuple(np.array(centres).T)
    # measured: mean map 0.75 against 0.28; 22 of the 25 flagged against 5
    assert np.mean(fine[at]) > np.mean(coarse[at]) + 0.2
    assert (fine[at] >= FLAG_LEVEL).sum() >= 15 > 2 * (coarse[at] >= FLAG_LEVEL).sum()
    monkeypatch.undo()
    assert fidelity(raw, with_particles, nm).summary["flagged_fraction"] <= 0.02


def test_single_precision_sums_match_double_on_a_high_dynamic_range_frame(monkeypatch):
    """A 2000-count particle over a 5-count background, restored blurred (the coarse
    detail test matters there): the map with the residual's sums in float32 matches the
    all-float64 one. (Integrating the restoration's sums in float32 as well moves one
    pixel of this map by 0.76.)"""
    yy, xx = np.mgrid[:256, :256]
    clean = 5.0 + 2000.0 * (((yy - 128) ** 2 + (xx - 100) ** 2) < 60**2) + 500.0 * (xx > 200)
    raw = np.random.default_rng(3).poisson(clean).astype(np.float32)
    restored = ndi.gaussian_filter(clean, 3).astype(np.float32)
    shipped = fidelity(raw, restored).map
    integral = fid._integral
    monkeypatch.setattr(fid, "_integral", lambda g, pad, dtype=None: integral(g, pad, np.float64))
    double = fidelity(raw, restored).map
    assert 0.05 < np.mean(double >= FLAG_LEVEL) < 0.6  # the blur is found
    # measured: at most 0.021 apart, the flagged area the same to 1e-3
    assert np.max(np.abs(shipped - double)) < 0.05
    assert abs(np.mean(shipped >= FLAG_LEVEL) - np.mean(double >= FLAG_LEVEL)) < 2e-3


def test_keeping_the_noise_is_flagged_as_noise_fitted(tem5):
    raw, _, nm = tem5
    f = fidelity(raw, raw, nm)
    assert f.summary["flagged_fraction"] > 0.95
    assert f.summary["tests"]["noise fitted"] > 0.9
    assert f.summary["chi2_ratio"] < 0.05


def test_spikes_that_a_restoration_removes_are_not_findings(tem5):
    raw, truth, nm = tem5
    hit = raw.copy()
    hit[(40, 100, 150), (50, 20, 170)] += 500  # three X-ray hits
    f = fidelity(hit, truth, nm)
    assert f.summary["outliers"] >= 3
    assert f.summary["flagged_fraction"] <= 0.02


@pytest.mark.parametrize(("a", "b"), [(7.0, 1000.0), (0.1, 0.0), (300.0, 1000.0)])
def test_gain_and_offset_do_not_change_the_map(tem5, a, b):
    raw, truth, nm = tem5
    painted = truth + 2.0 * _disk((96, 96), 12)
    base = fidelity(raw, painted, nm)
    scaled = NoiseModel(gain=a * nm.gain, offset=b, readout_sigma=0.0)
    other = fidelity(a * raw + b, a * painted + b, scaled)
    np.testing.assert_allclose(other.map, base.map, atol=1e-3)
    # with the noise model estimated from the scaled frame itself
    est = fidelity(a * raw + b, a * painted + b)
    assert est.summary["flagged_fraction"] == pytest.approx(
        base.summary["flagged_fraction"], abs=0.01
    )


def test_a_deconvolution_is_checked_through_its_kernel(tem5):
    _, truth, nm = tem5
    k = gaussian_psf(2.0)
    blurred = convolve(truth, k)
    raw = np.random.default_rng(2).poisson(blurred).astype(float)

    def forward(x):
        return convolve(x, k)

    assert fidelity(raw, truth, nm, forward=forward).summary["flagged_fraction"] <= 0.02
    assert fidelity(raw, truth, nm).summary["flagged_fraction"] > 0.05  # sharper than the data


def test_stacks_lazy_eager_and_per_frame_agree(tem5):
    raw, truth, nm = tem5
    painted = truth + 3.0 * _disk((50, 140), 10)
    raws = np.stack([raw, raw[::-1].copy()])
    rest = np.stack([painted, truth[::-1].copy()])
    lazy = np.asarray(fidelity_lazy(raws, rest, nm))
    gen = iter_fidelity(raws, rest, nm)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        eager = stop.value
    for i in range(2):
        one = fidelity(raws[i], rest[i], nm).map
        np.testing.assert_array_equal(lazy[i], one)
        np.testing.assert_array_equal(eager.map[i], one)
    assert eager.summary["frames"][0]["flagged_fraction"] > 0.01
    assert eager.summary["frames"][1]["flagged_fraction"] <= 0.02


def test_the_noise_is_estimated_on_a_crop_of_the_frame(tem5):
    raw, _, _ = tem5
    nm = fidelity_noise(raw, modality="tem")
    assert nm.gain == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize(
    ("args", "kwargs", "fix"),
    [
        ((np.zeros((32, 32)), np.zeros((32, 30))), {}, "same shape"),
        ((np.zeros((8, 8)), np.zeros((8, 8))), {}, "larger region"),
        ((np.ones((32, 32)), np.ones((32, 32)), "poisson"), {}, "estimate it"),
        (
            (np.ones((32, 32)), np.ones((32, 32)), NoiseModel(gain=0, offset=0, readout_sigma=0)),
            {},
            "noise model",
        ),
        ((np.ones((32, 32)), np.ones((32, 32))), {"scales": ()}, "window sides"),
    ],
)
def test_bad_input_is_one_line_naming_the_fix(args, kwargs, fix):
    with pytest.raises(ValueError) as err:
        fidelity(*args, **kwargs)
    assert fix in str(err.value)
    assert "\n" not in str(err.value)
