"""Degradations of a clean specimen into a recorded EM image, each a seeded function.

The facade of :mod:`.recording` (each term: shot noise, detector, ADC, defects, scan
noise, blur) and :mod:`.acquisition` (the whole recording: ``AcquisitionConfig``,
presets, ``simulate_acquisition``), keeping their public names in one place. Units
and conventions are in :mod:`.recording`; formulas in ``docs/simulator.md``.
"""

from __future__ import annotations

from . import acquisition, recording
from .acquisition import *  # noqa: F403
from .recording import *  # noqa: F403

__all__ = [*acquisition.__all__, *recording.__all__]
