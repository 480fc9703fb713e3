"""The Live widget in a real napari viewer: start, newest frames, pause, stop, heartbeat."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.gui

SOURCE = "synthetic:fps=25,size=96,pool=8,dose=30"


def _widget(viewer, source=SOURCE, mode="burst", method="mean"):
    from em_restore._napari.live_widget import LiveWidget

    widget = LiveWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.source_edit.value = source
    widget.mode_combo.value = mode
    widget.method_combo.value = method
    widget.frames_spin.value = 3
    return widget


def _live_threads():
    return [t for t in threading.enumerate() if t.name == "live-in"]


def test_widget_is_contributed_by_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-em-restore", "Live")
    assert type(widget).__name__ == "LiveWidget"
    assert widget.method_combo.value == "network" and not widget.frames_spin.enabled
    widget.mode_combo.value = "burst"
    assert list(widget.method_combo.choices) == ["classical", "mean"]
    assert widget.frames_spin.enabled


def test_start_shows_the_newest_frames_then_stop(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    job = widget.start()
    assert job is not None and widget.start() is None  # one run at a time
    qtbot.waitUntil(lambda: widget.frames_done >= 10, timeout=60_000)
    assert widget.stop_button.enabled and not widget.start_button.enabled
    raw, restored = viewer.layers["live raw"], viewer.layers["live restored"]
    assert raw.data.shape == restored.data.shape == (96, 96)
    assert viewer.grid.enabled and restored.metadata["em_restore"]["operation"] == "live"
    assert "fps" in widget.readout.value and "dropped" in widget.readout.value
    widget.stop()
    qtbot.waitUntil(lambda: not job.running, timeout=30_000)
    assert widget.source.closed and widget.start_button.enabled
    qtbot.waitUntil(lambda: not _live_threads(), timeout=10_000)
    # the layers keep the last restored frame: the registered mean of 3 frames
    rec = widget.last_record
    np.testing.assert_array_equal(viewer.layers["live restored"].data, rec.restored)
    np.testing.assert_array_equal(viewer.layers["live raw"].data, rec.raw)
    assert rec.restored.std() < rec.raw.std()  # averaged: less noise


def test_pause_stops_restoring_and_resume_continues(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    job = widget.start()
    qtbot.waitUntil(lambda: widget.frames_done >= 3, timeout=60_000)
    widget.toggle_pause()
    qtbot.wait(600)  # the pause takes effect at the next frame
    paused_at = widget.frames_done
    qtbot.wait(600)
    assert widget.frames_done == paused_at and widget.pause_button.text == "Resume"
    widget.toggle_pause()
    qtbot.waitUntil(lambda: widget.frames_done > paused_at + 2, timeout=30_000)
    # the source kept recording while paused: what arrived beyond the queue was dropped
    assert widget.last_record.dropped > 0
    widget.stop()
    qtbot.waitUntil(lambda: not job.running, timeout=30_000)


def test_bad_source_is_refused_with_a_notice(make_napari_viewer, monkeypatch, tmp_path):
    errors = []
    monkeypatch.setattr("napari.utils.notifications.show_error", errors.append)
    viewer = make_napari_viewer()
    widget = _widget(viewer, source=str(tmp_path / "missing.png"))
    assert widget.start() is None
    assert errors and "not a folder" in errors[0]
    assert widget.start_button.enabled and not widget.stop_button.enabled


def test_event_loop_keeps_beating_while_live(make_napari_viewer, qtbot):
    """The viewer stays responsive: a 20 ms timer never waits over 200 ms.

    Adding the two layers is napari's own moment (timed apart, as in test_fill).
    """
    from qtpy.QtCore import QTimer

    viewer = make_napari_viewer()
    widget = _widget(viewer, source="synthetic:fps=40,size=128,pool=8,dose=30")
    inserting: list[tuple[float, float]] = []
    draw = widget._draw

    def timed_draw(rec):
        first = "live raw" not in viewer.layers
        t = time.perf_counter()
        try:
            return draw(rec)
        finally:
            if first:
                inserting.append((t, time.perf_counter()))

    widget._draw = timed_draw
    beats: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: beats.append(time.perf_counter()))
    timer.start(20)
    job = widget.start()
    qtbot.waitUntil(lambda: widget.frames_done >= 60, timeout=60_000)
    widget.stop()
    qtbot.waitUntil(lambda: not job.running, timeout=30_000)
    timer.stop()
    assert widget.shown >= 5  # the layers were updated while it ran
    t0, t1 = inserting[0]
    gaps = [b - a for a, b in itertools.pairwise(beats) if b < t0 or a > t1]
    assert len(gaps) > 20 and max(gaps) < 0.2, f"longest stall {max(gaps):.3f} s"
