"""The installed package carries napari.yaml and the sample data; npe2 accepts it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _npe2(*args: str, bindir: Path = BIN) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(bindir / "npe2"), *args], capture_output=True, text=True, timeout=300
    )


def test_npe2_validate_in_this_environment():
    result = _npe2("validate", "napari-em-restore")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in (result.stdout + result.stderr).lower()


def test_manifest_is_one_file_top_level_and_in_package():
    import em_restore

    in_package = Path(em_restore.__file__).parent / "napari.yaml"
    assert in_package.read_text() == (ROOT / "napari.yaml").read_text()


@pytest.mark.slow
def test_wheel_carries_manifest_and_validates_in_a_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("napari_em_restore-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "em_restore/napari.yaml" in names
    assert "em_restore/sample_data/README.md" in names
    assert "em_restore/sample_data/nanoparticles_5e.tif" in names
    assert "em_restore/weights/defaults.json" in names
    assert "em_restore/weights/em-denoise-fast/model.safetensors" in names
    assert "em_restore/weights/em-denoise-fast/config.json" in names
    for model in json.loads((ROOT / "src/em_restore/weights/defaults.json").read_text()).values():
        assert f"em_restore/weights/{model}/model.safetensors" in names, model  # every default
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "em_restore:napari.yaml" in zipfile.ZipFile(wheel).read(entry_points).decode()

    # A fresh venv with only npe2 and the wheel: proves the wheel alone is
    # enough for npe2 to discover and validate the manifest (dependencies are
    # the environment's business and are not re-downloaded here).
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=True, clear=True)
    bindir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    subprocess.run([str(bindir / "pip"), "install", "-q", "npe2"], check=True, env=env, timeout=600)
    subprocess.run(
        [str(bindir / "pip"), "install", "-q", "--no-deps", str(wheel)],
        check=True,
        env=env,
        timeout=300,
    )
    result = _npe2("validate", "napari-em-restore", bindir=bindir)
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.rmtree(env_dir)
