"""Inference: any image size, stacks and lazy arrays, tiles blended without seams.

Pipeline for one 2-D frame ``x`` (:func:`predict_frame`):

1. **Normalise** with the model's rule (config ``normalisation``, see
   :mod:`.normalise`), computed on the *whole frame* (never per tile, so tiles
   agree): the frame's percentiles (``xn = (x - p_low) / (p_high - p_low)``), or
   its own noise model (variance-stabilised, in noise standard deviations).
   Then **outliers** the network never saw at such heights (X-ray spikes, hot
   and dead pixels, which can sit 100× above the frame's range) are replaced by
   the median of their 3×3 neighbourhood (:func:`replace_outliers`): a pixel outside
   ``[-t, 1 + t]`` standing more than ``t`` above (below) the third-highest
   (lowest) of its 8 neighbours, ``t`` = :data:`OUTLIER_RANGE` units of the
   frame's 0.1–99.9 percentile range. Objects of 2×2 px or more are kept; the
   residual network would otherwise copy a 100× spike through to its output.
2. **Pad** by reflection to a multiple of the network's stride (odd sizes welcome).
3. **Predict** the whole padded frame in one pass when its larger side is at most
   ``tile``; otherwise in ``tile``² tiles placed on a grid aligned to the stride and
   overlapping by ``overlap`` px, in batches of ``batch``. Each tile's output is
   weighted by a separable window that is 0 within ``overlap // 4`` px of an interior
   tile edge (where zero padding differs from the real neighbours), rises as
   ``sin²`` across the rest of the overlap and is 1 elsewhere and along the image
   border; the weights of two neighbours sum to 1 across their overlap, and the
   result is ``Σ w·y / Σ w``. Tiled and whole-image predictions agree to < 1e-3 of
   the data range on a trained model (tested at 2048² in 256² tiles). With
   ``ensemble`` = 2, 4 or 8 (default: the model's config, else 1), each batch is
   also predicted under that many of the 8 flips/rotations (identity, the three
   rotations, then the same mirrored), each output transformed back, and the
   outputs averaged: the network's errors that depend on orientation (texture it
   paints one way in one pass and another way in the next) average out, at the
   cost of that many passes.
4. **Undo** the normalisation and crop the padding.

Runs under :func:`torch.inference_mode`, in float32, channels-last on CPU; the
device is chosen by :func:`select_device` (CUDA, then Apple MPS, then CPU).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Generator

import numpy as np

from .._args import check_image, looks_rgb
from .._progress import Progress, drain
from .augment import dihedral, undo_dihedral
from .device import select_device
from .normalise import frame_noise, normaliser, outlier_units
from .store import check_ensemble

__all__ = [
    "blend_window",
    "clean_outliers",
    "iter_predict",
    "normalisation_of",
    "predict",
    "predict_frame",
    "predict_lazy",
    "replace_outliers",
    "select_device",
    "stack_noise",
    "tile_grid",
]

#: Outlier rule of step 1, in units of the frame's normalisation range.
OUTLIER_RANGE = 1.0
DEFAULT_TILE = 1152  # 2048² frames: 2 × 2 tiles, 1.27× the pixels
DEFAULT_OVERLAP = 192  # > the network's reach from a tile edge (tested)
#: Tiles per forward pass. With 1152² tiles one is enough work for a device, and on the
#: CPU batches of big tiles only thrash the cache: a 2048² frame took 459 ms/MP with
#: batch 1 against 757 ms/MP with batch 4 (2 threads, 2026-11-22).
DEFAULT_BATCH = 1


def normalisation_of(frame: np.ndarray, rule: dict) -> tuple[float, float]:
    """``(offset, scale)`` of a frame under a model's normalisation rule.

    Examples
    --------
    >>> normalisation_of(np.arange(101.0), {"kind": "percentile", "low": 1.0, "high": 99.0})
    (1.0, 98.0)
    >>> normalisation_of(np.full((4, 4), 7.0), {"kind": "percentile", "low": 1.0, "high": 99.0})
    (7.0, 1.0)
    """
    lo, hi = np.percentile(frame, [rule["low"], rule["high"]])
    lo, hi = float(lo), float(hi)
    scale = hi - lo
    if not math.isfinite(scale) or scale <= 0:
        scale = 1.0
    return lo, scale


def replace_outliers(xn: np.ndarray, t: float = OUTLIER_RANGE) -> tuple[np.ndarray, int]:
    """Step 1's outlier rule on a normalised frame: ``(cleaned copy, pixels replaced)``.

    A pixel outside ``[-t, 1 + t]`` is an outlier when it stands more than ``t``
    above the third-highest of its 8 neighbours (or below the third-lowest): single
    hot or dead pixels and streaks up to 3 px long, never a pixel with 3 or more
    neighbours of its own height (any object of 2×2 px or more). It takes the median
    of its 3×3 neighbourhood. (Not :func:`~em_restore.backend.filters.remove_spikes`:
    its rule, distance to the 3×3 median in noise s.d., also takes the corners of
    small bright objects, and it needs a noise estimate and a whole-frame median.)

    Examples
    --------
    >>> xn = np.full((6, 6), 0.5); xn[2, 2] = 140.0; xn[4, 3] = -5.0
    >>> out, n = replace_outliers(xn)
    >>> n, float(out[2, 2]), float(out[4, 3])
    (2, 0.5, 0.5)
    >>> block = np.zeros((8, 8)); block[2:6, 2:6] = 9.0    # an object, not a spike
    >>> replace_outliers(block)[1]
    0
    """
    cand = np.flatnonzero((xn > 1.0 + t) | (xn < -t))
    if cand.size == 0:
        return xn, 0
    rows, cols = np.unravel_index(cand, xn.shape)
    padded = np.pad(xn, 1, mode="edge")
    ring = [(dy, dx) for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)]
    neighbours = np.sort(np.stack([padded[rows + dy, cols + dx] for dy, dx in ring], axis=1))
    value = xn.flat[cand]
    bad = (value - neighbours[:, -3] > t) | (value - neighbours[:, 2] < -t)
    if not bad.any():
        return xn, 0
    window = np.concatenate([neighbours[bad], value[bad, None]], axis=1)
    out = xn.copy()
    out.flat[cand[bad]] = np.median(window, axis=1).astype(xn.dtype)
    return out, int(bad.sum())


def clean_outliers(xn: np.ndarray, kind: str) -> np.ndarray:
    """:func:`replace_outliers` on a normalised frame, in the percentile units it expects."""
    if kind == "percentile":
        return replace_outliers(xn)[0]
    lo, span = outlier_units(xn)
    cleaned, n = replace_outliers(((xn - lo) / span).astype(np.float32))
    return xn if n == 0 else (cleaned * span + lo).astype(np.float32)


def _starts(n: int, tile: int, step: int) -> list[int]:
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, step))
    starts.append(n - tile)
    return starts


def tile_grid(shape: tuple[int, int], tile: int, overlap: int) -> list[tuple[int, int]]:
    """Top-left corners of ``tile``² tiles covering ``shape`` with at least ``overlap`` px.

    Examples
    --------
    >>> tile_grid((512, 300), 256, 64)
    [(0, 0), (0, 44), (192, 0), (192, 44), (256, 0), (256, 44)]
    """
    step = tile - overlap
    return [(y, x) for y in _starts(shape[0], tile, step) for x in _starts(shape[1], tile, step)]


def _ramp(n: int, overlap: int, lead: bool, trail: bool) -> np.ndarray:
    """1-D window: zero margin, sin² rise across the overlap at interior sides, else 1."""
    w = np.ones(n, dtype=np.float64)
    if overlap == 0:
        return w
    margin = overlap // 4
    rise = overlap - 2 * margin
    d = np.arange(n, dtype=np.float64)
    prof = np.where(
        d < margin, 0.0, np.sin(0.5 * np.pi * np.clip((d - margin + 0.5) / rise, 0, 1)) ** 2
    )
    if lead:
        w *= prof
    if trail:
        w *= prof[::-1]
    return w


def blend_window(tile: int, overlap: int, sides: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """Separable weight of one tile; ``sides`` = (top, bottom, left, right) has a neighbour.

    Examples
    --------
    >>> w = blend_window(64, 32, (False, True, False, False))
    >>> float(w[0, 0]), float(w[-1, 0]), float(w[-9, 5]) > 0
    (1.0, 0.0, True)
    """
    top, bottom, left, right = sides
    return np.outer(_ramp(tile, overlap, top, bottom), _ramp(tile, overlap, left, right))


def _check_frame_args(tile: int, overlap: int, stride: int, batch: int) -> None:
    if not (isinstance(tile, int) and tile >= stride and tile % stride == 0):
        raise ValueError(
            f"tile must be a positive multiple of {stride}; got {tile!r}. "
            f"Use e.g. tile={DEFAULT_TILE}."
        )
    if not (isinstance(overlap, int) and 0 <= overlap < tile and overlap % stride == 0):
        raise ValueError(
            f"overlap must be a multiple of {stride} smaller than tile ({tile}); got {overlap!r}. "
            f"Use a larger tile, e.g. tile={DEFAULT_TILE}, or a smaller overlap, e.g. "
            f"overlap={min(DEFAULT_OVERLAP, (tile // 4) // stride * stride)}."
        )
    if not (isinstance(batch, int) and batch >= 1):
        raise ValueError(f"batch must be a positive integer; got {batch!r}. Use e.g. batch=4.")


def check_stack_shape(shape: tuple[int, ...]) -> None:
    """A greyscale frame or stack (..., rows, cols) of at least 2x2 pixels."""
    if looks_rgb(shape):
        raise ValueError(
            f"array looks like an RGB(A) picture (shape {shape}, colour last); EM "
            "restoration works on greyscale: convert first, e.g. skimage.color.rgb2gray(array)."
        )
    if len(shape) < 2 or min(shape[-2:]) < 2:
        raise ValueError(
            f"array must have at least 2 axes of >= 2 pixels; got shape {shape}. "
            "Pass a 2-D frame or a stack of frames (…, rows, cols)."
        )


def _run(model, batch_np: np.ndarray, ensemble: int = 1) -> np.ndarray:
    """The network on a batch ``(b, h, w)``, averaged over ``ensemble`` flips/rotations."""
    import torch

    out = None
    for k in range(ensemble):
        xk = np.ascontiguousarray(dihedral(batch_np, k))
        x = torch.from_numpy(xk[:, None]).to(model.device)
        if model.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = model.net(x)[:, 0].float().cpu().numpy()
        y = undo_dihedral(y, k)
        out = y if out is None else out + y
    return out if ensemble == 1 else out / np.float32(ensemble)


def _ensemble_of(model, ensemble) -> int:
    return check_ensemble(getattr(model.config, "ensemble", 1) if ensemble is None else ensemble)


def _iter_frame(
    model,
    x: np.ndarray,
    tile: int,
    overlap: int,
    batch: int,
    where: tuple = (0, 1, ""),
    noise=None,
    ensemble: int = 1,
) -> Generator[Progress, None, np.ndarray]:
    """Restore one checked float64 frame; yields ``Progress`` per batch of tiles.

    ``where = (done, total, label)``: the units already done before this frame, the
    total of the whole job and a label, so stacks report one running count.
    """
    stride = int(model.net.stride)
    done0, total, label = where
    h, w = x.shape
    if float(np.ptp(x)) == 0.0:
        # A constant frame (a blanked beam, an empty readout) has nothing to restore: it
        # is returned as it is, not as the network's faint response to a flat input.
        units = _frame_units((h, w), stride, tile, overlap, batch)
        yield Progress(done0 + units, total, f"{label}constant frame, returned as it is")
        return x.astype(np.float32)
    norm = normaliser(x, model.config.normalisation, noise=noise)
    xn = clean_outliers(norm.forward(x), norm.kind)
    ph, pw = -h % stride, -w % stride
    if ph or pw:
        mode = "reflect" if min(h, w) > max(ph, pw) else "symmetric"
        xn = np.pad(xn, ((0, ph), (0, pw)), mode=mode)
    H, W = xn.shape
    if max(H, W) <= tile:
        y = _run(model, xn[None], ensemble)[0]
        yield Progress(done0 + 1, total, f"{label}whole frame")
    else:
        t = tile
        grid = tile_grid((H, W), t, overlap)
        acc = np.zeros((H, W), dtype=np.float64)
        wsum = np.zeros((H, W), dtype=np.float64)
        n_batches = math.ceil(len(grid) / batch)
        for b in range(n_batches):
            corners = grid[b * batch : (b + 1) * batch]
            th, tw = min(t, H), min(t, W)
            tiles = np.stack([xn[y0 : y0 + th, x0 : x0 + tw] for y0, x0 in corners])
            out = _run(model, tiles, ensemble)
            for (y0, x0), o in zip(corners, out, strict=True):
                sides = (y0 > 0, y0 + th < H, x0 > 0, x0 + tw < W)
                wt = blend_window(t, overlap, sides)[:th, :tw]
                acc[y0 : y0 + th, x0 : x0 + tw] += wt * o
                wsum[y0 : y0 + th, x0 : x0 + tw] += wt
            yield Progress(done0 + b + 1, total, f"{label}tiles {b + 1}/{n_batches}")
        y = acc / wsum
    return norm.inverse(y[:h, :w])


def _frame_units(shape: tuple[int, int], stride: int, tile: int, overlap: int, batch: int) -> int:
    H = shape[0] + (-shape[0] % stride)
    W = shape[1] + (-shape[1] % stride)
    if max(H, W) <= tile:
        return 1
    return math.ceil(len(tile_grid((H, W), tile, overlap)) / batch)


def predict_frame(model, frame, **options) -> np.ndarray:
    """Restore one 2-D frame (any size, >= 2×2): float32 in the input's units.

    ``options`` are :func:`iter_predict`'s (``tile``, ``overlap``, ``batch``,
    ``ensemble``, and ``noise``: the frame's
    :class:`~em_restore.backend.noise.NoiseModel`, for a model normalised by the
    noise; estimated from the frame when ``None``).

    Examples
    --------
    >>> from em_restore.backend.models import load_model
    >>> model = load_model("em-denoise-fast", device="cpu")
    >>> predict_frame(model, np.full((37, 50), 100.0)).shape
    (37, 50)
    """
    return predict(model, as_frame(frame), **options)


def as_frame(frame) -> np.ndarray:
    """One finite, real 2-D frame of at least 2×2 px as float64 (dask computed)."""
    x = frame.compute() if hasattr(frame, "compute") else frame
    return check_image(x, "frame", min_ndim=2, max_ndim=2, min_size=2)


def stack_noise(model, array):
    """The noise model a stack is normalised by: for a model under the ``noise`` rule,
    estimated once on the middle frame (one detector, one noise model: its gain and
    read noise do not change with the dose); ``None`` for other rules."""
    if model.config.normalisation["kind"] != "noise":
        return None
    lead = tuple(int(s) for s in array.shape[:-2])
    mid = tuple(n // 2 for n in lead)
    return frame_noise(as_frame(array[mid] if mid else array))


def iter_predict(
    model,
    array,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch: int = DEFAULT_BATCH,
    noise=None,
    ensemble: int | None = None,
) -> Generator[Progress, None, np.ndarray]:
    """Restore every 2-D frame of ``array`` (numpy or dask, any leading axes).

    A generator: yields :class:`~em_restore.backend.denoise.Progress` after every
    batch of tiles (stop it between yields to cancel) and returns the float32
    result. Dask input is read one frame at a time; the input is never modified.
    ``noise``: the stack's noise model under the ``noise`` rule (default: estimated
    once, :func:`stack_noise`). ``ensemble``: flips/rotations averaged (1, 2, 4 or 8;
    default: the model's own, ``config.ensemble``).
    """
    shape = tuple(int(s) for s in array.shape)
    check_stack_shape(shape)
    lead = shape[:-2]
    stride = int(model.net.stride)
    _check_frame_args(tile, overlap, stride, batch)
    ensemble = _ensemble_of(model, ensemble)
    if noise is None and lead:
        noise = stack_noise(model, array)
    per = _frame_units(shape[-2:], stride, tile, overlap, batch)
    total = per * int(np.prod(lead, dtype=np.int64))
    out = np.empty(shape, dtype=np.float32)
    yield Progress(0, total, f"restoring with {model.name}")
    for k, idx in enumerate(np.ndindex(*lead)):
        frame = as_frame(array[idx] if idx else array)
        where = (k * per, total, f"frame {idx} " if idx else "")
        out[idx] = yield from _iter_frame(
            model, frame, tile, overlap, batch, where, noise, ensemble
        )
    return out


def predict(model, array, **kw) -> np.ndarray:
    """:func:`iter_predict` run to the end."""
    return drain(iter_predict(model, array, **kw))


def predict_lazy(model, array, *, noise=None, **tiling):
    """A dask array restoring ``array`` frame by frame when computed (float32).

    ``tiling``: :func:`iter_predict`'s ``tile``, ``overlap``, ``batch`` and
    ``ensemble``, checked here. Frames are rechunked whole (normalisation is per
    frame); leading axes keep one frame per chunk. Nothing is computed here,
    except, for a model under the ``noise`` rule without ``noise``, the middle
    frame's noise model (:func:`stack_noise`).
    """
    import dask.array as da

    unknown = sorted(set(tiling) - {"tile", "overlap", "batch", "ensemble"})
    if unknown:
        raise TypeError(f"predict_lazy() got unexpected keyword argument(s) {unknown}")
    tiling = {"tile": DEFAULT_TILE, "overlap": DEFAULT_OVERLAP, "batch": DEFAULT_BATCH, **tiling}
    if not isinstance(array, da.Array):
        array = da.asarray(array)
    check_stack_shape(tuple(int(n) for n in array.shape))
    _check_frame_args(tiling["tile"], tiling["overlap"], int(model.net.stride), tiling["batch"])
    tiling["ensemble"] = _ensemble_of(model, tiling.get("ensemble"))
    chunks = (1,) * (array.ndim - 2) + (-1, -1)
    array = array.rechunk(chunks)
    if noise is None:
        noise = stack_noise(model, array)

    def block(data: np.ndarray) -> np.ndarray:
        out = np.empty(data.shape, dtype=np.float32)
        for idx in np.ndindex(*data.shape[:-2]):
            out[idx] = predict_frame(model, data[idx], noise=noise, **tiling)
        return out

    return da.map_blocks(
        block, array, dtype=np.float32, meta=np.empty((0,) * array.ndim, np.float32)
    )


class ModelPlan:
    """A model restoration, recorded like a :class:`~em_restore.backend.denoise.DenoisePlan`.

    Holds the loaded model and the choices that produced it (modality and where it
    came from, tiling), and writes them with the model's name and weights hash
    (:meth:`to_metadata`) so a result can be reproduced.
    """

    def __init__(
        self,
        model,
        *,
        modality: str | None = None,
        modality_source: str = "",
        tile: int = DEFAULT_TILE,
        overlap: int = DEFAULT_OVERLAP,
        batch: int = DEFAULT_BATCH,
        ensemble: int | None = None,
    ) -> None:
        _check_frame_args(tile, overlap, int(model.net.stride), batch)
        #: flips/rotations averaged (default: the model's own)
        self.ensemble = _ensemble_of(model, ensemble)
        self.model = model
        self.modality = modality
        self.modality_source = modality_source
        self.tile, self.overlap, self.batch = tile, overlap, batch
        #: under the ``noise`` rule: the noise model of the data being restored, set by
        #: :meth:`prepare` (every stack: :meth:`iter_apply`, :meth:`lazy`) or by the
        #: first :meth:`apply_frame` (a live stream estimates once), and recorded in
        #: the metadata
        self.noise = None

    @property
    def method(self) -> str:
        return f"model {self.model.name}"

    def fresh(self, ensemble: int | None = None) -> ModelPlan:
        """This plan (same loaded model) without a noise model, for other data; with
        ``ensemble`` flips/rotations averaged if given (else this plan's)."""
        other = copy.copy(self)
        other.noise = None
        if ensemble is not None:
            other.ensemble = check_ensemble(ensemble)
        return other

    def prepare(self, array):
        """Estimate the noise model of ``array`` (its middle frame) for what follows."""
        self.noise = stack_noise(self.model, array)
        return self.noise

    def _kw(self) -> dict:
        return {
            "tile": self.tile,
            "overlap": self.overlap,
            "batch": self.batch,
            "ensemble": self.ensemble,
        }

    def iter_apply(self, array) -> Generator[Progress, None, np.ndarray]:
        return iter_predict(self.model, array, noise=self.prepare(array), **self._kw())

    def apply_frame(self, frame) -> np.ndarray:
        if self.noise is None:
            self.prepare(frame)
        return predict_frame(self.model, frame, noise=self.noise, **self._kw())

    def lazy(self, array):
        return predict_lazy(self.model, array, noise=self.prepare(array), **self._kw())

    def to_metadata(self) -> dict:
        from em_restore import __version__

        return {
            "method": "model",
            "model": self.model.to_metadata(),
            "modality": self.modality,
            "modality_source": self.modality_source,
            "tile": self.tile,
            "overlap": self.overlap,
            "ensemble": self.ensemble,
            "outlier_range": OUTLIER_RANGE,
            "noise": None if self.noise is None else self.noise.to_dict(),
            "device": str(self.model.device),
            "em_restore_version": __version__,
        }


def plan_model(
    spec=None,
    *,
    modality: str | None = None,
    metadata: dict | None = None,
    device=None,
    tile: int = DEFAULT_TILE,
    ensemble: int | None = None,
) -> ModelPlan:
    """Load a model and record how it was chosen.

    ``spec`` (name or folder) wins; otherwise the bundled default for ``modality``,
    else for the modality found in the file's ``metadata``
    (:func:`em_restore.io.guess_modality`), else the default for images of unknown
    modality (the network trained on all three). ``ensemble``:
    flips/rotations averaged (default: the model's own).
    """
    from em_restore.io import guess_modality

    from .store import default_model_name, load_model

    if modality is not None:
        source = "given"
    else:
        modality = guess_modality(metadata or {})
        source = "file metadata" if modality else "unknown (the all-modality default)"
    name = spec if spec is not None else default_model_name(modality)
    from .onnx_io import load_onnx, onnx_model_path

    onnx_file = onnx_model_path(name)  # an ONNX file runs on onnxruntime (CPU)
    model = load_onnx(onnx_file) if onnx_file else load_model(name, device=device)
    if model.config.task != "denoise":
        from .store import ModelError

        raise ModelError(
            f"model {model.name!r} is a {model.config.task} model, not a denoiser; pick one "
            "listed by `em-restore models --task denoise`."
        )
    return ModelPlan(model, modality=modality, modality_source=source, tile=tile, ensemble=ensemble)
