"""Stack results shown while they are computed: a layer that fills frame by frame.

A widget restoring a stack builds the result lazily (``denoise_lazy``,
``ModelPlan.lazy``, ``deconvolve_lazy``, ``burst_lazy``) and hands it to
:class:`Filling`. In the worker, :meth:`Filling.run` computes a few frames at a
time (as many as there are CPU cores) and writes them into a scratch zarr store
on disk; the result layer shows that store from the start, so it fills as frames
finish while the raw stack is never loaded whole and the memory stays that of a
few frames. Frames not computed yet are NaN (napari draws them empty).

The layer's ``metadata["em_restore"]["status"]`` says what it holds: ``"running"``,
``"complete"``, or ``"partial"`` after a cancel or an error (then the name ends
in ``(partial k/n)`` and ``frames_done`` lists the frames that are real).

The scratch stores live in :func:`scratch_dir` (``$EM_RESTORE_SCRATCH``, else the
system temporary folder); a store is deleted when its layer is removed from the
viewer and all of them when napari exits. Save a layer (File > Save Selected
Layers) to keep it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_SCRATCH: Path | None = None
_LOCK = threading.Lock()


def scratch_dir() -> Path:
    """This session's folder for result stores (made on first use, removed at exit)."""
    global _SCRATCH
    with _LOCK:
        if _SCRATCH is None or not _SCRATCH.exists():
            base = os.environ.get("EM_RESTORE_SCRATCH") or None
            if base is not None:
                Path(base).mkdir(parents=True, exist_ok=True)
            _SCRATCH = Path(tempfile.mkdtemp(prefix="em-restore-", dir=base))
            atexit.register(shutil.rmtree, _SCRATCH, True)
        return _SCRATCH


@dataclass
class Streaming:
    """Yielded by a worker once its result store exists: on the main thread the
    widget calls ``show(filling)``, which adds the layer showing ``filling.array``."""

    filling: Filling
    show: Callable[[Filling], Any]


@dataclass
class FramesDone:
    """Progress of a :class:`Filling`: ``done`` of ``total`` frames are in the store."""

    done: int
    total: int
    message: str


def iter_batches(lazy: Any, lead: tuple[int, ...], batch: int) -> Iterator[tuple[range, list]]:
    """``(flat indices, frames)`` of a lazy stack, ``batch`` frames computed at a time
    (in parallel on dask's threads)."""
    import dask

    total = int(np.prod(lead))
    for start in range(0, total, batch):
        flat = range(start, min(start + batch, total))
        with dask.config.set(scheduler="threads"):
            frames = dask.compute(*(lazy[np.unravel_index(i, lead)] for i in flat))
        yield flat, list(frames)


def default_batch() -> int:
    return max(1, os.cpu_count() or 1)


class Filling:
    """A lazy result stack being computed into a scratch zarr store, frame by frame.

    ``lazy``: a dask array whose chunks are single frames along the leading axes.
    The store has the same shape and dtype; :attr:`array` is what the layer shows.
    """

    def __init__(self, lazy: Any, *, batch: int | None = None) -> None:
        import zarr

        if lazy.ndim < 3:
            raise ValueError(f"a filling result is a stack; got shape {lazy.shape}")
        self.lazy = lazy
        self.lead = tuple(int(n) for n in lazy.shape[:-2])
        self.total = int(np.prod(self.lead))
        self.batch = batch or default_batch()
        self.path = scratch_dir() / f"{uuid.uuid4().hex[:12]}.zarr"
        chunks = (1,) * len(self.lead) + tuple(int(n) for n in lazy.shape[-2:])
        fill = np.nan if np.issubdtype(lazy.dtype, np.floating) else 0
        self.array = zarr.create_array(
            store=str(self.path),
            shape=tuple(int(n) for n in lazy.shape),
            chunks=chunks,
            dtype=lazy.dtype,
            fill_value=fill,
        )
        self.frames_done: list[int] = []
        self.layer: Any = None
        self.complete = False
        self._discarded = False

    # ------------------------------------------------------------------ worker side
    def run(self, message: str = "frames") -> Generator[FramesDone, None, None]:
        """Compute and store the frames, a batch at a time (cancel between batches)."""
        yield FramesDone(0, self.total, f"0/{self.total} {message}")
        for flat, frames in iter_batches(self.lazy, self.lead, self.batch):
            if self._discarded:
                break
            for i, frame in zip(flat, frames, strict=True):
                self.array[np.unravel_index(i, self.lead)] = frame
            self.frames_done.extend(flat)
            done = len(self.frames_done)
            yield FramesDone(done, self.total, f"{done}/{self.total} {message}")
        if self._discarded:
            self._remove_store()

    # ------------------------------------------------------------------ main thread
    def attach(self, viewer: Any, layer: Any, on_removed: Callable[[], None]) -> None:
        """Show the store in ``layer``; removing the layer calls ``on_removed`` (the
        widget cancels its job) and deletes the store."""
        self.layer = layer
        self._viewer = viewer
        self._on_removed = on_removed
        self._set_status("running")
        viewer.layers.events.removed.connect(self._layer_removed)

    def refresh(self) -> None:
        if self.layer is not None:
            self._set_status("running")
            self.layer.refresh()

    def mark_complete(self) -> None:
        self.complete = True
        self._set_status("complete")
        if self.layer is not None:
            self.layer.refresh()

    def mark_partial(self) -> None:
        """A cancel or an error: say so in the layer's name and metadata."""
        if self.layer is None or self.complete:
            return
        self._set_status("partial")
        self.layer.name = f"{self.layer.name} (partial {len(self.frames_done)}/{self.total})"
        self.layer.refresh()

    def _set_status(self, status: str) -> None:
        if self.layer is None:
            return
        meta = dict(self.layer.metadata)
        record = dict(meta.get("em_restore", {}))
        record["status"] = status
        record["frames_done"] = len(self.frames_done)
        record["frames_total"] = self.total
        if status == "partial":
            record["frames_computed"] = sorted(self.frames_done)
        else:
            record.pop("frames_computed", None)
        meta["em_restore"] = record
        self.layer.metadata = meta

    def _layer_removed(self, event: Any) -> None:
        if event.value is not self.layer:
            return
        self._viewer.layers.events.removed.disconnect(self._layer_removed)
        self._discarded = True
        self._on_removed()
        if self.complete or self.layer.metadata.get("em_restore", {}).get("status") != "running":
            self._remove_store()

    def discard_if_removed(self) -> None:
        """After the worker stopped: delete the store if its layer was removed meanwhile."""
        if self._discarded:
            self._remove_store()

    def discard_store(self) -> None:
        """Delete the store (a result that was never shown)."""
        self._discarded = True
        self._remove_store()

    def _remove_store(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
