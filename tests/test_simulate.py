"""Physics-based EM simulator (em_restore.backend.simulate): numbers, seeds, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from em_restore.backend import simulate as sim

N_FLAT = 512 * 512  # pixels in a flat field


# --------------------------------------------------------------------------- rng


def test_as_rng_accepts_seed_generator_none():
    g = np.random.default_rng(1)
    assert sim.as_rng(g) is g
    assert sim.as_rng(7).random() == np.random.default_rng(7).random()
    assert isinstance(sim.as_rng(None), np.random.Generator)
    assert isinstance(sim.as_rng(np.int64(3)), np.random.Generator)
    for bad in (1.5, True, "0", np.random.RandomState(0), -3):
        with pytest.raises(ValueError, match="rng"):
            sim.as_rng(bad)


# --------------------------------------------------------------------------- dose / detector


@pytest.mark.parametrize("dose", [5.0, 100.0, 1000.0])
def test_poisson_flat_field_mean_and_variance_equal_dose(dose):
    counts = sim.poisson_dose(np.ones((512, 512)), dose, rng=0)
    assert counts.dtype == np.float64
    assert np.array_equal(counts, np.round(counts))
    # Over N = 262144 pixels the relative standard error of the mean is 1/sqrt(N D) <= 0.09 %
    # and that of the variance sqrt((2 + 1/D) / N) <= 0.29 %: 2 % is > 6 standard errors.
    assert counts.mean() == pytest.approx(dose, rel=0.02)
    assert counts.var() == pytest.approx(dose, rel=0.02)


def test_poisson_dose_zero_and_per_frame_doses():
    assert not sim.poisson_dose(np.ones((8, 8)), 0.0, rng=0).any()
    stack = sim.poisson_dose(np.ones((2, 256, 256)), np.array([10.0, 1000.0])[:, None, None], rng=1)
    assert stack[0].mean() == pytest.approx(10.0, rel=0.02)
    assert stack[1].mean() == pytest.approx(1000.0, rel=0.02)


def test_detector_mean_and_variance():
    dose, gain, offset, read, dark = 100.0, 3.0, 50.0, 4.0, 2.0
    counts = sim.poisson_dose(np.ones((512, 512)), dose, rng=2)
    adu = sim.detector(
        counts, gain=gain, offset=offset, readout_sigma=read, dark_current=dark, rng=3
    )
    # relative standard error of the variance ~ sqrt(2 / N) = 0.28 %
    assert adu.mean() == pytest.approx(gain * (dose + dark) + offset, rel=0.02)
    assert adu.var() == pytest.approx(gain**2 * (dose + dark) + read**2, rel=0.02)


def test_detector_is_deterministic_without_noise_terms():
    out = sim.detector(np.full((3, 3), 4.0), gain=2.5, offset=-1.0)
    assert np.array_equal(out, np.full((3, 3), 9.0))


def test_quantize_dtype_range_and_rounding():
    img = np.array([[-5.0, 0.4], [0.6, 1e9]])
    q8 = sim.quantize(img, bits=8)
    assert q8.dtype == np.uint8 and q8.tolist() == [[0, 0], [1, 255]]
    q12 = sim.quantize(img, bits=12)
    assert q12.dtype == np.uint16 and q12.max() == 4095
    assert sim.quantize(img, bits=20).dtype == np.uint32
    assert sim.quantize(np.full((2, 2), 7.2)).dtype == np.uint16
    with pytest.raises(ValueError, match="bits"):
        sim.quantize(img, bits=8, clip=False)
    with pytest.raises(ValueError, match="bits"):
        sim.quantize(img, bits=0)


# --------------------------------------------------------------------------- defects


def test_xray_spike_fraction_and_mask():
    img = np.full((3, 256, 256), 10.0)
    out, mask = sim.xray_spikes(img, fraction=1e-3, amplitude=500.0, rng=0, return_mask=True)
    k = round(1e-3 * 256 * 256)
    assert mask.shape == img.shape
    assert mask.sum(axis=(1, 2)).tolist() == [k, k, k]
    assert (out[mask] >= 10.0 + 250.0).all() and (out[mask] <= 10.0 + 750.0).all()
    assert np.array_equal(out[~mask], img[~mask])
    assert not np.array_equal(mask[0], mask[1])  # independent per frame


def test_xray_streaks_cover_more_pixels():
    img = np.zeros((128, 128))
    out, mask = sim.xray_spikes(
        img, fraction=2e-3, amplitude=100.0, streak_length=4, rng=1, return_mask=True
    )
    k = round(2e-3 * 128 * 128)
    assert k <= mask.sum() <= 4 * k
    assert out.max() >= 50.0 and (out[mask] > 0).all()


def test_dead_pixel_fraction_fixed_across_frames():
    img = np.ones((4, 200, 100))
    out, mask = sim.dead_pixels(img, fraction=0.01, value=0.0, rng=0, return_mask=True)
    assert mask.sum(axis=(1, 2)).tolist() == [200] * 4
    assert all(np.array_equal(mask[0], m) for m in mask)
    assert (out[mask] == 0).all() and (out[~mask] == 1).all()
    hot = sim.dead_pixels(img[0], fraction=0.05, value=65535.0, rng=0)
    assert (hot == 65535.0).sum() == 1000


# --------------------------------------------------------------------------- scanning


def test_scan_jitter_zero_is_identity():
    img = np.random.default_rng(0).random((2, 16, 20))
    assert np.array_equal(sim.scan_jitter(img, sigma_px=0.0, rng=0), img)


def test_scan_jitter_shifts_each_row():
    x = np.arange(128)
    img = np.tile(np.sin(2 * np.pi * x / 32.0), (64, 1))
    out, shifts = sim.scan_jitter(img, sigma_px=0.7, rng=4, return_shifts=True)
    assert shifts.shape == (64,)
    assert shifts.std() == pytest.approx(0.7, rel=0.3)
    expected = np.sin(2 * np.pi * (x[None, :] - shifts[:, None]) / 32.0)
    np.testing.assert_allclose(out[:, 8:-8], expected[:, 8:-8], atol=2e-3)
    _, corr = sim.scan_jitter(img, sigma_px=1.0, correlation=0.95, rng=5, return_shifts=True)
    assert np.corrcoef(corr[:-1], corr[1:])[0, 1] > 0.7


def test_line_noise_raises_row_mean_variance_not_within_row_variance():
    img = np.random.default_rng(0).normal(0, 1.0, (512, 256))
    out = sim.line_noise(img, sigma=0.5, rng=1)
    # row means of white noise have variance 1/256; line noise adds sigma² = 0.25
    assert out.mean(axis=1).var() == pytest.approx(1 / 256 + 0.25, rel=0.2)
    np.testing.assert_allclose(out.var(axis=1), img.var(axis=1), rtol=1e-9)
    assert np.array_equal(sim.line_noise(img, sigma=0.0), img)


def test_correlated_noise_variance_and_correlation_length():
    f = sim.correlated_noise((4, 256, 256), sigma=2.0, corr_length_px=4.0, rng=0)
    assert f.std() == pytest.approx(2.0, rel=0.05)
    lag = (f[..., :, 4:] * f[..., :, :-4]).mean() / f.var()
    assert lag == pytest.approx(math.exp(-0.5), abs=0.05)
    white = sim.correlated_noise((256, 256), sigma=1.0, corr_length_px=0.0, rng=0)
    assert abs((white[:, 1:] * white[:, :-1]).mean()) < 0.02


def test_blur_wraps_convolve():
    img = np.random.default_rng(0).random((16, 16))
    k = sim.gaussian_psf(1.0)
    assert np.array_equal(sim.blur(img, k), sim.convolve(img, k))


# --------------------------------------------------------------------------- acquisition


@pytest.mark.parametrize("preset", sim.PRESETS)
def test_presets_are_valid_and_simulate(preset):
    cfg = getattr(sim.AcquisitionConfig, preset)()
    clean = np.full((64, 64), 0.5)
    noisy, expected = sim.simulate_acquisition(clean, cfg, rng=0, return_expected=True)
    assert noisy.shape == clean.shape and noisy.dtype == np.uint16
    assert np.isfinite(expected).all()
    assert np.median(noisy) == pytest.approx(np.median(expected), rel=0.2, abs=3)
    assert getattr(sim.AcquisitionConfig, preset)(dose=7.0).dose == 7.0


def test_simulate_acquisition_poisson_only_is_unbiased_and_seeded():
    cfg = sim.AcquisitionConfig(dose=100.0)
    clean = np.full((256, 256), 0.8)
    a = sim.simulate_acquisition(clean, cfg, rng=3)
    assert a.dtype == np.float64
    assert a.mean() == pytest.approx(80.0, rel=0.01)
    assert a.var() == pytest.approx(80.0, rel=0.03)
    assert np.array_equal(a, sim.simulate_acquisition(clean, cfg, rng=3))
    assert not np.array_equal(a, sim.simulate_acquisition(clean, cfg, rng=4))


def test_simulate_acquisition_expected_matches_noisy_mean_on_stack():
    cfg = sim.AcquisitionConfig(
        modality="stem",
        dose=40.0,
        psf=("gaussian", 1.0),
        gain=2.0,
        offset=10.0,
        readout_sigma=1.0,
        scan_jitter=0.2,
        line_noise=0.5,
    )
    clean, _ = sim.nanoparticles((2, 96)[1:] * 2, pixel_size_nm=1.0, n=5, rng=0)
    stack = np.stack([clean] * 3)
    noisy, expected = sim.simulate_acquisition(stack, cfg, rng=1, return_expected=True)
    assert noisy.shape == stack.shape
    assert (noisy - expected).mean() == pytest.approx(0.0, abs=0.2)
    assert not np.array_equal(noisy[0], noisy[1])


def test_acquisition_config_validation_and_equality():
    with pytest.raises(ValueError, match="dose"):
        sim.AcquisitionConfig(dose=-1.0)
    with pytest.raises(ValueError, match="modality"):
        sim.AcquisitionConfig(modality="xray")
    with pytest.raises(ValueError, match="scan_jitter"):
        sim.AcquisitionConfig(modality="tem", scan_jitter=0.5)
    with pytest.raises(ValueError, match="dead_fraction"):
        sim.AcquisitionConfig(modality="sem", dead_fraction=0.01)
    with pytest.raises(ValueError, match="psf"):
        sim.AcquisitionConfig(psf=("airy", 2.0))
    with pytest.raises(ValueError, match="psf"):
        sim.AcquisitionConfig(psf=np.ones((4, 4)))
    with pytest.raises(ValueError, match="bits"):
        sim.AcquisitionConfig(bits=64)
    with pytest.raises(ValueError, match="gain"):
        sim.AcquisitionConfig(gain=0.0)
    k = sim.disk_psf(2.0)
    a = sim.AcquisitionConfig(psf=k)
    assert a == sim.AcquisitionConfig(psf=k.copy()) and hash(a) == hash(a.replace())
    assert a != sim.AcquisitionConfig(psf=sim.disk_psf(3.0))
    assert np.array_equal(a.kernel(), k)
    assert sim.AcquisitionConfig(psf=("motion", 5, 30)).kernel().shape == (7, 7)
    with pytest.raises(ValueError, match="config"):
        sim.simulate_acquisition(np.ones((8, 8)), {"dose": 1.0})


@pytest.mark.parametrize("modality", [None, "tem", "stem", "sem"])
def test_random_acquisition_config_is_seeded_and_valid(modality):
    configs = [sim.random_acquisition_config(s, modality=modality) for s in range(12)]
    assert configs[0] == sim.random_acquisition_config(0, modality=modality)
    assert len(set(configs)) > 6
    if modality:
        assert {c.modality for c in configs} == {modality}
    clean = np.full((32, 32), 0.7)
    for c in configs[:4]:
        assert sim.simulate_acquisition(clean, c, rng=0).shape == (32, 32)


# --------------------------------------------------------------------------- specimens


def _assign_pixels(parts, shape, p):
    """Label each pixel with the particle whose surface is nearest (-1: none within 1 px)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    best = np.full(shape, np.inf)
    lab = np.full(shape, -1)
    for i, q in enumerate(parts):
        cy, cx = q.center_yx_px(p)
        d = np.hypot(yy - cy, xx - cx) - q.diameter_nm / 2 / p
        better = (d < best) & (d < 1.0)
        best[better], lab[better] = d[better], i
    return lab


