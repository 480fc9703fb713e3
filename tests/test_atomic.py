"""Outputs are atomic: a failed or interrupted write never leaves a file looking complete.

Every writer goes through a temporary name beside the target and a rename
(``em_restore._atomic``); these tests break each one in the middle and check that
the target is either absent or still the old, complete file, and that no
temporary file is left behind.
"""

from __future__ import annotations

import numpy as np
import pytest

from em_restore import io
from em_restore._atomic import atomic_path, write_text_atomic
from em_restore.backend import denoise as backend
from em_restore.cli import main


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_path_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old, complete\n")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("new, half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old, complete\n" and _names(tmp_path) == ["table.csv"]
    write_text_atomic(target, "new, complete\n")
    assert target.read_text() == "new, complete\n" and _names(tmp_path) == ["table.csv"]


@pytest.fixture
def stack_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "in" / "stack.tif"
    path.parent.mkdir()
    io.write_tiff(path, rng.poisson(20, (6, 48, 48)).astype(np.uint16), axes="tyx")
    return path


def _interrupt_after(monkeypatch, frames: int, exc: type[BaseException]):
    """Make the denoiser raise ``exc`` after ``frames`` frames (Ctrl-C or a crash)."""
    real = backend.apply_plan
    calls = []

    def flaky(image2d, plan, **kw):
        calls.append(1)
        if len(calls) > frames:
            raise exc("stopped mid-run")
        return real(image2d, plan, **kw)

    monkeypatch.setattr(backend, "apply_plan", flaky)


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_cli_run_stopped_mid_stack_leaves_no_output(stack_file, tmp_path, monkeypatch, exc, suffix):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / f"stack_denoised{suffix}"
    _interrupt_after(monkeypatch, 3, exc)
    if exc is KeyboardInterrupt:
        assert (
            main(["denoise", str(stack_file), "--method", "gaussian", "-o", str(out), "-q"]) == 130
        )
    else:
        with pytest.raises(RuntimeError, match="mid-run"):
            main(["denoise", str(stack_file), "--method", "gaussian", "-o", str(out), "-q"])
    assert _names(out_dir) == []  # nothing, not a half-written stack


def test_cli_failed_overwrite_keeps_the_previous_output(stack_file, tmp_path, monkeypatch):
    out = tmp_path / "stack_denoised.tif"
    assert main(["denoise", str(stack_file), "--method", "gaussian", "-o", str(out), "-q"]) == 0
    before = out.read_bytes()
    _interrupt_after(monkeypatch, 2, KeyboardInterrupt)
    args = ["denoise", str(stack_file), "--method", "median", "-o", str(out), "--overwrite", "-q"]
    assert main(args) == 130
    assert out.read_bytes() == before  # still the complete first result
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_never_writes_over_its_input_even_with_overwrite(stack_file, capsys):
    before = stack_file.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert main(["denoise", str(stack_file), "-o", str(stack_file), "-q", *extra]) != 0
        err = capsys.readouterr().err.strip()
        assert "input" in err and len(err.splitlines()) == 1
    assert stack_file.read_bytes() == before


def test_failed_model_save_leaves_the_previous_model(tmp_path, monkeypatch):
    from em_restore.backend.models import default_model_name, load_model, save_model, store

    bundled = load_model(default_model_name())
    folder = save_model(tmp_path / "copy", bundled.net, bundled.config)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    first = load_model(folder).sha256

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(store, "file_sha256", broken)  # after the weights, before the config
    with pytest.raises(OSError, match="disk full"):
        save_model(folder, bundled.net, bundled.config, overwrite=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    monkeypatch.undo()
    assert load_model(folder).sha256 == first  # still complete and loadable


def test_profile_export_is_atomic(tmp_path, monkeypatch):
    import em_restore._napari.profile_widget as pw

    target = tmp_path / "sizes.csv"
    target.write_text("layer,item\nold,complete\n")

    class Widget:
        table_rows = staticmethod(lambda: [{"layer": "a", "item": "particle 0"}])

    def fail_rename(*_a):
        raise OSError("read-only")

    monkeypatch.setattr("os.replace", fail_rename)
    with pytest.raises(OSError, match="read-only"):
        pw.ProfileWidget.export_csv(Widget(), str(target))
    monkeypatch.undo()
    assert target.read_text() == "layer,item\nold,complete\n" and _names(tmp_path) == ["sizes.csv"]
    pw.ProfileWidget.export_csv(Widget(), str(target))
    assert target.read_text().splitlines()[1].startswith("a,particle 0")
