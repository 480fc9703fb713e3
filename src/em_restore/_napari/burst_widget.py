"""Burst dock widget: restore a fast image stream window by window.

Thin by design: the work is :mod:`em_restore.backend.burst` (``plan_burst``, then
``registrations_lazy`` and ``burst_lazy`` with those shifts, computed into a layer
that fills frame by frame, :mod:`._fill`; or, on demand, ``burst_lazy`` alone for
a dask array computing each output frame when it is shown), run by
:class:`._jobs.Job` in a napari thread worker. The raw layer is never modified;
the result is a new layer beside it with the plan (method, window, stride, model
name and weights hash) and the registration (each output's centre frame and
shifts) in metadata. Output frame
``i`` is registered to input frame ``centres[i]`` (its window's middle), so its
time axis is the source's, ``stride`` times coarser and starting at
``centres[0]``: every restored frame sits at the time of its middle input frame.

With "fidelity map" (on for the network), each restored frame, blurred by its
window's motion kernel, is checked against its middle raw frame in the worker and the
map added over the result (:mod:`._fidelity`), as ``em-restore burst --fidelity-out``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox

from em_restore import __version__
from em_restore._napari._base import JobWidget
from em_restore._napari._fidelity import fidelity_checkbox, finish_fidelity, iter_result_fidelity
from em_restore._napari._fill import Filling, Streaming, default_batch, iter_batches
from em_restore._napari._jobs import Job
from em_restore._napari._layers import current_frame_index, result_layer_kwargs
from em_restore._napari._models import user_models
from em_restore.backend import burst as backend
from em_restore.backend.denoise import Progress
from em_restore.backend.models.fit_config import DEFAULT_BURST_MODEL

if TYPE_CHECKING:
    import napari


def burst_model_names() -> list[str]:
    """Registered burst models (bundled, then the user's); empty if none or no torch."""
    try:
        from em_restore.backend.models import list_models

        return [e.name for e in list_models(task="burst")]
    except Exception:  # a broken torch install must not take the classical methods down
        return []


class BurstWidget(JobWidget):
    """Burst deblurring of a (T, rows, cols) stream layer, in the background or lazily."""

    operation = "burst"

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self.frames_spin = SpinBox(
            label="frames per window", value=backend.DEFAULT_FRAMES, min=2, max=16
        )
        self.frames_spin.tooltip = (
            "consecutive frames fused into one restored frame (registered to the middle one)"
        )
        self.stride_spin = SpinBox(label="stride", value=1, min=1, max=100)
        self.stride_spin.tooltip = "frames between the starts of consecutive windows"
        self.method_combo = ComboBox(
            label="method", choices=list(backend.METHODS), value=backend.METHODS[0]
        )
        self.model_combo = ComboBox(label="model", choices=self._models, nullable=True)
        self.exposure_spin = FloatSpinBox(
            label="exposure", value=1.0, min=0.05, max=1.0, step=0.05, enabled=False
        )
        self.exposure_spin.tooltip = "fraction of the frame period the detector integrates"
        self.lazy_check = CheckBox(text="on demand (long streams)", value=False)
        self.lazy_check.tooltip = (
            "add the result at once and restore each frame only when it is shown"
        )
        self.fidelity_check = fidelity_checkbox(self.method_combo.value == "network")
        self._arrange(
            [
                self.frames_spin,
                self.stride_spin,
                self.method_combo,
                self.model_combo,
                self.exposure_spin,
                self.lazy_check,
                self.fidelity_check,
            ]
        )
        self.method_combo.changed.connect(self._options_changed)
        self.method_combo.changed.connect(self._fidelity_default)
        user_models.changed.connect(self.model_combo.reset_choices)
        self._options_changed()

    def _disconnect(self, _obj: Any = None) -> None:
        user_models.changed.disconnect(self.model_combo.reset_choices)
        super()._disconnect(_obj)

    def _fidelity_default(self, _value: Any = None) -> None:
        """On for the network's result, off for the classical fusions; then the user's."""
        self.fidelity_check.value = self.method_combo.value == "network"

    def _models(self, _widget: Any = None) -> list[str]:
        return burst_model_names()

    def _options_changed(self, _value: Any = None) -> None:
        method = self.method_combo.value
        if method == "network":  # a model trained or installed since: list it
            self.model_combo.reset_choices()
            names = [c for c in self.model_combo.choices if c is not None]
            if self.model_combo.value is None and names:  # default: the bundled model
                self.model_combo.value = (
                    DEFAULT_BURST_MODEL if DEFAULT_BURST_MODEL in names else names[0]
                )
        self.model_combo.enabled = method == "network"
        self.exposure_spin.enabled = method == "classical"

    # ---------------------------------------------------------------- inputs
    def _request(self) -> dict[str, Any] | None:
        """The user's choices, checked on the main thread; None (and a message) if invalid."""
        from napari.utils.notifications import show_warning

        from em_restore.io import guess_modality

        layer = self._chosen_image("Burst", "stream")
        if layer is None:
            return None
        frames = int(self.frames_spin.value)
        try:
            backend.check_stack(layer.data, frames)  # the shape only: no pixels read
        except ValueError as err:
            show_warning(f"Burst: layer {layer.name!r}: {err}")
            return None
        method = self.method_combo.value
        model = self.model_combo.value if method == "network" else None
        if method == "network" and model is None:
            show_warning(
                "Burst: no burst model is installed; choose method 'classical' "
                "(no training needed) or install a burst model"
            )
            return None
        return {
            "layer": layer,
            "data": layer.data,  # the array object only; pixels are read in the worker
            "method": method,
            "frames": frames,
            "stride": int(self.stride_spin.value),
            "model": model,
            "exposure": float(self.exposure_spin.value),
            "frame_index": current_frame_index(layer, self.viewer.dims.point),
            "fidelity": bool(self.fidelity_check.value),
            "modality": guess_modality(layer.metadata.get("em_restore", {})),
        }

    @staticmethod
    def _plan(request: dict[str, Any]) -> backend.BurstPlan:
        return backend.plan_burst(
            request["method"],
            frames=request["frames"],
            stride=request["stride"],
            model=request["model"],
            exposure=request["exposure"],
        )

    # ---------------------------------------------------------------- actions
    def run(self, _value: Any = None) -> Job | None:
        """Restore the stack in the background, or (on demand) add a lazy result at once."""
        request = self._request()
        if request is None:
            return None
        if self.lazy_check.value:
            self._add_lazy(request)
            if request["fidelity"]:
                from napari.utils.notifications import show_info

                show_info(
                    "Burst: no fidelity map on demand (the frames are not computed yet); "
                    "untick 'on demand' to get one"
                )
            return None

        data = request["data"]

        def work() -> Generator[Any, None, Any]:
            yield Progress(0, 1, "loading model" if request["model"] else "planning")
            plan = self._plan(request)
            # Two passes, one window at a time: register every window (the shifts go
            # into the metadata), then fuse into a layer that fills as frames finish.
            regs = backend.registrations_lazy(data, plan)
            n = int(regs.shape[0])
            shifts = np.empty(regs.shape)
            for flat, values in iter_batches(regs, (n,), default_batch()):
                shifts[flat.start : flat.stop] = np.stack(values)
                yield Progress(flat.stop, n, f"registered window {flat.stop}/{n}")
            info = {
                "centres": backend.output_centres(int(data.shape[0]), plan.frames, plan.stride),
                "shifts": np.round(shifts, 4).tolist(),
            }
            filling = Filling(backend.burst_lazy(data, plan, shifts))
            yield Streaming(filling, lambda f: self._add_result(request, plan, f.array, info))
            yield from filling.run("frames fused")
            fid = None
            if request["fidelity"]:
                fid = yield from self._iter_fidelity(request, plan, filling, shifts, info)
            return plan, filling, fid

        def done(result: tuple[backend.BurstPlan, Filling, Any]) -> None:
            _plan, filling, fid = result
            filling.mark_complete()
            if fid is not None:
                self.last_fidelity = finish_fidelity(self.viewer, filling.layer, *fid)

        return self._start("Burst", work, done)

    def _iter_fidelity(
        self,
        request: dict[str, Any],
        plan: backend.BurstPlan,
        filling: Filling,
        shifts: np.ndarray,
        info: dict[str, Any],
    ) -> Generator[Any, None, Any]:
        """In the worker: each output against its window's middle raw frame, blurred as
        that frame was by the stage motion the registration measured (as the CLI)."""
        import dask.array as da

        centres = np.asarray(info["centres"])
        forwards = backend.fidelity_forwards(shifts, plan.exposure)
        raw = da.asarray(request["data"])[centres]  # lazy: one frame read at a time
        t = request["frame_index"][0] if request["frame_index"] else int(centres[0])
        nearest = int(np.argmin(np.abs(centres - t)))  # the output shown beside frame t
        return (
            yield from iter_result_fidelity(
                raw,
                filling.array,
                (nearest,),
                lambda f: self._show_stack_map(filling, f.array),
                modality=request["modality"],
                forward=forwards,
            )
        )

    def _add_lazy(self, request: dict[str, Any]) -> None:
        """Plan on the main thread (fast) and add a dask-backed result; no job."""
        from napari.utils.notifications import show_error

        try:
            plan = self._plan(request)
            data = backend.burst_lazy(request["data"], plan)
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            show_error(f"Burst failed: {message}")
            self._set_status(f"Burst: failed — {message}")
            return
        n_frames = int(request["data"].shape[0])
        centres = backend.output_centres(n_frames, plan.frames, plan.stride)
        self._add_result(request, plan, data, {"centres": centres, "lazy": True})
        self._set_status(f"Burst: added on demand ({len(centres)} frames)")

    def _add_result(
        self,
        request: dict[str, Any],
        plan: backend.BurstPlan,
        out: Any,
        info: dict[str, Any],
        **extra: Any,
    ) -> None:
        source = request["layer"]
        name = f"{source.name} burst ({plan.method})"
        meta: dict[str, Any] = {
            "operation": "burst",
            "burst": {**plan.to_metadata(), **info},
            "em_restore_version": __version__,
        }
        kwargs = result_layer_kwargs(source, name, meta)
        # Output i sits at the time of its middle input frame, centres[i].
        t_scale = float(source.scale[0])
        scale = list(kwargs["scale"])
        translate = list(kwargs["translate"])
        scale[0] = t_scale * plan.stride
        translate[0] = float(source.translate[0]) + info["centres"][0] * t_scale
        kwargs["scale"], kwargs["translate"] = tuple(scale), tuple(translate)
        return self._show_result(source, out, {**kwargs, **extra})