@pytest.mark.parametrize("contrast", ["bright", "dark"])
def test_nanoparticle_projected_thickness_integrates_to_sphere_volume(contrast):
    p, mu = 0.4, 0.12
    img, parts = sim.nanoparticles(
        (192, 192),
        pixel_size_nm=p,
        diameters_nm=(1.5, 6.0),  # 3.75 to 15 px
        mu=mu,
        contrast=contrast,
        allow_touching_pairs=2,
        pair_gap_nm=2 * p,
        rng=11,
    )
    bg = 1.0 if contrast == "bright" else 0.05
    thick = -np.log(img / bg) / mu if contrast == "bright" else (img - bg) / mu
    lab = _assign_pixels(parts, img.shape, p)
    assert len(parts) > 20
    for i, q in enumerate(parts):
        volume = thick[lab == i].sum() * p**2
        assert volume == pytest.approx(4 / 3 * math.pi * (q.diameter_nm / 2) ** 3, rel=0.01)
    total = sum(q.volume_nm3 for q in parts)
    assert thick.sum() * p**2 == pytest.approx(total, rel=1e-3)
    assert abs(thick[lab == -1]).max() < 1e-9


def test_nanoparticles_do_not_overlap_except_requested_pairs():
    p = 0.5
    _, parts = sim.nanoparticles(
        (256, 256), pixel_size_nm=p, allow_touching_pairs=3, min_gap_nm=2.0, rng=2
    )
    pairs = [q for q in parts if q.pair is not None]
    assert len(pairs) == 6 and [q.pair for q in pairs] == [0, 0, 1, 1, 2, 2]
    c = np.array([q.center_yx_nm for q in parts])
    r = np.array([q.radius_nm for q in parts])
    gap = np.hypot(*(c[:, None] - c[None, :]).transpose(2, 0, 1)) - r[:, None] - r[None, :]
    np.fill_diagonal(gap, np.inf)
    for a in range(3):
        assert gap[2 * a, 2 * a + 1] == pytest.approx(p)  # default pair gap: 1 pixel
        gap[2 * a, 2 * a + 1] = gap[2 * a + 1, 2 * a] = np.inf
    assert gap.min() >= 2.0 - 1e-9
    for q in parts:  # every particle fully inside the field
        cy, cx = q.center_yx_px(p)
        rr = q.radius_nm / p
        assert rr <= cy <= 255 - rr and rr <= cx <= 255 - rr


