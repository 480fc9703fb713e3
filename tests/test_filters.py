"""Classical additive-noise denoisers (em_restore.backend.filters): gains, locality, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from em_restore.backend import filters as F
from em_restore.backend import simulate as sim

SIGMA = 0.1


def _psnr(ref, x):
    return 10.0 * np.log10((ref.max() - ref.min()) ** 2 / np.mean((ref - x) ** 2))


@pytest.fixture(scope="module")
def scene():
    """Blurred nanoparticles (256²) with white Gaussian noise of sd 0.1 (PSNR ~16 dB)."""
    clean = sim.convolve(
        sim.nanoparticles((256, 256), pixel_size_nm=0.5, rng=0)[0], sim.gaussian_psf(1.0)
    )
    noisy = clean + np.random.default_rng(1).normal(0.0, SIGMA, clean.shape)
    return clean, noisy


# sensible strengths (not the optimum) and the PSNR gain they must reach;
# measured on this scene: gaussian 10.4, median 7.5, nlm 12.7, tv 10.8, wavelet 11.0 dB
STRENGTHS = {
    "gaussian": ({"sigma_px": 1.0}, 6.0),
    "median": ({"size": 3}, 5.0),
    "nlm": ({"h": 0.8, "patch_distance": 4}, 6.0),
    "tv": ({"weight": 1.0, "max_num_iter": 100}, 6.0),
    "wavelet": ({"strength": 1.0}, 6.0),
}


@pytest.mark.parametrize("method", F.METHODS)
def test_psnr_gain_and_determinism(scene, method):
    clean, noisy = scene
    params, min_gain = STRENGTHS[method]
    out = F.apply_filter(noisy, method, sigma=SIGMA, **params)
    assert out.dtype == np.float64 and out.shape == noisy.shape
    gain = _psnr(clean, out) - _psnr(clean, noisy)
    assert gain > min_gain, f"{method}: {gain:.1f} dB"
    np.testing.assert_array_equal(out, F.apply_filter(noisy, method, sigma=SIGMA, **params))


CASES = [
    ("gaussian", {"sigma_px": 1.5}, 0.0),
    ("median", {"size": 5, "sigma": SIGMA}, 0.0),
    ("nlm", {"h": 0.8, "sigma": SIGMA, "patch_distance": 4}, 1e-9),  # integral images
    ("wavelet", {"strength": 1.0, "sigma": SIGMA}, 0.0),
    ("wavelet", {"strength": 2.0, "sigma": SIGMA, "wavelet": "db1", "levels": 2}, 0.0),
    (
        "wavelet",
        {"strength": 1.0, "sigma": SIGMA, "kernel": np.outer([1, 2, 1], [1, 3, 1]) / 8.0},
        0.0,
    ),
]


@pytest.mark.parametrize(("method", "params", "atol"), CASES)
def test_tiled_equals_whole(scene, method, params, atol):
    # Crop a tile with a halo of support_radius, filter, keep the interior: identical
    # to the whole-image result (measured max difference: 0.0 for all but NLM, whose
    # integral images round differently: <= 1e-9 relative to data of range ~1).
    _, noisy = scene
    fn = getattr(F, method)
    radius = F.support_radius(method, **params)
    whole = fn(noisy, **params)
    for y0, x0 in ((radius, radius), (100, 77)):
        y1, x1 = y0 + 40, x0 + 56
        tile = noisy[y0 - radius : y1 + radius, x0 - radius : x1 + radius]
        out = fn(tile, **params)[radius : radius + y1 - y0, radius : radius + x1 - x0]
        np.testing.assert_allclose(out, whole[y0:y1, x0:x1], rtol=0, atol=max(atol, 1e-10))
    # mirror-padding by the radius reproduces the border behaviour
    padded = fn(np.pad(noisy, radius, mode="symmetric"), **params)
    np.testing.assert_allclose(padded[radius:-radius, radius:-radius], whole, atol=max(atol, 1e-10))


def test_tv_is_not_local_but_a_halo_of_48_is_enough(scene):
    _, noisy = scene
    assert F.support_radius("tv", weight=1.0) is None
    params = {"weight": 3.0, "sigma": SIGMA, "max_num_iter": 200}
    whole = F.tv(noisy, **params)
    y0, x0, n = 100, 100, 40
    errors = {}
    for halo in (16, 32, F.TV_HALO):
        tile = noisy[y0 - halo : y0 + n + halo, x0 - halo : x0 + n + halo]
        out = F.tv(tile, **params)[halo:-halo, halo:-halo]
        errors[halo] = np.abs(out - whole[y0 : y0 + n, x0 : x0 + n]).max() / SIGMA
    # measured: 0.2, 2e-4, 4e-6 sigma (float32 iterations: 1e-8 sigma in float64, so
    # at TV_HALO what is left is rounding, far inside TV_TOLERANCE of the data range)
    assert errors[16] > 1e-4  # genuinely non-local
    assert errors[32] < 1e-2 and errors[F.TV_HALO] < 2e-5


def test_tv_of_a_tall_frame_in_bands_matches_one_run_and_ignores_the_thread_count(monkeypatch):
    from em_restore.backend import _threads
    from em_restore.backend.chambolle import chambolle

    rng = np.random.default_rng(5)
    rows = 2 * F.TV_BAND + 90  # three bands, the last one short
    clean = np.repeat(np.sin(np.linspace(0, 12, rows))[:, None], 40, axis=1)
    noisy = clean + SIGMA * rng.standard_normal(clean.shape)
    params = {"weight": 3.0, "sigma": SIGMA, "max_num_iter": 200}
    banded = F.tv(noisy, **params)
    whole = chambolle(noisy, 3.0 * SIGMA, 200).astype(np.float64)
    err = np.abs(banded - whole).max() / SIGMA
    assert 0 < err < 2e-5  # banded (not one run), and as close as a tile with TV_HALO
    monkeypatch.setattr(_threads, "THREADS", 1)
    np.testing.assert_array_equal(F.tv(noisy, **params), banded)


def test_wavelet_identity_and_kernel(scene):
    _, noisy = scene
    np.testing.assert_allclose(F.wavelet(noisy, sigma=SIGMA, strength=0.0), noisy, atol=1e-12)
    np.testing.assert_allclose(
        F.wavelet(noisy, sigma=SIGMA, kernel=[[1.0]]), F.wavelet(noisy, sigma=SIGMA), atol=1e-12
    )
    for name in ("db1", "db3", "db4", "sym4", "coif1"):
        np.testing.assert_allclose(
            F.wavelet(noisy[:64, :64], sigma=SIGMA, strength=0.0, wavelet=name),
            noisy[:64, :64],
            atol=1e-12,
        )


def test_wavelet_uses_the_correlation_kernel(scene):
    # Noise correlated along x: white-noise thresholds are wrong per subband (too
    # high at fine scales, too low at coarse ones). With the kernel, the nominal
    # BayesShrink strength 1 is near the optimum (measured 8.0 dB vs best 8.9 dB at
    # 2), without it strength 1 gives 4.1 dB and the optimum moves to 8 (8.7 dB).
    clean, _ = scene
    w = np.random.default_rng(2).standard_normal(clean.shape)
    g = np.array([[0.4, 0.8, 1.0, 0.8, 0.4]])
    g /= np.sqrt((g**2).sum())
    noisy = clean + SIGMA * ndi.correlate(w, g, mode="wrap")

    def gain(**kw):
        return _psnr(clean, F.wavelet(noisy, sigma=SIGMA, **kw)) - _psnr(clean, noisy)

    strengths = (1.0, 2.0, 4.0, 8.0)
    with_kernel = {s: gain(strength=s, kernel=g) for s in strengths}
    white = {s: gain(strength=s) for s in strengths}
    assert with_kernel[1.0] > white[1.0] + 2.0
    assert with_kernel[1.0] > max(with_kernel.values()) - 1.5
    assert max(with_kernel.values()) > max(white.values()) - 0.1


def test_support_radius_values():
    assert F.support_radius("gaussian", sigma_px=2.0) == 8
    assert F.support_radius("median", size=5) == 3
    assert F.support_radius("median", size=5, spike_threshold=None) == 2
    assert F.support_radius("remove_spikes", size=3) == 1
    assert F.support_radius("nlm", patch_size=7, patch_distance=11) == 14
    assert F.support_radius("wavelet") == 42
    assert F.support_radius("wavelet", wavelet="db1", levels=2) == 13
    assert F.support_radius("tv", weight=1.0) is None
    assert set(F.STRENGTH_PARAM) == set(F.METHODS)
    assert F.STRENGTH_PARAM == {
        "gaussian": "sigma_px",
        "median": "size",
        "nlm": "h",
        "tv": "weight",
        "wavelet": "strength",
    }


def test_remove_spikes_finds_injected_spikes():
    clean = sim.convolve(sim.tissue_texture((256, 256), rng=0)[0], sim.gaussian_psf(1.0))
    noisy = clean + np.random.default_rng(3).normal(0.0, SIGMA, clean.shape)
    spiky, truth = sim.xray_spikes(
        noisy, fraction=2e-3, amplitude=20 * SIGMA, rng=4, return_mask=True
    )
    dead, dead_mask = sim.dead_pixels(spiky, fraction=1e-3, value=-1.0, rng=5, return_mask=True)
    truth = truth | dead_mask
    out, mask = F.remove_spikes(dead, sigma=SIGMA, return_mask=True)
    found = (mask & truth).sum() / truth.sum()
    changed_elsewhere = (mask & ~truth).sum() / (~truth).sum()
    assert found >= 0.95  # measured: 1.0
    assert changed_elsewhere < 0.01  # measured: 0.0
    np.testing.assert_array_equal(out[~mask], dead[~mask])
    # the spikes are gone: the residual error is at the noise level
    assert np.abs(out - clean).max() < 8 * SIGMA
    # default sigma (robust estimate from the image) finds them too
    assert (F.remove_spikes(dead, return_mask=True)[1] & truth).sum() >= 0.95 * truth.sum()


def test_median_removes_spikes_first():
    img = np.zeros((9, 9))
    img[4, 4] = img[4, 5] = 50.0  # a two-pixel streak
    assert F.median(img, size=3, sigma=1.0).max() == 0.0
    assert F.median(img, size=1, sigma=1.0).max() == 0.0
    assert F.median(img, size=1, spike_threshold=None).max() == 50.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: F.gaussian(np.full((8, 8), np.nan), sigma_px=1.0), "image"),
        (lambda: F.gaussian(np.ones(8), sigma_px=1.0), "image"),
        (lambda: F.gaussian(np.ones((8, 8)), sigma_px=-1.0), "sigma_px"),
        (lambda: F.nlm(np.ones((8, 8)), sigma=-0.1, h=0.8), "sigma"),
        (lambda: F.nlm(np.ones((8, 8)), sigma=0.1, h=0.0), "h"),
        (lambda: F.tv(np.ones((8, 8)), weight=-1.0), "weight"),
        (lambda: F.wavelet(np.ones((8, 8)), sigma=-1.0), "sigma"),
        (lambda: F.wavelet(np.ones((8, 8)), sigma=1.0, wavelet="bior2.2"), "wavelet"),
        (lambda: F.wavelet(np.ones((8, 8)), sigma=1.0, wavelet=3), "wavelet"),
        (lambda: F.wavelet(np.ones((8, 8)), sigma=1.0, levels=0), "levels"),
        (lambda: F.median(np.ones((8, 8)), size=4), "size"),
        (lambda: F.remove_spikes(np.ones((8, 8)), threshold=0.0), "threshold"),
        (lambda: F.remove_spikes(np.ones((8, 8)), sigma=np.ones((4, 4))), "sigma"),
        (lambda: F.support_radius("bm3d"), "method"),
        (lambda: F.apply_filter(np.ones((8, 8)), "bilateral"), "method"),
    ],
)
def test_bad_input_raises_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("compiled", [False, True])
def test_chambolle_float64_is_scikit_image_bit_for_bit_and_float32_close(
    scene, compiled, monkeypatch
):
    """Both the numpy iteration and the compiled one (:mod:`._tv_kernels`, one pass per
    step) equal scikit-image bit for bit in float64; in float32 they equal each other."""
    from skimage.restoration import denoise_tv_chambolle

    from em_restore.backend import chambolle as module
    from em_restore.backend.chambolle import chambolle

    if compiled and not module.COMPILED:
        pytest.skip("numba is not installed")
    _, noisy = scene
    monkeypatch.setattr(module, "COMPILED", False)
    numpy32 = chambolle(noisy[:61, :47], 0.3, 37)
    monkeypatch.setattr(module, "COMPILED", compiled)
    np.testing.assert_array_equal(chambolle(noisy[:61, :47], 0.3, 37), numpy32)
    for weight, iters in ((0.05, 200), (0.3, 37), (0.1, 1)):
        ref = denoise_tv_chambolle(noisy, weight=weight, eps=0.0, max_num_iter=iters)
        np.testing.assert_array_equal(chambolle(noisy, weight, iters, dtype=np.float64), ref)
        fast = chambolle(noisy, weight, iters)
        assert fast.dtype == np.float32
        # measured: at most 3e-6 of the data range
        assert np.abs(fast - ref).max() < 1e-4 * np.ptp(noisy)
    # and the filter uses it, weight relative to sigma
    ref = denoise_tv_chambolle(noisy, weight=2.0 * SIGMA, eps=0.0, max_num_iter=200)
    out = F.tv(noisy, weight=2.0, sigma=SIGMA)
    assert out.dtype == np.float64
    # measured: 1.2e-4 of the data range at most, 105 dB
    assert 0 < np.abs(out - ref).max() < 5e-4 * np.ptp(noisy)
    assert _psnr(ref, out) > 80


def test_remembered_wavelet_analysis_gives_the_fresh_result_and_is_keyed_by_image():
    """The calibration tries several strengths per crop; the analysis is remembered by
    the image's bytes: a repeat equals a fresh run, another image is not confused with
    it, and the remembered arrays cannot be changed by a caller."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, (64, 64)), rng.normal(0, 1, (64, 64))
    F._ANALYSES.clear()
    fresh = {s: F.wavelet(a, sigma=1.0, strength=s) for s in (0.0, 0.8, 1.6)}
    assert len(F._ANALYSES) == 1
    for s, out in fresh.items():
        F._ANALYSES.clear()
        np.testing.assert_array_equal(F.wavelet(a, sigma=1.0, strength=s), out)
    F.wavelet(a, sigma=1.0)
    other = F.wavelet(b, sigma=1.0, strength=0.8)
    assert len(F._ANALYSES) == 2 and not np.array_equal(other, fresh[0.8])
    F._ANALYSES.clear()
    np.testing.assert_array_equal(F.wavelet(b, sigma=1.0, strength=0.8), other)
    _, analysis = next(iter(F._ANALYSES.values()))
    with pytest.raises(ValueError):
        analysis[0][0][0][0, 0] = 1.0
    np.testing.assert_allclose(fresh[0.0], a, atol=1e-10)  # strength 0: the tight frame
