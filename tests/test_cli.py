"""`em-restore` command line: info, errors as one line, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from em_restore import io
from em_restore.cli import main
from em_restore.samples import sample_path


def test_info_prints_shape_dtype_pixel_size(capsys):
    path = sample_path("stream_noisy.tif")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    image = io.read(path)
    assert " × ".join(str(n) for n in image.data.shape) in out
    assert str(image.data.dtype) in out
    assert "nm" in out


def test_info_json(capsys, tmp_path):
    path = tmp_path / "img.tif"
    io.write_tiff(path, np.zeros((3, 20, 30), np.uint16), pixel_size_nm=0.75, axes="tyx")
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [3, 20, 30]
    assert info["dtype"] == "uint16"
    assert info["pixel_size"] == pytest.approx([0.75, 0.75])
    assert info["unit"] == "nm"
    assert info["axes"] == "tyx"


@pytest.mark.parametrize(
    "content",
    [b"", b"not an image at all", b"II*\x00garbage"],
    ids=["empty", "text", "corrupt-tiff"],
)
def test_bad_file_gives_one_line_and_exit_2(capsys, tmp_path, content):
    path = tmp_path / "bad.tif"
    path.write_bytes(content)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("em-restore: error:")
    assert "\n" not in err
    assert "bad.tif" in err


def test_missing_and_unknown_files(capsys, tmp_path):
    assert main(["info", str(tmp_path / "nope.tif")]) == 2
    assert "nope.tif" in capsys.readouterr().err
    other = tmp_path / "table.csv"
    other.write_text("a,b\n1,2\n")
    assert main(["info", str(other)]) == 2
    err = capsys.readouterr().err
    assert ".csv" in err and "\n" not in err.strip()


def test_console_script_runs_without_traceback(tmp_path):
    exe = Path(sys.executable).parent / "em-restore"
    result = subprocess.run(
        [str(exe), "info", str(tmp_path / "nope.dm4")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "em-restore" in version.stdout