def test_nanoparticles_seeded():
    a, pa = sim.nanoparticles((64, 64), rng=5)
    b, pb = sim.nanoparticles((64, 64), rng=5)
    c, _ = sim.nanoparticles((64, 64), rng=6)
    assert np.array_equal(a, b) and pa == pb
    assert not np.array_equal(a, c)
    assert a.dtype == np.float64 and 0 < a.min() and a.max() <= 1.0


def test_nanoparticles_too_many_raises():
    with pytest.raises(ValueError, match="n=500"):
        sim.nanoparticles((64, 64), diameters_nm=10.0, n=500, rng=0)
    with pytest.raises(ValueError, match="diameters_nm"):
        sim.nanoparticles((32, 32), diameters_nm=40.0, rng=0)
    with pytest.raises(ValueError, match="allow_touching_pairs"):
        sim.nanoparticles((64, 64), n=3, allow_touching_pairs=2, rng=0)


def test_vesicle_membrane_is_a_dark_ring():
    img, scene = sim.vesicles(
        (160, 160),
        pixel_size_nm=1.0,
        n=1,
        diameters_nm=60.0,
        n_proteins=0,
        cut_by_edge=False,
        rng=0,
    )
    assert len(scene.vesicles) == 1 and scene.proteins == []
    v = scene.vesicles[0]
    att = -np.log(img) - scene.liquid_thickness_nm / 300  # membrane contribution only
    yy, xx = np.mgrid[:160, :160]
    rho = np.hypot(yy - v.center_yx_nm[0], xx - v.center_yx_nm[1])
    ring = (rho > 30 - 4.5 - 1) & (rho < 30 + 0.5)
    # tangent path through the wall 2 sqrt(R² - (R - m)²) = 31.6 nm vs 2 m = 9 nm at the centre
    assert att[ring].max() > 2.5 * att[rho < 15].max()  # dark ring, lighter centre
    assert abs(att[rho > 31.5]).max() < 1e-9
    assert 30 < min(v.center_yx_nm) and max(v.center_yx_nm) < 129  # not cut by the edge
    # wall volume 4/3 pi (R³ - (R - m)³) times the excess attenuation mu_membrane = 0.006 /nm
    wall = 4 / 3 * math.pi * (30**3 - 25.5**3)
    assert att.sum() / 0.006 == pytest.approx(wall, rel=0.01)


