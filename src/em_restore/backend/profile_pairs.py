"""Pair resolution on a line profile: are two neighbouring particles resolved?

:func:`pair_resolution`: two particles fitted apart (by :func:`.analyse_profile`),
and a dip between them that the profile's noise does not explain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._args import check_real, short
from .profile_fit import ProfileAnalysis, analyse_profile
from .profile_line import LineProfile

__all__ = ["PairResolution", "pair_resolution"]


#: Variance factor of a mean of consecutive profile samples: linear interpolation
#: correlates neighbouring samples (lag-1 correlation up to 0.5), so n samples
#: average like n / 2 independent ones at worst.
_INTERP_VARIANCE = 2.0


@dataclass(frozen=True)
class PairResolution:
    """Whether two neighbouring particles are resolved on a profile, and why.

    ``first`` and ``second`` index ``analysis.particles`` (``None`` when not
    found); ``distance`` and ``gap`` are the fitted ones; ``dip`` is the depth of
    the dip between the two maxima (intensity units, on the data) and
    ``dip_sigma`` its standard error; ``reason`` says which condition decided.
    """

    resolved: bool
    first: int | None
    second: int | None
    distance: float | None
    gap: float | None
    dip: float | None
    dip_sigma: float | None
    reason: str

    @property
    def significance(self) -> float | None:
        """``dip / dip_sigma`` (``inf`` on a noise-free profile)."""
        if self.dip is None or self.dip_sigma is None:
            return None
        return self.dip / self.dip_sigma if self.dip_sigma > 0 else math.inf


def _matched(analysis: ProfileAnalysis, centers) -> tuple[int | None, int | None, str]:
    """Indices of the fitted particles nearest the expected centres, or the first
    fitted pair when no centres are given."""
    parts = analysis.particles
    if centers is None:
        if not analysis.pairs:
            n = len(parts)
            return None, None, f"{n} particle{'s' * (n != 1)} fitted, no neighbouring pair"
        return analysis.pairs[0].first, analysis.pairs[0].second, ""
    if not parts:
        return None, None, "no particle fitted"
    c1, c2 = sorted(centers)
    i, j = (min(range(len(parts)), key=lambda k: abs(parts[k].center - c)) for c in (c1, c2))
    if i == j:
        return i, j, "merged: one particle fitted over both"
    reach = 0.5 * (c2 - c1)
    if abs(parts[i].center - c1) > reach or abs(parts[j].center - c2) > reach:
        return i, j, "a particle of the pair was not found"
    return i, j, ""


def _window_mean(x, dev, centre: float, half: float) -> tuple[float, int]:
    sel = np.abs(x - centre) <= half + 1e-9 * max(1.0, abs(half))
    if not sel.any():
        sel = np.abs(x - centre) == np.abs(x - centre).min()
    return float(dev[sel].mean()), int(sel.sum())


def pair_resolution(
    profile: LineProfile,
    centers=None,
    *,
    analysis: ProfileAnalysis | None = None,
    z: float = 3.0,
    tolerance: float | None = None,
) -> PairResolution:
    """Are two neighbouring particles resolved on this profile? (a testable Rayleigh rule)

    A pair is **resolved** when all of these hold:

    1. the fit finds two separate particles, one near each expected centre
       (within half the expected distance), not one particle over both;
    2. their fitted surfaces do not overlap, ``distance > (d1 + d2) / 2`` (the
       low-dose TEM paper's criterion);
    3. the profile itself dips between the two maxima, significantly: with ``P``
       the mean deviation from the background over the central quarter-radius of
       the weaker particle and ``S`` the mean over the fitted gap (at least one
       step either side of its middle), the dip ``D = P - S`` exceeds ``z`` times
       its standard error ``sqrt(2 σ² (1/n_P + 1/n_S))``. ``σ`` is the profile's
       noise per sample (:attr:`ProfileAnalysis.noise`: averaged across the
       line's width already) and the factor 2 allows for the correlation that
       interpolation puts between neighbouring samples. On noise-free data any
       dip counts; on noisy data a shallow dip is not told from noise;
    4. with ``tolerance``, the fitted centre distance is within ``tolerance`` of
       the expected one (a restoration that draws the dip in the wrong place
       does not resolve the pair).

    Parameters
    ----------
    profile : LineProfile
        A line through both particles, starting and ending on the background.
    centers : (float, float), optional
        Expected centres of the two particles along the profile (its unit), e.g.
        from a reference image. Default: the first pair of neighbours fitted.
    analysis : ProfileAnalysis, optional
        :func:`analyse_profile` of ``profile``, if already computed.
    z : float
        Significance of the dip, in standard errors (3: a false "resolved" on
        about one pure-noise profile in 700).
    tolerance : float, optional
        Largest accepted error of the fitted centre distance (profile unit);
        needs ``centers``.

    Returns
    -------
    PairResolution

    Examples
    --------
    >>> from em_restore.backend.profile_fit import sphere_profile
    >>> x = np.arange(0.0, 100.0, 1.0)
    >>> def pair(gap):
    ...     return sphere_profile(x, centers=[35.0, 35.0 + 20.0 + gap], radii=[10.0, 10.0],
    ...                           amplitudes=[0.02, 0.02], background=1.0, saturation=1.0,
    ...                           sigma=1.0, appearance="dark")
    >>> pair_resolution(LineProfile(x, pair(3.0)), (35.0, 58.0)).resolved
    True
    >>> pair_resolution(LineProfile(x, pair(-3.0)), (35.0, 52.0)).reason
    'fitted spheres overlap'
    """
    z = check_real(z, "z", low=0)
    if tolerance is not None:
        if centers is None:
            raise ValueError(
                "tolerance needs the expected centres; pass centers=(c1, c2) or drop tolerance."
            )
        tolerance = check_real(tolerance, "tolerance", low=0)
    if centers is not None:
        try:
            c = [float(v) for v in centers]
        except (TypeError, ValueError):
            c = []
        if len(c) != 2 or not all(map(math.isfinite, c)) or c[0] == c[1]:
            raise ValueError(
                f"centers must be two different finite positions along the profile; got "
                f"{short(centers)}. Pass e.g. centers=(35.0, 58.0)."
            )
        centers = c
    if analysis is None:
        analysis = analyse_profile(profile)
    i, j, why = _matched(analysis, centers)
    if why:
        return PairResolution(False, i, j, None, None, None, None, why)
    p1, p2 = sorted((analysis.particles[i], analysis.particles[j]), key=lambda p: p.center)
    distance = p2.center - p1.center
    gap = distance - 0.5 * (p1.diameter + p2.diameter)
    out = {"first": i, "second": j, "distance": distance, "gap": gap}
    if gap <= 0:
        return PairResolution(
            False, **out, dip=None, dip_sigma=None, reason="fitted spheres overlap"
        )
    sign = 1.0 if p1.appearance == "bright" else -1.0
    x, dev = profile.positions, sign * (profile.values - analysis.background)
    step = profile.step
    peaks = [_window_mean(x, dev, p.center, max(step, p.diameter / 8)) for p in (p1, p2)]
    peak, n_peak = min(peaks)
    middle = 0.5 * (p1.center + p1.diameter / 2 + p2.center - p2.diameter / 2)
    saddle, n_saddle = _window_mean(x, dev, middle, max(step, gap / 2))
    dip = peak - saddle
    sigma = math.sqrt(_INTERP_VARIANCE * analysis.noise**2 * (1 / n_peak + 1 / n_saddle))
    out |= {"dip": dip, "dip_sigma": sigma}
    if dip <= 0 or dip < z * sigma:
        return PairResolution(False, **out, reason=f"dip {dip:.3g} under {z:g} x {sigma:.3g}")
    if tolerance is not None:
        err = distance - abs(centers[1] - centers[0])
        if abs(err) > tolerance:
            return PairResolution(
                False, **out, reason=f"distance off by {err:+.3g} (tolerance {tolerance:g})"
            )
    return PairResolution(True, **out, reason=f"dip {dip / sigma if sigma else math.inf:.3g} sigma")
