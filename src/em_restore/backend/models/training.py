"""Training restoration networks on the project's physics-based simulator.

Headless and reproducible: every random draw comes from ``numpy`` generators seeded
by ``(seed, purpose, index)`` and from ``torch.manual_seed(seed)``, with
``torch.use_deterministic_algorithms(True)``, so the same :class:`TrainConfig`
on the same torch build and thread count gives bit-identical weights (tested).

Data (:func:`simulated_pair`): a random specimen
(:func:`~em_restore.backend.simulate.random_specimen`: nanoparticles, vesicles,
grids, tissue, atomic lattices) recorded by a random acquisition
(:func:`~em_restore.backend.simulate.random_acquisition_config` for the modality,
dose log-uniform in :attr:`SimulationRecipe.dose_range`). The
input is the noisy recording in ADU; the target is the noise-free expectation
in ADU (blur kept: this is denoising, not deblurring). Both are normalised with
the input's percentiles (the model's normalisation rule, as at inference).

Training (:func:`iter_train`): a pool of simulated pairs, random crops with the 8
flips/rotations, L1 loss, Adam with a cosine learning-rate decay, gradient
clipping; a fixed validation set scored every ``val_every`` steps, and the
**best** validation checkpoint is what is returned. The generator yields typed
events (:class:`TrainStep`, :class:`Validation`) and can be stopped between
yields; :func:`train` runs it to the end.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from .. import simulate as sim
from .augment import dihedral
from .inference import clean_outliers
from .loop import (
    StepConfig,
    TrainResult,
    TrainStep,
    Validation,
    iter_validated,
    range_psnr,
    run_training,
)
from .nets import build_network
from .normalise import normaliser

__all__ = [
    "SimulationRecipe",
    "TrainConfig",
    "TrainResult",
    "TrainStep",
    "Validation",
    "iter_train",
    "run_training",
    "simulated_pair",
    "train",
]


@dataclass(frozen=True)
class SimulationRecipe:
    """What the simulator draws for training and validation.

    ``simulator="classic"``: :func:`~em_restore.backend.simulate.random_specimen` of
    ``kinds`` through :func:`~em_restore.backend.simulate.random_acquisition_config`.
    ``simulator="wide"``: :func:`~em_restore.backend.simulate.wide.wide_pair`, the
    specimen families ``specimens`` (None: all) and every distortion family, except
    ``exclude_specimens`` /
    ``exclude_distortions`` (the shipped models leave out
    :data:`~em_restore.backend.simulate.wide.HELD_OUT`, which validates them).
    ``classic_fraction`` (wide only): this fraction of the pairs, drawn at random,
    come from the classic simulator instead (same modalities and ``kinds``, dose in
    ``dose_range`` clipped to the classic 0.5-1000 e⁻/px), so that a network fine-tuned
    on the wide data keeps what it knew of the classic ones.
    """

    modalities: tuple[str, ...] = ("tem", "stem", "sem")
    dose_range: tuple[float, float] = (0.5, 1000.0)
    kinds: tuple[str, ...] = sim.SPECIMEN_KINDS
    image_size: int = 160
    simulator: str = "classic"
    specimens: tuple[str, ...] | None = None
    exclude_specimens: tuple[str, ...] = ()
    exclude_distortions: tuple[str, ...] = ()
    classic_fraction: float = 0.0


@dataclass(frozen=True)
class TrainConfig(StepConfig):
    """How a network is trained (every field is recorded in the model's config).

    ``start``: the name (or folder) of a model whose weights the network starts
    from (fine-tuning; same architecture and parameters); ``None``: random weights.
    """

    val_images: int = 32
    recipe: SimulationRecipe = field(default_factory=SimulationRecipe)
    start: str | None = None


def simulated_pair(rng, recipe: SimulationRecipe, size: int | None = None):
    """One ``(noisy, expected)`` pair in ADU (float32) and its acquisition config.

    Examples
    --------
    >>> noisy, truth, cfg = simulated_pair(np.random.default_rng(0), SimulationRecipe(), 64)
    >>> noisy.shape, truth.dtype, cfg.modality in ("tem", "stem", "sem")
    ((64, 64), dtype('float32'), True)
    """
    gen = sim.as_rng(rng)
    n = int(size or recipe.image_size)
    if recipe.simulator == "wide" and recipe.classic_fraction > 0:
        # the draw happens only for a mixed recipe: pure recipes stay bit-identical
        if gen.random() < recipe.classic_fraction:
            lo, hi = recipe.dose_range
            classic = SimulationRecipe(
                modalities=recipe.modalities,
                kinds=recipe.kinds,
                dose_range=(max(lo, 0.5), max(min(hi, 1000.0), max(lo, 0.5))),
                image_size=recipe.image_size,
            )
            return simulated_pair(gen, classic, n)
    if recipe.simulator == "wide":
        from ..simulate import wide

        modality = str(recipe.modalities[gen.integers(len(recipe.modalities))])
        raw, target, info = wide.wide_pair(
            gen,
            (n, n),
            modality=modality,
            dose_range=recipe.dose_range,
            specimens=recipe.specimens,
            exclude_specimens=recipe.exclude_specimens,
            exclude_distortions=recipe.exclude_distortions,
        )
        return raw.astype(np.float32), target.astype(np.float32), info
    clean, _ = sim.random_specimen((n, n), rng=gen, kinds=recipe.kinds)
    modality = str(recipe.modalities[gen.integers(len(recipe.modalities))])
    lo, hi = recipe.dose_range
    dose = float(math.exp(gen.uniform(math.log(lo), math.log(hi))))
    config = sim.random_acquisition_config(gen, modality=modality).replace(dose=dose)
    noisy, expected = sim.simulate_acquisition(clean, config, rng=gen, return_expected=True)
    return noisy.astype(np.float32), expected.astype(np.float32), config


def _normalised(noisy: np.ndarray, expected: np.ndarray, rule: dict):
    """Input, target and :class:`Norm` as at inference: under the noise rule the
    input's outliers are cleaned as :func:`~.inference.predict_frame` cleans them
    (the percentile rule keeps the first models' recipe, which did not)."""
    norm = normaliser(noisy, rule)
    xn = norm.forward(noisy)
    if norm.kind == "noise":
        xn = clean_outliers(xn, norm.kind)
    return xn, norm.forward(expected), norm


#: A pool pair is drawn again (next attempt of its index) when its raw frame holds
#: fewer distinct values than this (quantised or clipped to nothing) ...
MIN_LEVELS = 4
#: ... or when input and target differ by more than this mean |difference| in
#: network units (a normalisation fooled by the frame; typical pairs: 0.05-0.5).
MAX_PAIR_L1 = 8.0


def _usable(noisy: np.ndarray, xn: np.ndarray, yn: np.ndarray, rule: dict) -> bool:
    if rule["kind"] != "noise":  # the first models' recipe kept every pair
        return True
    if np.unique(noisy[:: max(1, noisy.shape[0] // 32)]).size < MIN_LEVELS:
        return False
    return float(np.mean(np.abs(xn - yn))) <= MAX_PAIR_L1


def _pool_pair(cfg: TrainConfig, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Training pair ``i`` of the pool, normalised (a function of ``(seed, i)`` alone;
    an unusable draw, see :func:`_usable`, is replaced by the index's next attempt)."""
    for attempt in range(20):
        key = [cfg.seed, 1, i] if attempt == 0 else [cfg.seed, 1, i, attempt]
        noisy, expected, _ = simulated_pair(np.random.default_rng(key), cfg.recipe)
        xn, yn, _ = _normalised(noisy, expected, cfg.normalisation)
        if _usable(noisy, xn, yn, cfg.normalisation):
            break
    return xn, yn


def _pool_pairs(cfg: TrainConfig, workers: int):
    """The pool's pairs in order; ``workers > 1`` simulates them in that many processes
    (same pairs: each depends on its index only)."""
    if workers <= 1:
        for i in range(cfg.pool):
            yield _pool_pair(cfg, i)
        return
    import multiprocessing
    from functools import partial

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(partial(_pool_pair, cfg), range(cfg.pool), chunksize=16)


def _check(cfg: TrainConfig) -> None:
    for name in ("steps", "batch", "patch", "pool", "val_images", "val_size", "val_every"):
        v = getattr(cfg, name)
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{name} must be a positive integer; got {v!r}.")
    if cfg.recipe.simulator not in ("classic", "wide"):
        raise ValueError(
            f"recipe.simulator must be 'classic' or 'wide'; got {cfg.recipe.simulator!r}."
        )
    frac = cfg.recipe.classic_fraction
    if not (isinstance(frac, int | float) and 0.0 <= frac <= 1.0):
        raise ValueError(f"recipe.classic_fraction must be in [0, 1]; got {frac!r}.")
    if frac > 0 and cfg.recipe.simulator != "wide":
        raise ValueError(
            "recipe.classic_fraction mixes classic pairs into the wide simulator's; "
            f"use simulator='wide' (got {cfg.recipe.simulator!r}) or classic_fraction=0."
        )
    if cfg.recipe.specimens is not None and cfg.recipe.simulator != "wide":
        raise ValueError(
            "recipe.specimens names the wide simulator's specimen families; use "
            f"simulator='wide' (got {cfg.recipe.simulator!r}) or recipe.kinds for the "
            "classic one."
        )
    if cfg.patch > cfg.recipe.image_size:
        raise ValueError(
            f"patch ({cfg.patch}) must not exceed recipe.image_size ({cfg.recipe.image_size})."
        )
    if not (isinstance(cfg.warmup, int) and 0 <= cfg.warmup <= cfg.steps):
        raise ValueError(f"warmup must be an integer in [0, steps]; got {cfg.warmup!r}.")
    if not (0 < cfg.lr_min <= cfg.lr):
        raise ValueError(f"need 0 < lr_min <= lr; got lr={cfg.lr}, lr_min={cfg.lr_min}.")


def iter_train(
    cfg: TrainConfig,
    *,
    log=None,
    device=None,
    on_best=None,
    checkpoint=None,
    resume=False,
    workers: int = 1,
) -> Generator[TrainStep | Validation, None, TrainResult]:
    """Train on simulated pairs; yields :class:`TrainStep` / :class:`Validation`.

    Closing the generator (or simply not resuming it) stops training; the value
    returned on normal completion holds the best validated weights.
    ``log`` (optional callable) receives one-line messages (pool generation...).
    ``device``: ``None`` = CPU (the reproducible path), or ``"auto"``/``"cuda"``/...
    ``on_best`` (optional callable) receives ``(net, event)`` at each new best
    validation, with the network in eval mode holding those weights: save it there
    and an interrupted run still leaves its best checkpoint behind.
    ``checkpoint`` (optional path): rewritten at every validation with everything
    needed to go on (weights, optimiser, best weights, validation history, step);
    ``resume=True`` continues from it when it exists, and the finished run is
    bit-identical to an uninterrupted one (the pool and every batch are drawn from
    ``(seed, purpose, index)``, torch runs deterministic algorithms). The checkpoint
    must come from the same :class:`TrainConfig`; another is refused in one line.
    ``workers``: processes that simulate the pool (the pool is the same for any
    number).
    """
    _check(cfg)
    return (
        yield from iter_validated(
            cfg,
            partial(_prepare, cfg, workers),
            log=log,
            device=device,
            on_best=on_best,
            checkpoint=checkpoint,
            resume=resume,
        )
    )


def _start_weights(cfg: TrainConfig, net) -> dict:
    """The state dict of ``cfg.start``, checked against ``net`` (the configured network)."""
    from .nets import network_params
    from .store import load_model

    start = load_model(cfg.start, device="cpu")
    ours = network_params(net)
    theirs = dict(network_params(start.net))
    if start.config.architecture != cfg.architecture or theirs != dict(ours):
        raise ValueError(
            f"start={cfg.start!r} is a {start.config.architecture} "
            f"{dict(start.config.arch_params)}, not the configured {cfg.architecture} "
            f"{ours}; start from a model of the same architecture, or start=None."
        )
    if dict(start.config.normalisation) != dict(cfg.normalisation):
        raise ValueError(
            f"start={cfg.start!r} was trained with normalisation "
            f"{dict(start.config.normalisation)}, not {dict(cfg.normalisation)}; "
            "fine-tune under the same rule."
        )
    return start.net.state_dict()


def _prepare(cfg: TrainConfig, workers: int, dev, say):
    """The network, the simulated pool and validation set, the loss and the score."""
    import torch

    torch.manual_seed(cfg.seed)
    net = build_network(cfg.architecture, cfg.arch_params)
    if cfg.start is not None:
        net.load_state_dict(_start_weights(cfg, net))
        say(f"starting from the weights of {cfg.start}")
    net = net.to(dev)
    stride = int(net.stride)
    if cfg.patch % stride or cfg.val_size % stride:
        raise ValueError(f"patch and val_size must be multiples of the network stride {stride}.")
    rule = cfg.normalisation
    recipe = cfg.recipe

    say(f"simulating {cfg.pool} training pairs of {recipe.image_size}²")
    pool_x = np.empty((cfg.pool, recipe.image_size, recipe.image_size), np.float32)
    pool_y = np.empty_like(pool_x)
    for i, (xn, yn) in enumerate(_pool_pairs(cfg, workers)):
        pool_x[i], pool_y[i] = xn, yn
        if (i + 1) % 1000 == 0:
            say(f"  {i + 1}/{cfg.pool} pairs")
    say(f"simulating {cfg.val_images} validation pairs of {cfg.val_size}²")
    val = []
    for i in range(cfg.val_images):
        noisy, expected, _ = simulated_pair(
            np.random.default_rng([cfg.seed, 3, i]), recipe, cfg.val_size
        )
        xn, yn, norm = _normalised(noisy, expected, rule)
        val.append((xn, yn, norm, expected))
    val_x = torch.from_numpy(np.stack([v[0] for v in val])[:, None]).to(dev)

    size = recipe.image_size

    def evaluate() -> tuple[float, float]:
        with torch.inference_mode():
            outs = np.concatenate(
                [net(val_x[i : i + 8]).cpu().numpy()[:, 0] for i in range(0, len(val), 8)]
            )
        l1 = float(np.mean([np.mean(np.abs(o - v[1])) for o, v in zip(outs, val, strict=True)]))
        psnr = float(
            np.mean([range_psnr(v[2].inverse(o), v[3]) for o, v in zip(outs, val, strict=True)])
        )
        return l1, psnr

    def loss_of(step: int):
        g = np.random.default_rng([cfg.seed, 2, step])
        idx = g.integers(cfg.pool, size=cfg.batch)
        ys = g.integers(size - cfg.patch + 1, size=cfg.batch)
        xs = g.integers(size - cfg.patch + 1, size=cfg.batch)
        ks = g.integers(8, size=cfg.batch)
        sl = [
            (slice(y, y + cfg.patch), slice(x, x + cfg.patch)) for y, x in zip(ys, xs, strict=True)
        ]
        xb = np.stack([dihedral(pool_x[i][s], k) for i, s, k in zip(idx, sl, ks, strict=True)])
        yb = np.stack([dihedral(pool_y[i][s], k) for i, s, k in zip(idx, sl, ks, strict=True)])
        pred = net(torch.from_numpy(xb[:, None].copy()).to(dev))
        return torch.nn.functional.l1_loss(pred, torch.from_numpy(yb[:, None].copy()).to(dev))

    return net, loss_of, evaluate


def train(cfg: TrainConfig, *, on_event=None, **kw) -> TrainResult:
    """:func:`iter_train` run to the end (``kw``: its options); ``on_event`` sees every event."""
    return run_training(iter_train(cfg, **kw), on_event)
