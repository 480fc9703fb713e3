"""Live dock widget: restore an acquisition while it is recorded, newest frames on screen.

Thin by design: the work is :func:`em_restore.backend.live.iter_live` (a source, a
restorer from :func:`~em_restore.backend.live.plan_live`), run by
:class:`._jobs.Job` in a napari thread worker. Each restored frame comes back as a
:class:`~em_restore.backend.live.LiveRecord`; on the main thread the two layers
``live raw`` and ``live restored`` (side by side, contrast linked) get the newest
frames, at most :data:`DISPLAY_HZ` times a second so a fast stream never floods the
event loop, and the readout shows fps, latency p50/p95 and dropped frames.

Pause stops restoring at the next frame (the source keeps recording: with the
``drop`` policy, the default here, frames that arrive meanwhile are dropped and
counted); Stop closes the source and ends the job; the layers keep the last frames.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, LineEdit, PushButton, SpinBox

from em_restore._napari._base import on_close, status_label
from em_restore._napari._jobs import Job
from em_restore._napari._layers import show_side_by_side
from em_restore.backend import live as backend

if TYPE_CHECKING:
    import napari

DISPLAY_HZ = 15.0
DEFAULT_SOURCE = "synthetic:fps=10,size=256"
METHODS = {"denoise": ["network", "gaussian", "median"], "burst": list(backend.LIVE_BURST_METHODS)}
RAW, RESTORED = "live raw", "live restored"


class LiveWidget(Container):
    """Pick a source, start / pause / stop; newest raw and restored frames side by side."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.source: Any = None
        self._gen: Generator | None = None
        self._alive = True
        self.source_edit = LineEdit(label="source", value=DEFAULT_SOURCE)
        self.source_edit.tooltip = (
            "a folder (new image files, one frame each), a growing .tif/.mrc stack, or "
            "synthetic[:fps=20,size=512,dose=20,speed=1.5] (the simulated microscope)"
        )
        self.mode_combo = ComboBox(label="mode", choices=["denoise", "burst"], value="denoise")
        self.method_combo = ComboBox(label="method", choices=METHODS["denoise"], value="network")
        self.frames_spin = SpinBox(label="burst frames", value=5, min=2, max=16, enabled=False)
        self.policy_combo = ComboBox(label="when behind", choices=["drop", "queue"], value="drop")
        self.policy_combo.tooltip = (
            "drop: restore the newest frames, dropping (and counting) the oldest queued; "
            "queue: restore every frame, latency grows"
        )
        self.start_button = PushButton(text="Start")
        self.pause_button = PushButton(text="Pause", enabled=False)
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.readout = status_label("")
        self.status = status_label("")
        self.extend(
            [
                self.source_edit,
                self.mode_combo,
                self.method_combo,
                self.frames_spin,
                self.policy_combo,
                self.start_button,
                self.pause_button,
                self.stop_button,
                self.readout,
                self.status,
            ]
        )
        self.mode_combo.changed.connect(self._mode_changed)
        self.start_button.changed.connect(self.start)
        self.pause_button.changed.connect(self.toggle_pause)
        self.stop_button.changed.connect(self.stop)
        self._reset_counters()
        on_close(self, self._disconnect)

    # ------------------------------------------------------------------ controls
    def _mode_changed(self, mode: str) -> None:
        self.method_combo.choices = METHODS[mode]
        self.method_combo.value = METHODS[mode][0]
        self.frames_spin.enabled = mode == "burst"

    def _reset_counters(self) -> None:
        self.frames_done = 0
        self.shown = 0
        self.last_record: backend.LiveRecord | None = None
        self._latencies: deque = deque(maxlen=200)
        self._last_draw = 0.0
        self.paused = False

    def start(self, _value: Any = None) -> Job | None:
        """Open the source and restore in the background; None if refused or running."""
        from napari.utils.notifications import show_error

        if self.job is not None and self.job.running:
            return None
        from em_restore.backend.live_sources import open_source

        try:
            mode = self.mode_combo.value
            restorer = backend.plan_live(
                mode, method=self.method_combo.value, frames=int(self.frames_spin.value)
            )
            source = open_source(self.source_edit.value.strip())
        except Exception as exc:  # a bad spec, a missing folder, no model
            show_error(f"Live: {str(exc).splitlines()[0] if str(exc) else exc}")
            return None
        self.source = source
        self._reset_counters()
        policy = self.policy_combo.value
        self._gen = backend.iter_live(source, restorer, policy=policy)
        gen = self._gen

        def work():
            yield from gen

        self.job = Job(
            "Live",
            work,
            on_done=self._ended,
            on_status=self._set_status,
            on_event=self._record,
            on_finished=self._finished,
            cancel_message=lambda: f"Live stopped after {self.frames_done} frames",
        )
        self._set_running(True)
        self._set_status(f"Live: {source.name}")
        return self.job.start()

    def toggle_pause(self, _value: Any = None) -> None:
        if self.job is None or not self.job.running:
            return
        self.paused = not self.paused
        self.job.worker.toggle_pause()
        self.pause_button.text = "Resume" if self.paused else "Pause"
        self._set_status(
            "Live: paused (frames arriving meanwhile are dropped)"
            if self.paused
            else "Live: running"
        )

    def stop(self, _value: Any = None) -> None:
        """Close the source and end the job; the layers keep the last frames."""
        if self.source is not None:
            self.source.close()
        if self.job is not None and self.job.running:
            if self.paused:
                self.job.worker.toggle_pause()  # a paused worker must run to see the quit
            self.job.cancel()

    # ------------------------------------------------------------------ results
    def _record(self, rec: Any) -> None:
        if not isinstance(rec, backend.LiveRecord) or not self._alive:
            return
        self.frames_done = rec.done
        self.last_record = rec
        self._latencies.append(rec.latency_s)
        now = time.monotonic()
        if now - self._last_draw < 1.0 / DISPLAY_HZ:
            return  # drawn at most DISPLAY_HZ times a second
        self._last_draw = now
        self._draw(rec)
        lat = np.array(self._latencies) * 1e3
        self.readout.value = (
            f"frame {rec.index}: {rec.fps:.1f} fps, latency {np.percentile(lat, 50):.0f} ms "
            f"(p95 {np.percentile(lat, 95):.0f}), {rec.dropped} dropped"
        )

    def _draw(self, rec: Any) -> None:
        layers = self.viewer.layers
        if RAW in layers and RESTORED in layers and layers[RAW].data.shape == rec.raw.shape:
            layers[RAW].data = rec.raw
            layers[RESTORED].data = rec.restored
        else:
            for name in (RAW, RESTORED):
                if name in layers:
                    layers.remove(name)
            lo, hi = (float(v) for v in np.percentile(rec.raw, (0.5, 99.5)))
            limits = (lo, hi if hi > lo else lo + 1)
            raw = self.viewer.add_image(rec.raw, name=RAW, contrast_limits=limits)
            restored = self.viewer.add_image(rec.restored, name=RESTORED, contrast_limits=limits)
            restored.metadata["em_restore"] = {"operation": "live"}
            show_side_by_side(self.viewer, raw, restored)
        self.shown += 1

    def _ended(self, summary: Any) -> None:
        if summary is not None:
            self.readout.value = summary.line()

    def _finished(self) -> None:
        gen, self._gen = self._gen, None
        if gen is not None:
            gen.close()  # the worker leaves a quit generator suspended: close source and reader
        if self.last_record is not None and self._alive:
            self._draw(self.last_record)  # the newest frame, even if it came between draws
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        if not self._alive:
            return
        self.start_button.enabled = not running
        self.pause_button.enabled = running
        self.stop_button.enabled = running
        if not running:
            self.pause_button.text = "Pause"
            self.paused = False

    def _set_status(self, text: str) -> None:
        if self._alive:
            self.status.value = text

    def _disconnect(self, _obj: Any = None) -> None:
        self._alive = False
        self.stop()
