"""Take the README / docs screenshots from a real napari viewer.

Run on a display or a virtual one::

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1200x24" \\
        .venv/bin/python scripts/screenshot.py [--out DIR] [--only denoise,profile]

Writes ``docs/images/napari_*.png`` (or into ``--out``): the bundled sample, then one
shot per dock widget, each after a real run on a bundled sample. Every wait has a
deadline: a job that fails, or does not finish in time, stops the script with an error
naming the shot. The PNGs are palette images (256 colours) to keep the repository small.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # napari and Qt are imported when a shot is taken: --help stays quick
    import napari

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
PLUGIN = "napari-em-restore"
WINDOW = (1400, 850)  # width, height of the main window in the screenshots
DOCK_WIDTH = 500  # the dock widget's width; the canvas gets the rest


class ShotError(RuntimeError):
    """A screenshot could not be taken (a job failed, was refused or timed out)."""


# ------------------------------------------------------------------ helpers
def _settle(rounds: int = 20) -> None:
    from qtpy.QtWidgets import QApplication

    for _ in range(rounds):
        QApplication.processEvents()
        time.sleep(0.01)


def _wait(done: Callable[[], bool], what: str, timeout: float) -> None:
    """Process Qt events until ``done()``; ShotError after ``timeout`` seconds."""
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise ShotError(f"{what} did not finish within {timeout:.0f} s")
        QApplication.processEvents()
        time.sleep(0.02)


def _run_job(widget: Any, what: str, timeout: float) -> None:
    """Click Run on a job widget, wait for the job to end, check it left a result."""
    job = widget.run()
    if job is None:
        raise ShotError(f"{what}: the widget refused to run ({widget.status.value!r})")
    _wait(lambda: not job.running, what, timeout)
    status = str(widget.status.value)
    if widget.last_result is None or "failed" in status or job.cancelled:
        raise ShotError(f"{what} ended without a result (status: {status!r})")


def _viewer() -> napari.Viewer:
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*WINDOW)
    return viewer


def _dock(viewer: napari.Viewer, widget: Any, name: str) -> Any:
    from qtpy.QtCore import Qt

    dock = viewer.window.add_dock_widget(widget, name=name, area="right")
    _settle(5)
    viewer.window._qt_window.resizeDocks([dock], [DOCK_WIDTH], Qt.Orientation.Horizontal)
    return widget


def _scale_bar(viewer: napari.Viewer) -> None:
    """Show the scale bar (``viewer.canvas.overlays`` since napari 0.9)."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    bar = getattr(overlays, "scale_bar", None)
    if bar is None:
        bar = viewer.scale_bar
    bar.visible = True


def _fit(viewer: napari.Viewer, layers: list[Any]) -> None:
    """Zoom on ``layers`` only (napari >= 0.6), else on every layer."""
    try:
        viewer.reset_view(layers=layers)
    except TypeError:
        viewer.reset_view()


def _restored_low_dose(viewer: napari.Viewer) -> tuple[Any, Any]:
    """The 5 e⁻/px nanoparticles and their restoration by the bundled network, made by
    the Denoise widget (not docked); the sample must be open."""
    from em_restore._napari.denoise_widget import DEFAULT_MODEL, DenoiseWidget

    raw = viewer.layers["nanoparticles 5 e⁻/px"]
    denoise = DenoiseWidget(viewer)
    denoise.layer_combo.value = raw
    denoise.method_combo.value = DEFAULT_MODEL
    denoise.fidelity_check.value = False  # the profile and compare shots show the result only
    _run_job(denoise, "Denoise (default model) on the nanoparticles sample", timeout=300)
    return raw, denoise.last_result[1]


def _hide_notifications(viewer: napari.Viewer) -> None:
    """Close the notification toasts (e.g. a path in the temporary folder) before a shot."""
    try:
        from napari._qt.dialogs.qt_notification import NapariQtNotification
    except ImportError:  # private napari API: a toast may stay, the shot is still valid
        return
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.hide()
    _settle(5)


