"""Train dock widget: train a denoiser (or a burst network) on the user's own images.

Thin by design: the work is :mod:`em_restore.backend.models` (a dataset from
:func:`~em_restore.backend.models.datasets.training_data`, then
:func:`~em_restore.backend.models.fit.iter_train_model`), run as the widget's
:class:`._base.JobWidget` job in a napari thread worker. The choices are checked on
the main thread without reading pixels (:mod:`._train_form`, with the backend's
rules); the pixels are read and the dataset is built (pairs registered, images
simulated) in the worker. Every epoch adds a point to the loss curves
(:mod:`._chart`) and replaces the data of one "training preview" layer (the
network's output on a held-out crop); the user's layers are never modified.

Training fine-tunes the bundled model of the task and modality (shown as "starts
from") unless "from scratch" is ticked; the backend
(:func:`~em_restore.backend.models.fit.check_fit`) owns that choice, the
defaults (:class:`~em_restore.backend.models.fit_config.FitConfig`) and the refusals.

The model goes to ``user_model_dir()/NAME``; the backend saves the best epoch the
moment it is reached, so a cancelled run keeps it. When a run ends the shared
:data:`._models.user_models` signal tells the Denoise and Burst widgets to list it.
Export… (:mod:`._export`) writes any listed model as a BMZ package or an ONNX file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, Label, LineEdit, SpinBox

from em_restore._napari._base import JobWidget
from em_restore._napari._chart import TrainingCurves
from em_restore._napari._export import EXPORT_FORMATS, ExportControls
from em_restore._napari._jobs import Job
from em_restore._napari._layers import layer_choices
from em_restore._napari._train_form import Refused, read_request
from em_restore._napari._train_run import PREVIEW_NAME, TrainRun, training_data
from em_restore.backend._args import MODALITIES
from em_restore.backend.models import fit_config as C

if TYPE_CHECKING:
    import napari

__all__ = ["EXPORT_FORMATS", "PREVIEW_NAME", "TrainWidget", "TrainingCurves", "training_data"]

MODES = (
    ("paired (noisy + clean)", "paired"),
    ("self-supervised (noisy only)", "self"),
    ("simulated (clean or built-in)", "simulated"),
)
DEVICES = ("auto", "cpu")
#: the FitConfig fields with a spin box: (field, label, min, max, step, tooltip)
SPINS = (
    ("epochs", "epochs", 1, 100_000, 1, None),
    ("steps_per_epoch", "steps per epoch", 1, 1_000_000, 1, None),
    ("patch", "patch", 32, 1024, 32, "training crop side (px): a multiple of the network stride"),
    ("batch", "batch", 1, 1024, 1, None),
    (
        "patience",
        "patience",
        0,
        100_000,
        1,
        "stop after this many epochs without improvement (0: off)",
    ),
    ("seed", "seed", 0, 2**31 - 1, 1, None),
    ("preview", "preview crop", 0, 10_000, 1, "which held-out crop the preview layer shows"),
)
#: the attribute each spin box goes by
SPIN_NAMES = {"steps_per_epoch": "steps_spin"}


def _is_preview(layer: Any) -> bool:
    return bool(layer.metadata.get("em_restore", {}).get("training_preview"))


class TrainWidget(ExportControls, JobWidget):
    """Train a restorer on the user's images (paired, self-supervised or simulated)."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self.preview_layer: Any = None
        self._run: TrainRun | None = None
        d = C.FitConfig()
        self.mode_combo = ComboBox(label="mode", choices=list(MODES), value="paired")
        self.mode_combo.tooltip = (
            "paired: noisy and clean (high-dose / sharp) images of the same area; "
            "self-supervised: noisy images alone; simulated: the physics simulator "
            "records clean images (yours, or built-in specimens) at random doses"
        )
        self.task_combo = ComboBox(label="task", choices=list(C.TASKS), value="denoise")
        self.task_combo.tooltip = "burst: a network fusing a moving-stage stream (simulated only)"
        self.noisy_combo = self.layer_combo
        self.noisy_combo.label = "noisy"
        self.clean_combo = ComboBox(label="clean", choices=self._image_layers, nullable=True)
        self.clean_combo.tooltip = (
            "paired: the clean image(s) of the same area (one per noisy frame, or one for "
            "all); simulated: specimens to simulate (none: the built-in ones)"
        )
        self.lr_defaults = {False: C.LR_FINE_TUNE, True: C.LR_SCRATCH}  # by from-scratch
        self.scratch_check = CheckBox(text="from scratch (random weights)", value=False)
        self.scratch_check.tooltip = (
            "off: fine-tune the bundled model (its network and intensity rule); "
            "on: train the chosen architecture from random weights"
        )
        self.start_label = Label(label="starts from", value="")
        self.arch_combo = ComboBox(label="architecture", choices=self._architectures)
        self.arch_combo.tooltip = "the network trained from scratch (fine-tuning keeps the model's)"
        self.loss_combo = ComboBox(label="loss", choices=list(C.LOSSES), value=d.loss)
        self.loss_combo.tooltip = "auto: l1 (paired, simulated), l2 (self-supervised)"
        spins = {}
        for field, label, low, high, step, tip in SPINS:
            spin = SpinBox(label=label, value=getattr(d, field), min=low, max=high, step=step)
            spin.tooltip = tip
            spins[field] = spin
            setattr(self, SPIN_NAMES.get(field, f"{field}_spin"), spin)
        self.lr_spin = FloatSpinBox(
            label="learning rate", value=self.lr_defaults[False], min=1e-5, max=1.0, step=1e-5
        )
        self.minutes_spin = FloatSpinBox(
            label="max minutes", value=d.max_minutes or 0.0, min=0.0, max=100_000.0, step=1.0
        )
        self.minutes_spin.tooltip = "stop after this much training time (0: no limit)"
        self.modality_combo = ComboBox(label="modality", choices=list(MODALITIES), value="tem")
        low, high = C.DOSE_DEFAULTS["denoise"]
        self.dose_low = FloatSpinBox(label="dose low", value=low, min=0.01, max=1e6, step=1.0)
        self.dose_high = FloatSpinBox(label="dose high", value=high, min=0.01, max=1e6, step=1.0)
        for spin in (self.dose_low, self.dose_high):
            spin.tooltip = "simulated dose range (e⁻ per pixel)"
        self.frames_spin = SpinBox(label="burst frames", value=5, min=2, max=16)
        self.frames_spin.tooltip = "frames per window the burst network fuses"
        self.device_combo = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.device_combo.tooltip = (
            "auto: CUDA when present, else Apple MPS, else CPU; cpu: bit-reproducible"
        )
        self.name_edit = LineEdit(label="model name", value="my-denoiser")
        self.name_edit.tooltip = "saved in the user models folder under this name"
        self.overwrite_check = CheckBox(text="overwrite an existing model", value=False)
        self.resume_check = CheckBox(text="resume an interrupted run", value=False)
        self.train_button = self.run_button
        self.train_button.text = "Train"
        self.curves = TrainingCurves()
        s = spins
        options = [
            self.clean_combo,
            self.scratch_check,
            self.start_label,
            self.arch_combo,
            self.loss_combo,
            *(s[k] for k in ("epochs", "steps_per_epoch", "patch", "batch")),
            self.lr_spin,
            s["patience"],
            self.minutes_spin,
            s["seed"],
            self.modality_combo,
            self.dose_low,
            self.dose_high,
            self.frames_spin,
            s["preview"],
            self.device_combo,
            self.name_edit,
            self.overwrite_check,
            self.resume_check,
        ]
        self._arrange(options, lead=[self.mode_combo, self.task_combo], compare=False)
        self.extend(self._build_export())
        self.native.layout().addWidget(self.curves)
        self.mode_combo.changed.connect(self._options_changed)
        self.task_combo.changed.connect(self._task_changed)
        self.scratch_check.changed.connect(self._scratch_changed)
        self.modality_combo.changed.connect(self._options_changed)
        self.arch_combo.changed.connect(self._options_changed)
        self.overwrite_check.changed.connect(self._overwrite_changed)
        self.resume_check.changed.connect(self._resume_changed)
        self._options_changed()

    # ---------------------------------------------------------------- controls
    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(n, lay) for n, lay in layer_choices(self.viewer, "Image") if not _is_preview(lay)]

    def _refresh_layers(self, event: Any = None) -> None:
        super()._refresh_layers(event)
        self.clean_combo.reset_choices()

    def _architectures(self, _widget: Any = None) -> list[str]:
        return list(C.TASK_ARCHITECTURES[self.task_combo.value])

    def _task_changed(self, _value: Any = None) -> None:
        task = self.task_combo.value
        other = "denoise" if task == "burst" else "burst"
        if (self.dose_low.value, self.dose_high.value) == C.DOSE_DEFAULTS[other]:
            self.dose_low.value, self.dose_high.value = C.DOSE_DEFAULTS[task]
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
            f"random weights ({self.architecture()})"
            if scratch
            else start_spec(task, self.modality_combo.value)
        )

    def architecture(self) -> str:
        """The architecture a from-scratch run trains."""
        if self.task_combo.value == "burst":
            return C.SCRATCH_ARCHITECTURE["burst"]
        return self.arch_combo.value

    def _overwrite_changed(self, value: bool) -> None:
        if value:
            self.resume_check.value = False

    def _resume_changed(self, value: bool) -> None:
        if value:
            self.overwrite_check.value = False

    # ---------------------------------------------------------------- actions
    def _refuse(self, message: str) -> None:
        from napari.utils.notifications import show_error

        show_error(f"Train: {message}")
        self._set_status(f"Train: {message}")

    def run(self, _value: Any = None) -> Job | None:
        """Check the choices and start training in the background; None if refused."""
        if self.job is not None and self.job.running:
            return self._start("Train", None, None)  # refused, with its warning
        try:
            request = read_request(self)
        except Refused as err:
            self._refuse(str(err))
            return None
        self._run = run = TrainRun(request)
        self.last_result = None
        self.curves.clear()

        def done(result: Any) -> None:
            run.result = result
            if self._alive:
                self.last_result = result

        return self._start("Train", run.work, done)

    # JobWidget's hooks: every event, the end and a cancel's message, for this run
    def _job_event(self, event: Any) -> None:
        self._run.event(self, event)

    def _job_finished(self) -> None:
        super()._job_finished()
        self._run.finished(self)

    def _cancel_message(self, _name: str) -> str:
        return self._run.cancel_message()

    def _disconnect(self, _obj: Any = None) -> None:
        super()._disconnect()
        self._disconnect_export()
