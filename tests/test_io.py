"""Tests of em_restore.io on files made here (no vendor files needed).

Small DM3/DM4, MRC, TIA and EMD files are synthesised byte by byte from the
format descriptions, so every reader is exercised even without the shared
vendor data (see test_io_vendor_files.py for the real files).
"""

from __future__ import annotations

import json
import struct
import time
import tracemalloc
import uuid

import dask.array as da
import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from em_restore.io import (
    SUPPORTED_EXTENSIONS,
    EMImage,
    UnsupportedFileError,
    can_read,
    read,
    write_tiff,
)
from em_restore.io._image import spatial_to_nm, time_to_s

# -- synthetic vendor files ----------------------------------------------------


def make_dm(path, data, scale=0.5, unit="nm", version=3, thumbnail=True):
    """Write a minimal DM3/DM4 file: optional RGB thumbnail, then the image."""
    v4 = version == 4

    def size(n):
        return struct.pack(">Q" if v4 else ">I", n)

    def tag(kind, label, body):
        head = bytes([kind]) + struct.pack(">H", len(label)) + label.encode()
        return head + (struct.pack(">Q", len(body)) if v4 else b"") + body

    def group(label, tags):
        return tag(20, label, b"\x00\x00" + size(len(tags)) + b"".join(tags))

    def value(label, info, payload):
        body = b"%%%%" + size(len(info)) + b"".join(size(i) for i in info) + payload
        return tag(21, label, body)

    def scalar(label, code, fmt, number):
        return value(label, [code], struct.pack("<" + fmt, number))

    def array(label, code, arr):
        return value(label, [20, code, arr.size], arr.tobytes())

    def text(label, string):
        return array(label, 4, np.array([ord(c) for c in string], "<u2"))

    codes = {np.dtype("<i2"): (1, 2), np.dtype("<f4"): (2, 6), np.dtype("<i4"): (7, 3)}
    codes[np.dtype("<u2")] = (10, 4)
    data_type, element = codes[data.dtype]
    dims = list(reversed(data.shape))
    cal = [
        group("", [scalar("Origin", 6, "f", 0.0), scalar("Scale", 6, "f", s), text("Units", u)])
        for s, u in ((scale, unit), (scale, unit), (2.0, "s"))[: len(dims)]
    ]
    image_data = group(
        "ImageData",
        [
            group("Calibrations", [group("Dimension", cal)]),
            array("Data", element, data.astype(data.dtype.newbyteorder("<")).ravel()),
            scalar("DataType", 3, "i", data_type),
            group("Dimensions", [scalar("", 5, "I", n) for n in dims]),
        ],
    )
    tags = group("ImageTags", [group("Microscope Info", [scalar("Voltage", 7, "d", 2e5)])])
    images = [group("", [image_data, tags, text("Name", "synthetic")])]
    if thumbnail:  # larger than the data, RGB: must not be picked
        thumb = np.zeros(64 * 64, "<u4")
        thumb_data = [array("Data", 5, thumb), scalar("DataType", 3, "i", 23)]
        thumb_data.append(group("Dimensions", [scalar("", 5, "I", 64)] * 2))
        images.insert(0, group("", [group("ImageData", thumb_data)]))
    root = b"\x01\x01" + size(1) + group("ImageList", images)
    if v4:
        header = struct.pack(">IQI", 4, len(root), 1)
    else:
        header = struct.pack(">III", 3, len(root), 1)
    path.write_bytes(header + root + b"\x00" * 8)
    return path


def make_mrc(path, data, cella=(10.0, 10.0, 1.0), mode=None, ext_header=0, truncate=0):
    """Write a little-endian MRC2014 file (cella in Å)."""
    modes = {np.dtype("int8"): 0, np.dtype("int16"): 1, np.dtype("float32"): 2}
    modes.update({np.dtype("uint16"): 6, np.dtype("float16"): 12})
    stack = data if data.ndim == 3 else data[None]
    nz, ny, nx = stack.shape
    header = bytearray(1024)
    code = modes.get(data.dtype, 2) if mode is None else mode
    struct.pack_into("<4i", header, 0, nx, ny, nz, code)
    struct.pack_into("<3i", header, 28, nx, ny, nz)
    struct.pack_into("<6f", header, 40, *cella, 90.0, 90.0, 90.0)
    struct.pack_into("<3i", header, 64, 1, 2, 3)
    struct.pack_into("<i", header, 92, ext_header)
    header[208:216] = b"MAP DD\x00\x00"
    body = bytes(header) + b"\x00" * ext_header + stack.tobytes()
    path.write_bytes(body[: len(body) - truncate])
    return path


