"""Zarr results are OME-Zarr (NGFF 0.5 on Zarr v3), with physical units and scale.

The metadata is checked against the structure the NGFF 0.5 specification requires
(https://ngff.openmicroscopy.org/0.5/): an ``ome`` group attribute with ``version``
and ``multiscales``; axes with a name, a type (time, channel, space) and a UDUNITS-2
unit, in the order time, channel, space; one scale per axis; ``dimension_names`` of
the array equal to the axis names. Where ome-zarr-py is installed, it reads the store.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from em_restore import io
from em_restore.cli import main

# the units NGFF allows that our results use
UDUNITS = {"nanometer", "micrometer", "angstrom", "second", "millisecond"}


def check_ngff_05(store) -> dict:
    """Assert the NGFF 0.5 image structure; return the multiscales entry."""
    group = json.loads((store / "zarr.json").read_text())
    assert group["zarr_format"] == 3 and group["node_type"] == "group"
    ome = group["attributes"]["ome"]
    assert ome["version"] == "0.5"
    (entry,) = ome["multiscales"]
    axes = entry["axes"]
    assert 2 <= len(axes) <= 5
    types = [a["type"] for a in axes]
    assert sum(t == "space" for t in types) in (2, 3)
    rank = {"time": 0, "channel": 1, "space": 2}
    assert [rank[t] for t in types] == sorted(rank[t] for t in types)
    for axis in axes:
        assert set(axis) <= {"name", "type", "unit"}
        if "unit" in axis:
            assert axis["unit"] in UDUNITS
    assert entry["datasets"], "one level at least"
    for level in entry["datasets"]:
        (transform,) = level["coordinateTransformations"]
        assert transform["type"] == "scale"
        assert len(transform["scale"]) == len(axes)
        assert all(isinstance(v, float) and v > 0 for v in transform["scale"])
        array = json.loads((store / level["path"] / "zarr.json").read_text())
        assert array["node_type"] == "array"
        assert len(array["shape"]) == len(axes)
        assert array["dimension_names"] == [a["name"] for a in axes]
    return entry


def test_stack_is_ngff_05_with_nanometres_and_seconds(tmp_path):
    data = np.arange(3 * 8 * 10, dtype=np.float32).reshape(3, 8, 10)
    out = io.write_zarr(
        tmp_path / "r.zarr", data, pixel_size_nm=(0.5, 0.25), axes="tyx", frame_interval=0.2
    )
    entry = check_ngff_05(out)
    assert entry["axes"] == [
        {"name": "t", "type": "time", "unit": "second"},
        {"name": "y", "type": "space", "unit": "nanometer"},
        {"name": "x", "type": "space", "unit": "nanometer"},
    ]
    scale = entry["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == pytest.approx([0.2, 0.5, 0.25])
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")["0"][:], data)


def test_uncalibrated_and_z_axes(tmp_path):
    entry = check_ngff_05(io.write_zarr(tmp_path / "u.zarr", np.zeros((4, 5)), axes="yx"))
    assert entry["axes"] == [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    out = io.write_zarr(tmp_path / "z.zarr", np.zeros((2, 4, 5)), pixel_size_nm=2.0, axes="zyx")
    assert [a["type"] for a in check_ngff_05(out)["axes"]] == ["space"] * 3


def test_colour_last_is_not_claimed_as_ngff(tmp_path):
    out = io.write_zarr(tmp_path / "c.zarr", np.zeros((4, 5, 3), np.uint8), axes="yxc")
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]
    assert "ome" not in attrs  # NGFF puts channels before space: not an NGFF image
    assert io.read(out).axes == "yxc"


def test_plain_ngff_store_is_read_at_its_scale(tmp_path):
    """An OME-Zarr written by another tool (no em_restore attribute)."""
    group = zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=3)
    group.create_array("0", shape=(2, 6, 6), chunks=(1, 6, 6), dtype="u2")
    axes = [
        {"name": "t", "type": "time", "unit": "millisecond"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    scale = [{"type": "scale", "scale": [50.0, 0.1, 0.1]}]
    datasets = [{"path": "0", "coordinateTransformations": scale}]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}
    image = io.read(tmp_path / "other.zarr")
    assert image.axes == "tyx"
    assert image.scale == pytest.approx((0.05, 100.0, 100.0))
    assert image.units == ("s", "nm", "nm")


def test_cli_zarr_output_is_ngff(tmp_path):
    source = io.write_tiff(
        tmp_path / "in.tif",
        np.random.default_rng(0).random((2, 16, 16)).astype(np.float32),
        pixel_size_nm=0.8,
        axes="tyx",
        frame_interval=0.5,
    )
    out = tmp_path / "out.zarr"
    code = main(["denoise", str(source), "-o", str(out), "--method", "gaussian", "--strength", "1"])
    assert code == 0
    entry = check_ngff_05(out)
    scale = entry["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == pytest.approx([0.5, 0.8, 0.8])


def test_ome_zarr_py_reads_the_store(tmp_path):
    ome_zarr = pytest.importorskip("ome_zarr.reader")
    from ome_zarr.io import parse_url

    data = np.arange(2 * 8 * 10, dtype=np.uint16).reshape(2, 8, 10)
    out = io.write_zarr(tmp_path / "r.zarr", data, pixel_size_nm=1.5, axes="tyx")
    (node,) = list(ome_zarr.Reader(parse_url(str(out)))())
    np.testing.assert_array_equal(np.asarray(node.data[0]), data)
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [1.0, 1.5, 1.5]
