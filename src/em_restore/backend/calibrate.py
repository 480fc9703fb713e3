"""Self-supervised risk estimation: scoring a filter on the noisy image alone.

The Noise2Self-style calibrator of the classical plan (the method is described in
:mod:`.denoise`'s docstring): calibration crops chosen by structure, blind-spot
lattices whose holes cover the noise correlation (pixel holes, or whole rows under
scan-line offsets), and the risk ``mean (F - x)^2 - v + 2 T`` with the trace ``T``
fitted from the response to the hole perturbation. :class:`Calibrator` scores
candidates ``(method, strength)`` through a pipeline it is given, so it knows no filter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.ndimage as ndi

from .classical import STRENGTH_BOUNDS, STRENGTH_PARAM

# Lags whose noise correlation is below this are left outside the blind spot (an
# estimated kernel has small noisy tails; their leak into the scores is negligible).
CORR_SUPPORT = 0.05


def noise_autocorrelation(kernel: np.ndarray | None) -> np.ndarray:
    """``(g ⋆ g)``, the noise correlation (1 at lag 0), cropped to its support."""
    if kernel is None:
        return np.ones((1, 1))
    g = np.asarray(kernel, dtype=np.float64)
    ac = ndi.correlate(np.pad(g, [(s - 1, s - 1) for s in g.shape]), g, mode="constant")
    ac = ac / ac[ac.shape[0] // 2, ac.shape[1] // 2]
    keep = np.abs(ac) > CORR_SUPPORT
    rows, cols = np.nonzero(keep)
    cy, cx = ac.shape[0] // 2, ac.shape[1] // 2
    ry = int(max(abs(rows - cy).max(), 0))
    rx = int(max(abs(cols - cx).max(), 0))
    return ac[cy - ry : cy + ry + 1, cx - rx : cx + rx + 1]


@dataclass
class Lattice:
    """One blind-spot lattice on a crop: the holes, filled from outside, and their centres."""

    zj: np.ndarray  # the crop with every hole filled from its ring
    centres: tuple[np.ndarray, np.ndarray]  # evaluated pixels (hole centres), raveled
    e: np.ndarray  # (n_centres, n_offsets + n_neighbours): perturbations seen by each centre


# Neighbouring holes (in lattice steps) whose perturbations are fitted as nuisance
# regressors, pooled with their mirror images: they leak into every centre through
# the filter's support and would otherwise dominate the noise of the fit.
_NEIGHBOURS = [(a, b) for a in range(-2, 3) for b in range(-2, 3) if (a, b) > (0, 0)]


def hole_geometry(corr: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """Hole radii (covering the correlation support) and lattice strides."""
    ry, rx = corr.shape[0] // 2, corr.shape[1] // 2
    stride = (max(4, 2 * (2 * ry + 1)), max(4, 2 * (2 * rx + 1)))
    return (ry, rx), stride


def make_lattice(z: np.ndarray, radii, stride, phase) -> Lattice:
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
    return Lattice(zj=zj, centres=(cy.ravel(), cx.ravel()), e=e)


_ROW_STRIDE = 4
_ROW_NEIGHBOURS = (1, 2)  # own-row offsets fitted individually (pooled ±k)


def make_row_lattice(z: np.ndarray, phase: int) -> Lattice:
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
    return Lattice(zj=zj, centres=(cy.ravel(), cx.ravel()), e=e)


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


def line_variance(x: np.ndarray, segment: int = 32) -> float:
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


def pick_crops(z: np.ndarray, n: int, size: int) -> list[tuple[int, int]]:
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
class Crop:
    """A calibration crop: data in the scoring domain, and its blind-spot lattices."""

    z: np.ndarray
    weight: np.ndarray  # 1 where the pixel counts (0 on replaced spikes)
    variance: float  # mean noise variance of the crop in the scoring domain
    lattices: list[Lattice]


@dataclass
class Calibrator:
    """Scores candidates ``(method, strength)`` on the calibration crops."""

    crops: list[Crop]
    corr: np.ndarray  # noise correlation on the hole offsets (1 at lag 0)
    base: dict  # per-method fixed params (incl. sigma)
    line: float  # scan-line offset variance (row blind spots when > 0)
    run: Any  # (method, kwargs, y) -> estimate of y's expectation, same domain
    kwargs_of: Any  # (method, strength) -> the filter's keyword arguments
    map: Any = map  # (fn, inputs) -> outputs in order: the builtin, or a thread pool's
    risk: dict = field(default_factory=dict)
    j_loss: dict = field(default_factory=dict)
    _fz: dict = field(default_factory=dict)
    _blind: dict = field(default_factory=dict)  # (key, crop, lattice) -> (d, e, jl terms)

    def score(self, method: str, strength, phases: int = 1) -> float:
        """Risk estimate of the candidate using ``phases`` lattices per crop (cached)."""
        key = (method, strength)
        kwargs = self.kwargs_of(method, strength)
        # Every filter run this score still needs (whole crops, blind-spot lattices),
        # handed to ``map`` at once: they are independent (threads where given).
        todo = [] if key in self._fz else [(("z", i), c.z) for i, c in enumerate(self.crops)]
        for i, crop in enumerate(self.crops):
            for j, lat in enumerate(crop.lattices[:phases]):
                if (key, i, j) not in self._blind:
                    todo.append(((i, j), lat.zj))
        outs = self.map(lambda y: self.run(method, kwargs, y), [y for _, y in todo])
        fresh = dict(zip([slot for slot, _ in todo], outs, strict=True))
        if key not in self._fz:
            self._fz[key] = [fresh["z", i] for i in range(len(self.crops))]
        resid = n_pix = var_sum = 0.0
        num, rows, sq, var_c = [], [], [], []
        for i, (crop, fz) in enumerate(zip(self.crops, self._fz[key], strict=True)):
            wgt = crop.weight
            resid += float(np.sum(wgt * (fz - crop.z) ** 2))
            n_pix += float(wgt.sum())
            var_sum += crop.variance * float(wgt.sum())
            for j, lat in enumerate(crop.lattices[:phases]):
                if (key, i, j) not in self._blind:
                    fj = fresh[i, j]
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


def label(method: str, strength) -> str:
    """``method(param=value)``: how a candidate is named in progress and in the scores."""
    name = STRENGTH_PARAM[method]
    value = f"{strength:.4g}" if isinstance(strength, float) else str(strength)
    return f"{method}({name}={value})"


def refine_candidates(method: str, grid: list, best) -> list:
    """Strengths to try next around the grid's best: outward at an edge, midpoints inside."""
    lo, hi = STRENGTH_BOUNDS[method]
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
