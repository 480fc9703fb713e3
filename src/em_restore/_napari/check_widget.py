"""Check a restoration: where a restored layer is not supported by the raw counts.

Thin: the numbers are :func:`em_restore.backend.fidelity.fidelity`, run by
:class:`._jobs.Job` in a napari thread worker on the frame on screen. Any two image
layers of the same shape work (a result of this plugin or of another tool); a 2-D
restoration of one frame of a stack is checked against that frame (its
``frame_index`` in metadata, else the frame on screen). The raw layer is never
modified. The result is a map layer over the restoration (1 = not supported by the
counts, 0.5 = flagged; its summary in ``metadata["em_restore"]["fidelity"]``), a
Shapes layer outlining the worst regions with the test that fired, and a summary
line in the widget.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox

from em_restore._napari._base import JobWidget, status_label
from em_restore._napari._fidelity import (
    fidelity_layer_kwargs,
    frame_summary,
    record_fidelity,
    summary_line,
)
from em_restore._napari._jobs import Job
from em_restore._napari._layers import current_frame_index

if TYPE_CHECKING:
    import napari

MODALITIES = ("auto", "tem", "stem", "sem")
#: Smallest frame side the fidelity tests work on (px); the backend's MIN_SIDE.
MIN_SIDE = 16
#: How many of the worst regions are outlined (all are in the summary).
MAX_REGIONS = 5


def region_rectangles(regions: list[dict]) -> list[np.ndarray]:
    """Rectangles (4 corners, data coordinates) around each region's pixels.

    A bbox ``[y0, x0, y1, x1]`` holds pixels ``y0 .. y1 - 1``; pixel ``i`` covers
    ``i - 0.5 .. i + 0.5`` in napari, so the outline sits on the pixels' edges.
    """
    out = []
    for r in regions:
        y0, x0, y1, x1 = (float(v) - 0.5 for v in r["bbox"])
        out.append(np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]]))
    return out


class CheckWidget(JobWidget):
    """Fidelity map of a restored layer against its raw layer, in the background."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self.last_map: Any = None
        self.last_regions: Any = None
        self.summary: dict | None = None
        self.layer_combo.label = "raw"
        self.restored_combo = ComboBox(label="restored", choices=self._image_layers, nullable=True)
        self.modality_combo = ComboBox(label="modality", choices=list(MODALITIES), value="auto")
        self.modality_combo.tooltip = (
            "prior for the raw's noise estimate (scanned probe: correlated along x); "
            "auto: from the raw layer's file metadata"
        )
        self.summary_label = status_label()
        self._arrange([self.restored_combo, self.modality_combo])
        self.remove(self.compare_button)  # the map sits on the restoration; no grid here
        self.append(self.summary_label)
        self.run_button.text = "Check"
        self._refresh_layers()

    def _refresh_layers(self, _event: Any = None) -> None:
        super()._refresh_layers()
        self.restored_combo.reset_choices()

    # ---------------------------------------------------------------- inputs
    def _request(self) -> dict[str, Any] | None:
        """Both layers and the frames to compare, checked on the main thread."""
        from napari.utils.notifications import show_warning

        raw, restored = self.layer_combo.value, self.restored_combo.value
        problem = self._problem(raw, restored)
        if problem:
            message = f"Check: {problem}"
            self._set_status(message)
            show_warning(message)
            return None
        point = self.viewer.dims.point
        if restored.data.ndim == raw.data.ndim:
            index = current_frame_index(raw, point)
        else:  # a 2-D restoration of one frame of the stack
            saved = restored.metadata.get("em_restore", {}).get("frame_index")
            lead = raw.data.shape[:-2]
            valid = (
                isinstance(saved, list | tuple)
                and len(saved) == len(lead)
                and all(0 <= int(i) < n for i, n in zip(saved, lead, strict=True))
            )
            index = tuple(int(i) for i in saved) if valid else current_frame_index(raw, point)
        modality = None if self.modality_combo.value == "auto" else self.modality_combo.value
        if modality is None:
            from em_restore.io import guess_modality

            modality = guess_modality(dict(raw.metadata.get("em_restore", {})))
        return {
            "raw": raw,
            "restored": restored,
            "raw_data": raw.data,  # the array objects only; pixels are read in the worker
            "restored_data": restored.data,
            "frame_index": index,
            "restored_index": index if restored.data.ndim == raw.data.ndim else (),
            "modality": modality,
        }

    @staticmethod
    def _problem(raw: Any, restored: Any) -> str | None:
        """What is wrong with the pair, with the fix; None if it can be checked."""
        if raw is None or restored is None:
            return "choose a raw layer and its restored layer; open or select two images first"
        if raw is restored:
            return f"raw and restored are the same layer {raw.name!r}; pick its restoration"
        for layer in (raw, restored):
            if layer.rgb:
                return (
                    f"layer {layer.name!r} is RGB; the check works on greyscale data in the "
                    "raw's units — check the greyscale restoration"
                )
        a, b = tuple(raw.data.shape), tuple(restored.data.shape)
        if a != b and not (len(b) == 2 and len(a) > 2 and a[-2:] == b):
            return (
                f"raw {raw.name!r} has shape {a} but restored {restored.name!r} has {b}; "
                "check the restoration of the same image (same frames, no crop)"
            )
        if min(a[-2:]) < MIN_SIDE:
            return (
                f"the frames are {a[-2]}×{a[-1]} px; the fidelity tests need at least "
                f"{MIN_SIDE}×{MIN_SIDE} px — check a larger image"
            )
        return None

    # ---------------------------------------------------------------- actions
    def run(self, _value: Any = None) -> Job | None:
        """Check the frame on screen; add the map, the worst regions and the summary."""
        request = self._request()
        if request is None:
            return None

        def work() -> Generator[Any, None, Any]:
            from em_restore.backend.denoise import Progress

            yield Progress(0, 1, "checking fidelity")
            raw = np.asarray(request["raw_data"][request["frame_index"]])
            restored = np.asarray(request["restored_data"][request["restored_index"]])
            f = frame_summary(raw, restored, modality=request["modality"])
            yield Progress(1, 1, "checking fidelity")
            return f

        def done(f: Any) -> None:
            self._add_results(request, f.map, f.summary)

        return self._start("Check", work, done)

    def _add_results(self, request: dict[str, Any], fmap: np.ndarray, summary: dict) -> None:
        restored = request["restored"]
        index = request["frame_index"]
        summary = {**summary, "raw_layer": request["raw"].name}
        if index:
            summary["frame"] = list(index)
        kwargs = fidelity_layer_kwargs(restored, summary)
        n_lead = restored.data.ndim - 2
        for key in ("scale", "translate", "units", "axis_labels"):  # one 2-D frame
            if key in kwargs:
                kwargs[key] = kwargs[key][n_lead:]
        kwargs["metadata"]["em_restore"]["raw_layer"] = request["raw"].name
        if index:
            kwargs["metadata"]["em_restore"]["frame_index"] = list(index)
        for name in (kwargs["name"], f"{kwargs['name']} regions"):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        self.last_map = self.viewer.add_image(fmap, **kwargs)
        self.last_regions = self._add_regions(kwargs, {**summary, "shape": fmap.shape})
        record_fidelity(restored, summary)
        self.summary = summary
        line = summary_line(summary)
        if index:
            line += f" (frame {', '.join(str(i) for i in index)})"
        self.summary_label.value = line
        self.last_result = (request["raw"], self.last_map)

    def _add_regions(self, map_kwargs: dict[str, Any], summary: dict) -> Any:
        """The worst regions as red outlines, each labelled with its test."""
        regions = list(summary.get("regions") or [])[:MAX_REGIONS]
        features = {
            "test": [r["test"] for r in regions],
            "peak": [float(r["peak"]) for r in regions],
            "area": [int(r["area"]) for r in regions],
        }
        side = min(summary.get("shape") or (256, 256))
        kwargs: dict[str, Any] = {
            "name": f"{map_kwargs['name']} regions",
            "scale": map_kwargs["scale"],
            "translate": map_kwargs["translate"],
            "shape_type": "rectangle",
            "edge_color": "red",
            "face_color": "transparent",
            "edge_width": max(1.5, side / 256),  # px: visible on a large frame too
            "features": features,
            "text": {"string": "{test}", "color": "red", "size": 9, "anchor": "upper_left"},
            "metadata": {
                "em_restore": {
                    "operation": "fidelity regions",
                    "restored_layer": map_kwargs["metadata"]["em_restore"]["restored_layer"],
                    "regions": regions,
                }
            },
        }
        for attr in ("units", "axis_labels"):
            if attr in map_kwargs:
                kwargs[attr] = map_kwargs[attr]
        return self.viewer.add_shapes(region_rectangles(regions) or None, **kwargs)
