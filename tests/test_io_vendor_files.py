"""Readers against real files written by microscope software.

The files live outside the repository (GPL-3.0 test data of rosettasciio, not
redistributed with this project) in ``../shared/data/formats`` next to the
checkout, or wherever ``EM_RESTORE_SHARED_DATA`` points. Expected values are
those of the README there (as read by rosettasciio 0.15), converted to nm.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from em_restore.io import UnsupportedFileError, can_read, read

_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "formats"
FORMATS = Path(os.environ.get("EM_RESTORE_SHARED_DATA", _DEFAULT))

pytestmark = pytest.mark.skipif(
    not FORMATS.is_dir(),
    reason=f"vendor test files not found at {FORMATS} (set EM_RESTORE_SHARED_DATA to their folder)",
)

UM, PM = 1e3, 1e-3  # in nm

# file, shape, dtype, pixel size (nm or 1/nm), unit, check x only
CASES = [
    ("digitalmicrograph/2D/test_STEM_image.dm3", (68, 68), "uint32", 0.248538, "nm", False),
    (
        "digitalmicrograph/2D/test_diffraction_pattern.dm3",
        (87, 87),
        "int32",
        0.174433,
        "1/nm",
        False,
    ),
    ("digitalmicrograph/2D/test-1.dm3", (2, 2), "int16", 1.0, "pixel", False),
    ("digitalmicrograph/2D/test-1.dm4", (2, 2), "int16", 1.0, "pixel", False),
    ("digitalmicrograph/3D/test-1.dm3", (2, 2, 2), "int16", 1.0, "pixel", False),
    (
        "digitalmicrograph/test_stackbuilder_imagestack.dm3",
        (3, 2, 16),
        "uint32",
        0.059983 * UM,
        "nm",
        False,
    ),
    ("tiff/test_dm_image_um_unit.dm3", (68, 68), "int32", 0.168675 * UM, "nm", False),
    ("tiff/test_loading_image_saved_with_DM.tif", (68, 68), "int32", 0.168675 * UM, "nm", False),
    (
        "tiff/test_loading_image_saved_with_imageJ.tif",
        (68, 68),
        "float32",
        0.168675 * UM,
        "nm",
        False,
    ),
    (
        "tiff/test_loading_image_saved_with_imageJ_stack.tif",
        (2, 68, 68),
        "float32",
        0.168675 * UM,
        "nm",
        False,
    ),
    (
        "tiff/test_loading_image_saved_with_DM_stack.tif",
        (2, 68, 68),
        "float32",
        0.168674 * UM,
        "nm",
        True,
    ),
    ("emd/fei_example_tem_stack.emd", (2, 3, 3), "int16", 8.172883 * PM, "nm", False),
    ("emd/example_image.emd", (3, 3), "int32", 1.0, "pixel", False),
    ("tia/new/128x128-TEM_search.emi", (128, 128), "int32", 5.261214, "nm", False),
    ("tia/new/128x128-TEM_search_1.ser", (128, 128), "int32", 5.261214, "nm", False),
    ("tia/new/128x128_TEM_acquire-sum1.emi", (128, 128), "int32", 21.479318, "nm", False),
    ("tia/new/128x128_TEM_acquire-sum1_1.ser", (128, 128), "int32", 21.479318, "nm", False),
    ("mrc/HAADFscan.mrc", (16, 16), "uint16", 5.679131, "nm", False),
    ("mrc/Custom_movie.mrc", (30, 16, 16), "uint16", 1.0, "pixel", False),
]


@pytest.fixture(scope="module")
def dm_reference():
    """The DM3 original of the four TIFF exports in tiff/."""
    return read(FORMATS / "tiff/test_dm_image_um_unit.dm3").data.compute()


@pytest.mark.parametrize(
    ("name", "shape", "dtype", "size", "unit", "x_only"),
    CASES,
    ids=[c[0].split("/")[-1] for c in CASES],
)
def test_vendor_file(name, shape, dtype, size, unit, x_only):
    path = FORMATS / name
    assert can_read(path)
    image = read(path)
    assert isinstance(image.data, da.Array)
    assert image.data.shape == shape
    assert image.data.dtype == np.dtype(dtype)
    size_y, size_x = image.pixel_size
    assert size_x == pytest.approx(size, rel=1e-5)
    if not x_only:
        assert size_y == pytest.approx(size, rel=1e-5)
    assert image.units[-2:] == (unit, unit)
    assert image.axes.endswith("yx")
    assert len(image.axes) == len(shape)
    pixels = image.data.compute()
    assert np.isfinite(pixels).all()
    if pixels.size > 8:
        assert pixels.std() > 0
    meta = json.loads(json.dumps(image.metadata, allow_nan=False))
    assert meta["source"] == str(path)
    assert {"format", "original_pixel_size", "original_unit"} <= meta.keys()


def test_small_dm_values():
    expected = np.array([[1, 2], [3, 4]])
    for name in ("2D/test-1.dm3", "2D/test-1.dm4"):
        pixels = read(FORMATS / "digitalmicrograph" / name).data.compute()
        np.testing.assert_array_equal(pixels, expected)
    image = read(FORMATS / "digitalmicrograph/3D/test-1.dm3")
    assert image.axes[0] in "tz"
    np.testing.assert_array_equal(image.data.compute(), np.arange(1, 9).reshape(2, 2, 2))


@pytest.mark.parametrize(
    "name",
    [
        "test_loading_image_saved_with_DM.tif",
        "test_loading_image_saved_with_imageJ.tif",
        "test_loading_image_saved_with_imageJ_stack.tif",
        "test_loading_image_saved_with_DM_stack.tif",
    ],
)
def test_tiff_exports_match_dm_original(name, dm_reference):
    """The TIFFs are exports of the DM3 image: an independent check of both readers."""
    pixels = read(FORMATS / "tiff" / name).data.compute()
    for frame in pixels.reshape(-1, *dm_reference.shape):
        np.testing.assert_array_equal(frame, dm_reference)


def test_stack_axes():
    dm_stack = read(FORMATS / "tiff/test_loading_image_saved_with_DM_stack.tif")
    assert (dm_stack.axes, dm_stack.scale[0], dm_stack.units[0]) == ("tyx", 2.5, "s")
    ij_stack = read(FORMATS / "tiff/test_loading_image_saved_with_imageJ_stack.tif")
    # ImageJ stores the step as z spacing (2.5) in its spatial unit (micron)
    assert ij_stack.axes == "zyx"
    assert ij_stack.scale[0] == pytest.approx(2.5 * UM)
    velox = read(FORMATS / "emd/fei_example_tem_stack.emd")
    assert (velox.axes, velox.units[0]) == ("tyx", "s")
    assert velox.scale[0] == pytest.approx(0.8)
    movie = read(FORMATS / "mrc/Custom_movie.mrc")
    assert (movie.axes, movie.scale[0], movie.units[0]) == ("tyx", 1.0, "frame")
    stack = read(FORMATS / "digitalmicrograph/test_stackbuilder_imagestack.dm3")
    assert stack.data.chunks[0] == (1, 1, 1)


def test_velox_frames_are_transposed():
    pixels = read(FORMATS / "emd/fei_example_tem_stack.emd").data.compute()
    # Velox stores (y, x, frame); this file counts up with the frame fastest
    np.testing.assert_array_equal(pixels, np.arange(18).reshape(3, 3, 2).transpose(2, 0, 1))


def test_tia_emi_and_ser_agree():
    for stem in ("128x128-TEM_search", "128x128_TEM_acquire-sum1"):
        via_emi = read(FORMATS / f"tia/new/{stem}.emi")
        via_ser = read(FORMATS / f"tia/new/{stem}_1.ser")
        np.testing.assert_array_equal(via_emi.data.compute(), via_ser.data.compute())
        assert via_emi.metadata["voltage_V"] == 200000.0


def test_dm_metadata():
    meta = read(FORMATS / "digitalmicrograph/2D/test_STEM_image.dm3").metadata
    assert meta["voltage_V"] == 200000.0
    assert meta["original_unit"] == "nm"
    meta = read(FORMATS / "tiff/test_loading_image_saved_with_DM.tif").metadata
    assert meta["calibration_source"] == "digitalmicrograph"
    assert meta["original_unit"] == "µm"
    assert meta["voltage_V"] == 200000.0


@pytest.mark.parametrize(
    "name",
    [
        "digitalmicrograph/2D/test_STEM_image.dm3",
        "digitalmicrograph/2D/test-1.dm4",
        "tia/new/128x128-TEM_search_1.ser",
        "mrc/HAADFscan.mrc",
        "emd/fei_example_tem_stack.emd",
        "tiff/test_loading_image_saved_with_DM_stack.tif",
    ],
)
def test_truncated_vendor_file(tmp_path, name):
    """A file cut in half gives a one-line UnsupportedFileError, never a traceback."""
    source = FORMATS / name
    raw = source.read_bytes()
    target = tmp_path / source.name
    target.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UnsupportedFileError) as info:
        read(target).data.compute()
    message = str(info.value)
    assert "\n" not in message
    assert source.name in message


def test_emi_found_from_copied_pair(tmp_path):
    for suffix in (".emi", "_1.ser"):
        shutil.copy(FORMATS / f"tia/new/128x128-TEM_search{suffix}", tmp_path)
    assert read(tmp_path / "128x128-TEM_search.emi").data.shape == (128, 128)