def test_vesicles_seeded_and_in_range():
    a, sa = sim.vesicles((128, 128), rng=1)
    b, _ = sim.vesicles((128, 128), rng=1)
    assert np.array_equal(a, b) and 0 < a.min() and a.max() < 1
    assert sa.liquid_thickness_nm.shape == (128, 128)
    assert len(sa.proteins) > 0


def test_calibration_grid_area_fraction():
    pitch, bar, p = 16.0, 4.0, 1.0
    img, info = sim.calibration_grid(
        (128, 128), pixel_size_nm=p, pitch_nm=pitch, bar_nm=bar, offset_yx_nm=(0.3, 0.7)
    )
    dark = 1 - (1 - bar / pitch) ** 2
    assert img.mean() == pytest.approx(1.0 - 0.8 * dark, abs=1e-9)
    sq, _ = sim.calibration_grid(
        (128, 128), pitch_nm=pitch, bar_nm=6.0, kind="squares", offset_yx_nm=(0, 0)
    )
    assert sq.mean() == pytest.approx(1.0 - 0.8 * (6 / 16) ** 2, abs=1e-9)
    assert info.pitch_nm == pitch and info.kind == "grating"
    rot, _ = sim.calibration_grid((128, 128), pitch_nm=pitch, bar_nm=bar, angle_deg=20, rng=0)
    assert rot.mean() == pytest.approx(1.0 - 0.8 * dark, abs=0.02)
    with pytest.raises(ValueError, match="bar_nm"):
        sim.calibration_grid((64, 64), pitch_nm=10, bar_nm=12)


