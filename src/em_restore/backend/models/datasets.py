"""Training data from the user's own images: paired, noisy-only, simulated, burst.

Every dataset turns images into what :func:`.fit.iter_fit` consumes: random
training batches (crop, 8 flips/rotations) drawn from a step-seeded generator,
and a fixed validation set held out from training. Intensities are normalised
exactly as at inference (the model's percentile rule, computed on each whole
noisy frame), so a model trained here is used like any other.

* :class:`PairedData`: ``(noisy, clean)`` pairs (low/high dose, blurry/sharp).
  Each pair is checked and registered: the clean image is aligned onto the noisy
  one to sub-pixel precision (cross-correlation of smoothed images, upsampled
  20×, then Gauss–Newton on the intensity-matched pair; a bicubic shift, both
  cropped by the shift), refused when the two do not show the same area (a shift
  over a quarter of the field, or a correlation of the images smoothed by a 2 px
  Gaussian below :data:`MIN_CORRELATION` after alignment), and mapped onto the
  noisy image's intensity scale by a least-squares fit ``noisy ≈ a·clean + b``
  (the high-dose image is a different exposure: its counts, offset and gain
  differ). The target is ``a·clean + b`` in the noisy frame's normalisation.
* :class:`NoisyData`: noisy images alone, for self-supervised training
  (Neighbor2Neighbor: a batch is a noisy crop of twice the patch size; the two
  sub-images are drawn by :func:`.fit.iter_fit`).
* :class:`SimulatedData`: clean images (the user's, or the built-in specimen
  generator) recorded by the physics simulator at random doses, detectors and
  optics of one modality; the target is the noise-free expectation.
* :class:`BurstData`: moving-stage streams simulated over the same clean images,
  registered by the same code as at use time, for the burst network.

Validation: with 4 images or more, whole images are held out (a seeded choice of
``val_fraction`` of them, at least one); with fewer, a strip at the bottom of
each image (``val_fraction`` of its height, at least 32 rows) is never cropped for
training. Validation crops are at most ``val_crop``² and a multiple of the
network stride.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import simulate as sim
from .._progress import Progress
from .augment import dihedral
from .fit_config import DOSE_DEFAULTS, POOL_DEFAULTS, check_task_mode
from .inference import clean_outliers
from .normalise import Norm, normaliser

__all__ = [
    "MIN_CORRELATION",
    "MIN_SIDE",
    "BurstData",
    "NoisyData",
    "PairedData",
    "SimulatedData",
    "ValItem",
    "as_frames",
    "register_pair",
    "training_data",
]

MIN_CORRELATION = 0.2
MIN_SIDE = 32
DEFAULT_RULE = {"kind": "percentile", "low": 0.1, "high": 99.9}


@dataclass
class ValItem:
    """One validation crop: network inputs (batch of 1), target, and the ADU scale."""

    inputs: tuple[np.ndarray, ...]
    target: np.ndarray | None  # (1, 1, h, w) normalised; None when self-supervised
    norm: Norm  # the frame's normalisation (network units <-> ADU)
    baseline: np.ndarray | None = None  # (1, 1, h, w): what the input alone gives

    def to_adu(self, y) -> np.ndarray:
        """A network output (or the target) in this crop's ADU, float64."""
        return self.norm.inverse(y, np.float64)


def as_frames(images: Any, name: str) -> list[np.ndarray]:
    """2-D float64 frames from an image, a stack, or a list of either.

    Examples
    --------
    >>> [f.shape for f in as_frames([np.zeros((2, 40, 50)), np.ones((64, 64))], "noisy")]
    [(40, 50), (40, 50), (64, 64)]
    """
    items = images if isinstance(images, list | tuple) else [images]
    frames: list[np.ndarray] = []
    for item in items:
        a = np.asarray(item)
        if a.dtype.kind not in "uif" or a.ndim not in (2, 3):
            raise ValueError(
                f"{name} images must be real 2-D images or (frames, rows, cols) stacks; "
                f"got dtype {a.dtype} with shape {a.shape}."
            )
        for f in a.reshape((-1, *a.shape[-2:])):
            f = f.astype(np.float64)
            if min(f.shape) < MIN_SIDE:
                raise ValueError(
                    f"{name} images must be at least {MIN_SIDE}×{MIN_SIDE} px; got {f.shape}."
                )
            if not np.all(np.isfinite(f)):
                raise ValueError(f"{name} images contain NaN or infinite values; clean them first.")
            frames.append(f)
    if not frames:
        raise ValueError(f"no {name} images given.")
    return frames


