"""The denoise widget in a real napari viewer: preview, run, cancel, compare."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from em_restore._napari._layers import viewer_grid
from em_restore.backend.simulate import AcquisitionConfig, nanoparticles, simulate_acquisition
from tests.conftest import range_psnr as _psnr
from tests.conftest import wait_for

pytestmark = pytest.mark.gui


@pytest.fixture
def noisy_stack():
    clean, _ = nanoparticles((96, 96), pixel_size_nm=1.0, diameters_nm=(12, 24), rng=3)
    config = AcquisitionConfig.low_dose_tem(dose=10.0)
    frames = [simulate_acquisition(clean, config, rng=s) for s in range(3)]
    truth = simulate_acquisition(clean, config, rng=0, return_expected=True)[1]
    return np.stack(frames), truth


def _widget(viewer):
    from em_restore._napari.denoise_widget import DenoiseWidget

    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def test_widget_is_contributed_by_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-em-restore", "Denoise")
    assert type(widget).__name__ == "DenoiseWidget"


def test_run_adds_result_beside_raw_with_metadata(make_napari_viewer, qtbot, noisy_stack):
    stack, truth = noisy_stack
    viewer = make_napari_viewer()
    raw = viewer.add_image(stack, name="raw", scale=(1.0, 0.5, 0.5), translate=(0, 3, 4))
    digest = hashlib.sha256(raw.data.tobytes()).hexdigest()
    widget = _widget(viewer)
    widget.layer_combo.value = raw
    widget.method_combo.value = "gaussian"

    job = widget.run()
    wait_for(qtbot, job)

    result = viewer.layers["raw denoised (gaussian)"]
    assert widget.status.value == "Denoise: done"
    assert result.data.shape == stack.shape and result.data.dtype == np.float32
    np.testing.assert_allclose(result.scale, raw.scale)
    np.testing.assert_allclose(result.translate, raw.translate)
    meta = result.metadata["em_restore"]
    assert meta["operation"] == "denoise" and meta["source_layer"] == "raw"
    assert meta["denoise"]["method"] == "gaussian"
    json.dumps(meta)  # reproducible: everything is plain JSON
    assert hashlib.sha256(raw.data.tobytes()).hexdigest() == digest  # raw never modified
    assert _psnr(result.data[0], truth) > _psnr(stack[0], truth) + 3

    widget.side_by_side()
    assert viewer_grid(viewer).enabled
    assert [layer.visible for layer in viewer.layers] == [True, True]
    raw.contrast_limits = (1.0, 9.0)
    assert tuple(result.contrast_limits) == (1.0, 9.0)


def test_preview_denoises_the_current_frame_only(make_napari_viewer, qtbot, noisy_stack):
    stack, truth = noisy_stack
    viewer = make_napari_viewer()
    raw = viewer.add_image(stack, name="raw")
    viewer.dims.set_current_step(0, 2)
    widget = _widget(viewer)
    widget.layer_combo.value = raw
    widget.method_combo.value = "classical"

    job = widget.preview()
    wait_for(qtbot, job)

    preview = widget.last_preview
    assert preview.name.startswith("raw preview (")
    assert preview.data.shape == stack.shape[1:]
    assert preview.metadata["em_restore"]["frame_index"] == [2]
    assert _psnr(preview.data, truth) > _psnr(stack[2], truth) + 3


def test_cancel_adds_nothing_and_keeps_viewer_usable(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    stack = np.random.default_rng(0).poisson(5.0, (40, 128, 128)).astype(np.uint16)
    raw = viewer.add_image(stack, name="raw")
    widget = _widget(viewer)
    widget.layer_combo.value = raw
    widget.method_combo.value = "nlm"

    job = widget.run()
    with qtbot.waitSignal(job.worker.yielded, timeout=60_000):
        pass
    assert widget.cancel_button.enabled
    widget.cancel()
    wait_for(qtbot, job)
    assert [layer.name for layer in viewer.layers] == ["raw"]
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
    assert widget.run() is None
    assert messages and "greyscale" in messages[0]


def test_default_model_is_listed_and_runs_with_its_hash_in_metadata(
    make_napari_viewer, qtbot, noisy_stack
):
    from em_restore.backend.models import default_model_name, list_models
    from em_restore.backend.models.store import file_sha256

    stack, truth = noisy_stack
    viewer = make_napari_viewer()
    raw = viewer.add_image(stack, name="raw")
    widget = _widget(viewer)
    choices = list(widget.method_combo.choices)
    assert choices[0] == "default model"
    assert {f"model: {e.name}" for e in list_models(task="denoise")} <= set(choices)
    assert not {f"model: {e.name}" for e in list_models(task="burst")} & set(choices)
    assert "classical" in choices
    assert widget.method_combo.value == "default model"  # it beats 'classical' (bench_models)
    assert not widget.strength.enabled  # models have no strength
    widget.layer_combo.value = raw
    widget.modality_combo.value = "tem"

    job = widget.run()
    wait_for(qtbot, job)

    name = default_model_name("tem")
    result = viewer.layers[f"raw denoised (model {name}, checked)"]  # the guarded default
    record = result.metadata["em_restore"]["denoise"]
    entry = {e.name: e for e in list_models()}[name]
    assert record["method"] == "model" and record["model"]["name"] == name
    assert record["model"]["sha256"] == file_sha256(entry.path / "model.safetensors")
    assert record["modality"] == "tem"
    json.dumps(result.metadata["em_restore"])
    assert _psnr(result.data[1], truth) > _psnr(stack[1], truth) + 6
    policy = record["fallback"]["policy"]
    assert policy["compare"] is True and record["fallback"]["classical"] is not None
    assert all("blend" in f for f in record["fallback"]["frames"])

    assert widget.compare_check.enabled and widget.compare_check.value
    widget.compare_check.value = False  # checked only: the fast path
    job = widget.preview()
    wait_for(qtbot, job)
    meta = widget.last_preview.metadata["em_restore"]["denoise"]["fallback"]
    assert meta["policy"]["compare"] is False and "blend" not in meta["frames"][0]

    widget.method_combo.value = f"model: {name}"
    assert not widget.compare_check.enabled  # a named model runs alone
    widget.method_combo.value = "classical"
    assert not widget.compare_check.enabled
    widget.method_combo.value = f"model: {name}"
    job = widget.preview()
    wait_for(qtbot, job)
    assert widget.last_preview.data.shape == stack.shape[1:]


def test_the_passes_menu_sets_the_models_ensemble(make_napari_viewer, qtbot, noisy_stack):
    from em_restore.backend.models import default_model_name

    stack, truth = noisy_stack
    viewer = make_napari_viewer()
    viewer.add_image(stack[1], name="raw")
    widget = _widget(viewer)
    name = default_model_name("tem")
    widget.method_combo.value = f"model: {name}"
    assert widget.ensemble_combo.enabled and widget.ensemble_combo.value == "model's own"
    results = {}
    for passes in ("model's own", "8"):
        widget.ensemble_combo.value = passes
        wait_for(qtbot, widget.preview())
        results[passes] = np.asarray(widget.last_preview.data)
        record = widget.last_preview.metadata["em_restore"]["denoise"]
        assert record["ensemble"] == (1 if passes == "model's own" else 8)
    assert not np.array_equal(results["8"], results["model's own"])
    assert _psnr(results["8"], truth) > _psnr(results["model's own"], truth) - 0.1
    widget.method_combo.value = "classical"
    assert not widget.ensemble_combo.enabled  # filters have no passes
    widget.method_combo.value = "default model"
    widget.ensemble_combo.value = "2"
    wait_for(qtbot, widget.preview())
    assert widget.last_preview.metadata["em_restore"]["denoise"]["ensemble"] == 2


def test_a_widget_docked_after_a_file_opened_starts_on_it(make_napari_viewer, qtbot):
    # issue 30.4: the menu starts where the user is (the only, else the active image layer)
    from em_restore._napari.deconvolve_widget import DeconvolveWidget
    from em_restore._napari.denoise_widget import DenoiseWidget

    viewer = make_napari_viewer()
    only = viewer.add_image(np.zeros((32, 32), np.float32), name="opened")
    for cls in (DenoiseWidget, DeconvolveWidget):
        assert cls(viewer).layer_combo.value is only
    other = viewer.add_image(np.ones((32, 32), np.float32), name="second")
    viewer.layers.selection.active = other
    assert DenoiseWidget(viewer).layer_combo.value is other
    viewer.layers.selection.active = only
    assert DenoiseWidget(viewer).layer_combo.value is only
    viewer.add_points([[1, 1]])  # the active layer is not an image, two images: no guess
    assert DenoiseWidget(viewer).layer_combo.value is None


def test_an_empty_menu_takes_the_first_image_opened(make_napari_viewer, qtbot):
    from em_restore._napari.denoise_widget import DenoiseWidget

    viewer = make_napari_viewer()
    widget = DenoiseWidget(viewer)
    assert widget.layer_combo.value is None
    layer = viewer.add_image(np.zeros((32, 32), np.float32), name="later")
    assert widget.layer_combo.value is layer


def test_the_menus_follow_the_selection_but_not_to_their_own_results(make_napari_viewer, qtbot):
    # issue 30.4: the menu follows the user's selection; a layer napari selects because
    # it was just added (a file, a result) does not move a chosen menu, and a widget
    # never follows to its own results or to maps
    from em_restore._napari.deconvolve_widget import DeconvolveWidget
    from em_restore._napari.denoise_widget import DenoiseWidget

    viewer = make_napari_viewer()
    a = viewer.add_image(np.random.default_rng(0).random((64, 64)), name="a")
    b = viewer.add_image(np.random.default_rng(1).random((64, 64)), name="b")
    denoise, deconvolve = DenoiseWidget(viewer), DeconvolveWidget(viewer)
    assert denoise.layer_combo.value is b  # the active layer when docked
    viewer.layers.selection.active = a
    assert denoise.layer_combo.value is a and deconvolve.layer_combo.value is a
    c = viewer.add_image(np.zeros((64, 64)), name="c")  # opened: selected by napari
    assert viewer.layers.selection.active is c and denoise.layer_combo.value is a
    denoise.method_combo.value = "gaussian"
    wait_for(qtbot, denoise.run())
    result = denoise.last_result[1]
    assert viewer.layers.selection.active is result  # napari selects the new layer
    assert denoise.layer_combo.value is a and deconvolve.layer_combo.value is a
    viewer.layers.selection.active = b
    viewer.layers.selection.active = result  # the user picks the denoised layer
    assert denoise.layer_combo.value is b  # its own result: not followed
    assert deconvolve.layer_combo.value is result  # another's result: followed
    fmap = viewer.add_image(
        np.zeros((64, 64)), name="map", metadata={"em_restore": {"operation": "fidelity"}}
    )
    viewer.layers.selection.active = b
    viewer.layers.selection.active = fmap  # a map is never a layer to restore
    assert denoise.layer_combo.value is b and deconvolve.layer_combo.value is b
    viewer.layers.selection.active = c
    assert denoise.layer_combo.value is c and deconvolve.layer_combo.value is c
    assert np.array_equal(a.data, np.random.default_rng(0).random((64, 64)))  # raw untouched
