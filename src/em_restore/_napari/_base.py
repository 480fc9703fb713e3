"""Shared plumbing of the dock widgets that run one background job at a time.

:class:`JobWidget` owns what every restoration widget has: the image-layer menu
(kept in sync with the viewer), the Run / Cancel / Side-by-side buttons, a status
line, the current :class:`._jobs.Job` (one at a time), and the clean-up when the
widget is closed or destroyed (viewer events disconnected, a running job cancelled). A
subclass builds its own controls, lays everything out with :meth:`_arrange`, and
implements ``run``; its results set ``last_result = (raw_layer, result_layer)``.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton
from qtpy.QtCore import QEvent, QObject

from em_restore._napari._fill import Filling, FramesDone, Streaming
from em_restore._napari._jobs import Job
from em_restore._napari._layers import (
    follow_selection,
    layer_choices,
    show_side_by_side,
    start_where_the_user_is,
)

if TYPE_CHECKING:
    import napari

_LAYER_EVENTS = ("inserted", "removed", "reordered")


class _UndockWatch(QObject):
    """Sees napari take a widget out of its dock.

    napari's close button (``remove_dock_widget``) re-parents the widget to None
    and deletes only the dock, so the widget is not destroyed: without this its
    job would run on and the viewer would keep calling it.
    """

    def __init__(self, widget: Any, undocked: Any) -> None:
        super().__init__(widget)
        self._undocked = undocked
        self._docked = widget.parent() is not None
        widget.installEventFilter(self)

    def eventFilter(self, obj: Any, event: Any) -> bool:
        if event.type() == QEvent.Type.ParentChange:
            docked = obj.parent() is not None
            if self._docked and not docked:
                self._undocked()
            self._docked = docked
        return False


def status_label(text: str = "") -> Label:
    """The status line: wrapped, so a long message never widens the dock."""
    label = Label(value=text)
    label.native.setWordWrap(True)
    return label


def on_close(widget: Container, closed: Any) -> None:
    """Call ``closed()`` once, when ``widget`` is closed in napari or destroyed."""
    done = []
    method = weakref.WeakMethod(closed)  # no cycle: a collected widget is not called

    def once(*_args: Any) -> None:
        if not done:
            done.append(True)
            if (bound := method()) is not None:
                bound()

    widget.native.destroyed.connect(once)
    widget._undock_watch = _UndockWatch(widget.native, once)


class JobWidget(Container):
    """Base class: layer menu, run/cancel/compare buttons, status, one job at a time.

    The layer menu starts on the active (or only) image layer and follows the
    user's selection (:func:`._layers.follow_selection`): not to a layer napari
    selects because it was just added, not to maps, kernels or previews, and not to
    the results of :attr:`operation`, this widget's own.
    """

    #: what this widget's results record as their ``operation`` (not followed)
    operation: str | None = None

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.job: Job | None = None
        self._filling: Filling | None = None  # the stack result filling now, if any
        self.last_result: Any = None
        self.last_fidelity: Any = None
        self._alive = True
        self.layer_combo = ComboBox(label="image", choices=self._image_layers, nullable=True)
        start_where_the_user_is(self.layer_combo, self.viewer)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.compare_button = PushButton(text="Side by side", enabled=False)
        self.status = status_label()

    def _arrange(
        self,
        options: list[Any],
        buttons: list[Any] = (),
        *,
        lead: list[Any] = (),
        compare: bool = True,
    ) -> None:
        """``lead``, the layer menu, the subclass's options, its extra buttons, then the
        common ones (``compare=False``: no Side-by-side button, e.g. for training)."""
        common = [self.run_button, self.cancel_button] + ([self.compare_button] * compare)
        self.extend([*lead, self.layer_combo, *options, *buttons, *common, self.status])
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.compare_button.changed.connect(self.side_by_side)
        for event in _LAYER_EVENTS:
            getattr(self.viewer.layers.events, event).connect(self._refresh_layers)
        self.viewer.layers.selection.events.active.connect(self._follow_selection)
        on_close(self, self._disconnect)

    def run(self, _value: Any = None) -> Job | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _disconnect(self, _obj: Any = None) -> None:
        """The widget is gone: the viewer must stop calling it, and its job stops."""
        self._alive = False
        for event in _LAYER_EVENTS:
            getattr(self.viewer.layers.events, event).disconnect(self._refresh_layers)
        self.viewer.layers.selection.events.active.disconnect(self._follow_selection)
        if self.job is not None and self.job.running:
            self.job.cancel()

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return layer_choices(self.viewer, "Image")

    def _refresh_layers(self, event: Any = None) -> None:
        if getattr(event, "type", None) == "inserted":
            self._inserted = event.value  # napari selects it next: not the user's choice
        self.layer_combo.reset_choices()
        start_where_the_user_is(self.layer_combo, self.viewer)

    def _follow_selection(self, _event: Any = None) -> None:
        """The user selected a layer: the menu follows (a layer napari selects because
        it was just added, a file opened or a result, does not move a chosen menu)."""
        active = self.viewer.layers.selection.active
        if not self._alive or active is None or active is getattr(self, "_inserted", None):
            return
        self._inserted = None
        follow_selection(self.layer_combo, self.viewer, self.operation)

    def cancel(self, _value: Any = None) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()

    def side_by_side(self, _value: Any = None) -> None:
        if self.last_result is None or self.last_result[1] not in self.viewer.layers:
            return
        raw, result = self.last_result
        show_side_by_side(self.viewer, raw, result)

    def _start(self, name: str, work: Any, done: Any) -> Job | None:
        """Run ``work`` (a generator function) as this widget's job; refuse a second one."""
        if self.job is not None and self.job.running:
            from napari.utils.notifications import show_warning

            show_warning(f"{self.job.name} is still running; cancel it or wait")
            return None
        self._set_running(True)
        self._filling = None
        self.job = Job(
            name,
            work,
            on_done=done,
            on_status=self._set_status,
            on_finished=self._job_finished,
            on_event=self._job_event,
            cancel_message=lambda: self._cancel_message(name),
        ).start()
        return self.job

    # A stack result is shown while it is computed (``_fill``): the worker yields
    # Streaming once its store exists, then FramesDone as frames land in it.
    def _job_event(self, event: Any) -> None:
        if isinstance(event, Streaming):
            if self.job is None or self.job.cancelled:
                event.filling.discard_store()  # cancelled before it was shown
                return
            layer = event.show(event.filling)
            event.filling.attach(self.viewer, layer, on_removed=self.cancel)
            self._filling = event.filling
        elif isinstance(event, FramesDone) and self._filling is not None:
            self._filling.refresh()

    def _cancel_message(self, name: str) -> str | None:
        f = self._filling
        if f is None or f.layer is None:
            return None  # the default: nothing was added
        return (
            f"{name} cancelled; layer {f.layer.name!r} keeps the {len(f.frames_done)} of "
            f"{f.total} frames done (marked partial)"
        )

    def _job_finished(self) -> None:
        filling, self._filling = self._filling, None
        if filling is not None:
            filling.mark_partial()  # a cancel or an error; no-op when complete
            filling.discard_if_removed()
        self._set_running(False)

    def _start_buttons(self) -> list[Any]:
        """Buttons disabled while a job runs (a subclass adds e.g. its preview button)."""
        return [self.run_button]

    def _set_running(self, running: bool) -> None:
        if not self._alive:
            return
        for button in self._start_buttons():
            button.enabled = not running
        self.cancel_button.enabled = running

    def _set_status(self, text: str) -> None:
        if self._alive:
            self.status.value = text

    # ---------------------------------------------------------------- shared by the widgets
    def _chosen_image(self, op: str, what: str = "image") -> Any:
        """The chosen layer, or None after a one-line warning (none chosen, or RGB)."""
        from napari.utils.notifications import show_warning

        layer = self.layer_combo.value
        if layer is None:
            article = "an" if what[0] in "aeiou" else "a"
            show_warning(f"{op}: no image layer selected; open or select {article} {what} first")
            return None
        if layer.rgb:
            show_warning(
                f"{op}: layer {layer.name!r} is RGB; EM {what}s are greyscale — "
                "convert it to greyscale first"
            )
            return None
        return layer

    def _show_result(self, source: Any, data: Any, kwargs: dict[str, Any]) -> Any:
        """Add a result layer on its source (a lazy or filling one starts with the source's
        contrast); it is what Side by side shows."""
        if not isinstance(data, np.ndarray):  # not computed yet: the raw's contrast
            kwargs["contrast_limits"] = tuple(source.contrast_limits)
        layer = self.viewer.add_image(data, **kwargs)
        self.last_result = (source, layer)
        self.compare_button.enabled = True
        return layer

    def _show_stack_map(self, filling: Any, fmap: Any) -> Any:
        """A stack result's fidelity map, filling beside it (:mod:`._fidelity`)."""
        from em_restore._napari._fidelity import show_stack_map

        self.last_fidelity = show_stack_map(self.viewer, filling, fmap)
        return self.last_fidelity