def test_tissue_texture_truth_and_contrast():
    img, info = sim.tissue_texture((128, 128), rng=3)
    assert img.shape == (128, 128) and 0 <= img.min() and img.max() <= 1
    assert info.cells.shape == info.membranes.shape == info.organelles.shape == (128, 128)
    assert info.cells.min() >= 1 and len(np.unique(info.cells)) >= 2
    assert img[info.membranes].mean() < img[~info.membranes].mean() - 0.1
    assert np.array_equal(img, sim.tissue_texture((128, 128), rng=3)[0])
    assert img.std() > 0.05


def test_atomic_lattice_columns_and_vacancies():
    p = 0.02
    img, info = sim.atomic_lattice(
        (200, 200), pixel_size_nm=p, lattice_nm=0.4, origin_yx_nm=(0.2, 0.2), vacancies=0.1, rng=0
    )
    centres = np.rint(info.positions_yx_nm / p).astype(int)
    inside = ((centres >= 0) & (centres < 200)).all(axis=1)
    peaks = img[centres[inside, 0], centres[inside, 1]]
    np.testing.assert_allclose(peaks, 0.05 + 0.9, atol=0.01)  # neighbours 20 px away
    n_all = len(info.positions_yx_nm) + len(info.vacancies_yx_nm)
    frac = len(info.vacancies_yx_nm) / n_all
    assert frac == pytest.approx(0.1, abs=4 * math.sqrt(0.09 / n_all))
    np.testing.assert_allclose(np.hypot(*info.a_yx_nm), 0.4)
    rot, rinfo = sim.atomic_lattice((128, 128), angle_deg=30, gamma_deg=120, rng=1)
    assert rot.max() > 0.8 and len(rinfo.positions_yx_nm) > 20
    basis, _ = sim.atomic_lattice((128, 128), basis=[(0, 0, 0.9), (0.5, 0.5, 0.3)], rng=2)
    assert basis.shape == (128, 128)


