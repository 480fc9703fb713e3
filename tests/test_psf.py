"""Blur kernels and FFT convolution (em_restore.backend.psf)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from em_restore.backend import psf as P


def _kernels():
    return {
        "gaussian": P.gaussian_psf(1.7),
        "gaussian_aniso": P.gaussian_psf((1.0, 2.5)),
        "disk": P.disk_psf(4.3),
        "motion": P.motion_psf(7.0, 30.0),
        "path": P.path_psf(P.random_motion_path(9.0, rng=3, curvature=2.0)),
    }


KERNELS = _kernels()


def _moments(k):
    c = k.shape[0] // 2
    r = np.arange(k.shape[0]) - c
    my = (k.sum(1) * r).sum()
    mx = (k.sum(0) * r).sum()
    return my, mx, r


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_is_odd_square_nonnegative_and_normalised(name):
    k = KERNELS[name]
    assert k.ndim == 2 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert k.dtype == np.float64
    assert k.min() >= 0
    assert k.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    "k",
    [
        P.gaussian_psf(2.0),
        P.disk_psf(3.7),
        P.motion_psf(6.0, 0.0),
        P.motion_psf(9.0, 30.0),
        P.motion_psf(5.5, 90.0),
        P.motion_psf(8.0, 135.0),
    ],
)
def test_symmetric_kernels_have_centre_of_mass_at_central_pixel(k):
    my, mx, _ = _moments(k)
    assert abs(my) < 1e-9 and abs(mx) < 1e-9
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-15)


@pytest.mark.parametrize("sigma", [1.0, 2.5, 4.0])
def test_gaussian_second_moment_is_sigma_squared(sigma):
    k = P.gaussian_psf(sigma)
    _, _, r = _moments(k)
    assert (k.sum(1) * r**2).sum() == pytest.approx(sigma**2, rel=0.02)
    assert (k.sum(0) * r**2).sum() == pytest.approx(sigma**2, rel=0.02)


def test_gaussian_anisotropic_and_zero_sigma():
    k = P.gaussian_psf((1.0, 3.0))
    _, _, r = _moments(k)
    assert (k.sum(1) * r**2).sum() == pytest.approx(1.0, rel=0.02)
    assert (k.sum(0) * r**2).sum() == pytest.approx(9.0, rel=0.02)
    assert np.array_equal(P.gaussian_psf(0.0), [[1.0]])
    assert P.gaussian_psf(0.0, size=5)[2, 2] == 1.0


@pytest.mark.parametrize("radius", [3.0, 5.5, 10.0])
def test_disk_area_is_pi_r_squared(radius):
    k = P.disk_psf(radius)
    # interior pixels hold 1 / area; the anti-aliased edge keeps the total area exact
    assert 1.0 / k.max() == pytest.approx(np.pi * radius**2, rel=0.01)
    cover = k / k.max()
    assert cover.sum() == pytest.approx(np.pi * radius**2, rel=0.01)
    assert 0 < cover[cover < 1].size  # has partially covered (anti-aliased) pixels


@pytest.mark.parametrize(("length", "angle"), [(10.0, 0.0), (20.0, 60.0), (15.0, 90.0)])
def test_motion_length_and_direction(length, angle):
    k = P.motion_psf(length, angle)
    c = k.shape[0] // 2
    y, x = np.mgrid[: k.shape[0], : k.shape[1]] - c
    t = np.deg2rad(angle)
    along = -np.sin(t) * y + np.cos(t) * x
    across = np.cos(t) * y + np.sin(t) * x
    # uniform segment: variance L²/12 (+ about 1/6 px² from bilinear splatting)
    assert np.sqrt(12 * (k * along**2).sum()) == pytest.approx(length, rel=0.03)
    assert (k * across**2).sum() < 0.2


def test_motion_angle_convention_is_counter_clockwise_as_displayed():
    k = P.motion_psf(6.0, 90.0)  # vertical
    c = k.shape[0] // 2
    assert k[:, c].sum() == pytest.approx(1.0)
    k45 = P.motion_psf(8.0, 45.0)  # up-right on screen: row decreases as column increases
    c = k45.shape[0] // 2
    assert k45[c - 2, c + 2] > 0 and k45[c + 2, c - 2] > 0 and k45[c - 2, c - 2] == 0


def test_path_psf_weights_equal_time_per_segment():
    # two segments traversed in equal times: centre of mass = time average of positions
    k = P.path_psf([[0.0, 0.0], [0.0, 4.0], [0.0, 5.0]])
    my, mx, _ = _moments(k)
    assert mx == pytest.approx(0.5 * 2.0 + 0.5 * 4.5, abs=1e-9)
    assert my == pytest.approx(0.0, abs=1e-12)
    c = k.shape[0] // 2
    assert k[c, c + 4 :].sum() > k[c, c : c + 2].sum()  # slow part collects more weight


def test_path_psf_single_point_is_subpixel_delta():
    k = P.path_psf([[0.25, -0.5]])
    my, mx, _ = _moments(k)
    assert (my, mx) == pytest.approx((0.25, -0.5))
    assert np.array_equal(P.path_psf([[0.0, 0.0]], size=3), np.pad([[1.0]], 1))


def test_random_motion_path_length_centre_and_seed():
    p = P.random_motion_path(12.0, rng=5, curvature=1.5)
    assert np.hypot(*np.diff(p, axis=0).T).sum() == pytest.approx(12.0)
    my, mx, _ = _moments(P.path_psf(p))
    assert abs(my) < 1e-9 and abs(mx) < 1e-9
    assert np.array_equal(p, P.random_motion_path(12.0, rng=5, curvature=1.5))
    assert not np.array_equal(p, P.random_motion_path(12.0, rng=6, curvature=1.5))
    straight = P.random_motion_path(6.0, rng=1, curvature=0.0)
    d = np.diff(straight, axis=0)
    assert np.allclose(d[0, 0] * d[:, 1] - d[0, 1] * d[:, 0], 0, atol=1e-12)


@pytest.mark.parametrize("boundary", ["reflect", "wrap"])
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_blurred_delta_is_the_kernel_centred_on_the_delta(name, boundary):
    k = KERNELS[name]
    c = k.shape[0] // 2
    img = np.zeros((41, 47))
    y0, x0 = 19, 23
    img[y0, x0] = 1.0
    out = P.convolve(img, k, boundary=boundary)
    np.testing.assert_allclose(out[y0 - c : y0 + c + 1, x0 - c : x0 + c + 1], k, atol=1e-13)
    out[y0 - c : y0 + c + 1, x0 - c : x0 + c + 1] = 0
    assert np.abs(out).max() < 1e-13


def test_convolve_leading_axes_equal_frame_by_frame():
    rng = np.random.default_rng(0)
    stack = rng.random((2, 3, 32, 30))
    k = KERNELS["path"]
    out = P.convolve(stack, k)
    assert out.shape == stack.shape
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(out[i, j], P.convolve(stack[i, j], k), atol=1e-12)


@pytest.mark.parametrize("boundary", ["reflect", "wrap"])
@pytest.mark.parametrize("kshape", [(5, 5), (5, 7), (3, 9)])
def test_convolve_matches_scipy_ndimage(boundary, kshape):
    rng = np.random.default_rng(1)
    img = rng.random((37, 42))
    k = rng.random(kshape)
    ref = ndi.convolve(img, k, mode=boundary)
    np.testing.assert_allclose(P.convolve(img, k, boundary=boundary), ref, atol=1e-10)


def test_convolve_keeps_float32_and_promotes_integers():
    img = np.random.default_rng(2).random((16, 16))
    k = P.gaussian_psf(1.0)
    out32 = P.convolve(img.astype(np.float32), k)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, P.convolve(img, k), atol=1e-5)
    assert P.convolve((img * 100).astype(np.uint8), k).dtype == np.float64


def test_psf_to_otf_is_circular_convolution():
    rng = np.random.default_rng(3)
    img = rng.random((24, 30))
    k = P.motion_psf(5.0, 20.0)
    otf = P.psf_to_otf(k, img.shape)
    out = np.fft.ifft2(np.fft.fft2(img) * otf).real
    np.testing.assert_allclose(out, P.convolve(img, k, boundary="wrap"), atol=1e-12)
    half = P.psf_to_otf(k, img.shape, real=True)
    assert half.shape == (24, 16)
    np.testing.assert_allclose(half, otf[:, :16], atol=1e-12)
    assert abs(otf[0, 0]) == pytest.approx(1.0)
    assert np.abs(P.psf_to_otf(P.gaussian_psf(1.3), (32, 32)).imag).max() < 1e-12


def test_pad_psf_centre_at_origin_and_folds_large_kernels():
    k = np.arange(9.0).reshape(3, 3)
    pad = P.pad_psf(k, (5, 6))
    assert pad[0, 0] == 4.0 and pad[-1, -1] == 0.0 and pad[0, 1] == 5.0
    folded = P.pad_psf(np.ones((5, 5)), (3, 3))
    assert folded.sum() == 25.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: P.convolve(np.ones(10), np.ones((3, 3))), "image"),
        (lambda: P.convolve(np.full((8, 8), np.nan), np.ones((3, 3))), "image .*NaN"),
        (lambda: P.convolve(np.ones((8, 8)), np.ones((3, 3, 3))), "psf"),
        (lambda: P.convolve(np.ones((8, 8)), np.ones((3, 3)), boundary="zero"), "boundary"),
        (lambda: P.convolve(np.ones((8, 8), complex), np.ones((3, 3))), "image"),
        (lambda: P.gaussian_psf(-1.0), "sigma"),
        (lambda: P.gaussian_psf(np.nan), "sigma"),
        (lambda: P.gaussian_psf(1.0, size=4), "size"),
        (lambda: P.disk_psf(-2.0), "radius"),
        (lambda: P.motion_psf(-1.0, 0.0), "length"),
        (lambda: P.motion_psf(3.0, np.inf), "angle_deg"),
        (lambda: P.path_psf([1.0, 2.0]), "path_yx"),
        (lambda: P.path_psf([[0.0, np.nan]]), "path_yx"),
        (lambda: P.path_psf([[0.0, 0.0], [0.0, 6.0]], size=5), "size"),
        (lambda: P.random_motion_path(5.0, rng=1.5), "rng"),
        (lambda: P.random_motion_path(5.0, rng=np.random.RandomState(0)), "rng"),
        (lambda: P.random_motion_path(5.0, rng=-1), "rng"),
        (lambda: P.random_motion_path(5.0, n_points=1), "n_points"),
    ],
)
def test_bad_input_raises_value_error_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()
