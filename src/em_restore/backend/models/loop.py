"""The training step, written once for every trainer.

The bundled denoisers (:mod:`.training`), the burst network (:mod:`.burst`) and
"train your own" (:mod:`.fit`) differ in their data, losses and validation; what
they share lives here:

* :class:`Loop`: Adam, a linear warm-up then a cosine decay of the learning rate
  over the planned steps (:func:`cosine_lr`), gradient clipping, the best weights
  seen so far, and the state an interrupted run needs to go on;
* :func:`deterministic`: torch's deterministic algorithms switched on for the run
  (and restored after), so that a run on the CPU is bit-reproducible and a resumed
  run ends with the same weights as an uninterrupted one; on a GPU, where some
  kernels have no deterministic variant, it warns instead of failing;
* :func:`iter_steps`: steps with a validation every ``val_every`` steps and at the
  end, for the trainers that validate by step;
* checkpoints: :func:`save_checkpoint` (atomic), :func:`load_training_state`
  (torch's restricted unpickler, no code runs) and :func:`check_same_settings`
  (a checkpoint made with other settings is refused in one line);
* the events every trainer yields (:class:`TrainStep`, :class:`Validation`) and
  :func:`run_training`, which drives a trainer to its result.

Every random draw of the trainers comes from ``numpy`` generators seeded by
``(seed, purpose, index)``; the loop draws nothing itself.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..._atomic import atomic_path
from .._progress import drive

__all__ = [
    "Loop",
    "StepConfig",
    "TrainResult",
    "TrainStep",
    "Validation",
    "check_same_settings",
    "config_dict",
    "cosine_lr",
    "cpu_state",
    "deterministic",
    "iter_steps",
    "iter_validated",
    "load_training_state",
    "range_psnr",
    "resume_steps",
    "run_training",
    "save_checkpoint",
    "save_steps",
]


@dataclass(frozen=True)
class TrainStep:
    """One optimisation step done."""

    step: int
    total: int
    loss: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class Validation:
    """Validation after ``step`` steps: the trainer's validation loss (lower is better)
    and mean PSNR in dB."""

    step: int
    total: int
    loss: float
    psnr: float
    best: bool


@dataclass
class TrainResult:
    """What a step-validated trainer returns: the network with its best weights."""

    net: object  # the network holding the best checkpoint's weights
    best_step: int
    best_loss: float
    best_psnr: float
    history: list = field(default_factory=list)
    seconds: float = 0.0

    def record(self, config) -> dict:
        """JSON-able training record for the model config."""
        import torch

        return {
            "data": "em_restore.backend.simulate only (no third-party images)",
            "config": config.to_dict(),
            "best_step": self.best_step,
            "best_val_l1": round(self.best_loss, 6),
            "best_val_psnr_db": round(self.best_psnr, 3),
            "seconds": round(self.seconds, 1),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "validation": [
                {"step": v.step, "l1": round(v.loss, 6), "psnr": round(v.psnr, 3)}
                for v in self.history
                if isinstance(v, Validation)
            ],
        }


def config_dict(cfg) -> dict:
    """A training config dataclass as JSON-able dict (its recipe's tuples as lists)."""
    d = asdict(cfg)
    d["recipe"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["recipe"].items()}
    return d


@dataclass(frozen=True)
class StepConfig:
    """What every step-validated trainer is told (:class:`~.training.TrainConfig`,
    :class:`~.burst.BurstTrainConfig` add their data); defaults: the denoisers'."""

    architecture: str = "fast_denoiser"
    arch_params: dict = field(default_factory=dict)
    steps: int = 4000
    batch: int = 8
    patch: int = 96
    lr: float = 1e-3
    lr_min: float = 1e-5
    clip: float = 1.0
    warmup: int = 0
    pool: int = 2048
    val_size: int = 128
    val_every: int = 250
    seed: int = 0
    normalisation: dict = field(
        default_factory=lambda: {"kind": "percentile", "low": 0.1, "high": 99.9}
    )

    def to_dict(self) -> dict:
        return config_dict(self)


def cosine_lr(step: int, total: int, lr: float, lr_min: float, warmup: int = 0) -> float:
    """Learning rate of step ``step`` (1-based) of ``total``: cosine from ``lr`` down
    to ``lr_min``, scaled linearly from 0 over the first ``warmup`` steps (long runs
    at a high rate diverge otherwise).

    Examples
    --------
    >>> cosine_lr(1, 100, 1e-3, 1e-5), round(cosine_lr(101, 100, 1e-3, 1e-5), 8)
    (0.001, 1e-05)
    >>> cosine_lr(1, 100, 1e-3, 1e-5, warmup=4)
    0.00025
    """
    rate = lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * (step - 1) / total))
    if step <= warmup:
        rate *= step / warmup
    return rate