def _tiles(shape: tuple[int, int], crop: int, stride: int, most: int = 4):
    """Up to ``most`` non-overlapping crops (slices) of at most ``crop``², multiples of stride."""
    h = min(shape[0], crop) // stride * stride
    w = min(shape[1], crop) // stride * stride
    if h < stride or w < stride:
        return []
    out = []
    for y in range(0, shape[0] - h + 1, h):
        for x in range(0, shape[1] - w + 1, w):
            out.append((slice(y, y + h), slice(x, x + w)))
    return out[:most]


def _split(n_images: int, heights: list[int], fraction: float, seed: int):
    """``(val_images, strip_rows)``: held-out images, or per-image bottom strip heights."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1); got {fraction!r}.")
    if n_images >= 4:
        k = max(1, round(fraction * n_images))
        return set(np.random.default_rng([seed, 7]).permutation(n_images)[:k].tolist()), None
    return set(), [max(MIN_SIDE, round(fraction * h)) for h in heights]


class _FrameSampler:
    """Random crops with flips/rotations from (x, y) frame pairs, weighted by area."""

    def __init__(self, xs: list[np.ndarray], ys: list[np.ndarray] | None) -> None:
        self.xs, self.ys = xs, ys
        area = np.array([x.size for x in xs], float)
        self.p = area / area.sum()

    def crops(self, gen: np.random.Generator, n: int, size: int):
        small = [i for i, x in enumerate(self.xs) if min(x.shape) < size]
        if small:
            raise ValueError(
                f"training images must be at least the crop size {size} px; image "
                f"{small[0]} is {self.xs[small[0]].shape} (lower the patch size)."
            )
        idx = gen.choice(len(self.xs), size=n, p=self.p)
        xb, yb = [], []
        for i in idx:
            h, w = self.xs[i].shape
            y0, x0 = int(gen.integers(h - size + 1)), int(gen.integers(w - size + 1))
            k = int(gen.integers(8))
            sl = (slice(y0, y0 + size), slice(x0, x0 + size))
            xb.append(dihedral(self.xs[i][sl], k))
            if self.ys is not None:
                yb.append(dihedral(self.ys[i][sl], k))
        x = np.array(xb, dtype=np.float32)[:, None]
        y = np.array(yb, dtype=np.float32)[:, None] if self.ys is not None else None
        return x, y


def _normalised(noisy: np.ndarray, rule: dict) -> tuple[np.ndarray, Norm]:
    """The network input and the frame's :class:`Norm`, as at inference (under the
    noise rule the input's outliers are cleaned as :func:`~.inference.predict_frame`
    cleans them; the percentile rule keeps the first models' data as they were)."""
    norm = normaliser(noisy, rule)
    xn = norm.forward(noisy)
    return (clean_outliers(xn, norm.kind) if norm.kind == "noise" else xn), norm


