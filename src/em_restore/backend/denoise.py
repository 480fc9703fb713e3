"""Classical denoising with self-supervised, automatic choice of method and strength.

The public facade for the widget, the CLI and scripts:

* :func:`plan_denoise` / :func:`iter_plan_denoise` look at **one** 2-D frame, estimate
  its noise (:func:`em_restore.backend.noise.estimate_noise`) and, for
  ``method="classical"``, choose the method *and* its strength without ground truth.
  The result is a :class:`DenoisePlan`: small, immutable, JSON-serialisable
  (:meth:`DenoisePlan.to_metadata` / :meth:`DenoisePlan.from_metadata`).
* :func:`apply_plan` applies a plan to one 2-D image or tile; :func:`iter_denoise`
  (a generator that yields :class:`Progress` after every tile and can be stopped
  between yields) and :func:`denoise_lazy` (a dask graph) apply it to arrays with
  any leading axes, tile by tile with the plan's halo, reproducing the whole-image
  result.
* :func:`denoise` does both in one call.

Pipeline of a plan (all steps pointwise or local)
-------------------------------------------------
1. ``z = forward_vst(x)`` when the noise is signal dependent (Poisson–Gaussian), so
   that ``z`` has unit-variance noise; otherwise ``z = x`` with noise s.d.
   ``readout_sigma``.
2. ``z = remove_spikes(z)`` (``params["despike"]``): X-ray spikes and dead pixels,
   on TEM data.
3. The filter (Gaussian, median, NLM, TV, wavelet or BM3D) with the noise level of
   ``z`` and, for correlated noise, the noise kernel (wavelet, BM3D).
4. ``x̂ = inverse_vst(ẑ)`` (the exact unbiased inverse).

Self-supervised calibration
---------------------------
Each candidate ``F`` (method, strength) is the *whole* pipeline above, scored on 3
crops of 128² px of the frame (the whole frame when it is smaller than 3 × 128²),
chosen at spread quantiles of a gradient-energy ranking. Scores are estimates of
the risk ``E‖F(x) − E x‖²/N`` in the data domain (ADU), i.e. of what PSNR
measures, so methods compare fairly and the variance model needs no transform:

    risk(F) = mean (F(x) − x)² − v̄ + 2 T,   T = mean E[F_i(x) n_i],   v̄ = mean Var(n_i)

(``v̄ = noise.variance(mean of the crop)``: the model is affine in the mean).
``T`` is measured with **blind spots** (Noise2Self / J-invariance): on a sparse
lattice, a *hole* around each centre ``i`` — the pixel and every neighbour whose
noise is correlated with ``n_i`` (the support of ``(g ⋆ g)`` for the noise kernel
``g``: the pixel alone for white noise; a 1×9 segment for a 1×5 scan-direction
kernel) — is replaced by the mean of the ring just outside it, independent of
``n_i``. The J-invariant output ``F_J`` then has ``E[F_J,i n_i] = 0``, so
``T = E[(F_i − F_J,i) n_i]``. Writing the difference as a linear response to the
hole perturbation ``e = x − fill``, ``F_i − F_J,i ≈ Σ_k w_k e_{i+k}`` (neighbouring
holes as nuisance regressors), ``w`` is fitted by least squares over the lattice
and ``T ≈ Σ_k w_k C(k)``, ``C(k) = v̄ (g ⋆ g)(k)``; exact for linear filters. This
turns the blind-spot measurement into the risk of ``F`` itself; the plain
Noise2Self loss ``mean (F_J,i − x_i)² − v̄`` (risk of ``F_J``, reported as
``calibration["j_loss"]``) ranks filters that lean on the centre pixel too low
(measured: mean gap to the oracle 0.85 dB against 0.19 dB on a TEM test set).
Single-pixel masks under correlated noise leak the noise through the fill and
through the filter's weights on correlated neighbours and pick too weak a filter
(see the tests).

Scan-line offsets (STEM/SEM line noise: one offset per row) are correlated along
the whole row, beyond any small kernel. When their variance ``v_l`` (estimated by
:func:`_line_variance`, robustly to the signal) exceeds 2 % of the noise variance,
the blind spots are whole rows (filled with the mean of the rows above and
below) and ``T = w_0 v̄ + (Σ_row w) v_l``, the row weight fitted from the
response to the row's common perturbation.

The grid (``_GRID``) is scored with one lattice per crop; the two best methods
are refined around their best strength (midpoints, or one step outward at a grid
edge), and the 4 best candidates are re-scored with 3 lattices per crop before
the final choice.

Tiling
------
Every step except TV is local: the output at a pixel depends on input pixels
within :meth:`DenoisePlan.halo` (Chebyshev distance). Tiles are cut with that
halo from the real neighbours and clipped at the image border (where each filter
applies its own border rule, as on the whole image), so tiled output equals the
whole-image output to float32 rounding. TV is global: tiles use a halo of
``TV_HALO`` pixels and differ from the whole-image result by less than
``TV_TOLERANCE`` of the data range (measured in the tests).
"""

from __future__ import annotations

import json
import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.ndimage as ndi

from . import filters
from ._args import as_rng, check_choice, check_image, check_layout, short
from ._progress import Progress, drain
from .bm3d import bm3d as _bm3d
from .bm3d import support_radius as _bm3d_support_radius

__all__ = [
    "METHODS",
    "STRENGTH_PARAM",
    "TV_HALO",
    "TV_TOLERANCE",
    "DenoisePlan",
    "Progress",
    "apply_plan",
    "denoise",
    "denoise_lazy",
    "iter_denoise",
    "iter_plan_denoise",
    "plan_denoise",
]

METHODS = ("classical", "gaussian", "median", "nlm", "tv", "wavelet", "bm3d")
CONCRETE = METHODS[1:]
_CANDIDATES = CONCRETE

#: Halo of TV tiles (TV is global; see :data:`TV_TOLERANCE`).
TV_HALO = 48
#: Max |tiled − whole| / data range for TV with a :data:`TV_HALO` halo (measured: <= 1.4e-6
#: for weights 1-32 on TEM images at 1-100 e⁻/px, tiles of 48 px).
TV_TOLERANCE = 1e-4

