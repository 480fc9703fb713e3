"""Deconvolve dock widget: denoise, estimate (or take) the blur kernel, remove it.

Thin by design: the work is :mod:`em_restore.backend.deconvolve`
(``iter_plan_deconvolve`` on the frame on screen, then ``iter_apply_deconv_plan``
for that frame or ``deconvolve_lazy`` for the whole stack, into a layer that
fills frame by frame, :mod:`._fill`), run by :class:`._jobs.Job` in a napari
thread worker. The raw layer is never modified;
the result is a new layer beside it with the plan (kernel(s), solver and its
parameters, denoise stage) in metadata, and the kernel used is shown as its own
small layer, in pixels. With "fidelity map" (on when a model denoises first), the
result, blurred by the kernel, is checked against the raw layer in the worker and its
map added over it (:mod:`._fidelity`; one kernel for the whole frame only).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox

from em_restore import __version__
from em_restore._napari._base import JobWidget
from em_restore._napari._fidelity import fidelity_checkbox, finish_fidelity, iter_result_fidelity
from em_restore._napari._fill import Filling, Streaming
from em_restore._napari._jobs import Job
from em_restore._napari._layers import current_frame_index, drop_leading_axes, result_layer_kwargs
from em_restore.backend import deconvolve as backend

if TYPE_CHECKING:
    import napari

SCOPES = ("current frame", "whole stack")
BLIND = "blind (estimate)"
PSF_KINDS = (BLIND, "gaussian", "disk", "motion")
#: What the size box means for each kernel kind (all in pixels).
SIZE_LABEL = {"gaussian": "sigma (px)", "disk": "radius (px)", "motion": "length (px)"}
MODALITIES = ("auto", "tem", "stem", "sem")
#: Stage 1 choices: the menu's label -> the backend's ``denoise`` argument.
DENOISERS = {"default model": "model", "classical (automatic)": "classical"}


def psf_spec(kind: str, size: float, angle: float) -> str | None:
    """The backend's kernel spec for the menu's choice; ``None`` for blind estimation."""
    if kind == BLIND:
        return None
    if kind == "motion":
        return f"motion:{round(float(size), 3)},{round(float(angle), 3)}"
    return f"{kind}:{round(float(size), 3)}"


def _blur_by(kernel: np.ndarray) -> Any:
    """The forward model of a deconvolution: its result blurred by the kernel it removed."""
    from em_restore.backend.psf import convolve

    k = np.asarray(kernel, dtype=np.float64)
    return lambda x: convolve(x, k)


class DeconvolveWidget(JobWidget):
    """Blind or non-blind deconvolution of an image layer, in the background."""

    operation = "deconvolve"

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self.last_kernel: Any = None
        self.scope_combo = ComboBox(label="apply to", choices=list(SCOPES), value=SCOPES[0])
        self.psf_combo = ComboBox(label="kernel", choices=list(PSF_KINDS), value=BLIND)
        self.psf_size = FloatSpinBox(
            label="sigma (px)", value=2.0, min=0.1, max=100.0, step=0.1, enabled=False
        )
        self.psf_angle = FloatSpinBox(
            label="angle (°)", value=0.0, min=-180.0, max=180.0, step=1.0, enabled=False
        )
        self.solver_combo = ComboBox(label="solver", choices=list(backend.SOLVERS), value="rl")
        self.denoise_check = CheckBox(text="denoise first", value=True)
        self.denoiser_combo = ComboBox(
            label="denoiser", choices=list(DENOISERS), value="default model"
        )
        self.denoiser_combo.tooltip = (
            "default model: the bundled network for the modality (better kernels on the "
            "benchmark); classical: the automatic filters"
        )
        self.modality_combo = ComboBox(label="modality", choices=list(MODALITIES), value="auto")
        self.windows_spin = SpinBox(label="windows (n×n)", value=1, min=1, max=6)
        self.windows_spin.tooltip = (
            "1: one kernel for the whole frame; n: one kernel per window of an n×n grid "
            "(spatially varying blur; blind estimation only)"
        )
        self.fidelity_check = fidelity_checkbox(self._model_stage())
        self._arrange(
            [
                self.scope_combo,
                self.psf_combo,
                self.psf_size,
                self.psf_angle,
                self.solver_combo,
                self.denoise_check,
                self.denoiser_combo,
                self.modality_combo,
                self.windows_spin,
                self.fidelity_check,
            ]
        )
        self.psf_combo.changed.connect(self._options_changed)
        self.denoise_check.changed.connect(self._options_changed)
        self.denoise_check.changed.connect(self._fidelity_default)
        self.denoiser_combo.changed.connect(self._fidelity_default)
        self._options_changed()

    def _fidelity_default(self, _value: Any = None) -> None:
        """On when a network denoises first, off for a classical pipeline; then the user's."""
        self.fidelity_check.value = self._model_stage()

    def _model_stage(self) -> bool:
        return bool(self.denoise_check.value) and DENOISERS[self.denoiser_combo.value] == "model"

    def _options_changed(self, _value: Any = None) -> None:
        kind = self.psf_combo.value
        blind = kind == BLIND
        self.psf_size.enabled = not blind
        self.psf_angle.enabled = kind == "motion"
        self.windows_spin.enabled = blind
        if not blind:
            self.psf_size.label = SIZE_LABEL[kind]
        self.modality_combo.enabled = bool(self.denoise_check.value)
        self.denoiser_combo.enabled = bool(self.denoise_check.value)

    # ---------------------------------------------------------------- inputs
    def _request(self) -> dict[str, Any] | None:
        """The user's choices, checked on the main thread; None (and a message) if invalid."""

        layer = self._chosen_image("Deconvolve")
        if layer is None:
            return None
        from em_restore.io import guess_modality

        spec = psf_spec(self.psf_combo.value, self.psf_size.value, self.psf_angle.value)
        n = int(self.windows_spin.value) if spec is None else 1
        denoise = DENOISERS[self.denoiser_combo.value] if self.denoise_check.value else None
        modality = None if self.modality_combo.value == "auto" else self.modality_combo.value
        return {
            "layer": layer,
            "data": layer.data,  # the array object only; pixels are read in the worker
            "frame_index": current_frame_index(layer, self.viewer.dims.point),
            "whole_stack": self.scope_combo.value == "whole stack",
            "psf": spec,
            "solver": self.solver_combo.value,
            "denoise": denoise,
            "modality": modality if denoise is not None else None,
            "file_metadata": dict(layer.metadata.get("em_restore", {})),
            "windows": (n, n),
            "fidelity": bool(self.fidelity_check.value),
            "fidelity_modality": modality or guess_modality(layer.metadata.get("em_restore", {})),
        }

    # ---------------------------------------------------------------- actions
    def run(self, _value: Any = None) -> Job | None:
        """Plan on the frame on screen, deconvolve it (or the whole stack), add the result."""
        request = self._request()
        if request is None:
            return None

        def work() -> Generator[Any, None, Any]:
            frame = np.asarray(request["data"][request["frame_index"]])
            denoise = request["denoise"]
            if denoise == "model":  # the modality from the file when not chosen
                from em_restore._napari._models import cached_model_plan

                denoise = yield from cached_model_plan(
                    None, request["modality"], request["file_metadata"]
                )
            plan = yield from backend.iter_plan_deconvolve(
                frame,
                request["psf"],
                solver=request["solver"],
                denoise=denoise,
                modality=request["modality"],
                windows=request["windows"],
            )
            data = request["data"]
            if request["whole_stack"] and data.ndim > 2:
                # Shown while it fills, never loaded whole.
                filling = Filling(backend.deconvolve_lazy(data, plan).astype(np.float32))
                yield Streaming(filling, lambda f: self._add_result(request, plan, f.array))
                yield from filling.run("frames deconvolved")
                restored = filling
            elif request["whole_stack"]:
                restored = yield from backend.iter_deconvolve(data, plan)
            else:
                restored = yield from backend.iter_apply_deconv_plan(frame, plan)
            if not request["fidelity"] or len(plan.psfs) != 1:
                return plan, restored, None
            stack = isinstance(restored, Filling)
            fid = yield from iter_result_fidelity(
                data if request["whole_stack"] else frame,
                restored.array if stack else restored,
                request["frame_index"],
                lambda f: self._show_stack_map(restored, f.array),
                modality=request["fidelity_modality"],
                forward=_blur_by(plan.psf),
            )
            return plan, restored, fid

        def done(result: tuple[backend.DeconvPlan, Any, Any]) -> None:
            plan, restored, fid = result
            if isinstance(restored, Filling):
                restored.mark_complete()
                layer = restored.layer
            else:
                layer = self._add_result(request, plan, restored)
            if fid is not None:
                self.last_fidelity = finish_fidelity(self.viewer, layer, *fid)
            elif request["fidelity"]:
                from napari.utils.notifications import show_info

                show_info(
                    f"Deconvolve: no fidelity map with {len(plan.psfs)} kernels (one per "
                    "window); it needs one kernel for the whole frame — set windows to 1"
                )

        return self._start("Deconvolve", work, done)

    def _add_result(self, request: dict[str, Any], plan: backend.DeconvPlan, restored: Any) -> Any:
        source = request["layer"]
        name = f"{source.name} deconvolved ({plan.solver})"
        meta: dict[str, Any] = {
            "operation": "deconvolve",
            "deconvolve": plan.to_metadata(),
            "em_restore_version": __version__,
        }
        if not request["whole_stack"]:
            meta["frame_index"] = list(request["frame_index"])
        kwargs = result_layer_kwargs(source, name, meta)
        if not request["whole_stack"]:  # one 2-D frame: drop the leading axes
            drop_leading_axes(kwargs, len(request["frame_index"]))
        layer = self._show_result(source, restored, kwargs)
        self.last_kernel = self._add_kernel(source, plan)
        return layer

    def _add_kernel(self, source: Any, plan: backend.DeconvPlan) -> Any:
        """The kernel used (estimated or given), as a small layer in pixels."""
        kernel = np.asarray(plan.psf, dtype=np.float32)
        name = f"{source.name} kernel"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        return self.viewer.add_image(
            kernel,
            name=name,
            scale=(1.0, 1.0),
            units=("pixel", "pixel"),
            colormap="magma",
            metadata={
                "em_restore": {
                    "operation": "deconvolve kernel",
                    "source_layer": source.name,
                    "psf_source": plan.psf_source,
                    "size": [int(s) for s in kernel.shape],
                    "windows": list(plan.windows),
                    "em_restore_version": __version__,
                }
            },
        )
