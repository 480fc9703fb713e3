"""The deconvolve widget in a real napari viewer: blind, non-blind stack, cancel, RGB."""

from __future__ import annotations

import json

import numpy as np
import pytest

from em_restore.backend import simulate as sim
from em_restore.backend.psf import convolve, gaussian_psf
from tests.conftest import wait_for

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def blurred():
    clean, _ = sim.nanoparticles((96, 96), pixel_size_nm=1.0, rng=0)
    return convolve(clean, gaussian_psf(1.5)).astype(np.float32)


def _widget(viewer):
    from em_restore._napari.deconvolve_widget import DeconvolveWidget

    widget = DeconvolveWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def test_widget_is_contributed_by_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-em-restore", "Deconvolve")
    assert type(widget).__name__ == "DeconvolveWidget"


def test_blind_current_frame_adds_result_and_kernel(make_napari_viewer, qtbot, blurred):
    viewer = make_napari_viewer()
    raw = viewer.add_image(blurred, name="raw", scale=(0.5, 0.5), translate=(3, 4))
    before = raw.data.copy()
    widget = _widget(viewer)
    widget.layer_combo.value = raw
    widget.denoise_check.value = False
    assert widget.psf_combo.value == "blind (estimate)" and widget.windows_spin.enabled
    assert not widget.psf_size.enabled and not widget.psf_angle.enabled

    job = widget.run()
    wait_for(qtbot, job)

    assert widget.status.value == "Deconvolve: done"
    result = viewer.layers["raw deconvolved (rl)"]
    kernel = viewer.layers["raw kernel"]
    assert widget.last_result == (raw, result) and widget.last_kernel is kernel
    assert result.data.shape == blurred.shape and result.data.dtype == np.float32
    np.testing.assert_allclose(result.scale, raw.scale)
    np.testing.assert_allclose(result.translate, raw.translate)
    meta = result.metadata["em_restore"]
    assert meta["operation"] == "deconvolve" and meta["source_layer"] == "raw"
    assert meta["deconvolve"]["psf_source"] == "blind"
    assert meta["deconvolve"]["denoise"] is None and meta["frame_index"] == []
    json.dumps(meta)
    np.testing.assert_array_equal(raw.data, before)  # raw never modified
    assert kernel.data.ndim == 2 and kernel.data.shape[0] % 2 == 1
    assert kernel.data.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(kernel.scale, (1.0, 1.0))
    kmeta = kernel.metadata["em_restore"]
    assert kmeta["psf_source"] == "blind" and kmeta["size"] == list(kernel.data.shape)
    assert widget.compare_button.enabled

    widget.side_by_side()
    assert [layer.visible for layer in viewer.layers] == [True, True, False]


def test_gaussian_whole_stack_and_kernel_replaced(make_napari_viewer, qtbot, blurred):
    stack = np.stack([blurred, blurred[::-1], blurred[:, ::-1]])
    viewer = make_napari_viewer()
    raw = viewer.add_image(stack, name="raw", scale=(1.0, 0.5, 0.5))
    viewer.dims.set_current_step(0, 1)
    widget = _widget(viewer)
    widget.layer_combo.value = raw
    widget.scope_combo.value = "whole stack"
    widget.psf_combo.value = "gaussian"
    widget.psf_size.value = 1.5
    widget.solver_combo.value = "wiener"
    widget.denoise_check.value = False
    assert widget.psf_size.enabled and widget.psf_size.label == "sigma (px)"
    assert not widget.psf_angle.enabled and not widget.windows_spin.enabled
    assert not widget.modality_combo.enabled and not widget.denoiser_combo.enabled

    for _ in range(2):  # the second run replaces the kernel layer
        job = widget.run()
        wait_for(qtbot, job)

    result = widget.last_result[1]
    assert result.name.startswith("raw deconvolved (wiener)")
    assert result.data.shape == (3, 96, 96)
    np.testing.assert_allclose(result.scale, raw.scale)
    meta = result.metadata["em_restore"]["deconvolve"]
    assert meta["psf_source"] == "gaussian:1.5" and meta["solver"] == "wiener"
    assert "frame_index" not in result.metadata["em_restore"]
    assert [layer.name for layer in viewer.layers].count("raw kernel") == 1
    np.testing.assert_allclose(viewer.layers["raw kernel"].data, gaussian_psf(1.5), atol=1e-7)


