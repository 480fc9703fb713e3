"""Zarr result stores: round trip, chunk-wise writing, atomic replacement."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from em_restore import io


def test_zarr_round_trip_keeps_calibration_and_metadata(tmp_path):
    data = np.random.default_rng(0).random((5, 24, 40)).astype(np.float32)
    out = io.write_zarr(
        tmp_path / "r.zarr",
        data,
        pixel_size_nm=(0.5, 0.25),
        axes="tyx",
        frame_interval=0.2,
        metadata={"operation": "denoise"},
    )
    image = io.read(out)
    np.testing.assert_array_equal(image.data.compute(), data)
    assert image.axes == "tyx"
    assert image.scale == pytest.approx((0.2, 0.5, 0.25))
    assert image.units == ("s", "nm", "nm")
    assert image.metadata["operation"] == "denoise"
    assert image.data.chunksize == (1, 24, 40)
    assert io.can_read(out)


def test_zarr_writes_dask_lazily_and_refuses_existing(tmp_path):
    calls = []

    def frame(block):
        calls.append(1)
        return block + 1

    lazy = da.zeros((4, 16, 16), chunks=(1, 16, 16), dtype=np.float32).map_blocks(frame)
    out = io.write_zarr(tmp_path / "s.zarr", lazy, pixel_size_nm=1.0, axes="tyx")
    assert len(calls) >= 4  # computed chunk by chunk, by the writer
    assert float(io.read(out).data.sum().compute()) == 4 * 16 * 16
    with pytest.raises(FileExistsError, match="overwrite"):
        io.write_zarr(out, lazy, axes="tyx")
    assert not list(tmp_path.glob(".*partial"))


def test_not_a_zarr_store_is_a_clear_error(tmp_path):
    folder = tmp_path / "empty.zarr"
    folder.mkdir()
    assert not io.can_read(folder)
    with pytest.raises(io.UnsupportedFileError):
        io.read(folder)
