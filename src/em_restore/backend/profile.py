"""Line profiles and particle sizing on them (the low-dose TEM paper's measurement).

The low-dose TEM paper shows that a restoration is faithful by measuring
particles on line profiles: the diameter of a particle in the restored image
against the high-dose one, the *edge width* (pseudo-diameter where the profile
meets the background, minus the fitted diameter) and, for two neighbours, the
distance ``l`` between their centres and whether ``(d1 + d2) / 2 < l`` (they are
resolved). This module is that measurement, headless:

* :func:`sample_profile` samples a line or polyline with sub-pixel (linear or
  cubic) interpolation, averaging across a width of ``width`` pixels, with
  positions in the image's physical unit (from the pixel size);
* :func:`analyse_profile` finds the background and the noise, detects the
  particles, and fits each group of neighbouring particles with a **projected
  sphere** model, then measures FWHM, edge width and the pair criterion;
* :func:`pair_resolution` decides whether two neighbours are resolved: two
  particles fitted apart, and a dip between them that noise does not explain;
* :func:`sphere_profile` is the model itself (public so that benchmarks and
  tests can build exact profiles with known answers).

The model
---------
A sphere of radius ``R`` centred at ``c`` on the line projects to the chord
thickness ``t(x, o) = 2 sqrt(R² - (x - c)² - o²)`` at perpendicular offset ``o``.
Particles combine as a weighted thickness ``T = Σ a_i t_i`` and the intensity is
``b + s (1 - exp(-k T)) / k`` (``s = -1`` for particles darker than the
background, ``+1`` for brighter ones; ``k -> 0`` is linear). This one family
covers mass-thickness bright-field TEM (``b exp(-μ t)``: ``k = 1/b``,
``a = b μ``) and HAADF-like linear contrast (``k = 0``), with any offset. The
optical blur is an isotropic Gaussian of standard deviation ``σ`` applied to
the 2-D intensity: exactly, as a Gaussian average over perpendicular offsets
(Gauss–Hermite nodes) followed by a 1-D Gaussian along the line; the averaging
across the line's width is part of the same offset average. Diameters are
therefore not biased by blur or width; ``σ`` is fitted.

Edge width
----------
As in the paper: the *pseudo-diameter*, the distance between the two points
where the particle's profile meets the background, minus the fitted diameter.
Both points are read on the particle's own **fitted** profile (its sphere with
the fitted blur, without its neighbours), where it falls to ``edge_fraction``
(default 5 %) of its peak contrast: noise does not move them, and a touching
neighbour does not hide the background on one side. FWHM is read on the same
curve.

Examples
--------
>>> import numpy as np
>>> x = np.arange(0.0, 60.0, 0.5)
>>> y = sphere_profile(x, centers=[30.0], radii=[10.0], amplitudes=[0.02], background=1.0)
>>> res = analyse_profile(LineProfile(x, y, unit="nm"))
>>> round(res.particles[0].diameter, 3), res.particles[0].appearance
(20.0, 'bright')

Where each part lives: :mod:`.profile_line` (sampling), :mod:`.profile_fit` (the
model and the sizing), :mod:`.profile_pairs` (pair resolution); this module
re-exports them and holds :func:`measure_line`.
"""

from __future__ import annotations

from .profile_fit import (
    PairMeasurement,
    ParticleMeasurement,
    ProfileAnalysis,
    analyse_profile,
    sphere_profile,
)
from .profile_line import LineProfile, length_unit, sample_profile
from .profile_pairs import PairResolution, pair_resolution

__all__ = [
    "LineProfile",
    "PairMeasurement",
    "PairResolution",
    "ParticleMeasurement",
    "ProfileAnalysis",
    "analyse_profile",
    "length_unit",
    "measure_line",
    "pair_resolution",
    "sample_profile",
    "sphere_profile",
]


def measure_line(
    image, points, *, appearance: str = "auto", **sampling
) -> tuple[LineProfile, ProfileAnalysis]:
    """:func:`sample_profile` (``sampling``: its ``width``, ``scale``, ``unit``, ``step``,
    ``order``) then :func:`analyse_profile` (the CLI's and widget's call)."""
    prof = sample_profile(image, points, **sampling)
    return prof, analyse_profile(prof, appearance=appearance)