def make_ser(path, frames, pixel_m=2e-9, version=0x210):
    """Write a TIA .ser image series; rows are stored bottom-up as TIA does."""
    wide = version >= 0x220
    n, ny, nx = frames.shape
    off_fmt = "<q" if wide else "<i"
    dim = struct.pack("<iddii", n, 0.0, 1.0, 0, 6) + b"Number" + struct.pack("<i", 0)
    head_len = (30 if wide else 26) + 4 + len(dim)
    element = 50 + frames[0].nbytes
    data_start = head_len
    offsets = [data_start + i * element for i in range(n)]
    tags_start = data_start + n * element
    tag_offsets = [tags_start + 6 * i for i in range(n)]
    array_at = tags_start + 6 * n
    out = struct.pack("<3H4i", 0x4949, 0x0197, version, 0x4122, 0x4152, n, n)
    out += struct.pack(off_fmt, array_at) + struct.pack("<i", 1) + dim
    for frame in frames:
        out += struct.pack("<ddiddihii", 0.0, pixel_m, 0, 0.0, pixel_m, 0, 6, nx, ny)
        out += frame[::-1].astype("<i4").tobytes()
    out += b"".join(struct.pack("<Hi", 0x4152, 1000 + 3 * i) for i in range(n))
    out += b"".join(struct.pack(off_fmt, o) for o in offsets + tag_offsets)
    path.write_bytes(out)
    return path


def make_velox(path, stack, pixel_m=5e-11, frame_time="0.25"):
    """Velox EMD: Data (y, x, frames) and one JSON metadata column per frame."""
    meta = {
        "BinaryResult": {
            "PixelSize": {"width": str(pixel_m), "height": str(pixel_m)},
            "PixelUnitX": "m",
            "PixelUnitY": "m",
            "Detector": "HAADF",
        },
        "Scan": {"FrameTime": frame_time},
        "Optics": {"AccelerationVoltage": "300000"},
    }
    raw = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    column = np.zeros(4096, np.uint8)
    column[: raw.size] = raw
    with h5py.File(path, "w") as h5:
        group = h5.create_group(f"Data/Image/{uuid.uuid4().hex}")
        group["Data"] = np.moveaxis(stack, 0, -1)
        group["Metadata"] = np.repeat(column[:, None], stack.shape[0], axis=1)
    return path


def make_ncem(path, data, step=0.5, units="[n_m]"):
    with h5py.File(path, "w") as h5:
        group = h5.create_group("data/signal")
        group.attrs["emd_group_type"] = 1
        group["data"] = data
        for i, n in enumerate(data.shape):
            dim = group.create_dataset(f"dim{i + 1}", data=np.arange(n) * step)
            dim.attrs["name"] = "yx"[i % 2]
            dim.attrs["units"] = units
    return path


def assert_one_line_error(path, *words):
    with pytest.raises(UnsupportedFileError) as info:
        read(path)
    message = str(info.value)
    assert "\n" not in message
    assert "cannot read" in message
    for word in words:
        assert word in message, message
    return message


def assert_json(image: EMImage):
    text = json.dumps(image.metadata, allow_nan=False)
    for key in ("format", "source", "original_pixel_size", "original_unit"):
        assert key in json.loads(text)