_DESPIKE_SIZE = 3
_DESPIKE_THRESHOLD = 5.0
_MIN_SIDE = 8


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
_FIXED = {
    "gaussian": {},
    "median": {},
    "nlm": {"patch_size": 5, "patch_distance": 6},
    "tv": {"max_num_iter": 200},
    "wavelet": {"wavelet": "db2", "levels": 3},
    "bm3d": {"patch_size": 8, "search_radius": 12, "step": 3, "max_matches": 16, "stage": "both"},
}
_DEFAULT_STRENGTH = {
    "gaussian": 1.0,
    "median": 3,
    "nlm": 0.8,
    "tv": 1.0,
    "wavelet": 1.0,
    "bm3d": 1.0,
}
# Strength grids (in the stabilised domain, where the noise s.d. is 1).
_GRID = {
    "gaussian": (0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0),
    "median": (3, 5, 7),
    "nlm": (0.4, 0.55, 0.75, 1.0, 1.35),
    "tv": (0.25, 0.5, 1.0, 2.0, 4.0),
    "wavelet": (0.5, 0.7, 1.0, 1.4, 2.0),
    "bm3d": (1.0, 0.75, 1.33),
}
_STRENGTH_BOUNDS = {
    "gaussian": (0.25, 12.0),
    "median": (3, 15),
    "nlm": (0.1, 4.0),
    "tv": (0.05, 32.0),
    "wavelet": (0.1, 8.0),
    "bm3d": (0.2, 4.0),
}
_TAKES_SIGMA = ("median", "nlm", "tv", "wavelet", "bm3d")
_TAKES_KERNEL = ("wavelet", "bm3d")
_COMMON = ("despike", "spike_threshold")  # despiking switches, never passed to filters


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
        return _halo(self.method, self.params)

    def to_metadata(self) -> dict:
        """Plain JSON-able dict that :meth:`from_metadata` turns back into this plan."""
        from em_restore import __version__

        meta = {
            "method": self.method,
            "params": _jsonable(self.params),
            "noise": _jsonable(self.noise.to_dict()),
            "stabilise": bool(self.stabilise),
            "requested": self.requested,
            "calibration": _jsonable(self.calibration),
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


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating | float):
        return float(obj)
    return obj


# ------------------------------------------------------------------------ validation
def _check_frame(image: Any, name: str = "image") -> np.ndarray:
    """One 2-D frame as float64 (never the caller's buffer written to)."""
    arr = image if isinstance(image, np.ndarray) else np.asarray(image)
    check_layout(arr.shape, name, stack=False, min_side=_MIN_SIDE)
    return check_image(arr, name, max_ndim=2, min_size=_MIN_SIDE)


def _check_params(method: str, params: Any) -> dict:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ValueError(
            f"params must be a dict of {method} parameters; got {short(params)}. "
            f"Pass e.g. params={{{STRENGTH_PARAM[method]!r}: {_DEFAULT_STRENGTH[method]!r}}}."
        )
    allowed = (STRENGTH_PARAM[method], *_FIXED[method], "sigma", *_COMMON)
    for key in params:
        if key not in allowed:
            raise ValueError(
                f"params has an unknown key {key!r} for method {method!r}; valid keys are "
                f"{', '.join(repr(k) for k in allowed)}."
            )
    return dict(params)


# ------------------------------------------------------------------------- the filter
def _sigma_work(x: np.ndarray, noise, stabilise: bool) -> float:
    """Noise s.d. in the working domain: 1 after the VST, else the model's at the mean level."""
    if stabilise:
        return 1.0
    return float(math.sqrt(float(noise.variance(float(np.mean(x))))))


def _kernel_of(noise) -> np.ndarray | None:
    if not noise.is_correlated():
        return None
    return np.asarray(noise.kernel, dtype=np.float64)


def _filter_kwargs(method: str, params: dict) -> dict:
    drop = _COMMON if method in _TAKES_SIGMA else (*_COMMON, "sigma")
    return {k: v for k, v in params.items() if k not in drop}


def _run_filter(method: str, z: np.ndarray, kwargs: dict, kernel, origin=(0, 0)) -> np.ndarray:
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


def _halo(method: str, params: dict) -> int | None:
    kwargs = _filter_kwargs(method, params)
    if method == "bm3d":
        radius = _bm3d_support_radius(**kwargs)
    else:
        radius = filters.support_radius(method, **kwargs)
    if radius is None:
        return None
    despike = _DESPIKE_SIZE // 2 if params.get("despike") else 0
    return int(radius) + despike


def _to_work(x: np.ndarray, plan: DenoisePlan) -> np.ndarray:
    if plan.stabilise:
        from .vst import forward_vst

        return np.asarray(forward_vst(x, plan.noise), dtype=np.float64)
    return x


def _from_work(z: np.ndarray, plan: DenoisePlan) -> np.ndarray:
    if plan.stabilise:
        from .vst import inverse_vst

        return np.asarray(inverse_vst(z, plan.noise), dtype=np.float64)
    return z


def _despike(z: np.ndarray, params: dict) -> np.ndarray:
    if not params.get("despike"):
        return z
    return filters.remove_spikes(
        z,
        threshold=float(params.get("spike_threshold", _DESPIKE_THRESHOLD)),
        sigma=float(params["sigma"]),
        size=_DESPIKE_SIZE,
    )


