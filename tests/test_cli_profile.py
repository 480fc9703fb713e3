"""`em-restore profile`: particle sizing on a line, JSON contract, one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from em_restore import io
from em_restore.backend import simulate as sim
from em_restore.cli import main

PIXEL_NM = 0.5


def _pair_image(gap_px: float) -> np.ndarray:
    """Two bright-field spheres (d = 24 and 20 px) whose surfaces are gap_px apart."""
    c2 = 60 + 12 + 10 + gap_px
    t = sim.projected_spheres((120, 200), [(60, 60), (60, c2)], [12, 10])
    return sim.blur(np.exp(-math.log(2) / 24 * t), sim.gaussian_psf(1.0)).astype(np.float32)


@pytest.fixture
def pair_tif(tmp_path):
    path = tmp_path / "pair.tif"
    io.write_tiff(path, _pair_image(1.5), pixel_size_nm=PIXEL_NM)
    return path


def test_json_has_the_documented_keys_in_physical_units(pair_tif, capsys):
    assert main(["profile", str(pair_tif), "--line", "60,30,60,130", "--width", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["unit"] == "nm"
    prof = np.array(out["profile"])
    assert prof.shape[1] == 2 and prof[-1, 0] == pytest.approx(100 * PIXEL_NM)
    d = [p["diameter"] for p in out["particles"]]
    assert d == pytest.approx([24 * PIXEL_NM, 20 * PIXEL_NM], rel=5e-3)
    # Centres along the line (which starts at column 30).
    c = [p["center"] for p in out["particles"]]
    assert c == pytest.approx([30 * PIXEL_NM, (30 + 23.5) * PIXEL_NM], abs=0.1 * PIXEL_NM)
    assert all(p["edge_width"] > 0 for p in out["particles"])
    (pair,) = out["pairs"]
    assert pair["distance"] == pytest.approx(23.5 * PIXEL_NM, abs=0.05 * PIXEL_NM)
    assert pair["resolved"] is True


def test_overlapping_pair_is_not_resolved(tmp_path, capsys):
    path = tmp_path / "sintered.tif"
    io.write_tiff(path, _pair_image(-1.5), pixel_size_nm=PIXEL_NM)
    assert main(["profile", str(path), "--line", "60,30,60,130", "--json"]) == 0
    (pair,) = json.loads(capsys.readouterr().out)["pairs"]
    assert pair["resolved"] is False
    assert pair["gap"] == pytest.approx(-1.5 * PIXEL_NM, abs=0.1 * PIXEL_NM)


def test_text_output_and_pixels_without_calibration(tmp_path, capsys):
    path = tmp_path / "plain.tif"
    import tifffile

    tifffile.imwrite(path, _pair_image(3.0))
    assert main(["profile", str(path), "--line", "60,30,60,130"]) == 0
    out = capsys.readouterr().out
    assert "diameter 24" in out and " px" in out and "resolved" in out


def test_stack_frame_is_chosen(tmp_path, capsys):
    path = tmp_path / "stack.tif"
    stack = np.stack([np.ones((120, 200), np.float32), _pair_image(2.0)])
    io.write_tiff(path, stack, pixel_size_nm=PIXEL_NM, axes="tyx")
    assert main(["profile", str(path), "--line", "60,30,60,130", "--frame", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["particles"]) == 2
    assert main(["profile", str(path), "--line", "60,30,60,130", "--frame", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["particles"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--line", "60,30,60"], "--line must be Y0,X0,Y1,X1"),
        (["--line", "a,b,c,d"], "--line must be Y0,X0,Y1,X1"),
        (["--line", "60,30,60,400"], "leaves the 120x200 image"),
        (["--line", "60,30,60,130", "--frame", "3"], "single frame"),
        (["--line", "60,30,60,130", "--width", "0"], "width must be >= 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(pair_tif, capsys, args, message):
    assert main(["profile", str(pair_tif), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_rgb_is_refused(tmp_path, capsys):
    path = tmp_path / "rgb.png"
    import imageio.v3 as iio

    iio.imwrite(path, np.zeros((40, 50, 3), np.uint8))
    assert main(["profile", str(path), "--line", "20,5,20,45"]) == 2
    assert "greyscale" in capsys.readouterr().err