# -- calibration helpers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (2e-9, "m", (2.0, "nm")),
        (0.168675, "µm", (168.675, "nm")),
        (0.168675, "\u03bcm", (168.675, "nm")),
        (0.168675, "micron", (168.675, "nm")),
        (0.168675, "um", (168.675, "nm")),
        (3.0, "Å", (0.3, "nm")),
        (3.0, "A", (0.3, "nm")),
        (3.0, "angstrom", (0.3, "nm")),
        (8.172883, "pm", (0.008172883, "nm")),
        (0.5, "nm", (0.5, "nm")),
        (2e9, "1/m", (2.0, "1/nm")),
        (2.0, "1/µm", (0.002, "1/nm")),
        (0.2, "1/Å", (2.0, "1/nm")),
        (0.001, "1/pm", (1.0, "1/nm")),
        (0.17, "1/nm", (0.17, "1/nm")),
        (0.17, "nm^-1", (0.17, "1/nm")),
        (1.0, "", (1.0, "pixel")),
        (0.5, "pixel", (1.0, "pixel")),
        (-1.0, "nm", (1.0, "pixel")),
        (0.0, "Å", (1.0, "pixel")),
        (float("nan"), "nm", (1.0, "pixel")),
        (None, "nm", (1.0, "pixel")),
        (1.5, "eV", (1.5, "eV")),
    ],
)
def test_spatial_to_nm(value, unit, expected):
    scale, out_unit = spatial_to_nm(value, unit)
    assert out_unit == expected[1]
    assert scale == pytest.approx(expected[0], rel=1e-9)


def test_time_to_s():
    assert time_to_s(250, "ms") == pytest.approx((0.25, "s"))
    assert time_to_s(None) == (1.0, "frame")
    assert time_to_s(-1.0, "s") == (1.0, "frame")


# -- write_tiff round trips --------------------------------------------------------


def test_round_trip_2d_float32(tmp_path):
    data = np.random.default_rng(0).random((40, 56), dtype=np.float32)
    out = write_tiff(tmp_path / "a.tif", data, pixel_size_nm=0.125, metadata={"note": "x"})
    image = read(out)
    assert isinstance(image.data, da.Array)
    assert image.axes == "yx"
    assert image.scale == (0.125, 0.125)
    assert image.units == ("nm", "nm")
    assert image.data.dtype == np.float32
    np.testing.assert_array_equal(image.data.compute(), data)
    assert image.metadata["note"] == "x"
    assert_json(image)
    with tifffile.TiffFile(out) as tif:  # what ImageJ will see
        assert tif.imagej_metadata["unit"] == "nm"
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(8.0)


def test_round_trip_3d_uint16_dask_stack(tmp_path):
    stack = (np.random.default_rng(1).random((6, 32, 48)) * 60000).astype(np.uint16)
    lazy_stack = da.from_array(stack, chunks=(1, 32, 48))
    out = write_tiff(
        tmp_path / "s.tif",
        lazy_stack,
        pixel_size_nm=(0.3, 0.2),
        axes="tyx",
        frame_interval=0.05,
    )
    image = read(out)
    assert image.axes == "tyx"
    assert image.scale == (0.05, 0.3, 0.2)
    assert image.units == ("s", "nm", "nm")
    assert image.data.dtype == np.uint16
    assert image.data.chunks[0] == (1,) * 6
    np.testing.assert_array_equal(image.data.compute(), stack)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint8, np.int16])
def test_round_trip_other_dtypes(tmp_path, dtype):
    data = (np.arange(3 * 10 * 12) % 100).astype(dtype).reshape(3, 10, 12)
    out = write_tiff(tmp_path / "z.tif", data, pixel_size_nm=2.0, unit="1/nm", axes="zyx")
    image = read(out)
    assert image.data.dtype == dtype
    assert image.axes == "zyx"
    assert image.scale == (1.0, 2.0, 2.0)
    assert image.units == ("frame", "1/nm", "1/nm")
    np.testing.assert_array_equal(image.data.compute(), data)


def test_round_trip_uncalibrated_rgb(tmp_path):
    rgb = (np.random.default_rng(2).random((9, 11, 3)) * 255).astype(np.uint8)
    image = read(write_tiff(tmp_path / "rgb.tif", rgb, axes="yxc"))
    assert image.axes == "yxc"
    assert image.units[:2] == ("pixel", "pixel")
    np.testing.assert_array_equal(image.data.compute(), rgb)