@pytest.mark.parametrize("kind", sim.SPECIMEN_KINDS)
def test_random_specimen_each_kind(kind):
    img, info = sim.random_specimen((96, 96), kinds=(kind,), rng=4)
    assert info.kind == kind and img.shape == (96, 96) and img.dtype == np.float64
    assert np.isfinite(img).all() and img.min() >= 0 and img.max() <= 1.5
    assert img.std() > 0
    again, _ = sim.random_specimen((96, 96), kinds=(kind,), rng=4)
    assert np.array_equal(img, again)


def test_random_specimen_draws_several_kinds():
    kinds = {sim.random_specimen((48, 48), rng=s)[1].kind for s in range(12)}
    assert len(kinds) >= 3


# --------------------------------------------------------------------------- streams


def _smooth(y, x):
    return (
        0.5
        + 0.2 * np.sin(2 * np.pi * y / 37.0 + 0.3) * np.cos(2 * np.pi * x / 29.0)
        + 0.1 * np.cos(2 * np.pi * (x + y) / 23.0)
    )


SPEC = _smooth(*np.mgrid[0:96, 0:240].astype(float))


def test_moving_stage_stream_shapes_offsets_and_sharp_crops():
    noisy, sharp, off = sim.moving_stage_stream(
        SPEC, n_frames=6, frame_shape=(32, 40), velocity_px_per_frame=(0.5, 6.25), rng=0
    )
    assert noisy.shape == sharp.shape == (6, 32, 40) and off.shape == (6, 2)
    np.testing.assert_allclose(np.diff(off, axis=0), [[0.5, 6.25]] * 5, atol=1e-9)
    assert (off % 1 != 0).any()  # genuinely sub-pixel
    yy, xx = np.mgrid[0:32, 0:40]
    for k in range(6):
        ref = _smooth(off[k, 0] + yy, off[k, 1] + xx)
        np.testing.assert_allclose(sharp[k], ref, atol=2e-3)


def test_moving_stage_stream_blur_follows_the_travelled_path():
    v = np.array([1.0, 8.0])
    noisy, _sharp, off, psfs = sim.moving_stage_stream(
        SPEC,
        n_frames=3,
        frame_shape=(24, 32),
        velocity_px_per_frame=v,
        exposure_fraction=0.75,
        dose=1e6,
        return_psfs=True,
        rng=1,
    )
    c = psfs.shape[1] // 2
    y, x = np.mgrid[: psfs.shape[1], : psfs.shape[2]] - c
    length = 0.75 * np.hypot(*v)
    u = v / np.hypot(*v)
    for k in range(3):
        along = u[0] * y + u[1] * x
        assert np.sqrt(12 * (psfs[k] * along**2).sum()) == pytest.approx(length, rel=0.05)
        # expectation = average of crops along the exposure path (checks the kernel's sign)
        s = np.linspace(-0.375, 0.375, 61)[:, None, None]
        yy, xx = np.mgrid[0:24, 0:32]
        ref = _smooth(off[k, 0] + yy + s * v[0], off[k, 1] + xx + s * v[1]).mean(axis=0)
        np.testing.assert_allclose(noisy[k] / 1e6, ref, atol=6e-3)