def test_default_denoiser_is_the_model_and_recorded(make_napari_viewer, qtbot, blurred):
    viewer = make_napari_viewer()
    raw = viewer.add_image(blurred, name="raw")
    widget = _widget(viewer)
    widget.layer_combo.value = raw
    assert widget.denoise_check.value and widget.denoiser_combo.value == "default model"
    assert widget.denoiser_combo.enabled
    job = widget.run()
    wait_for(qtbot, job)
    assert widget.status.value == "Deconvolve: done"
    den = widget.last_result[1].metadata["em_restore"]["deconvolve"]["denoise"]
    assert den["method"] == "model" and den["model"]["name"] == "em-denoise-fast"
    assert len(den["model"]["sha256"]) == 64

    widget.denoiser_combo.value = "classical (automatic)"
    assert widget._request()["denoise"] == "classical"


def test_motion_spec_has_length_and_angle(make_napari_viewer):
    from em_restore._napari.deconvolve_widget import psf_spec

    viewer = make_napari_viewer()
    widget = _widget(viewer)
    widget.psf_combo.value = "motion"
    assert widget.psf_angle.enabled and widget.psf_size.label == "length (px)"
    assert psf_spec("motion", 11.0, 35.0) == "motion:11.0,35.0"
    assert psf_spec("disk", 3.0, 0.0) == "disk:3.0"
    assert psf_spec("blind (estimate)", 3.0, 0.0) is None


def test_cancel_adds_nothing(make_napari_viewer, qtbot, blurred):
    viewer = make_napari_viewer()
    raw = viewer.add_image(np.stack([blurred] * 3), name="raw")
    widget = _widget(viewer)
    widget.layer_combo.value = raw
    widget.scope_combo.value = "whole stack"

    job = widget.run()
    assert widget.cancel_button.enabled
    widget.cancel()
    wait_for(qtbot, job)
    assert [layer.name for layer in viewer.layers] == ["raw"]
    assert widget.last_result is None and widget.last_kernel is None
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    assert "cancelled" in widget.status.value


def test_rgb_layer_is_refused_with_a_message(make_napari_viewer, monkeypatch):
    viewer = make_napari_viewer()
    rgb = viewer.add_image(np.zeros((16, 16, 3), np.uint8), rgb=True, name="photo")
    widget = _widget(viewer)
    widget.layer_combo.value = rgb
    messages = []
    monkeypatch.setattr(
        "napari.utils.notifications.show_warning", lambda message: messages.append(message)
    )
    assert widget.run() is None and widget.job is None
    assert messages and "greyscale" in messages[0]
    assert [layer.name for layer in viewer.layers] == ["photo"]

    viewer.layers.clear()
    assert widget.layer_combo.value is None
    assert widget.run() is None and "no image layer" in messages[-1]


def test_current_frame_of_a_stack_is_a_2d_layer_on_that_frame(make_napari_viewer, qtbot, blurred):
    viewer = make_napari_viewer()
    stack = np.stack([blurred, blurred[::-1], blurred[:, ::-1]])
    raw = viewer.add_image(
        stack, name="raw", scale=(2.0, 0.5, 0.5), translate=(0, 3, 4), units=("s", "nm", "nm")
    )
    viewer.dims.set_current_step(0, 2)
    widget = _widget(viewer)
    widget.layer_combo.value = raw
    widget.psf_combo.value = "disk"
    widget.psf_size.value = 1.0
    widget.solver_combo.value = "wiener"
    widget.denoise_check.value = False

    job = widget.run()
    wait_for(qtbot, job)

    result = widget.last_result[1]
    assert result.data.shape == (96, 96)
    np.testing.assert_allclose(result.scale, (0.5, 0.5))
    np.testing.assert_allclose(result.translate, (3, 4))
    assert [str(u) for u in result.units] == ["nanometer", "nanometer"]
    meta = result.metadata["em_restore"]
    assert meta["frame_index"] == [2] and meta["deconvolve"]["psf_source"] == "disk:1.0"
