"""Train your own restorer: one loop for paired, self-supervised, simulated and burst data.

:func:`iter_fit` trains a network on a dataset from :mod:`.datasets` and is a
generator of typed events, so a GUI, a CLI or a notebook all drive it the same way:

* :class:`~em_restore.backend.denoise.Progress` while the data are prepared;
* :class:`~.training.TrainStep` after every optimisation step;
* :class:`Epoch` after every epoch (``steps_per_epoch`` steps): mean training
  loss, validation loss, PSNR and SSIM, whether it is the best so far, the
  elapsed time and an ETA, and a preview (the network's output on one
  validation crop).

Training: random crops with the 8 flips/rotations, Adam, a linear warm-up and a
cosine decay over the planned steps, gradient clipping. Losses (``loss``):
``l1``, ``l2``, ``ssim`` (``1 - SSIM``), ``l1+ssim`` and ``gradient`` (L1 on the
image and on its finite differences, which keeps edges sharp). ``auto`` picks the
papers' choices: L1 for paired and simulated denoising (low-dose U-Net paper),
L1 + SSIM for burst deblurring (burst paper), L2 for self-supervised training.

Self-supervised (Neighbor2Neighbor, Huang et al. 2021): each 2×2 cell of a noisy
crop gives one pixel to a sub-image ``g1`` and a neighbouring one to ``g2``; with
pixel-independent noise, ``g2`` is a noisy but unbiased target for ``f(g1)``.
The loss is ``|f(g1) - g2|² + γ |f(g1) - g2 - (g1(f(y)) - g2(f(y)))|²`` (γ = 2),
whose second term corrects for ``g1`` and ``g2`` being half a pixel apart. Only
the mean is unbiased, so self-supervised training requires the L2 loss. There is
no clean reference: validation PSNR/SSIM are ``None`` and the best epoch is the
lowest validation loss on fixed held-out sub-image pairs. Noise correlated between
neighbouring pixels (scan line noise, a blurring detector) is partly learnt as
signal; use paired or simulated data for such detectors.

The best epoch (highest validation SSIM; lowest validation loss when
self-supervised) is kept: ``on_best`` sees it the moment it is reached, so a
cancelled run still leaves it behind. Early stopping after ``patience`` epochs
without improvement; ``max_minutes`` stops after the epoch that reaches it.
``checkpoint``: a file rewritten after every epoch with everything needed to
resume (weights, optimiser, best state, history); ``resume=True`` continues from
it and gives bit-identical weights to an uninterrupted run (every random draw is
seeded by ``(seed, step)``, and torch runs deterministic algorithms). ``epochs``
and ``max_minutes`` may change on resume; any other setting may not.

Fine-tuning is the default. A run starts from a model's weights (``start``: a
registered name or a model folder; by default the bundled model of the task, the
modality's default denoiser (:func:`.store.default_model_name`) or ``em-burst``),
and takes the network (architecture and hyper-parameters) and the normalisation
rule from that model's config: the data are normalised by the start model's rule,
whatever rule the dataset was built with, so the weights see inputs on the scale
they were trained on. Choosing another architecture conflicts and is refused;
``from_scratch=True`` starts from random weights of the chosen architecture
instead. The learning rate defaults to :data:`LR_FINE_TUNE` when fine-tuning and
to :data:`LR_SCRATCH` from scratch. Before the first step, a fine-tuned run scores
the start model on the validation set; that score is the best until an epoch beats
it (``best_epoch == 0`` then means no epoch did, and the start weights are kept),
so fine-tuning never hands back a model worse on the held-out data than the one it
started from. The written model's training record names its origin
(``fine_tuned_from``: name and weights' SHA-256) and the start model's validation
scores.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..._atomic import write_text_atomic
from .._progress import Progress
from .fit_config import (
    DEFAULT_BURST_MODEL,
    LOSSES,
    LR_FINE_TUNE,
    LR_SCRATCH,
    MODES,
    RESUMABLE,
    SCRATCH_ARCHITECTURE,
    Epoch,
    FitConfig,
    FitResult,
    rounded,
)
from .loop import (
    Loop,
    TrainStep,
    check_same_settings,
    deterministic,
    load_training_state,
    range_psnr,
    run_training,
    save_checkpoint,
)
from .losses import N2N_GAMMA, loss_for, loss_value, n2n_indices, n2n_subsample, ssim_torch
from .nets import build_network, network_params

__all__ = [
    "LOSSES",
    "LR_FINE_TUNE",
    "LR_SCRATCH",
    "MODES",
    "Epoch",
    "FitConfig",
    "FitPlan",
    "FitResult",
    "StartModel",
    "check_destination",
    "check_fit",
    "fit",
    "iter_fit",
    "loss_for",
    "start_model",
    "start_spec",
]


def _comparable(cfg_dict: dict) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in RESUMABLE}


def iter_fit(
    cfg: FitConfig,
    data,
    *,
    modality: str | None = None,
    device: Any = None,
    on_best=None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
) -> Generator[Progress | TrainStep | Epoch, None, FitResult]:
    """Train on ``data`` (a :mod:`.datasets` object); yields typed events (module doc).

    ``modality`` picks the bundled model a fine-tuned run starts from (default: the
    data's modality, else TEM); :func:`check_fit` says what the run will be.

    ``device``: ``None`` = CPU (the bit-reproducible path), or ``"auto"`` (CUDA when
    present, else Apple MPS, else CPU) / ``"cuda"`` / ``"mps"``.
    ``on_best(net, epoch_event, result)`` is called at every new best epoch with the
    network in eval mode holding those weights and a :class:`FitResult` so far.
    Stopping the generator between yields is a clean cancel.
    """
    plan = check_fit(cfg, data, modality)
    return (yield from _iter_fit(plan, data, device, on_best, checkpoint, resume))


def _iter_fit(plan: FitPlan, data, device, on_best, checkpoint, resume):
    from .device import select_device

    if data.rule != plan.rule:  # fine-tuning: the inputs on the start model's scale
        data.use_rule(plan.rule)
    dev = select_device("cpu" if device is None else device)
    with deterministic(dev):
        return (yield from _fit(plan, data, dev, on_best, checkpoint, resume))


@dataclass(frozen=True)
class StartModel:
    """The model a fine-tuned run starts from: its config and weights (CPU tensors)."""

    name: str
    path: Path
    config: Any  # store.ModelConfig
    sha256: str
    state: dict = field(repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"name": self.name, "weights_sha256": self.sha256}


def start_spec(task: str, modality: str | None = None, start: str | None = None) -> str:
    """The model a run of ``task`` fine-tunes: ``start``, or the bundled default.

    Examples
    --------
    >>> start_spec("burst"), start_spec("denoise", "sem", start="my-model")
    ('em-burst', 'my-model')
    """
    from .store import default_model_name

    if start is not None:
        return str(start)
    return DEFAULT_BURST_MODEL if task == "burst" else default_model_name(modality)


def start_model(spec: str | os.PathLike, task: str) -> StartModel:
    """Load the model ``spec`` (name or folder) to start ``task`` training from."""
    from .store import load_model

    model = load_model(spec, device="cpu")
    if model.config.task != task:
        raise ValueError(
            f"{model.name} is a {model.config.task} model and cannot start {task} training; "
            f"choose a {task} model (--from MODEL) or pass --from-scratch."
        )
    state = {k: v.detach().clone().contiguous() for k, v in model.net.state_dict().items()}
    return StartModel(model.name, model.path, model.config, model.sha256, state)


@dataclass(frozen=True)
class FitPlan:
    """A checked run: the resolved config, the loss, the start model and the data's rule."""

    config: FitConfig  # architecture, arch_params, start and lr filled in
    loss: str
    start: StartModel | None
    rule: dict


def check_fit(cfg: FitConfig, data, modality: str | None = None) -> FitPlan:
    """Refuse settings that do not fit each other, the start model or the data; the plan.

    ``modality`` picks the bundled start model (default: the data's, else TEM).
    """
    cfg.check()
    burst = data.kind == "burst"
    task = "burst" if burst else "denoise"
    loss_kind = loss_for(cfg.loss, data.self_supervised, burst)
    start = None
    if cfg.from_scratch:
        arch, params, rule = (
            cfg.architecture or SCRATCH_ARCHITECTURE[task],
            cfg.arch_params,
            data.rule,
        )
    else:
        spec = start_spec(task, modality or getattr(data, "modality", None), cfg.start)
        start = start_model(spec, task)
        arch, params = start.config.architecture, dict(start.config.arch_params)
        _refuse_other_network(cfg, start)
        rule = start.config.normalisation
    if data.self_supervised and rule["kind"] == "noise":
        # Neighbor2Neighbor learns E[f(x)] in the stabilised domain; the algebraic
        # inverse of E[f] is biased low at low dose (about 25 % at 0.5 e-/px)
        raise ValueError(
            "self-supervised training cannot start from a model fed in noise units "
            f"({rule}): it would come out biased at low dose; pass --from-scratch "
            "(from_scratch=True) or start from a percentile model such as "
            "em-denoise-fast-v1."
        )
    if burst != (arch == "burst_dense_unet"):
        raise ValueError(
            f"architecture {arch!r} does not fit {data.kind} data; use "
            + ("burst_dense_unet." if burst else "fast_denoiser or unet_resnet18.")
        )
    stride = int(build_network(arch, params).stride)
    if cfg.patch % stride:
        raise ValueError(f"patch ({cfg.patch}) must be a multiple of the network stride {stride}.")
    resolved = replace(
        cfg,
        architecture=arch,
        arch_params=dict(params),
        start=None if start is None else spec,
        lr=cfg.learning_rate,
    )
    return FitPlan(resolved, loss_kind, start, dict(rule))


def _refuse_other_network(cfg: FitConfig, start: StartModel) -> None:
    arch = start.config.architecture
    chosen = cfg.architecture or arch
    same = chosen == arch
    if same and cfg.arch_params:
        try:
            mine = network_params(build_network(arch, cfg.arch_params))
        except ValueError:
            mine = None
        same = mine == network_params(build_network(arch, start.config.arch_params))
    if not same:
        asked = chosen if chosen != arch else f"{arch} {cfg.arch_params}"
        raise ValueError(
            f"fine-tuning keeps the network of {start.name} ({arch} "
            f"{start.config.arch_params}); got {asked}: drop the choice, or pass "
            "--from-scratch (from_scratch=True) to choose an architecture."
        )


def _fit(plan: FitPlan, data, dev, on_best, checkpoint, resume):
    import torch

    cfg, loss_kind, start = plan.config, plan.loss, plan.start
    torch.manual_seed(cfg.seed)
    net = build_network(cfg.architecture, cfg.arch_params)
    if start is not None:
        net.load_state_dict(start.state)
    net = net.to(dev)
    stride = int(net.stride)
    yield Progress(0, 1, "preparing data")
    yield from data.iter_prepare(stride, cfg.val_crop)
    val = data.validation
    preview_at = min(max(cfg.preview, 0), len(val) - 1)
    selfsup = data.self_supervised

    def tensors(arrays):
        return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(dev) for a in arrays)

    # Fixed validation sub-image choices when self-supervised.
    vgen = np.random.default_rng([cfg.seed, 5])
    val_idx = []
    for item in val:
        _, _, h, w = item.inputs[0].shape
        i1, i2 = n2n_indices(vgen, (1, 1, h // 2, w // 2)) if selfsup else (None, None)
        val_idx.append((i1, i2))

    def validate():
        """(loss, psnr, ssim, preview) on the validation set."""
        net.eval()
        losses, psnrs, ssims, preview = [], [], [], None
        with torch.inference_mode():
            for j, (item, (i1, i2)) in enumerate(zip(val, val_idx, strict=True)):
                inputs = tensors(item.inputs)
                if selfsup:
                    g1, g2 = n2n_subsample(
                        inputs[0], torch.from_numpy(i1).to(dev), torch.from_numpy(i2).to(dev)
                    )
                    losses.append(float(torch.mean((net(g1) - g2) ** 2)))
                    out = net(inputs[0]) if j == preview_at else None
                else:
                    out = net(*inputs)
                    target = torch.from_numpy(item.target).to(dev)
                    losses.append(float(loss_value(loss_kind, out, target)))
                    ssims.append(float(ssim_torch(out, target).mean()))
                    psnrs.append(_psnr_adu(out.cpu().numpy(), item))
                if j == preview_at:
                    preview = item.to_adu(out.cpu().numpy()[0, 0]).astype(np.float32)
        net.train()
        if selfsup:
            return float(np.mean(losses)), None, None, preview
        return float(np.mean(losses)), float(np.mean(psnrs)), float(np.mean(ssims)), preview

    input_psnr = input_ssim = None
    if not selfsup:
        input_psnr = float(np.mean([_psnr_adu(v.baseline, v) for v in val]))
        input_ssim = float(
            np.mean(
                [
                    float(ssim_torch(torch.from_numpy(v.baseline), torch.from_numpy(v.target)))
                    for v in val
                ]
            )
        )

    total_steps = cfg.epochs * cfg.steps_per_epoch
    loop = Loop(
        net, lr=cfg.lr, lr_min=cfg.lr_min, warmup=cfg.warmup, total=total_steps, clip=cfg.clip
    )
    best = {"score": -math.inf, "epoch": 0, "loss": math.inf, "psnr": None, "ssim": None}
    history: list[Epoch] = []
    start_epoch, bad_epochs, elapsed0 = 1, 0, 0.0
    start_info = None
    cfg_dict = {
        **cfg.to_dict(),
        "data": data.kind,
        "start_weights": None if start is None else start.sha256,
    }
    resuming = resume and checkpoint is not None and Path(checkpoint).is_file()
    if start is not None and not resuming:
        # the start model's own score is the best until an epoch beats it
        vloss, vpsnr, vssim, _ = validate()
        start_info = {**start.to_dict(), "val_loss": vloss, "val_psnr_db": vpsnr, "val_ssim": vssim}
        best = {
            "score": -vloss if selfsup else vssim,
            "epoch": 0,
            "loss": vloss,
            "psnr": vpsnr,
            "ssim": vssim,
        }
    if resuming:
        state = load_training_state(checkpoint)
        check_same_settings(
            checkpoint,
            _comparable(state["config"]),
            _comparable(cfg_dict),
            names={"data": "mode", "start_weights": "start"},
        )
        loop.restore(state)
        best = state["best"]
        history = [Epoch(**h) for h in state["history"]]
        start_epoch, bad_epochs = state["epoch"] + 1, state["bad_epochs"]
        elapsed0 = state["seconds"]
        start_info = state.get("start")
    t_start = time.perf_counter() - elapsed0
    stop_reason = "completed"

    def result() -> FitResult:
        return FitResult(
            net,
            cfg,
            loss_kind,
            data.describe(),
            best["epoch"],
            best["loss"],
            best["psnr"],
            best["ssim"],
            input_psnr,
            input_ssim,
            history,
            time.perf_counter() - t_start,
            stop_reason,
            start_info,
        )

    def loss_of(step: int):
        gen = np.random.default_rng([cfg.seed, 2, step])
        inputs, target = data.batch(gen, cfg.batch, cfg.patch)
        if not selfsup:
            return loss_value(loss_kind, net(*tensors(inputs)), torch.from_numpy(target).to(dev))
        (x,) = tensors(inputs)
        i1, i2 = n2n_indices(gen, (cfg.batch, 1, cfg.patch, cfg.patch))
        i1, i2 = torch.from_numpy(i1).to(dev), torch.from_numpy(i2).to(dev)
        g1, g2 = n2n_subsample(x, i1, i2)
        with torch.no_grad():
            f1, f2 = n2n_subsample(net(x), i1, i2)
        out = net(g1)
        return torch.mean((out - g2) ** 2) + N2N_GAMMA * torch.mean((out - g2 - (f1 - f2)) ** 2)

    net.train()
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs + 1):
        losses = []
        for step in range((epoch - 1) * cfg.steps_per_epoch + 1, epoch * cfg.steps_per_epoch + 1):
            event = loop.step(step, lambda step=step: loss_of(step))
            losses.append(event.loss)
            yield event
        lr = loop.rate(epoch * cfg.steps_per_epoch)
        vloss, vpsnr, vssim, preview = validate()
        score = -vloss if selfsup else vssim
        is_best = score > best["score"]
        if is_best:
            best = {"score": score, "epoch": epoch, "loss": vloss, "psnr": vpsnr, "ssim": vssim}
            loop.keep_best()
            bad_epochs = 0
        else:
            bad_epochs += 1
        seconds = time.perf_counter() - t_start
        per_epoch = seconds / epoch
        remaining = (cfg.epochs - epoch) * per_epoch
        if cfg.max_minutes is not None:
            remaining = min(remaining, max(cfg.max_minutes * 60 - seconds, 0.0))
        event = Epoch(
            epoch,
            cfg.epochs,
            epoch * cfg.steps_per_epoch,
            float(np.mean(losses)),
            vloss,
            vpsnr,
            vssim,
            is_best,
            best["epoch"],
            lr,
            seconds,
            remaining,
            preview,
        )
        history.append(event)
        if is_best:
            loop.show_best(on_best, event, result())
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                loop.state(
                    config=cfg_dict,
                    epoch=epoch,
                    best=best,
                    history=[h.to_dict() for h in history],
                    bad_epochs=bad_epochs,
                    seconds=seconds,
                    start=start_info,
                ),
            )
        yield event
        if cfg.patience and bad_epochs >= cfg.patience and epoch < cfg.epochs:
            stop_reason = f"early stopping (no better validation for {cfg.patience} epochs)"
            break
        if cfg.max_minutes is not None and seconds >= cfg.max_minutes * 60 and epoch < cfg.epochs:
            stop_reason = f"time limit ({cfg.max_minutes:g} min)"
            break
    net = loop.finish()
    return result()


