"""The burst widget in a real napari viewer: mean, classical, on demand, cancel, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from em_restore.backend import simulate as sim
from em_restore.backend.burst import burst
from em_restore.backend.metrics import compare
from tests.conftest import wait_for

pytestmark = pytest.mark.gui

DOSE = 100


@pytest.fixture(scope="module")
def stream():
    spec, _ = sim.random_specimen((120, 200), rng=0, kinds=("nanoparticles",))
    noisy, sharp, _offsets = sim.moving_stage_stream(
        spec,
        n_frames=6,
        frame_shape=(64, 64),
        velocity_px_per_frame=(0.0, 4.0),
        dose=DOSE,
        rng=1,
    )
    return noisy.astype(np.float32), sharp


def _widget(viewer):
    from em_restore._napari.burst_widget import BurstWidget

    widget = BurstWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def _warnings(monkeypatch):
    messages = []
    monkeypatch.setattr(
        "napari.utils.notifications.show_warning", lambda message: messages.append(message)
    )
    return messages


def test_widget_is_contributed_by_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-em-restore", "Burst deblurring")
    assert type(widget).__name__ == "BurstWidget"


def test_defaults_and_enabled_options(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    assert widget.frames_spin.value == 5 and widget.stride_spin.value == 1
    assert (widget.frames_spin.min, widget.frames_spin.max) == (2, 16)
    assert (widget.stride_spin.min, widget.stride_spin.max) == (1, 100)
    assert widget.method_combo.value == "network"
    assert list(widget.method_combo.choices) == ["network", "classical", "fba", "mean"]
    assert widget.model_combo.enabled and not widget.exposure_spin.enabled
    widget.method_combo.value = "classical"
    assert not widget.model_combo.enabled and widget.exposure_spin.enabled
    widget.method_combo.value = "mean"
    assert not widget.model_combo.enabled and not widget.exposure_spin.enabled
    assert not widget.lazy_check.value


def test_mean_adds_result_on_the_middle_frames(make_napari_viewer, qtbot, stream):
    noisy, _sharp = stream
    viewer = make_napari_viewer()
    raw = viewer.add_image(noisy, name="raw", scale=(0.5, 2.0, 2.0), translate=(10.0, 3.0, 4.0))
    before = raw.data.copy()
    widget = _widget(viewer)
    widget.layer_combo.value = raw
    widget.method_combo.value = "mean"

    job = widget.run()
    wait_for(qtbot, job)

    assert widget.status.value == "Burst: done"
    result = viewer.layers["raw burst (mean)"]
    assert widget.last_result == (raw, result)
    assert result.data.shape == (2, 64, 64) and result.data.dtype == np.float32
    meta = result.metadata["em_restore"]
    assert meta["operation"] == "burst" and meta["source_layer"] == "raw"
    info = meta["burst"]
    assert info["method"] == "mean" and info["frames"] == 5 and info["stride"] == 1
    assert info["centres"] == [2, 3] and len(info["shifts"]) == 2
    json.dumps(meta)
    np.testing.assert_array_equal(raw.data, before)  # raw never modified
    # the time axis: output i at the time of input frame centres[i]
    np.testing.assert_allclose(result.scale, (0.5, 2.0, 2.0))
    np.testing.assert_allclose(result.translate, (10.0 + 2 * 0.5, 3.0, 4.0))
    expected, _ = burst(noisy, "mean", frames=5)
    assert np.allclose(result.data, expected)
    assert widget.compare_button.enabled

    widget.side_by_side()
    assert [layer.visible for layer in viewer.layers] == [True, True]


def test_stride_scales_the_time_axis(make_napari_viewer, qtbot, stream):
    noisy, _sharp = stream
    viewer = make_napari_viewer()
    raw = viewer.add_image(noisy, name="raw", scale=(0.5, 1.0, 1.0))
    widget = _widget(viewer)
    widget.layer_combo.value = raw
    widget.method_combo.value = "mean"
    widget.frames_spin.value = 3
    widget.stride_spin.value = 2

    job = widget.run()
    wait_for(qtbot, job)

    result = widget.last_result[1]
    assert result.data.shape == (2, 64, 64)
    assert result.metadata["em_restore"]["burst"]["centres"] == [1, 3]
    np.testing.assert_allclose(result.scale, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(result.translate, (0.5, 0.0, 0.0))


def test_classical_beats_the_raw_frames(make_napari_viewer, qtbot, stream):
    noisy, sharp = stream
    viewer = make_napari_viewer()
    raw = viewer.add_image(noisy, name="raw")
    widget = _widget(viewer)
    widget.layer_combo.value = raw
    widget.method_combo.value = "classical"

    job = widget.run()
    wait_for(qtbot, job)

    result = viewer.layers["raw burst (classical)"]
    info = result.metadata["em_restore"]["burst"]
    assert info["fusion"] == {"name": "multi_frame_wiener", "exposure": 1.0}
    centres = info["centres"]
    restored = [compare(result.data[i], DOSE * sharp[c])["psnr"] for i, c in enumerate(centres)]
    raw_psnr = [compare(noisy[c], DOSE * sharp[c])["psnr"] for c in centres]
    assert np.mean(restored) > np.mean(raw_psnr) + 5.0, (restored, raw_psnr)


def test_on_demand_adds_a_lazy_layer_with_the_same_values(make_napari_viewer, qtbot, stream):
    noisy, _sharp = stream
    viewer = make_napari_viewer()
    raw = viewer.add_image(noisy, name="raw", scale=(0.5, 2.0, 2.0))
    widget = _widget(viewer)
    widget.layer_combo.value = raw
    widget.method_combo.value = "mean"
    widget.lazy_check.value = True

    assert widget.run() is None and widget.job is None  # no job: added at once
    lazy = viewer.layers["raw burst (mean)"]
    assert type(lazy.data).__module__.startswith("dask")
    assert lazy.data.shape == (2, 64, 64)
    meta = lazy.metadata["em_restore"]["burst"]
    assert meta["centres"] == [2, 3] and meta["lazy"] is True and "shifts" not in meta
    json.dumps(lazy.metadata["em_restore"])
    np.testing.assert_allclose(lazy.scale, (0.5, 2.0, 2.0))
    np.testing.assert_allclose(lazy.translate, (1.0, 0.0, 0.0))

    widget.lazy_check.value = False
    job = widget.run()
    wait_for(qtbot, job)
    eager = widget.last_result[1]
    assert eager is not lazy
    np.testing.assert_allclose(np.asarray(lazy.data[1].compute()), eager.data[1], atol=1e-5)


def test_cancel_adds_nothing(make_napari_viewer, qtbot, stream):
    noisy, _sharp = stream
    viewer = make_napari_viewer()
    raw = viewer.add_image(noisy, name="raw")
    widget = _widget(viewer)
    widget.layer_combo.value = raw
    widget.method_combo.value = "classical"

    job = widget.run()
    assert widget.cancel_button.enabled
    widget.cancel()
    wait_for(qtbot, job)
    assert [layer.name for layer in viewer.layers] == ["raw"]
    assert widget.last_result is None
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    assert "cancelled" in widget.status.value


def test_bad_inputs_are_refused_with_a_message(make_napari_viewer, monkeypatch, stream):
    noisy, _sharp = stream
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    widget.method_combo.value = "mean"
    messages = _warnings(monkeypatch)

    frame = viewer.add_image(noisy[0], name="frame")
    widget.layer_combo.value = frame
    assert widget.run() is None and widget.job is None
    assert "(T, rows, cols)" in messages[-1] and "(64, 64)" in messages[-1]
    assert "single frame" in messages[-1]

    stack = viewer.add_image(noisy[:4], name="short")
    widget.layer_combo.value = stack
    assert widget.run() is None
    assert "only 4 frames" in messages[-1]

    rgb = viewer.add_image(np.zeros((16, 16, 3), np.uint8), rgb=True, name="photo")
    widget.layer_combo.value = rgb
    assert widget.run() is None and "greyscale" in messages[-1]

    widget.lazy_check.value = True  # the on-demand path is checked the same way
    widget.layer_combo.value = frame
    assert widget.run() is None and "single frame" in messages[-1]

    assert len(messages) == 4 and widget.job is None
    assert [layer.name for layer in viewer.layers] == ["frame", "short", "photo"]

    viewer.layers.clear()
    assert widget.layer_combo.value is None
    assert widget.run() is None and "no image layer" in messages[-1]


def _burst_models():
    from em_restore.backend.models import list_models

    return list_models(task="burst")


def test_the_bundled_model_is_chosen_by_default(make_napari_viewer):
    names = [m.name for m in _burst_models()]
    assert "em-burst" in names  # shipped in the package
    widget = _widget(make_napari_viewer())
    assert widget.method_combo.value == "network" and widget.model_combo.value == "em-burst"


def test_network_without_a_model_is_refused(make_napari_viewer, monkeypatch, stream):
    monkeypatch.setattr("em_restore._napari.burst_widget.burst_model_names", lambda: [])
    noisy, _sharp = stream
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    widget.layer_combo.value = viewer.add_image(noisy, name="raw")
    messages = _warnings(monkeypatch)
    assert widget.method_combo.value == "network" and widget.model_combo.value is None
    assert widget.run() is None and widget.job is None
    assert "no burst model" in messages[-1] and "classical" in messages[-1]
    assert [layer.name for layer in viewer.layers] == ["raw"]


def test_network_records_the_model(make_napari_viewer, qtbot, stream):
    models = _burst_models()
    if not models:
        pytest.skip("no burst model installed (em-burst is still training)")
    noisy, _sharp = stream
    viewer = make_napari_viewer()
    raw = viewer.add_image(noisy, name="raw")
    widget = _widget(viewer)
    widget.layer_combo.value = raw
    widget.method_combo.value = "network"
    widget.model_combo.value = models[0].name
    widget.frames_spin.value = 3

    job = widget.run()
    wait_for(qtbot, job, timeout=300_000)

    assert widget.status.value == "Burst: done", widget.status.value
    result = viewer.layers["raw burst (network)"]
    assert result.data.shape == (4, 64, 64) and np.isfinite(result.data).all()
    info = result.metadata["em_restore"]["burst"]
    assert info["frames"] == 3 and info["centres"] == [1, 2, 3, 4]
    assert info["model"]["name"] == models[0].name
    assert len(info["model"]["sha256"]) == 64
    json.dumps(result.metadata["em_restore"])
