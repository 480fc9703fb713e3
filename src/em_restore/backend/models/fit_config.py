"""The "train your own" request and what it reports: :class:`FitConfig` (checked
without pixels, with the defaults every front end shares), the :class:`Epoch`
event and the :class:`FitResult` (see :mod:`.fit` for the training itself)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DATA_MODES",
    "DEFAULT_BURST_MODEL",
    "DOSE_DEFAULTS",
    "LOSSES",
    "LR_FINE_TUNE",
    "LR_SCRATCH",
    "MODES",
    "POOL_DEFAULTS",
    "RESUMABLE",
    "SCRATCH_ARCHITECTURE",
    "TASKS",
    "TASK_ARCHITECTURES",
    "Epoch",
    "FitConfig",
    "FitResult",
    "check_task_mode",
    "rounded",
]

MODES = ("paired", "self", "simulated", "burst")
LOSSES = ("auto", "l1", "l2", "ssim", "l1+ssim", "gradient")
#: Settings that may change when a run is resumed.
RESUMABLE = ("epochs", "max_minutes")
#: Adam's learning rate when ``lr`` is None: from random weights, and when fine-tuning
#: (lower, so the first steps keep what the start model knows; bench_train finetune).
LR_SCRATCH = 1e-3
LR_FINE_TUNE = 3e-4
#: The bundled burst network (the start of a fine-tuned burst run, the burst default).
DEFAULT_BURST_MODEL = "em-burst"
#: The network trained from scratch when no architecture is chosen, and the choices.
SCRATCH_ARCHITECTURE = {"denoise": "fast_denoiser", "burst": "burst_dense_unet"}
TASK_ARCHITECTURES = {"denoise": ("fast_denoiser", "unet_resnet18"), "burst": ("burst_dense_unet",)}
#: Data modes of "train your own" and the tasks they train.
DATA_MODES = ("paired", "self", "simulated")
TASKS = ("denoise", "burst")
#: Simulated dose range (e⁻/px) and pool size by task, when the user gives none.
DOSE_DEFAULTS = {"denoise": (1.0, 100.0), "burst": (5.0, 300.0)}
POOL_DEFAULTS = {"denoise": 256, "burst": 200}


def check_task_mode(task: str, mode: str, fix: str) -> None:
    """Burst networks train on simulated streams only; ``fix`` says how, in the
    front end's words (a CLI option, a widget menu)."""
    if task not in TASKS or mode not in DATA_MODES:
        raise ValueError(
            f"task must be one of {', '.join(TASKS)} and mode one of {', '.join(DATA_MODES)}; "
            f"got {task!r}, {mode!r}."
        )
    if task == "burst" and mode != "simulated":
        raise ValueError(f"burst networks train on simulated streams; {fix}")


@dataclass(frozen=True)
class FitConfig:
    """How a network is trained on a dataset (recorded in the model's config).

    ``start``: the model to fine-tune (a registered name or a model folder); None:
    the bundled model of the task and modality. ``from_scratch``: random weights
    instead. ``architecture`` / ``arch_params``: None / empty take the start
    model's (from scratch: :data:`SCRATCH_ARCHITECTURE` with its defaults); a
    different choice while fine-tuning is refused. ``lr`` None: :data:`LR_FINE_TUNE`
    or :data:`LR_SCRATCH`. :func:`check_fit` turns it into the resolved config that
    is trained and recorded.
    """

    architecture: str | None = None
    arch_params: dict = field(default_factory=dict)
    start: str | None = None
    from_scratch: bool = False
    loss: str = "auto"
    epochs: int = 20
    steps_per_epoch: int = 50
    batch: int = 8
    patch: int = 64
    lr: float | None = None
    lr_min: float = 1e-5
    warmup: int = 50
    clip: float = 1.0
    val_crop: int = 128
    patience: int = 0  # epochs without improvement before stopping; 0: never
    max_minutes: float | None = None
    preview: int = 0  # index of the validation crop shown as preview
    seed: int = 0

    @property
    def learning_rate(self) -> float:
        """``lr``, or its default for fine-tuning / training from scratch."""
        if self.lr is not None:
            return self.lr
        return LR_SCRATCH if self.from_scratch else LR_FINE_TUNE

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch", "patch", "val_crop"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ValueError(f"{name} must be a positive integer; got {v!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}.")
        lr = self.learning_rate
        if not (0 < self.lr_min <= lr):
            raise ValueError(f"need 0 < lr_min <= lr; got lr={lr}, lr_min={self.lr_min}.")
        if self.from_scratch and self.start is not None:
            raise ValueError(
                f"start={self.start!r} and from_scratch=True exclude each other; drop one "
                "(--from MODEL or --from-scratch)."
            )
        if not (isinstance(self.patience, int) and self.patience >= 0):
            raise ValueError(f"patience must be an integer >= 0; got {self.patience!r}.")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0 (or None); got {self.max_minutes!r}.")