def _psnr_adu(out: np.ndarray, item) -> float:
    """PSNR of a (1, 1, h, w) normalised output against ``item``'s target, in ADU."""
    truth = item.to_adu(item.target[0, 0])
    return range_psnr(item.to_adu(np.asarray(out, np.float64)[0, 0]), truth)


def fit(cfg: FitConfig, data, *, on_event=None, **kw) -> FitResult:
    """:func:`iter_fit` run to the end; ``on_event`` sees every event."""
    return run_training(iter_fit(cfg, data, **kw), on_event)


# --------------------------------------------------------------------------- model folder
STATE_FILE = "training-state.pt"


CARD_FILE = "MODEL_CARD.md"


def check_destination(
    folder: str | os.PathLike, *, overwrite: bool = False, resume: bool = False, name=None
) -> None:
    """Where a run writes its model: ``resume`` needs the interrupted run's state there,
    and an existing model is replaced only with ``overwrite`` (or continued with
    ``resume``). Refused in one line (``FileNotFoundError`` / ``FileExistsError``)."""
    from .store import CONFIG_FILE

    folder = Path(folder).expanduser()
    name = name or folder.name
    if resume and not (folder / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"nothing to resume for {name!r} in {folder} (no {STATE_FILE}); start a new run "
            "without resume."
        )
    if (folder / CONFIG_FILE).exists() and not (overwrite or resume):
        raise FileExistsError(
            f"{folder} already holds a model ({name!r} already exists); choose another name "
            "or folder, or overwrite it (replace) or resume it (continue)."
        )


