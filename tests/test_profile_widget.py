"""Line-profile and comparison widgets in a real napari viewer."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from em_restore._napari._layers import viewer_grid
from em_restore.backend import simulate as sim

pytestmark = pytest.mark.gui

PIXEL_NM = 0.5


def _pair_frame(gap_px: float) -> np.ndarray:
    c2 = 60 + 12 + 10 + gap_px
    t = sim.projected_spheres((120, 200), [(60, 60), (60, c2)], [12, 10])
    return sim.blur(np.exp(-math.log(2) / 24 * t), sim.gaussian_psf(1.0)).astype(np.float32)


def _flush(qtbot, widget):
    widget.update_profiles()  # what the debounce timer calls
    qtbot.wait(10)


@pytest.fixture
def viewer_with_stack(make_napari_viewer):
    viewer = make_napari_viewer()
    stack = np.stack([_pair_frame(1.5), _pair_frame(-1.5)])  # frame 1: sintered pair
    raw = viewer.add_image(stack, name="raw", scale=(1.0, PIXEL_NM, PIXEL_NM),
                           units=("pixel", "nm", "nm"))  # fmt: skip
    return viewer, raw


def test_profile_widget_sizes_follows_frames_and_exports(viewer_with_stack, qtbot, tmp_path):
    from em_restore._napari.profile_widget import ProfileWidget

    viewer, raw = viewer_with_stack
    before = raw.data.copy()
    widget = ProfileWidget(viewer)
    viewer.window.add_dock_widget(widget)
    line = widget.add_line_layer()
    assert line.mode == "add_line" and widget.line_combo.value is line
    # The line layer sits on the image's grid: its data coordinates are the image's pixels.
    assert tuple(line.scale) == (PIXEL_NM, PIXEL_NM)
    line.add_lines(np.array([[60, 30], [60, 130]]))
    _flush(qtbot, widget)
    (name, prof, res) = widget.results[0]
    assert name == "raw" and prof.unit == "nm"
    d = [p.diameter for p in res.particles]
    assert d == pytest.approx([24 * PIXEL_NM, 20 * PIXEL_NM], rel=5e-3)
    assert [q.resolved for q in res.pairs] == [True]
    assert widget.table.rowCount() == 3  # two particles and one pair
    assert len(widget.axes.lines) >= 2  # profile and its fit
    # The dims slider moves to the sintered frame: the profile follows it.
    viewer.dims.set_current_step(0, 1)
    _flush(qtbot, widget)
    assert [q.resolved for q in widget.results[0][2].pairs] == [False]
    out = tmp_path / "sizes.csv"
    widget.export_csv(str(out))
    rows = list(csv.DictReader(out.open()))
    assert [r["item"] for r in rows] == ["particle 0", "particle 1", "pair 0-1"]
    assert float(rows[0]["diameter"]) == pytest.approx(24 * PIXEL_NM, rel=5e-3)
    assert rows[2]["resolved"] == "False" and rows[0]["unit"] == "nm"
    np.testing.assert_array_equal(raw.data, before)  # raw never modified


def test_profile_widget_overlays_raw_and_restored_and_reports_problems(make_napari_viewer, qtbot):
    from em_restore._napari.profile_widget import ProfileWidget

    viewer = make_napari_viewer()
    frame = _pair_frame(2.0)
    viewer.add_image(frame, name="restored")
    viewer.add_image(frame + np.random.default_rng(0).normal(0, 0.02, frame.shape), name="raw")
    rgb = viewer.add_image(np.zeros((120, 200, 3), np.uint8), name="rgb", rgb=True)
    widget = ProfileWidget(viewer)
    assert {ly.name for ly in widget.layers.value} == {"restored", "raw"}
    line = widget.add_line_layer()
    line.add_lines(np.array([[60, 30], [60, 130]]))
    _flush(qtbot, widget)
    assert [r[0] for r in widget.results] == ["restored", "raw"]
    assert all(len(r[2].particles) == 2 for r in widget.results)
    assert "px" in widget.axes.get_xlabel()
    widget.layers.value = [*widget.layers.value, rgb]
    line.add_lines(np.array([[60, 30], [60, 400]]))  # the newest line leaves the image
    _flush(qtbot, widget)
    assert widget.results == []
    assert "RGB skipped" in widget.status.value and "leaves the" in widget.status.value


def test_compare_widget_metrics_difference_histograms_grid(make_napari_viewer, qtbot):
    from em_restore._napari.compare_widget import CompareWidget

    viewer = make_napari_viewer()
    truth = _pair_frame(2.0)
    noisy = truth + np.random.default_rng(1).normal(0, 0.05, truth.shape).astype(np.float32)
    ref = viewer.add_image(truth, name="high dose", scale=(PIXEL_NM, PIXEL_NM))
    low = viewer.add_image(noisy, name="low dose", scale=(PIXEL_NM, PIXEL_NM))
    viewer.add_image(np.zeros((5, 5)), name="other")
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.layer_combo.value = low
    widget.reference_combo.value = ref
    scores = widget.compute()
    mse = np.mean((noisy.astype(float) - truth) ** 2)
    assert scores["psnr"] == pytest.approx(10 * np.log10(np.ptp(truth) ** 2 / mse), abs=1e-6)
    assert scores["mae"] == pytest.approx(np.mean(np.abs(noisy - truth)), rel=1e-5)
    assert 0 < scores["ssim"] < 1 and "PSNR" in widget.status.value
    assert widget.axes.get_yscale() == "log" and len(widget.axes.lines) == 2
    diff = widget.add_difference()
    np.testing.assert_allclose(np.asarray(diff.data), noisy - truth, atol=1e-6)
    assert tuple(diff.scale) == (PIXEL_NM, PIXEL_NM)
    assert diff.metadata["em_restore"]["reference_layer"] == "high dose"
    widget.side_by_side()
    assert viewer_grid(viewer).enabled and low.visible and ref.visible
    assert not viewer.layers["other"].visible
    # Different shapes: a clear message, no exception.
    widget.reference_combo.value = viewer.layers["other"]
    assert widget.compute() is None and "same shape" in widget.status.value


def test_widgets_are_contributed_by_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    _, w1 = viewer.window.add_plugin_dock_widget("napari-em-restore", "Line profile")
    _, w2 = viewer.window.add_plugin_dock_widget("napari-em-restore", "Compare")
    assert type(w1).__name__ == "ProfileWidget" and type(w2).__name__ == "CompareWidget"
