"""The Train widget's Export…: a real viewer, the file dialog, a worker, the files it writes."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.gui
pytest.importorskip("onnxruntime", reason="the testing extra installs onnx and onnxruntime")


@pytest.fixture(autouse=True)
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv("EM_RESTORE_MODELS", str(folder))
    return folder


def _widget(viewer):
    from em_restore._napari.train_widget import TrainWidget

    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def test_export_onnx_from_the_widget_runs_like_the_model(make_napari_viewer, qtbot, tmp_path):
    import torch

    from em_restore.backend.models import exchange, load_model

    widget = _widget(make_napari_viewer())
    assert "em-denoise-fast" in widget.export_model_combo.choices
    widget.export_model_combo.value = "em-denoise-fast"
    widget.export_format_combo.value = "ONNX (.onnx)"
    job = widget.export(tmp_path / "fast")  # the suffix is added
    wait_for(qtbot, job)
    out = tmp_path / "fast.onnx"
    assert out.is_file() and str(out) in widget.status.value
    x = np.random.default_rng(1).random((1, 1, 64, 64), dtype=np.float32)
    with torch.inference_mode():
        want = load_model("em-denoise-fast", device="cpu").net(torch.from_numpy(x)).numpy()
    assert np.abs(exchange.load_onnx(out).net.run(x) - want).max() < 1e-4


def test_export_button_asks_for_a_file_and_writes_a_bmz_package(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    pytest.importorskip("bioimageio.spec")
    from bioimageio.spec import load_model_description
    from bioimageio.spec.model import v0_5
    from qtpy.QtWidgets import QFileDialog

    asked = []

    def dialog(parent, title, default, filters):
        asked.append((default, filters))
        return str(tmp_path / "burst.zip"), filters

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(dialog))
    widget = _widget(make_napari_viewer())
    widget.export_model_combo.value = "em-burst"
    widget.export_format_combo.value = "BioImage Model Zoo (.zip)"
    widget.export_button.native.click()
    job = widget.export_job
    wait_for(qtbot, job)
    assert asked and asked[0][0].endswith("em-burst.zip") and "*.zip" in asked[0][1]
    package = tmp_path / "burst.zip"
    assert "rdf.yaml" in zipfile.ZipFile(package).namelist()
    descr = load_model_description(package)
    assert isinstance(descr, v0_5.ModelDescr) and descr.name == "em-burst"
    assert [str(t.id) for t in descr.inputs] == ["frames", "masks", "motion", "base"]
