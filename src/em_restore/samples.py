"""Locate the bundled sample data (simulated, with ground truth).

The files live in the repository's top-level ``sample_data/`` folder; the
wheel carries them as ``em_restore/sample_data``. ``scripts/make_sample_data.py``
regenerates them from the simulator.
"""

from __future__ import annotations

import os
from pathlib import Path

_ENV = "EM_RESTORE_SAMPLE_DATA"


def sample_data_dir() -> Path:
    """The folder holding the sample files (``$EM_RESTORE_SAMPLE_DATA`` wins)."""
    candidates = []
    if os.environ.get(_ENV):
        candidates.append(Path(os.environ[_ENV]))
    here = Path(__file__).resolve().parent
    candidates += [here / "sample_data", here.parents[1] / "sample_data"]
    for folder in candidates:
        if (folder / "README.md").is_file():
            return folder
    raise FileNotFoundError(
        "the bundled sample data was not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); reinstall napari-em-restore or set "
        + _ENV
    )


def sample_path(name: str) -> Path:
    """Path of one bundled sample file, e.g. ``sample_path("vesicles_noisy.tif")``."""
    path = sample_data_dir() / name
    if not path.is_file():
        raise FileNotFoundError(
            f"sample file {name!r} is missing from {path.parent}; "
            "run scripts/make_sample_data.py to regenerate the sample data"
        )
    return path