def _save(viewer: napari.Viewer, path: Path) -> Path:
    """The whole window (canvas, layer list, dock widgets) as a 256-colour PNG."""
    from PIL import Image

    _settle()
    _hide_notifications(viewer)
    pixels = np.asarray(viewer.screenshot(canvas_only=False, flash=False))[..., :3]
    image = Image.fromarray(np.ascontiguousarray(pixels)).quantize(
        colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    image.save(path, optimize=True)
    return path


def _shot(func: Callable[[napari.Viewer, Path], Path]) -> Callable[[Path], Path]:
    """Give ``func`` a fresh viewer and close it afterwards, whatever happens."""

    def run(out: Path) -> Path:
        viewer = _viewer()
        try:
            return func(viewer, out)
        finally:
            viewer.close()
            _settle(5)

    run.__doc__ = func.__doc__
    return run


# ------------------------------------------------------------------ shots
@_shot
def sample_side_by_side(viewer: napari.Viewer, out: Path) -> Path:
    """Nanoparticles at 5 and 1000 e⁻/px, side by side, with an nm scale bar."""
    from em_restore._napari._layers import viewer_grid

    viewer.window._qt_window.resize(WINDOW[0], 800)
    viewer.open_sample(PLUGIN, "nanoparticles")
    for layer in viewer.layers:
        layer.visible = True
    grid = viewer_grid(viewer)
    grid.enabled = True
    grid.shape = (1, 2)
    _scale_bar(viewer)
    viewer.reset_view()
    return _save(viewer, out / "napari_nanoparticles_sample.png")


@_shot
def denoise_widget(viewer: napari.Viewer, out: Path) -> Path:
    """The Denoise widget after a classical run on the vesicle sample, side by side."""
    from em_restore._napari.denoise_widget import DenoiseWidget

    viewer.open_sample(PLUGIN, "vesicles")
    widget = _dock(viewer, DenoiseWidget(viewer), "Denoise")
    widget.layer_combo.value = viewer.layers["vesicles noisy+blurred"]
    widget.method_combo.value = "classical"  # the default is the model since 2026-11-22
    _run_job(widget, "Denoise (classical) on the vesicles sample", timeout=600)
    widget.side_by_side()
    viewer.layers.selection.active = widget.last_result[1]
    _scale_bar(viewer)
    return _save(viewer, out / "napari_denoise_widget.png")


@_shot
def deconvolve_widget(viewer: napari.Viewer, out: Path) -> Path:
    """The Deconvolve widget after a blind run on the vesicle sample, side by side."""
    from em_restore._napari.deconvolve_widget import DeconvolveWidget

    viewer.open_sample(PLUGIN, "vesicles")
    widget = _dock(viewer, DeconvolveWidget(viewer), "Deconvolve")
    widget.layer_combo.value = viewer.layers["vesicles noisy+blurred"]
    _run_job(widget, "Deconvolve (blind) on the vesicles sample", timeout=600)
    widget.side_by_side()
    viewer.layers.selection.active = widget.last_result[1]
    # No scale bar: the kernel layer (in pixels) makes napari drop the units.
    return _save(viewer, out / "napari_deconvolve_widget.png")


@_shot
def burst_widget(viewer: napari.Viewer, out: Path) -> Path:
    """The Burst widget after a run on the moving-stage stream, raw and fused side by side."""
    from em_restore._napari.burst_widget import BurstWidget

    viewer.open_sample(PLUGIN, "stream")
    widget = _dock(viewer, BurstWidget(viewer), "Burst deblurring")
    widget.layer_combo.value = viewer.layers["stream noisy"]
    widget.method_combo.value = "network"
    models = [m for m in widget.model_combo.choices if m]
    if not models:
        raise ShotError("Burst: no burst model is installed (the bundled em-burst is missing)")
    widget.model_combo.value = "em-burst" if "em-burst" in models else models[0]
    _run_job(widget, "Burst (network) on the stream sample", timeout=600)
    widget.side_by_side()
    viewer.layers.selection.active = widget.last_result[1]
    viewer.dims.set_current_step(0, 12)  # a frame in the middle of the stream
    _scale_bar(viewer)
    return _save(viewer, out / "napari_burst_widget.png")


def _pair_line(margin_nm: float = 22.0) -> np.ndarray:
    """(row, col) px of a line through the near-touching pair 2-3 of the nanoparticle sample,
    from background to background (the sample's truth file; 1 nm pixels)."""
    from em_restore.samples import sample_path

    truth = json.loads(sample_path("nanoparticles_truth.json").read_text(encoding="utf-8"))
    a, b = (truth["particles"][i] for i in (2, 3))
    ca, cb = np.asarray(a["center_yx_nm"]), np.asarray(b["center_yx_nm"])
    u = (cb - ca) / np.linalg.norm(cb - ca)
    start = ca - u * (a["diameter_nm"] / 2 + margin_nm)
    end = cb + u * (b["diameter_nm"] / 2 + margin_nm)
    return np.round(np.stack([start, end]) / truth["pixel_size_nm"], 1)


@_shot
def profile_widget(viewer: napari.Viewer, out: Path) -> Path:
    """The Line profile widget sizing a near-touching pair, raw 5 e⁻/px and restored."""
    from em_restore._napari.profile_widget import ProfileWidget

    viewer.open_sample(PLUGIN, "nanoparticles")
    raw, restored = _restored_low_dose(viewer)
    widget = _dock(viewer, ProfileWidget(viewer), "Line profile")
    widget.layers.value = [raw, restored]
    line = widget.add_line_layer()
    line.add_lines(_pair_line())
    line.mode = "pan_zoom"
    widget.update_profiles()  # what the widget's debounce timer calls
    _wait(lambda: bool(widget.results), "Line profile on the nanoparticles sample", 30)
    if not all(res.particles for _, _, res in widget.results):
        raise ShotError(f"Line profile missed the particles: {widget.status.value!r}")
    for layer in viewer.layers:
        layer.visible = layer is restored or layer is line
    _scale_bar(viewer)
    viewer.reset_view()
    return _save(viewer, out / "napari_profile_widget.png")


@_shot
def compare_widget(viewer: napari.Viewer, out: Path) -> Path:
    """The Compare widget: 5 e⁻/px nanoparticles restored by the default model, against
    the raw: metrics, histograms, linked side by side."""
    from em_restore._napari.compare_widget import CompareWidget

    viewer.open_sample(PLUGIN, "nanoparticles")
    raw, restored = _restored_low_dose(viewer)
    widget = _dock(viewer, CompareWidget(viewer), "Compare")
    widget.layer_combo.value = restored
    widget.reference_combo.value = raw
    if widget.compute() is None:
        raise ShotError(f"Compare refused the pair: {widget.status.value!r}")
    widget.side_by_side()
    _scale_bar(viewer)
    return _save(viewer, out / "napari_compare_widget.png")


@_shot
def train_widget(viewer: napari.Viewer, out: Path) -> Path:
    """The Train widget after a short paired run on the nanoparticle twin (5 e⁻/px noisy,
    1000 e⁻/px clean, shown side by side): every setting, the result line and the loss
    curves. The model goes to a temporary folder, never the user's."""
    from em_restore._napari._layers import show_side_by_side
    from em_restore._napari.train_widget import TrainWidget

    viewer.window._qt_window.resize(WINDOW[0], 960)  # the widget is tall: every setting
    viewer.open_sample(PLUGIN, "nanoparticles")
    noisy = viewer.layers["nanoparticles 5 e⁻/px"]
    clean = viewer.layers["nanoparticles 1000 e⁻/px"]
    widget = _dock(viewer, TrainWidget(viewer), "Train a restorer")
    widget.noisy_combo.value = noisy
    widget.clean_combo.value = clean
    widget.epochs_spin.value = 8
    widget.steps_spin.value = 10
    widget.batch_spin.value = 4
    widget.device_combo.value = "cpu"
    widget.name_edit.value = "my-denoiser"
    saved = os.environ.get("EM_RESTORE_MODELS")
    with tempfile.TemporaryDirectory(prefix="em-restore-shot-") as models:
        os.environ["EM_RESTORE_MODELS"] = models
        try:
            job = widget.run()
            if job is None:
                raise ShotError(f"Train refused to start: {widget.status.value!r}")
            _wait(lambda: not job.running, "Train (8 epochs of 10 steps)", timeout=300)
        finally:
            if saved is None:
                os.environ.pop("EM_RESTORE_MODELS", None)
            else:
                os.environ["EM_RESTORE_MODELS"] = saved
    if widget.last_result is None or not widget.curves.val:
        raise ShotError(f"Train ended without a result (status: {widget.status.value!r})")
    limits = tuple(clean.contrast_limits)
    show_side_by_side(viewer, noisy, clean)
    clean.contrast_limits = limits  # its own range: another camera, another gain
    # No scale bar: the preview layer (in pixels) makes napari drop the units.
    return _save(viewer, out / "napari_train_widget.png")


@_shot
def check_widget(viewer: napari.Viewer, out: Path) -> Path:
    """The Check a restoration widget: the default model's result on the 5 e⁻/px
    nanoparticles with a particle edited in (darkened by 40 %), checked against the raw:
    the map over the result, the worst regions outlined, the summary in the dock."""
    import numpy as np

    from em_restore._napari.check_widget import CheckWidget

    viewer.open_sample(PLUGIN, "nanoparticles")
    raw, restored = _restored_low_dose(viewer)
    for layer in list(viewer.layers):
        if "1000" in layer.name:
            viewer.layers.remove(layer)
    painted = np.array(restored.data, dtype=np.float32)
    h, w = painted.shape
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx, r = h * 0.3, w * 0.7, min(h, w) * 0.05
    painted[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] *= 0.6
    edited = viewer.add_image(
        painted,
        name="restored, edited",
        scale=raw.scale,
        contrast_limits=restored.contrast_limits,
    )
    widget = _dock(viewer, CheckWidget(viewer), "Check a restoration")
    widget.layer_combo.value = raw
    widget.restored_combo.value = edited
    _run_job(widget, "Check a restoration on the edited result", timeout=120)
    for layer in viewer.layers:
        layer.visible = layer in (edited, widget.last_map, widget.last_regions)
    _scale_bar(viewer)
    viewer.reset_view()
    return _save(viewer, out / "napari_check_widget.png")


SHOTS: dict[str, Callable[[Path], Path]] = {
    "sample": sample_side_by_side,
    "denoise": denoise_widget,
    "deconvolve": deconvolve_widget,
    "burst": burst_widget,
    "profile": profile_widget,
    "compare": compare_widget,
    "check": check_widget,
    "train": train_widget,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder (default {OUT})")
    parser.add_argument(
        "--only",
        default=",".join(SHOTS),
        help=f"comma-separated shots to take (default all: {','.join(SHOTS)})",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHOTS]
    if unknown or not names:
        parser.error(f"unknown shot(s) {unknown}; choose from {','.join(SHOTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        start = time.monotonic()
        try:
            path = SHOTS[name](args.out)
        except ShotError as exc:
            print(f"screenshot {name}: {exc}", file=sys.stderr)
            return 1
        size = path.stat().st_size / 1024
        print(f"{path}  ({size:.0f} kB, {time.monotonic() - start:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
