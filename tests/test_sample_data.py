"""The bundled sample data: within budget, calibrated, consistent with its truth,
and exactly what scripts/make_sample_data.py makes."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from em_restore import io
from em_restore.samples import sample_data_dir, sample_path

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = {
    "nanoparticles_5e.tif": ((512, 512), "uint16", 1.0),
    "nanoparticles_1000e.tif": ((512, 512), "uint16", 1.0),
    "nanoparticles_clean.tif": ((512, 512), "float32", 1.0),
    "vesicles_noisy.tif": ((512, 512), "uint16", 0.8),
    "vesicles_clean.tif": ((512, 512), "float32", 0.8),
    "stream_noisy.tif": ((24, 256, 256), "uint16", 2.0),
    "stream_sharp.tif": ((24, 256, 256), "float32", 2.0),
}


def test_sample_data_within_budget():
    total = sum(p.stat().st_size for p in sample_data_dir().iterdir() if p.is_file())
    assert total <= 20e6


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_files_are_calibrated(name):
    shape, dtype, pixel = EXPECTED[name]
    image = io.read(sample_path(name))
    assert image.data.shape == shape
    assert str(image.data.dtype) == dtype
    assert image.pixel_size == pytest.approx((pixel, pixel))
    assert image.spatial_unit == "nm"


def test_stream_has_frame_axis_with_interval():
    image = io.read(sample_path("stream_noisy.tif"))
    assert image.axes == "tyx"
    assert image.scale[0] == pytest.approx(0.01)
    assert image.units[0] == "s"


def test_nanoparticle_truth_matches_images():
    truth = json.loads(sample_path("nanoparticles_truth.json").read_text())
    clean = io.read(sample_path("nanoparticles_clean.tif")).data.compute()
    high = io.read(sample_path("nanoparticles_1000e.tif")).data.compute().astype(float)
    low = io.read(sample_path("nanoparticles_5e.tif")).data.compute().astype(float)
    pixel = truth["pixel_size_nm"]
    inside = np.zeros(clean.shape, bool)
    near = np.zeros(clean.shape, bool)  # inside or touching the rim (partial pixels)
    yy, xx = np.indices(clean.shape) * pixel
    for p in truth["particles"]:
        cy, cx = p["center_yx_nm"]
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        inside |= r2 < (p["diameter_nm"] / 2) ** 2
        near |= r2 < (p["diameter_nm"] / 2 + pixel) ** 2
    assert len(truth["particles"]) == 18
    # Particles absorb (bright field): darker inside in the truth and in both doses;
    # outside them the specimen is the empty support.
    assert np.all(clean[~near] == 1.0)
    assert clean[inside].mean() < 0.8
    for image in (low, high):
        assert np.median(image[inside]) < np.median(image[~near])
    # 5 e⁻/px: Poisson counts of mean ~5 over the support (counting detector, gain 1).
    assert low[~near].mean() == pytest.approx(5, rel=0.02)


def test_regenerating_gives_the_same_files(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["make_sample_data.py", "--out", str(tmp_path)])
    runpy.run_path(str(ROOT / "scripts" / "make_sample_data.py"), run_name="__main__")
    for name in EXPECTED:
        new, old = io.read(tmp_path / name), io.read(sample_path(name))
        np.testing.assert_array_equal(new.data.compute(), old.data.compute())
        assert new.scale == old.scale
    assert (tmp_path / "nanoparticles_truth.json").read_text() == sample_path(
        "nanoparticles_truth.json"
    ).read_text()
