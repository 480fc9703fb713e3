"""The burst network in use: simulated training windows, training, prediction.

Data (:func:`simulated_window`): a random specimen scrolled under a moving stage
(:func:`~em_restore.backend.simulate.moving_stage_stream`: constant velocity of a
random direction and speed plus an Ornstein–Uhlenbeck velocity jitter, so every
frame has its own irregular motion-blur path, optical blur and detector noise from
a random TEM acquisition), registered and aligned by the same code as at use
(:func:`~em_restore.backend.burst.align_window`, so the network learns to live
with real registration errors). The target is what a stopped stage would have
recorded for the middle frame: the specimen at its mid-exposure position through
the optical blur, noise-free, in ADU. Frames and target are normalised with the
middle frame's percentiles (the model's rule, as at inference).

The network refines the classical estimate: its output is a residual over the
multi-frame Wiener deconvolution of the same window
(:func:`~em_restore.backend.burst.fuse_wiener`, symmetric in the frames), which it
also receives as an input; learning the deblurring from the mean alone is too slow
for a CPU training budget, learning what Wiener gets wrong (noise it lets through,
ringing, errors of the straight-segment kernel) is not.

Training (:func:`iter_train_burst`): windows of 3–7 frames drawn from a pool,
random crops with the 8 flips/rotations (the same for every frame), loss
L1 + (1 − SSIM), Adam with warm-up and cosine decay, gradient clipping; a fixed
validation set scored every ``val_every`` steps and the **best validation SSIM**
checkpoint returned. Events are those of :mod:`.training` (``TrainStep``,
``Validation``).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from .. import simulate as sim
from ..fuse import fuse_wiener, window_velocity
from ..register import AlignedWindow, align_window
from .augment import dihedral, dihedral_vec
from .fit_config import DEFAULT_BURST_MODEL
from .inference import blend_window, normalisation_of, tile_grid
from .loop import StepConfig, iter_validated, range_psnr, run_training
from .losses import ssim_torch
from .nets import build_network

if TYPE_CHECKING:
    from .loop import TrainResult, TrainStep, Validation

__all__ = [
    "DEFAULT_BURST_MODEL",
    "BurstRecipe",
    "BurstTrainConfig",
    "iter_train_burst",
    "predict_burst",
    "simulated_window",
    "ssim_torch",
    "train_burst",
]


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class BurstRecipe:
    """What the simulator draws for burst training and evaluation."""

    dose_range: tuple[float, float] = (5.0, 300.0)  # e⁻/px per frame
    speed_range: tuple[float, float] = (1.0, 12.0)  # px per frame
    jitter_range: tuple[float, float] = (0.0, 2.0)  # px per frame (s.d.)
    exposure_range: tuple[float, float] = (0.5, 1.0)
    kinds: tuple[str, ...] = sim.SPECIMEN_KINDS
    size: int = 128
    frames: int = 7


def simulated_window(
    rng, recipe: BurstRecipe = BurstRecipe(), *, size=None, frames=None, specimen=None
):
    """One simulated, registered burst window and its sharp target.

    ``specimen`` (optional) is a callable ``(generator, shape) -> clean image``
    (transmission, 0–1) replacing the built-in random specimens, e.g. crops of the
    user's own clean images (:func:`.datasets.specimen_source`).

    Returns
    -------
    aligned : AlignedWindow
        The noisy frames (ADU) aligned onto the middle one, masks and shifts.
    target : (size, size) float64 ndarray
        Noise-free middle frame without motion blur, in ADU.
    info : dict
        Specimen kind, dose, speed, jitter, true offsets relative to the middle.

    Examples
    --------
    >>> aw, target, info = simulated_window(0, size=64, frames=5)
    >>> aw.frames.shape, target.shape, aw.reference
    ((5, 64, 64), (64, 64), 2)
    """
    gen = sim.as_rng(rng)
    n = int(size or recipe.size)
    t = int(frames or recipe.frames)
    lo, hi = recipe.dose_range
    dose = float(math.exp(gen.uniform(math.log(lo), math.log(hi))))
    speed = float(gen.uniform(*recipe.speed_range))
    angle = float(gen.uniform(0, 2 * math.pi))
    jitter = float(gen.uniform(*recipe.jitter_range))
    velocity = (speed * math.sin(angle), speed * math.cos(angle))
    travel = [abs(v) * (t + 2) + 6 * jitter * t + 40 for v in velocity]
    spec_shape = (n + int(travel[0]) + 16, n + int(travel[1]) + 16)
    if specimen is None:
        clean, spec_info = sim.random_specimen(spec_shape, rng=gen, kinds=recipe.kinds)
        kind = spec_info.kind
    else:
        clean, kind = np.asarray(specimen(gen, spec_shape), dtype=np.float64), "user"
    config = sim.random_acquisition_config(gen, modality="tem").replace(dose=dose)
    noisy, sharp, offsets = sim.moving_stage_stream(
        clean,
        n_frames=t,
        frame_shape=(n, n),
        velocity_px_per_frame=velocity,
        jitter=jitter,
        jitter_time=float(gen.uniform(0.5, 3.0)),
        exposure_fraction=float(gen.uniform(*recipe.exposure_range)),
        config=config,
        rng=gen,
    )
    mid = t // 2
    optical = config.kernel()
    clear = sharp[mid] if optical is None else sim.blur(sharp[mid], optical)
    c = config
    target = c.gain * (c.dose * np.maximum(clear, 0.0) + c.dark_current) + c.offset
    aligned = align_window(np.asarray(noisy, dtype=np.float64))
    info = {
        "kind": kind,
        "dose": dose,
        "speed": speed,
        "jitter": jitter,
        "offsets": offsets - offsets[mid],
    }
    return aligned, target, info


def _normalise(aligned: AlignedWindow, rule: dict):
    lo, scale = normalisation_of(aligned.frames[aligned.reference], rule)
    return ((aligned.frames - lo) / scale).astype(np.float32), lo, scale


# --------------------------------------------------------------------------- prediction
def _run(model, frames, masks, motion, base) -> np.ndarray:
    import torch

    dev = model.device

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(dev)

    with torch.inference_mode():
        y = model.net(tensor(frames), tensor(masks), tensor(motion), tensor(base))
    return y[:, 0].float().cpu().numpy()


def predict_burst(model, aligned: AlignedWindow, *, tile: int = 512, overlap: int = 64):
    """The burst network's restoration of an aligned window (float32, input units).

    Frames are normalised with the middle frame's percentiles, padded by
    reflection to a multiple of the network's stride and, when larger than
    ``tile``, predicted in overlapping tiles blended like
    :func:`~em_restore.backend.models.inference.predict_frame`.
    """
    stride = int(model.net.stride)
    if tile % stride or overlap % stride or not 0 <= overlap < tile:
        raise ValueError(f"tile and overlap must be multiples of {stride} with overlap < tile.")
    xn, lo, scale = _normalise(aligned, model.config.normalisation)
    masks = aligned.masks.astype(np.float32)
    motion = window_velocity(aligned.shifts)[None]
    base = ((fuse_wiener(aligned) - lo) / scale).astype(np.float32)[None]
    h, w = xn.shape[1:]
    ph, pw = -h % stride, -w % stride
    if ph or pw:
        pad = ((0, 0), (0, ph), (0, pw))
        mode = "reflect" if min(h, w) > max(ph, pw) else "symmetric"
        xn, masks = np.pad(xn, pad, mode=mode), np.pad(masks, pad, mode=mode)
        base = np.pad(base, pad, mode=mode)
    H, W = xn.shape[1:]
    if max(H, W) <= tile:
        y = _run(model, xn[None], masks[None], motion, base[None])[0]
    else:
        acc = np.zeros((H, W))
        wsum = np.zeros((H, W))
        th, tw = min(tile, H), min(tile, W)
        for y0, x0 in tile_grid((H, W), tile, overlap):
            sl = (slice(None), slice(y0, y0 + th), slice(x0, x0 + tw))
            o = _run(model, xn[sl][None], masks[sl][None], motion, base[sl][None])[0]
            wt = blend_window(tile, overlap, (y0 > 0, y0 + th < H, x0 > 0, x0 + tw < W))
            acc[sl[1:]] += wt[:th, :tw] * o
            wsum[sl[1:]] += wt[:th, :tw]
        y = acc / wsum
    return (np.asarray(y[:h, :w], dtype=np.float64) * scale + lo).astype(np.float32)


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class BurstTrainConfig(StepConfig):
    """How a burst network is trained (recorded in the model's config)."""

    architecture: str = "burst_dense_unet"
    steps: int = 3000
    patch: int = 64
    warmup: int = 200
    pool: int = 800
    val_size: int = 96
    min_frames: int = 3
    max_frames: int = 7
    ssim_weight: float = 1.0
    val_windows: int = 24
    val_frames: int = 5
    recipe: BurstRecipe = field(default_factory=BurstRecipe)


def _check(cfg: BurstTrainConfig, stride: int) -> None:
    for name in ("steps", "batch", "patch", "pool", "val_windows", "val_size", "val_every"):
        v = getattr(cfg, name)
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{name} must be a positive integer; got {v!r}.")
    if not 2 <= cfg.min_frames <= cfg.max_frames <= cfg.recipe.frames:
        raise ValueError(
            f"need 2 <= min_frames <= max_frames <= recipe.frames; got {cfg.min_frames}, "
            f"{cfg.max_frames}, {cfg.recipe.frames}."
        )
    if cfg.patch > cfg.recipe.size or cfg.patch % stride or cfg.val_size % stride:
        raise ValueError(
            f"patch and val_size must be multiples of the network stride {stride}, and patch "
            f"<= recipe.size ({cfg.recipe.size})."
        )
    if not (isinstance(cfg.warmup, int) and 0 <= cfg.warmup <= cfg.steps):
        raise ValueError(f"warmup must be an integer in [0, steps]; got {cfg.warmup!r}.")


def _sample(a: AlignedWindow, target: np.ndarray, rule: dict):
    xn, lo, scale = _normalise(a, rule)
    return xn, a.masks.copy(), ((target - lo) / scale).astype(np.float32), lo, scale


def _sub_window(a: AlignedWindow, k: int) -> AlignedWindow:
    """The ``k`` frames of ``a`` centred on its reference (reference stays the middle)."""
    first = a.reference - k // 2
    sl = slice(first, first + k)
    return AlignedWindow(a.frames[sl], a.masks[sl], a.shifts[sl], k // 2)


def iter_train_burst(
    cfg: BurstTrainConfig, **options
) -> Generator[TrainStep | Validation, None, TrainResult]:
    """Train a burst network on simulated streams (see module doc).

    ``Validation.loss`` is ``1 - SSIM`` (normalised units) and ``psnr`` the mean
    PSNR in ADU against the data range of the target; the best checkpoint is the
    one with the highest validation SSIM. ``options`` (``log``, ``device``,
    ``on_best``, ``checkpoint``, ``resume``) are :func:`~.loop.iter_validated`'s, as
    for the denoisers: a resumed run ends bit-identical to an uninterrupted one.
    Closing the generator stops training.
    """
    return (yield from iter_validated(cfg, partial(_prepare_burst, cfg), **options))


def _prepare_burst(cfg: BurstTrainConfig, dev, say):
    """The network, the simulated windows and validation set, the loss and the score."""
    import torch

    torch.manual_seed(cfg.seed)
    net = build_network(cfg.architecture, cfg.arch_params).to(dev)
    _check(cfg, int(net.stride))
    rule = cfg.normalisation

    rec = cfg.recipe
    say(f"simulating {cfg.pool} training windows of {rec.frames} x {rec.size}²")
    n, t = rec.size, rec.frames
    pool_x = np.empty((cfg.pool, t, n, n), np.float32)
    pool_m = np.empty((cfg.pool, t, n, n), bool)
    pool_y = np.empty((cfg.pool, n, n), np.float32)
    pool_s = np.empty((cfg.pool, t, 2), np.float64)
    ks = range(cfg.min_frames, cfg.max_frames + 1)
    pool_b = np.empty((cfg.pool, len(ks), n, n), np.float32)  # Wiener base per size
    for i in range(cfg.pool):
        a, target, _ = simulated_window(np.random.default_rng([cfg.seed, 11, i]), rec)
        pool_x[i], pool_m[i], pool_y[i], lo, scale = _sample(a, target, rule)
        pool_s[i] = a.shifts
        for j, k in enumerate(ks):
            pool_b[i, j] = (fuse_wiener(_sub_window(a, k)) - lo) / scale
        if (i + 1) % 100 == 0:
            say(f"  {i + 1}/{cfg.pool}")
    say(f"simulating {cfg.val_windows} validation windows of {cfg.val_frames} frames")
    val = []
    for i in range(cfg.val_windows):
        a, target, _ = simulated_window(
            np.random.default_rng([cfg.seed, 13, i]),
            rec,
            size=cfg.val_size,
            frames=cfg.val_frames,
        )
        xn, m, yn, lo, scale = _sample(a, target, rule)
        base = (fuse_wiener(a) - lo) / scale
        val.append((xn, m, yn, lo, scale, target, window_velocity(a.shifts), base))
    vx = torch.from_numpy(np.stack([v[0] for v in val])).to(dev)
    vv = torch.from_numpy(np.stack([v[6] for v in val]).astype(np.float32)).to(dev)
    vbase = torch.from_numpy(np.stack([v[7] for v in val])[:, None].astype(np.float32)).to(dev)
    vm = torch.from_numpy(np.stack([v[1] for v in val]).astype(np.float32)).to(dev)
    vy = torch.from_numpy(np.stack([v[2] for v in val])[:, None]).to(dev)

    def evaluate() -> tuple[float, float]:
        """``1 - SSIM`` (normalised units) and the mean PSNR in ADU."""
        with torch.inference_mode():
            outs = torch.cat(
                [
                    net(vx[i : i + 4], vm[i : i + 4], vv[i : i + 4], vbase[i : i + 4])
                    for i in range(0, len(val), 4)
                ]
            )
            ssim = float(ssim_torch(outs, vy, data_range=1.0).mean())
        outs_np = outs[:, 0].cpu().numpy()
        psnr = float(
            np.mean([range_psnr(o * v[4] + v[3], v[5]) for o, v in zip(outs_np, val, strict=True)])
        )
        return 1.0 - ssim, psnr

    p = cfg.patch

    def loss_of(step: int):
        g = np.random.default_rng([cfg.seed, 12, step])
        k = int(g.integers(cfg.min_frames, cfg.max_frames + 1))
        first = t // 2 - k // 2
        idx = g.integers(cfg.pool, size=cfg.batch)
        ys = g.integers(n - p + 1, size=cfg.batch)
        xs = g.integers(n - p + 1, size=cfg.batch)
        rots = g.integers(8, size=cfg.batch)
        xb, mb, yb, vb, bb = [], [], [], [], []
        for i, y0, x0, r in zip(idx, ys, xs, rots, strict=True):
            sl = (slice(first, first + k), slice(y0, y0 + p), slice(x0, x0 + p))
            xb.append([dihedral(f, r) for f in pool_x[i][sl]])
            mb.append([dihedral(f, r) for f in pool_m[i][sl]])
            yb.append(dihedral(pool_y[i][sl[1:]], r))
            vb.append(dihedral_vec(window_velocity(pool_s[i][first : first + k]), r))
            bb.append(dihedral(pool_b[i, k - cfg.min_frames][sl[1:]], r))
        xt = torch.from_numpy(np.array(xb, dtype=np.float32)).to(dev)
        mt = torch.from_numpy(np.array(mb, dtype=np.float32)).to(dev)
        vt = torch.from_numpy(np.array(vb, dtype=np.float32)).to(dev)
        bt = torch.from_numpy(np.array(bb, dtype=np.float32)[:, None]).to(dev)
        yt = torch.from_numpy(np.array(yb, dtype=np.float32)[:, None]).to(dev)
        pred = net(xt, mt, vt, bt)
        loss = torch.nn.functional.l1_loss(pred, yt)
        if cfg.ssim_weight:
            loss = loss + cfg.ssim_weight * (1 - ssim_torch(pred, yt).mean())
        return loss

    return net, loss_of, evaluate


def train_burst(cfg: BurstTrainConfig, *, on_event=None, **kw):
    """:func:`iter_train_burst` run to the end (``kw``: its options); ``on_event`` sees
    every event."""
    return run_training(iter_train_burst(cfg, **kw), on_event)
