"""Line-profile particle sizing: profiles of raw and restored layers, overlaid, with fits.

Thin: the sampling and the sizing are :func:`em_restore.backend.profile.measure_line`.
The widget maps the line drawn in a Shapes layer to each chosen image layer's
pixel coordinates, takes the frame shown by the viewer (it follows the dims
slider), plots every profile with its fitted projected-sphere curve in a
matplotlib dock, and lists the measurements in a table that exports to CSV.
The work takes milliseconds, so it runs on the main thread, debounced.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton, Select, SpinBox
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog, QTableWidget, QTableWidgetItem

from em_restore._atomic import write_text_atomic
from em_restore._napari._base import on_close, status_label
from em_restore._napari._layers import current_frame_index, layer_choices
from em_restore.backend.profile import length_unit, measure_line

if TYPE_CHECKING:
    import napari

LINE_LAYER_NAME = "profile line"
COLUMNS = ("layer", "item", "centre", "diameter", "FWHM", "edge width", "distance", "resolved")


def layer_unit(layer: Any) -> str:
    """Physical unit of a layer's x axis: from our metadata, else napari's units, else px."""
    units = layer.metadata.get("em_restore", {}).get("units")
    return length_unit(units[-1] if units else getattr(layer, "units", ["pixel"])[-1])


def line_in_layer_pixels(shapes: Any, index: int, image: Any) -> np.ndarray:
    """Vertices of shape ``index`` as (row, col) pixel coordinates of ``image``."""
    pts = np.asarray(shapes.data[index], dtype=float)[:, -2:]
    world = pts * np.asarray(shapes.scale[-2:]) + np.asarray(shapes.translate[-2:])
    return (world - np.asarray(image.translate[-2:])) / np.asarray(image.scale[-2:])


class ProfileWidget(Container):
    """Profiles across particles in every chosen layer, with diameter, edge width, pairs."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.results: list[tuple[str, Any, Any]] = []  # (layer name, profile, analysis)
        self.line_combo = ComboBox(label="line layer", choices=self._shapes_layers, nullable=True)
        self.new_line = PushButton(text="New line layer")
        self.layers = Select(label="profiles of", choices=self._image_layers)
        self.line_width = SpinBox(label="width (px)", value=3, min=1, max=101)
        self.appearance = ComboBox(
            label="particles", choices=["auto", "dark", "bright"], value="auto"
        )
        self.export = PushButton(text="Export CSV…")
        self.status = status_label("Draw a line across particles, from background to background.")
        self.extend(
            [
                self.line_combo,
                self.new_line,
                self.layers,
                self.line_width,
                self.appearance,
                self.export,
                self.status,
            ]
        )
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(5, 3), tight_layout=True)
        self.axes = self.figure.add_subplot(111)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.native.layout().addWidget(self.canvas)
        self.native.layout().addWidget(self.table)

        self._timer = QTimer(self.native)  # dies with the widget
        self._timer.setSingleShot(True)
        self._timer.setInterval(40)
        self._timer.timeout.connect(self.update_profiles)
        self._watched: Any = None
        self.new_line.changed.connect(self.add_line_layer)
        self.export.changed.connect(self._export_clicked)
        self.line_combo.changed.connect(self._line_layer_changed)
        for w in (self.layers, self.line_width, self.appearance):
            w.changed.connect(self.schedule)
        for event in ("inserted", "removed", "reordered"):
            getattr(self.viewer.layers.events, event).connect(self._refresh_layers)
        self.viewer.dims.events.current_step.connect(self.schedule)
        on_close(self, self._disconnect)
        self._refresh_layers()

    def _disconnect(self, _obj: Any = None) -> None:
        """The widget is gone: the viewer must stop calling it."""
        for event in ("inserted", "removed", "reordered"):
            getattr(self.viewer.layers.events, event).disconnect(self._refresh_layers)
        self.viewer.dims.events.current_step.disconnect(self.schedule)
        if self._watched is not None:
            self._watched.events.data.disconnect(self.schedule)
            self._watched.events.highlight.disconnect(self.schedule)
            self._watched = None

    # ---------------------------------------------------------------- choices
    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return layer_choices(self.viewer, "Image")

    def _shapes_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return layer_choices(self.viewer, "Shapes")

    def _refresh_layers(self, _event: Any = None) -> None:
        chosen = [ly for ly in (self.layers.value or []) if ly in self.viewer.layers]
        self.layers.reset_choices()
        self.line_combo.reset_choices()
        images = [ly for _, ly in self._image_layers()]
        self.layers.value = chosen or [ly for ly in images if not ly.rgb][:2]
        if self.line_combo.value is None and self._shapes_layers():
            self.line_combo.value = self._shapes_layers()[-1][1]
        self.schedule()

    def _line_layer_changed(self, _value: Any = None) -> None:
        if self._watched is not None:
            self._watched.events.data.disconnect(self.schedule)
            self._watched.events.highlight.disconnect(self.schedule)
        self._watched = self.line_combo.value
        if self._watched is not None:
            self._watched.events.data.connect(self.schedule)
            self._watched.events.highlight.connect(self.schedule)
        self.schedule()

    def add_line_layer(self, _value: Any = None) -> Any:
        """A Shapes layer on the first chosen image's grid, in line-drawing mode."""
        ref = (self.layers.value or [None])[0]
        kwargs: dict[str, Any] = {"name": LINE_LAYER_NAME, "edge_width": 2, "edge_color": "yellow"}
        if ref is not None:
            kwargs.update(scale=tuple(ref.scale[-2:]), translate=tuple(ref.translate[-2:]))
            units = getattr(ref, "units", None)
            if units is not None:  # napari warns on layers with mixed units
                kwargs["units"] = tuple(str(u) for u in units[-2:])
        layer = self.viewer.add_shapes(None, shape_type="line", ndim=2, **kwargs)
        layer.mode = "add_line"
        self.line_combo.value = layer
        return layer

    # ---------------------------------------------------------------- work
    def schedule(self, _event: Any = None) -> None:
        self._timer.start()

    def _line_index(self, shapes: Any) -> int | None:
        kinds = list(shapes.shape_type)
        usable = [i for i, k in enumerate(kinds) if k in ("line", "path")]
        if not usable:
            return None
        selected = [i for i in sorted(shapes.selected_data) if i in usable]
        return selected[0] if selected else usable[-1]

    def update_profiles(self) -> None:
        """Sample, size and plot every chosen layer along the current line."""
        self.results = []
        shapes = self.line_combo.value
        index = None if shapes is None else self._line_index(shapes)
        if index is None:
            self._show([], "Draw a line (or path) in a Shapes layer to measure a profile.")
            return
        notes = []
        for layer in self.layers.value or []:
            if layer.rgb:
                notes.append(f"{layer.name}: RGB skipped (profiles need a greyscale layer)")
                continue
            frame = layer.data[current_frame_index(layer, self.viewer.dims.point)]
            unit = layer_unit(layer)
            scale = tuple(float(s) for s in layer.scale[-2:]) if unit != "px" else 1.0
            try:
                prof, res = measure_line(
                    np.asarray(frame),
                    line_in_layer_pixels(shapes, index, layer),
                    width=self.line_width.value,
                    scale=scale,
                    unit=unit,
                    appearance=self.appearance.value,
                )
            except ValueError as exc:
                notes.append(f"{layer.name}: {exc}")
                continue
            self.results.append((layer.name, prof, res))
        self._show(notes, None)

    def _show(self, notes: list[str], empty_message: str | None) -> None:
        ax = self.axes
        ax.clear()
        for k, (name, prof, res) in enumerate(self.results):
            colour = f"C{k}"
            ax.plot(prof.positions, prof.values, color=colour, lw=1, label=name)
            if res.particles:
                ax.plot(prof.positions, res.fit, color=colour, lw=1.5, ls="--")
            for p in res.particles:
                ax.axvspan(p.center - p.diameter / 2, p.center + p.diameter / 2,
                           color=colour, alpha=0.08)  # fmt: skip
        keys = ("layer", "item", "center", "diameter", "fwhm", "edge_width", "distance")
        rows = [
            [_fmt(r[k]) for k in keys]
            + ["" if r["resolved"] is None else ("yes" if r["resolved"] else "no")]
            for r in self.table_rows()
        ]
        if self.results:
            ax.set_xlabel(f"distance along the line ({self.results[0][1].unit})")
            ax.set_ylabel("intensity")
            ax.legend(fontsize="small", loc="best")
        self.canvas.draw_idle()
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        if empty_message is not None:
            message = empty_message
        else:
            n = sum(len(res.particles) for _, _, res in self.results)
            message = f"{n} particle(s) on {len(self.results)} profile(s)."
        if notes:
            message = " ".join([message, *notes])
            from napari.utils.notifications import show_warning

            show_warning(notes[0])
        self.status.value = message

    # ---------------------------------------------------------------- export
    def table_rows(self) -> list[dict[str, Any]]:
        """One dict per particle and per pair, in the profile's unit (the CSV rows)."""
        out = []
        blank = dict.fromkeys(("center", "diameter", "fwhm", "edge_width", "distance", "resolved"))
        for name, prof, res in self.results:
            base = {"layer": name, "unit": prof.unit}
            for i, p in enumerate(res.particles):
                sizes = {"center": p.center, "diameter": p.diameter, "fwhm": p.fwhm}
                out.append({**base, **blank, **sizes, "item": f"particle {i}",
                            "edge_width": p.edge_width})  # fmt: skip
            for q in res.pairs:
                out.append({**base, **blank, "item": f"pair {q.first}-{q.second}",
                            "distance": q.distance, "resolved": q.resolved})  # fmt: skip
        return out

    def export_csv(self, path: str) -> None:
        """Write :meth:`table_rows` to ``path`` as CSV (empty cells for what does not apply)."""
        rows = self.table_rows()
        fields = ["layer", "item", "unit", "center", "diameter", "fwhm", "edge_width",
                  "distance", "resolved"]  # fmt: skip
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        write_text_atomic(path, text.getvalue())  # a failed export leaves the old file

    def _export_clicked(self, _value: Any = None) -> None:
        path, _ = QFileDialog.getSaveFileName(self.native, "Export measurements", "", "CSV (*.csv)")
        if path:
            self.export_csv(path if path.lower().endswith(".csv") else path + ".csv")
            self.status.value = f"Saved {path}"


def _fmt(v: Any) -> str:
    """A table cell: numbers to 4 significant digits, nothing for what does not apply."""
    if v is None:
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)
