"""Comparison panel: a layer against a reference layer (metrics, difference, histograms, grid).

Thin: the numbers are :mod:`em_restore.backend.metrics`. PSNR / SSIM / MAE are
computed on the frame shown by the viewer (they follow the dims slider); the
difference layer is lazy for stacks; histograms of both layers share their bins
and use a log count axis (as the low-dose TEM paper's histogram figure); "side
by side" shows the two layers alone in napari's grid, which shares one camera,
so zoom and pan stay linked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton

from em_restore._napari._base import on_close, status_label
from em_restore._napari._layers import (
    current_frame_index,
    layer_choices,
    result_layer_kwargs,
    show_side_by_side,
    start_where_the_user_is,
)
from em_restore.backend import metrics

if TYPE_CHECKING:
    import napari


class CompareWidget(Container):
    """Metrics, difference layer, histograms and linked grid for two image layers."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.scores: dict[str, float] | None = None
        self.layer_combo = ComboBox(label="layer", choices=self._image_layers, nullable=True)
        start_where_the_user_is(self.layer_combo, self.viewer)
        self.reference_combo = ComboBox(
            label="reference", choices=self._image_layers, nullable=True
        )
        self.compute_button = PushButton(text="Compare frame")
        self.difference_button = PushButton(text="Add difference layer")
        self.grid_button = PushButton(text="Side by side (linked)")
        self.status = status_label()
        self.extend(
            [
                self.layer_combo,
                self.reference_combo,
                self.compute_button,
                self.difference_button,
                self.grid_button,
                self.status,
            ]
        )
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(5, 2.6), tight_layout=True)
        self.axes = self.figure.add_subplot(111)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(180)
        self.native.layout().addWidget(self.canvas)
        self.compute_button.changed.connect(self.compute)
        self.difference_button.changed.connect(self.add_difference)
        self.grid_button.changed.connect(self.side_by_side)
        for event in ("inserted", "removed", "reordered"):
            getattr(self.viewer.layers.events, event).connect(self._refresh_layers)
        on_close(self, self._disconnect)
        self._refresh_layers()

    def _disconnect(self, _obj: Any = None) -> None:
        """The widget is gone: the viewer must stop calling it."""
        for event in ("inserted", "removed", "reordered"):
            getattr(self.viewer.layers.events, event).disconnect(self._refresh_layers)

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return layer_choices(self.viewer, "Image")

    def _refresh_layers(self, _event: Any = None) -> None:
        self.layer_combo.reset_choices()
        start_where_the_user_is(self.layer_combo, self.viewer)
        self.reference_combo.reset_choices()

    def _pair(self) -> tuple[Any, Any] | None:
        from napari.utils.notifications import show_warning

        layer, ref = self.layer_combo.value, self.reference_combo.value
        problem = None
        if layer is None or ref is None:
            problem = "Choose a layer and a reference layer to compare."
        elif layer is ref:
            problem = "The layer and the reference are the same; pick two different layers."
        elif layer.rgb or ref.rgb:
            problem = "RGB layers cannot be compared; convert them to greyscale first."
        elif layer.data.shape != ref.data.shape:
            problem = (
                f"{layer.name!r} has shape {layer.data.shape} and {ref.name!r} "
                f"{ref.data.shape}; compare layers of the same shape (a result and its source)."
            )
        if problem:
            self.status.value = problem
            show_warning(problem)
            return None
        return layer, ref

    def _frames(self, layer: Any, ref: Any) -> tuple[np.ndarray, np.ndarray]:
        point = self.viewer.dims.point
        return (
            np.asarray(layer.data[current_frame_index(layer, point)]),
            np.asarray(ref.data[current_frame_index(ref, point)]),
        )

    def compute(self, _value: Any = None) -> dict[str, float] | None:
        """Metrics of the shown frame and the two histograms."""
        pair = self._pair()
        if pair is None:
            return None
        layer, ref = pair
        a, b = self._frames(layer, ref)
        try:
            self.scores = metrics.compare(a, b)
        except ValueError as exc:
            self.status.value = str(exc)
            return None
        edges, (ca, cb) = metrics.histograms(a, b, bins=128)
        centres = 0.5 * (edges[1:] + edges[:-1])
        ax = self.axes
        ax.clear()
        ax.step(centres, np.maximum(cb, 0.8), where="mid", label=ref.name, color="0.4")
        ax.step(centres, np.maximum(ca, 0.8), where="mid", label=layer.name, color="C1")
        ax.set_yscale("log")
        ax.set_xlabel("intensity")
        ax.set_ylabel("pixels")
        ax.legend(fontsize="small")
        self.canvas.draw_idle()
        s = self.scores
        self.status.value = (
            f"PSNR {s['psnr']:.2f} dB   SSIM {s['ssim']:.4f}   MAE {s['mae']:.4g}  "
            f"({layer.name} vs {ref.name})"
        )
        return self.scores

    def add_difference(self, _value: Any = None) -> Any:
        """A new layer ``layer - reference`` (lazy for stacks), centred colour map."""
        pair = self._pair()
        if pair is None:
            return None
        layer, ref = pair
        diff = metrics.difference(layer.data, ref.data)
        a, b = self._frames(layer, ref)
        lim = float(np.percentile(np.abs(a.astype(np.float64) - b), 99.5)) or 1.0
        kwargs = result_layer_kwargs(
            layer,
            f"{layer.name} − {ref.name}",
            {"operation": "difference", "reference_layer": ref.name},
        )
        return self.viewer.add_image(diff, colormap="PiYG", contrast_limits=(-lim, lim), **kwargs)

    def side_by_side(self, _value: Any = None) -> None:
        pair = self._pair()
        if pair is not None:
            show_side_by_side(self.viewer, pair[1], pair[0])
