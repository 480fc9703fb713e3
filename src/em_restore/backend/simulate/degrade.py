"""Degradations of a clean specimen into a recorded EM image, each a seeded function.

Units: ``image`` values of a clean specimen are the *fraction of the incident dose
reaching the detector* (1.0 = vacuum / full beam); ``dose`` is in electrons per
pixel (e⁻/px); detector output is in ADU (analogue-to-digital units). See
``docs/simulator.md`` for the formulas.

All functions take the image first, accept any leading axes ``(..., rows, cols)``
unless stated, never modify their input and return new float64 arrays (integers
from :func:`quantize`). ``rng`` accepts ``None``, an int seed or a
:class:`numpy.random.Generator`.

The terms live in :mod:`.recording`, the whole recording in :mod:`.acquisition`;
this module keeps their public names in one place.
"""

from __future__ import annotations

from .acquisition import (
    PRESETS,
    AcquisitionConfig,
    random_acquisition_config,
    simulate_acquisition,
)
from .recording import (
    blur,
    correlated_noise,
    dead_pixels,
    detector,
    line_noise,
    poisson_dose,
    quantize,
    scan_jitter,
    xray_spikes,
)

__all__ = [
    "PRESETS",
    "AcquisitionConfig",
    "blur",
    "correlated_noise",
    "dead_pixels",
    "detector",
    "line_noise",
    "poisson_dose",
    "quantize",
    "random_acquisition_config",
    "scan_jitter",
    "simulate_acquisition",
    "xray_spikes",
]
