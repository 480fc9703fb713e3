"""Noise-model estimation (em_restore.backend.noise) on simulated EM images, on numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.restoration import estimate_sigma as skimage_estimate_sigma

from em_restore.backend import simulate as sim
from em_restore.backend.noise import (
    NoiseModel,
    estimate_noise,
    estimate_noise_kernel,
    estimate_sigma,
    highpass_residual,
)

S = 384  # side of the test images: ~0.2 s per estimate


@pytest.fixture(scope="module")
def mixed_specimen():
    """Nanoparticles on a horizontal ramp: transmissions 0.05–0.55 (a wide level range)."""
    clean = sim.nanoparticles((S, S), pixel_size_nm=0.5, rng=0)[0]
    ramp = np.linspace(0.1, 1.0, S)[None, :] * np.ones((S, 1))
    return 0.5 * clean * ramp + 0.05


@pytest.fixture(scope="module")
def dark_particles():
    return sim.nanoparticles((S, S), pixel_size_nm=0.5, contrast="dark", rng=0)[0]


def _background_truth(noisy, expected):
    """Noise std on the flat background (the most common expected value), outliers cut."""
    level = float(np.median(expected))
    bg = np.abs(expected - level) <= 1e-6 * abs(level)
    r = (np.asarray(noisy, float) - expected)[bg]
    scale = 1.4826 * np.median(np.abs(r - np.median(r)))
    return level, float(r[np.abs(r - np.median(r)) < 8 * scale].std())


# --------------------------------------------------------------------------- variance function


def test_counting_camera_gain_and_zero_read_noise(mixed_specimen):
    # low-dose TEM preset: gain 1 e-/ADU, no read noise, spikes 1e-5, dead pixels 1e-4
    cfg = sim.AcquisitionConfig.low_dose_tem(dose=20.0)
    noisy = sim.simulate_acquisition(mixed_specimen, cfg, rng=1)
    nm = estimate_noise(noisy, modality="tem")
    assert nm.gain == pytest.approx(1.0, rel=0.10)  # measured: 0.998
    assert nm.readout_sigma < 0.5  # truth 0; the variance at 1 e- is 1
    assert not nm.is_correlated()
    assert nm.kernel.shape == (1, 1)
    assert nm.is_signal_dependent()


def test_integrating_camera_gain_and_read_noise(mixed_specimen):
    # high-dose TEM preset at low dose: gain 8, offset 100, read 4, dark current 0.5 e-
    cfg = sim.AcquisitionConfig.high_dose_tem(dose=5.0)
    noisy, expected = sim.simulate_acquisition(mixed_specimen, cfg, rng=2, return_expected=True)
    nm = estimate_noise(noisy, modality="tem", offset=100.0)
    assert nm.gain == pytest.approx(8.0, rel=0.10)  # measured: 7.94
    assert nm.readout_sigma == pytest.approx(4.0, rel=0.15)  # measured: 4.03
    assert nm.offset == 100.0
    # Without the offset only the variance function is identifiable (and is the same)
    nm2 = estimate_noise(noisy, modality="tem")
    levels = np.percentile(expected, [5, 50, 95])
    truth = 8.0 * (levels - 100.0) + 16.0
    np.testing.assert_allclose(nm2.variance(levels), truth, rtol=0.05)
    assert nm2.offset == pytest.approx(100.0, abs=5.0)  # convention: -b/a, read noise 0


def test_robust_to_spikes_and_dead_pixels(mixed_specimen):
    cfg = sim.AcquisitionConfig.high_dose_tem(
        dose=5.0, spike_fraction=1e-3, spike_amplitude=20.0, dead_fraction=1e-3
    )
    noisy = sim.simulate_acquisition(mixed_specimen, cfg, rng=3)
    assert (noisy == 0).sum() >= 100 and (noisy > 500).sum() >= 100  # dead pixels, spikes
    nm = estimate_noise(noisy, modality="tem", offset=100.0)
    assert nm.gain == pytest.approx(8.0, rel=0.10)
    assert nm.readout_sigma == pytest.approx(4.0, rel=0.15)
    assert not nm.is_correlated()


def test_constant_regions_and_constant_images(mixed_specimen):
    noisy = sim.simulate_acquisition(
        mixed_specimen, sim.AcquisitionConfig.low_dose_tem(dose=20.0), rng=4
    ).astype(np.float64)
    noisy[:, :120] = 0.0  # masked / padded area
    noisy[:40] = 65535.0  # saturated band
    nm = estimate_noise(noisy.astype(np.uint16))
    assert nm.gain == pytest.approx(1.0, rel=0.10)
    for img in (np.zeros((64, 64)), np.full((40, 50), 7.0, np.float32)):
        nm = estimate_noise(img)
        assert nm.gain == 0.0 and nm.readout_sigma == 0.0 and nm.kernel.shape == (1, 1)


def test_flat_gaussian_noise_is_signal_independent():
    img = np.random.default_rng(5).normal(100.0, 3.0, (256, 256))
    nm = estimate_noise(img)
    assert nm.gain == 0.0
    assert nm.readout_sigma == pytest.approx(3.0, rel=0.03)
    assert not nm.is_signal_dependent() and not nm.is_correlated()


# --------------------------------------------------------------------------- correlated noise


def test_scan_line_noise_marginal_std(dark_particles):
    # HAADF STEM, 20 e-/px, line offsets of 20 ADU per row (on top of ~11 ADU of
    # shot + read noise at the background): invisible to pixel differences.
    cfg = sim.AcquisitionConfig.stem(dose=20.0, line_noise=20.0)
    noisy, expected = sim.simulate_acquisition(dark_particles, cfg, rng=6, return_expected=True)
    level, true_sd = _background_truth(noisy, expected)
    nm = estimate_noise(noisy, modality="stem")
    est = math.sqrt(float(nm.variance(level)))
    naive = float(skimage_estimate_sigma(noisy.astype(float)))
    assert est == pytest.approx(true_sd, rel=0.15)  # measured: +0.5 %
    assert naive < 0.7 * true_sd  # measured: -43 %
    assert nm.gain == pytest.approx(10.0, rel=0.15)  # the shot-noise slope survives
    assert nm.is_correlated()
    g = nm.kernel
    assert g.shape == (1, 7)  # scan analysis: correlation along the fast axis only
    assert 1.0 - g[0, 3] ** 2 > 0.15
    # the same image without a modality switches to the scan analysis by itself
    assert estimate_noise(noisy).kernel.shape == (1, 7)


def test_afterglow_along_x_marginal_std(dark_particles):
    # detector afterglow: white noise smeared along the scan direction (exp. decay)
    cfg = sim.AcquisitionConfig.stem(dose=20.0)
    noisy, expected = sim.simulate_acquisition(dark_particles, cfg, rng=7, return_expected=True)
    w = np.random.default_rng(8).standard_normal(noisy.shape)
    glow = ndi.convolve1d(w, np.exp(-np.arange(6) / 1.5), axis=1, origin=-3)
    noisy = noisy + 60.0 * glow / glow.std()
    level, true_sd = _background_truth(noisy, expected)
    nm = estimate_noise(noisy, modality="stem")
    est = math.sqrt(float(nm.variance(level)))
    naive = float(skimage_estimate_sigma(noisy))
    assert est == pytest.approx(true_sd, rel=0.15)  # measured: -0.2 %
    assert naive < 0.7 * true_sd  # measured: -35 %
    g = nm.kernel
    # clearly anisotropic: energy spread along x, centre dominant
    assert g.shape[0] == 1 and g[0, 2] > 0.15 and g[0, 3] > 0.8


def test_isotropic_correlated_noise_marginal_std():
    # SEM image plus a Gaussian random field (correlation length 2 px)
    clean = sim.nanoparticles((S, S), pixel_size_nm=0.5, rng=0)[0]
    noisy, expected = sim.simulate_acquisition(
        clean, sim.AcquisitionConfig.sem(), rng=9, return_expected=True
    )
    noisy = noisy + sim.correlated_noise((S, S), sigma=250.0, corr_length_px=2.0, rng=10)
    level, true_sd = _background_truth(noisy, expected)
    nm = estimate_noise(noisy)
    est = math.sqrt(float(nm.variance(level)))
    naive = float(skimage_estimate_sigma(noisy))
    assert est == pytest.approx(true_sd, rel=0.15)  # measured: -8 %
    assert naive < 0.7 * true_sd  # measured: -38 %
    assert nm.is_correlated() and nm.kernel.shape == (7, 7)
    g = nm.kernel
    assert g[3, 4] == pytest.approx(g[4, 3], rel=0.2)  # isotropic
    assert g[3, 4] > 0.1  # measured: 0.15


def test_white_noise_gives_delta_kernel(mixed_specimen):
    noisy = sim.simulate_acquisition(mixed_specimen, sim.AcquisitionConfig.low_dose_tem(), rng=11)
    for modality in (None, "tem", "stem"):
        nm = estimate_noise(noisy, modality=modality)
        assert not nm.is_correlated()
        np.testing.assert_array_equal(nm.kernel, [[1.0]])
    g = estimate_noise_kernel(noisy, radius=2)
    assert g.shape == (5, 5) and g[2, 2] > 0.98


def test_atomic_lattice_is_not_mistaken_for_correlated_noise():
    # full-field HAADF lattice: no flat region, strongly autocorrelated signal
    clean = sim.atomic_lattice((S, S), pixel_size_nm=0.02, rng=0)[0]
    noisy = sim.simulate_acquisition(clean, sim.AcquisitionConfig.stem(), rng=12)
    for modality in (None, "stem"):
        nm = estimate_noise(noisy, modality=modality)
        assert not nm.is_correlated()
        assert nm.gain == pytest.approx(10.0, rel=0.10)


def test_correlated_flag_forces():
    img = np.random.default_rng(13).normal(0.0, 2.0, (128, 128))
    assert estimate_noise(img, correlated=False).kernel.shape == (1, 1)
    forced = estimate_noise(img, correlated=True)
    assert forced.kernel.shape == (7, 7)
    assert not forced.is_correlated()  # an estimated kernel of white noise is ~delta


# --------------------------------------------------------------------------- sigma, residual


def test_estimate_sigma_white_and_correlated():
    rng = np.random.default_rng(14)
    yy, xx = np.mgrid[:256, :256]
    smooth = 50.0 * np.sin(xx / 20.0) + 0.1 * yy
    assert estimate_sigma(smooth + rng.normal(0.0, 3.0, smooth.shape)) == pytest.approx(
        3.0, rel=0.03
    )
    # noise = white ⊛ g: with the kernel the high-pass share is corrected for
    g = np.outer([0.5, 1.0, 0.5], [0.5, 1.0, 0.5])
    g /= np.sqrt((g**2).sum())
    corr = ndi.convolve(rng.standard_normal(smooth.shape), g, mode="wrap") * 3.0
    assert estimate_sigma(smooth + corr) < 0.6 * 3.0
    assert estimate_sigma(smooth + corr, kernel=g) == pytest.approx(3.0, rel=0.05)


def test_highpass_residual_kills_planes_and_line_offsets():
    yy, xx = np.mgrid[:32, :32].astype(float)
    offsets = np.random.default_rng(15).normal(0, 5, (32, 1)) * np.ones((1, 32))
    d = highpass_residual(2.0 * xx - 3.0 * yy + offsets)
    assert np.abs(d[1:-1, 1:-1]).max() < 1e-12


# --------------------------------------------------------------------------- NoiseModel


def test_noise_model_methods_and_serialisation():
    g = np.array([[0.0, 0.5, 0.0], [0.5, 2.0, 0.5], [0.0, 0.5, 0.0]])
    nm = NoiseModel(gain=2.0, offset=100.0, readout_sigma=3.0, kernel=g, signal_range=(120, 900))
    assert float(np.sum(nm.kernel**2)) == pytest.approx(1.0)
    assert not nm.kernel.flags.writeable
    assert nm.is_correlated() and nm.is_signal_dependent()
    np.testing.assert_allclose(nm.variance([100.0, 150.0, 50.0]), [9.0, 109.0, 0.0])
    psd = nm.psd((16, 20))
    assert psd.shape == (16, 20) and psd.mean() == pytest.approx(1.0)
    assert psd[0, 0] > 1.5  # positively correlated: more power at low frequency
    white = NoiseModel(gain=0.0, offset=0.0, readout_sigma=1.0)
    np.testing.assert_allclose(white.psd(8), np.ones((8, 8)))
    assert not white.is_signal_dependent() and not white.is_correlated()
    d = json.loads(json.dumps(nm.to_dict()))
    back = NoiseModel.from_dict(d)
    assert back == nm and hash(back) == hash(nm)
    np.testing.assert_allclose(back.kernel, nm.kernel, atol=1e-6)
    # a flat range of levels is not signal-dependent: std changes < 25 %
    assert not NoiseModel(1.0, 0.0, 10.0, signal_range=(10.0, 20.0)).is_signal_dependent()


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: estimate_noise(np.full((64, 64), np.nan)), "image"),
        (lambda: estimate_noise(np.zeros(64)), "image"),
        (lambda: estimate_noise(np.zeros((8, 8))), "image"),
        (lambda: estimate_noise(np.zeros((64, 64)), modality="cryo"), "modality"),
        (lambda: estimate_noise(np.zeros((64, 64)), correlated="yes"), "correlated"),
        (lambda: estimate_noise(np.zeros((64, 64)), radius=-1), "radius"),
        (lambda: estimate_sigma(np.zeros((4, 4)), kernel=np.ones((2, 2))), "kernel"),
        (lambda: estimate_noise_kernel(np.zeros((32, 32)), radius=-2), "radius"),
        (lambda: NoiseModel(gain=-1.0, offset=0.0, readout_sigma=1.0), "gain"),
        (lambda: NoiseModel(gain=1.0, offset=0.0, readout_sigma=-1.0), "readout_sigma"),
        (
            lambda: NoiseModel(gain=1.0, offset=0.0, readout_sigma=1.0, kernel=np.ones((2, 3))),
            "kernel",
        ),
        (lambda: NoiseModel(1.0, 0.0, 1.0, signal_range=(5.0, 1.0)), "signal_range"),
        (lambda: NoiseModel.from_dict({"gain": 1.0}), "offset"),
    ],
)
def test_bad_input_raises_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()