def range_psnr(x: np.ndarray, truth: np.ndarray) -> float:
    """PSNR (dB) of ``x`` against ``truth``, with the truth's own range as the peak."""
    rng = float(np.ptp(truth)) or 1.0
    mse = float(np.mean((x.astype(np.float64) - truth) ** 2))
    return 10 * math.log10(rng * rng / max(mse, 1e-20))


def cpu_state(net) -> dict:
    """A detached CPU copy of a network's weights and buffers."""
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


@contextmanager
def deterministic(device):
    """Torch's deterministic algorithms on for the block (warn-only off the CPU)."""
    import torch

    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=getattr(device, "type", "cpu") != "cpu")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


class Loop:
    """One run's optimiser and training step.

    ``total`` is the number of planned steps (the cosine's length). ``step(k,
    loss_of)`` sets step ``k``'s rate, evaluates ``loss_of()`` (which draws the batch
    and runs the network), back-propagates, clips the gradient norm to ``clip`` and
    updates the weights. ``best_state`` holds the best weights so far (the start
    weights until :meth:`keep_best`); :meth:`finish` puts them back into the network.
    """

    def __init__(
        self, net, *, lr: float, lr_min: float, warmup: int, total: int, clip: float
    ) -> None:
        import torch

        self.net = net
        self.opt = torch.optim.Adam(net.parameters(), lr=lr)
        self.lr, self.lr_min, self.warmup, self.total, self.clip = lr, lr_min, warmup, total, clip
        self.best_state = cpu_state(net)

    def rate(self, step: int) -> float:
        return cosine_lr(step, self.total, self.lr, self.lr_min, self.warmup)

    def step(self, step: int, loss_of: Callable[[], object]) -> TrainStep:
        """One optimisation step; returns its :class:`TrainStep` event."""
        import torch

        t0 = time.perf_counter()
        lr = self.rate(step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        loss = loss_of()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        self.opt.step()
        return TrainStep(step, self.total, loss.item(), lr, time.perf_counter() - t0)

    def keep_best(self) -> None:
        """The network's current weights are the best so far."""
        self.best_state = cpu_state(self.net)

    def show_best(self, callback, *args) -> None:
        """``callback(net, *args)`` with the network in eval mode (then back to training)."""
        if callback is not None:
            self.net.eval()
            callback(self.net, *args)
            self.net.train()

    def state(self, **extra) -> dict:
        """Everything needed to go on: weights, optimiser, best weights, and ``extra``."""
        return {
            **extra,
            "net": cpu_state(self.net),
            "opt": self.opt.state_dict(),
            "best_state": self.best_state,
        }

    def restore(self, state: dict) -> None:
        """Weights, optimiser and best weights from a :meth:`state`."""
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.best_state = state["best_state"]

    def finish(self):
        """The network holding the best weights, on the CPU, in eval mode."""
        self.net.load_state_dict(self.best_state)
        return self.net.cpu().eval()


def iter_steps(
    loop: Loop,
    first: int,
    loss_of: Callable[[int], object],
    *,
    val_every: int,
    validate: Callable[[int], Validation],
    history: list,
    save: Callable[[int], None] | None = None,
) -> Generator[TrainStep | Validation, None, None]:
    """Steps ``first`` … ``loop.total``, a validation (then ``save``) every
    ``val_every`` steps and after the last; every event goes into ``history``."""
    for step in range(first, loop.total + 1):
        event = loop.step(step, lambda step=step: loss_of(step))
        history.append(event)
        yield event
        if step % val_every == 0 or step == loop.total:
            event = validate(step)
            if save is not None:
                save(step)
            yield event


def resume_steps(loop: Loop, checkpoint, config: dict, say) -> tuple[list, list, int, float]:
    """A step-validated run (:mod:`.training`, :mod:`.burst`) going on from ``checkpoint``:
    restores ``loop`` and returns ``(best, validations, first step, seconds so far)``."""
    state = load_training_state(checkpoint)
    check_same_settings(checkpoint, state["config"], config)
    loop.restore(state)
    history = [Validation(**v) for v in state["validations"]]
    first = int(state["step"]) + 1
    say(f"resuming after step {first - 1} of {loop.total} from {checkpoint}")
    return list(state["best"]), history, first, float(state["seconds"])


def save_steps(
    checkpoint, loop: Loop, config: dict, step: int, best, history: list, seconds: float
) -> None:
    """The state :func:`resume_steps` goes on from, after validation ``step``."""
    if checkpoint is not None:
        save_checkpoint(
            checkpoint,
            loop.state(
                config=config,
                step=step,
                best=list(best),
                validations=[asdict(v) for v in history if isinstance(v, Validation)],
                seconds=seconds,
            ),
        )


def iter_validated(
    cfg: StepConfig,
    prepare: Callable,
    *,
    log: Callable[[str], None] | None = None,
    device=None,
    on_best=None,
    checkpoint=None,
    resume: bool = False,
) -> Generator[TrainStep | Validation, None, TrainResult]:
    """A step-validated run (the bundled denoisers, the burst network).

    ``prepare(device, say)`` builds the network and the data (torch seeded and
    deterministic already) and returns ``(net, loss_of, evaluate)``. Then
    ``cfg.steps`` steps of ``loss_of(step)``; ``evaluate()`` (the network in eval
    mode) gives ``(validation loss, PSNR)`` before the first step, every
    ``cfg.val_every`` steps and after the last. The lowest loss is the best: its
    weights are kept (``on_best(net, event)`` sees them at once) and returned.

    ``log`` receives one-line messages. ``device``: ``None`` = CPU (the reproducible
    path), or ``"auto"`` / ``"cuda"`` / ``"mps"``. ``checkpoint`` is rewritten at
    every validation with everything needed to go on; ``resume=True`` continues from
    it, and the finished run is bit-identical to an uninterrupted one (a checkpoint
    of other settings is refused in one line). Closing the generator stops training.
    """
    from .device import select_device

    def say(msg: str) -> None:
        if log is not None:
            log(msg)

    dev = select_device("cpu" if device is None else device)
    with deterministic(dev):
        t_start = time.perf_counter()
        net, loss_of, evaluate = prepare(dev, say)
        return (
            yield from _iter_validated(
                cfg, net, loss_of, evaluate, t_start, on_best, checkpoint, resume, say
            )
        )


def _iter_validated(cfg, net, loss_of, evaluate, t_start, on_best, checkpoint, resume, say):
    loop = Loop(
        net, lr=cfg.lr, lr_min=cfg.lr_min, warmup=cfg.warmup, total=cfg.steps, clip=cfg.clip
    )
    best, history, first, elapsed0 = [math.inf, -math.inf, 0], [], 1, 0.0  # loss, psnr, step
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        best, history, first, elapsed0 = resume_steps(loop, checkpoint, cfg.to_dict(), say)
    t_start -= elapsed0

    def validate(step: int) -> Validation:
        net.eval()
        loss, psnr = evaluate()
        net.train()
        is_best = loss < best[0]
        if is_best:
            best[:] = [loss, psnr, step]
            loop.keep_best()
        event = Validation(step, cfg.steps, loss, psnr, is_best)
        history.append(event)
        if is_best:
            loop.show_best(on_best, event)
        return event

    def save(step: int) -> None:
        seconds = time.perf_counter() - t_start
        save_steps(checkpoint, loop, cfg.to_dict(), step, best, history, seconds)

    net.train()
    if first == 1:
        yield validate(0)
    yield from iter_steps(
        loop, first, loss_of, val_every=cfg.val_every, validate=validate, history=history, save=save
    )
    net = loop.finish()
    return TrainResult(net, best[2], best[0], best[1], history, time.perf_counter() - t_start)


def check_same_settings(path, saved: dict, current: dict, names: dict | None = None) -> None:
    """Refuse (``ValueError``, one line) a checkpoint made with other settings.

    A setting the checkpoint does not name (one added since it was written) matches
    when the current value is its "off" value (``None``, 0, ``False``, empty).
    """
    saved = _with_new_defaults(saved, current)
    if saved == current:
        return
    names = names or {}
    diff = sorted(names.get(k, k) for k, v in current.items() if saved.get(k) != v)
    raise ValueError(
        f"the checkpoint {path} was made with other settings "
        f"({', '.join(diff) or 'unknown'}); resume with the same settings or "
        "train into another folder."
    )


def _with_new_defaults(saved, current):
    if not (isinstance(saved, dict) and isinstance(current, dict)):
        return saved
    out = dict(saved)
    for k, v in current.items():
        if k not in out and not v:
            out[k] = v
        elif k in out:
            out[k] = _with_new_defaults(out[k], v)
    return out


def save_checkpoint(path, state: dict) -> None:
    """Write a training checkpoint atomically (a crash leaves the previous one whole)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path) -> dict:
    """A training checkpoint, read with torch's restricted unpickler (tensors, numbers,
    strings, containers: no code runs); anything else is refused in one line."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{path} is not a training checkpoint em-restore wrote, or it is damaged "
            f"({first[:120]}); delete it and train without --resume"
        ) from None
    if not isinstance(state, dict) or "config" not in state:
        raise ValueError(
            f"{path} is not a training checkpoint em-restore wrote; delete it and train "
            "without --resume"
        )
    return state


def run_training(gen, on_event=None):
    """Drive a training generator to the end, showing ``on_event`` every event."""
    return drive(gen, on_event)
