"""Train dock widget: train a denoiser (or a burst network) on the user's own images.

Thin by design: the work is :mod:`em_restore.backend.models` (a dataset from
:mod:`~em_restore.backend.models.datasets`, then
:func:`~em_restore.backend.models.fit.iter_train_model`), run by
:class:`._jobs.Job` in a napari thread worker. The choices are checked on the
main thread; the pixels are read and the dataset is built (pairs registered,
images simulated) in the worker. Every epoch adds a point to the loss curves and
replaces the data of one "training preview" layer (the network's output on a
held-out crop); the user's layers are never modified.

Training fine-tunes the bundled model of the task and modality (shown as "starts
from") unless "from scratch" is ticked; the backend
(:func:`~em_restore.backend.models.fit.check_fit`) owns that choice, the
learning-rate defaults and the refusals.

The model goes to ``user_model_dir()/NAME``; the backend saves the best epoch the
moment it is reached, so a cancelled run keeps it. When a run ends the shared
:data:`._models.user_models` signal tells the Denoise and Burst widgets to list it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import QPointF
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from em_restore._napari._base import on_close, status_label
from em_restore._napari._jobs import Job
from em_restore._napari._layers import layer_choices, start_where_the_user_is
from em_restore._napari._models import user_models

if TYPE_CHECKING:
    import napari

MODES = (
    ("paired (noisy + clean)", "paired"),
    ("self-supervised (noisy only)", "self"),
    ("simulated (clean or built-in)", "simulated"),
)
TASKS = ("denoise", "burst")
DENOISE_ARCHITECTURES = ("fast_denoiser", "unet_resnet18")
BURST_ARCHITECTURE = "burst_dense_unet"
LOSSES = ("auto", "l1", "l2", "ssim", "l1+ssim", "gradient")
SELF_LOSSES = ("auto", "l2")
MODALITIES = ("tem", "stem", "sem")
DEVICES = ("auto", "cpu")
#: default simulated dose range (e⁻/px) per task, as in ``em-restore train``
DOSE_DEFAULTS = {"denoise": (1.0, 100.0), "burst": (5.0, 300.0)}
MIN_SIDE = 32  # the datasets' smallest image side (px)
PREVIEW_NAME = "training preview"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LAYER_EVENTS = ("inserted", "removed", "reordered")
#: Export… choices: label -> kind, file suffix, file-dialog filter
EXPORT_FORMATS = {
    "BioImage Model Zoo (.zip)": {"kind": "bmz", "suffix": ".zip", "filter": "BMZ package (*.zip)"},
    "ONNX (.onnx)": {"kind": "onnx", "suffix": ".onnx", "filter": "ONNX model (*.onnx)"},
}


def _export_models(_widget: Any = None) -> list[str]:
    from em_restore.backend.models import list_models

    return [e.name for e in list_models()]


def _is_preview(layer: Any) -> bool:
    return bool(layer.metadata.get("em_restore", {}).get("training_preview"))


def training_data(request: dict[str, Any]) -> Any:
    """In the worker: read the pixels (a dask layer is computed here) and build the
    dataset (pairs registered, images simulated) that :func:`iter_train_model` consumes."""
    from em_restore.backend.models import datasets as ds

    mode, seed = request["mode"], request["config"]["seed"]
    noisy = None if request["noisy"] is None else np.asarray(request["noisy"])
    clean = None if request["clean"] is None else np.asarray(request["clean"])
    if mode == "paired":
        return ds.PairedData(noisy, clean, seed=seed)
    if mode == "self":
        return ds.NoisyData(noisy, seed=seed)
    if request["task"] == "burst":
        return ds.BurstData(clean, frames=request["frames"], dose_range=request["dose"], seed=seed)
    return ds.SimulatedData(
        clean, modality=request["modality"], dose_range=request["dose"], seed=seed
    )


class TrainingCurves(QWidget):
    """Train and validation loss per epoch, drawn with QPainter.

    ``train`` and ``val`` hold ``(epoch, loss)`` points, in arrival order.
    """

    TRAIN_COLOUR = QColor(80, 160, 255)
    VAL_COLOUR = QColor(255, 150, 50)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []
        self.best_epoch: int | None = None
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("loss per epoch: training (blue) and held-out validation (orange)")

    def clear(self) -> None:
        self.train, self.val, self.best_epoch = [], [], None
        self.update()

    def add(self, epoch: int, train: float, val: float, *, best: bool = False) -> None:
        self.train.append((int(epoch), float(train)))
        self.val.append((int(epoch), float(val)))
        if best:
            self.best_epoch = int(epoch)
        self.update()

    def paintEvent(self, _event: Any) -> None:
        painter = QPainter(self)
        try:
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        left, right, top, bottom = 52, 8, 18, 18
        box_w, box_h = max(w - left - right, 1), max(h - top - bottom, 1)
        text = self.palette().windowText().color()
        painter.setPen(QPen(text, 1))
        painter.drawRect(left, top, box_w, box_h)
        points = [p for p in self.train + self.val if np.isfinite(p[1])]
        if not points:
            painter.drawText(left + 6, top + box_h // 2, "loss curves appear after each epoch")
            return
        e0, e1 = min(p[0] for p in points), max(p[0] for p in points)
        y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
        if y1 <= y0:
            y0, y1 = y0 - 0.5 * abs(y0) - 1e-12, y1 + 0.5 * abs(y1) + 1e-12
        pad = 0.05 * (y1 - y0)
        y0, y1 = y0 - pad, y1 + pad

        def xy(epoch: int, value: float) -> QPointF:
            fx = 0.5 if e1 == e0 else (epoch - e0) / (e1 - e0)
            fy = (value - y0) / (y1 - y0)
            return QPointF(left + fx * box_w, top + (1.0 - fy) * box_h)

        painter.drawText(2, top + 10, f"{y1:.3g}")
        painter.drawText(2, top + box_h, f"{y0:.3g}")
        painter.drawText(left, h - 4, f"epoch {e0}")
        painter.drawText(left + box_w - 60, h - 4, f"epoch {e1}")
        for series, colour, label, dx in (
            (self.train, self.TRAIN_COLOUR, "train", 0),
            (self.val, self.VAL_COLOUR, "validation", 50),
        ):
            pts = [xy(e, v) for e, v in series if np.isfinite(v)]
            painter.setPen(QPen(colour, 2))
            painter.drawText(left + 6 + dx, top - 4, label)
            if len(pts) > 1:
                painter.drawPolyline(QPolygonF(pts))
            for p in pts:
                painter.drawEllipse(p, 2.0, 2.0)
        if self.best_epoch is not None:
            best = [xy(e, v) for e, v in self.val if e == self.best_epoch and np.isfinite(v)]
            if best:
                painter.setPen(QPen(self.VAL_COLOUR, 1))
                painter.drawEllipse(best[-1], 5.0, 5.0)
                painter.drawText(left + 130, top - 4, f"best: epoch {self.best_epoch}")


class TrainWidget(Container):
    """Train a restorer on the user's images (paired, self-supervised or simulated)."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.last_result: Any = None  # the FitResult of the last completed run
        self.preview_layer: Any = None
        self._alive = True
        self._run: dict[str, Any] = {}

        self.mode_combo = ComboBox(label="mode", choices=list(MODES), value="paired")
        self.mode_combo.tooltip = (
            "paired: noisy and clean (high-dose / sharp) images of the same area; "
            "self-supervised: noisy images alone; simulated: the physics simulator "
            "records clean images (yours, or built-in specimens) at random doses"
        )
        self.task_combo = ComboBox(label="task", choices=list(TASKS), value="denoise")
        self.task_combo.tooltip = "burst: a network fusing a moving-stage stream (simulated only)"
        self.noisy_combo = ComboBox(label="noisy", choices=self._image_layers, nullable=True)
        start_where_the_user_is(self.noisy_combo, self.viewer)
        self.clean_combo = ComboBox(label="clean", choices=self._image_layers, nullable=True)
        self.clean_combo.tooltip = (
            "paired: the clean image(s) of the same area (one per noisy frame, or one for "
            "all); simulated: specimens to simulate (none: the built-in ones)"
        )
        from em_restore.backend.models import fit

        self.lr_defaults = {False: fit.LR_FINE_TUNE, True: fit.LR_SCRATCH}  # by from-scratch
        self.scratch_check = CheckBox(text="from scratch (random weights)", value=False)
        self.scratch_check.tooltip = (
            "off: fine-tune the bundled model (its network and intensity rule); "
            "on: train the chosen architecture from random weights"
        )
        self.start_label = Label(label="starts from", value="")
        self.arch_combo = ComboBox(label="architecture", choices=self._architectures)
        self.arch_combo.tooltip = "the network trained from scratch (fine-tuning keeps the model's)"
        self.loss_combo = ComboBox(label="loss", choices=list(LOSSES), value="auto")
        self.loss_combo.tooltip = "auto: l1 (paired, simulated), l2 (self-supervised)"
        self.epochs_spin = SpinBox(label="epochs", value=20, min=1, max=100_000)
        self.steps_spin = SpinBox(label="steps per epoch", value=50, min=1, max=1_000_000)
        self.patch_spin = SpinBox(label="patch", value=64, min=32, max=1024, step=32)
        self.patch_spin.tooltip = "training crop side (px): a multiple of the network stride"
        self.batch_spin = SpinBox(label="batch", value=8, min=1, max=1024)
        self.lr_spin = FloatSpinBox(
            label="learning rate", value=self.lr_defaults[False], min=1e-5, max=1.0, step=1e-5
        )
        self.patience_spin = SpinBox(label="patience", value=0, min=0, max=100_000)
        self.patience_spin.tooltip = "stop after this many epochs without improvement (0: off)"
        self.minutes_spin = FloatSpinBox(
            label="max minutes", value=0.0, min=0.0, max=100_000.0, step=1.0
        )
        self.minutes_spin.tooltip = "stop after this much training time (0: no limit)"
        self.seed_spin = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.modality_combo = ComboBox(label="modality", choices=list(MODALITIES), value="tem")
        self.dose_low = FloatSpinBox(label="dose low", value=1.0, min=0.01, max=1e6, step=1.0)
        self.dose_high = FloatSpinBox(label="dose high", value=100.0, min=0.01, max=1e6, step=1.0)
        for spin in (self.dose_low, self.dose_high):
            spin.tooltip = "simulated dose range (e⁻ per pixel)"
        self.frames_spin = SpinBox(label="burst frames", value=5, min=2, max=16)
        self.frames_spin.tooltip = "frames per window the burst network fuses"
        self.preview_spin = SpinBox(label="preview crop", value=0, min=0, max=10_000)
        self.preview_spin.tooltip = "which held-out crop the preview layer shows"
        self.device_combo = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.device_combo.tooltip = (
            "auto: CUDA when present, else Apple MPS, else CPU; cpu: bit-reproducible"
        )
        self.name_edit = LineEdit(label="model name", value="my-denoiser")
        self.name_edit.tooltip = "saved in the user models folder under this name"
        self.overwrite_check = CheckBox(text="overwrite an existing model", value=False)
        self.resume_check = CheckBox(text="resume an interrupted run", value=False)
        self.train_button = PushButton(text="Train")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = status_label()
        self.curves = TrainingCurves()
        # Export… (docs/exchange.md): any listed model, as a BMZ package or an ONNX file
        self.export_model_combo = ComboBox(label="export model", choices=_export_models)
        self.export_format_combo = ComboBox(label="export as", choices=list(EXPORT_FORMATS))
        self.export_button = PushButton(text="Export…")
        self.export_job: Job | None = None

        self.extend(
            [
                self.mode_combo,
                self.task_combo,
                self.noisy_combo,
                self.clean_combo,
                self.scratch_check,
                self.start_label,
                self.arch_combo,
                self.loss_combo,
                self.epochs_spin,
                self.steps_spin,
                self.patch_spin,
                self.batch_spin,
                self.lr_spin,
                self.patience_spin,
                self.minutes_spin,
                self.seed_spin,
                self.modality_combo,
                self.dose_low,
                self.dose_high,
                self.frames_spin,
                self.preview_spin,
                self.device_combo,
                self.name_edit,
                self.overwrite_check,
                self.resume_check,
                self.train_button,
                self.cancel_button,
                self.status,
            ]
        )
        self.extend([self.export_model_combo, self.export_format_combo, self.export_button])
        self.native.layout().addWidget(self.curves)
        self.mode_combo.changed.connect(self._options_changed)
        self.task_combo.changed.connect(self._task_changed)
        self.scratch_check.changed.connect(self._scratch_changed)
        self.modality_combo.changed.connect(self._options_changed)
        self.arch_combo.changed.connect(self._options_changed)
        self.overwrite_check.changed.connect(self._overwrite_changed)
        self.resume_check.changed.connect(self._resume_changed)
        self.train_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.export_button.changed.connect(lambda _v=None: self.export())
        user_models.changed.connect(self.export_model_combo.reset_choices)
        for event in _LAYER_EVENTS:
            getattr(self.viewer.layers.events, event).connect(self._refresh_layers)
        on_close(self, self._disconnect)
        self._options_changed()

    # ---------------------------------------------------------------- controls
    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(n, lay) for n, lay in layer_choices(self.viewer, "Image") if not _is_preview(lay)]

    def _architectures(self, _widget: Any = None) -> list[str]:
        if self.task_combo.value == "burst":
            return [BURST_ARCHITECTURE]
        return list(DENOISE_ARCHITECTURES)

    def _refresh_layers(self, _event: Any = None) -> None:
        self.noisy_combo.reset_choices()
        start_where_the_user_is(self.noisy_combo, self.viewer)
        self.clean_combo.reset_choices()

    def _task_changed(self, _value: Any = None) -> None:
        task = self.task_combo.value
        other = "denoise" if task == "burst" else "burst"
        if (self.dose_low.value, self.dose_high.value) == DOSE_DEFAULTS[other]:
            self.dose_low.value, self.dose_high.value = DOSE_DEFAULTS[task]
        name = self.name_edit.value
        if task == "burst" and name == "my-denoiser":
            self.name_edit.value = "my-burst"
        elif task == "denoise" and name == "my-burst":
            self.name_edit.value = "my-denoiser"
        self.arch_combo.reset_choices()
        self._options_changed()

    def _scratch_changed(self, scratch: bool) -> None:
        """Swap the learning rate's default (a value the user typed stays)."""
        if self.lr_spin.value == self.lr_defaults[not scratch]:
            self.lr_spin.value = self.lr_defaults[scratch]
        self._options_changed()

    def _options_changed(self, _value: Any = None) -> None:
        """Enable the controls that apply to the chosen mode and task; name the start."""
        from em_restore.backend.models.fit import start_spec

        mode, task = self.mode_combo.value, self.task_combo.value
        burst, simulated = task == "burst", mode == "simulated"
        scratch = bool(self.scratch_check.value)
        self.noisy_combo.enabled = mode in ("paired", "self")
        self.clean_combo.enabled = mode in ("paired", "simulated")
        self.arch_combo.enabled = scratch and not burst
        self.modality_combo.enabled = not burst and (simulated or not scratch)
        self.dose_low.enabled = self.dose_high.enabled = simulated
        self.frames_spin.enabled = burst
        self.start_label.value = (
            f"random weights ({self._architecture()})"
            if scratch
            else start_spec(task, self.modality_combo.value)
        )

    def _architecture(self) -> str:
        return BURST_ARCHITECTURE if self.task_combo.value == "burst" else self.arch_combo.value

    def _overwrite_changed(self, value: bool) -> None:
        if value:
            self.resume_check.value = False

    def _resume_changed(self, value: bool) -> None:
        if value:
            self.overwrite_check.value = False

    # ---------------------------------------------------------------- inputs
    def _refuse(self, message: str) -> None:
        from napari.utils.notifications import show_error

        show_error(f"Train: {message}")
        self._set_status(f"Train: {message}")

    def _image(self, layer: Any, role: str) -> tuple[Any, int] | str:
        """``(array, frames)`` of a layer, or why it cannot be used."""
        if layer.rgb:
            return (
                f"{role} layer {layer.name!r} is RGB; EM images are greyscale — "
                "convert it to greyscale first"
            )
        data = layer.data[0] if layer.multiscale else layer.data
        shape = tuple(int(s) for s in data.shape)
        if len(shape) not in (2, 3):
            return (
                f"{role} layer {layer.name!r} has shape {shape}; give a 2-D image or a "
                "(frames, rows, cols) stack"
            )
        if min(shape[-2:]) < MIN_SIDE:
            return (
                f"{role} layer {layer.name!r} is {shape[-2]}×{shape[-1]} px; training needs "
                f"images of at least {MIN_SIDE}×{MIN_SIDE}"
            )
        return data, (shape[0] if len(shape) == 3 else 1)

    def _request(self) -> dict[str, Any] | None:
        """The user's choices, checked on the main thread; None (and a message) if invalid."""
        mode, task = self.mode_combo.value, self.task_combo.value
        if task == "burst" and mode != "simulated":
            self._refuse(
                "burst networks train on simulated streams; set mode to 'simulated' "
                "(with a clean layer of your specimen, or none for the built-in ones)"
            )
            return None
        name = str(self.name_edit.value).strip()
        if not name:
            self._refuse("no model name; type one (letters, digits, '.', '_', '-')")
            return None
        if not _NAME_RE.match(name):
            self._refuse(
                f"model name {name!r} is not valid; use letters, digits, '.', '_' and '-' "
                "only, starting with a letter or digit"
            )
            return None
        noisy = clean = None
        noisy_frames = clean_frames = 0
        if mode in ("paired", "self"):
            layer = self.noisy_combo.value
            if layer is None:
                self._refuse(
                    f"mode {mode} needs a noisy image layer; open your noisy images and "
                    "select them as 'noisy'"
                )
                return None
            checked = self._image(layer, "noisy")
            if isinstance(checked, str):
                self._refuse(checked)
                return None
            noisy, noisy_frames = checked
        if mode in ("paired", "simulated"):
            layer = self.clean_combo.value
            if layer is None and mode == "paired":
                self._refuse(
                    "mode paired needs a clean image layer (high-dose or sharp image of the "
                    "same area); select it as 'clean', or use mode self-supervised"
                )
                return None
            if layer is not None:
                if mode == "paired" and layer is self.noisy_combo.value:
                    self._refuse(
                        f"noisy and clean are the same layer {layer.name!r}; select the "
                        "high-dose or sharp image as 'clean'"
                    )
                    return None
                checked = self._image(layer, "clean")
                if isinstance(checked, str):
                    self._refuse(checked)
                    return None
                clean, clean_frames = checked
        if mode == "paired" and clean_frames not in (1, noisy_frames):
            self._refuse(
                f"{noisy_frames} noisy frames but {clean_frames} clean ones; give one clean "
                "frame per noisy frame, or a single clean image for all"
            )
            return None
        loss = self.loss_combo.value
        if mode == "self" and loss not in SELF_LOSSES:
            self._refuse(
                f"self-supervised training needs loss 'auto' or 'l2' (a noisy target is "
                f"unbiased only in the mean); got {loss!r}"
            )
            return None
        dose = (float(self.dose_low.value), float(self.dose_high.value))
        if mode == "simulated" and dose[0] > dose[1]:
            self._refuse(f"dose low ({dose[0]:g}) is above dose high ({dose[1]:g}); swap them")
            return None

        from em_restore.backend.models.fit import STATE_FILE
        from em_restore.backend.models.store import CONFIG_FILE, bundled_model_dir, user_model_dir

        if (bundled_model_dir() / name / CONFIG_FILE).is_file():
            self._refuse(f"{name!r} is the name of a bundled model; choose another name")
            return None
        folder = user_model_dir() / name
        overwrite, resume = bool(self.overwrite_check.value), bool(self.resume_check.value)
        if resume and not (folder / STATE_FILE).is_file():
            self._refuse(
                f"nothing to resume for {name!r} (no {STATE_FILE} in {folder}); "
                "untick resume to start a new run"
            )
            return None
        if (folder / CONFIG_FILE).exists() and not (overwrite or resume):
            self._refuse(
                f"a model named {name!r} already exists in {folder}; choose another name, "
                "or tick overwrite (replace it) or resume (continue it)"
            )
            return None
        minutes = float(self.minutes_spin.value)
        scratch = bool(self.scratch_check.value)
        return {
            "mode": mode,
            "task": task,
            "noisy": noisy,  # array objects only; pixels are read in the worker
            "clean": clean,
            "name": name,
            "folder": folder,
            "overwrite": overwrite,
            "resume": resume,
            "modality": self.modality_combo.value,
            "dose": dose,
            "frames": int(self.frames_spin.value),
            "device": self.device_combo.value,
            "config": {
                "architecture": self._architecture() if scratch else None,
                "from_scratch": scratch,
                "loss": loss,
                "epochs": int(self.epochs_spin.value),
                "steps_per_epoch": int(self.steps_spin.value),
                "batch": int(self.batch_spin.value),
                "patch": int(self.patch_spin.value),
                "lr": float(self.lr_spin.value),
                "patience": int(self.patience_spin.value),
                "max_minutes": minutes if minutes > 0 else None,
                "preview": int(self.preview_spin.value),
                "seed": int(self.seed_spin.value),
            },
        }

    # ---------------------------------------------------------------- actions
    def run(self, _value: Any = None) -> Job | None:
        """Check the choices and start training in the background; None if refused."""
        if self.job is not None and self.job.running:
            from napari.utils.notifications import show_warning

            show_warning("Train: a training run is still going; cancel it or wait")
            return None
        request = self._request()
        if request is None:
            return None
        from em_restore.backend.denoise import Progress
        from em_restore.backend.models.store import CONFIG_FILE

        folder: Path = request["folder"]
        run: dict[str, Any] = {
            "request": request,
            "gen": None,
            # a resumed run continues a saved model: it is there from the start
            "saved": request["resume"] and (folder / CONFIG_FILE).is_file(),
            "last_step_status": 0.0,
            "epochs_seen": 0,
        }
        self._run = run
        self.last_result = None
        self.curves.clear()

        def work() -> Generator[Any, None, Any]:
            from em_restore.backend.models.fit import FitConfig, iter_train_model

            yield Progress(0, 1, "reading images")
            data = training_data(request)
            modalities = (
                (request["modality"],)
                if request["mode"] == "simulated" and request["task"] == "denoise"
                else None
            )
            gen = iter_train_model(
                FitConfig(**request["config"]),
                data,
                folder,
                name=request["name"],
                modalities=modalities,
                modality=request["modality"],
                overwrite=request["overwrite"],
                resume=request["resume"],
                device=request["device"],
            )
            run["gen"] = gen
            return (yield from gen)

        def done(result: Any) -> None:
            run["result"] = result
            if self._alive:
                self.last_result = result

        self._set_running(True)
        job = Job(
            "Train",
            work,
            on_done=done,
            on_status=self._set_status,
            on_finished=lambda: self._finished(run),
            cancel_message=lambda: self._cancel_message(run),
        )
        job.worker.yielded.connect(lambda event: self._event(run, event))
        self.job = job
        return job.start()

    def export(self, path: str | Path | None = None) -> Job | None:
        """Export the chosen model to ``path`` (default: ask with a file dialog)."""
        fmt = EXPORT_FORMATS[self.export_format_combo.value]
        spec = self.export_model_combo.value
        if spec is None:
            self._refuse("Export: no model to export; train one first")
            return None
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            default = str(Path.home() / f"{spec}{fmt['suffix']}")
            path, _ = QFileDialog.getSaveFileName(
                self.native, "Export model", default, fmt["filter"]
            )
            if not path:
                return None
        path = Path(path)
        if path.suffix.lower() != fmt["suffix"]:
            path = path.with_name(path.name + fmt["suffix"])

        def work() -> Generator[Any, None, Any]:
            from em_restore.backend.denoise import Progress
            from em_restore.backend.models import exchange

            yield Progress(0, 1, f"exporting {spec}")
            write = exchange.export_bmz if fmt["kind"] == "bmz" else exchange.export_onnx
            return write(spec, path, overwrite=True)  # the dialog asked about replacing

        written: list[Path] = []

        def done(result: Any) -> None:
            from napari.utils.notifications import show_info

            written.append(result)
            show_info(f"Export: model {spec!r} written to {result}")

        def finished() -> None:  # after the Job's own "done" status
            if written:
                self._set_status(f"Export: {spec} -> {written[0]}")

        self.export_job = Job(
            "Export", work, on_done=done, on_status=self._set_status, on_finished=finished
        )
        return self.export_job.start()

    def cancel(self, _value: Any = None) -> None:
        """Stop at the next step; the best epoch so far stays saved."""
        if self.job is not None and self.job.running:
            self.job.cancel()

    # ---------------------------------------------------------------- events
    def _event(self, run: dict[str, Any], event: Any) -> None:
        from em_restore.backend.models.fit import Epoch
        from em_restore.backend.models.training import TrainStep

        if isinstance(event, Epoch):
            run["epochs_seen"] += 1
            if event.best:
                run["saved"] = True  # the backend saved it before yielding the event
        if not self._alive or run is not self._run:
            return
        if isinstance(event, Epoch):
            self.curves.add(event.epoch, event.train_loss, event.val_loss, best=event.best)
        if self.job is None or self.job.cancelled or "result" in run or not self.job.running:
            return  # stale: the run was cancelled or has ended
        if isinstance(event, Epoch):
            self._show_preview(run, event)
            self._set_status(self._epoch_status(event))
        elif isinstance(event, TrainStep) and run["epochs_seen"] == 0:
            now = time.monotonic()
            if now - run["last_step_status"] > 0.2 or event.step == event.total:
                run["last_step_status"] = now
                self._set_status(f"Train: step {event.step}/{event.total}, loss {event.loss:.4g}")

    @staticmethod
    def _epoch_status(event: Any) -> str:
        if event.val_psnr is not None:
            score = f"val PSNR {event.val_psnr:.2f} dB"
            if event.val_ssim is not None:
                score += f", SSIM {event.val_ssim:.3f}"
        else:
            score = f"val loss {event.val_loss:.4g}"
        return (
            f"Train: epoch {event.epoch}/{event.epochs} — {score}; best epoch "
            f"{event.best_epoch}; ETA {event.eta}"
        )

    def _show_preview(self, run: dict[str, Any], event: Any) -> None:
        if event.preview is None:
            return
        preview = np.asarray(event.preview, dtype=np.float32)
        meta = {
            "em_restore": {
                "training_preview": True,
                "model": run["request"]["name"],
                "epoch": int(event.epoch),
            }
        }
        layer = self.preview_layer
        if layer is not None and layer in self.viewer.layers:
            layer.data = preview
            layer.metadata = meta
            layer.reset_contrast_limits()
        else:
            self.preview_layer = self.viewer.add_image(preview, name=PREVIEW_NAME, metadata=meta)

    def _cancel_message(self, run: dict[str, Any]) -> str:
        folder = run["request"]["folder"]
        if run["saved"]:
            return f"Train cancelled; the best epoch so far is kept in {folder}"
        return "Train cancelled before any epoch ended; no model was saved"

    def _finished(self, run: dict[str, Any]) -> None:
        """The worker has stopped (done, cancelled or failed): release it, list the model."""
        gen = run.get("gen")
        if gen is not None:
            gen.close()  # a cancelled run is left suspended: run its clean-up now
            run["gen"] = None
        job = self.job
        name, folder = run["request"]["name"], run["request"]["folder"]
        result = run.get("result")
        if self._alive and run is self._run:
            self._set_running(False)
            if result is not None:
                self._set_status(self._result_status(name, result))
            elif job is not None and job.cancelled:
                kept = f"best epoch kept as {name!r}" if run["saved"] else "nothing saved"
                self._set_status(f"Train: cancelled; {kept}")
        if result is not None:
            from napari.utils.notifications import show_info

            show_info(f"Train: model {name!r} saved in {folder}")
        if result is not None or run["saved"]:
            user_models.changed.emit()

    @staticmethod
    def _result_status(name: str, result: Any) -> str:
        score = ""
        if result.best_psnr is not None:
            score = f", val PSNR {result.best_psnr:.2f} dB"
            if result.input_psnr is not None:
                score += f" (input {result.input_psnr:.2f} dB)"
        origin = (
            "from scratch" if result.start is None else f"fine-tuned from {result.start['name']}"
        )
        if result.start is not None and result.start["val_psnr_db"] is not None:
            origin += f" (val PSNR {result.start['val_psnr_db']:.2f} dB before)"
        return (
            f"Train: done — {name!r}, {origin}, best epoch {result.best_epoch}{score}; "
            f"stopped: {result.stop_reason}"
        )

    # ---------------------------------------------------------------- plumbing
    def _set_running(self, running: bool) -> None:
        if not self._alive:
            return
        self.train_button.enabled = not running
        self.cancel_button.enabled = running

    def _set_status(self, text: str) -> None:
        if self._alive:
            self.status.value = text

    def _disconnect(self, _obj: Any = None) -> None:
        """The widget is gone: the viewer must stop calling it, and its job stops."""
        self._alive = False
        for event in _LAYER_EVENTS:
            getattr(self.viewer.layers.events, event).disconnect(self._refresh_layers)
        user_models.changed.disconnect(self.export_model_combo.reset_choices)
        if self.job is not None and self.job.running:
            self.job.cancel()
