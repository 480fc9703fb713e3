"""The backend stays headless: no Qt, napari or magicgui anywhere in it."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import em_restore.backend

GUI_PACKAGES = {"qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt"}
BACKEND_DIR = Path(em_restore.backend.__file__).parent


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_backend_sources_import_no_gui_package():
    offenders = {
        str(p.relative_to(BACKEND_DIR)): sorted(_imported_roots(p) & GUI_PACKAGES)
        for p in BACKEND_DIR.rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"GUI imports in backend/: {offenders}"


def test_static_check_detects_a_gui_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from qtpy.QtWidgets import QWidget\n")
    assert _imported_roots(bad) & GUI_PACKAGES == {"qtpy"}


def _modules_loaded_after_import(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({k.split('.')[0] for k in sys.modules})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(out))


def test_importing_every_backend_module_loads_no_gui_package():
    modules = [
        m.name for m in pkgutil.walk_packages(em_restore.backend.__path__, "em_restore.backend.")
    ]
    loaded = _modules_loaded_after_import(["em_restore.backend", *modules])
    assert not loaded & GUI_PACKAGES


def test_package_and_io_import_light():
    # The CLI's `info` must start fast: neither torch nor napari at import time.
    loaded = _modules_loaded_after_import(["em_restore", "em_restore.io", "em_restore.cli"])
    assert not loaded & (GUI_PACKAGES | {"torch"})
