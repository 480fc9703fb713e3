"""The classical denoising plan's record and its per-tile pipeline.

:class:`DenoisePlan` (method, parameters, noise model, VST), the methods' parameter
tables (fixed parameters, default strengths, calibration grids, bounds), the checks of
a frame and of parameters, and the steps :func:`.denoise.apply_plan` chains on a tile:
to the working domain (generalised Anscombe), despiking, the filter, back. The choice of
method and strength is :mod:`.denoise`'s planning, scored by :mod:`.calibrate`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import filters
from ._args import check_choice, check_image, check_layout, short
from .bm3d import bm3d as _bm3d
from .bm3d import support_radius as _bm3d_support_radius

METHODS = ("classical", "gaussian", "median", "nlm", "tv", "wavelet", "bm3d")
CONCRETE = METHODS[1:]
#: The methods the automatic plan (``method="classical"``) chooses among. The median and
#: NLM stay available by name but are not screened. Measured 2026-12-08 (issue 34): on
#: bench_denoise.py's 21 images and the 8 frames of bench_interactive.py --plans
#: neither was chosen, and without them every plan is the same; on bench_models.py's 30
#: classic and 38 held-out frames the median never was and NLM twice, each time a
#: worse choice than the plan makes without it (TEM nanoparticles at 100 e⁻/px: NLM
#: 44.89 dB, now BM3D 46.23; held-out TEM fibres at 2 e⁻/px: 18.14, now TV 20.73), the
#: other 66 plans the same (mean 18.64 → 18.70 dB). The plan of the 512² frame of
#: bench_interactive.py, 1.85 → 1.57 s (median of 5, interleaved, 2 threads).
CANDIDATES = ("gaussian", "tv", "wavelet", "bm3d")

#: Halo of TV tiles (TV is global; see :data:`TV_TOLERANCE`): the filter's own.
TV_HALO = filters.TV_HALO
#: Max |tiled − whole| / data range for TV with a :data:`TV_HALO` halo (measured: <= 1.4e-6
#: for weights 1-32 on TEM images at 1-100 e⁻/px, tiles of 48 px).
TV_TOLERANCE = 1e-4

DESPIKE_SIZE = 3
DESPIKE_THRESHOLD = 5.0
MIN_SIDE = 8


#: The parameter that sets each method's strength (what ``--strength`` sets); the same
#: names as :data:`em_restore.backend.filters.STRENGTH_PARAM`, plus BM3D.
STRENGTH_PARAM: dict[str, str] = {
    "gaussian": "sigma_px",
    "median": "size",
    "nlm": "h",
    "tv": "weight",
    "wavelet": "strength",
    "bm3d": "strength",
}

# Fixed (non-strength) parameters of each method, and its default strength (used
# when the image offers nothing to calibrate on, e.g. a constant image).
FIXED = {
    "gaussian": {},
    "median": {},
    "nlm": {"patch_size": 5, "patch_distance": 6},
    "tv": {"max_num_iter": 200},
    "wavelet": {"wavelet": "db2", "levels": 3},
    "bm3d": {"patch_size": 8, "search_radius": 12, "step": 3, "max_matches": 16, "stage": "both"},
}
DEFAULT_STRENGTH = {
    "gaussian": 1.0,
    "median": 3,
    "nlm": 0.8,
    "tv": 1.0,
    "wavelet": 1.0,
    "bm3d": 1.0,
}
# Strength grids (in the stabilised domain, where the noise s.d. is 1).
GRID = {
    "gaussian": (0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0),
    "median": (3, 5, 7),
    "nlm": (0.4, 0.55, 0.75, 1.0, 1.35),
    "tv": (0.25, 0.5, 1.0, 2.0, 4.0),
    "wavelet": (0.5, 0.7, 1.0, 1.4, 2.0),
    "bm3d": (1.0, 0.75, 1.33),
}
# The strengths each candidate is screened at by the classical plan: GRID, but BM3D at
# two (the costly one). The best
# method is then refined around its best screened strength (midpoints, or a step
# outward at an edge). Measured on bench_denoise.py's 21 images and a 512² frame
# (issue 34): with one refined method and two finalists the chosen plans are as good as
# with the full grids, two refined methods and four finalists (mean PSNR 24.858 →
# 24.860 dB), for 0.69× the filter work. TV and the wavelet keep their whole grids:
# screened a factor 4 apart, TV's optimum between them went unrefined on the bundled
# nanoparticle sample (−1.0 dB), and their runs are cheap.
SCREEN = {
    "gaussian": GRID["gaussian"],
    "tv": GRID["tv"],
    "wavelet": GRID["wavelet"],
    "bm3d": (1.0, 1.5),
}
STRENGTH_BOUNDS = {
    "gaussian": (0.25, 12.0),
    "median": (3, 15),
    "nlm": (0.1, 4.0),
    "tv": (0.05, 32.0),
    "wavelet": (0.1, 8.0),
    "bm3d": (0.2, 4.0),
}
TAKES_SIGMA = ("median", "nlm", "tv", "wavelet", "bm3d")
TAKES_KERNEL = ("wavelet", "bm3d")
COMMON_PARAMS = ("despike", "spike_threshold")  # despiking switches, never passed to filters


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class DenoisePlan:
    """Everything needed to denoise frames exactly as calibrated.

    Attributes
    ----------
    method : str
        The concrete method (never ``"classical"``).
    params : dict
        The method's parameters, including the calibrated strength, the noise s.d.
        ``sigma`` of the working domain (methods that take it) and the despiking
        switches ``despike`` / ``spike_threshold``.
    noise : NoiseModel
    stabilise : bool
        Whether ``forward_vst`` / ``inverse_vst`` wrap the filter.
    requested : str
        What was asked for: ``"classical"`` or a method name.
    calibration : dict
        ``{"scores": {label: risk}, "j_loss": {label: loss}, "chosen": label,
        "crops": n, ...}``, JSON-able (empty when the parameters were given).
    """

    method: str
    params: dict
    noise: Any
    stabilise: bool
    requested: str
    calibration: dict = field(default_factory=dict)

    def halo(self) -> int | None:
        """Support radius in input pixels (``None`` for a global method: TV)."""
        return filter_halo(self.method, self.params)

    def to_metadata(self) -> dict:
        """Plain JSON-able dict that :meth:`from_metadata` turns back into this plan."""
        from em_restore import __version__

        meta = {
            "method": self.method,
            "params": jsonable(self.params),
            "noise": jsonable(self.noise.to_dict()),
            "stabilise": bool(self.stabilise),
            "requested": self.requested,
            "calibration": jsonable(self.calibration),
            "em_restore_version": __version__,
        }
        json.dumps(meta)  # fail here, not in a writer, if something slipped through
        return meta

    @classmethod
    def from_metadata(cls, meta: dict) -> DenoisePlan:
        """Rebuild a plan from :meth:`to_metadata` (e.g. a result layer's metadata)."""
        from .noise import NoiseModel

        if not isinstance(meta, dict):
            raise ValueError(
                f"meta must be the dict returned by DenoisePlan.to_metadata(); got {short(meta)}."
            )
        missing = [k for k in ("method", "params", "noise", "stabilise") if k not in meta]
        if missing:
            raise ValueError(
                f"meta lacks {', '.join(missing)}; pass the dict returned by "
                f"DenoisePlan.to_metadata()."
            )
        method = check_choice(meta["method"], "meta['method']", CONCRETE)
        return cls(
            method=method,
            params=dict(meta["params"]),
            noise=NoiseModel.from_dict(meta["noise"]),
            stabilise=bool(meta["stabilise"]),
            requested=meta.get("requested", method),
            calibration=dict(meta.get("calibration", {})),
        )


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating | float):
        return float(obj)
    return obj


