"""BM3D collaborative filter for white and correlated noise (em_restore.backend.bm3d).

Figures measured when these tests were written (144 x 144 px, σ = 0.1 on images
normalised to [0, 1], noisy PSNR 20.0 dB):

=====================  ======  ======  =========  =======
specimen (seed)        BM3D    NLM     wavelet    gain
=====================  ======  ======  =========  =======
atomic_lattice (1)     31.8    29.0    25.0       +11.9
tissue_texture (1)     26.6    24.9    23.6       +6.7
nanoparticles (1)      31.9    32.2    26.0       +11.9   (not tested: NLM wins)
vesicles (1)           35.2    34.9    30.5       +15.3   (not tested: margin < 0.5)
=====================  ======  ======  =========  =======

Correlated noise, PSNR with the true kernel vs the same σ treated as white:
tissue + simulator field (ℓ = 2 px) 22.1 vs 20.4 dB (+1.7, noisy 20.1);
nanoparticles + STEM-like afterglow along x 27.6 vs 24.3 dB (+3.3, noisy 20.0).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage as ndi
from skimage.restoration import denoise_nl_means, denoise_wavelet

from em_restore.backend import simulate as sim
from em_restore.backend.bm3d import bm3d, noise_coefficient_std, support_radius

SIGMA = 0.1
SHAPE = (144, 144)


def _psnr(x, ref):
    return 10 * np.log10(1.0 / np.mean((x - ref) ** 2))


def _normalise(x):
    x = x - x.min()
    return x / x.max()


def _specimen(kind, shape=SHAPE, seed=1):
    make = {
        "lattice": sim.atomic_lattice,
        "tissue": sim.tissue_texture,
        "nanoparticles": sim.nanoparticles,
        "vesicles": sim.vesicles,
    }[kind]
    return _normalise(make(shape, rng=seed)[0])


def _white_noisy(kind, seed=1):
    clean = _specimen(kind, seed=seed)
    return clean, clean + SIGMA * np.random.default_rng(100 + seed).standard_normal(clean.shape)


def _gaussian_field_kernel(corr_length_px):
    """Kernel g with white ⊛ g = sim.correlated_noise(..., corr_length_px) (sum g² = 1)."""
    s = corr_length_px / np.sqrt(2.0)
    r = int(np.ceil(4 * s))
    y = np.arange(-r, r + 1)
    g = np.exp(-(y[:, None] ** 2 + y[None, :] ** 2) / (2 * s * s))
    return g / np.sqrt((g**2).sum())


def _afterglow_kernel(decay=0.7, length=5):
    """STEM detector afterglow along the fast scan axis: one-sided AR(1) along x."""
    g = np.zeros((1, 2 * length - 1))
    g[0, length - 1 :] = decay ** np.arange(length)
    return g / np.sqrt((g**2).sum())


@pytest.fixture(scope="module")
def tissue():
    clean, noisy = _white_noisy("tissue")
    return clean, noisy, bm3d(noisy, sigma=SIGMA)


# ------------------------------------------------------------------ denoising quality
@pytest.mark.parametrize(("kind", "min_gain"), [("lattice", 8.0), ("tissue", 6.0)])
def test_white_noise_beats_nl_means_and_wavelets(kind, min_gain, tissue):
    if kind == "tissue":
        clean, noisy, out = tissue
    else:
        clean, noisy = _white_noisy(kind)
        out = bm3d(noisy, sigma=SIGMA)
    nlm = denoise_nl_means(
        noisy, patch_size=5, patch_distance=6, h=0.8 * SIGMA, sigma=SIGMA, fast_mode=True
    )
    wav = denoise_wavelet(noisy, method="BayesShrink", mode="soft", rescale_sigma=True)
    p_out, p_in = _psnr(out, clean), _psnr(noisy, clean)
    assert p_out - p_in >= min_gain
    assert p_out >= _psnr(nlm, clean) + 0.5
    assert p_out >= _psnr(wav, clean) + 0.5


def test_wiener_stage_improves_on_hard_thresholding(tissue):
    clean, noisy, both = tissue
    hard = bm3d(noisy, sigma=SIGMA, stage="hard")
    assert _psnr(both, clean) >= _psnr(hard, clean) + 0.1
    assert _psnr(hard, clean) >= _psnr(noisy, clean) + 5.0


@pytest.mark.parametrize("case", ["tissue_gaussian_field", "nanoparticles_scan_afterglow"])
def test_true_noise_kernel_beats_white_assumption(case):
    rng = np.random.default_rng(7)
    if case == "tissue_gaussian_field":
        clean = _specimen("tissue")
        noise = sim.correlated_noise(clean.shape, sigma=SIGMA, corr_length_px=2, rng=rng)
        kernel = _gaussian_field_kernel(2)
    else:
        clean = _specimen("nanoparticles")
        kernel = _afterglow_kernel()
        noise = SIGMA * ndi.convolve(rng.standard_normal(clean.shape), kernel, mode="wrap")
    assert np.std(noise) == pytest.approx(SIGMA, rel=0.1)  # same marginal sigma
    noisy = clean + noise
    coloured = _psnr(bm3d(noisy, sigma=SIGMA, kernel=kernel), clean)
    white = _psnr(bm3d(noisy, sigma=SIGMA), clean)
    assert coloured >= white + 1.0
    assert coloured >= _psnr(noisy, clean) + 1.5


def test_delta_kernel_is_white_noise():
    _, noisy = _white_noisy("vesicles")
    noisy = noisy[:64, :80]
    np.testing.assert_allclose(
        bm3d(noisy, sigma=SIGMA, kernel=np.ones((1, 1))), bm3d(noisy, sigma=SIGMA), atol=1e-12
    )


def test_coefficient_noise_std_matches_monte_carlo():
    gy = np.exp(-0.5 * np.arange(-2, 3) ** 2)
    kernel = np.outer(gy, _afterglow_kernel()[0])  # anisotropic 5 x 9
    kernel /= np.sqrt((kernel**2).sum())
    noise = ndi.convolve(np.random.default_rng(3).standard_normal((512, 512)), kernel, mode="wrap")
    h, w = (s // 8 * 8 for s in noise.shape)
    patches = noise[:h, :w].reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)
    coefs = scipy.fft.dctn(patches, norm="ortho", axes=(-2, -1)).reshape(-1, 8, 8)
    measured = coefs.std(axis=0)
    predicted = noise_coefficient_std(2.0, kernel) / 2.0
    np.testing.assert_allclose(measured, predicted, rtol=0.12)
    assert predicted.max() / predicted.min() > 3  # really coloured
    np.testing.assert_allclose(noise_coefficient_std(0.3), 0.3)


# ------------------------------------------------------------------------ behaviour
def test_strength_monotonically_smooths():
    noise = np.random.default_rng(5).standard_normal((96, 96))
    variances = [np.var(bm3d(noise, sigma=1.0, strength=s)) for s in (0.5, 1.0, 2.0)]
    assert variances[0] > variances[1] > variances[2]
    assert variances[0] < 0.5
    np.testing.assert_array_equal(bm3d(noise, sigma=1.0, strength=0.0), noise)


def test_deterministic():
    _, noisy = _white_noisy("nanoparticles")
    noisy = noisy[:96, :112]
    kernel = _afterglow_kernel()
    np.testing.assert_array_equal(
        bm3d(noisy, sigma=SIGMA, kernel=kernel), bm3d(noisy, sigma=SIGMA, kernel=kernel)
    )


@pytest.mark.parametrize(
    "params",
    [
        {"sigma": SIGMA},
        {"sigma": SIGMA, "stage": "hard", "kernel": "afterglow", "search_radius": 7, "step": 2},
    ],
)
def test_tiles_with_support_halo_reproduce_whole_image(params):
    params = dict(params)
    if params.get("kernel") == "afterglow":
        params["kernel"] = _afterglow_kernel()
    _, noisy = _white_noisy("tissue", seed=2)
    noisy = noisy[:, :131]
    whole = bm3d(noisy, **params)
    halo = support_radius(**params)
    h, w = noisy.shape
    tiled = np.full_like(whole, np.nan)
    for y0, y1 in [(0, 71), (71, h)]:  # 71: not a multiple of the step
        for x0, x1 in [(0, 65), (65, w)]:
            a0, a1 = max(0, y0 - halo), min(h, y1 + halo)
            b0, b1 = max(0, x0 - halo), min(w, x1 + halo)
            tile = bm3d(noisy[a0:a1, b0:b1], origin=(a0, b0), **params)
            tiled[y0:y1, x0:x1] = tile[y0 - a0 : y1 - a0, x0 - b0 : x1 - b0]
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-8)


def test_support_radius():
    assert support_radius() == 2 * (2 * 12 + 8 - 1)
    assert support_radius(stage="hard", patch_size=4, search_radius=5) == 13
    assert support_radius(sigma=1.0, kernel=None, step=2) == support_radius()


@pytest.mark.parametrize("kernel", [None, "afterglow"])
def test_constant_image_stays_constant(kernel):
    kernel = _afterglow_kernel() if kernel else None
    out = bm3d(np.full((40, 52), 3.25), sigma=1.0, kernel=kernel)
    np.testing.assert_allclose(out, 3.25, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("shape", "params"),
    [
        ((8, 8), {}),
        ((9, 40), {}),
        ((21, 13), {"max_matches": 12}),
        ((30, 30), {"search_radius": 0}),
        ((30, 33), {"patch_size": 5, "step": 5}),
    ],
)
def test_small_images_and_unusual_parameters(shape, params):
    rng = np.random.default_rng(0)
    clean = np.outer(np.linspace(0, 1, shape[0]), np.linspace(1, 2, shape[1]))
    noisy = clean + 0.1 * rng.standard_normal(shape)
    out = bm3d(noisy, sigma=0.1, **params)
    assert out.shape == shape and out.dtype == np.float64 and np.isfinite(out).all()
    assert np.mean((out - clean) ** 2) < np.mean((noisy - clean) ** 2)


def test_integer_and_float32_input_untouched():
    img = (np.random.default_rng(0).poisson(20.0, (32, 32))).astype(np.uint16)
    copy = img.copy()
    out = bm3d(img, sigma=4.5)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(img, copy)
    out32 = bm3d(img.astype(np.float32), sigma=4.5)
    np.testing.assert_allclose(out32, out, rtol=0, atol=1e-9)


def _bad(name):
    image = np.zeros((16, 16))
    cases = {
        "nan": (np.where(np.eye(16) > 0, np.nan, image), {}, "image"),
        "1d": (np.zeros(64), {}, "image"),
        "3d": (np.zeros((2, 16, 16)), {}, "image"),
        "complex": (image.astype(complex), {}, "image"),
        "small": (np.zeros((5, 40)), {}, "patch_size"),
        "sigma0": (image, {"sigma": 0.0}, "sigma"),
        "sigma_neg": (image, {"sigma": -1.0}, "sigma"),
        "sigma_nan": (image, {"sigma": float("nan")}, "sigma"),
        "kernel_even": (image, {"kernel": np.ones((2, 3)) / np.sqrt(6)}, "kernel"),
        "kernel_unnormalised": (image, {"kernel": np.ones((3, 3)) / 9}, "kernel"),  # sum 1
        "kernel_1d": (image, {"kernel": np.ones(3) / np.sqrt(3)}, "kernel"),
        "kernel_nan": (image, {"kernel": np.full((1, 1), np.nan)}, "kernel"),
        "strength": (image, {"strength": -0.5}, "strength"),
        "stage": (image, {"stage": "wiener"}, "stage"),
        "step": (image, {"step": 9}, "step"),
        "patch_size": (image, {"patch_size": 1}, "patch_size"),
        "max_matches": (image, {"max_matches": 0}, "max_matches"),
        "search_radius": (image, {"search_radius": -1}, "search_radius"),
        "origin": (image, {"origin": 3}, "origin"),
        "origin_float": (image, {"origin": (0, 1.5)}, "origin"),
    }
    return cases[name]


@pytest.mark.parametrize(
    "name",
    [
        "nan",
        "1d",
        "3d",
        "complex",
        "small",
        "sigma0",
        "sigma_neg",
        "sigma_nan",
        "kernel_even",
        "kernel_unnormalised",
        "kernel_1d",
        "kernel_nan",
        "strength",
        "stage",
        "step",
        "patch_size",
        "max_matches",
        "search_radius",
        "origin",
        "origin_float",
    ],
)
def test_bad_input_names_the_parameter(name):
    image, changes, param = _bad(name)
    kwargs = {"sigma": 1.0, **changes}
    with pytest.raises(ValueError, match=param):
        bm3d(image, **kwargs)


@pytest.mark.parametrize("compiled", [False, True])
def test_patch_spectra_are_the_2d_dct_of_every_patch(compiled, monkeypatch):
    from em_restore.backend import bm3d as module
    from em_restore.backend.bm3d import _dct_matrix, _patch_spectra

    if compiled and not module.COMPILED:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(module, "COMPILED", compiled)
    img = np.random.default_rng(7).standard_normal((30, 27))
    p, row0, row1 = 8, 4, 15
    c = _dct_matrix(p)
    spectra = _patch_spectra(img, row0, row1, c)
    assert spectra.shape == (row1 - row0, 27 - p + 1, p * p)
    for y, x in [(row0, 0), (row0 + 3, 11), (row1 - 1, 27 - p)]:
        patch = img[y : y + p, x : x + p]
        expected = scipy.fft.dctn(patch, norm="ortho").ravel()  # (k_y, k_x) raster order
        np.testing.assert_allclose(spectra[y - row0, x], expected, rtol=0, atol=1e-12)


def test_remembered_matches_give_the_result_of_a_fresh_match(monkeypatch):
    from em_restore.backend import bm3d as module

    _, noisy = _white_noisy("vesicles", seed=3)
    noisy = noisy[:80, :88]
    module._MATCHES.clear()
    module._SPECTRA.clear()
    first = {s: bm3d(noisy, sigma=SIGMA, strength=s) for s in (0.8, 1.2)}
    assert len(module._MATCHES) == 1  # stage 1 matched once for both strengths
    # and the noisy patches' spectra computed once for both stages and strengths
    assert len(module._SPECTRA) == 1
    module._MATCHES.clear()
    module._SPECTRA.clear()
    # The other strength first: its matches are fresh, the remembered ones then serve 0.8.
    again = {s: bm3d(noisy, sigma=SIGMA, strength=s) for s in (1.2, 0.8)}
    for s in first:
        np.testing.assert_array_equal(first[s], again[s])
    assert np.std(first[1.2]) < np.std(first[0.8])
    # A different image, or the same one at another origin, is not confused with it.
    shifted = bm3d(noisy, sigma=SIGMA, strength=0.8, origin=(1, 2))
    assert len(module._MATCHES) == 2
    assert not np.array_equal(shifted, first[0.8])
    # Nothing remembered (as for large images): the same result, bit for bit.
    other = noisy + 0.5
    remembered = bm3d(other, sigma=SIGMA, strength=1.2)
    assert len(module._SPECTRA) == 2
    monkeypatch.setattr(module, "_MEMO_PIXELS", 0)
    np.testing.assert_array_equal(bm3d(other, sigma=SIGMA, strength=1.2), remembered)


# ------------------------------------------------------------ compiled kernels
@pytest.mark.parametrize(
    "case",
    [
        {"patch_size": 8},  # the defaults: Haar across groups of 16 and 32
        {"patch_size": 5, "search_radius": 6, "step": 2, "kernel": "afterglow"},  # 5 = 4 + 1
        {"patch_size": 7, "max_matches": 12, "stage": "hard"},  # 7 = 4 + 2 + 1, DCT groups
        {"patch_size": 8, "search_radius": 2},  # 25 candidates: groups cut to a DCT of 25
    ],
)
def test_compiled_kernels_match_the_numpy_reference(case, monkeypatch):
    """Same matches (the distances are bit for bit the numpy ones) and the same
    result to rounding, with either kernel in play; a wrong butterfly, threshold,
    weight or position moves the result by far more than 1e-10."""
    from em_restore.backend import bm3d as module

    if not module.COMPILED:
        pytest.skip("numba is not installed")
    case = dict(case)
    if case.get("kernel") == "afterglow":
        case["kernel"] = _afterglow_kernel()
    _, noisy = _white_noisy("tissue", seed=4)
    noisy = noisy[:70, :83]
    module._MATCHES.clear()
    monkeypatch.setattr(module, "COMPILED", False)
    reference = bm3d(noisy, sigma=SIGMA, strength=1.2, **case)
    module._MATCHES.clear()
    monkeypatch.setattr(module, "COMPILED", True)
    compiled = bm3d(noisy, sigma=SIGMA, strength=1.2, **case)
    module._MATCHES.clear()
    np.testing.assert_allclose(compiled, reference, rtol=0, atol=1e-10 * np.ptp(reference))
    assert np.abs(compiled - noisy).max() > 0.1 * SIGMA  # it did filter


def test_compiled_matching_agrees_with_numpy_and_breaks_ties_by_raster_order(monkeypatch):
    from em_restore.backend import bm3d as module

    if not module.COMPILED:
        pytest.skip("numba is not installed")
    img = np.random.default_rng(5).standard_normal((40, 45))
    excluded = module._excluded_offsets(_afterglow_kernel(), 5)
    ys, xs = module._grid(40, 6, 2, 0), module._grid(45, 6, 2, 1)
    for exc in (None, excluded):
        monkeypatch.setattr(module, "COMPILED", False)
        ref = module._match(img, ys, xs, 6, 5, 20, exc)
        monkeypatch.setattr(module, "COMPILED", True)
        got = module._match(img, ys, xs, 6, 5, 20, exc)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
    # A constant image: every candidate ties; after the reference come the lowest
    # offsets in raster order (rows first), whatever the position.
    flat = np.ones((30, 30))
    qy, qx = module._match(flat, np.array([10]), np.array([12]), 4, 3, 4, None)
    assert qy.tolist() == [[10, 7, 7, 7]] and qx.tolist() == [[12, 9, 10, 11]]