def test_moving_stage_stream_jitter_and_seed():
    kw = dict(n_frames=5, frame_shape=(24, 24), velocity_px_per_frame=(0, 4), jitter=1.0)
    a = sim.moving_stage_stream(SPEC, rng=3, **kw)
    b = sim.moving_stage_stream(SPEC, rng=3, **kw)
    c = sim.moving_stage_stream(SPEC, rng=4, **kw)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[2], c[2])
    steps = np.diff(a[2], axis=0)
    assert steps[:, 1].std() > 0.05  # irregular motion
    with pytest.raises(ValueError, match="specimen_large"):
        sim.moving_stage_stream(SPEC, n_frames=200, frame_shape=(24, 24), rng=0)
    with pytest.raises(ValueError, match="start_yx"):
        sim.moving_stage_stream(SPEC, n_frames=2, frame_shape=(24, 24), start_yx=(90, 0), rng=0)


def test_drift_fourier_and_spline():
    x = np.arange(64)
    img = np.sin(2 * np.pi * x / 16.0)[None, :] * np.cos(2 * np.pi * x / 32.0)[:, None]
    out = sim.drift(img, (1.5, -2.25), method="fourier")
    ref = (
        np.sin(2 * np.pi * (x + 2.25) / 16.0)[None, :]
        * np.cos(2 * np.pi * (x - 1.5) / 32.0)[:, None]
    )
    np.testing.assert_allclose(out, ref, atol=1e-10)
    spl = sim.drift(img, (1.5, -2.25))
    np.testing.assert_allclose(spl[8:-8, 8:-8], ref[8:-8, 8:-8], atol=5e-3)
    stack = np.stack([img, img])
    both = sim.drift(stack, [(0, 3), (2, 0)])
    np.testing.assert_allclose(both[0, :, 3:], img[:, :-3], atol=1e-12)
    np.testing.assert_allclose(both[1, 2:], img[:-2], atol=1e-12)
    with pytest.raises(ValueError, match="shifts"):
        sim.drift(stack, [(0, 1, 2)])


def test_subpixel_crop_matches_scipy_map_coordinates():
    import scipy.ndimage as ndi

    img = np.random.default_rng(0).random((30, 40))
    out = sim.subpixel_crop(img, (3.3, 5.8), (10, 12))
    coords = np.mgrid[0:10, 0:12] + np.array([3.3, 5.8])[:, None, None]
    np.testing.assert_allclose(out, ndi.map_coordinates(img, coords, mode="mirror"), atol=1e-12)


# --------------------------------------------------------------------------- bad input