def test_write_refuses_existing_path(tmp_path):
    target = tmp_path / "exists.tif"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_tiff(target, np.zeros((4, 4), np.float32))
    assert target.read_bytes() == b"keep me"
    write_tiff(target, np.ones((4, 4), np.float32), overwrite=True)
    np.testing.assert_array_equal(read(target).data.compute(), 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.tif"]


def test_write_failure_leaves_nothing(tmp_path):
    def explode(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 2:
            raise RuntimeError("boom")
        return block

    stack = da.zeros((4, 8, 8), dtype=np.uint16, chunks=(1, 8, 8)).map_blocks(
        explode, dtype=np.uint16
    )
    with pytest.raises(RuntimeError, match="boom"):
        write_tiff(tmp_path / "bad.tif", stack, axes="tyx")
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_bad_axes(tmp_path):
    with pytest.raises(ValueError, match="axes"):
        write_tiff(tmp_path / "x.tif", np.zeros((2, 4, 4)), axes="yx")


# -- laziness -----------------------------------------------------------------------


def _frames(n, shape, dtype):
    for i in range(n):
        yield np.full(shape, i, dtype) + np.arange(shape[1], dtype=dtype)


def test_large_tiff_opens_fast_and_lazily(tmp_path):
    n, shape = 50, (2048, 1024)  # 200 MB of uint16
    path = tmp_path / "big.tif"
    tifffile.imwrite(
        path,
        _frames(n, shape, np.uint16),
        shape=(n, *shape),
        dtype=np.uint16,
        imagej=True,
        metadata={"axes": "TYX"},
    )
    start = time.perf_counter()
    image = read(path)
    assert time.perf_counter() - start < 2.0
    assert image.data.shape == (n, *shape)
    assert image.data.chunks[0] == (1,) * n
    tracemalloc.start()
    frame = image.data[17].compute()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * frame.nbytes  # one frame, not the 200 MB stack
    np.testing.assert_array_equal(frame, tifffile.imread(path, key=17))
    # np.array_equal: assert_array_equal takes seconds on 200 MB
    assert np.array_equal(image.data.compute(), tifffile.imread(path))


@pytest.mark.parametrize("compression", ["zlib", None])
def test_non_contiguous_tiff_is_read_per_page(tmp_path, compression):
    path = tmp_path / "pages.tif"
    pages = [np.random.default_rng(i).integers(0, 4000, (64, 80), np.uint16) for i in range(5)]
    with tifffile.TiffWriter(path) as tif:  # separate IFDs between pages: not contiguous
        for page in pages:
            tif.write(page, compression=compression, metadata=None, contiguous=False)
    image = read(path)
    assert image.data.shape == (5, 64, 80)
    assert image.data.chunks[0] == (1,) * 5
    assert image.units == ("frame", "pixel", "pixel")
    np.testing.assert_array_equal(image.data[3].compute(), pages[3])
    np.testing.assert_array_equal(image.data.compute(), tifffile.imread(path))


def test_big_endian_tiff(tmp_path):
    data = np.arange(12 * 10, dtype=">u2").reshape(12, 10)
    tifffile.imwrite(tmp_path / "be.tif", data, byteorder=">")
    image = read(tmp_path / "be.tif")
    assert image.data.dtype == np.dtype("uint16")
    assert image.data.dtype.isnative
    np.testing.assert_array_equal(image.data.compute(), data)


def test_plain_tiff_is_uncalibrated(tmp_path):
    tifffile.imwrite(tmp_path / "p.tif", np.zeros((8, 8), np.uint8), resolution=(72, 72))
    image = read(tmp_path / "p.tif")
    assert image.scale == (1.0, 1.0)
    assert image.units == ("pixel", "pixel")
    assert_json(image)


def test_imagej_micron_tiff(tmp_path):
    data = np.zeros((2, 8, 8), np.float32)
    tifffile.imwrite(
        tmp_path / "ij.tif",
        data,
        imagej=True,
        resolution=(4.0, 4.0),
        metadata={"unit": "micron", "axes": "TYX", "finterval": 0.5},
    )
    image = read(tmp_path / "ij.tif")
    assert image.axes == "tyx"
    assert image.scale == pytest.approx((0.5, 250.0, 250.0))
    assert image.units == ("s", "nm", "nm")


# -- synthetic vendor formats --------------------------------------------------------


@pytest.mark.parametrize("version", [3, 4])
def test_dm_image(tmp_path, version):
    data = np.arange(6 * 5, dtype="<i4").reshape(6, 5)
    path = make_dm(tmp_path / f"a.dm{version}", data, scale=0.2, unit="µm", version=version)
    image = read(path)
    assert image.axes == "yx"
    assert image.data.dtype == np.int32
    assert image.scale == pytest.approx((200.0, 200.0), rel=1e-6)
    assert image.units == ("nm", "nm")
    np.testing.assert_array_equal(image.data.compute(), data)
    assert image.metadata["voltage_V"] == 2e5
    assert_json(image)


def test_dm_stack(tmp_path):
    data = np.arange(3 * 4 * 5, dtype="<u2").reshape(3, 4, 5)
    image = read(make_dm(tmp_path / "s.dm3", data, scale=0.1, unit="nm"))
    assert image.axes == "tyx"
    assert image.scale == pytest.approx((2.0, 0.1, 0.1))
    assert image.units == ("s", "nm", "nm")
    assert image.data.chunks[0] == (1, 1, 1)
    np.testing.assert_array_equal(image.data[1].compute(), data[1])


def test_dm_truncated(tmp_path):
    path = make_dm(tmp_path / "t.dm3", np.zeros((40, 40), "<f4"))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    assert_one_line_error(path, "t.dm3", "truncated")


def test_mrc_image_and_movie(tmp_path):
    image = read(make_mrc(tmp_path / "a.mrc", np.ones((6, 7), np.float32), (35.0, 30.0, 1.0)))
    assert image.axes == "yx"
    assert image.scale == pytest.approx((0.5, 0.5))
    assert image.units == ("nm", "nm")
    movie = np.arange(4 * 6 * 7, dtype=np.uint16).reshape(4, 6, 7)
    path = make_mrc(tmp_path / "m.mrcs", movie, (-7.0, -6.0, 1.0), ext_header=128)
    image = read(path)
    assert image.axes == "tyx"
    assert image.scale == (1.0, 1.0, 1.0)
    assert image.units == ("frame", "pixel", "pixel")
    np.testing.assert_array_equal(image.data.compute(), movie)
    assert_json(image)


def test_mrc_refuses_complex_and_truncated(tmp_path):
    path = make_mrc(tmp_path / "fft.mrc", np.zeros((4, 4), np.complex64), mode=4)
    assert_one_line_error(path, "fft.mrc", "complex")
    path = make_mrc(tmp_path / "cut.mrc", np.zeros((3, 16, 16), np.uint16), truncate=100)
    assert_one_line_error(path, "cut.mrc", "truncated")


@pytest.mark.parametrize("version", [0x210, 0x220])
def test_tia_series_via_ser_and_emi(tmp_path, version):
    frames = np.arange(3 * 5 * 4, dtype=np.int32).reshape(3, 5, 4)
    ser = make_ser(tmp_path / "scan_1.ser", frames, pixel_m=2e-9, version=version)
    (tmp_path / "scan.emi").write_bytes(
        b"junk<ObjectInfo><ExperimentalConditions><MicroscopeConditions>"
        b"<AcceleratingVoltage>200000</AcceleratingVoltage></MicroscopeConditions>"
        b"</ExperimentalConditions></ObjectInfo>"
    )
    for path in (ser, tmp_path / "scan.emi"):
        image = read(path)
        assert image.axes == "tyx"
        assert image.scale == pytest.approx((3.0, 2.0, 2.0))
        assert image.units == ("s", "nm", "nm")
        np.testing.assert_array_equal(image.data.compute(), frames)
        assert image.metadata["voltage_V"] == 200000.0
        assert_json(image)


def test_emi_without_ser(tmp_path):
    (tmp_path / "lonely.emi").write_bytes(b"<ObjectInfo></ObjectInfo>")
    assert_one_line_error(tmp_path / "lonely.emi", "lonely_1.ser")
    assert not can_read(tmp_path / "lonely.emi")


def test_velox_stack(tmp_path):
    stack = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    image = read(make_velox(tmp_path / "v.emd", stack))
    assert image.axes == "tyx"
    assert image.scale == pytest.approx((0.25, 0.05, 0.05))
    assert image.units == ("s", "nm", "nm")
    assert image.data.chunks[0] == (1, 1, 1)
    np.testing.assert_array_equal(image.data.compute(), stack)
    assert image.metadata["voltage_V"] == 300000.0
    assert_json(image)


def test_ncem_emd(tmp_path):
    data = np.arange(4 * 6, dtype=np.float32).reshape(4, 6)
    image = read(make_ncem(tmp_path / "n.emd", data))
    assert image.axes == "yx"
    assert image.scale == (0.5, 0.5)
    assert image.units == ("nm", "nm")
    np.testing.assert_array_equal(image.data.compute(), data)


def test_hdf5_that_is_not_emd(tmp_path):
    with h5py.File(tmp_path / "other.emd", "w") as h5:
        h5["x"] = np.zeros(3)
    assert_one_line_error(tmp_path / "other.emd", "other.emd", "EMD")


@pytest.mark.parametrize(
    ("mode", "dtype", "shape", "axes"),
    [
        ("L", np.uint8, (7, 9), "yx"),
        ("I;16", np.uint16, (7, 9), "yx"),
        ("RGB", np.uint8, (7, 9, 3), "yxc"),
        ("RGBA", np.uint8, (7, 9, 4), "yxc"),
    ],
)
def test_png(tmp_path, mode, dtype, shape, axes):
    data = (np.arange(np.prod(shape)) * 7 % 250).astype(dtype).reshape(shape)
    picture = Image.fromarray(data)
    assert picture.mode == mode
    picture.save(tmp_path / "p.png")
    image = read(tmp_path / "p.png")
    assert image.axes == axes
    assert image.data.dtype == dtype
    assert image.units[:2] == ("pixel", "pixel")
    np.testing.assert_array_equal(image.data.compute(), data)
    assert_json(image)


def test_jpeg_grey(tmp_path):
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(tmp_path / "g.jpg")
    image = read(tmp_path / "g.jpg")
    assert image.axes == "yx"
    assert image.data.dtype == np.uint8
    assert abs(int(image.data.compute().mean()) - 128) <= 2


# -- bad input -----------------------------------------------------------------------


def test_random_bytes_tiff(tmp_path):
    path = tmp_path / "noise.tif"
    path.write_bytes(np.random.default_rng(3).bytes(10))
    assert_one_line_error(path, "noise.tif")
    assert not can_read(path)


@pytest.mark.parametrize("ext", [e for e in SUPPORTED_EXTENSIONS if e != ".emi"])
def test_empty_file(tmp_path, ext):
    path = tmp_path / f"empty{ext}"
    path.write_bytes(b"")
    assert_one_line_error(path, f"empty{ext}", "empty")
    assert not can_read(path)


@pytest.mark.parametrize("ext", [".dm3", ".mrc", ".ser", ".emd", ".png", ".tif"])
def test_garbage_content(tmp_path, ext):
    path = tmp_path / f"garbage{ext}"
    path.write_bytes(b"\x01\x02" * 700)
    assert_one_line_error(path, f"garbage{ext}")


def test_truncated_tiff(tmp_path):
    path = write_tiff(tmp_path / "t.tif", np.zeros((3, 64, 64), np.float32), axes="tyx")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    assert_one_line_error(path, "t.tif")


def test_unknown_extension(tmp_path):
    path = tmp_path / "x.xyz"
    path.write_bytes(b"data")
    message = assert_one_line_error(path, "'.xyz'", ".tif", "TIFF")
    assert "supported" in message
    assert not can_read(path)


def test_wrong_extension_is_named(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "x.dm3").write_bytes((tmp_path / "x.png").read_bytes())
    assert_one_line_error(tmp_path / "x.dm3", ".png")


def test_directory_and_missing(tmp_path):
    assert_one_line_error(tmp_path, "folder")
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "missing.tif")
    assert_one_line_error(tmp_path / "missing.tif", "does not exist")
    assert not can_read(tmp_path)
    assert not can_read(tmp_path / "missing.tif")


def test_can_read(tmp_path):
    assert can_read(write_tiff(tmp_path / "a.tif", np.zeros((4, 4), np.float32)))
    assert can_read(make_mrc(tmp_path / "a.mrc", np.zeros((4, 4), np.float32)))
    assert can_read(make_dm(tmp_path / "a.dm4", np.zeros((4, 4), "<f4"), version=4))
    assert can_read(make_ncem(tmp_path / "a.emd", np.zeros((4, 4))))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    assert can_read(tmp_path / "a.png")
    assert can_read(str(tmp_path / "a.png"))
    (tmp_path / "b.png").write_bytes(b"not a png at all")
    assert not can_read(tmp_path / "b.png")