def iter_train_model(
    cfg: FitConfig,
    data,
    folder: str | os.PathLike,
    *,
    name: str | None = None,
    description: str = "",
    modalities: tuple[str, ...] | None = None,
    modality: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    device: Any = None,
) -> Generator[Progress | TrainStep | Epoch, None, FitResult]:
    """:func:`iter_fit` writing a model folder: the best epoch is saved the moment it
    is reached (weights, config, model card), the resumable state after every epoch.

    The folder is then a model like any other (``load_model(folder)``; under
    :func:`.store.user_model_dir` it is listed by name). An existing model there
    is an error unless ``overwrite`` or ``resume``. ``modality`` is :func:`iter_fit`'s
    (which bundled model to fine-tune); ``modalities`` those the written config names.
    """
    from .store import ModelConfig, save_model

    folder = Path(folder).expanduser()
    check_destination(folder, overwrite=overwrite, resume=resume, name=name)
    state_file = folder / STATE_FILE
    name = name or folder.name
    plan = check_fit(cfg, data, modality)
    task = "burst" if data.kind == "burst" else "denoise"
    if modalities is None:
        modalities = (
            (data.modality,)
            if hasattr(data, "modality") and task == "denoise"
            else (
                "tem",
                "stem",
                "sem",
            )
        )
    if data.kind == "burst":
        modalities = ("tem",)
    origin = "" if plan.start is None else f", fine-tuned from {plan.start.name}"
    config = ModelConfig(  # checked before any work: a bad name fails at once
        name=name,
        architecture=plan.config.architecture,
        arch_params=dict(plan.config.arch_params),
        normalisation=dict(plan.rule),
        modalities=tuple(modalities),
        task=task,
        description=description or f"trained by em-restore train ({data.kind} data{origin})",
    )

    def save(net, _event, res: FitResult) -> None:
        from dataclasses import replace as _replace

        from .nets import network_params

        cfg_out = _replace(
            config,
            arch_params=network_params(net),
            training=res.record(),
            metrics={
                "val_psnr_db": rounded(res.best_psnr, 3),
                "val_ssim": rounded(res.best_ssim, 4),
                "input_val_psnr_db": rounded(res.input_psnr, 3),
                "input_val_ssim": rounded(res.input_ssim, 4),
                "best_epoch": res.best_epoch,
                **(
                    {}
                    if res.start is None
                    else {
                        "start_val_psnr_db": rounded(res.start["val_psnr_db"], 3),
                        "start_val_ssim": rounded(res.start["val_ssim"], 4),
                    }
                ),
            },
        )
        save_model(folder, net, cfg_out, overwrite=True)
        write_text_atomic(folder / CARD_FILE, model_card(cfg_out, res))

    folder.mkdir(parents=True, exist_ok=True)  # after the checks: a refused run leaves nothing
    result = yield from _iter_fit(plan, data, device, save, state_file, resume)
    save(result.net, None, result)  # the final record (full history, why it stopped)
    return result


