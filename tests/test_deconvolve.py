"""Deconvolution backend: Wiener and RL invert known blurs, blind estimation, the pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from em_restore.backend import deconvolve as D
from em_restore.backend import psf as P
from em_restore.backend import simulate as sim
from em_restore.backend.denoise import Progress
from tests.conftest import range_psnr as psnr


@pytest.fixture(scope="module")
def particles():
    clean, _ = sim.nanoparticles((128, 128), pixel_size_nm=1.0, rng=0)
    return clean


@pytest.fixture(scope="module")
def grid():
    clean, _ = sim.random_specimen((128, 128), rng=1, kinds=("grid",))
    return clean


def moments(k):
    """Centre-free second moments: (variance along the principal axis, across, angle°)."""
    yy, xx = np.indices(k.shape).astype(float)
    k = k / k.sum()
    cy, cx = (k * yy).sum(), (k * xx).sum()
    dy, dx = yy - cy, xx - cx
    c = np.array(
        [[(k * dy * dy).sum(), (k * dy * dx).sum()], [(k * dy * dx).sum(), (k * dx * dx).sum()]]
    )
    w, v = np.linalg.eigh(c)
    vy, vx = v[:, 1]
    angle = np.degrees(np.arctan2(-vy, vx)) % 180  # counter-clockwise as displayed
    return w[1], w[0], angle


# ----------------------------------------------------------------------- helpers
def test_periodic_pad_keeps_the_frame_and_meets_itself_at_the_edges():
    rng = np.random.default_rng(0)
    img = rng.random((20, 30))
    p = D.periodic_pad(img, 6)
    assert p.shape == (32, 42)
    np.testing.assert_array_equal(p[6:-6, 6:-6], img)
    # Opposite edges agree (to the taper's half-sample residue): no seam for circular FFTs.
    assert np.abs(p[0] - p[-1]).max() < 0.05
    assert np.abs(p[:, 0] - p[:, -1]).max() < 0.05


def test_kernel_error_ignores_shift_and_canvas_but_not_shape():
    k = P.gaussian_psf(2.0)
    shifted = np.roll(np.pad(k, 4), (2, -1), axis=(0, 1))
    assert D.kernel_error(shifted, k) < 1e-9
    assert D.kernel_error(P.gaussian_psf(3.0), k) > 0.3
    delta = np.ones((1, 1))
    assert D.kernel_error(delta, k) > 5


def test_parse_psf_specs_and_errors():
    np.testing.assert_allclose(P.parse_psf("gaussian:2"), P.gaussian_psf(2.0))
    np.testing.assert_allclose(P.parse_psf("disk:3.5"), P.disk_psf(3.5))
    np.testing.assert_allclose(P.parse_psf("motion:11,35"), P.motion_psf(11, 35))
    for bad in ("gauss:2", "disk", "motion:11", "gaussian:x"):
        with pytest.raises(ValueError, match=r"gaussian|disk|motion|psf"):
            P.parse_psf(bad)


# ----------------------------------------------------------------------- non-blind
@pytest.mark.parametrize("kernel", [P.gaussian_psf(2.0), P.disk_psf(3.0), P.motion_psf(9, 30)])
def test_wiener_inverts_a_known_blur(particles, kernel):
    blurred = P.convolve(particles, kernel)
    # Noise-free data, moderate balance (exact zeros of the motion kernel's spectrum
    # amplify the border's inconsistency below ~1e-2).
    out = D.wiener(blurred, kernel, balance=1e-2)
    gain = psnr(out, particles) - psnr(blurred, particles)
    assert gain > 4, gain


@pytest.mark.parametrize("kernel", [P.gaussian_psf(2.0), P.disk_psf(3.0), P.motion_psf(9, 30)])
def test_richardson_lucy_inverts_a_known_blur(particles, kernel):
    blurred = P.convolve(particles, kernel)
    out = D.richardson_lucy(blurred, kernel, tv=0.0, max_iter=100, tol=1e-5)
    gain = psnr(out, particles) - psnr(blurred, particles)
    assert gain > 8, gain
    # The border is handled (Bertero-Boccacci): it gains as much as the interior.
    edge = np.ones(blurred.shape, bool)
    edge[12:-12, 12:-12] = False
    assert psnr(out[edge], particles[edge]) > psnr(blurred[edge], particles[edge]) + 4


def test_rl_tv_resists_noise_better_than_plain_rl(particles):
    k = P.gaussian_psf(2.0)
    rng = np.random.default_rng(3)
    noisy = P.convolve(particles, k) + rng.normal(0, 0.03, particles.shape)
    plain = D.richardson_lucy(noisy, k, tv=0.0, max_iter=150, tol=1e-9, accelerate=True)
    tv = D.richardson_lucy(noisy, k, tv=0.01, max_iter=150, tol=1e-9, accelerate=True)
    assert psnr(tv, particles) > psnr(plain, particles) + 1.0


def test_acceleration_reaches_a_better_estimate_in_the_same_iterations(particles):
    k = P.gaussian_psf(2.0)
    blurred = P.convolve(particles, k)
    fast = D.richardson_lucy(blurred, k, tv=0.0, max_iter=30, tol=1e-12, accelerate=True)
    slow = D.richardson_lucy(blurred, k, tv=0.0, max_iter=30, tol=1e-12, accelerate=False)
    assert psnr(fast, particles) > psnr(slow, particles) + 1.0


def test_rl_is_a_generator_that_can_be_stopped(particles):
    gen = D.iter_richardson_lucy(particles, P.gaussian_psf(1.0), max_iter=50, tol=1e-12)
    first = next(gen)
    assert isinstance(first, Progress) and first.done == 1 and first.total == 50
    gen.close()  # cancelling between yields is clean


def test_rl_keeps_offsets_and_negative_data():
    """A constant passes through: RL shifts the data to be positive and back."""
    img = np.full((40, 40), -5.0)
    out = D.richardson_lucy(img, P.gaussian_psf(1.5))
    np.testing.assert_allclose(out, -5.0, atol=1e-6)


# ----------------------------------------------------------------------- blind
@pytest.mark.parametrize("sigma", [1.5, 2.5])
def test_blind_recovers_a_gaussian_kernel(grid, sigma):
    truth = P.gaussian_psf(sigma)
    k = D.estimate_kernel(P.convolve(grid, truth))
    assert D.kernel_error(k, truth) < 0.3
    major, minor, _ = moments(k)
    # Isotropic, with the right width (second moment sigma**2) to 20 %.
    assert np.sqrt(major) == pytest.approx(sigma, rel=0.2)
    assert np.sqrt(minor) == pytest.approx(sigma, rel=0.2)


def test_blind_recovers_the_direction_and_length_of_motion(particles):
    length, angle = 11.0, 30.0
    truth = P.motion_psf(length, angle)
    k = D.estimate_kernel(P.convolve(particles, truth))
    major, minor, found = moments(k)
    assert abs((found - angle + 90) % 180 - 90) < 10
    # A uniform segment of length L has variance L**2 / 12 along it.
    assert np.sqrt(12 * (major - minor)) == pytest.approx(length, rel=0.25)
    assert major > 3 * minor


def test_blind_kernel_does_not_collapse_on_noisy_data(particles):
    """At 20 e-/px after the denoise stage the kernel is still a blur, not a delta."""
    truth = P.gaussian_psf(2.0)
    cfg = sim.AcquisitionConfig.low_dose_tem(dose=20.0, psf=truth)
    noisy = sim.simulate_acquisition(particles, cfg, rng=5)
    plan = D.plan_deconvolve(noisy, None, denoise="gaussian")
    k = plan.psf
    assert k.max() < 0.2  # a delta has 1
    major, _minor, _ = moments(k)
    assert np.sqrt(major) > 1.0


def test_fit_kernel_recovers_a_known_blur_from_a_reference(particles):
    """Non-blind fit: exact on a noise-free pair, and unbiased by Poisson noise."""
    truth = P.motion_psf(9.0, 60.0)
    k = D.fit_kernel(particles, P.convolve(particles, truth), size=15, gamma=1e-3)
    assert D.kernel_error(k, truth) < 0.1
    disk = P.disk_psf(3.0)
    dose = 1000.0
    rng = np.random.default_rng(3)
    noisy = rng.poisson(dose * P.convolve(particles, disk)).astype(float)
    k = D.fit_kernel(dose * particles, noisy, size=15)
    assert D.kernel_error(k, disk) < 0.35
    major, minor, _ = moments(k)
    # A disk of radius r has s.d. r / 2 along every axis.
    assert np.sqrt(major) == pytest.approx(1.5, abs=0.3)
    assert np.sqrt(minor) == pytest.approx(1.5, abs=0.3)


def test_flat_frame_gives_a_delta_and_is_unchanged():
    flat = np.full((64, 64), 7.0)
    k = D.estimate_kernel(flat)
    np.testing.assert_array_equal(k, np.ones((1, 1)))
    out, _plan = D.deconvolve(flat, None, denoise=None)
    np.testing.assert_allclose(out, 7.0, atol=1e-4)


# ----------------------------------------------------------------------- pipeline
def test_pipeline_improves_a_noisy_blurred_image(particles):
    truth_k = P.gaussian_psf(2.0)
    cfg = sim.AcquisitionConfig.low_dose_tem(dose=200.0, psf=truth_k)
    noisy, _ = sim.simulate_acquisition(particles, cfg, rng=2, return_expected=True)
    sharp = sim.simulate_acquisition(particles, cfg.replace(psf=None), rng=0, return_expected=True)[
        1
    ]
    before = noisy.copy()
    out, plan = D.deconvolve(noisy, None, denoise="gaussian")
    np.testing.assert_array_equal(noisy, before)  # the input is never modified
    assert out.dtype == np.float32 and out.shape == noisy.shape
    assert plan.psf_source == "blind" and plan.denoise is not None
    assert psnr(out, sharp) > psnr(noisy, sharp) + 2.0
    # The blind result is close to the same pipeline with the true kernel.
    known = D.apply_deconv_plan(noisy, D.plan_deconvolve(noisy, truth_k, denoise=plan.denoise))
    assert psnr(out, sharp) > psnr(known, sharp) - 1.5


def test_default_stage1_is_the_bundled_model_and_roundtrips(particles):
    """The default denoise stage is the network; its record rebuilds the same plan."""
    truth_k = P.gaussian_psf(2.0)
    cfg = sim.AcquisitionConfig.low_dose_tem(dose=20.0, psf=truth_k)
    noisy = sim.simulate_acquisition(particles, cfg, rng=3)
    sharp = sim.simulate_acquisition(particles, cfg.replace(psf=None), rng=0, return_expected=True)[
        1
    ]
    plan = D.plan_deconvolve(noisy, None)
    assert plan.denoise.method == "model em-denoise-fast"
    meta = plan.to_metadata()
    assert meta["denoise"]["method"] == "model"
    assert len(meta["denoise"]["model"]["sha256"]) == 64
    out = D.apply_deconv_plan(noisy, plan)
    assert psnr(out, sharp) > psnr(noisy, sharp) + 2.0
    # Blur found, not a delta, and close to the truth in size.
    major, _minor, _ = moments(plan.psf)
    assert np.sqrt(major) == pytest.approx(2.0, rel=0.35)
    assert D.kernel_error(plan.psf, truth_k) < 0.35
    again = D.DeconvPlan.from_metadata(meta)
    np.testing.assert_allclose(D.apply_deconv_plan(noisy, again), out, atol=1e-4)
    # Other weights under the same name: refused, with the fix.
    meta["denoise"]["model"]["sha256"] = "0" * 64
    with pytest.raises(ValueError, match="plan again"):
        D.DeconvPlan.from_metadata(meta)


def test_stack_equals_frame_by_frame_and_plan_roundtrips(particles):
    stack = np.stack([P.convolve(particles, P.gaussian_psf(1.5)) * s for s in (1.0, 2.0)])
    plan = D.plan_deconvolve(stack[0], "gaussian:1.5", denoise=None)
    gen = D.iter_deconvolve(stack, plan)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            out = stop.value
            break
    assert out.shape == stack.shape and events[-1].done == events[-1].total == 2
    for i in range(2):
        np.testing.assert_array_equal(out[i], D.apply_deconv_plan(stack[i], plan))
    import json

    again = D.DeconvPlan.from_metadata(json.loads(json.dumps(plan.to_metadata())))
    np.testing.assert_array_equal(again.psf, plan.psf)  # the record reproduces it exactly
    assert again.solver == "rl" and again.params == plan.params
    np.testing.assert_array_equal(D.apply_deconv_plan(stack[1], again), out[1])


def test_dask_stack_is_read_frame_by_frame(particles):
    import dask.array as da

    stack = da.from_array(np.stack([particles, particles]), chunks=(1, 128, 128))
    out, plan = D.deconvolve(stack, "disk:2", denoise=None, solver="wiener")
    assert out.shape == (2, 128, 128)
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)
    assert plan.psf_source == "disk:2" and "balance" in plan.params


def test_spatially_varying_windows_follow_the_blur(grid):
    """Left half blurred by sigma 1, right half by sigma 3: the window kernels differ."""
    big = np.tile(grid, (1, 2))
    left = P.convolve(big, P.gaussian_psf(1.0))
    right = P.convolve(big, P.gaussian_psf(3.0))
    img = np.concatenate([left[:, :128], right[:, 128:]], axis=1)
    plan = D.plan_deconvolve(img, None, denoise=None, windows=(1, 2))
    assert len(plan.psfs) == 2
    w_left = np.sqrt(moments(plan.psfs[0])[0])
    w_right = np.sqrt(moments(plan.psfs[1])[0])
    assert w_right > w_left + 0.7
    out = D.apply_deconv_plan(img, plan)
    assert out.shape == img.shape and np.isfinite(out).all()
    # Blending is smooth: no step at the window seam beyond the image's own gradients.
    seam = np.abs(np.diff(out[:, 120:136], axis=1)).max()
    assert seam < 1.5 * np.abs(np.diff(out, axis=1)).max()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: D.wiener(np.zeros((20, 20, 3)), P.gaussian_psf(1)), "RGB|2-D|frame"),
        (lambda: D.wiener(np.ones((20, 20)), np.ones((4, 4))), "odd"),
        (lambda: D.wiener(np.ones((20, 20)), -np.ones((3, 3))), "nonnegative"),
        (lambda: D.richardson_lucy(np.full((20, 20), np.nan), P.gaussian_psf(1)), "NaN"),
        (lambda: D.estimate_kernel(np.ones((8, 8))), "at least"),
        (lambda: D.estimate_kernel(np.ones((64, 64)), max_size=41), "too large"),
        (lambda: D.plan_deconvolve(np.ones((64, 64)), "gaussian:1", windows=2), "windows"),
        (lambda: D.plan_deconvolve(np.ones((64, 64)), None, windows=0), "windows"),
        (lambda: D.plan_deconvolve(np.ones((64, 64)), None, solver="magic"), "solver"),
        (lambda: D.fit_kernel(np.ones((64, 64)), np.ones((64, 60))), "same registered"),
        (lambda: D.fit_kernel(np.ones((64, 64)), np.ones((64, 64))), "flat"),
        (lambda: D.fit_kernel(np.eye(64), np.eye(64), size=8), "odd"),
    ],
)
def test_bad_input_is_one_clear_error(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_fast_pads_reach_5_smooth_sides_and_keep_the_frame():
    import scipy.fft

    frame = np.random.default_rng(1).random((1024, 37))
    pads = D._fast_pads(frame.shape, 31)
    padded = D._taper_pad(frame, pads)
    for axis, n in enumerate(frame.shape):
        side = padded.shape[axis]
        assert pads[axis][0] == 31 and pads[axis][1] >= 31
        assert side == n + sum(pads[axis]) == scipy.fft.next_fast_len(n + 62, real=True)
    assert padded.shape == (1125, 100)  # 1024 + 62 = 2·3·181 would be slow; 1125 = 3²·5³
    np.testing.assert_array_equal(padded[31 : 31 + 1024, 31 : 31 + 37], frame)
    # Symmetric pads are periodic_pad exactly.
    np.testing.assert_array_equal(D._taper_pad(frame, ((6, 6), (6, 6))), D.periodic_pad(frame, 6))


def test_rl_on_an_awkward_frame_size_inverts_a_known_blur(particles):
    # 107 + 2·(15 + 8) = 153 = 9·17: padded to 160 (and 109 → 160), the frame still restored.
    truth = particles[:107, :109]
    k = P.gaussian_psf(1.5, size=15)
    blurred = sim.blur(truth, k)
    out = D.richardson_lucy(blurred, k, tv=0.0, max_iter=60)
    assert out.shape == truth.shape
    assert psnr(out, truth) > psnr(blurred, truth) + 3.0


@pytest.mark.parametrize("lam", [0.01, 5.0])
def test_compiled_latent_step_is_bit_for_bit_the_numpy_one(particles, lam, monkeypatch):
    """The compiled L0 latent (one pass per step, rows on the threads) returns the numpy
    latent exactly, on an odd-sized frame and row blocks of unequal length; lam=5 keeps
    no gradient for the first steps (the no-transform branch), and keeping none at all
    gives the Tikhonov solution."""
    from em_restore.backend import _threads
    from em_restore.backend import blind as module

    if not module.COMPILED:
        pytest.skip("numba is not installed")
    y = P.convolve(particles[:101, :87], P.gaussian_psf(1.5, size=9))
    y = (y - y.min()) / np.ptp(y)
    otf = P.psf_to_otf(P.gaussian_psf(1.2, size=9), y.shape, real=True)
    monkeypatch.setattr(module, "COMPILED", False)
    reference = module._l0_latent(y, otf, lam)
    monkeypatch.setattr(module, "COMPILED", True)
    for n in (1, 3):
        monkeypatch.setattr(_threads, "THREADS", n)
        np.testing.assert_array_equal(module._l0_latent(y, otf, lam), reference)
    assert np.abs(reference - y).max() > 0.01  # it did sharpen
    # Nothing kept at any step (λ/β >= 0.125 above every squared circular gradient of
    # 0.3 y): the last step's Tikhonov solution x = Kᵀy / (|K|² + β|D|²), β = 8e4
    # (steps at 2e4, 4e4, 8e4).
    import scipy.fft as sfft

    y = 0.3 * y
    dx, dy = module._grad_otfs(y.shape)
    beta = 8e4
    tikhonov = sfft.irfft2(
        np.conj(otf) * sfft.rfft2(y) / (np.abs(otf) ** 2 + beta * (abs(dx) ** 2 + abs(dy) ** 2)),
        s=y.shape,
    )
    for compiled in (False, True):
        monkeypatch.setattr(module, "COMPILED", compiled)
        np.testing.assert_allclose(module._l0_latent(y, otf, 1e4), tikhonov, atol=1e-5)


@pytest.mark.parametrize(
    "kw", [{}, {"tv": 0.0}, {"accelerate": False}, {"tv": 0.01, "max_iter": 7}]
)
def test_compiled_richardson_lucy_is_bit_for_bit_the_numpy_one(particles, kw, monkeypatch):
    """RL's compiled element-wise steps (extrapolation, ratio, TV-divided update, rows
    on the threads) give the numpy iterates exactly, on an odd-sized frame."""
    from em_restore.backend import _threads
    from em_restore.backend import solvers as module

    if not module.COMPILED:
        pytest.skip("numba is not installed")
    k = P.gaussian_psf(2.0, size=11)
    y = P.convolve(particles[:101, :87], k)
    y = y + np.random.default_rng(0).normal(0, 0.01 * np.ptp(y), y.shape)
    monkeypatch.setattr(module, "COMPILED", False)
    reference = module.richardson_lucy(y, k, **kw)
    monkeypatch.setattr(module, "COMPILED", True)
    for n in (1, 3):
        monkeypatch.setattr(_threads, "THREADS", n)
        np.testing.assert_array_equal(module.richardson_lucy(y, k, **kw), reference)
    assert psnr(reference, particles[:101, :87]) > psnr(y, particles[:101, :87])


def test_large_frames_run_fewer_rounds_at_the_finest_scale(grid):
    """Issue 34: FINE_ROUNDS at the finest scale on frames of FINE_MIN_PIXELS or more."""
    from em_restore.backend import blind

    def rounds(img):
        return list(blind.iter_estimate_kernel(img, max_size=15))[-1].total

    small = P.convolve(grid, P.gaussian_psf(1.5))
    large = P.convolve(np.tile(grid, (2, 2)), P.gaussian_psf(1.5))
    assert small.size < blind.FINE_MIN_PIXELS <= large.size
    full, reduced = rounds(small), rounds(large)
    assert full == 5 * 5  # 5 rounds at each of the canvases 5, 7, 9, 11, 15
    assert reduced == full - blind.FINE_SCALES * (5 - blind.FINE_ROUNDS) < full
