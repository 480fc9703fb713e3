"""Line profiles and particle sizing (em_restore.backend.profile): exact answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from em_restore.backend import simulate as sim
from em_restore.backend.profile import (
    LineProfile,
    analyse_profile,
    measure_line,
    pair_resolution,
    sample_profile,
    sphere_profile,
)

# ----------------------------------------------------------------- sampling


def test_step_edge_profile_is_the_linear_interpolant_in_physical_units():
    img = np.zeros((20, 40))
    img[:, 20:] = 10.0  # step between columns 19 and 20
    prof = sample_profile(img, [(10, 10), (10, 30)], scale=2.5, unit="nm", step=1.25)
    # Half-pixel samples: the step is crossed linearly between columns 19 and 20.
    assert prof.unit == "nm"
    assert prof.positions[1] == pytest.approx(1.25)
    assert prof.positions[-1] == pytest.approx(50.0)
    col = 10 + prof.positions / 2.5
    expected = np.clip(col - 19, 0, 1) * 10
    np.testing.assert_allclose(prof.values, expected, atol=1e-12)


def test_width_averages_parallel_lines_and_polyline_length_is_physical():
    img = np.tile(np.arange(30.0), (30, 1)).T  # value = row index
    # Horizontal line at row 15, width 5: averages rows 13..17 -> 15 exactly.
    prof = sample_profile(img, [(15, 2), (15, 27)], width=5)
    np.testing.assert_allclose(prof.values, 15.0)
    np.testing.assert_allclose(prof.offsets, [-2, -1, 0, 1, 2])
    # An L-shaped polyline with anisotropic pixels: length = 10*2 + 10*3.
    poly = sample_profile(img, [(5, 5), (15, 5), (15, 15)], scale=(2.0, 3.0), unit="nm", step=1.0)
    assert poly.positions[-1] == pytest.approx(50.0)
    # Along the first leg the value is the row: 5 + s/2.
    first = poly.positions <= 20
    np.testing.assert_allclose(poly.values[first], 5 + poly.positions[first] / 2, atol=1e-12)


@pytest.mark.parametrize(
    ("image", "points", "message"),
    [
        (np.zeros((10, 10, 3)), [(1, 1), (8, 8)], "RGB"),
        (np.zeros((4, 10, 10)), [(1, 1), (8, 8)], "Pick a frame"),
        (np.zeros((10, 10)), [(1, 1), (8, 12)], "leaves the 10x10 image"),
        (np.zeros((10, 10)), [(5, 1), (5, 8)], None),
        (np.zeros((10, 10)), [(1, 1)], "points must be"),
        (np.zeros((10, 10)), [(1, 1), (1, 1)], "zero length"),
        (np.full((10, 10), np.nan), [(1, 1), (8, 8)], "NaN"),
    ],
)
def test_bad_input_gives_one_clear_error(image, points, message):
    if message is None:  # width 5 around row 5 is inside; width 13 is not
        sample_profile(image, points, width=5)
        with pytest.raises(ValueError, match="reduce the width"):
            sample_profile(image, points, width=13)
        return
    with pytest.raises(ValueError, match=message):
        sample_profile(image, points)


def test_input_is_not_modified():
    img = np.arange(100.0).reshape(10, 10)
    before = img.copy()
    sample_profile(img, [(2, 1), (7, 8)], width=3, order=3)
    np.testing.assert_array_equal(img, before)


# ----------------------------------------------------------------- the model and the fit


def test_model_of_an_unblurred_sphere_is_its_chord():
    x = np.linspace(-12, 12, 97)
    y = sphere_profile(x, centers=[0.0], radii=[10.0], amplitudes=[1.0], background=0.0)
    np.testing.assert_allclose(y, 2 * np.sqrt(np.maximum(100 - x**2, 0)), atol=1e-12)
    # Perpendicular offset o: the chord of radius sqrt(R^2 - o^2).
    y6 = sphere_profile(x, centers=[0], radii=[10], amplitudes=[1], background=0, offsets=[6.0])
    np.testing.assert_allclose(y6, 2 * np.sqrt(np.maximum(64 - x**2, 0)), atol=1e-12)


@pytest.mark.parametrize("appearance", ["dark", "bright"])
@pytest.mark.parametrize("sigma", [0.0, 1.5])
def test_fit_recovers_a_known_sphere_exactly(appearance, sigma):
    x = np.arange(0.0, 120.0, 0.5)
    sat = 1 / 100.0 if appearance == "dark" else 0.0
    y = sphere_profile(
        x,
        centers=[57.3],
        radii=[17.2],
        amplitudes=[1.0],
        background=100.0,
        saturation=sat,
        sigma=sigma,
        appearance=appearance,
    )
    res = analyse_profile(LineProfile(x, y, unit="nm"))
    (p,) = res.particles
    assert p.appearance == appearance
    assert p.center == pytest.approx(57.3, abs=1e-3)
    assert p.diameter == pytest.approx(34.4, rel=1e-4)
    assert res.blur_sigma == pytest.approx(sigma, abs=0.1)  # sigma << one step: barely seen
    assert res.background == pytest.approx(100.0, abs=1e-4 * 34)  # 1e-4 of the contrast
    # Unblurred: the 5 % crossing of a sphere is at R sqrt(1 - 0.05^2).
    if sigma == 0 and appearance == "bright":
        assert p.edge_width == pytest.approx(34.4 * (math.sqrt(1 - 0.05**2) - 1), abs=0.02)
        assert p.fwhm == pytest.approx(34.4 * math.sqrt(3) / 2, rel=1e-3)
    if sigma > 0:
        assert p.edge_width > 0
    assert res.fit == pytest.approx(y, abs=0.005 * 34)  # 0.5 % of the contrast


def test_pair_distance_and_resolution_criterion():
    x = np.arange(0.0, 100.0, 0.5)
    for gap, resolved in [(1.5, True), (-1.5, False)]:
        c2 = 35.0 + 12.0 + 9.0 + gap
        y = sphere_profile(
            x,
            centers=[35.0, c2],
            radii=[12.0, 9.0],
            amplitudes=[1.0, 1.0],
            background=50.0,
            saturation=1 / 50.0,
            sigma=1.0,
            appearance="dark",
        )
        res = analyse_profile(LineProfile(x, y, unit="nm"))
        assert [round(p.diameter, 2) for p in res.particles] == [24.0, 18.0]
        (pair,) = res.pairs
        assert pair.distance == pytest.approx(c2 - 35.0, abs=1e-3)
        assert pair.gap == pytest.approx(gap, abs=2e-3)
        assert pair.resolved is resolved


def test_blank_profile_has_no_particles():
    rng = np.random.default_rng(0)
    x = np.arange(200.0)
    res = analyse_profile(LineProfile(x, 10 + rng.normal(0, 0.5, x.size)))
    assert res.particles == [] and res.pairs == []


# ----------------------------------------------------------------- on simulated images


def _through(centre, radius, shape, angle=0.0):
    half = radius + max(0.8 * radius, 8)
    u = np.array([math.sin(angle), math.cos(angle)])
    a, b = np.asarray(centre) - half * u, np.asarray(centre) + half * u
    assert (a >= 0).all() and (b < np.asarray(shape) - 1).all()
    return [tuple(a), tuple(b)], half


@pytest.mark.parametrize("pixel_nm", [1.0, 2.0])
def test_diameter_of_simulated_particles_within_half_a_percent(pixel_nm):
    # Noise-free bright-field particles with a 1 px instrument blur, 3 px wide lines.
    centres = [(40.0, 40.3), (45.7, 120.0), (120.2, 70.9)]
    diam_px = [30.0, 22.4, 41.7]
    thick = sim.projected_spheres((170, 170), centres, [d / 2 for d in diam_px]) * pixel_nm
    clean = np.exp(-math.log(2) / (30 * pixel_nm) * thick)
    img = sim.blur(clean, sim.gaussian_psf(1.0))
    for c, d in zip(centres, diam_px, strict=True):
        line, half = _through(c, d / 2, img.shape, angle=0.3)
        _, res = measure_line(img, line, width=3, scale=pixel_nm, unit="nm")
        (p,) = res.particles
        assert p.diameter == pytest.approx(d * pixel_nm, rel=5e-3)
        assert p.center == pytest.approx(half * pixel_nm, abs=0.1 * pixel_nm)
        assert res.blur_sigma == pytest.approx(1.0 * pixel_nm, rel=0.25)


def test_low_dose_particle_is_sized_within_a_few_percent_after_averaging():
    # 20 e/px, a 5 px wide line: the fit uses every sample, so the noise averages out.
    rng = np.random.default_rng(4)
    thick = sim.projected_spheres((120, 120), [(60.0, 60.0)], [18.0])
    img = sim.blur(40 * np.exp(-math.log(2) / 36 * thick), sim.gaussian_psf(1.0))
    noisy = rng.poisson(img).astype(float)
    line, _ = _through((60.0, 60.0), 18.0, img.shape)
    _, res = measure_line(noisy, line, width=5, unit="px")
    (p,) = res.particles
    assert p.diameter == pytest.approx(36.0, rel=0.03)


# ----------------------------------------------------------------- pair resolution


def _pair(gap, *, radii=(10.0, 10.0), sigma=1.0, background=1.0, step=1.0):
    """Dark touching pair (bright-field attenuation), surfaces ``gap`` apart; returns
    (positions, expected intensity, true centres)."""
    x = np.arange(0.0, 110.0, step)
    c = (40.0, 40.0 + radii[0] + radii[1] + gap)
    y = sphere_profile(x, centers=c, radii=radii, amplitudes=[0.03, 0.03],
                       background=background, saturation=1 / background, sigma=sigma,
                       appearance="dark")  # fmt: skip
    return x, y, c


def test_clearly_separated_pair_resolves_with_its_distance():
    x, y, c = _pair(4.0)
    res = pair_resolution(LineProfile(x, y, unit="nm"), c, tolerance=1.0)
    assert res.resolved, res.reason
    assert res.distance == pytest.approx(24.0, abs=0.01)
    assert res.gap == pytest.approx(4.0, abs=0.02)
    # Noise-free: the dip (0.4 of the background) stands far above the profile's "noise"
    # (second differences of the edges' curvature: about 0.01 here).
    assert res.dip == pytest.approx(0.4, abs=0.05) and res.significance > 10
    # Without expected centres: the first fitted pair, the same answer.
    assert pair_resolution(LineProfile(x, y)).distance == pytest.approx(res.distance)


def test_sintered_pair_is_not_resolved():
    for gap in (-2.0, -5.0):
        x, y, c = _pair(gap)
        res = pair_resolution(LineProfile(x, y), c)
        assert not res.resolved
        assert res.reason in ("fitted spheres overlap", "merged: one particle fitted over both")


def test_wrong_distance_is_not_resolved_with_a_tolerance():
    x, y, c = _pair(4.0)
    prof = LineProfile(x, y)
    assert pair_resolution(prof, (c[0], c[1] + 2.0), tolerance=2.5).resolved
    res = pair_resolution(prof, (c[0], c[1] + 2.0), tolerance=1.0)
    assert not res.resolved and res.reason.startswith("distance off by -2")
    with pytest.raises(ValueError, match="tolerance needs the expected centres"):
        pair_resolution(prof, tolerance=1.0)
    with pytest.raises(ValueError, match="centers must be two different"):
        pair_resolution(prof, (3.0, 3.0))


def test_shallow_dip_is_resolved_at_high_dose_and_not_at_low_dose():
    # A 1.5 px gap under a 2 px blur: the dip is about 10 % of the background.
    x, y, c = _pair(1.5, sigma=2.0)
    assert pair_resolution(LineProfile(x, y), c).resolved  # noise-free: any dip counts
    rng = np.random.default_rng(1)
    for dose, expect in [(2000.0, True), (10.0, False)]:
        called = [
            pair_resolution(LineProfile(x, rng.poisson(dose * y) / dose), c).resolved
            for _ in range(10)
        ]
        assert sum(called) == (10 if expect else 0), (dose, called)


def test_dip_sigma_bounds_the_scatter_of_the_dip():
    # The stated standard error is conservative (interpolation factor 2) but not vacuous.
    x, y, c = _pair(4.0)
    rng = np.random.default_rng(2)
    dips, sigmas = [], []
    for _ in range(60):
        res = pair_resolution(LineProfile(x, y + rng.normal(0, 0.05, x.size)), c)
        dips.append(res.dip)
        sigmas.append(res.dip_sigma)
    spread, stated = float(np.std(dips)), float(np.median(sigmas))
    assert 0.5 * stated < spread <= stated
    # White noise of 0.05 (uncorrelated samples): 0.05 sqrt(1/n_P + 1/n_S), 5 samples each.
    assert spread == pytest.approx(0.05 * math.sqrt(2 / 5), rel=0.2)
    assert stated == pytest.approx(math.sqrt(2) * 0.05 * math.sqrt(2 / 5), rel=0.2)


def test_on_a_simulated_low_dose_image_line_width_averages_the_noise():
    # 40 px particles 4 px apart at 5 e/px: a 1 px line does not resolve them, a 9 px one does.
    c = [(40.0, 40.0), (40.0, 84.0)]
    thick = sim.projected_spheres((80, 130), c, [20.0, 20.0])
    img = sim.blur(5 * np.exp(-math.log(2) / 40 * thick), sim.gaussian_psf(1.0))
    noisy = np.random.default_rng(3).poisson(img).astype(float)
    line = [(40.0, 5.0), (40.0, 124.0)]
    centres = (35.0, 79.0)
    narrow = pair_resolution(sample_profile(noisy, line, width=1), centres, tolerance=2.0)
    wide = pair_resolution(sample_profile(noisy, line, width=9), centres, tolerance=2.0)
    assert wide.resolved, wide.reason
    assert wide.significance > 1.5 * (narrow.significance or 0.0)
