"""Burst deblurring of fast image streams: the plan, windows over a stack, lazy application.

A stream from a moving stage is cut into windows of ``frames`` consecutive frames
(``stride`` apart). Each window becomes one restored frame, **registered to the
window's middle frame** (index ``frames // 2`` of the window):

1. registration and alignment onto the middle frame
   (:func:`register_window`, :func:`align_window`), in :mod:`em_restore.backend.register`;
2. fusion of the aligned window, by ``method``:

   * ``"mean"``, ``"classical"`` (multi-frame Wiener with the registration's motion
     kernels), ``"fba"`` (Fourier burst accumulation): :mod:`em_restore.backend.fuse`;
   * ``"network"``: a burst network (:class:`~.models.nets.BurstDenseUNet`): copies
     of one shared-weight Dense U-Net, one per frame, exchanging information by
     max pooling across frames after every block, so the result does not depend on
     the frames' order and any number of frames works. Input: each aligned frame,
     its mask and its stage velocity, normalised with the middle frame's
     percentiles; output: the sharp middle frame (residual over the masked mean)
     (:func:`em_restore.backend.models.burst.predict_burst`).

:class:`BurstPlan` records the choices (method, window, stride, model name and
hash); :func:`iter_burst` runs a whole stack as a generator of
:class:`~.denoise.Progress` (cancel between yields); :func:`burst_lazy` builds a
dask array computing each output frame on demand. A stack larger than memory is
streamed in two passes: :func:`registrations_lazy` registers every window (small
result, recorded in the output's metadata), then :func:`burst_lazy` with those
shifts fuses and writes one frame at a time.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._args import check_choice, check_int, check_real
from ._progress import Progress, drain
from .fuse import fuse_fba, fuse_mean, fuse_wiener, motion_kernels, window_velocity
from .register import (  # noqa: F401  (the constants are public names here since before the split)
    COARSE_SIGMA,
    FAST_SIDE,
    FAST_SIGMA,
    FAST_TAPER,
    FAST_UPSAMPLE,
    FINE_SIGMA,
    GLOBAL_SIDE,
    LOCAL_RADIUS,
    MIN_OVERLAP,
    AlignedWindow,
    FrameSpectrum,
    align_window,
    phase_shift,
    register_fast,
    register_window,
)

__all__ = [
    "METHODS",
    "MIN_FRAME_SIDE",
    "AlignedWindow",
    "BurstPlan",
    "FrameSpectrum",
    "align_window",
    "burst",
    "burst_lazy",
    "check_stack",
    "fidelity_forwards",
    "fuse_fba",
    "fuse_mean",
    "fuse_wiener",
    "iter_burst",
    "motion_kernels",
    "output_centres",
    "phase_shift",
    "plan_burst",
    "register_fast",
    "register_window",
    "registrations_lazy",
    "window_velocity",
]

METHODS = ("network", "classical", "fba", "mean")
DEFAULT_FRAMES = 5


# --------------------------------------------------------------------------- plan
def output_centres(n_frames: int, frames: int, stride: int) -> list[int]:
    """Indices of the input frames the outputs are registered to (window middles).

    Examples
    --------
    >>> output_centres(10, 5, 1)
    [2, 3, 4, 5, 6, 7]
    >>> output_centres(10, 4, 3)
    [2, 5, 8]
    """
    return [s + frames // 2 for s in range(0, n_frames - frames + 1, stride)]


def fidelity_forwards(shifts, exposure: float) -> list:
    """What each output is checked against: its window's middle raw frame, blurred as
    that frame was by the stage motion the registration measured. One callable per
    output window (``shifts``: that window's frame shifts), mapping the restored frame
    to the raw frame's expectation.

    Examples
    --------
    >>> f = fidelity_forwards([np.zeros((3, 2))], exposure=1.0)
    >>> len(f), float(f[0](np.ones((8, 8))).mean())
    (1, 1.0)
    """
    from .psf import convolve

    kernels = [motion_kernels(np.asarray(s), exposure)[len(s) // 2] for s in shifts]
    return [lambda x, k=k: convolve(x, k) for k in kernels]


@dataclass
class BurstPlan:
    """How a stream is restored: method, window, stride and (network) the model.

    Build with :func:`plan_burst`. :meth:`to_metadata` gives the JSON record for a
    result (with the model's name and weights hash).
    """

    method: str = "network"
    frames: int = DEFAULT_FRAMES
    stride: int = 1
    model: Any = None  # LoadedModel for "network"
    fba_p: float = 11.0
    exposure: float = 1.0
    tile: int = 512
    overlap: int = 64
    extra: dict = field(default_factory=dict)

    def fuse(self, aligned: AlignedWindow) -> np.ndarray:
        """One restored frame (float32) from an aligned window."""
        if self.method == "mean":
            out = fuse_mean(aligned)
        elif self.method == "classical":
            out = fuse_wiener(aligned, exposure=self.exposure)
        elif self.method == "fba":
            out = fuse_fba(aligned, p=self.fba_p)
        else:
            from .models.burst import predict_burst

            out = predict_burst(self.model, aligned, tile=self.tile, overlap=self.overlap)
        return np.asarray(out, dtype=np.float32)

    def restore_window(self, frames) -> tuple[np.ndarray, np.ndarray]:
        """Register, align and fuse one window: ``(restored frame, shifts)``."""
        aligned = align_window(frames)
        return self.fuse(aligned), aligned.shifts

    def to_metadata(self) -> dict:
        from em_restore import __version__

        meta = {
            "method": self.method,
            "frames": self.frames,
            "stride": self.stride,
            "registration": "translation: masked NCC + Gauss-Newton, to each window's middle",
            "em_restore_version": __version__,
        }
        if self.method == "classical":
            meta["fusion"] = {"name": "multi_frame_wiener", "exposure": self.exposure}
        if self.method == "fba":
            meta["fusion"] = {"name": "fourier_burst_accumulation", "p": self.fba_p}
        if self.method == "network":
            meta["model"] = self.model.to_metadata()
            meta["device"] = str(self.model.device)
            meta["tile"], meta["overlap"] = self.tile, self.overlap
        meta.update(self.extra)
        return meta


def plan_burst(
    method: str = "network",
    *,
    frames: int = DEFAULT_FRAMES,
    stride: int = 1,
    model=None,
    device=None,
    fba_p: float = 11.0,
    exposure: float = 1.0,
) -> BurstPlan:
    """Check the choices and load the model (``method="network"``).

    ``model``: a registered name or folder of a burst model; default the bundled
    ``em-burst``. ``exposure``: the fraction of the frame period the detector
    integrates (``"classical"``). Raises ``ValueError`` (one line, with the fix) on
    bad input.
    """
    method = check_choice(method, "method", METHODS)
    frames = check_int(frames, "frames", low=2)
    stride = check_int(stride, "stride", low=1)
    loaded = None
    if method == "network":
        from .models.burst import DEFAULT_BURST_MODEL
        from .models.store import ModelError, load_model

        loaded = load_model(model or DEFAULT_BURST_MODEL, device=device)
        if loaded.config.task != "burst":
            raise ModelError(
                f"model {loaded.name!r} is a {loaded.config.task} model, not a burst model; "
                "pick one listed by `em-restore models --task burst`."
            )
    elif model is not None:
        raise ValueError(f"model is only used with method='network'; got method={method!r}.")
    fba_p = check_real(fba_p, "fba_p", low=0)
    exposure = check_real(exposure, "exposure", low=0, high=1, low_open=True)
    return BurstPlan(method, frames, stride, loaded, fba_p, exposure)


#: Smallest frame side the registration accepts (pixels).
MIN_FRAME_SIDE = 16


def check_stack(stack, frames: int) -> tuple[int, int, int]:
    """The ``(T, rows, cols)`` shape of a stream (an array or its shape) that windows of
    ``frames`` frames can restore; a one-line ``ValueError`` naming the fix otherwise.
    Reads no pixels."""
    shape = tuple(int(s) for s in getattr(stack, "shape", stack))
    if len(shape) != 3:
        hint = " (a single frame)" if len(shape) == 2 else ""
        raise ValueError(
            f"burst needs a (T, rows, cols) stack of stream frames; got shape {shape}{hint}. "
            "Open the whole stream as one stack."
        )
    t = shape[0]
    if t < 2:
        raise ValueError(
            f"burst needs at least 2 frames; the stack has {t}. Open the whole stream, "
            "not a single frame."
        )
    if frames > t:
        raise ValueError(
            f"a window of {frames} frames is longer than the stack, which has only {t} "
            f"frames; use frames <= {t}."
        )
    if min(shape[1:]) < MIN_FRAME_SIDE:
        raise ValueError(
            f"frames must be at least {MIN_FRAME_SIDE}×{MIN_FRAME_SIDE} pixels; got {shape[1:]}. "
            "Select a larger region of the stream."
        )
    return shape  # type: ignore[return-value]


def iter_burst(stack, plan: BurstPlan) -> Generator[Progress, None, tuple[np.ndarray, dict]]:
    """Restore a stream window by window; yields Progress, returns ``(out, info)``.

    ``out`` is ``(n_out, rows, cols)`` float32, output ``i`` registered to input
    frame ``info["centres"][i]``; ``info["shifts"]`` lists each window's
    registration (``(frames, 2)`` lists). ``stack`` may be numpy or dask (read one
    window at a time); it is never modified.
    """
    t, h, w = check_stack(stack, plan.frames)
    centres = output_centres(t, plan.frames, plan.stride)
    out = np.empty((len(centres), h, w), dtype=np.float32)
    shifts = []
    yield Progress(0, len(centres), f"burst ({plan.method}, {plan.frames} frames)")
    for i, c in enumerate(centres):
        start = c - plan.frames // 2
        window = stack[start : start + plan.frames]
        out[i], s = plan.restore_window(window)
        shifts.append(np.round(s, 4).tolist())
        yield Progress(i + 1, len(centres), f"window {i + 1}/{len(centres)} (frame {c})")
    return out, {"centres": centres, "shifts": shifts}


def burst(stack, method: str = "network", **kw) -> tuple[np.ndarray, dict]:
    """:func:`iter_burst` with a fresh :func:`plan_burst` (keywords go to it).

    Returns ``(out, metadata)``: the restored frames and the plan's record with the
    centres and shifts.
    """
    plan = plan_burst(method, **kw)
    out, info = drain(iter_burst(stack, plan))
    return out, {**plan.to_metadata(), **info}


def _window_starts(stack, plan: BurstPlan) -> tuple[tuple[int, int, int], list[int], list[int]]:
    shape = check_stack(stack, plan.frames)
    centres = output_centres(shape[0], plan.frames, plan.stride)
    return shape, centres, [c - plan.frames // 2 for c in centres]


def registrations_lazy(stack, plan: BurstPlan):
    """A dask array ``(n_out, frames, 2)`` of every window's registration shifts.

    The first pass of a streamed burst: each chunk reads one window and registers
    it (:func:`register_window`). Computing it holds only the windows in flight;
    the result is small (16 bytes per frame per window), so it can go into the
    output's metadata *before* the frames are written, and :func:`burst_lazy`
    reuses it instead of registering again.
    """
    import dask
    import dask.array as da

    _, _, starts = _window_starts(stack, plan)

    def one(window) -> np.ndarray:
        return register_window(np.asarray(window))[None]

    parts = [
        da.from_delayed(
            dask.delayed(one)(stack[s : s + plan.frames]),
            shape=(1, plan.frames, 2),
            dtype=np.float64,
        )
        for s in starts
    ]
    return da.concatenate(parts, axis=0)


def burst_lazy(stack, plan: BurstPlan, shifts=None):
    """A dask array of the restored stream, one output frame per chunk, computed on demand.

    Nothing is computed here; each chunk reads only its own window of ``stack``.
    ``shifts``: the windows' registrations, ``(n_out, frames, 2)`` (from
    :func:`registrations_lazy`); without them each chunk registers its window
    itself. The same shifts give the same frames as :func:`iter_burst`.
    """
    import dask
    import dask.array as da

    (_, h, w), centres, starts = _window_starts(stack, plan)
    if shifts is not None:
        shifts = np.asarray(shifts, dtype=np.float64)
        if shifts.shape != (len(centres), plan.frames, 2):
            raise ValueError(
                f"shifts must have shape {(len(centres), plan.frames, 2)} (one registration "
                f"per window); got {shifts.shape}. Compute them with registrations_lazy."
            )

    def one(window, s) -> np.ndarray:
        aligned = align_window(np.asarray(window), s)
        return plan.fuse(aligned)[None]

    parts = [
        da.from_delayed(
            dask.delayed(one)(stack[s : s + plan.frames], None if shifts is None else shifts[i]),
            shape=(1, h, w),
            dtype=np.float32,
        )
        for i, s in enumerate(starts)
    ]
    return da.concatenate(parts, axis=0)
