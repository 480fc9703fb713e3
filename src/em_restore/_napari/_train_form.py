"""The training widget's choices read into a request, checked on the main thread
without reading pixels. The rules are the backend's
(:mod:`em_restore.backend.models.fit_config`, :func:`~.fit.check_destination`,
:func:`~.losses.loss_for`); what is the widget's own is the wording of the fix.
"""

from __future__ import annotations

import re
from typing import Any

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Refused(ValueError):
    """A choice the run cannot start with; the message names the fix."""


def training_image(layer: Any, role: str) -> tuple[Any, int]:
    """``(array, frames)`` of a layer; :class:`Refused` when it cannot be used."""
    from em_restore.backend.models.datasets import MIN_SIDE

    if layer.rgb:
        raise Refused(
            f"{role} layer {layer.name!r} is RGB; EM images are greyscale — "
            "convert it to greyscale first"
        )
    data = layer.data[0] if layer.multiscale else layer.data
    shape = tuple(int(s) for s in data.shape)
    if len(shape) not in (2, 3):
        raise Refused(
            f"{role} layer {layer.name!r} has shape {shape}; give a 2-D image or a "
            "(frames, rows, cols) stack"
        )
    if min(shape[-2:]) < MIN_SIDE:
        raise Refused(
            f"{role} layer {layer.name!r} is {shape[-2]}×{shape[-1]} px; training needs "
            f"images of at least {MIN_SIDE}×{MIN_SIDE}"
        )
    return data, (shape[0] if len(shape) == 3 else 1)


def _images(w: Any, mode: str) -> tuple[Any, Any]:
    noisy = clean = None
    noisy_frames = clean_frames = 0
    if mode in ("paired", "self"):
        if w.noisy_combo.value is None:
            raise Refused(
                f"mode {mode} needs a noisy image layer; open your noisy images and "
                "select them as 'noisy'"
            )
        noisy, noisy_frames = training_image(w.noisy_combo.value, "noisy")
    if mode in ("paired", "simulated"):
        layer = w.clean_combo.value
        if layer is None and mode == "paired":
            raise Refused(
                "mode paired needs a clean image layer (high-dose or sharp image of the "
                "same area); select it as 'clean', or use mode self-supervised"
            )
        if layer is not None:
            if mode == "paired" and layer is w.noisy_combo.value:
                raise Refused(
                    f"noisy and clean are the same layer {layer.name!r}; select the "
                    "high-dose or sharp image as 'clean'"
                )
            clean, clean_frames = training_image(layer, "clean")
    if mode == "paired" and clean_frames not in (1, noisy_frames):
        raise Refused(
            f"{noisy_frames} noisy frames but {clean_frames} clean ones; give one clean "
            "frame per noisy frame, or a single clean image for all"
        )
    return noisy, clean


def read_request(w: Any) -> dict[str, Any]:
    """The training widget ``w``'s choices as a request for its worker."""
    from em_restore.backend.models.fit import check_destination
    from em_restore.backend.models.fit_config import check_task_mode
    from em_restore.backend.models.losses import loss_for
    from em_restore.backend.models.store import CONFIG_FILE, bundled_model_dir, user_model_dir

    mode, task = w.mode_combo.value, w.task_combo.value
    try:
        check_task_mode(
            task,
            mode,
            "set mode to 'simulated' (with a clean layer of your specimen, or none for the "
            "built-in ones)",
        )
    except ValueError as err:
        raise Refused(str(err)) from None
    name = str(w.name_edit.value).strip()
    if not name:
        raise Refused("no model name; type one (letters, digits, '.', '_', '-')")
    if not NAME_RE.match(name):
        raise Refused(
            f"model name {name!r} is not valid; use letters, digits, '.', '_' and '-' "
            "only, starting with a letter or digit"
        )
    noisy, clean = _images(w, mode)
    loss = w.loss_combo.value
    try:
        loss_for(loss, self_supervised=mode == "self", burst=task == "burst")
    except ValueError as err:
        raise Refused(str(err).rstrip(".")) from None
    dose = (float(w.dose_low.value), float(w.dose_high.value))
    if mode == "simulated" and dose[0] > dose[1]:
        raise Refused(f"dose low ({dose[0]:g}) is above dose high ({dose[1]:g}); swap them")
    if (bundled_model_dir() / name / CONFIG_FILE).is_file():
        raise Refused(f"{name!r} is the name of a bundled model; choose another name")
    folder = user_model_dir() / name
    overwrite, resume = bool(w.overwrite_check.value), bool(w.resume_check.value)
    try:
        check_destination(folder, overwrite=overwrite, resume=resume, name=name)
    except OSError as err:
        raise Refused(str(err).rstrip(".")) from None
    minutes = float(w.minutes_spin.value)
    scratch = bool(w.scratch_check.value)
    return {
        "mode": mode,
        "task": task,
        "noisy": noisy,  # array objects only; pixels are read in the worker
        "clean": clean,
        "name": name,
        "folder": folder,
        "overwrite": overwrite,
        "resume": resume,
        "modality": w.modality_combo.value,
        "dose": dose,
        "frames": int(w.frames_spin.value),
        "device": w.device_combo.value,
        "config": {
            "architecture": w.architecture() if scratch else None,
            "from_scratch": scratch,
            "loss": loss,
            "epochs": int(w.epochs_spin.value),
            "steps_per_epoch": int(w.steps_spin.value),
            "batch": int(w.batch_spin.value),
            "patch": int(w.patch_spin.value),
            "lr": float(w.lr_spin.value),
            "patience": int(w.patience_spin.value),
            "max_minutes": minutes if minutes > 0 else None,
            "preview": int(w.preview_spin.value),
            "seed": int(w.seed_spin.value),
        },
    }