IMG = np.ones((16, 16))
NAN = np.where(np.eye(16) > 0, np.nan, 1.0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: sim.poisson_dose(IMG, -1.0, rng=0), "dose"),
        (lambda: sim.poisson_dose(IMG, np.nan, rng=0), "dose"),
        (lambda: sim.poisson_dose(NAN, 10.0, rng=0), "image .*NaN"),
        (lambda: sim.poisson_dose(np.ones(16), 10.0, rng=0), "image .*dimensions"),
        (lambda: sim.poisson_dose(-IMG, 10.0, rng=0), "image .*>= 0"),
        (lambda: sim.poisson_dose(IMG, np.ones((3, 3)), rng=0), "dose"),
        (lambda: sim.detector(IMG, gain=-1.0), "gain"),
        (lambda: sim.detector(IMG, readout_sigma=-1.0), "readout_sigma"),
        (lambda: sim.detector(IMG, dark_current=np.inf), "dark_current"),
        (lambda: sim.detector(NAN), "counts"),
        (lambda: sim.quantize(NAN), "image"),
        (lambda: sim.xray_spikes(IMG, fraction=1.5, amplitude=1.0), "fraction"),
        (lambda: sim.xray_spikes(IMG, fraction=0.1, amplitude=-1.0), "amplitude"),
        (lambda: sim.xray_spikes(np.ones(5), fraction=0.1, amplitude=1.0), "image"),
        (lambda: sim.dead_pixels(IMG, fraction=-0.1), "fraction"),
        (lambda: sim.scan_jitter(IMG, sigma_px=-1.0), "sigma_px"),
        (lambda: sim.scan_jitter(IMG, sigma_px=1.0, correlation=1.0), "correlation"),
        (lambda: sim.line_noise(NAN, sigma=1.0), "image"),
        (lambda: sim.line_noise(IMG, sigma=-1.0), "sigma"),
        (lambda: sim.correlated_noise((16,), corr_length_px=1.0), "shape"),
        (lambda: sim.correlated_noise((16, 16), corr_length_px=-1.0), "corr_length_px"),
        (lambda: sim.simulate_acquisition(NAN), "clean"),
        (lambda: sim.simulate_acquisition(np.ones(8)), "clean"),
        (lambda: sim.nanoparticles((4, 64), rng=0), r"shape\[0\]"),
        (lambda: sim.nanoparticles((64,), rng=0), "shape"),
        (lambda: sim.nanoparticles((64, 64), pixel_size_nm=0, rng=0), "pixel_size_nm"),
        (lambda: sim.nanoparticles((64, 64), diameters_nm=(5, 2), rng=0), "diameters_nm"),
        (lambda: sim.nanoparticles((64, 64), contrast="phase", rng=0), "contrast"),
        (lambda: sim.nanoparticles((64, 64), n=-1, rng=0), "n"),
        (lambda: sim.vesicles((64, 64), membrane_nm=20, diameters_nm=30, rng=0), "membrane_nm"),
        (lambda: sim.vesicles((6, 64), rng=0), "shape"),
        (lambda: sim.calibration_grid((64, 64), pitch_nm=-2), "pitch_nm"),
        (lambda: sim.calibration_grid((64, 64), kind="dots"), "kind"),
        (lambda: sim.tissue_texture((8, 8), rng=0), "shape"),
        (lambda: sim.atomic_lattice((64, 64), lattice_nm=(0.4, -1)), "lattice_nm"),
        (lambda: sim.atomic_lattice((64, 64), vacancies=2.0), "vacancies"),
        (lambda: sim.atomic_lattice((64, 64), basis=[(0, 0)]), "basis"),
        (lambda: sim.random_specimen((64, 64), kinds=("fog",)), "kinds"),
        (lambda: sim.random_specimen((16, 64)), "shape"),
        (lambda: sim.random_acquisition_config(0, modality="xray"), "modality"),
        (lambda: sim.moving_stage_stream(NAN, n_frames=2, frame_shape=(8, 8)), "specimen"),
        (lambda: sim.moving_stage_stream(SPEC, n_frames=0, frame_shape=(8, 8)), "n_frames"),
        (lambda: sim.moving_stage_stream(SPEC, n_frames=2, frame_shape=(4, 8)), "frame_shape"),
        (
            lambda: sim.moving_stage_stream(
                SPEC, n_frames=2, frame_shape=(8, 8), exposure_fraction=0
            ),
            "exposure_fraction",
        ),
        (lambda: sim.moving_stage_stream(SPEC, n_frames=2, frame_shape=(8, 8), dose=-3), "dose"),
        (lambda: sim.drift(np.ones(4), (0, 1)), "frames_or_image"),
    ],
)
def test_bad_input_raises_value_error_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()