# --------------------------------------------------------------------------- paired
def register_pair(noisy: np.ndarray, clean: np.ndarray) -> dict:
    """Sub-pixel shift, correlation and intensity fit of ``clean`` onto ``noisy``.

    Returns ``{"shift": (dy, dx), "correlation": r, "gain": a, "offset": b,
    "target": a·shifted(clean) + b, "crop": (slice, slice)}``, where ``target`` and
    ``noisy[crop]`` are the registered pair (the border the shift invalidates is cut).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> clean = sim.nanoparticles((96, 96), rng=0)[0]
    >>> noisy = rng.poisson(50 * np.roll(clean, (2, -1), axis=(0, 1))).astype(float)
    >>> r = register_pair(noisy, clean)
    >>> [round(s) for s in r["shift"]], r["correlation"] > 0.5, round(r["gain"] / 50, 1)
    ([2, -1], True, 1.0)
    """
    from scipy import ndimage
    from skimage.registration import phase_cross_correlation

    from ..register import refine_shift as _refine

    if noisy.shape != clean.shape:
        raise ValueError(
            f"a noisy image {noisy.shape} and its clean image {clean.shape} differ in shape; "
            "pair images of the same field of view and size."
        )
    a = ndimage.gaussian_filter(noisy, 1.5)
    b = ndimage.gaussian_filter(clean, 1.5)
    shift, _, _ = phase_cross_correlation(
        a - a.mean(), b - b.mean(), upsample_factor=20, normalization=None
    )
    shift = np.asarray(shift, float)
    design = np.stack([b.ravel(), np.ones(b.size)], axis=1)
    (g, o), *_ = np.linalg.lstsq(design, a.ravel(), rcond=None)
    if g > 0:  # Gauss-Newton on the intensity-matched pair refines the correlation peak
        shift = _refine(a, g * b + o, shift)
    if np.any(np.abs(shift) > 0.25 * np.asarray(noisy.shape)):
        raise ValueError(
            f"a noisy/clean pair does not match (the best alignment moves it by "
            f"{shift.round(1).tolist()} px, over a quarter of the field); check that both "
            "show the same area, in the same order."
        )
    moved = clean if np.all(np.abs(shift) < 0.01) else ndimage.shift(clean, shift, order=3)
    m = math.ceil(float(np.abs(shift).max())) + (2 if np.any(np.abs(shift) >= 0.01) else 0)
    crop = (slice(m, noisy.shape[0] - m), slice(m, noisy.shape[1] - m))
    x, c = noisy[crop], moved[crop]
    smooth = [ndimage.gaussian_filter(v, 2.0).ravel() for v in (x, c)]
    r = float(np.corrcoef(*smooth)[0, 1])
    if r <= -MIN_CORRELATION:
        raise ValueError(
            "a clean image has inverted contrast relative to its noisy image; pair images "
            "of the same kind (e.g. both bright-field)."
        )
    if not r >= MIN_CORRELATION:
        raise ValueError(
            f"a noisy/clean pair does not match (correlation {r:.2f} < {MIN_CORRELATION} after "
            "alignment); check that both show the same area, in the same order."
        )
    design = np.stack([c.ravel(), np.ones(c.size)], axis=1)
    (gain, offset), *_ = np.linalg.lstsq(design, x.ravel(), rcond=None)
    if gain <= 0:
        raise ValueError(
            "a clean image has inverted contrast relative to its noisy image; pair images "
            "of the same kind (e.g. both bright-field)."
        )
    return {
        "shift": (float(shift[0]), float(shift[1])),
        "correlation": r,
        "gain": float(gain),
        "offset": float(offset),
        "target": gain * c + offset,
        "crop": crop,
    }


class _FrameData:
    """Shared by paired and noisy-only data: frames, split, sampler, validation."""

    self_supervised = False
    kind = ""

    def __init__(self, xs, ys, rule, val_fraction, seed) -> None:
        self._frames = (xs, ys)  # for use_rule
        self.rule = dict(rule or DEFAULT_RULE)
        self.seed = seed
        self.val_fraction = val_fraction
        prepared = []
        for i, x in enumerate(xs):
            xn, norm = _normalised(x, self.rule)
            yn = None if ys is None else norm.forward(ys[i])
            prepared.append((xn, yn, norm))
        val_images, strips = _split(len(xs), [x.shape[0] for x in xs], val_fraction, seed)
        train_x, train_y, self._val_src = [], [], []
        for i, (xn, yn, norm) in enumerate(prepared):
            if i in val_images:
                self._val_src.append((xn, yn, norm))
                continue
            if strips is not None:
                cut = xn.shape[0] - strips[i]
                if cut < MIN_SIDE:
                    raise ValueError(
                        f"image {i} ({xn.shape[0]} rows) is too small to hold out a validation "
                        "strip; give larger or more images."
                    )
                self._val_src.append((xn[cut:], None if yn is None else yn[cut:], norm))
                xn, yn = xn[:cut], None if yn is None else yn[:cut]
            train_x.append(xn.astype(np.float32))
            train_y.append(None if yn is None else yn.astype(np.float32))
        self.sampler = _FrameSampler(train_x, None if ys is None else train_y)
        self.n_images = len(xs)
        self.train_pixels = int(sum(x.size for x in train_x))

    def iter_prepare(self, stride: int, val_crop: int) -> Generator[Progress, None, None]:
        self.validation: list[ValItem] = []
        for xn, yn, norm in self._val_src:
            for sl in _tiles(xn.shape, val_crop, 2 * stride if self.self_supervised else stride):
                x = xn[sl].astype(np.float32)[None, None]
                y = None if yn is None else yn[sl].astype(np.float32)[None, None]
                self.validation.append(ValItem((x,), y, norm, None if y is None else x))
        if not self.validation:
            raise ValueError(f"held-out images are smaller than the network stride {stride}.")
        yield Progress(1, 1, "data ready")

    def use_rule(self, rule: dict) -> None:
        """Normalise by ``rule`` instead (a fine-tuned model's own rule)."""
        _FrameData.__init__(self, *self._frames, rule, self.val_fraction, self.seed)

    def batch(self, gen: np.random.Generator, n: int, patch: int):
        size = 2 * patch if self.self_supervised else patch
        x, y = self.sampler.crops(gen, n, size)
        return (x,), y

    def describe(self) -> dict:
        return {
            "mode": self.kind,
            "images": self.n_images,
            "train_pixels": self.train_pixels,
            "validation_crops": len(getattr(self, "validation", [])),
            "val_fraction": self.val_fraction,
        }


