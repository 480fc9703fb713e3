"""Closing a widget (napari's close button) or the viewer stops its job: no thread left.

napari's close button re-parents the widget out of its dock without destroying it,
so each widget watches for that; closing the viewer quits its workers. Each job
here reads a slow lazy stack (0.2 s a frame, far longer than the test waits), so a
job that kept running would still be reading frames, and the global thread pool
(where napari runs thread workers) would not be idle.
"""

from __future__ import annotations

import threading
import time

import dask.array as da
import numpy as np
import pytest
from qtpy.QtCore import QThreadPool

pytestmark = pytest.mark.gui

N, SIDE, DELAY = 40, 72, 0.2


class Reads:
    """Times at which reads of frames of the slow stack started (from worker threads)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.lock = threading.Lock()

    def after(self, t: float) -> int:
        with self.lock:
            return sum(r > t for r in self.times)


def slow_stack(reads: Reads) -> da.Array:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    clean = 30 + 40 * ((yy - 36) ** 2 + (xx - 33) ** 2 < 200)
    stack = rng.poisson(np.broadcast_to(clean, (N, SIDE, SIDE))).astype(np.uint16)

    def frame(block):
        # The time a read *starts*: a read started before the close may end after it,
        # later still on a loaded machine; only reads started after it are wrong.
        with reads.lock:
            reads.times.append(time.monotonic())
        time.sleep(DELAY)
        return block

    return da.from_array(stack, chunks=(1, SIDE, SIDE)).map_blocks(frame, dtype=stack.dtype)


def _denoise(viewer, raw):
    from em_restore._napari.denoise_widget import DenoiseWidget

    widget = DenoiseWidget(viewer)
    widget.layer_combo.value = raw
    widget.method_combo.value = "gaussian"
    widget.auto_strength.value = False
    widget.strength.value = 1.0
    return widget


def _deconvolve(viewer, raw):
    from em_restore._napari.deconvolve_widget import DeconvolveWidget

    widget = DeconvolveWidget(viewer)
    widget.layer_combo.value = raw
    widget.scope_combo.value = "whole stack"
    widget.psf_combo.value = "gaussian"
    widget.psf_size.value = 1.5
    widget.solver_combo.value = "wiener"
    widget.denoise_check.value = False
    return widget


def _burst(viewer, raw):
    from em_restore._napari.burst_widget import BurstWidget

    widget = BurstWidget(viewer)
    widget.layer_combo.value = raw
    widget.method_combo.value = "mean"
    widget.frames_spin.value = 3
    return widget


def _train(viewer, raw):
    from em_restore._napari.train_widget import TrainWidget

    widget = TrainWidget(viewer)
    widget.mode_combo.value = "self"
    widget.noisy_combo.value = raw
    widget.epochs_spin.value = 500
    widget.steps_spin.value = 2
    widget.patch_spin.value = 32
    widget.batch_spin.value = 2
    widget.name_edit.value = "closed"
    return widget


WIDGETS = {"denoise": _denoise, "deconvolve": _deconvolve, "burst": _burst, "train": _train}


@pytest.fixture(autouse=True)
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EM_RESTORE_MODELS", str(tmp_path / "models"))


def _pool_idle() -> bool:
    return QThreadPool.globalInstance().activeThreadCount() == 0


@pytest.mark.parametrize("how", ["close button", "viewer closed"])
@pytest.mark.parametrize("kind", list(WIDGETS))
def test_closing_stops_the_job_and_leaves_no_thread(make_napari_viewer, qtbot, kind, how):
    viewer = make_napari_viewer()
    reads = Reads()
    raw = viewer.add_image(slow_stack(reads), name="raw")
    assert _pool_idle()
    widget = WIDGETS[kind](viewer, raw)
    dock = viewer.window.add_dock_widget(widget, name=kind)

    job = widget.run()
    assert job is not None
    events = []
    job.worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: len(events) >= 2, timeout=60_000)  # under way
    assert job.running and not _pool_idle()

    closed_at = time.monotonic()
    if how == "close button":
        dock.destroyOnClose()  # what napari's 'x' on the dock does
    else:
        viewer.close()
    qtbot.waitUntil(_pool_idle, timeout=10_000)
    qtbot.waitUntil(lambda: not job.running, timeout=10_000)
    idle_after = time.monotonic() - closed_at
    assert job.cancelled
    # Frames already requested may finish; nothing new is started.
    in_flight = 4
    assert reads.after(closed_at + in_flight * DELAY) == 0, f"still reading {idle_after:.1f} s on"
    if kind != "train":
        assert len(reads.times) < N  # it never got through the stack
