"""The wide simulator (issue 28): specimen families, distortion terms and the pair API,
checked on numbers with small seeded images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from em_restore.backend.simulate import atomic, distortions, mesoscale, wide

NOISE_ONLY_SCAN = ("probe_blur", "line_jitter", "slow_scan_drift", "flyback", "afterglow",
                   "fast_scan_noise", "readout_noise", "row_offset_gain", "nonlinear_response",
                   "dark_noise")  # fmt: skip
NOISE_ONLY_TEM = ("integrating", "optics_blur", "detector_mtf", "fixed_pattern", "readout_noise",
                  "dark_noise", "nonlinear_response")  # fmt: skip


def _plan(seed, **kw):
    kw.setdefault("dtype", "float32")
    return wide.plan_pair(np.random.default_rng(seed), kw.pop("shape", (48, 48)), **kw)


# --------------------------------------------------------------------------- noise


@pytest.mark.parametrize("dose", [1.0, 10.0, 100.0])
def test_counting_shot_noise_variance_is_gain_squared_times_rate(dose):
    plan = _plan(1, modality="tem", distortions=("counting",), dose_range=(dose, dose),
                 specimens=("blobs",), shape=(128, 128))  # fmt: skip
    g = plan.info.params["gain_adu"]
    raw, target = wide.render_pair(plan, 2)
    resid = raw.astype(float) - target
    ratio = np.mean(resid**2) / (g * g * plan.rate.mean())
    assert abs(ratio - 1) < 0.04
    assert abs(resid.mean()) < 4 * g * math.sqrt(plan.rate.mean() / resid.size)


def test_integrating_detector_has_the_excess_noise_factor():
    rng = np.random.default_rng(0)
    for k in (0.5, 2.0, 10.0):
        s = distortions.integrating(np.full((256, 256), 30.0), rng, excess_k=k)
        assert abs(s.mean() / 30 - 1) < 0.01
        assert abs(s.var() / (30 * (1 + 1 / k)) - 1) < 0.03


def test_detector_mtf_correlates_the_noise_of_an_integrating_camera_only():
    def lag1(seed, detector):
        plan = _plan(seed, modality="tem", distortions=(detector, "detector_mtf"),
                     specimens=("blobs",), dose_range=(50, 50), shape=(96, 96))  # fmt: skip
        raw, target = wide.render_pair(plan, seed + 1)
        r = raw.astype(float) - target
        return np.corrcoef(r[:, 1:].ravel(), r[:, :-1].ravel())[0, 1]

    assert lag1(3, "integrating") > 0.2
    assert abs(lag1(3, "counting")) < 0.05


# --------------------------------------------------------------------------- specimens


def _fft_spacings(img, n_peaks=1):
    spec = np.abs(np.fft.fftshift(np.fft.fft2(img - img.mean())))
    h, w = img.shape
    ky, kx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(h)), np.fft.fftshift(np.fft.fftfreq(w)),
                         indexing="ij")  # fmt: skip
    k = np.hypot(ky, kx)
    spec[k < 0.02] = 0
    order = np.argsort(spec.ravel())[::-1][: 4 * n_peaks]
    return 1.0 / k.ravel()[order]


STRUCTURES = {  # ratio, gamma, basis, the strongest d-spacing in lattice parameters
    "square": (1.0, 90.0, [(0, 0, 1.0)], 1.0),
    "hexagonal": (1.0, 60.0, [(0, 0, 1.0)], math.sqrt(3) / 2),
    "honeycomb": (1.0, 60.0, [(1 / 3, 1 / 3, 1.0), (2 / 3, 2 / 3, 1.0)], math.sqrt(3) / 2),
    "perovskite": (
        1.0,
        90.0,
        [(0, 0, 1.0), (0.5, 0.5, 0.4), (0.5, 0, 0.1), (0, 0.5, 0.1)],
        (1.0, 1 / math.sqrt(2)),
    ),
    "rectangular": (1.6, 90.0, [(0, 0, 1.0)], 1.6),
}


@pytest.mark.parametrize("structure", sorted(STRUCTURES))
@pytest.mark.parametrize("spacing", [3.0, 5.5, 9.0])
def test_lattice_spacing_is_recovered_from_the_fft_peak(structure, spacing):
    ratio, gamma, basis, d = STRUCTURES[structure]
    pos, amp = atomic.lattice_columns((256, 256), spacing, 0.37, ratio, gamma, basis, (3.0, 1.0))
    img = atomic.render_columns((256, 256), pos, amp, 0.25 * spacing * min(1.0, float(np.min(d))))
    found = _fft_spacings(img)[0]
    assert np.min(np.abs(found / (np.array(d) * spacing) - 1)) < 0.03, (found, d, spacing)


@pytest.mark.parametrize("family", ["square", "hexagonal", "perovskite"])
def test_lattice_family_spacing_matches_its_params(family):
    for seed in range(3):
        img, p = atomic.atomic_specimen(np.random.default_rng(seed), (192, 192), family)
        expect = p["spacing_px"] * np.array(STRUCTURES[family][3], ndmin=1)
        if expect.max() > 12:
            continue  # too few periods across 192 px for a 3 % FFT estimate
        found = _fft_spacings(img, 2)
        err = np.abs(found[:, None] / expect[None, :] - 1)
        assert err.min() < 0.04, (family, seed, found[:4], expect)


def test_every_specimen_family_is_nonnegative_finite_with_peak_one():
    rng = np.random.default_rng(5)
    for fam in wide.SPECIMEN_FAMILIES:
        make = mesoscale.meso_specimen if fam in mesoscale.MESO_FAMILIES else atomic.atomic_specimen
        img, params = make(rng, (40, 56), fam)
        assert img.shape == (40, 56) and np.isfinite(img).all() and img.min() >= 0, fam
        assert abs(img.max() - 1) < 1e-9 and params["family"] == fam


def test_hrtem_contrast_reverses_with_defocus():
    pos, amp = atomic.lattice_columns((64, 64), 8.0, 0.0, 1.0, 90.0, [(0, 0, 1.0)], (0.0, 0.0))
    v = atomic.render_columns((64, 64), pos, amp, 1.0)
    on = v > 0.5 * v.max()
    plus = atomic.ctf_image(v, 0.2, 20.0, 0.0, 0.0, 0.0, 1e9)
    minus = atomic.ctf_image(v, 0.2, -20.0, 0.0, 0.0, 0.0, 1e9)
    # |psi|^2 averages to 1 (the CTF is unitary); columns turn bright or dark with defocus
    assert plus[on].mean() > 1.02 and minus[on].mean() < 0.98


# --------------------------------------------------------------------------- scan terms


def test_afterglow_step_decays_with_its_time_constant():
    step = np.zeros((4, 200))
    step[:, :100] = 1.0
    for tau in (1.5, 4.0):
        out = distortions.afterglow(step, 0.4, tau)
        tail = out[1, 101:130]
        slope = np.polyfit(np.arange(tail.size), np.log(tail), 1)[0]
        assert abs(-1 / slope / tau - 1) < 0.01
        assert abs(out[1, 100] - 0.4 * math.exp(-1 / tau)) < 1e-9
        assert abs(out.mean() - step.mean()) < 0.01  # DC gain 1


def test_charging_streaks_run_along_the_rows_after_bright_features():
    b = np.full((40, 120), 0.1)
    b[10:20, 20:30] = 1.0
    out = distortions.charging(b, threshold=0.5, strength=0.5, tau_x=15.0, tau_y=0.0, sign=1.0)
    assert np.allclose(out[:10], b[:10]) and np.allclose(out[20:], b[20:])
    assert np.allclose(out[10:20, :20], b[10:20, :20])
    streak = out[15, 30:100] - 0.1
    assert (np.diff(streak) < 0).all()
    slope = np.polyfit(np.arange(60), np.log(streak[:60]), 1)[0]
    assert abs(-1 / slope / 15 - 1) < 0.02


def test_line_jitter_and_x_jumps_shift_whole_rows():
    plan = _plan(4, modality="stem", distortions=("line_jitter", "x_jumps"), specimens=("blobs",))
    p = plan.info.params
    shifts = p["row_shifts"]
    assert shifts.shape == (48,) and np.std(shifts) > 0
    assert p["jitter_px"] > 0 and p["n_x_jumps"] >= 1


# --------------------------------------------------------------------------- pairs


@pytest.mark.parametrize(
    ("modality", "families"), [("stem", NOISE_ONLY_SCAN), ("sem", NOISE_ONLY_SCAN),
                               ("tem", NOISE_ONLY_TEM)]
)  # fmt: skip
def test_mean_of_raw_draws_converges_to_the_target(modality, families):
    plan = _plan(7, modality=modality, distortions=families, dose_range=(20, 20),
                 shape=(32, 32))  # fmt: skip
    draws = np.stack([wide.render_pair(plan, s)[0].astype(float) for s in range(300)])
    target = wide.render_pair(plan, 0)[1]
    se = draws.std(axis=0, ddof=1) / math.sqrt(len(draws))
    z = (draws.mean(axis=0) - target) / np.maximum(se, 1e-12)
    assert np.mean(np.abs(z) < 4) > 0.995
    assert abs(z.mean()) < 0.2


def test_affine_gain_and_offset_map_raw_and_target_together():
    plan = _plan(8, modality="sem", distortions=NOISE_ONLY_SCAN)
    g, o = plan.info.params["gain_adu"], plan.info.params["offset_adu"]
    raw1, t1 = wide.render_pair(plan, 3)
    for a, b in ((0.1, 0.0), (7.0, 1000.0), (300.0, -5.0)):
        raw2, t2 = wide.render_pair(plan.replace_params(gain_adu=a * g, offset_adu=a * o + b), 3)
        scale = a * max(np.abs(raw1).max(), 1.0)
        assert np.abs(raw2 - (a * raw1.astype(float) + b)).max() < 1e-5 * scale + 1e-3 * abs(b)
        assert np.abs(t2 - (a * t1.astype(float) + b)).max() < 1e-5 * scale + 1e-3 * abs(b)


def test_dtypes_and_their_ranges_are_respected():
    rng = np.random.default_rng(11)
    seen = set()
    for _ in range(60):
        raw, target, info = wide.wide_pair(rng, (24, 24))
        seen.add(info.dtype)
        assert raw.dtype == np.dtype(info.dtype) and target.dtype == np.float32
        assert np.isfinite(target).all() and np.isfinite(raw.astype(float)).all()
        if info.dtype != "float32":
            top = np.iinfo(info.dtype).max
            assert target.min() >= 0 and target.max() <= top
    assert seen == {"uint8", "uint16", "float32"}


def test_same_seed_same_pair_other_seed_other_pair():
    a = wide.wide_pair(3, (32, 32))
    b = wide.wide_pair(3, (32, 32))
    c = wide.wide_pair(4, (32, 32))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert (a[2].specimen, a[2].distortions, a[2].dose) == (
        b[2].specimen,
        b[2].distortions,
        b[2].dose,
    )
    assert not np.array_equal(a[1], c[1])


def test_exclusions_are_honoured_over_many_draws():
    rng = np.random.default_rng(12)
    held_s, held_d = set(wide.HELD_OUT["specimens"]), set(wide.HELD_OUT["distortions"])
    for _ in range(150):
        plan = wide.plan_pair(rng, (24, 24), exclude_specimens=tuple(held_s),
                              exclude_distortions=tuple(held_d))  # fmt: skip
        assert plan.info.specimen not in held_s
        assert not set(plan.info.distortions) & held_d
    only = wide.plan_pair(rng, (24, 24), specimens=("gratings",), distortions=("charging",))
    assert only.info.specimen == "gratings" and only.info.distortions == ("charging",)


def test_every_family_is_reachable():
    rng = np.random.default_rng(13)
    for fam in wide.SPECIMEN_FAMILIES:
        assert wide.plan_pair(rng, (24, 24), specimens=(fam,)).info.specimen == fam
    seen: set[str] = set()
    for _ in range(300):
        seen.update(wide.plan_pair(rng, (20, 20), specimens=("spheres",)).info.distortions)
        if seen == set(wide.DISTORTION_FAMILIES):
            break
    assert seen == set(wide.DISTORTION_FAMILIES)


def test_held_out_split_spans_every_modality():
    spec, dist = wide.training_families()
    held_s, held_d = wide.HELD_OUT["specimens"], wide.HELD_OUT["distortions"]
    assert sum(f in mesoscale.MESO_FAMILIES for f in held_s) >= 3
    assert sum(f in atomic.ATOMIC_FAMILIES for f in held_s) >= 2 and len(held_d) >= 3
    for m in wide.MODALITIES:
        assert any(m in wide.APPLIES[f] for f in held_d), m
        wide.plan_pair(0, (24, 24), modality=m, specimens=spec, distortions=dist)
    assert set(spec) | set(held_s) == set(wide.SPECIMEN_FAMILIES)


def test_bad_requests_name_the_parameter_and_the_fix():
    with pytest.raises(ValueError, match=r"unknown families.*SPECIMEN_FAMILIES"):
        wide.wide_pair(0, (32, 32), specimens=("cats",))
    with pytest.raises(ValueError, match=r"counting.*integrating"):
        wide.wide_pair(0, (32, 32), modality="tem", distortions=("readout_noise",))
    with pytest.raises(ValueError, match="dose_range"):
        wide.wide_pair(0, (32, 32), dose_range=(0, 10))
    with pytest.raises(ValueError, match="applicable"):
        wide.wide_pair(0, (32, 32), specimens=("hrtem",), modality="sem")
