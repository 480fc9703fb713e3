"""Live restoration: frames restored while the acquisition is recorded.

A **source** (:mod:`.live_sources`: a folder, a growing stack, an iterator, the
synthetic microscope) is read by a reader thread into a bounded queue; the
pipeline :func:`iter_live` is a generator that takes frames from it, restores each
one and yields a :class:`LiveRecord` per restored frame (the CLI, the widget and
the tests drive the same generator; closing it stops the reader and the source).

* **Restorers** (:class:`DenoiseRestorer`, :class:`BurstRestorer`) take one frame
  at a time (``push``) and return its restoration, or ``None`` while a burst
  window is still filling.
* **Denoise**: any :class:`~.denoise.DenoisePlan` or model plan's ``apply_frame``
  (the fast network by default: :func:`plan_live`, on the GPU when there is one).
* **Burst**: each new frame is registered once, to the previous one
  (:func:`~.burst.phase_shift`), its position is the running sum of those steps,
  and the last ``frames`` frames are kept in a ring with their positions and their
  Fourier transforms (each frame transformed once, on arrival). An output is the
  window's middle frame restored from the whole window: shifts to the middle from
  the positions, alignment as a phase ramp in Fourier space, then the registered
  mean or the multi-frame Wiener fusion of :func:`~.burst.fuse_wiener` (motion
  kernels from the registered stage velocity, their OTFs written in closed form).
  Frames are extended periodically (:func:`~.deconvolve.periodic_pad`) before the
  transform, so a shifted frame brings in its own mirrored border where the file
  path (:func:`~.burst.align_window`) puts the reference's pixels: outside the
  window's common area (a band as wide as the motion across the window) the two
  differ.
* **Back-pressure** (``policy``): ``"queue"`` blocks the reader when the queue is
  full (frames wait at the source: files on disk, a paced source falls behind and
  its latency grows); ``"drop"`` discards the *oldest* queued frame for the newest
  and counts it. Memory is the queue (``queue_size`` frames) plus the burst ring.
* **Latency** of an output: from the arrival of the newest frame it uses (its
  ``t_arrival``) to the moment it is restored.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft as sfft

from ._args import check_choice, check_int, check_real
from .live_sources import Frame

__all__ = [
    "LIVE_BURST_METHODS",
    "POLICIES",
    "BurstRestorer",
    "DenoiseRestorer",
    "FrameQueue",
    "LiveRecord",
    "LiveSummary",
    "LiveZarr",
    "iter_live",
    "plan_live",
    "summarise",
]

POLICIES = ("queue", "drop")
LIVE_BURST_METHODS = ("classical", "mean")
DEFAULT_QUEUE = 8
BURST_MARGIN = 32  # px of periodic padding: motion blur + shifts of a window
BALANCE_EVERY = 16  # outputs between two estimates of the Wiener balance (noise is steady)


# --------------------------------------------------------------------------- restorers
class DenoiseRestorer:
    """One frame in, its denoised frame out, with any plan that has ``apply_frame``."""

    delay = 0  # outputs lag the input by this many frames
    independent = True  # frames may be restored concurrently (iter_live workers)

    def __init__(self, plan: Any) -> None:
        self.plan = plan

    def push(self, frame: np.ndarray) -> np.ndarray:
        return np.asarray(self.plan.apply_frame(frame), dtype=np.float32)

    def to_metadata(self) -> dict:
        return {"mode": "denoise", **self.plan.to_metadata()}


def _tent_otf(shape: tuple[int, int]) -> np.ndarray:
    # path_psf splats its points bilinearly: a tent per axis, sinc² in Fourier.
    fy = sfft.fftfreq(shape[0])[:, None]
    fx = sfft.rfftfreq(shape[1])[None, :]
    return (np.sinc(fy) ** 2) * (np.sinc(fx) ** 2)


class BurstRestorer:
    """Burst fusion of a stream, each frame registered and transformed once.

    ``push(frame)`` returns the restoration of the frame ``frames // 2`` before
    the newest (the window's middle), or ``None`` until the first window is full.
    The registration of the window (shifts to its middle, ``(frames, 2)``) of the
    last output is in :attr:`last_shifts`.
    """

    def __init__(self, frames: int = 5, method: str = "classical", exposure: float = 1.0) -> None:
        self.frames = check_int(frames, "frames", low=2)
        self.method = check_choice(method, "method", LIVE_BURST_METHODS)
        self.exposure = check_real(exposure, "exposure", low=0, high=1, low_open=True)
        self.delay = self.frames // 2
        self._ring: deque = deque(maxlen=self.frames)  # (position, padded spectrum)
        self._last = None  # FrameSpectrum of the previous frame
        self._position = np.zeros(2)
        self._shape: tuple[int, int] | None = None
        self._cache: dict = {}
        self._balance: tuple[int, float] | None = None  # (outputs since, value)
        self.last_shifts: np.ndarray | None = None

    def _grids(self, shape: tuple[int, int]) -> dict:
        if self._cache.get("shape") != shape:
            fy = sfft.fftfreq(shape[0]).astype(np.float32)
            fx = sfft.rfftfreq(shape[1]).astype(np.float32)
            lap = np.zeros(shape)
            lap[0, 0] = 4.0
            lap[0, 1] = lap[1, 0] = lap[0, -1] = lap[-1, 0] = -1.0
            self._cache = {
                "shape": shape,
                "fy": fy,
                "fx": fx,
                "tent": _tent_otf(shape).astype(np.float32),
                "lap2": (np.abs(sfft.rfft2(lap)) ** 2).astype(np.float32),
            }
        return self._cache

    def push(self, frame: np.ndarray) -> np.ndarray | None:
        from .register import FrameSpectrum, phase_shift
        from .solvers import periodic_pad

        x = np.asarray(frame, dtype=np.float64)
        if self._shape is not None and x.shape != self._shape:
            raise ValueError(
                f"live frame of shape {x.shape} after frames of {self._shape}; a stream keeps "
                "one frame size (start a new run for the new size)."
            )
        self._shape = x.shape
        spec = FrameSpectrum(x)
        if self._last is not None:
            self._position = self._position + phase_shift(self._last, spec)
        self._last = spec
        padded = periodic_pad(x, BURST_MARGIN).astype(np.float32)
        self._ring.append((self._position.copy(), sfft.rfft2(padded)))  # complex64
        if len(self._ring) < self.frames:
            return None
        return self._fuse()

    def _fuse(self) -> np.ndarray:
        from .fuse import window_velocity

        g = self._grids((*self._ring[0][1].shape[:1], self._shape[1] + 2 * BURST_MARGIN))
        positions = np.array([p for p, _ in self._ring])
        ref = self.frames // 2
        shifts = positions - positions[ref]
        self.last_shifts = shifts
        t = self.frames
        aligned = []
        for (_, f), s in zip(self._ring, shifts, strict=True):
            ramp_y = np.exp(-2j * np.pi * g["fy"] * np.float32(s[0]))
            ramp_x = np.exp(-2j * np.pi * g["fx"] * np.float32(s[1]))
            aligned.append(f * ramp_y[:, None] * ramp_x[None, :])
        shape = g["shape"]
        m = BURST_MARGIN
        if self.method == "mean":
            return sfft.irfft2(sum(aligned) / t, s=shape)[m:-m, m:-m]
        num = np.zeros_like(aligned[0])
        den = (t * self._wiener_balance(aligned, shape)) * g["lap2"]
        for a, v in zip(aligned, window_velocity(shifts), strict=True):
            d = (self.exposure * v).astype(np.float32)
            otf = np.sinc(g["fy"][:, None] * d[0] + g["fx"][None, :] * d[1]) * g["tent"]
            num += otf * a
            den += otf * otf
        return sfft.irfft2(num / den, s=shape)[m:-m, m:-m]

    def _wiener_balance(self, aligned: list, shape: tuple[int, int]) -> float:
        """:func:`~.deconvolve.auto_balance` of the registered mean, as
        :func:`~.burst.fuse_wiener`; re-estimated every :data:`BALANCE_EVERY` outputs
        (41 ms at 1024²; the dose of a stream changes slowly)."""
        from .solvers import auto_balance

        if self._balance is None or self._balance[0] >= BALANCE_EVERY:
            m = BURST_MARGIN
            mean = sfft.irfft2(sum(aligned) / len(aligned), s=shape)[m:-m, m:-m]
            self._balance = (0, auto_balance(mean))
        since, value = self._balance
        self._balance = (since + 1, value)
        return value

    def to_metadata(self) -> dict:
        from em_restore import __version__

        meta = {
            "mode": "burst",
            "method": self.method,
            "frames": self.frames,
            "registration": "FFT cross-correlation to the previous frame, chained "
            "(burst.phase_shift)",
            "alignment": "Fourier phase ramp, periodic padding",
            "em_restore_version": __version__,
        }
        if self.method == "classical":
            meta["fusion"] = {"name": "multi_frame_wiener", "exposure": self.exposure}
        return meta


def plan_live(
    mode: str = "denoise",
    *,
    method: str | None = None,
    frames: int = 5,
    model=None,
    device=None,
    exposure: float = 1.0,
    tile: int | None = None,
):
    """A restorer for :func:`iter_live`; the one place live defaults are set.

    ``mode="denoise"``: ``method`` ``"network"`` (default: the bundled model for
    TEM, ``model`` to choose another, on ``device`` — CUDA when present) or a
    classical filter name of :func:`~.denoise.plan_denoise` (planned on the first
    frame). ``mode="burst"``: ``method`` ``"classical"`` (default) or ``"mean"``
    over ``frames`` frames.
    """
    mode = check_choice(mode, "mode", ("denoise", "burst"))
    if mode == "burst":
        return BurstRestorer(frames, method or "classical", exposure)
    if method in (None, "network"):
        from .models.inference import DEFAULT_TILE, plan_model

        # live restoration is in-situ TEM: the TEM default unless a model is named
        plan = plan_model(model, modality="tem", device=device, tile=tile or DEFAULT_TILE)
        return DenoiseRestorer(plan)
    return _FirstFramePlan(method)


class _FirstFramePlan(DenoiseRestorer):
    """A classical denoise plan made on the first frame, applied to every frame."""

    def __init__(self, method: str) -> None:
        super().__init__(None)
        self.method = method
        self._planning = threading.Lock()  # two workers' first frames plan once

    def push(self, frame: np.ndarray) -> np.ndarray:
        from .denoise import apply_plan, plan_denoise

        x = np.asarray(frame, dtype=np.float64)
        with self._planning:
            if self.plan is None:
                self.plan = plan_denoise(x, self.method)
        return np.asarray(apply_plan(x, self.plan), dtype=np.float32)

    def to_metadata(self) -> dict:
        if self.plan is None:
            return {"mode": "denoise", "method": self.method}
        return super().to_metadata()


# --------------------------------------------------------------------------- queue
class FrameQueue:
    """Bounded frame queue between the reader thread and the pipeline.

    ``policy="queue"``: :meth:`put` waits while full. ``"drop"``: it discards the
    oldest queued frame and counts it in :attr:`dropped`. :attr:`peak` is the most
    frames it ever held (never more than ``size``).
    """

    def __init__(self, size: int = DEFAULT_QUEUE, policy: str = "queue") -> None:
        self.size = check_int(size, "queue_size", low=1)
        self.policy = check_choice(policy, "policy", POLICIES)
        self._items: deque = deque()
        self._cond = threading.Condition()
        self.dropped = 0
        self.dropped_indices: list[int] = []
        self.peak = 0
        self.ended = False
        self.error: BaseException | None = None
        self._closed = False

    def put(self, item: Frame) -> bool:
        """Add a frame; False if the queue was closed (the reader should stop)."""
        with self._cond:
            while self.policy == "queue" and len(self._items) >= self.size and not self._closed:
                self._cond.wait(0.1)
            if self._closed:
                return False
            if len(self._items) >= self.size:
                old = self._items.popleft()
                self.dropped += 1
                if len(self.dropped_indices) < 10_000:
                    self.dropped_indices.append(old.index)
            self._items.append(item)
            self.peak = max(self.peak, len(self._items))
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> Frame | None:
        """The oldest frame, or None after ``timeout`` s or once the source has ended."""
        with self._cond:
            if not self._items and not self.ended:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def __len__(self) -> int:
        return len(self._items)

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self.ended, self.error = True, error
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()


# --------------------------------------------------------------------------- pipeline
@dataclass(frozen=True)
class LiveRecord:
    """One restored frame. ``index``: the input frame it shows (a burst's window middle)."""

    index: int
    newest: int  # the newest input frame used
    raw: np.ndarray = field(repr=False)
    restored: np.ndarray = field(repr=False)
    latency_s: float
    dropped: int  # frames dropped so far
    queued: int  # frames waiting after this one was taken
    done: int  # outputs so far, this one included
    elapsed_s: float  # since the first output
    restore_s: float = 0.0  # time in the restorer for this frame

    @property
    def fps(self) -> float:
        """Sustained output rate: outputs after the first per second since the first."""
        return (self.done - 1) / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class LiveSummary:
    frames_in: int
    frames_out: int
    dropped: int
    fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    peak_queue: int
    stopped: str  # "source ended", "stop-after", "idle timeout", "closed"

    def line(self) -> str:
        return (
            f"live: {self.frames_out} frames done ({self.frames_in} in, {self.dropped} dropped), "
            f"{self.fps:.1f} fps, latency p50 {self.latency_p50_ms:.0f} ms "
            f"p95 {self.latency_p95_ms:.0f} ms ({self.stopped})"
        )


def _reader(source, queue: FrameQueue) -> None:
    try:
        for item in source:
            if not queue.put(item):
                break
    except BaseException as exc:  # reported by the pipeline
        queue.finish(exc)
        return
    queue.finish()


def summarise(latencies, frames_in, frames_out, dropped, elapsed, peak, stopped) -> LiveSummary:
    """The run's figures; ``elapsed``: seconds from the first output to the last."""
    lat = np.asarray(latencies, dtype=np.float64) * 1e3
    p50, p95 = (float(np.percentile(lat, q)) if lat.size else 0.0 for q in (50, 95))
    fps = (frames_out - 1) / elapsed if elapsed > 0 else 0.0
    return LiveSummary(frames_in, frames_out, dropped, fps, p50, p95, peak, stopped)


class _Ready:
    """A result computed in the pipeline's own thread, shaped like a future."""

    def __init__(self, value) -> None:
        self.value = value

    def done(self) -> bool:
        return True

    def result(self):
        return self.value


def iter_live(
    source,
    restorer,
    *,
    policy: str = "queue",
    queue_size: int = DEFAULT_QUEUE,
    stop_after: int | None = None,
    idle_timeout: float | None = None,
    workers: int = 1,
) -> Generator[LiveRecord, None, LiveSummary]:
    """Restore frames as they arrive; yields a :class:`LiveRecord` each, returns a summary.

    Stops when the source ends, after ``stop_after`` outputs, after ``idle_timeout``
    seconds without a new frame, or when the generator is closed (``close()``, a
    cancel); the source is closed and the reader thread joined in every case. The
    latencies of the whole run are kept (8 bytes a frame); frames are not.

    ``workers > 1`` restores that many frames at once in a thread pool (outputs stay
    in order; frames in flight count towards memory). Only for restorers whose
    frames are independent (denoise, ``restorer.independent``): on a 2-core CPU two
    workers with one torch thread each beat one worker with two, whose threads
    contend with the reader's.
    """
    queue = FrameQueue(queue_size, policy)
    if stop_after is not None:
        stop_after = check_int(stop_after, "stop_after", low=1)
    if idle_timeout is not None:
        idle_timeout = check_real(idle_timeout, "idle_timeout", low=0, low_open=True)
    workers = check_int(workers, "workers", low=1)
    if workers > 1 and not getattr(restorer, "independent", False):
        raise ValueError(
            f"workers={workers} needs frames restored independently; a burst restorer chains "
            "its frames: use workers=1."
        )
    pool = None
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(workers, thread_name_prefix="live-restore")
    thread = threading.Thread(target=_reader, args=(source, queue), daemon=True, name="live-in")
    raws: deque = deque(maxlen=getattr(restorer, "delay", 0) + 1)
    inflight: deque = deque()  # (newest item, shown item, future, t_push), in input order
    latencies: list[float] = []
    frames_in = done = 0
    t_first = t_last = None  # first and last output
    stopped = None
    last_arrival = time.monotonic()
    thread.start()
    try:
        while stopped is None or inflight:
            ending = stopped is not None
            while inflight and (ending or inflight[0][2].done() or len(inflight) >= workers):
                item, shown, future, t_push = inflight.popleft()
                out = future.result()
                if out is None:
                    continue  # a burst window still filling
                t_done = t_last = time.monotonic()
                t_first = t_done if t_first is None else t_first
                latencies.append(t_done - item.t_arrival)
                done += 1
                yield LiveRecord(
                    shown.index,
                    item.index,
                    np.asarray(shown.frame),
                    out,
                    t_done - item.t_arrival,
                    queue.dropped,
                    len(queue),
                    done,
                    t_done - t_first,
                    t_done - t_push,
                )
                if stop_after is not None and done >= stop_after:
                    stopped = "stop-after"
                    if pool is not None:
                        for rest in inflight:
                            rest[2].cancel()
                    inflight.clear()
                    break
            if stopped is not None:
                continue
            item = queue.get(timeout=0.005 if inflight else 0.05)
            now = time.monotonic()
            if item is None:
                if queue.ended:
                    if queue.error is not None:
                        raise queue.error
                    stopped = "source ended"
                elif idle_timeout is not None and now - last_arrival > idle_timeout:
                    stopped = "idle timeout"
                continue
            last_arrival = now
            frames_in += 1
            raws.append(item)
            t_push = time.monotonic()
            if pool is None:
                future = _Ready(restorer.push(item.frame))
            else:
                future = pool.submit(restorer.push, item.frame)
            inflight.append((item, raws[0], future, t_push))
    finally:
        source.close()
        queue.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        thread.join(timeout=5.0)
    elapsed = t_last - t_first if t_first is not None else 0.0
    return summarise(latencies, frames_in, done, queue.dropped, elapsed, queue.peak, stopped)


# --------------------------------------------------------------------------- output
class LiveZarr:
    """A zarr store the live output is appended to, frame by frame, readable all along.

    Layout of :func:`em_restore.io.write_zarr` (group, array ``"0"``, axes ``tyx``,
    one frame per chunk) with a **resizable first axis**: each frame grows the array
    by one and writes its chunk, so a reader (``io.read``) sees every frame done so
    far, and a run stopped at any point (Ctrl-C, stop) leaves a complete store.
    ``status`` in the metadata is ``running`` until :meth:`close` sets it to
    ``complete`` with the run's summary.
    """

    def __init__(self, path, frame_shape, *, metadata: dict | None = None, overwrite=False):
        import shutil

        import zarr

        from em_restore.io._image import jsonable

        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(
                    f"'{self.path}' already exists; choose another name or pass overwrite=True "
                    "to replace it"
                )
            shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
        h, w = (int(s) for s in frame_shape)
        self.group = zarr.open_group(str(self.path), mode="w", zarr_format=3)
        self._meta = jsonable(metadata or {})
        self._attrs("running")
        self.array = self.group.create_array(
            "0",
            shape=(0, h, w),
            chunks=(1, h, w),
            dtype=np.float32,
            dimension_names=["t", "y", "x"],
        )
        self.frames = 0
        self.indices: list[int] = []

    def _attrs(self, status: str, extra: dict | None = None) -> None:
        self.group.attrs["em_restore"] = {
            "version": 1,
            "axes": "tyx",
            "scale": [1.0, 1.0, 1.0],
            "units": ["frame", "pixel", "pixel"],
            "original_pixel_size": [1.0, 1.0],
            "original_unit": "pixel",
            "metadata": {**self._meta, "status": status, **(extra or {})},
        }

    def append(self, frame: np.ndarray, index: int | None = None) -> None:
        n = self.frames
        self.array.resize((n + 1, *self.array.shape[1:]))
        self.array[n] = np.asarray(frame, dtype=np.float32)
        self.frames = n + 1
        self.indices.append(n if index is None else int(index))

    def close(self, summary: LiveSummary | None = None) -> None:
        extra = {"frames_done": self.frames, "input_frames": self.indices}
        if summary is not None:
            extra["live"] = {
                k: getattr(summary, k)
                for k in ("frames_in", "dropped", "fps", "latency_p50_ms", "latency_p95_ms")
            }
            extra["live"]["stopped"] = summary.stopped
        self._attrs("complete", extra)
