"""The training widget in a real napari viewer: paired, self-supervised, cancel, bad inputs.

Every run is tiny (96×96 images, a few steps of 2 × 32² crops) so the file stays quick;
the numbers checked are the ones the backend reports (curves = history, status = best).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from em_restore.backend.simulate import AcquisitionConfig, nanoparticles, simulate_acquisition
from tests.conftest import wait_for

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def pair():
    """Three low-dose frames of one field and its noise-free expectation (counts)."""
    clean, _ = nanoparticles((96, 96), pixel_size_nm=1.0, diameters_nm=(12, 24), rng=3)
    config = AcquisitionConfig.low_dose_tem(dose=10.0)
    frames = np.stack([simulate_acquisition(clean, config, rng=s) for s in range(3)])
    truth = simulate_acquisition(clean, config, rng=0, return_expected=True)[1]
    return frames.astype(np.float32), np.asarray(truth, np.float32)


@pytest.fixture(autouse=True)
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv("EM_RESTORE_MODELS", str(folder))
    return folder


def _widget(viewer, *, epochs=2, steps=3, name="tiny", scratch=False):
    from em_restore._napari.train_widget import TrainWidget

    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.scratch_check.value = scratch
    widget.epochs_spin.value = epochs
    widget.steps_spin.value = steps
    widget.patch_spin.value = 32
    widget.batch_spin.value = 2
    widget.name_edit.value = name
    return widget


def _epochs(job):
    """Collect the Epoch events a job yields (connected before they can arrive)."""
    from em_restore.backend.models.fit import Epoch

    seen = []
    job.worker.yielded.connect(lambda e: seen.append(e) if isinstance(e, Epoch) else None)
    return seen


def _errors(monkeypatch):
    messages = []
    monkeypatch.setattr(
        "napari.utils.notifications.show_error", lambda message: messages.append(message)
    )
    return messages


def test_widget_is_contributed_by_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-em-restore", "Train a restorer")
    assert type(widget).__name__ == "TrainWidget"


def test_controls_follow_mode_and_task(make_napari_viewer):
    from em_restore.backend.models import default_model_name
    from em_restore.backend.models.fit import LR_FINE_TUNE, LR_SCRATCH

    viewer = make_napari_viewer()
    widget = _widget(viewer)
    assert widget.mode_combo.value == "paired" and widget.task_combo.value == "denoise"
    # fine-tuning by default: the bundled model's network, the modality picks the model
    assert not widget.scratch_check.value and not widget.arch_combo.enabled
    assert widget.start_label.value == default_model_name("tem")
    assert widget.modality_combo.enabled and widget.lr_spin.value == LR_FINE_TUNE
    widget.modality_combo.value = "sem"
    assert widget.start_label.value == default_model_name("sem")
    widget.modality_combo.value = "tem"
    widget.scratch_check.value = True
    assert widget.arch_combo.enabled and not widget.modality_combo.enabled
    assert widget.start_label.value == "random weights (fast_denoiser)"
    assert widget.lr_spin.value == LR_SCRATCH
    widget.arch_combo.value = "unet_resnet18"
    assert widget.start_label.value == "random weights (unet_resnet18)"
    widget.arch_combo.value = "fast_denoiser"
    widget.lr_spin.value = 5e-4  # a typed learning rate stays when the start changes
    widget.scratch_check.value = False
    assert widget.lr_spin.value == 5e-4 and widget.start_label.value == default_model_name("tem")
    widget.scratch_check.value = True
    assert list(widget.arch_combo.choices) == ["fast_denoiser", "unet_resnet18"]
    assert widget.device_combo.value == "auto" and widget.loss_combo.value == "auto"
    assert widget.noisy_combo.enabled and widget.clean_combo.enabled
    assert not widget.dose_low.enabled and not widget.modality_combo.enabled
    widget.mode_combo.value = "self"
    assert widget.noisy_combo.enabled and not widget.clean_combo.enabled
    widget.mode_combo.value = "simulated"
    assert not widget.noisy_combo.enabled and widget.clean_combo.enabled
    assert widget.dose_low.enabled and widget.modality_combo.enabled
    assert not widget.frames_spin.enabled
    widget.task_combo.value = "burst"
    assert list(widget.arch_combo.choices) == ["burst_dense_unet"]
    assert not widget.arch_combo.enabled and widget.frames_spin.enabled
    assert not widget.modality_combo.enabled
    assert widget.start_label.value == "random weights (burst_dense_unet)"
    widget.scratch_check.value = False
    assert widget.start_label.value == "em-burst"
    assert (widget.dose_low.value, widget.dose_high.value) == (5.0, 300.0)
    widget.task_combo.value = "denoise"
    assert (widget.dose_low.value, widget.dose_high.value) == (1.0, 100.0)
    widget.overwrite_check.value = True
    widget.resume_check.value = True
    assert not widget.overwrite_check.value  # one or the other


def test_paired_run_trains_saves_and_lists_the_model(
    make_napari_viewer, qtbot, monkeypatch, pair, models_dir
):
    from em_restore._napari import _models
    from em_restore._napari.burst_widget import BurstWidget
    from em_restore._napari.denoise_widget import DenoiseWidget, method_choices

    noisy, truth = pair
    viewer = make_napari_viewer()
    raw = viewer.add_image(noisy, name="noisy")
    ref = viewer.add_image(truth, name="clean")
    before = raw.data.copy()
    denoise = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(denoise)
    burst = BurstWidget(viewer)
    viewer.window.add_dock_widget(burst)
    assert "model: tiny" not in denoise.method_combo.choices
    widget = _widget(viewer, epochs=3, scratch=True)
    widget.noisy_combo.value = raw
    widget.clean_combo.value = ref
    _models.MODEL_CACHE[("tiny", "tem")] = "stale"

    job = widget.run()
    assert job is not None and widget.cancel_button.enabled and not widget.train_button.enabled
    epochs = _epochs(job)
    wait_for(qtbot, job)

    result = widget.last_result
    assert result is not None and result.stop_reason == "completed"
    assert [e.epoch for e in epochs] == [1, 2, 3]
    # the curves hold one point per epoch: the backend's own losses
    assert widget.curves.train == [(e.epoch, e.train_loss) for e in result.history]
    assert widget.curves.val == [(e.epoch, e.val_loss) for e in result.history]
    assert all(np.isfinite(v) and v > 0 for _, v in widget.curves.train + widget.curves.val)
    assert widget.curves.best_epoch == result.best_epoch
    best = max(result.history, key=lambda e: e.val_ssim)  # supervised: best = highest SSIM
    assert result.best_epoch == best.epoch and result.best_ssim == pytest.approx(best.val_ssim)
    assert result.best_psnr == pytest.approx(best.val_psnr)
    assert result.best_psnr is not None and np.isfinite(result.best_psnr)
    assert f"best epoch {result.best_epoch}" in widget.status.value
    assert f"val PSNR {result.best_psnr:.2f} dB" in widget.status.value
    assert widget.train_button.enabled and not widget.cancel_button.enabled

    # the preview: the last epoch's network output, in the input's units
    preview = viewer.layers["training preview"]
    assert preview is widget.preview_layer
    assert preview.data.shape == epochs[-1].preview.shape and preview.data.ndim == 2
    assert min(preview.data.shape) >= 32
    np.testing.assert_array_equal(preview.data, epochs[-1].preview)
    assert preview.metadata["em_restore"]["epoch"] == 3
    assert abs(float(preview.data.mean()) - float(truth.mean())) < 0.5 * float(truth.mean())
    assert [layer.name for layer in viewer.layers] == ["noisy", "clean", "training preview"]
    np.testing.assert_array_equal(raw.data, before)  # the user's layers untouched
    assert widget.noisy_combo.value is raw  # the preview is never offered as an input
    assert preview not in [c for c in widget.noisy_combo.choices]

    # the model folder: weights, config with the best epoch's scores, card
    folder = models_dir / "tiny"
    for file in ("model.safetensors", "config.json", "MODEL_CARD.md", "training-state.pt"):
        assert (folder / file).is_file(), file
    config = json.loads((folder / "config.json").read_text())
    assert config["name"] == "tiny" and config["task"] == "denoise"
    assert config["metrics"]["best_epoch"] == result.best_epoch
    assert config["metrics"]["val_psnr_db"] == pytest.approx(result.best_psnr, abs=1e-3)
    assert config["training"]["config"]["epochs"] == 3
    assert config["training"]["config"]["patch"] == 32
    assert "PSNR" in (folder / "MODEL_CARD.md").read_text()

    # listed at once: the Denoise menu has it, the stale cached model is gone
    assert "model: tiny" in method_choices()
    assert "model: tiny" in denoise.method_combo.choices
    assert _models.MODEL_CACHE == {}
    assert "tiny" not in burst.model_combo.choices  # burst models only: this is a denoiser
    denoise.layer_combo.value = raw
    denoise.method_combo.value = "model: tiny"
    denoise_job = denoise.run()
    wait_for(qtbot, denoise_job)
    restored = denoise.last_result[1]
    assert restored.data.shape == noisy.shape
    assert restored.metadata["em_restore"]["denoise"]["model"]["name"] == "tiny"

    # the same name again is refused until overwrite is ticked
    messages = _errors(monkeypatch)
    assert widget.run() is None and widget.job is job
    assert "already exists" in messages[-1] and "overwrite" in messages[-1]


def test_a_default_run_fine_tunes_the_bundled_model(make_napari_viewer, qtbot, pair, models_dir):
    from em_restore.backend.models import default_model_name, load_model
    from em_restore.backend.models.fit import LR_FINE_TUNE

    noisy, truth = pair
    bundled = load_model(default_model_name("tem"), device="cpu")
    viewer = make_napari_viewer()
    widget = _widget(viewer, name="tuned")
    widget.noisy_combo.value = viewer.add_image(noisy, name="noisy")
    widget.clean_combo.value = viewer.add_image(truth, name="clean")
    assert widget.start_label.value == bundled.name

    job = widget.run()
    wait_for(qtbot, job)

    result = widget.last_result
    assert result is not None and result.start["name"] == bundled.name
    before = result.start["val_psnr_db"]
    assert f"fine-tuned from {bundled.name} (val PSNR {before:.2f} dB before)" in (
        widget.status.value
    )
    # the best (SSIM) of the start model and the two epochs: never below where it started
    scores = [result.start["val_ssim"]] + [e.val_ssim for e in result.history]
    assert result.best_ssim == max(scores) and result.best_epoch == int(np.argmax(scores))
    config = json.loads((models_dir / "tuned" / "config.json").read_text())
    assert config["training"]["fine_tuned_from"] == {
        "name": bundled.name,
        "weights_sha256": bundled.sha256,
    }
    assert config["training"]["config"]["lr"] == LR_FINE_TUNE
    assert config["arch_params"] == bundled.config.arch_params


def test_self_supervised_run_reports_the_validation_loss(make_napari_viewer, qtbot, pair):
    noisy, _truth = pair
    viewer = make_napari_viewer()
    raw = viewer.add_image(noisy, name="noisy")
    widget = _widget(viewer, name="n2n")
    widget.mode_combo.value = "self"
    widget.noisy_combo.value = raw
    statuses = []
    set_status = widget._set_status
    widget._set_status = lambda text: (statuses.append(text), set_status(text))

    job = widget.run()
    epochs = _epochs(job)
    wait_for(qtbot, job)

    result = widget.last_result
    assert result is not None and result.best_psnr is None and result.loss == "l2"
    assert [(e.val_psnr, e.val_ssim) for e in epochs] == [(None, None), (None, None)]
    assert [p[0] for p in widget.curves.val] == [1, 2]
    assert widget.curves.val == [(e.epoch, e.val_loss) for e in result.history]
    epoch_lines = [s for s in statuses if s.startswith("Train: epoch")]
    assert epoch_lines and all("val loss" in s and "PSNR" not in s for s in epoch_lines), statuses
    assert f"val loss {epochs[-1].val_loss:.4g}" in epoch_lines[-1]
    assert widget.status.value.startswith("Train: done") and "PSNR" not in widget.status.value
    assert viewer.layers["training preview"].data.shape == epochs[-1].preview.shape
    from em_restore._napari.denoise_widget import method_choices

    assert "model: n2n" in method_choices()


def test_cancel_after_the_first_epoch_keeps_the_best_model(
    make_napari_viewer, qtbot, monkeypatch, pair, models_dir
):
    import torch

    from em_restore._napari.denoise_widget import method_choices
    from em_restore.backend.models.fit import Epoch

    infos = []
    monkeypatch.setattr("em_restore._napari._jobs.show_info", infos.append)
    noisy, truth = pair
    viewer = make_napari_viewer()
    widget = _widget(viewer, epochs=200, steps=2, name="stopped", scratch=True)
    widget.noisy_combo.value = viewer.add_image(noisy, name="noisy")
    widget.clean_combo.value = viewer.add_image(truth, name="clean")
    deterministic = torch.are_deterministic_algorithms_enabled()

    job = widget.run()
    epochs = _epochs(job)
    job.worker.yielded.connect(lambda e: widget.cancel() if isinstance(e, Epoch) else None)
    wait_for(qtbot, job)

    assert job.cancelled and not job.running and widget.last_result is None
    assert 1 <= len(epochs) < 200 and len(widget.curves.train) == len(epochs)
    assert widget.train_button.enabled and not widget.cancel_button.enabled
    assert "cancelled" in widget.status.value and "kept" in widget.status.value
    assert infos and "best epoch so far is kept" in infos[-1]
    assert str(models_dir / "stopped") in infos[-1]
    folder = models_dir / "stopped"
    assert (folder / "model.safetensors").is_file() and (folder / "MODEL_CARD.md").is_file()
    config = json.loads((folder / "config.json").read_text())
    # the worker may finish an epoch of 2 steps before the cancel reaches it: the saved
    # model is the best of the epochs it recorded
    saved = config["training"]["history"]
    best = max(saved, key=lambda h: h["val_ssim"])
    assert 1 <= len(saved) < 200 and config["metrics"]["best_epoch"] == best["epoch"]
    assert config["metrics"]["val_psnr_db"] == pytest.approx(best["val_psnr"], abs=1e-3)
    assert saved[0]["val_psnr"] == pytest.approx(epochs[0].val_psnr, abs=1e-5)
    assert "model: stopped" in method_choices()
    # the stopped run was closed: the backend's global torch setting is restored
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_bad_inputs_are_refused_with_a_message(make_napari_viewer, monkeypatch, pair, models_dir):
    noisy, truth = pair
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    messages = _errors(monkeypatch)

    def refused(*needles):
        assert widget.run() is None and widget.job is None
        assert all(n in messages[-1] for n in needles), messages[-1]
        assert "\n" not in messages[-1]

    refused("needs a noisy image layer")
    raw = viewer.add_image(noisy, name="noisy")
    widget.noisy_combo.value = raw
    refused("mode paired needs a clean image layer", "self-supervised")
    widget.clean_combo.value = raw
    refused("same layer")
    widget.clean_combo.value = viewer.add_image(truth[:20], name="strip")
    refused("at least 32×32")
    widget.clean_combo.value = viewer.add_image(np.stack([truth, truth]), name="two")
    refused("3 noisy frames but 2 clean")
    widget.noisy_combo.value = viewer.add_image(np.zeros((40, 40, 3), np.uint8), name="rgb")
    refused("RGB", "greyscale")
    widget.noisy_combo.value = raw
    widget.clean_combo.value = viewer.layers["noisy"]
    widget.task_combo.value = "burst"
    refused("burst", "simulated")
    widget.task_combo.value = "denoise"
    widget.mode_combo.value = "self"
    widget.loss_combo.value = "l1"
    refused("'auto' or 'l2'")
    widget.loss_combo.value = "auto"
    for bad in ("", "  ", "a/b", "../up"):
        widget.name_edit.value = bad
        refused("model name")
    widget.name_edit.value = "taken"
    (models_dir / "taken").mkdir(parents=True)
    (models_dir / "taken" / "config.json").write_text("{}")
    refused("already exists", "overwrite")
    widget.resume_check.value = True
    refused("nothing to resume")
    widget.mode_combo.value = "simulated"
    widget.resume_check.value = False
    widget.overwrite_check.value = True
    widget.dose_low.value, widget.dose_high.value = 50.0, 10.0
    refused("dose low")

    assert len(messages) == 15
    assert [layer.name for layer in viewer.layers] == ["noisy", "strip", "two", "rgb"]
    assert not (models_dir / "tiny").exists()


def test_a_backend_error_becomes_a_notification(
    make_napari_viewer, qtbot, monkeypatch, pair, models_dir
):
    noisy, truth = pair
    errors = []
    monkeypatch.setattr("em_restore._napari._jobs.show_error", errors.append)
    viewer = make_napari_viewer()
    widget = _widget(viewer, name="bad-patch")
    widget.noisy_combo.value = viewer.add_image(noisy, name="noisy")
    widget.clean_combo.value = viewer.add_image(truth, name="clean")
    widget.patch_spin.value = 96  # larger than the training part of 96 px images

    job = widget.run()
    assert job is not None
    wait_for(qtbot, job)

    assert len(errors) == 1 and errors[0].startswith("Train failed: training images must be")
    assert "lower the patch size" in errors[0] and "\n" not in errors[0]
    assert widget.status.value.startswith("Train: failed")
    assert widget.last_result is None and widget.train_button.enabled
    assert not (models_dir / "bad-patch" / "config.json").exists()
    assert [layer.name for layer in viewer.layers] == ["noisy", "clean"]


def test_a_burst_model_saved_elsewhere_appears_in_the_burst_menu(make_napari_viewer, models_dir):
    """The shared signal refreshes every open model menu (here without a slow burst run)."""
    from em_restore._napari._models import user_models
    from em_restore._napari.burst_widget import BurstWidget
    from em_restore.backend.models.store import bundled_model_dir

    bundled = [p for p in bundled_model_dir().iterdir() if (p / "config.json").is_file()]
    if not bundled:
        pytest.skip("no bundled model to copy")
    viewer = make_napari_viewer()
    widget = BurstWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert "my-burst" not in widget.model_combo.choices
    config = json.loads((bundled[0] / "config.json").read_text())
    config.update(name="my-burst", task="burst")
    (models_dir / "my-burst").mkdir(parents=True)
    (models_dir / "my-burst" / "config.json").write_text(json.dumps(config))
    user_models.changed.emit()
    assert "my-burst" in widget.model_combo.choices
