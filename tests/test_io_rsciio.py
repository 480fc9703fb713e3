"""Reading through rosettasciio: the vendors the project did not read, multi-signal files.

Every shared vendor file, old and new, is opened three ways (``io.read_all``, the napari
reader hook, ``em-restore info --json``) and checked against the README of
``../shared/data/formats`` (shape, pixel size in nm, number of image layers). Truncated
and corrupted copies of the new files (made in tmp_path) give the one-line error. The
adapter itself is tested on synthetic signal dicts, without the shared files.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from em_restore import io
from em_restore._napari.reader import get_reader
from em_restore.cli import main
from em_restore.io._rsciio import classify, images_from_signals

_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "formats"
FORMATS = Path(os.environ.get("EM_RESTORE_SHARED_DATA", _DEFAULT))
shared = pytest.mark.skipif(not FORMATS.is_dir(), reason=f"vendor files not found at {FORMATS}")

UM, PM = 1e3, 1e-3  # in nm

# file, shape of the first image, dtype, pixel size (x) in nm or 1/nm, unit, image layers
NEW = [
    ("tiff/test_tiff_Zeiss_SEM_512pix.tif", (384, 512), "uint8", 11.65, "nm", 1),
    ("tiff/JEOL-SightX-TEM-mag-dummy.tif", (556, 556), "uint16", 1.82079, "nm", 1),
    ("jeol/View000_0000000.img", (512, 512), "uint8", 8.69141, "nm", 1),
    ("bruker/test_TEM.bcf", (64, 64), "uint16", 0.771005, "nm", 1),
    # the README lists eight titles; the file holds nine /Data/Image groups (also
    # "Filtered iDPC"), and rosettasciio 0.15 reads nine
    ("emd/fei_example_dpc_titles.emd", (2, 2), "float32", 99.6199 * PM, "nm", 9),
    # "Image 1" (16 x 20) and a second "Image 1" (35 x 40, 812.04 nm) of another
    # analysis; the EDS spectra, maps, the line and an RGBA plot are not opened
    ("phenom/Elid2Version4.elid", (16, 20), "uint8", 975.779, "nm", 2),
]
OLD = [
    ("digitalmicrograph/2D/test_STEM_image.dm3", (68, 68), "uint32", 0.248538, "nm", 1),
    ("digitalmicrograph/2D/test_diffraction_pattern.dm3", (87, 87), "int32", 0.174433, "1/nm", 1),
    ("digitalmicrograph/2D/test-1.dm3", (2, 2), "int16", 1.0, "pixel", 1),
    ("digitalmicrograph/2D/test-1.dm4", (2, 2), "int16", 1.0, "pixel", 1),
    ("digitalmicrograph/3D/test-1.dm3", (2, 2, 2), "int16", 1.0, "pixel", 1),
    ("digitalmicrograph/test_stackbuilder_imagestack.dm3", (3, 2, 16), "uint32", 59.983, "nm", 1),
    ("tiff/test_dm_image_um_unit.dm3", (68, 68), "int32", 0.168675 * UM, "nm", 1),
    ("tiff/test_loading_image_saved_with_DM.tif", (68, 68), "int32", 0.168675 * UM, "nm", 1),
    ("tiff/test_loading_image_saved_with_imageJ.tif", (68, 68), "float32", 168.675, "nm", 1),
    (
        "tiff/test_loading_image_saved_with_imageJ_stack.tif",
        (2, 68, 68),
        "float32",
        168.675,
        "nm",
        1,
    ),
    ("tiff/test_loading_image_saved_with_DM_stack.tif", (2, 68, 68), "float32", 168.674, "nm", 1),
    ("emd/fei_example_tem_stack.emd", (2, 3, 3), "int16", 8.172883 * PM, "nm", 1),
    ("emd/example_image.emd", (3, 3), "int32", 1.0, "pixel", 1),
    ("tia/new/128x128-TEM_search.emi", (128, 128), "int32", 5.261214, "nm", 1),
    ("tia/new/128x128-TEM_search_1.ser", (128, 128), "int32", 5.261214, "nm", 1),
    ("tia/new/128x128_TEM_acquire-sum1.emi", (128, 128), "int32", 21.479318, "nm", 1),
    ("mrc/HAADFscan.mrc", (16, 16), "uint16", 5.679131, "nm", 1),
    ("mrc/Custom_movie.mrc", (30, 16, 16), "uint16", 1.0, "pixel", 1),
]
ALL = NEW + OLD


def _ids(cases):
    return [c[0].split("/")[-1] for c in cases]


@shared
@pytest.mark.parametrize(("name", "shape", "dtype", "size", "unit", "n_images"), ALL, ids=_ids(ALL))
def test_fixture_reads_right_everywhere(name, shape, dtype, size, unit, n_images, capsys):
    path = FORMATS / name
    images = io.read_all(path)
    assert len(images) == n_images
    first = images[0]
    assert isinstance(first.data, da.Array)
    assert (first.data.shape, str(first.data.dtype)) == (shape, dtype)
    assert first.pixel_size[1] == pytest.approx(size, rel=1e-4)
    assert first.units[-2:] == (unit, unit)
    assert io.read(path).data.shape == shape
    json.dumps(first.metadata, allow_nan=False)

    reader = get_reader(str(path))  # the napari reader hook, headless
    assert reader is not None
    layers = reader(str(path))
    assert len(layers) == n_images
    data, kwargs, kind = layers[0]
    assert kind == "image"
    assert data.shape == shape
    assert kwargs["scale"][-1] == pytest.approx(size, rel=1e-4)
    assert kwargs["metadata"]["em_restore"]["source"] == str(path)

    assert main(["info", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shape"] == list(shape)
    assert summary["pixel_size"][1] == pytest.approx(size, rel=1e-4)
    assert len(summary.get("image_signals", [None])) == n_images


@shared
def test_velox_multi_signal_layers_are_named_by_title():
    path = FORMATS / "emd/fei_example_dpc_titles.emd"
    layers = get_reader(str(path))(str(path))
    names = [kwargs["name"] for _, kwargs, _ in layers]
    segments = ["DF4-C", "DF4-B", "DF4-A", "A-C", "DF4-D"]
    assert names == ["B-D", "DPC", "iDPC", *segments, "Filtered iDPC"]
    dpc = layers[1][0]
    assert dpc.dtype.kind == "f"  # complex DPC shown as its magnitude
    raw = io.read_all(path)[1]
    assert raw.data.dtype == np.complex64  # io keeps the file's complex values
    np.testing.assert_allclose(dpc.compute(), np.abs(raw.data.compute()))
    for _, kwargs, _ in layers:
        assert kwargs["scale"] == pytest.approx((99.6199 * PM,) * 2, rel=1e-5)
    assert io.guess_modality(raw.metadata) == "stem"


@shared
def test_bcf_opens_haadf_and_lists_the_edx_cube(capsys):
    path = FORMATS / "bruker/test_TEM.bcf"
    (haadf,) = io.read_all(path)
    assert haadf.metadata["title"] == "HAADF"
    assert haadf.metadata["voltage_V"] == 200000.0
    (edx,) = haadf.metadata["other_signals"]
    assert (edx["title"], edx["kind"], edx["shape"]) == ("EDX", "spectrum image", [64, 64, 2048])
    assert io.guess_modality(haadf.metadata) == "stem"
    layers = get_reader(str(path))(str(path))
    assert layers[0][1]["metadata"]["em_restore"]["other_signals"][0]["title"] == "EDX"
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "not opened: 'EDX' spectrum image 64 × 64 × 2048" in text


@shared
def test_phenom_images_beside_spectra():
    images = io.read_all(FORMATS / "phenom/Elid2Version4.elid")
    assert [im.data.shape for im in images] == [(16, 20), (35, 40)]
    assert images[1].pixel_size[1] == pytest.approx(812.0422, rel=1e-6)
    kinds = [o["kind"] for o in images[0].metadata["other_signals"]]
    assert kinds.count("spectrum") == 4 and kinds.count("spectrum image") == 4
    assert images[0].metadata["lazy"] is False  # rosettasciio reads ELID whole
    assert io.guess_modality(images[0].metadata) == "sem"


@shared
def test_vendor_tiff_keeps_our_pixels_and_takes_the_vendor_calibration():
    zeiss = io.read(FORMATS / "tiff/test_tiff_Zeiss_SEM_512pix.tif")
    assert zeiss.metadata["calibration_source"] == "zeiss"
    assert zeiss.metadata["original_unit"] == "m"
    assert io.guess_modality(zeiss.metadata) == "sem"
    sightx = io.read(FORMATS / "tiff/JEOL-SightX-TEM-mag-dummy.tif")
    assert sightx.metadata["title"] == "TEM, BrightField, MAG1, X150k"
    assert io.guess_modality(sightx.metadata) == "tem"
    jeol = io.read(FORMATS / "jeol/View000_0000000.img")
    assert jeol.metadata["original_unit"] == "µm"
    assert jeol.metadata["rsciio"]["metadata"]["General"]["title"] == "IMG1"


def _cut(source: Path, target: Path, how: str) -> Path:
    raw = source.read_bytes()
    if how == "truncated":
        target.write_bytes(raw[: len(raw) // 2])
    else:  # corrupted: the magic bytes kept, the rest overwritten
        rng = np.random.default_rng(0)
        body = rng.integers(0, 256, len(raw) - 16, dtype=np.uint8).tobytes()
        target.write_bytes(raw[:16] + body)
    return target


@shared
@pytest.mark.parametrize("how", ["truncated", "corrupted"])
@pytest.mark.parametrize("name", [c[0] for c in NEW], ids=_ids(NEW))
def test_broken_copies_give_one_line(tmp_path, name, how, capsys):
    path = _cut(FORMATS / name, tmp_path / Path(name).name, how)
    try:
        for image in io.read_all(path):
            image.data.compute()
    except io.UnsupportedFileError as exc:
        message = str(exc)
    else:  # the TIFFs' pixels are not checked; a cut must still not pass silently
        pytest.fail(f"{how} {name} read without error")
    assert "\n" not in message
    assert path.name in message and " — " in message
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and path.name in err


# -- the adapter on synthetic signal dicts (no shared files needed) ------------------


def _axis(name, size, scale=1.0, units="", navigate=False):
    return {"name": name, "size": size, "scale": scale, "units": units, "navigate": navigate}


def _signal(data, axes, title="s", signal_type=""):
    meta = {"General": {"title": title}, "Signal": {"signal_type": signal_type}}
    return {"data": data, "axes": axes, "metadata": meta, "original_metadata": {"k": 1}}


def test_classify_images_stacks_spectra_and_4d():
    img = _signal(np.zeros((4, 5)), [_axis("y", 4, 2, "µm"), _axis("x", 5, 2, "µm")])
    stack = _signal(
        np.zeros((3, 4, 5)),
        [_axis("t", 3, 0.5, "s", True), _axis("y", 4, 1, "nm"), _axis("x", 5, 1, "nm")],
    )
    spectrum = _signal(np.zeros(16), [_axis("E", 16, 0.01, "keV")])
    cube = _signal(
        np.zeros((4, 5, 16)),
        [_axis("y", 4, 1, "nm", True), _axis("x", 5, 1, "nm", True), _axis("E", 16, 1, "eV")],
    )
    four_d = _signal(
        np.zeros((2, 3, 4, 5)),
        [
            *(_axis("a", 2, 1, "nm", True), _axis("b", 3, 1, "nm", True)),
            *(_axis("ky", 4, 0.1, "1/nm"), _axis("kx", 5, 0.1, "1/nm")),
        ],
    )
    unflagged = _signal(
        np.zeros((4, 5)), [_axis("y", 4, navigate=None), _axis("x", 5, navigate=None)]
    )
    kinds = [classify(s) for s in (img, stack, spectrum, cube, four_d, unflagged)]
    assert kinds == ["image", "stack", "spectrum", "spectrum image", "4-D", "image"]

    images = images_from_signals([spectrum, img, stack, cube, four_d], Path("f.x"), "X")
    assert [im.axes for im in images] == ["yx", "tyx"]
    assert images[0].scale == pytest.approx((2000.0, 2000.0))
    assert images[0].units == ("nm", "nm")
    assert images[1].scale == pytest.approx((0.5, 1.0, 1.0))
    assert images[1].data.chunks[0] == (1, 1, 1)
    others = images[0].metadata["other_signals"]
    assert [o["kind"] for o in others] == ["spectrum", "spectrum image", "4-D"]
    assert images[0].metadata["rsciio"]["original_metadata"] == {"k": 1}


def test_signals_without_image_are_refused_in_one_line():
    spectrum = _signal(np.zeros(16), [_axis("E", 16, 0.01, "keV")], title="Spot 1")
    with pytest.raises(io.UnsupportedFileError) as info:
        images_from_signals([spectrum], Path("spectra.bcf"), "Bruker BCF")
    message = str(info.value)
    assert "'Spot 1' (spectrum)" in message and "spectra.bcf" in message and "\n" not in message


def test_rgb_structured_dtype_becomes_channels():
    rgb = np.zeros((4, 5), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["G"] = 7
    (image,) = images_from_signals([_signal(rgb, [_axis("y", 4), _axis("x", 5)])], Path("c"), "X")
    assert image.axes == "yxc"
    assert image.data.shape == (4, 5, 3)
    assert image.units == ("pixel", "pixel", "pixel")
    np.testing.assert_array_equal(image.data.compute()[..., 1], 7)


def test_lazy_read_errors_become_one_line(tmp_path):
    def broken(block):
        raise OSError("short read")

    data = da.zeros((4, 5), chunks=(4, 5)).map_blocks(broken, dtype=float)
    signal = _signal(data, [_axis("y", 4, 1, "nm"), _axis("x", 5, 1, "nm")])
    (image,) = images_from_signals([signal], tmp_path / "cut.prz", "PantaRhei PRZ")
    with pytest.raises(io.UnsupportedFileError, match=r"cut\.prz.*short read"):
        image.data.compute()


def test_empty_and_garbage_rsciio_formats(tmp_path):
    (tmp_path / "e.bcf").write_bytes(b"")
    (tmp_path / "g.bcf").write_bytes(b"\x01\x02" * 700)
    (tmp_path / "g.img").write_bytes(b"\x01\x02" * 700)
    assert not io.can_read(tmp_path / "e.bcf") and not io.can_read(tmp_path / "g.bcf")
    for name in ("e.bcf", "g.bcf", "g.img"):
        with pytest.raises(io.UnsupportedFileError) as info:
            io.read_all(tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)


def test_importing_io_does_not_import_rsciio():
    import subprocess

    code = "import em_restore.io, sys; print('rsciio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@shared
@pytest.mark.gui
def test_multi_signal_file_opens_one_layer_per_signal_in_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    path = FORMATS / "emd/fei_example_dpc_titles.emd"
    layers = viewer.open(str(path), plugin="napari-em-restore")
    assert len(layers) == 9
    assert [layer.name for layer in layers][:3] == ["B-D", "DPC", "iDPC"]
    assert tuple(layers[0].scale) == pytest.approx((99.6199 * PM,) * 2, rel=1e-5)
    bcf = viewer.open(str(FORMATS / "bruker/test_TEM.bcf"), plugin="napari-em-restore")
    assert len(bcf) == 1
    assert bcf[0].metadata["em_restore"]["other_signals"][0]["kind"] == "spectrum image"


def test_ccp4_map_is_read_as_mrc(tmp_path):
    """``.map`` is JEOL's elemental map and also CCP4/MRC's density map: the header decides."""
    import struct

    header = bytearray(1024)
    struct.pack_into("<4i", header, 0, 4, 3, 1, 2)
    struct.pack_into("<3i", header, 28, 4, 3, 1)
    struct.pack_into("<6f", header, 40, 8.0, 6.0, 1.0, 90.0, 90.0, 90.0)
    struct.pack_into("<3i", header, 64, 1, 2, 3)
    header[208:216] = b"MAP DD\x00\x00"
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / "density.map"
    path.write_bytes(bytes(header) + data.tobytes())
    assert io.can_read(path)
    image = io.read(path)
    assert image.scale == pytest.approx((0.2, 0.2))  # 2 Å
    np.testing.assert_array_equal(image.data.compute(), data)


def test_reader_patterns_cover_every_extension():
    import yaml

    manifest = yaml.safe_load((Path(__file__).resolve().parents[1] / "napari.yaml").read_text())
    (reader,) = manifest["contributions"]["readers"]
    patterns = {p.removeprefix("*") for p in reader["filename_patterns"]}
    assert patterns == set(io.SUPPORTED_EXTENSIONS)


def test_missing_optional_package_is_named(tmp_path, monkeypatch):
    import importlib

    real = importlib.import_module

    def no_mrcz(name, *args):
        if name == "rsciio.mrcz":
            raise ModuleNotFoundError("No module named 'mrcz'", name="mrcz")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_mrcz)
    path = tmp_path / "a.mrcz"
    path.write_bytes(b"\x01" * 2000)
    with pytest.raises(io.UnsupportedFileError, match=r"package 'mrcz'.*pip install mrcz"):
        io.read_all(path)


def test_velox_spectrum_image_beside_one_image_is_listed(tmp_path):
    """One image (our Velox reader) and an EDS spectrum image: the SI is listed."""
    import h5py

    path = tmp_path / "si.emd"
    column = np.zeros(4096, np.uint8)
    column[:2] = list(b"{}")
    with h5py.File(path, "w") as h5:
        image = h5.create_group("Data/Image/aaaa")
        image["Data"] = np.zeros((4, 5, 1), np.uint16)
        image["Metadata"] = column[:, None]
        h5.create_group("Data/SpectrumStream/bbbb")["Data"] = np.zeros((1000, 1), np.uint16)
    (only,) = io.read_all(path)
    assert only.data.shape == (4, 5)
    (other,) = only.metadata["other_signals"]
    assert (other["kind"], other["shape"]) == ("spectrum image", [1000, 1])
