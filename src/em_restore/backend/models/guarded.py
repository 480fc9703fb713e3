"""The automatic default: the network, compared with the classical plan and checked
against the counts.

A network restores an image in tens of milliseconds, but where the image is unlike
anything it was trained on it can paint structure the counts do not hold, or smooth
away what the classical plan (:func:`~em_restore.backend.denoise.iter_plan_denoise`)
keeps. :class:`GuardedPlan` runs the network and, on every frame:

1. **checks** the network's result with :func:`~em_restore.backend.fidelity.fidelity`
   against the raw frame's own noise model and, on every tile of :data:`FALLBACK_TILE`
   px whose flagged area exceeds :data:`FALLBACK_AREA` (and where the classical result
   is itself flagged on less than half that area), uses the classical result in the
   flagged regions (with a margin of :data:`MARGIN` px), blended over :data:`RAMP` px;
2. **compares** (``compare=True``, the default): blends that checked result with the
   classical plan's, ``classical + α (checked − classical)``, with the weight ``α``
   that minimises their estimated risk (Monte-Carlo SURE from the frame's own noise
   model, :mod:`em_restore.backend.risk`; ``α = 1``, the checked result alone, unless
   the data say clearly otherwise, or where the network moved the grey levels).

The comparison costs the classical plan (made once per stack, on the frame the noise
model comes from), its application to each frame and one more pass of each method over
the nudged frame. A stack is compared on that reference frame first (while it is
prepared); where the reference keeps the network's result (weight 1), the other frames
are checked only, at the checked-only cost. Without it (``compare=False``:
``--no-compare``), frames the test passes cost the network plus the test, and the
classical plan is made only when a tile falls back.

Every decision is recorded: :meth:`GuardedPlan.to_metadata` carries the model (name
and hash), the noise model the test used, the policy, the classical plan if one was
made, and per frame the blend weight with its estimated gain and the tiles that fell
back with each tile's flagged area.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Generator
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .._progress import Progress, drain, relay
from ..denoise import apply_plan, iter_plan_denoise
from ..fidelity import FLAG_LEVEL, MIN_SIDE, fidelity, fidelity_noise
from ..risk import LEVEL_TOLERANCE, PROBE_STEP, TOLERANCE, blend_weight, divergence, noise_probe
from .inference import ModelPlan, as_frame, check_stack_shape

__all__ = ["FALLBACK_AREA", "FALLBACK_TILE", "MARGIN", "RAMP", "GuardedPlan", "fallback_weight"]

#: Side of the tiles the fallback decides on (px).
FALLBACK_TILE = 128
#: A tile falls back when more than this fraction of it is flagged.
FALLBACK_AREA = 0.10
#: Width of the blend between the network's and the classical result (px).
RAMP = 32
#: Flagged regions are replaced with this margin around them (px).
MARGIN = 8


def tile_decisions(fmap: np.ndarray, tile: int = FALLBACK_TILE, area: float = FALLBACK_AREA):
    """(flagged fraction per tile, fallback per tile) on a grid of ``tile`` px tiles.

    The last row and column of tiles take the remainder (a remainder under half a
    tile joins its neighbour), so every tile has at least ``tile / 2`` px a side.
    """
    h, w = fmap.shape
    ys, xs = _edges(h, tile), _edges(w, tile)
    flagged = fmap >= FLAG_LEVEL
    frac = np.array(
        [
            [flagged[y0:y1, x0:x1].mean() for x0, x1 in itertools.pairwise(xs)]
            for y0, y1 in itertools.pairwise(ys)
        ]
    )
    return frac, frac > area


def _edges(n: int, tile: int) -> list[int]:
    k = max(1, round(n / tile))
    return [round(i * n / k) for i in range(k + 1)]


def has_noise(noise) -> bool:
    """Whether a noise model has any noise to test against (the fidelity test needs it)."""
    return noise.gain > 0 or noise.readout_sigma > 0


def fallback_weight(
    decisions: np.ndarray, shape: tuple[int, int], tile: int = FALLBACK_TILE, fmap=None
) -> np.ndarray:
    """Per-pixel weight of the fallback: 1 where it replaces the network, ramps of RAMP px.

    Without ``fmap``, whole fallen-back tiles; with it, only the flagged regions of
    those tiles (``fmap >= FLAG_LEVEL``, dilated by :data:`MARGIN` px), so a flagged
    patch does not take its whole tile, nor the strip it spills into a neighbour.
    """
    h, w = shape
    ys, xs = _edges(h, tile), _edges(w, tile)
    wt = np.zeros(shape, np.float32)
    for i, (y0, y1) in enumerate(itertools.pairwise(ys)):
        for j, (x0, x1) in enumerate(itertools.pairwise(xs)):
            if decisions[i, j]:
                wt[y0:y1, x0:x1] = 1.0
    if fmap is not None and wt.any():
        flagged = ndi.binary_dilation(fmap >= FLAG_LEVEL, iterations=MARGIN)
        wt *= flagged
    if wt.any() and not wt.all():
        wt = ndi.uniform_filter(wt, size=RAMP, mode="nearest")
    return wt


class GuardedPlan:
    """A :class:`~em_restore.backend.models.inference.ModelPlan` whose results are checked.

    Same interface as the model plan (``method``, ``apply_frame``, ``iter_apply``,
    ``lazy``, ``to_metadata``), so the CLI and the widgets use it unchanged.

    Parameters
    ----------
    model_plan : ModelPlan
    tile, area : int, float
        The fallback's tile side and flagged-area threshold.
    compare : bool
        Also make the classical plan's result and blend it with the checked result (the
        fallback in place) by their estimated risk
        (:func:`~em_restore.backend.risk.blend_weight`). Off: the classical plan is made
        only where the check fails (fast).
    """

    def __init__(
        self,
        model_plan: ModelPlan,
        *,
        tile: int = FALLBACK_TILE,
        area: float = FALLBACK_AREA,
        compare: bool = True,
    ) -> None:
        if not isinstance(model_plan, ModelPlan):
            raise ValueError(
                f"model_plan must be a ModelPlan; got {type(model_plan).__name__}. "
                "Use plan_model(...) first."
            )
        self.model_plan = model_plan
        self.model = model_plan.model
        self.modality = model_plan.modality
        self.tile, self.area = int(tile), float(area)
        self.compare = bool(compare)
        self.reference: dict | None = None  # the stack's compared reference frame
        self._first = None  # (index, result) of that frame, made while preparing
        self.noise = None
        self.classical = None
        self.frames: list[dict] = []
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        # a dask.distributed worker gets a copy (its decisions stay there: a streamed
        # run's metadata holds the policy and the noise model, not per-frame records)
        state = dict(self.__dict__)
        del state["_lock"]
        state["_first"] = None  # a worker restores that frame again (the same result)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def method(self) -> str:
        return f"model {self.model.name}, checked"

    # ------------------------------------------------------------------ parts
    def _noise_for(self, frame: np.ndarray):
        # A frame without noise (constant: a blanked beam, an empty readout) gives a model
        # with none; the next frame that has noise replaces it.
        with self._lock:
            if self.noise is None or not has_noise(self.noise):
                found = fidelity_noise(frame, modality=self.modality)
                if self.noise is None or has_noise(found):
                    self.noise = found
            return self.noise

    def _classical_for(self, frame: np.ndarray):
        return drain(self._iter_classical(frame))

    def _iter_classical(self, frame: np.ndarray) -> Generator[Progress, None, Any]:
        """The classical plan, made on ``frame`` if not made yet; yields the plan's progress."""
        with self._lock:
            if self.classical is None:
                self.classical = yield from iter_plan_denoise(
                    frame, "classical", modality=self.modality
                )
            return self.classical

    def _blend(self, x: np.ndarray, checked: np.ndarray, classical: np.ndarray, wt=None):
        """(the checked and the classical results blended by their estimated risk, record).

        ``checked`` is the network's result with the fallback's weight ``wt`` (or None)
        of the classical result in place; its nudged counterpart is made the same way.
        """
        with self._lock:
            noise, plan = self.noise, self.classical
        probe = noise_probe(noise, checked)
        nudged = x.astype(np.float32) + np.float32(PROBE_STEP) * probe
        net2 = self.model_plan.apply_frame(nudged)
        cls2 = apply_plan(nudged, plan).astype(np.float32)
        if wt is not None:
            net2 = net2 * (1 - wt) + cls2 * wt
        d_net = divergence(checked, net2, probe)
        d_cls = divergence(classical, cls2, probe)
        alpha, record = blend_weight(x, checked, classical, d_net, d_cls)
        if alpha >= 1.0:
            return checked, record
        out = classical + np.float32(alpha) * (checked - classical)
        return out.astype(np.float32), record

    def check(self, frame, restored) -> tuple[np.ndarray, dict]:
        """(fidelity map, summary) of a network result on one frame, with tile decisions."""
        x = as_frame(frame)
        f = fidelity(x, restored, self._noise_for(x), modality=self.modality)
        frac, fall = tile_decisions(f.map, self.tile, self.area)
        summary = dict(f.summary)
        summary["tile_flagged"] = np.round(frac, 4).tolist()
        summary["tiles_fallen_back"] = int(fall.sum())
        summary["tiles"] = int(fall.size)
        return f.map, summary

    def apply_frame_checked(self, frame, index: Any = ()) -> tuple[np.ndarray, np.ndarray, dict]:
        """(result, fidelity map of the network result, decision record) for one frame."""
        key = tuple(index)
        with self._lock:  # the reference frame, restored while the stack was prepared
            first = self._first if self._first and self._first[0] == key else None
            if first:
                self._first = None
        result = first[1] if first else self._restore(as_frame(frame), index)
        with self._lock:
            self.frames.append(result[2])
        return result

    def _compares(self, index) -> bool:
        """Whether this frame is compared: always, unless the stack's reference frame
        (compared when the stack was prepared) kept the network's result."""
        ref = self.reference
        return self.compare and (ref is None or ref["weight"] < 1.0 or ref["frame"] == list(index))

    def _restore(self, x: np.ndarray, index: Any) -> tuple[np.ndarray, np.ndarray, dict]:
        net = self.model_plan.apply_frame(x)
        if min(x.shape) < MIN_SIDE:
            record = {"frame": list(index), "checked": False, "tiles": 0, "tiles_fallen_back": 0}
            record["reason"] = f"frame {x.shape[0]}×{x.shape[1]} px is under {MIN_SIDE} px a side"
            return net, np.zeros(x.shape, np.float32), record
        flat = float(np.ptp(x)) == 0.0
        if flat or not has_noise(self._noise_for(x)):
            record = {"frame": list(index), "checked": False, "tiles": 0, "tiles_fallen_back": 0}
            record["reason"] = (
                "the frame is constant: nothing to restore, it is returned as it is"
                if flat
                else "the frame shows no noise: nothing to check the result against"
            )
            return net, np.zeros(x.shape, np.float32), record  # a constant frame: itself
        fmap, summary = self.check(x, net)
        fall = np.array([[v > self.area for v in row] for row in summary["tile_flagged"]])
        record = {
            "frame": list(index),
            "flagged_fraction": summary["flagged_fraction"],
            "chi2_ratio": summary["chi2_ratio"],
            "tiles": summary["tiles"],
            "tiles_fallen_back": summary["tiles_fallen_back"],
            "tile_flagged": summary["tile_flagged"],
            "regions": summary["regions"][:5],
        }
        out = net
        classical = None
        wt = None
        compare = self._compares(index)
        if compare or fall.any():
            classical = apply_plan(x, self._classical_for(x)).astype(np.float32)
        if fall.any():
            # fall back only where the classical result is itself better supported
            c_frac, _ = tile_decisions(
                fidelity(x, classical, self.noise, modality=self.modality).map, self.tile, self.area
            )
            n_frac = np.asarray(summary["tile_flagged"])
            fall &= c_frac < 0.5 * n_frac
            record["tile_flagged_classical"] = np.round(c_frac, 4).tolist()
            record["tiles_fallen_back"] = int(fall.sum())
            if fall.any():
                wt = fallback_weight(fall, x.shape, self.tile, fmap)
                out = (net * (1 - wt) + classical * wt).astype(np.float32)
                record["fallback_area"] = round(float(wt.mean()), 4)
        if compare:
            # the checked result (the fallback in place) against the classical one
            out, record["blend"] = self._blend(x, out, classical, wt)
        elif self.compare:
            record["blend"] = {
                "weight": 1.0,
                "reason": f"the stack's reference frame {self.reference['frame']} kept the "
                "network's result: the stack is compared there only",
            }
        return out, fmap, record

    def apply_frame(self, frame) -> np.ndarray:
        return self.apply_frame_checked(frame)[0]

    def _prepare(self, array) -> tuple[int, ...]:
        return drain(self._iter_prepare(array))

    def _iter_prepare(self, array) -> Generator[Progress, None, tuple[int, ...]]:
        """Check a stack's shape; fix the noise model on its middle frame, the classical
        plan (when comparing; its progress is yielded) and the network's input units on
        the same frame before any frame is restored."""
        shape = tuple(int(s) for s in array.shape)
        check_stack_shape(shape)
        self.model_plan.prepare(array)  # first: the reference frame is restored below
        need_plan = self.compare and (self.classical is None or self.reference is None)
        if (self.noise is None or need_plan) and min(shape[-2:]) >= MIN_SIDE:
            frames = list(np.ndindex(*shape[:-2]))
            # from the middle outwards, the first frame with noise (blank frames have none)
            order = sorted(range(len(frames)), key=lambda k: abs(k - len(frames) // 2))
            for k in order:
                idx = frames[k]
                x = as_frame(array[idx] if idx else array)
                if float(np.ptp(x)) > 0 and has_noise(self._noise_for(x)):
                    if need_plan:  # every frame (and every worker) blends with one plan
                        yield from relay(self._iter_classical(x), "comparison: ")
                        yield Progress(0, 1, "comparison: the reference frame")
                        result = self._restore(x, idx)
                        weight = result[2].get("blend", {}).get("weight", 1.0)
                        self.reference = {"frame": list(idx), "weight": weight}
                        self._first = (tuple(idx), result)
                    break
        return shape

    def iter_apply(self, array) -> Generator[Progress, None, np.ndarray]:
        """Every frame of ``array``, checked; the noise model (and, when comparing, the
        classical plan: its calibration's progress comes first) from the middle frame."""
        shape = yield from self._iter_prepare(array)
        frames = list(np.ndindex(*shape[:-2]))
        out = np.empty(shape, np.float32)
        yield Progress(0, len(frames), f"restoring with {self.model.name} (checked)")
        for k, idx in enumerate(frames):
            out[idx] = self.apply_frame_checked(array[idx] if idx else array, idx)[0]
            yield Progress(k + 1, len(frames), f"restoring with {self.model.name} (checked)")
        return out

    def lazy(self, array):
        """A dask array of checked frames (one per chunk); decisions gather in ``frames``."""
        import dask.array as da

        shape = self._prepare(array)  # before the graph: every worker gets the same
        lead = len(shape) - 2
        src = da.asarray(array).rechunk((1,) * lead + shape[-2:])

        def block(data: np.ndarray, block_info=None) -> np.ndarray:
            loc = block_info[0]["chunk-location"][:lead] if block_info else ()
            res = self.apply_frame_checked(data.reshape(shape[-2:]), tuple(loc))[0]
            return res.reshape(data.shape)

        return da.map_blocks(block, src, dtype=np.float32)

    # --------------------------------------------------------------- records
    def notice(self) -> str:
        """One line for the user: where the network's result was not kept."""
        n = len(self.frames)
        if n == 0:
            return (
                "fidelity: each frame was checked where it was computed (on the cluster's "
                "workers); run `em-restore check` on the result for its map"
            )
        fell = [f for f in self.frames if f["tiles_fallen_back"]]
        if self.frames and not any(f.get("checked", True) for f in self.frames):
            return f"fidelity: not checked ({self.frames[0]['reason']})"
        method = self.classical.method if self.classical is not None else "classical"
        blended = [f["blend"]["weight"] for f in self.frames if "blend" in f]
        mixed = [w for w in blended if w < 1.0]
        risk = ""
        if blended and mixed:
            risk = (
                f"; by their estimated risk, the classical plan ({method}) was blended in on "
                f"{len(mixed)} of {len(blended)} frame(s) (network weight "
                f"{min(mixed):.2f}-{max(mixed):.2f})"
            )
        elif blended:
            risk = (
                f"; compared by their estimated risk with the classical plan ({method}), the "
                f"network's result was kept on all {len(blended)} frame(s)"
            )
        if not fell:
            worst = max((f.get("flagged_fraction", 0.0) for f in self.frames), default=0.0)
            return (
                f"fidelity: the network's result is supported by the counts "
                f"({worst:.1%} of the area flagged at most, {n} frame(s)){risk}"
            )
        tiles = sum(f["tiles_fallen_back"] for f in fell)
        total = sum(f["tiles"] for f in self.frames)
        return (
            f"fidelity: the network's result was not supported by the counts on {tiles} of "
            f"{total} tiles in {len(fell)} of {n} frame(s); the classical plan ({method}) "
            f"was used there{risk}"
        )

    def to_metadata(self) -> dict:
        meta = self.model_plan.to_metadata()
        meta["checked"] = True
        meta["fallback"] = {
            "policy": {
                "tile": self.tile,
                "area": self.area,
                "flag_level": FLAG_LEVEL,
                "margin": MARGIN,
                "ramp": RAMP,
                "compare": self.compare,
                **(
                    {
                        "risk": "SURE (Monte-Carlo divergence)",
                        "probe_step": PROBE_STEP,
                        "tolerance": TOLERANCE,
                        "level_tolerance": LEVEL_TOLERANCE,
                    }
                    if self.compare
                    else {}
                ),
            },
            "noise": None if self.noise is None else self.noise.to_dict(),
            "classical": None if self.classical is None else self.classical.to_metadata(),
            "reference": self.reference,
            "frames": sorted(self.frames, key=lambda f: f["frame"]),
            "notice": self.notice() if self.frames else "",
        }
        return meta
