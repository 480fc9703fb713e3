"""Wide simulator: random specimen x random distortion pipeline, raw and target pairs.

Training data for the shipped restoration networks. A pair is drawn in two steps:

1. :func:`plan_pair` draws the modality, a specimen family at mesoscale or atomic
   scale, the distortion families and every parameter, and computes the
   deterministic *signal* chain (contrast, blur, scan geometry, charging,
   non-linear response, MTF / afterglow of the mean, dark level);
2. :func:`render_pair` draws the *noise and defects* and converts both the raw
   image and its noise-free expectation to the same ADU units.

:func:`wide_pair` does both with one generator. Rendering one plan with many
generators gives raw images whose mean converges to the target (away from
clipping and defects); changing the plan's ADU gain and offset maps raw and
target by the same affine map. See ``docs/simulator.md``, "Wide simulator".

Examples
--------
>>> raw, target, info = wide_pair(np.random.default_rng(0), (64, 64))
>>> raw.shape, target.dtype, info.modality in MODALITIES
((64, 64), dtype('float32'), True)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from .. import psf as _psf
from .._args import as_rng, check_choice, check_shape
from . import distortions as dist
from .atomic import ATOMIC_FAMILIES, atomic_specimen
from .mesoscale import MESO_FAMILIES, SUPPORTS, add_support, loguniform, meso_specimen

__all__ = [
    "APPLIES",
    "DISTORTION_FAMILIES",
    "HELD_OUT",
    "MODALITIES",
    "SIGNAL_FAMILIES",
    "SPECIMEN_FAMILIES",
    "WideInfo",
    "WidePlan",
    "plan_pair",
    "render_pair",
    "training_families",
    "wide_pair",
]

MODALITIES = ("tem", "stem", "sem")
_SCAN = ("stem", "sem")
SPECIMEN_FAMILIES: tuple[str, ...] = (*MESO_FAMILIES, *ATOMIC_FAMILIES)

#: distortion family -> the modalities it applies to
APPLIES: dict[str, tuple[str, ...]] = {
    "optics_blur": ("tem",),
    "counting": ("tem",),
    "integrating": ("tem",),
    "detector_mtf": ("tem",),
    "fixed_pattern": ("tem",),
    "dead_pixels": ("tem",),
    "dead_columns": ("tem",),
    "xray_hits": ("tem",),
    "probe_blur": _SCAN,
    "slow_scan_drift": _SCAN,
    "line_jitter": _SCAN,
    "x_jumps": _SCAN,
    "flyback": _SCAN,
    "afterglow": _SCAN,
    "fast_scan_noise": _SCAN,
    "row_offset_gain": _SCAN,
    "black_pixels": _SCAN,
    "zero_lines": _SCAN,
    "charging": ("sem",),
    "nonlinear_response": MODALITIES,
    "dark_noise": MODALITIES,
    "readout_noise": MODALITIES,
    "saturation": MODALITIES,
    "quantisation": MODALITIES,
}
DISTORTION_FAMILIES: tuple[str, ...] = tuple(APPLIES)
_DETECTORS = ("counting", "integrating")

#: families kept in the training target (deterministic, part of what the image shows)
SIGNAL_FAMILIES = frozenset(
    {
        "optics_blur",
        "probe_blur",
        "detector_mtf",
        "slow_scan_drift",
        "line_jitter",
        "x_jumps",
        "flyback",
        "afterglow",
        "charging",
        "nonlinear_response",
        "saturation",
    }
)

#: probability that a family is in a pipeline when the caller does not list families
_PROBABILITY = {
    "optics_blur": 0.75,
    "probe_blur": 0.8,
    "detector_mtf": 0.6,
    "fixed_pattern": 0.4,
    "dead_pixels": 0.35,
    "dead_columns": 0.2,
    "xray_hits": 0.4,
    "slow_scan_drift": 0.5,
    "line_jitter": 0.5,
    "x_jumps": 0.25,
    "flyback": 0.35,
    "afterglow": 0.4,
    "fast_scan_noise": 0.6,
    "row_offset_gain": 0.5,
    "black_pixels": 0.2,
    "zero_lines": 0.15,
    "charging": 0.35,
    "nonlinear_response": 0.3,
    "dark_noise": 0.4,
    "readout_noise": 0.7,
    "saturation": 0.25,
    "quantisation": 0.3,
}

HELD_OUT: dict[str, tuple[str, ...]] = {
    "specimens": ("gratings", "voronoi", "fibres", "honeycomb", "grain_boundary"),
    "distortions": ("afterglow", "charging", "x_jumps", "dead_columns"),
}

_DTYPES = {"uint8": 255.0, "uint16": 65535.0, "float32": math.inf}


@dataclass(frozen=True)
class WideInfo:
    """What a wide pair is made of: modality, scale (``"meso"`` or ``"atomic"``),
    specimen family, the distortion families applied (in pipeline order), incident
    dose (e⁻/px, or detected SE per pixel for SEM), output dtype and every drawn
    parameter (``params``; ADU gain and offset under ``"gain_adu"``, ``"offset_adu"``)."""

    modality: str
    scale: str
    specimen: str
    distortions: tuple[str, ...]
    dose: float
    dtype: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class WidePlan:
    """A drawn pair before its noise: clean specimen, the signal chain and its info.

    ``rate`` is the mean detected rate λ (e⁻/px) entering the detector, ``response``
    the non-linear gain ``r(λ)`` (or None), ``expected`` the noise-free detected
    signal in electrons after the detector filters and dark level.
    """

    specimen: np.ndarray
    rate: np.ndarray
    response: np.ndarray | None
    expected: np.ndarray
    info: WideInfo

    def replace_params(self, **changes) -> WidePlan:
        """The same plan with some ``info.params`` replaced (e.g. ``gain_adu``)."""
        unknown = sorted(set(changes) - set(self.info.params))
        if unknown:
            raise ValueError(
                f"unknown params {unknown}; allowed: {sorted(self.info.params)}. "
                "Replace only parameters the plan already has."
            )
        info = dataclasses.replace(self.info, params={**self.info.params, **changes})
        return dataclasses.replace(self, info=info)


# --------------------------------------------------------------------------- choice


def _scale(family: str) -> str:
    return "meso" if family in MESO_FAMILIES else "atomic"


def specimen_modalities(family: str) -> tuple[str, ...]:
    """The modalities a specimen family is imaged in (SEM: mesoscale only; HRTEM: TEM)."""
    if family == "hrtem":
        return ("tem",)
    return MODALITIES if family in MESO_FAMILIES else ("tem", "stem")


def _resolve(names, exclude, universe: tuple[str, ...], what: str) -> tuple[str, ...]:
    for label, group in ((what, names or ()), (f"exclude_{what}", exclude)):
        bad = sorted(set(group) - set(universe))
        if bad:
            raise ValueError(
                f"{label} has unknown families {bad}; allowed: {list(universe)}. "
                "Use wide.SPECIMEN_FAMILIES / wide.DISTORTION_FAMILIES."
            )
    chosen = universe if names is None else tuple(n for n in universe if n in set(names))
    return tuple(n for n in chosen if n not in set(exclude))


def _feasible(modality: str, specimens, distortions) -> bool:
    if not any(modality in specimen_modalities(s) for s in specimens):
        return False
    return modality != "tem" or any(d in distortions for d in _DETECTORS)


def _choose(rng, options):
    return options[int(rng.integers(len(options)))]


def _pick_distortions(rng, modality, allowed, forced: bool) -> tuple[str, ...]:
    fams = [f for f in allowed if modality in APPLIES[f] and f not in _DETECTORS]
    if not forced:
        fams = [f for f in fams if rng.random() < _PROBABILITY[f]]
    if modality == "tem":
        fams.insert(0, _choose(rng, [d for d in _DETECTORS if d in allowed]))
    return tuple(fams)


# --------------------------------------------------------------------------- draws


def _contrast_params(rng, modality: str, family: str) -> dict:
    if family == "hrtem":
        mode = "direct"
    elif modality == "sem":
        mode = _choose(rng, ("topographic", "dark"))
    else:
        bright = 0.65 if modality == "tem" else 0.4
        u = rng.random()
        mode = "bright_exp" if u < bright * 0.7 else "bright_linear" if u < bright else "dark"
    if mode == "bright_exp":
        strength, bg = loguniform(rng, 0.1, 3.0), rng.uniform(0.5, 1.0)
    elif mode == "bright_linear":
        strength, bg = rng.uniform(0.1, 0.95), rng.uniform(0.5, 1.0)
    elif mode == "direct":
        strength, bg = 1.0, rng.uniform(0.5, 1.0)
    else:
        strength, bg = rng.uniform(0.2, 1.0), loguniform(rng, 0.005, 0.3)
    return {"contrast": mode, "contrast_strength": strength, "contrast_background": bg}


def _blur_kernel(rng, kind: str) -> tuple[np.ndarray, dict]:
    if kind == "optics_blur":
        u = rng.random()
        if u < 0.6:
            s = loguniform(rng, 0.3, 3.0)
            return _psf.gaussian_psf(s), {"optics_blur": "gaussian", "optics_sigma_px": s}
        if u < 0.85:
            r = rng.uniform(0.7, 4.0)
            return _psf.disk_psf(r), {"optics_blur": "disk", "optics_radius_px": r}
        n, a = rng.uniform(1.0, 8.0), rng.uniform(0, 180)
        return _psf.motion_psf(n, a), {"optics_blur": "motion", "optics_length_px": n}
    core = loguniform(rng, 0.3, 3.0) if kind == "probe_blur" else loguniform(rng, 0.4, 2.0)
    tail_w = rng.uniform(0.05, 0.3) if rng.random() < 0.4 else 0.0
    tail_s = core * rng.uniform(3.0, 8.0)
    k = _psf.gaussian_psf(core, size=2 * math.ceil(4 * (tail_s if tail_w else core)) + 1)
    if tail_w:
        k = (1 - tail_w) * k + tail_w * _psf.gaussian_psf(tail_s, size=k.shape[0])
    return k / k.sum(), {f"{kind}_sigma_px": core, f"{kind}_tail_weight": tail_w}


def _geometry(rng, shape, fams) -> dict:
    h, w = shape
    p: dict = {}
    shifts = np.zeros(h)
    if "slow_scan_drift" in fams:
        p.update(
            scan_scale=tuple(rng.uniform(0.92, 1.08, 2)),
            scan_drift=tuple(rng.uniform(-0.05, 0.05, 2)),
            scan_bow=rng.uniform(-0.1, 0.1),
        )
    if "line_jitter" in fams:
        p.update(jitter_px=loguniform(rng, 0.05, 1.5), jitter_rho=rng.uniform(0, 0.95))
        shifts += dist.line_jitter_shifts(rng, h, p["jitter_px"], p["jitter_rho"])
    if "x_jumps" in fams:
        p.update(n_x_jumps=int(rng.integers(1, 5)), x_jump_px=loguniform(rng, 0.5, 6.0))
        shifts += dist.x_jump_shifts(rng, h, p["n_x_jumps"], p["x_jump_px"])
    if "flyback" in fams:
        p.update(flyback_px=rng.uniform(1.0, 8.0), flyback_length_px=loguniform(rng, 2.0, 25.0))
        p["flyback"] = dist.flyback_offset(w, p["flyback_px"], p["flyback_length_px"])
    p["row_shifts"] = shifts
    return p


def _signal(rng, c, modality, family, fams, dose):
    """Deterministic chain: detected rate λ, response r(λ), expected electrons, params."""
    p = _contrast_params(rng, modality, family)
    b = dist.contrast(c, p["contrast"], p["contrast_strength"], p["contrast_background"])
    for kind in ("optics_blur", "probe_blur"):
        if kind in fams:
            kernel, kp = _blur_kernel(rng, kind)
            p.update(kp)
            b = np.maximum(_psf.convolve(b, kernel), 0.0)
    if modality in _SCAN:
        geo = _geometry(rng, c.shape, fams)
        p.update(geo)
        if any(f in fams for f in ("slow_scan_drift", "line_jitter", "x_jumps", "flyback")):
            yy, xx = dist.scan_coordinates(
                c.shape,
                scale=geo.get("scan_scale", (1.0, 1.0)),
                drift=geo.get("scan_drift", (0.0, 0.0)),
                bow=geo.get("scan_bow", 0.0),
                row_shifts=geo["row_shifts"],
                flyback=geo.get("flyback"),
            )
            b = dist.resample(b, yy, xx)
    if "charging" in fams:
        p.update(
            charging_threshold=float(b.mean() + rng.uniform(0.0, 1.5) * b.std()),
            charging_strength=rng.uniform(0.1, 1.5),
            charging_tau_x=loguniform(rng, 3, 80),
            charging_tau_y=rng.uniform(0, 3),
            charging_sign=1.0 if rng.random() < 0.8 else -1.0,
        )
        b = dist.charging(
            b,
            threshold=p["charging_threshold"],
            strength=p["charging_strength"],
            tau_x=p["charging_tau_x"],
            tau_y=p["charging_tau_y"],
            sign=p["charging_sign"],
        )
    lam = dose * b
    if modality == "tem" and "counting" in fams and "detector_mtf" in fams:
        kernel, kp = _blur_kernel(rng, "detector_mtf")
        p.update(kp)
        lam = np.maximum(_psf.convolve(lam, kernel), 0.0)
        kernel = None  # a counting camera localises each event: noise stays white
    elif "detector_mtf" in fams:
        kernel, kp = _blur_kernel(rng, "detector_mtf")
        p.update(kp)
    else:
        kernel = None
    response = None
    if "nonlinear_response" in fams:
        kind = _choose(rng, ("saturating", "power"))
        p.update(
            nonlinear=kind,
            nonlinear_scale=float(lam.mean()) * loguniform(rng, 0.3, 10.0),
            nonlinear_gamma=rng.uniform(0.5, 1.5),
        )
        response = dist.rate_gain(lam, kind, p["nonlinear_scale"], p["nonlinear_gamma"])
    mean = lam if response is None else lam * response
    if kernel is not None:
        p["mtf_kernel"] = kernel
        mean = _psf.convolve(mean, kernel)
    if "afterglow" in fams:
        p.update(afterglow_fraction=rng.uniform(0.1, 0.7), afterglow_tau_px=loguniform(rng, 0.3, 8))
        mean = dist.afterglow(mean, p["afterglow_fraction"], p["afterglow_tau_px"])
    if "dark_noise" in fams:
        p["dark_e"] = loguniform(rng, 0.005, 2.0)
        mean = mean + p["dark_e"]
    return lam, response, mean, p


def _noise_params(rng, modality, fams, mean_rate: float) -> dict:
    """Noise and defect parameters, in electrons (multiplied by the ADU gain at render)."""
    p: dict = {}
    shot = math.sqrt(max(mean_rate, 1.0))  # amplifier noise comparable to shot noise
    if modality in _SCAN or "integrating" in fams:
        p["excess_k"] = loguniform(rng, 0.3, 20.0)
    if "fixed_pattern" in fams:
        p.update(fp_pixel=loguniform(rng, 0.002, 0.05), fp_column=loguniform(rng, 0.001, 0.03))
    if "readout_noise" in fams:
        p["read_e"] = loguniform(rng, 0.05, 3.0) * shot
    if "fast_scan_noise" in fams:
        p.update(
            fast_e=loguniform(rng, 0.05, 1.5) * shot,
            fast_rho=rng.uniform(0.2, 0.95),
            hum_e=loguniform(rng, 0.05, 1.0) * shot * (rng.random() < 0.3),
            hum_period_px=loguniform(rng, 3.0, 400.0),
        )
    if "row_offset_gain" in fams:
        p.update(
            row_gain=loguniform(rng, 0.002, 0.05),
            row_offset_e=loguniform(rng, 0.02, 1.0) * shot,
            row_rho=rng.uniform(0, 0.9),
        )
    if "xray_hits" in fams:
        p.update(
            xray_rate=loguniform(rng, 1e-5, 1e-3),
            xray_e=loguniform(rng, 5.0, 50.0) * max(mean_rate, 1.0),
        )
    if "dead_pixels" in fams:
        p.update(
            dead_fraction=loguniform(rng, 1e-4, 5e-3),
            dead_value=_choose(rng, ("zero", "offset", "top")),
        )
    if "dead_columns" in fams:
        p.update(
            dead_columns=int(rng.integers(1, 4)),
            dead_column_value=_choose(rng, ("zero", "offset", "top")),
        )
    if "black_pixels" in fams:
        p["black_fraction"] = loguniform(rng, 1e-4, 5e-3)
    if "zero_lines" in fams:
        p["zero_lines"] = int(rng.integers(1, 4))
    return p


def _adu_params(rng, dtype: str, fams, expected: np.ndarray, p: dict) -> dict:
    """Unknown gain and offset, brightness / contrast, saturation level, quantisation step."""
    e_hi = float(expected.max())
    spread = math.sqrt(max(e_hi, 1.0) * (1 + 1 / p.get("excess_k", math.inf)))
    span = e_hi + 4 * spread + 3 * p.get("read_e", 0.0) + 3 * p.get("fast_e", 0.0) + 1.0
    top = _DTYPES[dtype]
    if dtype == "float32":
        gain = loguniform(rng, 0.01, 100.0)
        offset = 0.0 if rng.random() < 0.4 else rng.uniform(-0.2, 1.0) * gain * span
    elif dtype == "uint16" and rng.random() < 0.5:  # camera: ADU per electron, bias
        offset = rng.uniform(0, 0.05) * top if rng.random() < 0.7 else 0.0
        gain = min(loguniform(rng, 0.1, 100.0), (top - offset) / span * rng.uniform(0.5, 1.0))
    else:  # brightness / contrast stretched over part of the range
        lo, hi = rng.uniform(0, 0.3) * top, rng.uniform(0.5, 1.0) * top
        gain, offset = (hi - lo) / span, lo
    out = {"gain_adu": gain, "offset_adu": offset}
    if "saturation" in fams:
        # the brightest 0.1-5 % of the pixels clip (a whole flat background may go with
        # them, as when vacuum saturates), never the whole image
        q = np.quantile(expected, [0.5, 1.0 - loguniform(rng, 0.001, 0.05)])
        out["saturation_e"] = float(max(q[1], q[0] + 1e-6 * max(e_hi, 1.0)))
    if "quantisation" in fams:
        steps = {"uint8": (2, 3, 4), "uint16": (2, 4, 8, 16, 64)}.get(dtype, (1.0,))
        out["quant_step_adu"] = float(_choose(rng, steps)) if dtype != "float32" else gain
    return out


# --------------------------------------------------------------------------- API


def plan_pair(
    rng,
    shape,
    *,
    modality=None,
    dose_range=(0.1, 1000.0),
    specimens=None,
    distortions=None,
    exclude_specimens=(),
    exclude_distortions=(),
    dtype=None,
) -> WidePlan:
    """Draw everything of a wide pair except its noise (see :func:`wide_pair`).

    Parameters
    ----------
    rng : None, int or numpy.random.Generator
    shape : (int, int)
        At least 16 px per side.
    modality : {"tem", "stem", "sem"} or None
        None = random among the modalities the allowed families can serve.
    dose_range : (float, float)
        Incident dose is log-uniform in it (e⁻/px; SEM: detected SE per pixel).
    specimens, distortions : sequence of str or None
        Allowed families (None = all). With an explicit ``distortions`` every listed
        family that applies to the modality is applied (one of ``counting`` /
        ``integrating`` for TEM); with None each applicable family is drawn with its
        own probability.
    exclude_specimens, exclude_distortions : sequence of str
        Families that never appear (e.g. ``HELD_OUT["specimens"]``).
    dtype : {"uint8", "uint16", "float32"} or None
        Fixes the output type (None = random).
    """
    gen = as_rng(rng)
    h, w = check_shape(shape, min_size=16)
    lo, hi = (float(v) for v in dose_range)
    if not (0 < lo <= hi < 1e7):
        raise ValueError(
            f"dose_range must be (low, high) with 0 < low <= high; got {dose_range!r}. "
            "Use e.g. dose_range=(0.1, 1000.0) electrons per pixel."
        )
    specs = _resolve(specimens, exclude_specimens, SPECIMEN_FAMILIES, "specimens")
    allowed = _resolve(distortions, exclude_distortions, DISTORTION_FAMILIES, "distortions")
    feasible = [m for m in MODALITIES if _feasible(m, specs, allowed)]
    if modality is None:
        if not feasible:
            raise ValueError(
                f"no modality can use specimens {list(specs)} with distortions {list(allowed)}; "
                "a TEM pipeline needs 'counting' or 'integrating' among the distortions and SEM "
                "takes mesoscale specimens only. Allow more families."
            )
        modality = _choose(gen, feasible)
    modality = check_choice(modality, "modality", MODALITIES)
    if modality not in feasible:
        raise ValueError(
            f"modality {modality!r} cannot use specimens {list(specs)} with distortions "
            f"{list(allowed)}; it needs a specimen family applicable to it"
            + (
                " and 'counting' or 'integrating' among the distortions"
                if modality == "tem"
                else ""
            )
            + f". Use one of {feasible} or allow more families."
        )
    if dtype is not None:
        dtype = check_choice(dtype, "dtype", tuple(_DTYPES))
    usable = [s for s in specs if modality in specimen_modalities(s)]
    scales = sorted({_scale(s) for s in usable})
    scale = _choose(gen, scales)
    family = _choose(gen, [s for s in usable if _scale(s) == scale])
    if scale == "meso":
        c, sp = meso_specimen(gen, (h, w), family)
        if gen.random() < 0.6:
            c, support = add_support(gen, c, _choose(gen, SUPPORTS))
            sp.update(support)
    else:
        c, sp = atomic_specimen(gen, (h, w), family)
    fams = _pick_distortions(gen, modality, allowed, forced=distortions is not None)
    dose = loguniform(gen, lo, hi)
    lam, response, expected, sig = _signal(gen, c, modality, family, fams, dose)
    noise = _noise_params(gen, modality, fams, float(lam.mean()))
    dtype = dtype or _choose(gen, ("uint8", "uint16", "uint16", "float32"))
    adu = _adu_params(gen, dtype, fams, expected, noise)
    params = {**{f"specimen_{k}": v for k, v in sp.items()}, **sig, **noise, **adu}
    info = WideInfo(modality, scale, family, fams, dose, dtype, params)
    return WidePlan(c, lam, response, expected, info)


def _value(p: dict, key: str) -> float:
    return {"zero": 0.0, "offset": p["offset_adu"], "top": p["_top"]}[p[key]]


def render_pair(plan: WidePlan, rng) -> tuple[np.ndarray, np.ndarray]:
    """Noise and defects of a plan: ``(raw in its dtype, target float32)`` in ADU."""
    gen = as_rng(rng)
    info, p = plan.info, plan.info.params
    fams, g, o = info.distortions, p["gain_adu"], p["offset_adu"]
    shape = plan.rate.shape
    if info.modality == "tem" and "counting" in fams:
        s = dist.counting(plan.rate, gen)
    else:
        s = dist.integrating(plan.rate, gen, p["excess_k"])
    if plan.response is not None:
        s *= plan.response
    if "mtf_kernel" in p:
        s = _psf.convolve(s, p["mtf_kernel"])
    if "afterglow" in fams:
        s = dist.afterglow(s, p["afterglow_fraction"], p["afterglow_tau_px"])
    if "dark_noise" in fams:
        s += gen.poisson(p["dark_e"], shape)
    if "fixed_pattern" in fams:
        s *= dist.fixed_pattern(gen, shape, p["fp_pixel"], p["fp_column"])
    a = g * s + o
    if "readout_noise" in fams:
        a += gen.normal(0.0, g * p["read_e"], shape)
    if "fast_scan_noise" in fams:
        a += g * dist.fast_scan_noise(
            gen, shape, p["fast_e"], p["fast_rho"], p["hum_e"], p["hum_period_px"]
        )
    if "row_offset_gain" in fams:
        a = dist.row_offset_gain(a, gen, o, p["row_gain"], g * p["row_offset_e"], p["row_rho"])
    if "xray_hits" in fams:
        a = dist.xray_hits(a, gen, p["xray_rate"], g * p["xray_e"])
    target = g * plan.expected + o
    top = _DTYPES[info.dtype]
    hi = min(top, o + g * p["saturation_e"]) if "saturation" in fams else top
    lo = 0.0 if info.dtype != "float32" else -math.inf
    a, target = np.clip(a, lo, hi), np.clip(target, lo, hi)
    pv = {**p, "_top": hi if math.isfinite(hi) else float(a.max())}
    if "dead_pixels" in fams:
        a = dist.dead_pixels(a, gen, p["dead_fraction"], _value(pv, "dead_value"))
    if "dead_columns" in fams:
        a = dist.dead_columns(a, gen, p["dead_columns"], _value(pv, "dead_column_value"))
    if "black_pixels" in fams:
        a = dist.black_pixels(a, gen, p["black_fraction"])
    if "zero_lines" in fams:
        a = dist.zero_lines(a, gen, p["zero_lines"])
    if "quantisation" in fams:
        a = np.clip(dist.quantise(a, p["quant_step_adu"]), lo, hi)
    if info.dtype != "float32":
        a = np.rint(a)
    return a.astype(info.dtype), target.astype(np.float32)


def wide_pair(rng, shape, **options):
    """A random raw image and its noise-free target from the wide simulator.

    ``rng`` and ``shape`` as :func:`plan_pair`, and ``options`` (``modality``,
    ``dose_range``, ``specimens``, ``distortions``, ``exclude_specimens``,
    ``exclude_distortions``, ``dtype``) are :func:`plan_pair`'s.

    Returns
    -------
    raw : ndarray of ``info.dtype`` (uint8, uint16 or float32)
    target : float32 ndarray
        Noise-free expectation of ``raw`` in the same ADU (signal terms applied,
        noise and defects not).
    info : WideInfo

    Examples
    --------
    >>> held = HELD_OUT["distortions"]
    >>> raw, target, info = wide_pair(0, (32, 32), modality="sem", exclude_distortions=held)
    >>> info.modality, "charging" in info.distortions
    ('sem', False)
    """
    gen = as_rng(rng)
    plan = plan_pair(gen, shape, **options)
    raw, target = render_pair(plan, gen)
    return raw, target, plan.info


def training_families() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(specimen families, distortion families)`` for training: all minus :data:`HELD_OUT`."""
    return (
        tuple(f for f in SPECIMEN_FAMILIES if f not in HELD_OUT["specimens"]),
        tuple(f for f in DISTORTION_FAMILIES if f not in HELD_OUT["distortions"]),
    )