def apply_plan(image2d, plan: DenoisePlan, *, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Denoise one 2-D image or tile with a plan.

    Parameters
    ----------
    image2d : (rows, cols) array_like
        Raw data (any real dtype: uint16 counts, float ADU...). Never modified.
    plan : DenoisePlan
    origin : (int, int)
        Absolute position of ``image2d[0, 0]`` when it is a tile of a larger frame
        (keeps BM3D's reference grid aligned). :func:`iter_denoise` sets it.

    Returns
    -------
    float32 ndarray of the input shape.

    Examples
    --------
    >>> from em_restore.backend.noise import NoiseModel
    >>> white = NoiseModel(gain=0.0, offset=0.0, readout_sigma=1.0)
    >>> plan = DenoisePlan("gaussian", {"sigma_px": 1.0}, white, False, "gaussian")
    >>> apply_plan(np.full((16, 16), 3.0), plan).dtype
    dtype('float32')
    """
    if not isinstance(plan, DenoisePlan):
        raise ValueError(
            f"plan must be a DenoisePlan; got {type(plan).__name__}. "
            f"Make one with plan_denoise(image)."
        )
    x = _check_frame(image2d, "image2d")
    z = _to_work(x, plan)
    z = _despike(z, plan.params)
    z = _run_filter(
        plan.method, z, _filter_kwargs(plan.method, plan.params), _kernel_of(plan.noise), origin
    )
    return _from_work(z, plan).astype(np.float32)


# ---------------------------------------------------------------------- calibration
def _noise_autocorrelation(kernel: np.ndarray | None) -> np.ndarray:
    """``(g ⋆ g)``, the noise correlation (1 at lag 0), cropped to its support."""
    if kernel is None:
        return np.ones((1, 1))
    g = np.asarray(kernel, dtype=np.float64)
    ac = ndi.correlate(np.pad(g, [(s - 1, s - 1) for s in g.shape]), g, mode="constant")
    ac = ac / ac[ac.shape[0] // 2, ac.shape[1] // 2]
    keep = np.abs(ac) > _CORR_SUPPORT
    rows, cols = np.nonzero(keep)
    cy, cx = ac.shape[0] // 2, ac.shape[1] // 2
    ry = int(max(abs(rows - cy).max(), 0))
    rx = int(max(abs(cols - cx).max(), 0))
    return ac[cy - ry : cy + ry + 1, cx - rx : cx + rx + 1]


@dataclass
class _Lattice:
    """One blind-spot lattice on a crop: the holes, filled from outside, and their centres."""

    zj: np.ndarray  # the crop with every hole filled from its ring
    centres: tuple[np.ndarray, np.ndarray]  # evaluated pixels (hole centres), raveled
    e: np.ndarray  # (n_centres, n_offsets + n_neighbours): perturbations seen by each centre


# Neighbouring holes (in lattice steps) whose perturbations are fitted as nuisance
# regressors, pooled with their mirror images: they leak into every centre through
# the filter's support and would otherwise dominate the noise of the fit.
_NEIGHBOURS = [(a, b) for a in range(-2, 3) for b in range(-2, 3) if (a, b) > (0, 0)]


def _hole_geometry(corr: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """Hole radii (covering the correlation support) and lattice strides."""
    ry, rx = corr.shape[0] // 2, corr.shape[1] // 2
    stride = (max(4, 2 * (2 * ry + 1)), max(4, 2 * (2 * rx + 1)))
    return (ry, rx), stride


def _make_lattice(z: np.ndarray, radii, stride, phase) -> _Lattice:
    ry, rx = radii
    sy, sx = stride
    h, w = z.shape
    # Centres far enough from the border that the ring never reflects into the hole.
    ys = np.arange(ry + 1 + phase[0] % sy, h - ry - 1, sy)
    xs = np.arange(rx + 1 + phase[1] % sx, w - rx - 1, sx)
    inner = ndi.uniform_filter(z, size=(2 * ry + 1, 2 * rx + 1), mode="reflect") * (
        (2 * ry + 1) * (2 * rx + 1)
    )
    outer = ndi.uniform_filter(z, size=(2 * ry + 3, 2 * rx + 3), mode="reflect") * (
        (2 * ry + 3) * (2 * rx + 3)
    )
    ring = (outer - inner) / ((2 * ry + 3) * (2 * rx + 3) - (2 * ry + 1) * (2 * rx + 1))
    cy, cx = np.meshgrid(ys, xs, indexing="ij")
    fill = ring[cy, cx]
    zj = z.copy()
    offsets = [(dy, dx) for dy in range(-ry, ry + 1) for dx in range(-rx, rx + 1)]
    own = np.empty((*cy.shape, len(offsets)))
    for j, (dy, dx) in enumerate(offsets):
        own[..., j] = z[cy + dy, cx + dx] - fill
        zj[cy + dy, cx + dx] = fill
    total = np.pad(own.sum(axis=-1), 2)
    ny, nx = cy.shape
    nuisance = np.empty((ny, nx, len(_NEIGHBOURS)))
    for j, (a, b) in enumerate(_NEIGHBOURS):
        nuisance[..., j] = (
            total[2 + a : 2 + a + ny, 2 + b : 2 + b + nx]
            + total[2 - a : 2 - a + ny, 2 - b : 2 - b + nx]
        )
    e = np.concatenate([own, nuisance], axis=-1).reshape(ny * nx, -1)
    return _Lattice(zj=zj, centres=(cy.ravel(), cx.ravel()), e=e)


_ROW_STRIDE = 4
_ROW_NEIGHBOURS = (1, 2)  # own-row offsets fitted individually (pooled ±k)


def _make_row_lattice(z: np.ndarray, phase: int) -> _Lattice:
    """Blind spots for scan-line noise: whole rows, filled with the mean of the rows around.

    A row offset is shared by every pixel of the row, so the blind spot of a pixel is
    its whole row. Every pixel of a masked row is a centre. Regressors per centre:
    its own perturbation, the pooled ones at ±1, ±2 px along the row, the mean
    perturbation of the row (the offset seen by the rest of the row) and, as
    nuisance, the same column in the masked rows ±4, ±8 away.
    """
    h, w = z.shape
    rows = np.arange(1 + phase % _ROW_STRIDE, h - 1, _ROW_STRIDE)
    zj = z.copy()
    fill = 0.5 * (z[rows - 1] + z[rows + 1])
    e_rows = z[rows] - fill
    zj[rows] = fill
    cols = np.arange(2, w - 2)
    feats = [e_rows[:, cols]]
    for k in _ROW_NEIGHBOURS:
        feats.append(e_rows[:, cols - k] + e_rows[:, cols + k])
    feats.append(np.broadcast_to(e_rows.mean(axis=1, keepdims=True), (rows.size, cols.size)))
    padded = np.pad(e_rows[:, cols], ((2, 2), (0, 0)))
    n = rows.size
    for a in (1, 2):
        feats.append(padded[2 + a : 2 + a + n] + padded[2 - a : 2 - a + n])
    e = np.stack(feats, axis=-1).reshape(n * cols.size, -1)
    cy, cx = np.meshgrid(rows, cols, indexing="ij")
    return _Lattice(zj=zj, centres=(cy.ravel(), cx.ravel()), e=e)


def _ridge_solve(gram: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least-squares weights ``(G + εI)⁻¹ b``; zeros when nothing responded (flat probe)."""
    ridge = 1e-9 * np.trace(gram) / gram.shape[0]
    if not ridge > 0:
        return np.zeros(gram.shape[0])
    return np.linalg.lstsq(gram + ridge * np.eye(gram.shape[0]), b, rcond=None)[0]


def _row_response_trace(d: np.ndarray, e: np.ndarray, v_white: float, v_line: float) -> float:
    """``E[f_i n_i]`` for white + scan-line noise from the row-blind-spot responses.

    ``d ≈ e w``; ``w[0]`` is the response to the pixel itself, ``w[1:3]`` to its
    neighbours along the row, ``w[3]`` to the row's common offset; the line noise
    is seen through the whole-row weight ``w0 + 2 w1 + 2 w2 + w3``.
    """
    gram = e.T @ e
    w = _ridge_solve(gram, e.T @ d)
    row_weight = w[0] + 2.0 * w[1] + 2.0 * w[2] + w[3]
    t = w[0] * v_white + row_weight * v_line
    return float(np.clip(t, 0.0, 1.5 * (v_white + v_line)))


def _line_variance(x: np.ndarray, segment: int = 32) -> float:
    """Variance of scan-line offsets (constant along rows), robust to the signal.

    Vertical second differences cancel smooth signal; their median over segments
    of ``segment`` px along a row keeps a row's offset; offsets are common to all
    segments of a row and signal and white noise are not, so the mean covariance
    between different segments of the same row, divided by 1.5 (the variance of
    ``o_r - (o_{r-1} + o_{r+1}) / 2``), estimates the offset variance.
    """
    h, w = x.shape
    n_seg = w // segment
    if h < 16 or n_seg < 2:
        return 0.0
    d = x[1:-1] - 0.5 * (x[:-2] + x[2:])
    m = np.median(d[:, : n_seg * segment].reshape(h - 2, n_seg, segment), axis=2)
    m = m - np.median(m, axis=0, keepdims=True)
    total = m.sum(axis=1)
    cross = (total**2 - (m**2).sum(axis=1)) / (n_seg * (n_seg - 1))
    return max(float(np.mean(cross)) / 1.5, 0.0)


def _pick_crops(z: np.ndarray, n: int, size: int) -> list[tuple[int, int]]:
    """Top-left corners of up to ``n`` disjoint ``size``² crops spread over the structure ranking.

    Candidates tile the frame (step ``size``, the last row / column flush with the
    border); they are ranked by gradient energy and picked at the quantiles
    ``(k + 0.5) / n`` of the ranking, so flat and busy regions are both represented.
    """
    h, w = z.shape
    ch, cw = min(size, h), min(size, w)
    ys = sorted({*range(0, h - ch + 1, ch), h - ch})
    xs = sorted({*range(0, w - cw + 1, cw), w - cw})
    energy = ndi.gaussian_gradient_magnitude(z, 2.0) ** 2
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    scores = sorted(
        (
            -float(
                integral[y + ch, x + cw]
                - integral[y, x + cw]
                - integral[y + ch, x]
                + integral[y, x]
            ),
            y,
            x,
        )
        for y in ys
        for x in xs
    )
    chosen: list[tuple[int, int]] = []
    for k in range(n):
        target = int((k + 0.5) / n * len(scores))
        for i in sorted(range(len(scores)), key=lambda i: (abs(i - target), i)):
            _, y, x = scores[i]
            free = all(abs(y - y2) >= ch or abs(x - x2) >= cw for y2, x2 in chosen)
            if free and (y, x) not in chosen:
                chosen.append((y, x))
                break
    return chosen


@dataclass
class _Crop:
    """A calibration crop: data in the scoring domain, and its blind-spot lattices."""

    z: np.ndarray
    weight: np.ndarray  # 1 where the pixel counts (0 on replaced spikes)
    variance: float  # mean noise variance of the crop in the scoring domain
    lattices: list[_Lattice]


@dataclass
class _Calibrator:
    """Scores candidates ``(method, strength)`` on the calibration crops."""

    crops: list[_Crop]
    corr: np.ndarray  # noise correlation on the hole offsets (1 at lag 0)
    base: dict  # per-method fixed params (incl. sigma)
    line: float  # scan-line offset variance (row blind spots when > 0)
    run: Any  # (method, kwargs, y) -> estimate of y's expectation, same domain
    risk: dict = field(default_factory=dict)
    j_loss: dict = field(default_factory=dict)
    _fz: dict = field(default_factory=dict)
    _blind: dict = field(default_factory=dict)  # (key, crop, lattice) -> (d, e, jl terms)

    def score(self, method: str, strength, phases: int = 1) -> float:
        """Risk estimate of the candidate using ``phases`` lattices per crop (cached)."""
        key = (method, strength)
        kwargs = _filter_kwargs(method, {**self.base[method], STRENGTH_PARAM[method]: strength})
        if key not in self._fz:
            self._fz[key] = [self.run(method, kwargs, crop.z) for crop in self.crops]
        resid = n_pix = var_sum = 0.0
        num, rows, sq, var_c = [], [], [], []
        for i, (crop, fz) in enumerate(zip(self.crops, self._fz[key], strict=True)):
            wgt = crop.weight
            resid += float(np.sum(wgt * (fz - crop.z) ** 2))
            n_pix += float(wgt.sum())
            var_sum += crop.variance * float(wgt.sum())
            for j, lat in enumerate(crop.lattices[:phases]):
                if (key, i, j) not in self._blind:
                    fj = self.run(method, kwargs, lat.zj)
                    cy, cx = lat.centres
                    ok = wgt[cy, cx] > 0
                    self._blind[key, i, j] = (
                        (fz[cy, cx] - fj[cy, cx])[ok],
                        lat.e[ok],
                        ((fj[cy, cx] - crop.z[cy, cx]) ** 2)[ok],
                    )
                d, e, s2 = self._blind[key, i, j]
                num.append(d)
                rows.append(e)
                sq.append(s2)
                var_c.append(np.full(d.size, crop.variance))
        var = var_sum / n_pix
        if self.line > 0:
            trace = _row_response_trace(np.concatenate(num), np.concatenate(rows), var, self.line)
            var = var + self.line
        else:
            c_lag = var * self.corr.ravel()
            trace = _response_trace(np.concatenate(num), np.concatenate(rows), c_lag)
        self.risk[key] = float(resid / n_pix - var + 2.0 * trace)
        j_var = float(np.concatenate(var_c).mean()) + self.line
        self.j_loss[key] = float(np.concatenate(sq).mean() - j_var)
        return self.risk[key]


def _response_trace(d: np.ndarray, e: np.ndarray, c_lag: np.ndarray) -> float:
    """``Σ_k w_k C(k)``: ``d ≈ e w`` fitted by least squares (own offsets point-symmetric).

    The first ``len(c_lag)`` columns of ``e`` are the centre's own hole offsets; the
    rest are nuisance regressors (the neighbouring holes).
    """
    n_off = c_lag.size
    half = (n_off + 1) // 2
    own = e[:, :half].copy()
    own[:, : half - 1] += e[:, n_off - 1 : n_off - half : -1] if half > 1 else 0.0
    x = np.concatenate([own, e[:, n_off:]], axis=1)
    gram = x.T @ x
    w = _ridge_solve(gram, x.T @ d)
    c_pooled = c_lag[:half].copy()
    c_pooled[: half - 1] *= 2.0  # each pooled column stands for the lags k and -k
    t = float(w[:half] @ c_pooled)
    c0 = float(c_lag[n_off // 2])
    return float(np.clip(t, 0.0, 1.5 * c0))


def _label(method: str, strength) -> str:
    name = STRENGTH_PARAM[method]
    value = f"{strength:.4g}" if isinstance(strength, float) else str(strength)
    return f"{method}({name}={value})"


def _refine_candidates(method: str, grid: list, best) -> list:
    """Strengths to try next around the grid's best: outward at an edge, midpoints inside."""
    lo, hi = _STRENGTH_BOUNDS[method]
    grid = sorted(grid)
    i = grid.index(best)
    out = []
    if method == "median":
        if i == len(grid) - 1 and best + 2 <= hi:
            out.append(best + 2)
        return out
    if i == 0:
        ratio = grid[1] / grid[0] if len(grid) > 1 else 1.4
        nxt = best / ratio
        if nxt >= lo:
            out.append(round(nxt, 4))
    elif i == len(grid) - 1:
        ratio = grid[-1] / grid[-2] if len(grid) > 1 else 1.4
        nxt = best * ratio
        if nxt <= hi:
            out.append(round(nxt, 4))
    if 0 < i:
        out.append(round(math.sqrt(best * grid[i - 1]), 4))
    if i < len(grid) - 1:
        out.append(round(math.sqrt(best * grid[i + 1]), 4))
    return out


# ------------------------------------------------------------------------- planning
def iter_plan_denoise(
    image,
    method: str = "classical",
    *,
    modality: str | None = None,
    noise=None,
    params: dict | None = None,
    rng=0,
) -> Generator[Progress, None, DenoisePlan]:
    """Plan the denoising of a frame; a generator that yields :class:`Progress`.

    Parameters
    ----------
    image : (rows, cols) array_like
        One representative frame (for a stack: the frame on screen or the middle
        one). Raw data: counts or ADU, any real dtype. Never modified.
    method : str
        ``"classical"`` (default: choose the method and its strength), or one of
        ``"gaussian"``, ``"median"``, ``"nlm"``, ``"tv"``, ``"wavelet"``, ``"bm3d"``
        (its strength is calibrated unless given in ``params``).
    modality : {"tem", "stem", "sem"}, optional
        Passed to :func:`~em_restore.backend.noise.estimate_noise`. ``"tem"`` also
        turns on spike / dead-pixel removal (with ``None`` it is on when the frame
        has outliers and the noise is not correlated); for anything but ``"tem"``
        scan-line offsets are measured and, when significant, the calibration uses
        whole-row blind spots.
    noise : NoiseModel or dict, optional
        Skip noise estimation and use this model (a dict from ``NoiseModel.to_dict``).
    params : dict, optional
        Method parameters (e.g. ``{"h": 0.8}`` for NLM). Giving the strength
        parameter (:data:`STRENGTH_PARAM`) skips calibration. Also ``sigma`` (noise
        s.d. in the working domain; default 1 after the VST, else from the noise
        model), ``despike`` (bool) and ``spike_threshold`` (in noise s.d.).
    rng : int, Generator or None
        Reserved for randomised calibration; the present calibration is
        deterministic (crops by structure, fixed lattices).

    Yields
    ------
    Progress

    Returns
    -------
    DenoisePlan
        (the generator's return value: ``plan = yield from iter_plan_denoise(...)``).
    """
    method = check_choice(method, "method", METHODS)
    as_rng(rng)
    x = _check_frame(image)
    concrete = _CANDIDATES if method == "classical" else (method,)
    user = {} if method == "classical" else _check_params(method, params)
    if method == "classical" and params:
        raise ValueError(
            f"params apply to one method, not to method='classical'; got {short(params)}. "
            f"Choose a method, e.g. method='nlm', params={{'h': 0.8}}."
        )
    if modality is not None:
        modality = check_choice(modality, "modality", ("tem", "stem", "sem"))

    n_grid = sum(len(_GRID[m]) for m in concrete)
    skip = method != "classical" and STRENGTH_PARAM[method] in user
    total = 1 + (0 if skip else n_grid + _N_REFINE * min(2, len(concrete)) + _N_FINAL)
    yield Progress(0, total, "estimating noise")
    noise = _resolve_noise(x, noise, modality)
    stabilise = bool(noise.is_signal_dependent())
    flat = float(np.ptp(x)) == 0.0
    sigma = float(user.get("sigma", _sigma_work(x, noise, stabilise)))
    z = _to_work(x, DenoisePlan("gaussian", {}, noise, stabilise, method))
    despike = user.get("despike")
    if despike is None:
        despike = _wants_despike(z, modality, noise, sigma)
    common = {"sigma": sigma, "despike": bool(despike)}
    spikes = np.zeros(z.shape, dtype=bool)
    if despike:
        common["spike_threshold"] = float(user.get("spike_threshold", _DESPIKE_THRESHOLD))
        z, spikes = filters.remove_spikes(
            z,
            threshold=common["spike_threshold"],
            sigma=sigma,
            size=_DESPIKE_SIZE,
            return_mask=True,
        )
    probe = DenoisePlan("gaussian", common, noise, stabilise, method)
    base = {m: _base_params(m, sigma, user if m == method else {}) for m in concrete}
    done = 1
    yield Progress(done, total, "noise estimated")

    if skip or flat:
        chosen = concrete[0] if method != "classical" else "gaussian"
        strength = user.get(STRENGTH_PARAM[chosen], _DEFAULT_STRENGTH[chosen])
        params_out = {**base[chosen], STRENGTH_PARAM[chosen]: strength, **common}
        plan = DenoisePlan(chosen, params_out, noise, stabilise, method, {})
        if skip:
            apply_plan(x[: min(x.shape[0], 32), : min(x.shape[1], 32)], plan)  # validate now
        yield Progress(total, total, "planned")
        return plan

    line = 0.0
    if modality != "tem":
        line = _line_variance(x)
        if line <= _LINE_FRACTION * float(noise.variance(float(np.mean(x)))):
            line = 0.0
    cal = _make_calibrator(x, z, spikes, probe, base, line)
    best: dict[str, Any] = {}
    for m in concrete:
        for s in _GRID[m]:
            yield Progress(done, total, f"scoring {_label(m, s)}")
            cal.score(m, s, _PHASES)
            done += 1
        best[m] = min(_GRID[m], key=lambda s, m=m: cal.risk[(m, s)])
    ranked = sorted(concrete, key=lambda m: cal.risk[(m, best[m])])
    for m in ranked[:2]:
        tried = list(_GRID[m])
        budget = _N_REFINE
        while budget > 0:
            extra = [s for s in _refine_candidates(m, tried, best[m]) if (m, s) not in cal.risk]
            if not extra:
                break
            for s in extra[:budget]:
                yield Progress(done, total, f"refining {_label(m, s)}")
                cal.score(m, s, _PHASES)
                tried.append(s)
                done += 1
                budget -= 1
            new_best = min(tried, key=lambda s, m=m: cal.risk[(m, s)])
            if new_best == best[m]:
                break
            best[m] = new_best
    # Finalists: the best few candidates overall are re-scored with more blind-spot
    # lattices per crop (the estimate's noise, not its bias, decides between close ones).
    finalists = sorted(cal.risk, key=cal.risk.get)[:_N_FINAL]
    for m, s in finalists:
        yield Progress(done, total, f"confirming {_label(m, s)}")
        cal.score(m, s, _FINAL_PHASES)
        done += 1
    chosen, strength = min(finalists, key=cal.risk.get)
    params_out = {**base[chosen], STRENGTH_PARAM[chosen]: strength, **common}
    calibration = {
        "scores": {_label(m, s): r for (m, s), r in cal.risk.items()},
        "j_loss": {_label(m, s): r for (m, s), r in cal.j_loss.items()},
        "chosen": _label(chosen, strength),
        "crops": len(cal.crops),
        "crop_size": list(cal.crops[0].z.shape),
        "blind_spot": ["row"] if line > 0 else list(cal.corr.shape),
        "line_variance": line,
    }
    plan = DenoisePlan(chosen, params_out, noise, stabilise, method, calibration)
    yield Progress(total, total, f"chose {_label(chosen, strength)}")
    return plan


_N_REFINE = 3
# Lags whose noise correlation is below this are left outside the blind spot (an
# estimated kernel has small noisy tails; their leak into the scores is negligible).
_CORR_SUPPORT = 0.05
# Scan-line offsets are modelled when their variance exceeds this fraction of the
# mean noise variance (below it their effect on the scores is negligible, and the
# estimate is dominated by row-aligned structure at high dose).
_LINE_FRACTION = 0.02
_PHASES = 1  # lattices per crop while screening
_FINAL_PHASES = 3  # lattices per crop for the finalists
_MAX_PHASES = _FINAL_PHASES
_N_FINAL = 4
_CROP_SIZE = 128
_N_CROPS = 3


def _make_calibrator(x, z, spikes, probe: DenoisePlan, base, line: float = 0.0) -> _Calibrator:
    """Crops, blind-spot lattices and the scoring function.

    ``x``: raw frame (the scoring domain); ``z``: working domain after despiking
    (used to rank crops by structure); ``spikes``: pixels the despiking replaced
    (replaced by their 3×3 median here too, and left out of the scores); ``line``:
    scan-line offset variance (row blind spots when > 0).
    """
    kernel = _kernel_of(probe.noise)
    corr = _noise_autocorrelation(kernel)
    radii, stride = _hole_geometry(corr)
    h, w = z.shape
    if h * w <= _N_CROPS * _CROP_SIZE**2:
        corners, size = [(0, 0)], max(h, w)
    else:
        corners, size = _pick_crops(z, _N_CROPS, _CROP_SIZE), _CROP_SIZE
    data = np.where(spikes, ndi.median_filter(x, size=3, mode="reflect"), x) if spikes.any() else x
    order = np.random.default_rng(20251121).permutation(stride[0] * stride[1])
    crops = []
    for k, (y0, x0) in enumerate(corners):
        box = (slice(y0, y0 + size), slice(x0, x0 + size))
        patch = np.ascontiguousarray(data[box])
        wgt = (~spikes[box]).astype(np.float64)
        mean = float(np.sum(wgt * patch) / max(wgt.sum(), 1.0))
        variance = max(float(probe.noise.variance(mean)), 0.0)
        # Lattice phases differ between crops and between passes (a fixed scramble).
        lattices = []
        for j in range(_MAX_PHASES):
            if line > 0:
                lattices.append(_make_row_lattice(patch, k + j * len(corners)))
                continue
            p = int(order[(k + j * len(corners)) % order.size])
            lattices.append(_make_lattice(patch, radii, stride, divmod(p, stride[1])))
        crops.append(_Crop(z=patch, weight=wgt, variance=variance, lattices=lattices))

    # The stabilised, despiked input of each crop and lattice is the same for every
    # candidate: computed once (keyed by identity: the crops own these arrays).
    work: dict[int, np.ndarray] = {}

    def run(method, kwargs, y):
        # The whole pipeline of a plan, so candidates are scored on what they output.
        if id(y) not in work:
            work[id(y)] = _despike(_to_work(y, probe), probe.params)
        return _from_work(_run_filter(method, work[id(y)], kwargs, kernel), probe)

    return _Calibrator(crops=crops, corr=corr, base=base, line=line, run=run)


def _resolve_noise(x: np.ndarray, noise, modality):
    from .noise import NoiseModel, estimate_noise

    if noise is None:
        noise = estimate_noise(x, modality=modality)
    elif isinstance(noise, dict):
        noise = NoiseModel.from_dict(noise)
    elif not isinstance(noise, NoiseModel):
        raise ValueError(
            f"noise must be a NoiseModel, its to_dict() or None; got {short(noise)}. "
            f"Leave noise=None to estimate it from the image."
        )
    level = float(noise.variance(float(np.mean(x))))
    scale = max(float(np.max(np.abs(x))), 1.0)
    if not level > (1e-6 * scale) ** 2:
        # No measurable noise (e.g. a constant frame): a nominal white level keeps every
        # filter defined and leaves constant regions exactly constant.
        noise = NoiseModel(0.0, 0.0, 1e-6 * scale, np.ones((1, 1)))
    return noise


def _wants_despike(z: np.ndarray, modality, noise, sigma: float) -> bool:
    if modality == "tem":
        return True
    if modality is not None or noise.is_correlated():
        return False
    _, mask = filters.remove_spikes(
        z, threshold=_DESPIKE_THRESHOLD, sigma=sigma, size=_DESPIKE_SIZE, return_mask=True
    )
    return bool(np.any(mask))


def _base_params(method: str, sigma: float, user: dict) -> dict:
    params = {**_FIXED[method], "sigma": float(sigma)}
    params.update({k: v for k, v in user.items() if k not in _COMMON})
    params.pop(STRENGTH_PARAM[method], None)
    return params


def plan_denoise(image, method: str = "classical", **kw) -> DenoisePlan:
    """:func:`iter_plan_denoise` run to the end: the :class:`DenoisePlan`.

    Examples
    --------
    >>> from em_restore.backend import simulate as sim
    >>> clean, _ = sim.nanoparticles((64, 64), pixel_size_nm=1.0, rng=0)
    >>> noisy = sim.simulate_acquisition(clean, sim.AcquisitionConfig.low_dose_tem(), rng=1)
    >>> plan = plan_denoise(noisy, "gaussian", modality="tem")
    >>> plan.method, plan.stabilise, plan.params["despike"]
    ('gaussian', True, True)
    """
    return drain(iter_plan_denoise(image, method, **kw))


# --------------------------------------------------------------------------- tiling
def _tiles(h: int, w: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            yield y0, min(y0 + tile, h), x0, min(x0 + tile, w)


def _effective_halo(plan: DenoisePlan) -> int:
    halo = plan.halo()
    return TV_HALO if halo is None else halo


def iter_denoise(
    array, plan: DenoisePlan, *, tile: int = 512
) -> Generator[Progress, None, np.ndarray]:
    """Apply a plan to an image or stack, tile by tile; a generator of :class:`Progress`.

    Parameters
    ----------
    array : (..., rows, cols) numpy or dask array
        Any leading axes (time, z...); each 2-D frame is processed independently.
        Dask arrays are read one haloed tile at a time. Never modified.
    plan : DenoisePlan
    tile : int
        Tile side in pixels (output); each tile is read with the plan's halo from
        its real neighbours, so the result equals :func:`apply_plan` on whole frames
        (TV: within :data:`TV_TOLERANCE` of the data range).

    Yields
    ------
    Progress
        After every tile (``done`` tiles of ``total``); stop the generator between
        yields (``close()``) to cancel.

    Returns
    -------
    float32 ndarray of the input shape.
    """
    from ._args import check_int

    if not isinstance(plan, DenoisePlan):
        raise ValueError(
            f"plan must be a DenoisePlan; got {type(plan).__name__}. "
            f"Make one with plan_denoise(frame)."
        )
    tile = check_int(tile, "tile", low=16, hint="Use e.g. tile=512.")
    shape = tuple(int(s) for s in array.shape)
    check_layout(shape, "array", stack=True, min_side=_MIN_SIDE)
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biuf":
        raise ValueError(
            f"array must be a real numeric array; got dtype {dtype}. "
            f"Convert with array.astype(float)."
        )
    h, w = shape[-2:]
    halo = _effective_halo(plan)
    lead = shape[:-2]
    boxes = list(_tiles(h, w, tile))
    total = int(np.prod(lead, dtype=np.int64)) * len(boxes)
    out = np.empty(shape, dtype=np.float32)
    done = 0
    yield Progress(0, total, "denoising")
    for idx in np.ndindex(*lead):
        for y0, y1, x0, x1 in boxes:
            ya, yb = max(y0 - halo, 0), min(y1 + halo, h)
            xa, xb = max(x0 - halo, 0), min(x1 + halo, w)
            region = array[(*idx, slice(ya, yb), slice(xa, xb))]
            region = np.asarray(region.compute() if hasattr(region, "compute") else region)
            result = apply_plan(region, plan, origin=(ya, xa))
            out[(*idx, slice(y0, y1), slice(x0, x1))] = result[y0 - ya : y1 - ya, x0 - xa : x1 - xa]
            done += 1
            where = f"frame {idx} " if idx else ""
            yield Progress(done, total, f"{where}tile {y0}:{y1}, {x0}:{x1}")
    return out


def _merge_small_chunks(sizes: tuple[int, ...], minimum: int) -> tuple[int, ...]:
    """Merge neighbouring chunks until each is at least ``minimum`` (or the whole axis)."""
    out: list[int] = []
    for size in sizes:
        if out and out[-1] < minimum:
            out[-1] += size
        else:
            out.append(size)
    if len(out) > 1 and out[-1] < minimum:
        out[-2] += out.pop()
    return tuple(out)


def denoise_lazy(array, plan: DenoisePlan):
    """A dask array that denoises ``array`` with ``plan`` when computed.

    ``map_overlap`` over the last two axes with a depth of :meth:`DenoisePlan.halo`
    (``TV_HALO`` for TV) and no padding at the image border, so every chunk sees its
    real neighbours and the result equals :func:`apply_plan` on whole frames. Any
    leading axes; float32; nothing is computed here.

    Examples
    --------
    >>> import dask.array as da
    >>> from em_restore.backend.noise import NoiseModel
    >>> white = NoiseModel(gain=0.0, offset=0.0, readout_sigma=1.0)
    >>> plan = DenoisePlan("gaussian", {"sigma_px": 1.0}, white, False, "gaussian")
    >>> lazy = denoise_lazy(da.zeros((2, 64, 64), chunks=(1, 32, 32)), plan)
    >>> lazy.dtype, lazy.shape
    (dtype('float32'), (2, 64, 64))
    """
    import dask.array as da

    if not isinstance(plan, DenoisePlan):
        raise ValueError(
            f"plan must be a DenoisePlan; got {type(plan).__name__}. "
            f"Make one with plan_denoise(frame)."
        )
    if not isinstance(array, da.Array):
        array = da.asarray(array)
    shape = tuple(int(s) for s in array.shape)
    check_layout(shape, "array", stack=True, min_side=_MIN_SIDE)
    if np.dtype(array.dtype).kind not in "biuf":
        raise ValueError(
            f"array must be a real numeric array; got dtype {array.dtype}. "
            f"Convert with array.astype(float)."
        )
    halo = _effective_halo(plan)
    ndim = array.ndim
    # Every chunk of the two image axes must be at least as wide as the halo.
    chunks = list(array.chunks)
    for ax in (ndim - 2, ndim - 1):
        chunks[ax] = _merge_small_chunks(chunks[ax], halo)
    array = array.rechunk(tuple(chunks))
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]) for c in array.chunks[-2:]]

    def block(data: np.ndarray, block_info=None) -> np.ndarray:
        loc = block_info[0]["chunk-location"]
        iy, ix = loc[-2], loc[-1]
        oy = int(starts[0][iy]) - (halo if iy > 0 else 0)
        ox = int(starts[1][ix]) - (halo if ix > 0 else 0)
        out = np.empty(data.shape, dtype=np.float32)
        for idx in np.ndindex(*data.shape[:-2]):
            out[idx] = apply_plan(data[idx], plan, origin=(oy, ox))
        return out

    depth = {ax: 0 for ax in range(ndim)}
    depth[ndim - 2] = min(halo, shape[-2])
    depth[ndim - 1] = min(halo, shape[-1])
    return da.map_overlap(
        block,
        array,
        depth=depth,
        boundary="none",
        dtype=np.float32,
        meta=np.empty((0,) * ndim, dtype=np.float32),
        allow_rechunk=False,
    )


def denoise(
    image, method: str = "classical", *, modality: str | None = None, **params
) -> np.ndarray:
    """Plan on the image (the middle frame of a stack) and denoise all of it.

    Parameters
    ----------
    image : (..., rows, cols) array_like or dask array
    method : str
        See :func:`iter_plan_denoise`.
    modality : {"tem", "stem", "sem"}, optional
    **params
        Method parameters, e.g. ``h=0.8`` for ``method="nlm"``.

    Returns
    -------
    float32 ndarray of the input shape.

    Examples
    --------
    >>> from em_restore.backend import simulate as sim
    >>> clean, _ = sim.nanoparticles((64, 64), pixel_size_nm=1.0, rng=0)
    >>> noisy, truth = sim.simulate_acquisition(
    ...     clean, sim.AcquisitionConfig.low_dose_tem(dose=10), rng=1, return_expected=True)
    >>> out = denoise(noisy, "gaussian", sigma_px=1.5)
    >>> bool(np.mean((out - truth) ** 2) < 0.3 * np.mean((noisy - truth) ** 2))
    True
    """
    shape = tuple(int(s) for s in np.shape(image)) if not hasattr(image, "chunks") else image.shape
    check_layout(tuple(shape), "image", stack=True, min_side=_MIN_SIDE)
    lead = shape[:-2]
    frame = image[tuple(n // 2 for n in lead)] if lead else image
    frame = np.asarray(frame.compute() if hasattr(frame, "compute") else frame)
    plan = plan_denoise(frame, method, modality=modality, params=params or None)
    return drain(iter_denoise(image, plan))
