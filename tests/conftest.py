"""What the tests share: PSNR against a known truth, waiting for a widget's job, and
seeded images.

Test modules import the plain helpers (``from tests.conftest import range_psnr``);
the fixtures (``wait``, ``rng``) come by name as pytest fixtures do.
"""

from __future__ import annotations

import numpy as np
import pytest


def range_psnr(x, truth) -> float:
    """PSNR (dB) of ``x`` against ``truth``, the truth's own range as the peak."""
    x, truth = np.asarray(x, np.float64), np.asarray(truth, np.float64)
    return float(10 * np.log10(np.ptp(truth) ** 2 / np.mean((x - truth) ** 2)))


def wait_for(qtbot, job, timeout: int = 120_000) -> None:
    """Let the Qt loop run until a widget's background job has finished."""
    qtbot.waitUntil(lambda: not job.running, timeout=timeout)


@pytest.fixture
def wait(qtbot):
    """``wait(job, timeout=120_000)``: :func:`wait_for` on this test's ``qtbot``."""
    return lambda job, timeout=120_000: wait_for(qtbot, job, timeout)


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded by the test's name: the same draws on every run."""
    return np.random.default_rng(list(request.node.name.encode()))


def seeded_specimen(shape=(96, 96), seed: int = 0, kinds=("nanoparticles",)):
    """A clean simulated specimen (fraction of the dose reaching the detector)."""
    from em_restore.backend import simulate as sim

    return sim.random_specimen(shape, rng=np.random.default_rng(seed), kinds=kinds)[0]