class PairedData(_FrameData):
    """``(noisy, clean)`` pairs, registered and intensity-matched (see module doc).

    ``clean`` may hold one image for a whole noisy stack (it pairs with every frame).
    """

    kind = "paired"

    def __init__(
        self, noisy, clean, *, rule: dict | None = None, val_fraction: float = 0.15, seed: int = 0
    ) -> None:
        xs, cs = as_frames(noisy, "noisy"), as_frames(clean, "clean")
        if len(cs) == 1 and len(xs) > 1:
            cs = cs * len(xs)
        if len(cs) != len(xs):
            raise ValueError(
                f"{len(xs)} noisy images but {len(cs)} clean ones; give one clean image per "
                "noisy image (or one for all)."
            )
        self.pairs = []
        nx, ny = [], []
        for i, (x, c) in enumerate(zip(xs, cs, strict=True)):
            try:
                r = register_pair(x, c)
            except ValueError as err:
                raise ValueError(f"pair {i}: {err}") from None
            nx.append(x[r["crop"]])
            ny.append(r["target"])
            self.pairs.append(
                {k: (list(v) if k == "shift" else v) for k, v in r.items() if k in _PAIR_KEYS}
            )
        super().__init__(nx, ny, rule, val_fraction, seed)

    def describe(self) -> dict:
        d = super().describe()
        shifts = np.array([p["shift"] for p in self.pairs])
        d["registration"] = {
            "max_shift_px": round(float(np.abs(shifts).max()), 3),
            "min_correlation": round(min(p["correlation"] for p in self.pairs), 3),
        }
        return d


_PAIR_KEYS = ("shift", "correlation", "gain", "offset")


class NoisyData(_FrameData):
    """Noisy images alone, for self-supervised (Neighbor2Neighbor) training."""

    kind = "self"
    self_supervised = True

    def __init__(
        self, noisy, *, rule: dict | None = None, val_fraction: float = 0.15, seed: int = 0
    ) -> None:
        super().__init__(as_frames(noisy, "noisy"), None, rule, val_fraction, seed)


