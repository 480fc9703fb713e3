"""Run a backend generator in a napari thread worker, with progress and cancel.

Every long job of the plugin (denoise, deconvolve, burst, train) goes through
:class:`Job`: the backend yields ``Progress(done, total, message)`` events;
the worker forwards them; on the main thread they drive a napari progress bar
(shown in the activity dock) and a status label. ``Job.cancel`` asks the worker
to stop at its next yield. Errors become napari notifications, never crashes.
Workers never touch layers: inputs are resolved before the job starts, and the
result is handed to an ``on_done`` callback on the main thread.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import GeneratorWorker, thread_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info


class Job:
    """One background job: a generator function run in a napari worker."""

    def __init__(
        self,
        name: str,
        work: Callable[[], Generator[Any, None, Any]],
        *,
        on_done: Callable[[Any], None],
        on_status: Callable[[str], None] = lambda _: None,
        on_finished: Callable[[], None] = lambda: None,
        on_event: Callable[[Any], None] = lambda _: None,
        cancel_message: str | Callable[[], str | None] | None = None,
    ) -> None:
        """``cancel_message``: what a cancel tells the user (a callable is asked when the
        worker has stopped); default: ``"<name> cancelled; nothing was added"``.
        ``on_event``: every yielded event, on the main thread, even after a cancel (a
        widget may have to clean up what the event carries)."""
        self.name = name
        self.cancelled = False
        self._settled = False  # a result or an error has arrived: later progress is stale
        self._active = False  # from start() until finished (the pool may start it later)
        self._on_done = on_done
        self._on_status = on_status
        self._on_finished = on_finished
        self._on_event = on_event
        self._cancel_message = cancel_message
        self._pbar: progress | None = None
        # ignore_errors: `_errored` reports the error; superqt would also re-raise it in
        # the Qt event loop (a second, traceback notification in napari).
        self.worker: GeneratorWorker = thread_worker(work, start_thread=False, ignore_errors=True)()
        self.worker.yielded.connect(self._progressed)
        self.worker.returned.connect(self._returned)
        self.worker.errored.connect(self._errored)
        self.worker.finished.connect(self._finished)

    def start(self) -> Job:
        self._pbar = progress(total=0, desc=self.name)
        self._on_status(f"{self.name}: starting")
        self._active = True
        self.worker.start()
        return self

    def cancel(self) -> None:
        """Ask the worker to stop at its next yield; ``on_done`` is not called."""
        self.cancelled = True
        self.worker.quit()

    @property
    def running(self) -> bool:
        """From :meth:`start` until the worker has finished (``worker.is_running`` is False
        until the thread pool actually starts it, which would let a fast cancel or a
        double click slip through)."""
        return self._active

    def _progressed(self, event: Any) -> None:
        try:
            self._on_event(event)
        except Exception as exc:
            show_error(f"{self.name} failed while showing its progress: {exc}")
        if self.cancelled or self._settled or self._pbar is None:
            return  # a progress event still queued behind cancel/result/finish: stale
        done, total = getattr(event, "done", None), getattr(event, "total", None)
        message = getattr(event, "message", "")
        if not total or done is None:
            return
        # Status first: updating the progress bar may process queued events
        # re-entrantly (the result, the end), which must have the last word.
        self._on_status(f"{self.name}: {message} ({done}/{total})")
        pbar = self._pbar
        if pbar.total != total:
            pbar.total = total
            pbar.n = 0
        pbar.set_description(f"{self.name}: {message}")
        pbar.update(max(done - pbar.n, 0))

    def _returned(self, result: Any) -> None:
        self._settled = True
        if self.cancelled:
            return
        try:
            self._on_done(result)
        except Exception as exc:
            show_error(f"{self.name} failed while adding its result: {exc}")
            return
        self._on_status(f"{self.name}: done")

    def _errored(self, exc: BaseException) -> None:
        self._settled = True
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        show_error(f"{self.name} failed: {message}")
        self._on_status(f"{self.name}: failed — {message}")

    def _finished(self) -> None:
        self._active = False
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        if self.cancelled:
            message = self._cancel_message
            if callable(message):
                message = message()
            show_info(message or f"{self.name} cancelled; nothing was added")
            self._on_status(f"{self.name}: cancelled")
        self._on_finished()
