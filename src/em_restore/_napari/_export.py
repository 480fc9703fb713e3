"""Export… in the training widget: any listed model as a BioImage Model Zoo package or
an ONNX file (docs/exchange.md), written by a background :class:`._jobs.Job`."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, PushButton

from em_restore._napari._jobs import Job
from em_restore._napari._models import user_models

#: Export… choices: label -> kind, file suffix, file-dialog filter
EXPORT_FORMATS = {
    "BioImage Model Zoo (.zip)": {"kind": "bmz", "suffix": ".zip", "filter": "BMZ package (*.zip)"},
    "ONNX (.onnx)": {"kind": "onnx", "suffix": ".onnx", "filter": "ONNX model (*.onnx)"},
}


def _export_models(_widget: Any = None) -> list[str]:
    from em_restore.backend.models import list_models

    return [e.name for e in list_models()]


class ExportControls:
    """Mixin of a widget with ``_refuse``, ``_set_status`` and ``native``: the export
    menus, the Export… button and :meth:`export`."""

    def _build_export(self) -> list[Any]:
        self.export_model_combo = ComboBox(label="export model", choices=_export_models)
        self.export_format_combo = ComboBox(label="export as", choices=list(EXPORT_FORMATS))
        self.export_button = PushButton(text="Export…")
        self.export_job: Job | None = None
        self.export_button.changed.connect(lambda _v=None: self.export())
        user_models.changed.connect(self.export_model_combo.reset_choices)
        return [self.export_model_combo, self.export_format_combo, self.export_button]

    def _disconnect_export(self) -> None:
        user_models.changed.disconnect(self.export_model_combo.reset_choices)

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
            from em_restore.backend._progress import Progress
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