@dataclass(frozen=True)
class Epoch:
    """One epoch done: losses, validation, best-so-far, timing and a preview."""

    epoch: int
    epochs: int
    step: int
    train_loss: float
    val_loss: float
    val_psnr: float | None  # dB in ADU against the target's range; None if self-supervised
    val_ssim: float | None  # normalised units
    best: bool
    best_epoch: int
    lr: float
    seconds: float  # since training started (data preparation excluded)
    eta_s: float
    preview: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> int:
        return self.epoch

    @property
    def total(self) -> int:
        return self.epochs

    @property
    def eta(self) -> str:
        """The ETA as ``m:ss``."""
        return _clock(self.eta_s)

    @property
    def message(self) -> str:
        score = (
            f"val SSIM {self.val_ssim:.3f}"
            if self.val_ssim is not None
            else (f"val loss {self.val_loss:.4g}")
        )
        return f"epoch {self.epoch}/{self.epochs}, {score}, ETA {self.eta}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("preview")
        return d


def _clock(seconds: float) -> str:
    s = max(round(seconds), 0)
    return f"{s // 60}:{s % 60:02d}"


@dataclass
class FitResult:
    net: Any  # holding the best epoch's weights, on CPU, eval mode
    config: FitConfig
    loss: str
    data: dict
    best_epoch: int
    best_val_loss: float
    best_psnr: float | None
    best_ssim: float | None
    input_psnr: float | None
    input_ssim: float | None
    history: list = field(default_factory=list)
    seconds: float = 0.0
    stop_reason: str = "completed"
    # fine-tuned: the start model's name, weights' SHA-256 and validation scores
    start: dict | None = None

    def origin(self) -> str:
        """What the run started from, and (fine-tuned) what that model scored before.

        Examples
        --------
        >>> r = FitResult(None, FitConfig(architecture="fast_denoiser"), "l1", {}, 3, 0.1,
        ...               None, None, None, None)
        >>> r.origin()
        'from scratch (fast_denoiser)'
        """
        s = self.start
        if s is None:
            return f"from scratch ({self.config.architecture})"
        before = (
            f"val PSNR {s['val_psnr_db']:.2f} dB before"
            if s["val_psnr_db"] is not None
            else f"val loss {s['val_loss']:.5f} before"
        )
        kept = "; no epoch beat it, its weights are kept" if self.best_epoch == 0 else ""
        return f"fine-tuned from {s['name']} ({before}){kept}"

    def record(self) -> dict:
        """JSON-able training record for the model config and card."""
        import platform

        import torch

        origin = {}
        if self.start is not None:
            s = self.start
            origin = {
                "fine_tuned_from": {"name": s["name"], "weights_sha256": s["weights_sha256"]},
                "start_val_loss": rounded(s["val_loss"]),
                "start_val_psnr_db": rounded(s["val_psnr_db"], 3),
                "start_val_ssim": rounded(s["val_ssim"], 4),
            }
        return {
            "data": self.data,
            "config": self.config.to_dict(),
            **origin,
            "loss": self.loss,
            "best_epoch": self.best_epoch,
            "best_val_loss": rounded(self.best_val_loss),
            "best_val_psnr_db": rounded(self.best_psnr, 3),
            "best_val_ssim": rounded(self.best_ssim, 4),
            "input_val_psnr_db": rounded(self.input_psnr, 3),
            "input_val_ssim": rounded(self.input_ssim, 4),
            "epochs_run": len(self.history),
            "stop_reason": self.stop_reason,
            "seconds": round(self.seconds, 1),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "history": [
                {k: rounded(v) for k, v in e.to_dict().items() if k not in ("epochs",)}
                for e in self.history
            ],
        }


def rounded(v, digits: int = 6):
    """A float rounded to ``digits`` for a JSON record (None and non-floats as they are)."""
    return None if v is None else round(float(v), digits) if isinstance(v, float) else v