# ------------------------------------------------------------------------ validation
def check_frame(image: Any, name: str = "image") -> np.ndarray:
    """One 2-D frame as float64 (never the caller's buffer written to)."""
    arr = image if isinstance(image, np.ndarray) else np.asarray(image)
    check_layout(arr.shape, name, stack=False, min_side=MIN_SIDE)
    return check_image(arr, name, max_ndim=2, min_size=MIN_SIDE)


def check_params(method: str, params: Any) -> dict:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ValueError(
            f"params must be a dict of {method} parameters; got {short(params)}. "
            f"Pass e.g. params={{{STRENGTH_PARAM[method]!r}: {DEFAULT_STRENGTH[method]!r}}}."
        )
    allowed = (STRENGTH_PARAM[method], *FIXED[method], "sigma", *COMMON_PARAMS)
    for key in params:
        if key not in allowed:
            raise ValueError(
                f"params has an unknown key {key!r} for method {method!r}; valid keys are "
                f"{', '.join(repr(k) for k in allowed)}."
            )
    return dict(params)


# ------------------------------------------------------------------------- the filter
def sigma_work(x: np.ndarray, noise, stabilise: bool) -> float:
    """Noise s.d. in the working domain: 1 after the VST, else the model's at the mean level."""
    if stabilise:
        return 1.0
    return float(math.sqrt(float(noise.variance(float(np.mean(x))))))


def kernel_of(noise) -> np.ndarray | None:
    if not noise.is_correlated():
        return None
    return np.asarray(noise.kernel, dtype=np.float64)


def filter_kwargs(method: str, params: dict) -> dict:
    drop = COMMON_PARAMS if method in TAKES_SIGMA else (*COMMON_PARAMS, "sigma")
    return {k: v for k, v in params.items() if k not in drop}


def run_filter(method: str, z: np.ndarray, kwargs: dict, kernel, origin=(0, 0)) -> np.ndarray:
    flt = filters
    if method == "gaussian":
        return flt.gaussian(z, **kwargs)
    if method == "median":
        return flt.median(z, **kwargs)
    if method == "nlm":
        return flt.nlm(z, **kwargs)
    if method == "tv":
        return flt.tv(z, **kwargs)
    if method == "wavelet":
        return flt.wavelet(z, kernel=kernel, **kwargs)
    return _bm3d(z, kernel=kernel, origin=origin, **kwargs)


def filter_halo(method: str, params: dict) -> int | None:
    kwargs = filter_kwargs(method, params)
    if method == "bm3d":
        radius = _bm3d_support_radius(**kwargs)
    else:
        radius = filters.support_radius(method, **kwargs)
    if radius is None:
        return None
    despike = DESPIKE_SIZE // 2 if params.get("despike") else 0
    return int(radius) + despike


def to_work(x: np.ndarray, plan: DenoisePlan) -> np.ndarray:
    if plan.stabilise:
        from .vst import forward_vst

        return np.asarray(forward_vst(x, plan.noise), dtype=np.float64)
    return x


def from_work(z: np.ndarray, plan: DenoisePlan) -> np.ndarray:
    if plan.stabilise:
        from .vst import inverse_vst

        return np.asarray(inverse_vst(z, plan.noise), dtype=np.float64)
    return z


def despike(z: np.ndarray, params: dict) -> np.ndarray:
    if not params.get("despike"):
        return z
    return filters.remove_spikes(
        z,
        threshold=float(params.get("spike_threshold", DESPIKE_THRESHOLD)),
        sigma=float(params["sigma"]),
        size=DESPIKE_SIZE,
    )
