"""Fidelity maps in a real napari viewer: the Check widget and the restoration widgets."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from em_restore.backend.simulate import AcquisitionConfig, nanoparticles, simulate_acquisition
from tests.conftest import wait_for

pytestmark = pytest.mark.gui

SQUARE = (slice(60, 100), slice(80, 120))  # 40×40 px painted into the "restoration"


@pytest.fixture(scope="module")
def low_dose():
    """A 5 e⁻/px TEM frame and its expected counts (the ideal restoration)."""
    clean, _ = nanoparticles((192, 192), pixel_size_nm=1.0, diameters_nm=(12, 24), rng=3)
    config = AcquisitionConfig.low_dose_tem(dose=5.0)
    raw, expected = simulate_acquisition(clean, config, rng=1, return_expected=True)
    return raw, expected.astype(np.float32)


def _digest(layer):
    return hashlib.sha256(np.ascontiguousarray(layer.data).tobytes()).hexdigest()


def _check_widget(viewer, raw, restored):
    from em_restore._napari.check_widget import CheckWidget

    widget = CheckWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.layer_combo.value = raw
    widget.restored_combo.value = restored
    return widget


def test_check_widget_is_contributed_by_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-em-restore", "Check a restoration")
    assert type(widget).__name__ == "CheckWidget"


def test_expected_counts_are_supported(make_napari_viewer, qtbot, low_dose):
    raw_data, expected = low_dose
    viewer = make_napari_viewer()
    raw = viewer.add_image(raw_data, name="raw", scale=(0.5, 0.5), translate=(3, 4))
    restored = viewer.add_image(expected, name="ideal", scale=(0.5, 0.5), translate=(3, 4))
    digest = _digest(raw)
    widget = _check_widget(viewer, raw, restored)

    wait_for(qtbot, widget.run())

    fmap = viewer.layers["ideal fidelity"]
    assert widget.last_map is fmap and fmap.data.shape == raw_data.shape
    assert fmap.data.dtype == np.float32 and 0 <= fmap.data.min() <= fmap.data.max() <= 1
    assert tuple(fmap.contrast_limits) == (0.0, 1.0) and fmap.blending == "additive"
    np.testing.assert_allclose(fmap.scale, raw.scale)
    np.testing.assert_allclose(fmap.translate, raw.translate)
    summary = fmap.metadata["em_restore"]["fidelity"]
    assert summary["flagged_fraction"] <= 0.05
    assert float((fmap.data >= 0.5).mean()) <= 0.05
    assert 0.9 < summary["chi2_ratio"] < 1.1
    assert restored.metadata["em_restore"]["fidelity"]["flagged_fraction"] <= 0.05
    assert widget.summary_label.value.startswith("flagged ")
    assert "χ² ratio" in widget.summary_label.value
    json.dumps(fmap.metadata["em_restore"])
    assert _digest(raw) == digest  # the raw layer is never written


def test_painted_square_is_flagged_and_outlined(make_napari_viewer, qtbot, low_dose):
    raw_data, expected = low_dose
    painted = expected.copy()
    painted[SQUARE] += 3.0
    viewer = make_napari_viewer()
    raw = viewer.add_image(raw_data, name="raw")
    restored = viewer.add_image(painted, name="painted")
    digest = _digest(raw)
    widget = _check_widget(viewer, raw, restored)

    wait_for(qtbot, widget.run())

    fmap = viewer.layers["painted fidelity"].data
    inside = fmap[SQUARE]
    assert float(inside.mean()) > 0.9 and float(np.median(inside)) > 0.95
    outside = np.ones(fmap.shape, bool)
    outside[48:112, 68:132] = False  # the square and its 12 px rim (4 px blocks, windows)
    assert float((fmap[outside] >= 0.5).mean()) <= 0.05
    shapes = viewer.layers["painted fidelity regions"]
    assert widget.last_regions is shapes and len(shapes.data) >= 1
    assert set(shapes.shape_type) == {"rectangle"}
    np.testing.assert_allclose(shapes.edge_color[0], [1, 0, 0, 1])
    tests = list(shapes.features["test"])
    assert all(t in {"mean", "variance", "noise fitted", "detail"} for t in tests)

    def overlap(rect):  # area shared with the square, in px
        (y0, x0), (y1, x1) = rect.min(0) + 0.5, rect.max(0) + 0.5
        dy = min(y1, 100) - max(y0, 60)
        dx = min(x1, 120) - max(x0, 80)
        return max(dy, 0) * max(dx, 0)

    assert overlap(shapes.data[0]) >= 0.8 * 40 * 40  # the worst region is the square
    summary = widget.summary
    assert summary["flagged_fraction"] >= 0.8 * 40 * 40 / fmap.size
    assert "worst region" in widget.summary_label.value
    assert _digest(raw) == digest


def test_frame_of_a_stack_is_checked_on_screen(make_napari_viewer, qtbot, low_dose):
    raw_data, expected = low_dose
    painted = expected.copy()
    painted[SQUARE] += 3.0
    raw_stack = np.stack([raw_data, raw_data])
    viewer = make_napari_viewer()
    raw = viewer.add_image(raw_stack, name="raw")
    restored = viewer.add_image(np.stack([expected, painted]), name="two")
    viewer.dims.set_current_step(0, 1)
    widget = _check_widget(viewer, raw, restored)

    wait_for(qtbot, widget.run())

    layer = viewer.layers["two fidelity"]
    assert layer.data.shape == raw_data.shape  # the frame on screen
    assert layer.metadata["em_restore"]["frame_index"] == [1]
    assert float(layer.data[SQUARE].mean()) > 0.9
    assert "(frame 1)" in widget.summary_label.value


@pytest.mark.parametrize(
    ("raw_shape", "restored_shape", "words"),
    [
        ((64, 64), (64, 48), "same image"),
        ((12, 64), (12, 64), "at least 16"),
        ((64, 64, 3), (64, 64), "RGB"),
        (None, (64, 64), "choose a raw layer"),
    ],
)
def test_bad_input_warns_and_adds_no_layer(
    make_napari_viewer, monkeypatch, raw_shape, restored_shape, words
):
    viewer = make_napari_viewer()
    raw = None
    if raw_shape is not None:
        raw = viewer.add_image(np.ones(raw_shape, np.uint8), name="raw", rgb=len(raw_shape) == 3)
    restored = viewer.add_image(np.ones(restored_shape, np.float32), name="restored")
    widget = _check_widget(viewer, raw, restored)
    messages = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", messages.append)
    names = [layer.name for layer in viewer.layers]

    assert widget.run() is None

    assert len(messages) == 1 and words in messages[0] and "\n" not in messages[0]
    assert [layer.name for layer in viewer.layers] == names


# ------------------------------------------------------------ restoration widgets
def _denoise_widget(viewer, raw):
    from em_restore._napari.denoise_widget import DenoiseWidget

    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.layer_combo.value = raw
    return widget


def test_fidelity_map_is_on_for_models_and_off_for_filters(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = _denoise_widget(viewer, None)
    assert widget.method_combo.value == "default model" and widget.fidelity_check.value
    widget.method_combo.value = "gaussian"
    assert not widget.fidelity_check.value
    widget.fidelity_check.value = True  # the user's choice holds until the method changes
    widget.modality_combo.value = "sem"
    assert widget.fidelity_check.value
    widget.method_combo.value = "default model"
    widget.method_combo.value = "classical"
    assert not widget.fidelity_check.value


def test_default_model_is_guarded_and_its_result_checked(
    make_napari_viewer, qtbot, monkeypatch, low_dose
):
    from em_restore.backend.models import default_model_name

    raw_data, expected = low_dose
    viewer = make_napari_viewer()
    raw = viewer.add_image(raw_data, name="raw", scale=(0.5, 0.5), translate=(3, 4))
    digest = _digest(raw)
    widget = _denoise_widget(viewer, raw)
    widget.modality_combo.value = "tem"
    infos = []
    monkeypatch.setattr("napari.utils.notifications.show_info", infos.append)

    wait_for(qtbot, widget.run())

    name = default_model_name("tem")
    result = viewer.layers[f"raw denoised (model {name}, checked)"]
    fmap = viewer.layers[f"{result.name} fidelity"]
    assert widget.last_fidelity is fmap and fmap.data.shape == raw_data.shape
    np.testing.assert_allclose(fmap.scale, raw.scale)
    np.testing.assert_allclose(fmap.translate, raw.translate)
    assert tuple(fmap.contrast_limits) == (0.0, 1.0) and fmap.blending == "additive"
    meta = result.metadata["em_restore"]
    record = meta["denoise"]
    assert record["checked"] is True and record["model"]["name"] == name
    frames = record["fallback"]["frames"]
    assert len(frames) == 1 and frames[0]["tiles"] >= 1
    assert record["fallback"]["noise"]["gain"] == pytest.approx(1.0, rel=0.15)
    summary = meta["fidelity"]
    assert summary == fmap.metadata["em_restore"]["fidelity"]
    assert 0 <= summary["flagged_fraction"] <= 0.10  # the network is supported here
    assert summary["flagged_fraction"] == pytest.approx(float((fmap.data >= 0.5).mean()), abs=1e-4)
    assert any(m.startswith("fidelity: ") for m in infos)  # the guarded plan's notice
    json.dumps(meta)
    truth_err = float(np.sqrt(np.mean((result.data - expected) ** 2)))
    raw_err = float(np.sqrt(np.mean((raw_data - expected) ** 2)))
    assert truth_err < 0.5 * raw_err

    infos.clear()
    wait_for(qtbot, widget.preview())  # a new guarded plan: its own record, its own map
    preview = widget.last_preview
    assert preview.metadata["em_restore"]["denoise"]["fallback"]["frames"][0]["frame"] == []
    pmap = viewer.layers[f"{preview.name} fidelity"]
    assert pmap.data.shape == raw_data.shape
    assert preview.metadata["em_restore"]["fidelity"]["flagged_fraction"] <= 0.10
    assert len(infos) == 1 and infos[0].startswith("fidelity: ")
    assert _digest(raw) == digest


def test_filters_get_no_map_and_a_guarded_stack_a_filling_one(make_napari_viewer, qtbot, low_dose):
    raw_data, _expected = low_dose
    rng = np.random.default_rng(0)
    stack = np.stack([raw_data, rng.poisson(raw_data.mean(), raw_data.shape)]).astype(np.uint16)
    viewer = make_napari_viewer()
    raw = viewer.add_image(stack, name="raw")
    digest = _digest(raw)
    widget = _denoise_widget(viewer, raw)
    widget.method_combo.value = "gaussian"
    wait_for(qtbot, widget.run())
    assert [layer.name for layer in viewer.layers] == ["raw", "raw denoised (gaussian)"]

    widget.method_combo.value = "default model"  # the map is on for it
    viewer.dims.set_current_step(0, 1)
    wait_for(qtbot, widget.run())

    result = widget.last_result[1]
    fmap = viewer.layers[f"{result.name} fidelity"]
    assert fmap.data.shape == stack.shape
    assert fmap.metadata["em_restore"]["status"] == "complete"
    assert result.metadata["em_restore"]["status"] == "complete"
    data = np.asarray(fmap.data)
    assert np.isfinite(data).all() and 0 <= data.min() <= data.max() <= 1
    summary = result.metadata["em_restore"]["fidelity"]
    assert summary["frame"] == [1]
    stack_record = summary["stack"]
    assert stack_record["frames_flagged"] == [
        pytest.approx(float((data[i] >= 0.5).mean()), abs=1e-4) for i in range(2)
    ]
    assert summary["flagged_fraction"] <= 0.10  # the frame on screen: flat Poisson counts
    frames = result.metadata["em_restore"]["denoise"]["fallback"]["frames"]
    assert [f["frame"] for f in frames] == [[0], [1]]  # recorded once every frame was done
    assert _digest(raw) == digest


def test_deconvolution_is_checked_through_its_kernel(make_napari_viewer, qtbot):
    from em_restore._napari.deconvolve_widget import DeconvolveWidget
    from em_restore.backend import simulate as sim
    from em_restore.backend.fidelity import fidelity
    from em_restore.backend.psf import convolve, gaussian_psf

    clean, _ = sim.nanoparticles((128, 128), pixel_size_nm=1.0, rng=0)
    counts = np.random.default_rng(0).poisson(20 * convolve(clean, gaussian_psf(1.5)))
    viewer = make_napari_viewer()
    raw = viewer.add_image(counts.astype(np.float32), name="raw", scale=(0.5, 0.5))
    digest = _digest(raw)
    widget = DeconvolveWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.fidelity_check.value  # the default pipeline denoises with the model
    widget.denoise_check.value = False
    assert not widget.fidelity_check.value
    widget.fidelity_check.value = True
    widget.layer_combo.value = raw
    widget.psf_combo.value = "gaussian"
    widget.psf_size.value = 1.5

    wait_for(qtbot, widget.run())

    result = widget.last_result[1]
    fmap = viewer.layers[f"{result.name} fidelity"]
    assert widget.last_fidelity is fmap and fmap.data.shape == counts.shape
    np.testing.assert_allclose(fmap.scale, raw.scale)
    summary = result.metadata["em_restore"]["fidelity"]
    assert summary["forward"] is not None  # compared after blurring by the kernel
    assert summary["flagged_fraction"] <= 0.10 and 0.6 < summary["chi2_ratio"] < 1.2
    # without the kernel the sharpened result is not what the counts recorded
    unblurred = fidelity(counts.astype(float), np.asarray(result.data, float))
    assert unblurred.summary["flagged_fraction"] > 0.5
    assert _digest(raw) == digest


def test_burst_frames_are_checked_through_their_motion_blur(make_napari_viewer, qtbot):
    from em_restore._napari.burst_widget import BurstWidget
    from em_restore.backend import simulate as sim

    spec, _ = sim.random_specimen((120, 200), rng=0, kinds=("nanoparticles",))
    noisy, _sharp, _ = sim.moving_stage_stream(
        spec, n_frames=6, frame_shape=(64, 64), velocity_px_per_frame=(0.0, 4.0), dose=100, rng=1
    )
    viewer = make_napari_viewer()
    raw = viewer.add_image(noisy.astype(np.float32), name="raw", scale=(2.0, 0.5, 0.5))
    digest = _digest(raw)
    viewer.dims.set_current_step(0, 3)
    widget = BurstWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.method_combo.value = "network"
    assert widget.fidelity_check.value  # on for the network, off for the fusions
    widget.method_combo.value = "classical"
    assert not widget.fidelity_check.value
    widget.fidelity_check.value = True
    widget.layer_combo.value = raw
    widget.frames_spin.value = 5

    wait_for(qtbot, widget.run())

    result = viewer.layers["raw burst (classical)"]
    fmap = viewer.layers["raw burst (classical) fidelity"]
    assert widget.last_fidelity is fmap and fmap.data.shape == result.data.shape == (2, 64, 64)
    np.testing.assert_allclose(fmap.scale, result.scale)
    np.testing.assert_allclose(fmap.translate, result.translate)  # on the centre frames
    assert fmap.metadata["em_restore"]["status"] == "complete"
    summary = result.metadata["em_restore"]["fidelity"]
    assert summary["frame"] == [1]  # output 1 sits at raw frame 3, the one on screen
    assert summary["forward"] is not None and 0.8 < summary["chi2_ratio"] < 1.2
    assert summary["stack"]["flagged_fraction"] <= 0.05
    assert len(summary["stack"]["frames_flagged"]) == 2
    assert _digest(raw) == digest


def test_cancel_while_the_map_fills_keeps_a_complete_result(make_napari_viewer, qtbot):
    stack = np.random.default_rng(0).poisson(5.0, (60, 128, 128)).astype(np.uint16)
    viewer = make_napari_viewer()
    raw = viewer.add_image(stack, name="raw")
    widget = _denoise_widget(viewer, raw)
    widget.method_combo.value = "gaussian"
    widget.fidelity_check.value = True

    job = widget.run()
    qtbot.waitUntil(lambda: widget.last_fidelity is not None, timeout=60_000)
    widget.cancel()
    wait_for(qtbot, job)

    result, fmap = widget.last_result[1], widget.last_fidelity
    assert result.metadata["em_restore"]["status"] == "complete"
    assert "fidelity" not in result.metadata["em_restore"]  # no summary of a partial map
    record = fmap.metadata["em_restore"]
    assert record["status"] == "partial" and "(partial " in fmap.name
    assert 0 <= record["frames_done"] < 60
    assert "cancelled" in widget.status.value
