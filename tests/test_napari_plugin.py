"""The plugin in a real napari viewer: reader, sample data, writer."""

from __future__ import annotations

import numpy as np
import pytest

from em_restore import io
from em_restore._napari.reader import get_reader
from em_restore.samples import sample_path

PLUGIN = "napari-em-restore"


def test_get_reader_declines_unknown_files(tmp_path):
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello")
    assert get_reader(str(unknown)) is None
    assert get_reader(str(tmp_path / "missing.xyz")) is None


def test_reader_returns_lazy_layer_at_physical_scale():
    path = sample_path("stream_noisy.tif")
    reader = get_reader(str(path))
    assert reader is not None
    ((data, kwargs, kind),) = reader(str(path))
    expected = io.read(path)
    assert kind == "image"
    assert type(data).__module__.startswith("dask")
    assert data.shape == expected.data.shape
    assert kwargs["scale"][-2:] == pytest.approx(expected.pixel_size)
    assert kwargs["units"][-1] == "nm"
    assert kwargs["metadata"]["em_restore"]["source"] == str(path)


@pytest.mark.gui
def test_open_file_in_viewer_uses_plugin_and_nm_scale(make_napari_viewer):
    viewer = make_napari_viewer()
    path = sample_path("nanoparticles_5e.tif")
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert len(layers) == 1
    layer = layers[0]
    expected = io.read(path)
    np.testing.assert_allclose(layer.scale, expected.pixel_size)
    assert str(layer.units[-1]) in {"nm", "nanometer"}


@pytest.mark.gui
@pytest.mark.parametrize(
    ("key", "n_layers", "ndim"),
    [("nanoparticles", 2, 2), ("vesicles", 2, 2), ("stream", 2, 3)],
)
def test_open_sample_in_viewer(make_napari_viewer, key, n_layers, ndim):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, key)
    assert len(viewer.layers) == n_layers
    truth = {"nanoparticles": 1.0, "vesicles": 0.8, "stream": 2.0}[key]
    for layer in viewer.layers:
        assert layer.ndim == ndim
        np.testing.assert_allclose(layer.scale[-2:], (truth, truth), rtol=1e-6)
        assert str(layer.units[-1]) in {"nm", "nanometer"}


@pytest.mark.gui
def test_save_layer_with_plugin_writer_round_trips_scale(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    data = np.random.default_rng(0).random((3, 32, 40)).astype(np.float32)
    viewer.add_image(data, scale=(1.0, 0.25, 0.25), name="restored")
    out = tmp_path / "restored.tif"
    viewer.layers.save(str(out), plugin=PLUGIN)
    back = io.read(out)
    np.testing.assert_array_equal(back.data.compute(), data)
    assert back.pixel_size == pytest.approx((0.25, 0.25))
    assert back.spatial_unit == "nm"


@pytest.mark.gui
def test_writer_refuses_to_overwrite_the_raw_file(make_napari_viewer, tmp_path):
    raw = tmp_path / "raw.tif"
    io.write_tiff(raw, np.ones((8, 8), np.float32), pixel_size_nm=0.5)
    before = raw.read_bytes()
    viewer = make_napari_viewer()
    assert len(viewer.open(str(raw), plugin=PLUGIN)) == 1
    with pytest.raises(FileExistsError, match="overwrite the raw file"):
        viewer.layers.save(str(raw), selected=False, plugin=PLUGIN)
    assert raw.read_bytes() == before


def test_reader_keeps_rgb_png_as_rgb_layer(tmp_path):
    import imageio.v3 as iio

    rgb = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "export.png"
    iio.imwrite(path, rgb)
    ((data, kwargs, kind),) = get_reader(str(path))(str(path))
    assert kind == "image" and kwargs["rgb"] is True
    assert len(kwargs["scale"]) == 2
    np.testing.assert_array_equal(np.asarray(data), rgb)
