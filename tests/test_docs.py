"""The user guide's screenshots: every image exists and is used, every widget page shows
its widget, and ``scripts/screenshot.py`` still takes a real one from napari."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
IMAGES = DOCS / "images"
SCRIPT = ROOT / "scripts" / "screenshot.py"
MAX_IMAGE_BYTES = 500 * 1024  # docs/images is shipped in git

#: widget -> (its user-guide page, its screenshot); Compare is a section of profile.md
WIDGET_PAGES = {
    "denoise": ("denoise.md", "napari_denoise_widget.png"),
    "deconvolve": ("deconvolve.md", "napari_deconvolve_widget.png"),
    "burst": ("burst.md", "napari_burst_widget.png"),
    "profile": ("profile.md", "napari_profile_widget.png"),
    "compare": ("profile.md", "napari_compare_widget.png"),
    "training": ("training.md", "napari_train_widget.png"),
}

_MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_IMAGE = re.compile(r"<img\b[^>]*\bsrc=[\"']([^\"']+)[\"']", re.IGNORECASE)


def _pages() -> list[Path]:
    return [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]


def _images(page: Path) -> list[str]:
    """The local image targets of a Markdown page, as written."""
    text = page.read_text(encoding="utf-8")
    targets = _MARKDOWN_IMAGE.findall(text) + _HTML_IMAGE.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def _resolved(page: Path, target: str) -> Path:
    return (page.parent / target.split("#")[0]).resolve()


def test_every_referenced_image_exists():
    missing = [
        f"{page.relative_to(ROOT)}: {target}"
        for page in _pages()
        for target in _images(page)
        if not _resolved(page, target).is_file()
    ]
    assert not missing, f"images referenced but not found: {missing}"


@pytest.mark.parametrize("widget", sorted(WIDGET_PAGES))
def test_each_widget_page_embeds_its_screenshot(widget):
    page_name, image = WIDGET_PAGES[widget]
    page = DOCS / page_name
    targets = _images(page)
    assert any(t.startswith("images/") for t in targets), f"{page_name} has no screenshot"
    assert f"images/{image}" in targets, f"{page_name} does not embed images/{image}"
    assert "scripts/screenshot.py" in page.read_text(encoding="utf-8")


def test_every_image_is_used_and_small():
    used = {_resolved(page, t) for page in _pages() for t in _images(page)}
    files = sorted(p for p in IMAGES.iterdir() if p.is_file())
    assert files, "docs/images is empty"
    unused = [p.name for p in files if p.resolve() not in used]
    assert not unused, f"docs/images files no page references: {unused}"
    sizes = {p.name: p.stat().st_size for p in files}
    big = {name: f"{size // 1024} kB" for name, size in sizes.items() if size > MAX_IMAGE_BYTES}
    assert not big, f"screenshots over {MAX_IMAGE_BYTES // 1024} kB: {big}"


def test_every_screenshot_of_the_script_is_in_the_docs():
    """The script's output names are the files the pages show (no stale name on either side)."""
    written = set(re.findall(r"\"(napari_\w+\.png)\"", SCRIPT.read_text(encoding="utf-8")))
    on_disk = {p.name for p in IMAGES.glob("*.png")}
    assert written == on_disk


@pytest.mark.gui
@pytest.mark.skipif(
    not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")),
    reason="needs a display (the suite runs under xvfb-run, scripts/test.sh)",
)
def test_screenshot_script_takes_a_real_shot(tmp_path):
    import imageio.v3 as iio

    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--only", "compare"],
        cwd=ROOT,
        env=dict(os.environ),  # the suite's DISPLAY and QT_QPA_PLATFORM
        capture_output=True,
        text=True,
        timeout=180,
    )
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["napari_compare_widget.png"]
    pixels = np.asarray(iio.imread(tmp_path / "napari_compare_widget.png"))
    assert pixels.ndim == 3 and pixels.shape[0] >= 600 and pixels.shape[1] >= 1000
    grey = pixels[..., :3].astype(float).mean(axis=-1)
    assert grey.std() > 10, "the screenshot is blank"
    assert len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0)) > 50  # images, not flat UI
    assert seconds < 120, f"the screenshot took {seconds:.0f} s"


def test_screenshot_script_refuses_an_unknown_shot():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "unknown shot" in proc.stderr


def test_every_docs_page_is_in_the_mkdocs_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = [p.relative_to(DOCS).as_posix() for p in sorted(DOCS.rglob("*.md"))]
    missing = [page for page in pages if f" {page}" not in nav]
    assert not missing, f"docs pages not in the mkdocs.yml nav: {missing}"