# --------------------------------------------------------------------------- simulated
def specimen_source(clean: Any | None) -> Callable[[np.random.Generator, tuple[int, int]], Any]:
    """``(gen, shape) -> clean`` transmission image: random crops of the user's clean
    images (rescaled to 0.05–1 by their 0.1/99.9 percentiles, mirrored when smaller
    than ``shape``), or the built-in random specimens when ``clean`` is None."""
    if clean is None:
        return lambda gen, shape: sim.random_specimen(shape, rng=gen)[0]
    frames = []
    for f in as_frames(clean, "clean"):
        lo, hi = np.percentile(f, [0.1, 99.9])
        frames.append(0.05 + 0.95 * np.clip((f - lo) / ((hi - lo) or 1.0), 0.0, 1.0))

    def draw(gen: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        f = frames[int(gen.integers(len(frames)))]
        reps = [max(1, math.ceil(s / n)) for s, n in zip(shape, f.shape, strict=True)]
        if reps != [1, 1]:  # mirror-tile a small image up to the shape
            pad = [(0, (r - 1) * n) for r, n in zip(reps, f.shape, strict=True)]
            f = np.pad(f, pad, "symmetric")
        y0 = int(gen.integers(f.shape[0] - shape[0] + 1))
        x0 = int(gen.integers(f.shape[1] - shape[1] + 1))
        return dihedral(f[y0 : y0 + shape[0], x0 : x0 + shape[1]], int(gen.integers(8))).copy()

    return draw


class SimulatedData:
    """Clean images through the physics simulator (see module doc)."""

    kind = "simulated"
    self_supervised = False

    def __init__(
        self,
        clean=None,
        *,
        modality: str = "tem",
        dose_range: tuple[float, float] = DOSE_DEFAULTS["denoise"],
        pool: int = POOL_DEFAULTS["denoise"],
        size: int = 128,
        val_images: int = 16,
        rule: dict | None = None,
        seed: int = 0,
    ) -> None:
        if modality not in sim.AcquisitionConfig.MODALITIES:
            raise ValueError(f"modality must be tem, stem or sem; got {modality!r}.")
        lo, hi = (float(v) for v in dose_range)
        if not 0 < lo <= hi:
            raise ValueError(f"dose range must satisfy 0 < low <= high; got {dose_range!r}.")
        if not (isinstance(pool, int) and pool >= 1 and size >= MIN_SIDE):
            raise ValueError(f"need pool >= 1 and size >= {MIN_SIDE}; got {pool}, {size}.")
        self.user_clean = clean is not None
        self.draw = specimen_source(clean)
        self.modality, self.dose_range = modality, (lo, hi)
        self.pool, self.size, self.val_images = pool, int(size), int(val_images)
        self.rule = dict(rule or DEFAULT_RULE)
        self.seed = seed

    def use_rule(self, rule: dict) -> None:
        """Normalise by ``rule`` instead (a fine-tuned model's own rule)."""
        self.rule = dict(rule)

    def pair(self, gen: np.random.Generator, size: int):
        """One ``(noisy, expected)`` pair in ADU."""
        clean = self.draw(gen, (size, size))
        lo, hi = self.dose_range
        dose = float(math.exp(gen.uniform(math.log(lo), math.log(hi))))
        config = sim.random_acquisition_config(gen, modality=self.modality).replace(dose=dose)
        noisy, expected = sim.simulate_acquisition(clean, config, rng=gen, return_expected=True)
        return noisy.astype(np.float64), expected

    def iter_prepare(self, stride: int, val_crop: int) -> Generator[Progress, None, None]:
        n = self.size
        xs = np.empty((self.pool, n, n), np.float32)
        ys = np.empty_like(xs)
        total = self.pool + self.val_images
        for i in range(self.pool):
            noisy, expected = self.pair(np.random.default_rng([self.seed, 21, i]), n)
            xn, norm = _normalised(noisy, self.rule)
            xs[i], ys[i] = xn, norm.forward(expected)
            if (i + 1) % 16 == 0:
                yield Progress(i + 1, total, "simulating training pairs")
        self.sampler = _FrameSampler(list(xs), list(ys))
        v = max(stride, min(val_crop, n) // stride * stride)
        self.validation = []
        for i in range(self.val_images):
            noisy, expected = self.pair(np.random.default_rng([self.seed, 23, i]), v)
            xn, norm = _normalised(noisy, self.rule)
            x = xn.astype(np.float32)[None, None]
            y = norm.forward(expected)[None, None]
            self.validation.append(ValItem((x,), y, norm, x))
        yield Progress(total, total, "data ready")

    def batch(self, gen: np.random.Generator, n: int, patch: int):
        x, y = self.sampler.crops(gen, n, patch)
        return (x,), y

    def describe(self) -> dict:
        return {
            "mode": self.kind,
            "specimens": "user clean images" if self.user_clean else "built-in simulator",
            "modality": self.modality,
            "dose_e_per_px": list(self.dose_range),
            "pool": self.pool,
            "size": self.size,
            "validation_crops": self.val_images,
        }


class BurstData(SimulatedData):
    """Moving-stage streams simulated over clean images, for the burst network.

    Inputs per sample: the registered ``frames`` window, coverage masks, each
    frame's stage velocity and the multi-frame Wiener estimate (the network's base).
    """

    kind = "burst"

    def __init__(
        self,
        clean=None,
        *,
        frames: int = 5,
        dose_range: tuple[float, float] = DOSE_DEFAULTS["burst"],
        pool: int = POOL_DEFAULTS["burst"],
        size: int = 96,
        val_images: int = 12,
        rule: dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            clean,
            modality="tem",
            dose_range=dose_range,
            pool=pool,
            size=size,
            val_images=val_images,
            rule=rule,
            seed=seed,
        )
        if not (isinstance(frames, int) and frames >= 2):
            raise ValueError(f"frames must be an integer >= 2; got {frames!r}.")
        self.frames = frames

    def window(self, gen: np.random.Generator, size: int):
        from ..fuse import fuse_wiener, window_velocity
        from .burst import BurstRecipe, simulated_window

        recipe = BurstRecipe(dose_range=self.dose_range, size=size, frames=self.frames)
        a, target, _ = simulated_window(gen, recipe, specimen=self.draw)
        norm = normaliser(a.frames[a.reference], self.rule)
        return (
            norm.forward(a.frames),
            a.masks.astype(np.float32),
            window_velocity(a.shifts).astype(np.float32),
            norm.forward(fuse_wiener(a)),
            norm.forward(target),
            norm,
        )

    def iter_prepare(self, stride: int, val_crop: int) -> Generator[Progress, None, None]:
        total = self.pool + self.val_images
        self._pool = []
        for i in range(self.pool):
            self._pool.append(self.window(np.random.default_rng([self.seed, 31, i]), self.size))
            if (i + 1) % 8 == 0:
                yield Progress(i + 1, total, "simulating training bursts")
        v = max(stride, min(val_crop, self.size) // stride * stride)
        self.validation = []
        for i in range(self.val_images):
            f, m, vel, base, y, norm = self.window(np.random.default_rng([self.seed, 33, i]), v)
            self.validation.append(
                ValItem(
                    (f[None], m[None], vel[None], base[None, None]),
                    y[None, None],
                    norm,
                    base[None, None],
                )
            )
        yield Progress(total, total, "data ready")

    def batch(self, gen: np.random.Generator, n: int, patch: int):
        from .augment import dihedral_vec

        if patch > self.size:
            raise ValueError(f"patch ({patch}) must not exceed the burst size ({self.size}).")
        fb, mb, vb, bb, yb = [], [], [], [], []
        for i in gen.integers(len(self._pool), size=n):
            f, m, vel, base, y, _ = self._pool[i]
            y0 = int(gen.integers(self.size - patch + 1))
            x0 = int(gen.integers(self.size - patch + 1))
            k = int(gen.integers(8))
            sl = (slice(y0, y0 + patch), slice(x0, x0 + patch))
            fb.append(dihedral(f[(slice(None), *sl)], k))
            mb.append(dihedral(m[(slice(None), *sl)], k))
            vb.append(dihedral_vec(vel, k))
            bb.append(dihedral(base[sl], k))
            yb.append(dihedral(y[sl], k))

        def arr(items, channel=False):
            a = np.array(items, dtype=np.float32)
            return a[:, None] if channel else a

        return (arr(fb), arr(mb), arr(vb), arr(bb, True)), arr(yb, True)

    def describe(self) -> dict:
        d = super().describe()
        d.pop("modality")
        d["frames"] = self.frames
        return d


# ------------------------------------------------------------------ the request
def training_data(
    mode: str,
    noisy=None,
    clean=None,
    *,
    task: str = "denoise",
    modality: str = "tem",
    dose: tuple[float, float] | None = None,
    frames: int = 5,
    pool: int | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
):
    """The dataset of a "train your own" request (reads the pixels: run it where the
    work is done). ``noisy`` / ``clean``: an image, a stack or a list of them (``None``
    or empty for none); ``dose`` and ``pool`` default by task (:data:`DOSE_DEFAULTS`,
    :data:`POOL_DEFAULTS`)."""
    check_task_mode(task, mode, "train it with mode 'simulated'.")

    def arrays(images):
        if images is None:
            return None
        if isinstance(images, list | tuple):
            return [np.asarray(a) for a in images] or None
        return np.asarray(images)

    noisy, clean = arrays(noisy), arrays(clean)
    if mode == "paired":
        return PairedData(noisy, clean, val_fraction=val_fraction, seed=seed)
    if mode == "self":
        return NoisyData(noisy, val_fraction=val_fraction, seed=seed)
    dose = tuple(dose) if dose else DOSE_DEFAULTS[task]
    pool = pool or POOL_DEFAULTS[task]
    if task == "burst":
        return BurstData(clean, frames=frames, dose_range=dose, pool=pool, seed=seed)
    return SimulatedData(clean, modality=modality, dose_range=dose, pool=pool, seed=seed)