def model_card(config, res: FitResult) -> str:
    """A short Markdown card: what the model is, what it was trained on, what it scored."""
    import json

    d = res.data
    lines = [
        f"# {config.name}",
        "",
        f"{config.description}",
        "",
        f"- task: {config.task}; architecture: `{config.architecture}` "
        f"{json.dumps(config.arch_params)}",
        f"- data: {json.dumps(d)}",
        f"- loss: {res.loss}; epochs run: {len(res.history)} of {res.config.epochs} "
        f"({res.config.steps_per_epoch} steps of {res.config.batch} × {res.config.patch}² "
        f"crops); stopped: {res.stop_reason}; {res.seconds:.0f} s",
        f"- best epoch: {res.best_epoch} (validation loss {res.best_val_loss:.5g})"
        + (
            " — no epoch beat the start model, whose weights are kept"
            if res.best_epoch == 0
            else ""
        ),
    ]
    if res.start is not None:
        s = res.start
        before = (
            f"PSNR {s['val_psnr_db']:.2f} dB, SSIM {s['val_ssim']:.3f}"
            if s["val_psnr_db"] is not None
            else f"loss {s['val_loss']:.5g}"
        )
        lines.append(
            f"- fine-tuned from {s['name']} (weights SHA-256 {s['weights_sha256'][:12]}…), "
            f"which scored {before} on the same held-out validation"
        )
    if res.best_psnr is not None:
        lines.append(
            f"- held-out validation: PSNR {res.best_psnr:.2f} dB (input {res.input_psnr:.2f} dB), "
            f"SSIM {res.best_ssim:.3f} (input {res.input_ssim:.3f})"
        )
    else:
        lines.append(
            "- self-supervised: no clean reference, so no PSNR/SSIM; the best epoch has the "
            "lowest held-out Neighbor2Neighbor loss"
        )
    lines += [
        f"- intensities: {json.dumps(config.normalisation)}",
        "",
        "Use it: `em-restore denoise IN -o OUT --model <this folder>`"
        if config.task == "denoise"
        else "Use it: `em-restore burst STACK -o OUT --model <this folder>`",
        "",
    ]
    return "\n".join(lines)
