"""Denoise dock widget: pick a layer and a method, preview one frame, run the stack.

Thin by design: the work is :mod:`em_restore.backend.models` (a trained model:
``plan_model`` then ``ModelPlan.iter_apply``) or :mod:`em_restore.backend.denoise`
(a classical filter: ``iter_plan_denoise`` then ``iter_denoise``), run by
:class:`._jobs.Job` in a napari thread worker. The raw layer is never modified;
the result is a new layer beside it with the plan (model name and weights hash,
or method, parameters and noise model) in metadata. A stack is computed lazily
(``denoise_lazy`` / ``ModelPlan.lazy``) into a layer that fills frame by frame
(:mod:`._fill`), so a long stack is never loaded and the result shows at once.

The default model runs as a :class:`~em_restore.backend.models.guarded.GuardedPlan`
(a new one per run): with "compare with the classical plan" (on) the classical plan's
result is blended in by the two results' estimated risk; tiles whose network result
the counts do not support are restored by the classical plan instead; the decisions go
into the metadata and a one-line notice is shown. With "fidelity map" (on for models),
the result is then checked against the raw layer in the worker and its map added over
it (:mod:`._fidelity`).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, PushButton

from em_restore import __version__
from em_restore._napari._base import JobWidget
from em_restore._napari._fidelity import (
    fidelity_checkbox,
    finish_fidelity,
    frame_summary,
    iter_result_fidelity,
)
from em_restore._napari._fill import Filling, Streaming
from em_restore._napari._jobs import Job
from em_restore._napari._layers import current_frame_index, drop_leading_axes, result_layer_kwargs
from em_restore._napari._models import DEFAULT_MODEL, MODEL_PREFIX, model_plan, user_models
from em_restore.backend import denoise as backend

if TYPE_CHECKING:
    import napari

MODALITIES = ("auto", "tem", "stem", "sem")
#: The passes menu: the model's own ensemble, or 1, 2, 4, 8 flips/rotations averaged.
OWN = "model's own"
ENSEMBLE_CHOICES = (OWN, "1", "2", "4", "8")


def method_choices() -> list[str]:
    """The method menu: the default model, every registered model, the classical filters."""
    try:
        from em_restore.backend.models import list_models

        names = [MODEL_PREFIX + e.name for e in list_models(task="denoise")]
    except Exception:  # a broken torch install must not take the filters down with it
        names = []
    return [DEFAULT_MODEL, *names, *backend.METHODS]


def _fidelity_modality(request: dict[str, Any], plan: Any) -> str | None:
    """The modality the result is checked under: the plan's, else the chosen or the file's."""
    from em_restore.io import guess_modality

    modality = getattr(plan, "modality", None) or request["modality"]
    return modality or guess_modality(request["file_metadata"])


def _notify(plan: Any) -> None:
    """The guarded default's one-line notice (where the network was not kept)."""
    if hasattr(plan, "notice"):
        from napari.utils.notifications import show_info

        show_info(plan.notice())


def _plan_on_frame(request: dict[str, Any]) -> Generator[Any, None, tuple[np.ndarray, Any]]:
    """In the worker: read the chosen frame and plan the denoising on it."""
    frame = np.asarray(request["data"][request["frame_index"]])
    if request["is_model"]:
        return frame, (yield from model_plan(request))
    plan = yield from backend.iter_plan_denoise(
        frame, request["method"], modality=request["modality"], params=request["params"]
    )
    return frame, plan


