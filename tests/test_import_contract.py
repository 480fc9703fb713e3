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


# --------------------------------------------------------------------------- import graph
# Every import between em_restore's own modules, function-level ones included, is an edge.
# The graph has no cycle, and edges between groups of modules follow ALLOWED: imports flow
# from the front ends down to the algorithms, never back up.

SRC = Path(em_restore.__file__).parent.parent

#: group of a module: the first rule whose prefix matches (longer prefixes first).
GROUPS = [
    ("em_restore._napari", "napari"),
    ("em_restore.cli", "cli"),
    ("em_restore.io", "io"),
    ("em_restore.samples", "io"),
    ("em_restore.backend.simulate", "simulate"),
    ("em_restore.backend.models", "models"),
    ("em_restore.backend.deconvolve", "pipelines"),
    ("em_restore.backend.burst", "pipelines"),
    ("em_restore.backend.live", "pipelines"),  # live.py and live_sources.py
    ("em_restore.backend.stream", "pipelines"),
    ("em_restore.backend._args", "base"),
    ("em_restore.backend._progress", "base"),
    ("em_restore.backend.spline", "base"),
    ("em_restore.backend.metrics", "base"),
    ("em_restore.backend", "algorithms"),  # the package itself is a facade: see below
    ("em_restore._atomic", "base"),
    ("em_restore", "base"),
]

#: which groups each group may import (besides itself).
ALLOWED = {
    "base": set(),
    "algorithms": {"base"},
    "simulate": {"base", "algorithms"},
    "models": {"base", "algorithms", "simulate", "io"},
    "pipelines": {"base", "algorithms", "simulate", "models", "io"},
    "io": {"base"},  # readers and writers sit below the compute: they import no backend
    "cli": {"base", "algorithms", "simulate", "models", "pipelines", "io"},
    "napari": {"base", "algorithms", "simulate", "models", "pipelines", "io", "cli"},
}

#: private (underscore) names that one module may still take from another: at most 5.
PRIVATE_ALLOWED: set[tuple[str, str, str]] = set()


def _sibling(module: str, prefix: str) -> bool:
    # "em_restore.backend.live" also names live_sources.py.
    return module.startswith(prefix) and module[len(prefix) :].startswith("_")


def _group(module: str) -> str:
    if module == "em_restore.backend":
        return "pipelines"  # backend/__init__ re-exports the public API of everything
    for prefix, group in GROUPS:
        if module == prefix or module.startswith(prefix + ".") or _sibling(module, prefix):
            return group
    raise AssertionError(f"{module} has no group in GROUPS")


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for p in (SRC / "em_restore").rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return mods


def _import_graph():
    """(edges, private): module -> imported modules; (importer, module, name) of _names."""
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private = set()
    for name, (path, is_pkg) in mods.items():
        package = name if is_pkg else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                if not module.startswith("em_restore"):
                    continue
                for alias in node.names:
                    full = f"{module}.{alias.name}"
                    target = full if full in mods else module
                    if target != name and not target.startswith(name + "."):
                        edges[name].add(target)
                    private_name = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private_name and full not in mods and target != name:
                        private.add((name, module, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("em_restore") and alias.name != name:
                        edges[name].add(alias.name)
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in edges:
                    continue
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def _package_edges_removed(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    # A package's __init__ importing its own submodules is not a cycle with them.
    return {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}


def test_no_import_cycle():
    edges = _package_edges_removed(_import_graph()[0])
    assert _cycles(edges) == []


def test_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_between_groups_follow_the_table():
    edges = _import_graph()[0]
    bad = sorted(
        f"{m} ({_group(m)}) -> {t} ({_group(t)})"
        for m, targets in edges.items()
        for t in targets
        if _group(t) != _group(m) and _group(t) not in ALLOWED[_group(m)]
    )
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_private_names_stay_in_their_module():
    private = _import_graph()[1]
    assert len(PRIVATE_ALLOWED) <= 5
    assert private <= PRIVATE_ALLOWED, sorted(private - PRIVATE_ALLOWED)
