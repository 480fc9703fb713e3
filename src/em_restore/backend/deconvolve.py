"""Deconvolution pipeline: the plan (denoise → kernel → solver), windows, lazy application.

The public facade for the widget, the CLI and scripts (the liquid-cell TEM
two-stage pipeline: *denoise, then estimate the blur kernel and remove it*):

* :func:`plan_deconvolve` / :func:`iter_plan_deconvolve` look at **one** 2-D frame:
  stage 1 denoises it (by default the bundled denoising network,
  :func:`em_restore.backend.models.inference.plan_model`; or the automatic classical
  filters, :func:`em_restore.backend.denoise.iter_plan_denoise`), stage 2 estimates
  the kernel from the denoised frame
  (:func:`iter_estimate_kernel`; or takes a given kernel) and chooses the solver's
  regularisation. The result is a :class:`DeconvPlan`: small, JSON-serialisable
  (:meth:`DeconvPlan.to_metadata`), the kernel(s) included.
* :func:`iter_deconvolve` applies a plan to an image or a stack, frame by frame;
  :func:`deconvolve` does both in one call.
* The solvers are usable alone: :func:`wiener`, :func:`richardson_lucy` /
  :func:`iter_richardson_lucy` (optionally TV-regularised and accelerated),
  :func:`estimate_kernel` / :func:`iter_estimate_kernel`, and :func:`fit_kernel`
  (the kernel measured from a registered sharp reference, no latent image).

Kernels come from :mod:`em_restore.backend.psf` (forward operators, separate from
the solvers); :func:`em_restore.backend.psf.parse_psf` reads the CLI's specs.

The solvers live in :mod:`em_restore.backend.solvers` (with the boundary
handling and Richardson–Lucy's method), the kernel estimation in
:mod:`em_restore.backend.blind` (with its method); this module re-exports them.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import blind as _blind
from . import psf as _psf
from ._args import check_choice, check_int, check_layout, check_real, short
from ._progress import Progress, drain, relay
from .blind import (
    center_kernel,  # noqa: F401  (a public name here before the split)
    default_kernel_size,
    estimate_kernel,
    fit_kernel,
    iter_estimate_kernel,
    kernel_error,
)
from .denoise import DenoisePlan, apply_plan, iter_plan_denoise
from .solvers import (
    DEFAULT_MAX_ITER,
    DEFAULT_TOL,
    DEFAULT_TV,
    MIN_SIDE,
    auto_balance,
    check_frame,
    check_psf,
    fast_pads,
    iter_richardson_lucy,
    periodic_pad,
    richardson_lucy,
    taper_pad,
    wiener,
)

__all__ = [
    "SOLVERS",
    "DeconvPlan",
    "apply_deconv_plan",
    "deconvolve",
    "deconvolve_lazy",
    "estimate_kernel",
    "fit_kernel",
    "iter_apply_deconv_plan",
    "iter_deconvolve",
    "iter_estimate_kernel",
    "iter_plan_deconvolve",
    "iter_richardson_lucy",
    "kernel_error",
    "periodic_pad",
    "plan_deconvolve",
    "richardson_lucy",
    "wiener",
]

SOLVERS = ("rl", "wiener")

# The padding helpers under their former private names (tests/test_deconvolve.py reads them).
_fast_pads, _taper_pad = fast_pads, taper_pad


# --------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class DeconvPlan:
    """Everything needed to deconvolve frames as planned on one frame.

    Attributes
    ----------
    psfs : tuple of ndarray
        One kernel, or one per window (row-major over ``windows``).
    psf_source : str
        ``"blind"`` (estimated), ``"given"`` (an array) or the spec given
        (``"gaussian:2.0"``...).
    solver : {"rl", "wiener"}
    params : dict
        Solver parameters: ``tv``, ``max_iter``, ``tol``, ``accelerate`` (RL) or
        ``balance`` (Wiener).
    denoise : DenoisePlan, ModelPlan or None
        Stage 1: a filter plan, a denoising network
        (:class:`~em_restore.backend.models.inference.ModelPlan`), or ``None``
        (deconvolve the raw data).
    windows : (int, int)
        ``(1, 1)`` for one kernel over the frame; ``(ny, nx)`` for the spatially
        varying mode (overlapping windows blended smoothly).
    estimation : dict
        How the kernel was estimated (``max_size``, ``iterations``...), JSON-able.
    """

    psfs: tuple
    psf_source: str
    solver: str
    params: dict
    denoise: Any
    windows: tuple[int, int] = (1, 1)
    estimation: dict = field(default_factory=dict)

    @property
    def psf(self) -> np.ndarray:
        """The kernel (the central window's in the spatially varying mode)."""
        return self.psfs[len(self.psfs) // 2]

    def to_metadata(self) -> dict:
        """Plain JSON-able dict that :meth:`from_metadata` turns back into this plan."""
        from em_restore import __version__

        meta = {
            "solver": self.solver,
            "params": dict(self.params),
            "psf_source": self.psf_source,
            "psfs": [k.tolist() for k in self.psfs],  # full precision: exact round trip
            "windows": list(self.windows),
            "denoise": None if self.denoise is None else self.denoise.to_metadata(),
            "estimation": dict(self.estimation),
            "em_restore_version": __version__,
        }
        json.dumps(meta)
        return meta

    @classmethod
    def from_metadata(cls, meta: dict, *, device=None) -> DeconvPlan:
        """Rebuild a plan from :meth:`to_metadata` (e.g. a result layer's metadata).

        ``device``: where a denoising network of stage 1 runs (as for
        :func:`~em_restore.backend.models.store.load_model`; default its choice).
        """
        if not isinstance(meta, dict) or "psfs" not in meta or "solver" not in meta:
            raise ValueError(
                f"meta must be the dict returned by DeconvPlan.to_metadata(); got {short(meta)}."
            )
        den = meta.get("denoise")
        return cls(
            psfs=tuple(check_psf(np.asarray(k, dtype=float)) for k in meta["psfs"]),
            psf_source=str(meta.get("psf_source", "given")),
            solver=check_choice(meta["solver"], "meta['solver']", SOLVERS),
            params=dict(meta.get("params", {})),
            denoise=None if den is None else _stage1_from_metadata(den, device),
            windows=tuple(int(v) for v in meta.get("windows", (1, 1))),  # type: ignore[arg-type]
            estimation=dict(meta.get("estimation", {})),
        )


def _is_model_plan(obj: Any) -> bool:
    """A :class:`~em_restore.backend.models.inference.ModelPlan` (duck-typed: no torch import)."""
    return callable(getattr(obj, "apply_frame", None)) and hasattr(obj, "model")


def _plan_stage1(x: np.ndarray, denoise: Any, modality: str | None, device=None):
    """Stage 1's plan from the ``denoise`` argument (see :func:`iter_plan_deconvolve`)."""
    if denoise is None or isinstance(denoise, DenoisePlan) or _is_model_plan(denoise):
        return denoise
    if isinstance(denoise, str) and denoise == "model":
        from .models.inference import plan_model

        yield Progress(0, 1, "loading the denoising model")
        return plan_model(None, modality=modality, device=device)
    return (yield from iter_plan_denoise(x, denoise, modality=modality))


def _apply_stage1(x: np.ndarray, plan: Any) -> np.ndarray:
    """One frame through stage 1 (a filter plan or a model), float64."""
    if plan is None:
        return x
    if isinstance(plan, DenoisePlan):
        return apply_plan(x, plan).astype(np.float64)
    return np.asarray(plan.apply_frame(x), dtype=np.float64)


def _stage1_from_metadata(meta: dict, device=None):
    """Stage 1 rebuilt from its metadata; a model must be the same weights (hash)."""
    if meta.get("method") != "model":
        return DenoisePlan.from_metadata(meta)
    from .models.inference import DEFAULT_OVERLAP, DEFAULT_TILE, ModelPlan
    from .models.store import load_model

    rec = meta.get("model") or {}
    model = load_model(rec.get("name"), device=device)
    if rec.get("sha256") and model.sha256 != rec["sha256"]:
        raise ValueError(
            f"the denoise stage used model {rec.get('name')!r} with weights "
            f"{str(rec['sha256'])[:12]}…, but the installed one is {model.sha256[:12]}…; "
            "install the version that made the result, or plan again."
        )
    plan = ModelPlan(
        model,
        modality=meta.get("modality"),
        modality_source=str(meta.get("modality_source", "")),
        tile=int(meta.get("tile", DEFAULT_TILE)),
        overlap=int(meta.get("overlap", DEFAULT_OVERLAP)),
    )
    if meta.get("noise"):  # the network's input units, as recorded
        from .noise import NoiseModel

        plan.noise = NoiseModel.from_dict(meta["noise"])
    return plan


def _window_boxes(shape: tuple[int, int], windows: tuple[int, int]) -> list[tuple[int, ...]]:
    """Overlapping windows: each grid cell grown by half a cell on every side (clipped)."""
    boxes = []
    h, w = shape
    ny, nx = windows
    ch, cw = h / ny, w / nx
    for i in range(ny):
        for j in range(nx):
            y0 = max(round((i - 0.5) * ch), 0)
            y1 = min(round((i + 1.5) * ch), h)
            x0 = max(round((j - 0.5) * cw), 0)
            x1 = min(round((j + 1.5) * cw), w)
            boxes.append((y0, y1, x0, x1))
    return boxes


def _window_weight(box: tuple[int, ...], shape: tuple[int, int]) -> np.ndarray:
    """sin² taper towards interior window edges (flat along the frame border)."""
    y0, y1, x0, x1 = box

    def ramp(a: int, b: int, n: int) -> np.ndarray:
        length = b - a
        t = np.arange(length) + 0.5
        rise = np.ones(length) if a == 0 else np.sin(0.5 * np.pi * np.clip(t / (length / 4), 0, 1))
        fall = (
            np.ones(length)
            if b == n
            else np.sin(0.5 * np.pi * np.clip((length - t) / (length / 4), 0, 1))
        )
        return (rise * fall) ** 2 + 1e-6

    return np.outer(ramp(y0, y1, shape[0]), ramp(x0, x1, shape[1]))


def _check_windows(windows: Any) -> tuple[int, int]:
    if isinstance(windows, int | np.integer):
        windows = (windows, windows)
    try:
        ny, nx = (check_int(v, "windows", low=1, high=16) for v in windows)
    except (TypeError, ValueError):
        raise ValueError(
            f"windows must be an int or a (rows, cols) pair of ints in 1..16; got "
            f"{short(windows)}. Use windows=(1, 1) for one kernel, (3, 3) for a varying one."
        ) from None
    return (ny, nx)


def iter_plan_deconvolve(
    image,
    psf: Any = None,
    *,
    solver: str = "rl",
    denoise: Any = "model",
    modality: str | None = None,
    device=None,
    windows: Any = (1, 1),
    max_size: int | None = None,
    tv: float | None = None,
    balance: float | None = None,
) -> Generator[Progress, None, DeconvPlan]:
    """Plan the two-stage pipeline on one frame (denoise → kernel → solver); a generator.

    Parameters
    ----------
    image : (rows, cols) array_like
        One representative frame of raw data. Never modified.
    psf : None, str or array_like
        ``None`` (default): blind, the kernel is estimated from the denoised frame.
        A spec ``"gaussian:SIGMA"``, ``"disk:RADIUS"``, ``"motion:LENGTH,ANGLE"``
        (:func:`em_restore.backend.psf.parse_psf`) or a kernel array: non-blind.
    solver : {"rl", "wiener"}
        Richardson–Lucy with TV (default; no ringing) or Wiener–Tikhonov (one pass).
    denoise : "model", "classical", a method name, a plan, or None
        Stage 1. ``"model"`` (default): the bundled denoising network for the
        modality (:func:`~em_restore.backend.models.inference.plan_model`; a
        ``ModelPlan`` may be passed instead). ``"classical"`` or a filter name:
        planned on this frame (:func:`~em_restore.backend.denoise.iter_plan_denoise`;
        a ``DenoisePlan`` may be passed). ``None``: no denoising (clean data).
        On the simulated benchmark the network gives the better kernels and
        images (``docs/deconvolve.md``).
    modality : {"tem", "stem", "sem"}, optional
        Passed to the denoise stage (TEM when not given).
    device : str or torch.device, optional
        Where the denoising network runs (``denoise="model"``), passed to
        :func:`~em_restore.backend.models.inference.plan_model`; default its choice.
    windows : int or (int, int)
        ``(1, 1)``: one kernel. ``(ny, nx)``: blind estimation per overlapping window
        (spatially varying blur), blended with a sin² taper.
    max_size : int, optional
        Kernel canvas for blind estimation (default :func:`default_kernel_size` of
        the window).
    tv, balance : float, optional
        Override the solver's automatic regularisation.

    Yields
    ------
    Progress

    Returns
    -------
    DeconvPlan
    """
    x = check_frame(image)
    solver = check_choice(solver, "solver", SOLVERS)
    windows = _check_windows(windows)
    given = None
    source = "blind"
    if psf is not None:
        if isinstance(psf, str):
            source = psf
            given = _psf.parse_psf(psf)
        else:
            source = "given"
            given = check_psf(psf)
        if windows != (1, 1):
            raise ValueError(
                "windows apply to blind estimation only; pass psf=None for a spatially "
                "varying kernel, or windows=(1, 1) with a given psf."
            )
    dplan = yield from _plan_stage1(x, denoise, modality, device)
    if dplan is not None:
        yield Progress(0, 1, "denoising")
    clean = _apply_stage1(x, dplan)
    estimation: dict[str, Any] = {}
    if given is not None:
        psfs: tuple = (given,)
    else:
        boxes = _window_boxes(clean.shape, windows)
        found = []
        for i, (y0, y1, x0, x1) in enumerate(boxes):
            part = clean[y0:y1, x0:x1]
            size = default_kernel_size(part.shape) if max_size is None else max_size
            where = f"window {i + 1}/{len(boxes)}: " if len(boxes) > 1 else ""
            found.append((yield from relay(iter_estimate_kernel(part, max_size=size), where)))
        psfs = tuple(found)
        estimation = {
            "max_size": max_size if max_size is not None else "auto",
            "iterations": 5,
            # finest scales and their rounds, on frames of at least this many pixels
            "fine_rounds": [_blind.FINE_SCALES, _blind.FINE_ROUNDS, _blind.FINE_MIN_PIXELS],
            "lam": 0.01,
            "gamma": 0.02,
            "sizes": [int(k.shape[0]) for k in psfs],
        }
    if solver == "rl":
        params: dict[str, Any] = {
            "tv": DEFAULT_TV if tv is None else check_real(tv, "tv", low=0, high=0.2),
            "max_iter": DEFAULT_MAX_ITER,
            "tol": DEFAULT_TOL,
            "accelerate": True,
        }
    else:
        b = auto_balance(clean) if balance is None else balance
        params = {"balance": check_real(b, "balance", low=0, low_open=True)}
    return DeconvPlan(psfs, source, solver, params, dplan, windows, estimation)


def plan_deconvolve(image, psf: Any = None, **kw) -> DeconvPlan:
    """:func:`iter_plan_deconvolve` run to the end (same parameters)."""
    return drain(iter_plan_deconvolve(image, psf, **kw))


def _solve(y: np.ndarray, k: np.ndarray, plan: DeconvPlan) -> Generator[Progress, None, np.ndarray]:
    if plan.solver == "wiener":
        yield Progress(0, 1, "Wiener")
        out = wiener(y, k, balance=plan.params["balance"])
        yield Progress(1, 1, "Wiener")
        return out
    p = plan.params
    return (
        yield from iter_richardson_lucy(
            y, k, tv=p["tv"], max_iter=p["max_iter"], tol=p["tol"], accelerate=p["accelerate"]
        )
    )


def _check_plan(plan: Any) -> None:
    if not isinstance(plan, DeconvPlan):
        raise ValueError(
            f"plan must be a DeconvPlan; got {type(plan).__name__}. "
            "Make one with plan_deconvolve(frame)."
        )


def _check_stack(array: Any) -> tuple[int, ...]:
    """The shape of an image or stack to deconvolve frame by frame (real numbers)."""
    shape = tuple(int(s) for s in array.shape)
    check_layout(shape, "array", stack=True, min_side=MIN_SIDE)
    if np.dtype(array.dtype).kind not in "biuf":
        raise ValueError(
            f"array must be a real numeric array; got dtype {array.dtype}. "
            "Convert with array.astype(float)."
        )
    return shape


def iter_apply_deconv_plan(image2d, plan: DeconvPlan) -> Generator[Progress, None, np.ndarray]:
    """Deconvolve one 2-D frame with a plan (denoise stage, then the solver); a generator.

    Returns
    -------
    float32 ndarray of the frame's shape.
    """
    _check_plan(plan)
    x = check_frame(image2d, "image2d")
    if plan.denoise is not None:
        yield Progress(0, 1, "denoising")
        x = _apply_stage1(x, plan.denoise)
    boxes = _window_boxes(x.shape, plan.windows)
    if len(boxes) != len(plan.psfs):
        raise ValueError(
            f"plan has {len(plan.psfs)} kernel(s) for {len(boxes)} window(s); make a new plan."
        )
    if len(boxes) == 1:
        out = yield from _solve(x, plan.psfs[0], plan)
        return out.astype(np.float32)
    acc = np.zeros_like(x)
    wsum = np.zeros_like(x)
    for i, (box, k) in enumerate(zip(boxes, plan.psfs, strict=True)):
        y0, y1, x0, x1 = box
        part = yield from relay(_solve(x[y0:y1, x0:x1], k, plan), f"window {i + 1}/{len(boxes)}: ")
        w = _window_weight(box, x.shape)
        acc[y0:y1, x0:x1] += w * part
        wsum[y0:y1, x0:x1] += w
    return (acc / wsum).astype(np.float32)


def apply_deconv_plan(image2d, plan: DeconvPlan) -> np.ndarray:
    """:func:`iter_apply_deconv_plan` run to the end."""
    return drain(iter_apply_deconv_plan(image2d, plan))


def iter_deconvolve(array, plan: DeconvPlan) -> Generator[Progress, None, np.ndarray]:
    """Apply a plan to every 2-D frame of an image or stack; a generator of :class:`Progress`.

    Parameters
    ----------
    array : (..., rows, cols) numpy or dask array
        Read one frame at a time (dask arrays stay lazy until then). Never modified.
    plan : DeconvPlan

    Yields
    ------
    Progress
        ``done`` frames of ``total``, with the solver's own progress in the message.

    Returns
    -------
    float32 ndarray of the input shape.
    """
    _check_plan(plan)
    shape = _check_stack(array)
    lead = shape[:-2]
    total = int(np.prod(lead, dtype=np.int64))
    out = np.empty(shape, dtype=np.float32)
    yield Progress(0, total, "deconvolving")
    for n, idx in enumerate(np.ndindex(*lead)):
        frame = array[idx]
        frame = np.asarray(frame.compute() if hasattr(frame, "compute") else frame)
        where = f"frame {n + 1}/{total}: " if lead else ""
        gen = iter_apply_deconv_plan(frame, plan)
        # Frame-level progress: done = frames finished, the solver's step in the message.
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                out[idx] = stop.value
                break
            yield Progress(n, total, where + p.message)
        yield Progress(n + 1, total, f"frame {n + 1}/{total} done" if lead else "done")
    return out


def deconvolve_lazy(array, plan: DeconvPlan):
    """A dask array applying ``plan`` to every frame of ``array`` when computed.

    One whole frame per chunk (the solver works on whole frames: FFTs, windows), any
    leading axes, float32; equal to :func:`iter_deconvolve`. Nothing is computed
    here, and computing it holds only the frames in flight, so a stack of any
    length is deconvolved in bounded memory (e.g. written chunk by chunk by
    :func:`em_restore.io.write_zarr`).

    Examples
    --------
    >>> import dask.array as da
    >>> plan = plan_deconvolve(np.ones((32, 32)), "gaussian:1.0", denoise=None)
    >>> lazy = deconvolve_lazy(da.ones((3, 32, 32), chunks=(1, 32, 32)), plan)
    >>> lazy.chunks[0], lazy.dtype
    ((1, 1, 1), dtype('float32'))
    """
    import dask.array as da

    _check_plan(plan)
    if not isinstance(array, da.Array):
        array = da.asarray(array)
    _check_stack(array)
    array = array.rechunk((1,) * (array.ndim - 2) + (-1, -1))

    def block(data: np.ndarray) -> np.ndarray:
        out = np.empty(data.shape, dtype=np.float32)
        for idx in np.ndindex(*data.shape[:-2]):
            out[idx] = apply_deconv_plan(data[idx], plan)
        return out

    return da.map_blocks(
        block, array, dtype=np.float32, meta=np.empty((0,) * array.ndim, np.float32)
    )


def deconvolve(image, psf: Any = None, **kw) -> tuple[np.ndarray, DeconvPlan]:
    """Plan on the image (the middle frame of a stack) and deconvolve all of it.

    Parameters
    ----------
    image : (..., rows, cols) array_like or dask array
    psf : None, str or array_like
        ``None`` for blind deconvolution; see :func:`iter_plan_deconvolve`.
    **kw
        Passed to :func:`iter_plan_deconvolve`.

    Returns
    -------
    restored : float32 ndarray of the input shape
    plan : DeconvPlan (the kernel is ``plan.psf``)
    """
    shape = tuple(int(s) for s in np.shape(image)) if not hasattr(image, "chunks") else image.shape
    check_layout(tuple(shape), "image", stack=True, min_side=MIN_SIDE)
    lead = shape[:-2]
    frame = image[tuple(n // 2 for n in lead)] if lead else image
    frame = np.asarray(frame.compute() if hasattr(frame, "compute") else frame)
    plan = plan_deconvolve(frame, psf, **kw)
    return drain(iter_deconvolve(image, plan)), plan
