"""`em-restore burst`: windows of a stream -> sharp frames, metadata, one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from em_restore import io
from em_restore.backend import simulate as sim
from em_restore.cli import main


@pytest.fixture(scope="module")
def stream_tif(tmp_path_factory):
    spec, _ = sim.random_specimen((120, 200), rng=5, kinds=("tissue",))
    noisy, sharp, _ = sim.moving_stage_stream(
        spec, n_frames=6, frame_shape=(64, 64), velocity_px_per_frame=(1.0, 5.0), dose=150, rng=6
    )
    path = tmp_path_factory.mktemp("burst") / "stream.tif"
    io.write_tiff(
        path, noisy.astype(np.float32), pixel_size_nm=1.5, axes="tyx", frame_interval=0.01
    )
    return path, 150 * sharp


def _meta(res):
    return res.metadata.get("em_restore", res.metadata)["burst"]


def test_classical_burst_writes_registered_stack(stream_tif, tmp_path, capsys):
    path, truth = stream_tif
    out = tmp_path / "sharp.tif"
    before = path.read_bytes()
    code = main(["burst", str(path), "-o", str(out), "--frames", "5", "--method", "classical"])
    assert code == 0
    assert "2 frame(s) from windows of 5" in capsys.readouterr().out
    assert path.read_bytes() == before
    res = io.read(out)
    assert res.data.shape == (2, 64, 64) and res.data.dtype == np.float32
    assert res.pixel_size == pytest.approx((1.5, 1.5))
    meta = _meta(res)
    assert meta["centres"] == [2, 3] and meta["fusion"]["name"] == "multi_frame_wiener"
    raw = np.asarray(io.read(path).data, dtype=float)

    def psnr(x, t):
        return 10 * math.log10(np.ptp(t) ** 2 / np.mean((np.asarray(x, float) - t) ** 2))

    for i, c in enumerate(meta["centres"]):
        assert psnr(res.data[i], truth[c]) > psnr(raw[c], truth[c]) + 1.5


def test_stride_and_mean(stream_tif, tmp_path):
    path, _ = stream_tif
    out = tmp_path / "m.tif"
    assert (
        main(
            [
                "burst",
                str(path),
                "-o",
                str(out),
                "--frames",
                "2",
                "--stride",
                "3",
                "--method",
                "mean",
                "-q",
            ]
        )
        == 0
    )
    res = io.read(out)
    assert res.data.shape == (2, 64, 64) and _meta(res)["centres"] == [1, 4]
    assert res.scale[0] == pytest.approx(0.03)  # frame interval x stride


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--frames", "9"], "more than the 6 frames"),
        (["--frames", "1", "--method", "mean"], "frames"),
        (["--method", "mean", "--model", "em-burst"], "--model applies to --method network"),
        (["--method", "classical", "--exposure", "2"], "exposure"),
    ],
)
def test_bad_options_one_line(stream_tif, tmp_path, capsys, extra, match):
    path, _ = stream_tif
    assert main(["burst", str(path), "-o", str(tmp_path / "x.tif"), *extra]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
    assert not (tmp_path / "x.tif").exists()


def test_single_frame_is_a_clear_error(tmp_path, capsys):
    one = tmp_path / "one.tif"
    io.write_tiff(one, np.ones((40, 40), np.float32))
    assert main(["burst", str(one), "-o", str(tmp_path / "o.tif")]) == 2
    assert "single frame" in capsys.readouterr().err


def test_refuses_to_overwrite(stream_tif, capsys):
    path, _ = stream_tif
    assert main(["burst", str(path), "-o", str(path), "--method", "mean"]) == 2
    assert "raw data is never overwritten" in capsys.readouterr().err


def test_models_lists_burst_models_by_task(capsys):
    import json

    assert main(["models", "--task", "burst", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["em-burst"] and rows[0]["task"] == "burst"
