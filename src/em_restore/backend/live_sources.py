"""Frame sources for live restoration: a folder, a growing stack, an iterator, a simulator.

A source is an iterator of :class:`Frame` ``(index, frame, t_arrival)`` with a
``close()`` that makes a waiting iteration end at its next poll. ``t_arrival`` is
``time.monotonic()`` when the frame became available (a file complete on disk, a
simulated frame's scheduled time), so the pipeline's latency counts the time a
frame waited for us. Sources never hold more than the frame they are handing over.

* :class:`FolderSource`: image files appearing in a folder, one frame each, taken
  in name order once complete: a file is read when its size has not changed
  between two polls, and a file that still fails to read (a writer that
  pre-allocates) is retried. Hidden names and temporary suffixes (``.part``,
  ``.partial``, ``.tmp``, ``~``) are ignored, so ``write .part, then rename`` works.
* :class:`StackSource`: a TIFF or MRC stack that grows while it is recorded; new
  frames are read once the file size is stable (the last frame is complete).
* :class:`IteratorSource`: frames from memory (an array, a list, a generator),
  optionally paced at ``fps``.
* :class:`SyntheticSource`: the *synthetic microscope*: a specimen drifting on a
  closed loop, shot noise at a set dose, emitted at ``fps`` (frames precomputed,
  ``pool`` of them, replayed around the loop so a long run costs no simulation).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._args import check_int, check_real

__all__ = [
    "TEMPORARY_SUFFIXES",
    "FolderSource",
    "Frame",
    "IteratorSource",
    "StackSource",
    "SyntheticSource",
    "open_source",
    "parse_synthetic",
]

TEMPORARY_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", "~")
POLL_S = 0.02
STACK_SUFFIXES = (".tif", ".tiff", ".mrc", ".mrcs", ".st")


class Frame(NamedTuple):
    index: int
    frame: np.ndarray
    t_arrival: float


class _Polling:
    """Close flag and interruptible sleep shared by the polling sources."""

    name = "source"

    def __init__(self, poll: float) -> None:
        self.poll = check_real(poll, "poll", low=0, low_open=True)
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _wait(self, seconds: float) -> bool:
        """Sleep; True if closed meanwhile."""
        return self._closed.wait(max(seconds, 0.0))


def _is_temporary(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def _read_frame(path: Path) -> np.ndarray:
    from em_restore import io

    data = np.asarray(io.read(path).data)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ValueError(
            f"live folder file {path.name!r} holds shape {data.shape}; each file must be one "
            "2-D frame (use a stack file as SOURCE for a stack)."
        )
    return data


class FolderSource(_Polling):
    """New image files in ``folder``, one frame each, in name order once complete.

    Parameters
    ----------
    folder : path
    suffixes : tuple of str
        Extensions taken (lower case); default every format ``io.read`` opens.
    poll : float
        Seconds between directory scans.
    existing : bool
        Also take the files already there when the source starts (default True).
    retries : int
        Polls a complete-looking file may fail to read before it is skipped.
    """

    def __init__(
        self,
        folder,
        *,
        suffixes: tuple[str, ...] | None = None,
        poll: float = POLL_S,
        existing: bool = True,
        retries: int = 50,
    ) -> None:
        super().__init__(poll)
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"live source {str(self.folder)!r} is not a folder; create it first.")
        if suffixes is None:
            from em_restore.io import SUPPORTED_EXTENSIONS

            suffixes = tuple(s.lower() for s in SUPPORTED_EXTENSIONS)
        self.suffixes = suffixes
        self.retries = check_int(retries, "retries", low=0)
        self.name = f"folder {self.folder}"
        self._done: set[str] = set() if existing else set(self._candidates())
        self.skipped: list[str] = []

    def _candidates(self) -> list[str]:
        """Names of the image files now in the folder, sorted (no stat: scandir's types)."""
        with os.scandir(self.folder) as entries:
            return sorted(
                e.name
                for e in entries
                if not _is_temporary(e.name)
                and os.path.splitext(e.name)[1].lower() in self.suffixes
                and e.is_file()
            )

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        sizes: dict[str, int] = {}
        failures: dict[str, int] = {}
        while not self.closed:
            ready = []
            names = self._candidates()
            self._done.intersection_update(names)  # forget deleted files: memory stays flat
            for name in names:
                if name in self._done:
                    continue
                p = self.folder / name
                try:
                    size = p.stat().st_size
                except FileNotFoundError:
                    continue
                if size > 0 and sizes.get(name) == size:
                    ready.append(p)
                sizes[name] = size
            for p in ready:  # name order; a later file never overtakes an unread one
                try:
                    frame = _read_frame(p)
                except (ValueError, OSError):
                    failures[p.name] = failures.get(p.name, 0) + 1
                    if failures[p.name] > self.retries:
                        self._done.add(p.name)
                        self.skipped.append(p.name)
                    break
                self._done.add(p.name)
                sizes.pop(p.name, None)
                yield Frame(index, frame, time.monotonic())
                index += 1
                if self.closed:
                    return
            if self._wait(self.poll):
                return


class StackSource(_Polling):
    """Frames of a TIFF or MRC stack that grows while it is recorded.

    The file is re-opened when its size changes; frames beyond those already
    handed over are read once the size has been stable for one poll, so a frame
    being appended is never read half-way.
    """

    def __init__(self, path, *, poll: float = POLL_S) -> None:
        super().__init__(poll)
        self.path = Path(path)
        if self.path.suffix.lower() not in STACK_SUFFIXES:
            raise ValueError(
                f"live stack {str(self.path)!r} has extension {self.path.suffix!r}; a growing "
                f"stack must be one of {', '.join(STACK_SUFFIXES)}."
            )
        self.name = f"stack {self.path}"

    def _open(self):
        from em_restore import io

        data = io.read(self.path).data
        return data if data.ndim == 3 else data[None]

    def __iter__(self) -> Iterator[Frame]:
        seen, last_size, read_at = 0, -1, -1
        while not self.closed:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = -1
            if size > 0 and size == last_size and size != read_at:
                try:
                    data = self._open()
                except (ValueError, OSError):
                    data = None  # mid-write header: retry at the next poll
                if data is not None and data.shape[0] > seen:
                    # A read that found nothing new is retried at the next poll: an MRC
                    # writer may append the frame first and update the header after.
                    read_at = size
                    while seen < data.shape[0]:
                        yield Frame(seen, np.asarray(data[seen]), time.monotonic())
                        seen += 1
                        if self.closed:
                            return
            last_size = size
            if self._wait(self.poll):
                return


class IteratorSource(_Polling):
    """Frames from memory: an array ``(T, rows, cols)``, a list or any iterable of frames.

    ``fps``: emit at this rate (``t_arrival`` is each frame's scheduled time, so a
    slow consumer shows as latency); default as fast as they are taken.
    """

    def __init__(self, frames: Iterable, *, fps: float | None = None) -> None:
        super().__init__(POLL_S)
        self.frames = frames
        self.fps = None if fps is None else check_real(fps, "fps", low=0, low_open=True)
        self.name = "frames in memory"

    def __iter__(self) -> Iterator[Frame]:
        t0 = time.monotonic()
        for i, f in enumerate(self.frames):
            if self.fps is not None:
                due = t0 + i / self.fps
                if self._wait(due - time.monotonic()):
                    return
                t = due
            else:
                t = time.monotonic()
            if self.closed:
                return
            yield Frame(i, np.asarray(f), t)


@dataclass(frozen=True)
class SyntheticSpec:
    """The synthetic microscope's settings (``synthetic:fps=20,size=512,...``)."""

    fps: float = 20.0
    size: int = 512
    frames: int | None = None  # None: until closed
    dose: float = 20.0  # e-/px per frame
    speed: float = 1.5  # px per frame along the loop
    pool: int = 48  # distinct frames around the loop
    seed: int = 0


_SPEC_TYPES = {"fps": float, "size": int, "frames": int, "dose": float, "speed": float}
_SPEC_TYPES.update({"pool": int, "seed": int})


def parse_synthetic(text: str) -> SyntheticSpec:
    """``"synthetic"`` or ``"synthetic:fps=20,size=512"`` -> :class:`SyntheticSpec`.

    Examples
    --------
    >>> parse_synthetic("synthetic:fps=50,size=256").fps
    50.0
    """
    head, _, rest = text.partition(":")
    if head != "synthetic":
        raise ValueError(f"not a synthetic spec: {text!r}; write synthetic[:key=value,...].")
    kw = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in _SPEC_TYPES:
            raise ValueError(
                f"synthetic option {item!r} is not key=value with key in "
                f"{', '.join(_SPEC_TYPES)}; e.g. synthetic:fps=20,size=512."
            )
        try:
            kw[key] = _SPEC_TYPES[key](value)
        except ValueError:
            raise ValueError(
                f"synthetic option {key}={value!r} is not a number; e.g. {key}=20."
            ) from None
    spec = SyntheticSpec(**kw)
    check_real(spec.fps, "fps", low=0, low_open=True)
    check_int(spec.size, "size", low=16)
    check_int(spec.pool, "pool", low=2)
    check_real(spec.dose, "dose", low=0, low_open=True)
    if spec.frames is not None:
        check_int(spec.frames, "frames", low=1)
    return spec


def synthetic_loop(spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    """The loop the synthetic microscope replays: ``(frames float32 (pool, n, n), offsets)``.

    The field of view moves around a circle at ``spec.speed`` px/frame, so frame
    ``pool - 1`` is followed by frame 0 with the same step. ``offsets[k]`` is
    frame ``k``'s position (the registration convention of
    :func:`~em_restore.backend.burst.register_window`: differences of offsets are
    the shifts between frames).
    """
    from . import simulate as sim
    from .spline import Spline

    n, pool = spec.size, spec.pool
    radius = spec.speed / (2 * math.sin(math.pi / pool))  # chord of one step = speed
    pad = math.ceil(radius) + 8
    clean, _ = sim.random_specimen((n + 2 * pad, n + 2 * pad), rng=spec.seed)
    angle = 2 * math.pi * np.arange(pool) / pool
    offsets = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
    spline = Spline(clean)
    gen = np.random.default_rng([spec.seed, 1])
    config = sim.AcquisitionConfig(dose=spec.dose)
    frames = np.empty((pool, n, n), dtype=np.float32)
    for k in range(pool):
        sharp = spline.crop(pad + offsets[k, 0], pad + offsets[k, 1], n, n)
        frames[k] = sim.simulate_acquisition(np.maximum(sharp, 0.0), config, rng=gen)
    return frames, offsets


class SyntheticSource(IteratorSource):
    """The synthetic microscope: :func:`synthetic_loop` replayed at ``spec.fps``."""

    def __init__(self, spec: SyntheticSpec | str = SyntheticSpec()) -> None:
        self.spec = parse_synthetic(spec) if isinstance(spec, str) else spec
        self.loop, self.offsets = synthetic_loop(self.spec)
        super().__init__(self._frames(), fps=self.spec.fps)
        s = self.spec
        self.name = f"synthetic {s.size}² at {s.fps:g} fps, {s.dose:g} e-/px"

    def _frames(self) -> Iterator[np.ndarray]:
        k = 0
        while self.spec.frames is None or k < self.spec.frames:
            yield self.loop[k % self.spec.pool]
            k += 1

    def offset(self, index: int) -> np.ndarray:
        """Position of frame ``index`` (around the loop), for registration checks."""
        return self.offsets[index % self.spec.pool]


def open_source(spec: str, *, poll: float = POLL_S):
    """A source from its text form: a folder, a stack file, or ``synthetic[:k=v,...]``."""
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return SyntheticSource(spec)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path, poll=poll)
    if path.suffix.lower() in STACK_SUFFIXES:
        return StackSource(path, poll=poll)
    raise ValueError(
        f"live SOURCE {spec!r} is not a folder, a .tif/.mrc stack or synthetic[:fps=20,size=512]; "
        "pass one of those (create the folder first)."
    )