class DenoiseWidget(JobWidget):
    """Denoising of an image layer by a trained model or a classical filter, in the background."""

    operation = "denoise"

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self.last_preview: Any = None
        self.method_combo = ComboBox(label="method", choices=method_choices(), value=DEFAULT_MODEL)
        self.modality_combo = ComboBox(label="modality", choices=list(MODALITIES), value="auto")
        self.auto_strength = CheckBox(text="automatic strength", value=True)
        self.strength = FloatSpinBox(
            label="strength", value=1.0, min=0.01, max=100.0, step=0.1, enabled=False
        )
        self.ensemble_combo = ComboBox(label="passes", choices=list(ENSEMBLE_CHOICES), value=OWN)
        self.ensemble_combo.tooltip = (
            "Models: average the network over this many flips/rotations of the image "
            "(each a full pass; less orientation-dependent texture, that many times slower)"
        )
        self.preview_button = PushButton(text="Preview frame")
        self.fidelity_check = fidelity_checkbox(True)
        self.compare_check = CheckBox(text="compare with the classical plan", value=True)
        self.compare_check.tooltip = (
            "Default model: also make the classical plan's result and blend the two by "
            "their risk estimated from the counts (slower: the classical plan's time)"
        )
        self._arrange(
            [
                self.method_combo,
                self.modality_combo,
                self.auto_strength,
                self.strength,
                self.ensemble_combo,
                self.compare_check,
                self.fidelity_check,
            ],
            [self.preview_button],
        )
        self.method_combo.changed.connect(self._method_changed)
        self.auto_strength.changed.connect(self._method_changed)
        self.method_combo.changed.connect(self._fidelity_default)
        self.preview_button.changed.connect(self.preview)
        user_models.changed.connect(self._models_changed)
        self._method_changed()

    def _fidelity_default(self, _value: Any = None) -> None:
        """On for a network result (any model), off for a classical filter; then the user's."""
        self.fidelity_check.value = self.method_combo.value not in backend.METHODS

    def _models_changed(self) -> None:
        """A model was trained: list it (the current choice stays if it still exists)."""
        self.method_combo.choices = method_choices()

    def _disconnect(self, _obj: Any = None) -> None:
        user_models.changed.disconnect(self._models_changed)
        super()._disconnect(_obj)

    def _method_changed(self, _value: Any = None) -> None:
        method = self.method_combo.value
        has_strength = method in backend.STRENGTH_PARAM
        self.auto_strength.enabled = has_strength
        self.strength.enabled = has_strength and not self.auto_strength.value
        if has_strength:
            self.strength.label = backend.STRENGTH_PARAM[method]
        self.compare_check.enabled = method == DEFAULT_MODEL
        self.ensemble_combo.enabled = method not in backend.METHODS

    # ---------------------------------------------------------------- inputs
    def _request(self) -> dict[str, Any] | None:
        """The user's choices, checked on the main thread; None (and a message) if invalid."""
        layer = self._chosen_image("Denoise")
        if layer is None:
            return None
        method = self.method_combo.value
        params = None
        if method in backend.STRENGTH_PARAM and not self.auto_strength.value:
            params = {backend.STRENGTH_PARAM[method]: float(self.strength.value)}
        modality = None if self.modality_combo.value == "auto" else self.modality_combo.value
        index = current_frame_index(layer, self.viewer.dims.point)
        file_metadata = dict(layer.metadata.get("em_restore", {}))
        return {
            "layer": layer,
            "data": layer.data,  # the array object only; pixels are read in the worker
            "frame_index": index,
            "method": method,
            "is_model": method not in backend.METHODS,
            "modality": modality,
            "file_metadata": file_metadata,
            "params": params,
            "fidelity": bool(self.fidelity_check.value),
            "compare": bool(self.compare_check.value),
            "ensemble": None if (n := self.ensemble_combo.value) == OWN else int(n),
        }

    # ---------------------------------------------------------------- actions
    def preview(self, _value: Any = None) -> Job | None:
        """Denoise the frame on screen and show it as a preview layer."""
        request = self._request()
        if request is None:
            return None

        def work() -> Generator[Any, None, Any]:
            frame, plan = yield from _plan_on_frame(request)
            if request["is_model"]:
                restored = plan.apply_frame(frame)
            else:
                restored = backend.apply_plan(frame, plan)
            fid = None
            if request["fidelity"]:
                yield backend.Progress(0, 1, "checking fidelity")
                fid = frame_summary(frame, restored, modality=_fidelity_modality(request, plan))
            return plan, restored, fid

        def done(result: tuple[Any, np.ndarray, Any]) -> None:
            plan, restored, fid = result
            layer = self._add_preview(request, plan, restored)
            if fid is not None:
                self.last_fidelity = finish_fidelity(self.viewer, layer, fid.map, fid.summary)
            _notify(plan)

        return self._start("Denoise preview", work, done)

    def run(self, _value: Any = None) -> Job | None:
        """Denoise the whole layer (every frame) and add the result beside it."""
        request = self._request()
        if request is None:
            return None

        data = request["data"]

        def work() -> Generator[Any, None, Any]:
            if request["is_model"]:
                plan = yield from model_plan(request)
            else:
                _frame, plan = yield from _plan_on_frame(request)
            if data.ndim > 2:  # a stack: shown while it fills, never loaded whole
                lazy = plan.lazy(data) if request["is_model"] else backend.denoise_lazy(data, plan)
                filling = Filling(lazy.astype(np.float32))
                yield Streaming(filling, lambda f: self._add_result(request, plan, f.array))
                yield from filling.run("frames denoised")
                restored = filling
            elif request["is_model"]:
                restored = yield from plan.iter_apply(data)
            else:
                restored = yield from backend.iter_denoise(data, plan)
            if not request["fidelity"]:
                return plan, restored, None
            fid = yield from iter_result_fidelity(
                data,
                restored.array if isinstance(restored, Filling) else restored,
                request["frame_index"],
                lambda f: self._show_fidelity(restored, plan, f.array),
                modality=_fidelity_modality(request, plan),
            )
            return plan, restored, fid

        def done(result: tuple[Any, Any, Any]) -> None:
            plan, restored, fid = result
            if isinstance(restored, Filling):
                restored.mark_complete()
                layer = restored.layer
                self._record_plan(layer, plan)
            else:
                layer = self._add_result(request, plan, restored)
            if fid is not None:
                self.last_fidelity = finish_fidelity(self.viewer, layer, *fid)
            _notify(plan)

        return self._start("Denoise", work, done)

    def _start_buttons(self) -> list[Any]:
        return [self.preview_button, self.run_button]

    def _show_fidelity(self, restored: Filling, plan: Any, fmap: Any) -> Any:
        """A stack's map starts filling: its result is complete (with its decisions)."""
        self._record_plan(restored.layer, plan)
        return self._show_stack_map(restored, fmap)

    @staticmethod
    def _record_plan(layer: Any, plan: Any) -> None:
        """A stack's plan record once every frame is done (the guarded decisions)."""
        meta = dict(layer.metadata)
        record = dict(meta.get("em_restore", {}))
        record["denoise"] = plan.to_metadata()
        meta["em_restore"] = record
        layer.metadata = meta

    def _metadata(self, request: dict[str, Any], plan: Any, **extra: Any) -> dict[str, Any]:
        return {
            "operation": "denoise",
            "denoise": plan.to_metadata(),
            "em_restore_version": __version__,
            **extra,
        }

    def _add_preview(self, request: dict[str, Any], plan: Any, restored: np.ndarray) -> None:
        source = request["layer"]
        name = f"{source.name} preview ({plan.method})"
        kwargs = result_layer_kwargs(
            source, name, self._metadata(request, plan, frame_index=list(request["frame_index"]))
        )
        drop_leading_axes(kwargs, len(request["frame_index"]))
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.last_preview = self.viewer.add_image(restored, **kwargs)
        return self.last_preview

    def _add_result(self, request: dict[str, Any], plan: Any, restored: Any) -> Any:
        source = request["layer"]
        name = f"{source.name} denoised ({plan.method})"
        kwargs = result_layer_kwargs(source, name, self._metadata(request, plan))
        return self._show_result(source, restored, kwargs)
