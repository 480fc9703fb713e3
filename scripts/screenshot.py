"""Take the README / docs screenshots from a real napari viewer.

Run on a display or a virtual one::

    xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python scripts/screenshot.py

Writes ``docs/images/*.png``.
"""

from __future__ import annotations

import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from em_restore._napari._layers import viewer_grid

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def _settle(viewer: napari.Viewer) -> None:
    for _ in range(20):
        QApplication.processEvents()


def sample_side_by_side() -> Path:
    """Nanoparticles at 5 and 1000 e⁻/px, side by side, with an nm scale bar."""
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 800)
    viewer.open_sample("napari-em-restore", "nanoparticles")
    for layer in viewer.layers:
        layer.visible = True
    grid = viewer_grid(viewer)
    grid.enabled = True
    grid.shape = (1, 2)
    viewer.scale_bar.visible = True
    viewer.reset_view()
    _settle(viewer)
    path = OUT / "napari_nanoparticles_sample.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    viewer.close()
    return path


def denoise_widget() -> Path:
    """The Denoise widget after a run on the vesicle sample, raw and result side by side."""
    from em_restore._napari.denoise_widget import DenoiseWidget

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 850)
    viewer.open_sample("napari-em-restore", "vesicles")
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Denoise")
    widget.layer_combo.value = viewer.layers["vesicles noisy+blurred"]
    widget.run()
    deadline = time.monotonic() + 600
    while widget.last_result is None and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)
    widget.side_by_side()
    viewer.scale_bar.visible = True
    _settle(viewer)
    path = OUT / "napari_denoise_widget.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    viewer.close()
    return path


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    print(sample_side_by_side())
    print(denoise_widget())
