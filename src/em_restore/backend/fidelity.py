"""Where a restoration is not supported by the counts: fidelity maps.

Under a correct restoration ``x̂`` of a raw image ``z``, the residual ``z - x̂`` is the
detector noise, whose statistics the image's own noise model
(:class:`~em_restore.backend.noise.NoiseModel`: Poisson–Gaussian variance function and
spatial correlation kernel) predicts. Normalised by that model,

    e = W[(z - F(x̂)) / sqrt(var(F(x̂)))]

is white with zero mean and unit variance, and independent of ``x̂`` (``F`` is the
forward model of the restoration: identity for a denoiser, the blur kernel for a
deconvolution; ``W`` whitens correlated noise by dividing its spectrum by the
kernel's). Where it is not, the restoration removed signal or invented it.

Local tests on ``e``, over sliding square windows of ``s × s`` pixels for several
``s`` (default 8, 12, 16 and 32), each a z-score that is standard normal under a
correct restoration:

* **mean** ``Σe / √N`` (two-sided): a region of signal added (a painted particle) or
  removed (an erased particle);
* **variance** ``(Σe²/N - 1) / (√Σ(2 + κ) / N)``, ``κ`` the Poisson excess kurtosis
  of each pixel: excess variance is texture invented or fine signal removed; a
  variance below :data:`NOISE_FITTED` of the prediction is noise kept in the
  restoration (tested against that level, not against 1, since every denoiser keeps
  a little of the noise);
* **correlation with the restoration's own detail** ``-Σe·d / √Σd²`` (one-sided):
  where the restoration paints structure ``p`` that the counts do not hold, the
  residual holds ``-p``, exactly anticorrelated with the painted detail. ``d`` is
  the restoration in noise units, centred twice: on 4 × 4 blocks (fine detail:
  granules, fringes of a few pixels) and on the window (coarser detail). A positive
  correlation (noise leaking into the restoration) is not flagged: every denoiser
  leaks a little.

The largest of these z-scores at a pixel, ``Z``, becomes the map
``1 / (1 + exp(-(Z - Z_0) / w))``: 0.5 at ``Z_0 =`` :data:`Z_FLAG`, which is
calibrated on correct restorations (the expected counts themselves) so that they
flag at most ~1–2 % of their area at the 0.5 level (``benchmarks/bench_fidelity.py``,
``docs/fidelity.md``). Sums are taken over 4 × 4 blocks first, so the map has a
resolution of 4 px and costs a few block sums per frame; it is interpolated back
to the frame's pixels.

Pixels whose normalised residual exceeds :data:`OUTLIER` (X-ray hits, hot and dead
pixels that the restoration rightly removed) are excluded from the tests and
counted in the summary.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
from scipy import ndimage as ndi

from ._args import check_image, check_int, short
from ._progress import Progress
from .noise import NoiseModel, estimate_noise
from .noise_model import check_noise_model

__all__ = [
    "BLOCK",
    "FLAG_LEVEL",
    "MIN_SIDE",
    "NOISE_FITTED",
    "SCALES",
    "Z_FLAG",
    "Fidelity",
    "fidelity",
    "fidelity_lazy",
    "fidelity_noise",
    "iter_fidelity",
    "model_variance",
]

#: Side of the blocks the sums are taken over (the map's resolution, px).
BLOCK = 4
#: Window sides of the local tests (px).
SCALES = (8, 12, 16, 32)
#: Window sides (px) of the mean test repeated at half-block (2 px) steps: small
#: regions (a particle 8-16 px across) rarely sit on the block grid.
FINE_SCALES: tuple[int, ...] = (8, 12)
#: z-score at which the map reaches 0.5 (calibrated: benchmarks/bench_fidelity.py).
Z_FLAG = 4.0
#: Width of the logistic that turns the z-score into the map.
Z_WIDTH = 0.5
#: The map level at which an area counts as flagged.
FLAG_LEVEL = 0.5
#: A local residual variance below this fraction of the predicted is "noise fitted".
NOISE_FITTED = 0.5
#: |normalised residual| beyond which a pixel is a detector defect, not a test sample.
OUTLIER = 6.0
#: Largest side of the crop the noise model is estimated on when none is given.
NOISE_CROP = 384
_TESTS = ("mean", "variance", "noise fitted", "detail")
#: Smallest frame side the tests (and the noise estimate) work on (px).
MIN_SIDE = 16


@dataclass(frozen=True)
class Fidelity:
    """A fidelity map with its summary.

    Attributes
    ----------
    map : ndarray
        float32 in [0, 1], the shape of ``raw``; 1 where the data do not support the
        restoration.
    summary : dict
        JSON-able: ``flagged_fraction`` (area with ``map >= 0.5``), ``chi2_ratio``
        (mean squared normalised residual; 1 for a correct restoration, > 1 when
        signal was removed or invented, < 1 when noise was kept), ``mean_z`` (the
        global mean of the normalised residual as a z-score), ``outliers``
        (defect pixels excluded), ``regions`` (the worst flagged regions, largest
        first: ``bbox`` ``[y0, x0, y1, x1]``, ``area`` in px, ``peak`` map value,
        ``test`` that fired most), ``tests`` (flagged area per test), the noise
        model and the test settings.
    """

    map: np.ndarray
    summary: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- noise


def fidelity_noise(raw, *, modality: str | None = None) -> NoiseModel:
    """The noise model the tests use when none is given: :func:`estimate_noise` on the
    central crop of at most ``NOISE_CROP²`` px of a 2-D frame (the model is a property
    of the detector, so a crop suffices and keeps the cost low)."""
    x = check_image(raw, "raw", min_ndim=2, max_ndim=2, min_size=16)
    h, w = x.shape
    ch, cw = min(h, NOISE_CROP), min(w, NOISE_CROP)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return estimate_noise(x[y0 : y0 + ch, x0 : x0 + cw], modality=modality)


# --------------------------------------------------------------------------- tests


def _is_scanned(noise: NoiseModel, modality: str | None) -> bool:
    """Scanned-probe data: per-line offsets are noise (the model's kernel is 1-D along x)."""
    ky, kx = noise.kernel.shape
    return modality in ("stem", "sem") or (ky == 1 and kx > 1)


def model_variance(noise: NoiseModel, level: np.ndarray) -> np.ndarray:
    """The model's variance at ``level`` (same dtype), floored at the readout variance,
    a quarter of a count and a tiny fraction of the largest (so no pixel has none)."""
    dt = level.dtype.type
    var = dt(noise.gain) * (level - dt(noise.offset)) + dt(noise.readout_sigma**2)
    floor = max(noise.readout_sigma**2, 0.25 * noise.gain**2, 1e-12 * float(var.max()) + 1e-30)
    return np.maximum(var, dt(floor))


def _normalised_residual(raw: np.ndarray, fit: np.ndarray, noise: NoiseModel, lines: bool):
    """(e, sigma, var, holes): the residual in noise units, whitened, float32, and the
    (rows, cols) of its isolated outliers (zero in ``e``; None: there are none)."""
    f32 = np.float32
    fit32 = fit.astype(f32, copy=False)
    var = model_variance(noise, fit32)
    sigma = np.sqrt(var)
    e = (raw.astype(f32, copy=False) - fit32) / sigma
    if noise.is_correlated():
        psd = noise.psd(e.shape)[:, : e.shape[1] // 2 + 1]
        spec = scipy.fft.rfft2(np.clip(e, -OUTLIER, OUTLIER))
        e = scipy.fft.irfft2(spec / np.sqrt(np.maximum(psd, 0.05)), s=e.shape).astype(np.float32)
    holes = None
    size = np.abs(e)
    big = size > OUTLIER
    if big.any():
        # isolated extreme pixels are detector defects (X-ray hits, hot or dead pixels)
        # that a restoration rightly removes; a contiguous region of them is a finding
        ys, xs = np.nonzero(big)
        loud = np.pad(size > 3.0, 1)
        near = sum(loud[ys + 1 + dy, xs + 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
        isolated = near <= 3
        if isolated.any():
            holes = (ys[isolated], xs[isolated])
            e[holes] = 0
        np.clip(e, -2 * OUTLIER, 2 * OUTLIER, out=e)
    if lines:
        # scan-line offsets are detector noise that no restoration should keep; the
        # noise model's short kernel does not describe them, so each row's mean goes
        e = e - np.clip(e, -3, 3).mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    return e, sigma, var, holes


def _kurtosis(var: np.ndarray, noise: NoiseModel) -> np.ndarray:
    """Excess kurtosis of a standardised Poisson–Gaussian pixel, gain² (var - read²) / var²
    (evaluated on block means of the variance: it varies slowly)."""
    poisson = np.maximum(var - noise.readout_sigma**2, 0.0)
    return np.minimum(noise.gain**2 * poisson / (var * var), 50.0)


def _pad_to_blocks(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    ph, pw = (-h) % BLOCK, (-w) % BLOCK
    return np.pad(a, ((0, ph), (0, pw)), mode="reflect") if ph or pw else a


def _block_sum(a: np.ndarray) -> np.ndarray:
    # strided adds: ~10x faster than a reshape-sum over two axes
    cols = sum(a[:, i::BLOCK] for i in range(BLOCK))
    return sum(cols[i::BLOCK] for i in range(BLOCK)).astype(np.float64)


def _integral(grids: np.ndarray, pad: int, dtype=np.float64) -> np.ndarray:
    """Integral images (q, gh + 2 pad + 1, gw + 2 pad + 1) of each grid in ``grids``
    (q, gh, gw) over a reflected border of ``pad`` (in ``dtype``: float32 only for grids
    whose running totals stay small against a window's sum)."""
    p = np.pad(grids.astype(dtype, copy=False), ((0, 0), (pad, pad), (pad, pad)), mode="symmetric")
    c = np.zeros((grids.shape[0], p.shape[1] + 1, p.shape[2] + 1), dtype)
    np.cumsum(p, axis=1, out=c[:, 1:, 1:])
    np.cumsum(c[:, 1:, 1:], axis=2, out=c[:, 1:, 1:])
    return c


def _box(c: np.ndarray, k: int, pad: int) -> np.ndarray:
    """Sliding sums over k × k blocks from the integral images ``c`` of :func:`_integral`."""
    gh, gw = c.shape[1] - 2 * pad - 1, c.shape[2] - 2 * pad - 1
    lo = pad - k // 2
    hi = lo + k
    w = np.subtract(c[:, hi : hi + gh, hi : hi + gw], c[:, lo : lo + gh, hi : hi + gw])
    w -= c[:, hi : hi + gh, lo : lo + gw]
    w += c[:, lo : lo + gh, lo : lo + gw]
    return w


def _window_sums(grids: np.ndarray, ks: tuple[int, ...], dtype=np.float64) -> dict[int, np.ndarray]:
    """Sliding sums over k × k blocks of each grid in ``grids`` (q, gh, gw), for each k.

    Integral images over a reflected border: one cumulative sum for all k.
    """
    pad = max(ks) // 2 + 1
    c = _integral(grids, pad, dtype)
    return {k: _box(c, k, pad) for k in ks}


def _invalid_counts(shape, where: tuple[np.ndarray, np.ndarray], step: int) -> np.ndarray:
    """Number of invalid pixels (at ``where``: they are few) in each ``step`` × ``step``
    block of a frame of ``shape`` (float64)."""
    cnt = np.zeros((shape[0] // step, shape[1] // step))
    np.add.at(cnt, (where[0] // step, where[1] // step), 1.0)
    return cnt


def _tests_at(ce: np.ndarray, cr: np.ndarray, k: int, pad: int) -> np.ndarray:
    """(tests, gh, gw) z-scores of each test over k × k blocks, from the integral images
    of the residual's block sums ``ce`` (n, Σe, Σe² - n, Σ kurtosis term; float32) and
    of the restoration's ``cr`` (Σr, Σr², Σer, fine Σer, fine Σr²; float64)."""
    wn, w1, w2, wk = _box(ce, k, pad).astype(np.float64)
    wr, wrr, wer, wfer, wfrr = _box(cr, k, pad)
    w2 += wn
    n = np.maximum(wn, 1.0)
    v = w2 / n
    sd_v = np.sqrt(np.maximum(wk, 2.0)) / n
    eps = 1e-2 * n  # a flat restoration has no detail to correlate with
    z_fine = -wfer / np.sqrt(np.maximum(wfrr, 0.0) + eps)
    c_er = wer - w1 * wr / n
    c_rr = np.maximum(wrr - wr * wr / n, 0.0)
    z_coarse = -c_er / np.sqrt(c_rr + eps)
    return np.stack(
        [
            np.abs(w1) / np.sqrt(n),
            (v - 1.0) / sd_v,
            (NOISE_FITTED - v) / sd_v,
            np.maximum(z_fine, z_coarse),
        ]
    )


def _z_maps(e, var, holes, restored_n, scales, noise) -> tuple[np.ndarray, tuple[float, float]]:
    """((tests, gh, gw) largest z-score of each test over the scales on the block grid,
    (Σe, Σe²) over the frame). ``holes``: (rows, cols) of the pixels that are not samples
    (zero in ``e`` and ``restored_n``: only the counts need them), or None."""
    kappa = _kurtosis(_block_sum(var) / (BLOCK * BLOCK), noise)
    s1 = _block_sum(e)
    s2 = _block_sum(e * e)
    sr = _block_sum(restored_n)
    srr = _block_sum(restored_n * restored_n)
    ser = _block_sum(e * restored_n)
    n_pix = np.full(s1.shape, float(BLOCK * BLOCK))
    if holes is not None:
        n_pix -= _invalid_counts(e.shape, holes, BLOCK)
    sk = n_pix * (2.0 + kappa)
    nb = np.maximum(n_pix, 1.0)
    # fine detail: the restoration centred on each block
    fine_er = ser - s1 * sr / nb
    fine_rr = np.maximum(srr - sr * sr / nb, 0.0)
    ks = tuple(sorted({max(1, s // BLOCK) for s in scales}))
    pad = max(ks) // 2 + 1
    # float32 for the residual's sums: they are centred on their expectation (counts are
    # exact), so running totals stay small; the restoration's need float64
    ce = _integral(np.stack([n_pix, s1, s2 - n_pix, sk]), pad, np.float32)
    cr = _integral(np.stack([sr, srr, ser, fine_er, fine_rr]), pad)
    out = np.maximum.reduce([_tests_at(ce, cr, k, pad) for k in ks])
    if FINE_SCALES:
        np.maximum(out[0], _fine_mean_z(e, holes, FINE_SCALES), out=out[0])
    return out, (float(s1.sum()), float(s2.sum()))


def _fine_mean_z(e, holes, sides) -> np.ndarray:
    """The mean test over windows of ``sides`` px at half-block (2 px) steps, max-pooled
    to the block grid: (gh, gw). ``holes``: (rows, cols) of the invalid pixels (zero in
    ``e``), or None: every pixel is a sample."""
    half = BLOCK // 2

    def sums_of(a):
        return sum(a[i::half, j::half] for i in range(half) for j in range(half))

    ks = tuple(sorted({max(1, s // half) for s in sides}))
    # float32 sums: residuals in noise units, whose running totals stay far below 1e7
    if holes is None:  # every window holds (half k)² samples (the border is reflected)
        wins = _window_sums(sums_of(e)[None], ks, np.float32)
        zs = [np.abs(wins[k][0]) / np.float32(half * k) for k in ks]
    else:
        counts = np.float32(half * half) - _invalid_counts(e.shape, holes, half).astype(np.float32)
        wins = _window_sums(np.stack([counts, sums_of(e)]), ks, np.float32)
        zs = [np.abs(wins[k][1]) / np.sqrt(np.maximum(wins[k][0], 1.0)) for k in ks]
    best = np.maximum.reduce(zs)
    gh, gw = best.shape[0] // 2, best.shape[1] // 2
    return np.maximum.reduce([best[i::2, j::2][:gh, :gw] for i in (0, 1) for j in (0, 1)])


def _upsample_axis(c: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation by BLOCK along ``axis``, block centres at (BLOCK - 1) / 2 +
    BLOCK i, constant beyond the first and last centre (no BLAS: slices only)."""
    c = np.moveaxis(c, axis, 0)
    n = c.shape[0]
    prev = np.concatenate([c[:1], c[:-1]])
    nxt = np.concatenate([c[1:], c[-1:]])
    out = np.empty((n * BLOCK, *c.shape[1:]), np.float32)
    for r in range(BLOCK):
        o = (r - (BLOCK - 1) / 2.0) / BLOCK  # offset of pixel r from its block centre
        out[r::BLOCK] = c + (o * (nxt - c) if o > 0 else -o * (prev - c))
    return np.moveaxis(out, 0, axis)


def _upsample(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Block grid -> pixels of ``shape`` (a multiple of BLOCK), bilinear."""
    c = coarse.astype(np.float32)
    return _upsample_axis(_upsample_axis(c, 0), 1)[: shape[0], : shape[1]]


def _score(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-(z - Z_FLAG) / Z_WIDTH))


def _regions(coarse: np.ndarray, which: np.ndarray, shape, k: int = 10) -> list[dict]:
    """The worst flagged regions, from the block-grid map (bboxes in pixels)."""
    flagged = coarse >= FLAG_LEVEL
    labels, n = ndi.label(flagged)
    if n == 0:
        return []
    idx = np.arange(1, n + 1)
    areas = ndi.sum_labels(np.ones_like(coarse), labels, idx) * BLOCK * BLOCK
    peaks = ndi.maximum(coarse, labels, idx)
    boxes = ndi.find_objects(labels)
    out = []
    for i in np.argsort(-(areas * peaks))[:k]:
        sl = boxes[i]
        tests = which[sl][labels[sl] == i + 1]
        y0, x0 = sl[0].start * BLOCK, sl[1].start * BLOCK
        y1, x1 = min(sl[0].stop * BLOCK, shape[0]), min(sl[1].stop * BLOCK, shape[1])
        out.append(
            {
                "bbox": [int(y0), int(x0), int(y1), int(x1)],
                "area": int(min(areas[i], (y1 - y0) * (x1 - x0))),
                "peak": round(float(peaks[i]), 4),
                "test": _TESTS[int(np.bincount(tests, minlength=len(_TESTS)).argmax())],
            }
        )
    return out


def _check_pair(raw, restored) -> tuple[np.ndarray, np.ndarray]:
    z = check_image(raw, "raw", min_ndim=2, max_ndim=2)
    r = check_image(restored, "restored", min_ndim=2, max_ndim=2, keep_float32=True)
    if z.shape != r.shape:
        raise ValueError(
            f"raw and restored must have the same shape; got {z.shape} and {r.shape}. "
            "Check the restoration of the same frame (crop or resample it first)."
        )
    if min(z.shape) < MIN_SIDE:
        raise ValueError(
            f"the frame is {z.shape[0]}×{z.shape[1]} px; the fidelity tests need at least "
            f"{MIN_SIDE}×{MIN_SIDE} px. Check a larger region."
        )
    return z, r


def _check_scales(scales) -> tuple[int, ...]:
    try:
        out = tuple(check_int(s, "scales[i]", low=BLOCK, high=256) for s in scales)
    except TypeError:
        raise ValueError(
            f"scales must be window sides in px (e.g. (8, 16, 32)); got {short(scales)}."
        ) from None
    if not out:
        raise ValueError("scales is empty; pass window sides in px, e.g. (8, 16, 32).")
    return out


def _frame_fidelity(
    raw: np.ndarray,
    restored: np.ndarray,
    noise: NoiseModel,
    scales: tuple[int, ...],
    forward: Callable[[np.ndarray], np.ndarray] | None,
    lines: bool = False,
) -> tuple[np.ndarray, dict]:
    """Unchecked core on one frame: (map float32, summary)."""
    fit = restored if forward is None else np.asarray(forward(restored), dtype=np.float64)
    e, sigma, var, holes = _normalised_residual(raw, fit, noise, lines)
    # the restoration in noise units; one global scale (not the local sigma), so that
    # an offset stays a constant that the block and window centring remove
    # (any constant centres it; a subsample gives the scale to well under a percent)
    scale = float(np.median(sigma[::4, ::4]))
    centre = float(np.mean(restored[::4, ::4]))
    restored_n = (restored.astype(np.float32) - np.float32(centre)) * np.float32(1.0 / scale)
    if holes is not None:
        restored_n[holes] = 0
    h, w = raw.shape
    padded = bool(h % BLOCK or w % BLOCK)
    holes_padded = holes
    if holes is not None and padded:  # the reflected border repeats some of them
        valid = np.ones(e.shape, bool)
        valid[holes] = False
        holes_padded = np.nonzero(~_pad_to_blocks(valid))
    z, (sum_e, sum_e2) = _z_maps(
        _pad_to_blocks(e),
        _pad_to_blocks(var),
        holes_padded,
        _pad_to_blocks(restored_n),
        scales,
        noise,
    )
    if padded:  # the block sums hold reflected border pixels: sum the frame itself
        sum_e = float(np.sum(e, dtype=np.float64))
        sum_e2 = float(np.sum(e * e, dtype=np.float64))
    which = z.argmax(axis=0)
    coarse = _score(z.max(axis=0))
    m = np.clip(_upsample(coarse, (h + (-h) % BLOCK, w + (-w) % BLOCK))[:h, :w], 0, 1)
    flagged = m >= FLAG_LEVEL
    # area per test, on the block grid (each block's pixels in the frame)
    cover = np.ones_like(coarse)
    if h % BLOCK:
        cover[-1, :] *= (h % BLOCK) / BLOCK
    if w % BLOCK:
        cover[:, -1] *= (w % BLOCK) / BLOCK
    flagged_blocks = (coarse >= FLAG_LEVEL) * cover
    per_test = {
        t: round(float(flagged_blocks[which == i].sum() / cover.sum()), 5)
        for i, t in enumerate(_TESTS)
    }
    n_out = 0 if holes is None else int(holes[0].size)
    n_valid = max(e.size - n_out, 1)
    summary = {
        "flagged_fraction": round(float(flagged.mean()), 5),
        "chi2_ratio": round(sum_e2 / n_valid, 5),
        "mean_z": round(sum_e / math.sqrt(n_valid), 3),
        "outliers": n_out,
        "tests": per_test,
        "regions": _regions(coarse, which, (h, w)),
    }
    return m.astype(np.float32, copy=False), summary


def _settings(noise: NoiseModel, scales, forward, lines: bool) -> dict:
    return {
        "noise": noise.to_dict(),
        "scan_lines_removed": bool(lines),
        "scales": list(scales),
        "fine_mean_scales": list(FINE_SCALES),
        "block": BLOCK,
        "z_flag": Z_FLAG,
        "flag_level": FLAG_LEVEL,
        "forward": None if forward is None else getattr(forward, "__name__", "forward"),
    }


def fidelity(
    raw,
    restored,
    noise_model: NoiseModel | None = None,
    *,
    modality: str | None = None,
    scales=SCALES,
    forward: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Fidelity:
    """Map where a restoration of one frame is not supported by the raw counts.

    Parameters
    ----------
    raw : (rows, cols) array_like
        The raw frame in ADU (as recorded: gain and offset unknown is fine).
    restored : (rows, cols) array_like
        Its restoration, in the same units (any tool's).
    noise_model : NoiseModel, optional
        The raw data's noise; default :func:`fidelity_noise` (estimated from ``raw``).
    modality : {"tem", "stem", "sem"}, optional
        Prior for the noise estimate (scanned-probe noise is correlated along x).
    scales : sequence of int
        Window sides of the local tests, multiples of 4 px work best.
    forward : callable, optional
        Forward model applied to ``restored`` before the comparison (e.g. the blur
        kernel of a deconvolution: the raw frame is the blurred image plus noise).

    Returns
    -------
    Fidelity
        ``map`` (float32, [0, 1], 1 = not supported) and ``summary``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = np.full((128, 128), 20.0)
    >>> raw = rng.poisson(truth).astype(float)
    >>> painted = truth.copy(); painted[40:80, 40:80] += 6.0   # a square the data lack
    >>> nm = NoiseModel(gain=1.0, offset=0.0, readout_sigma=0.0)
    >>> fidelity(raw, truth, nm).summary["flagged_fraction"] < 0.02
    True
    >>> bool(fidelity(raw, painted, nm).map[60, 60] > 0.9)
    True
    """
    z, r = _check_pair(raw, restored)
    scales = _check_scales(scales)
    if noise_model is None:
        noise_model = fidelity_noise(z, modality=modality)
    else:
        check_noise_model(
            noise_model,
            "noise_model",
            "Pass the detector's noise model (em_restore.backend.noise.estimate_noise(raw)), "
            "or None to estimate it.",
        )
    lines = _is_scanned(noise_model, modality)
    m, summary = _frame_fidelity(z, r, noise_model, scales, forward, lines)
    summary.update(_settings(noise_model, scales, forward, lines))
    return Fidelity(m, summary)


def _frames(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    return list(np.ndindex(*shape[:-2]))


def iter_fidelity(
    raw,
    restored,
    noise_model: NoiseModel | None = None,
    *,
    modality: str | None = None,
    scales=SCALES,
    forward=None,
) -> Generator[Progress, None, Fidelity]:
    """:func:`fidelity` over every frame of a stack, one Progress per frame.

    ``raw`` and ``restored`` may be numpy or dask arrays of the same shape
    ``(..., rows, cols)``; one frame of each is read at a time. The noise model is
    estimated once, on the middle frame, unless given. The summary pools the
    frames (``flagged_fraction``, ``chi2_ratio`` averaged) and lists each frame's.
    """
    if tuple(raw.shape) != tuple(restored.shape):
        raise ValueError(
            f"raw and restored must have the same shape; got {tuple(raw.shape)} and "
            f"{tuple(restored.shape)}. Check the restoration of the same stack."
        )
    if len(raw.shape) < 2:
        raise ValueError(f"raw must be a frame or a stack of frames; got shape {raw.shape}.")
    scales = _check_scales(scales)
    frames = _frames(tuple(raw.shape))
    if noise_model is None:
        mid = frames[len(frames) // 2]
        noise_model = fidelity_noise(np.asarray(raw[mid]), modality=modality)
    out = np.zeros(tuple(raw.shape), np.float32)
    per_frame = []
    for i, idx in enumerate(frames):
        yield Progress(i, len(frames), "checking fidelity")
        f = fidelity(
            np.asarray(raw[idx]),
            np.asarray(restored[idx]),
            noise_model,
            modality=modality,
            scales=scales,
            forward=forward,
        )
        out[idx] = f.map
        per_frame.append(f.summary)
    yield Progress(len(frames), len(frames), "checking fidelity")
    if len(frames) == 1:
        return Fidelity(out, per_frame[0])
    summary = {
        "flagged_fraction": round(float(np.mean([s["flagged_fraction"] for s in per_frame])), 5),
        "chi2_ratio": round(float(np.mean([s["chi2_ratio"] for s in per_frame])), 5),
        "outliers": int(sum(s["outliers"] for s in per_frame)),
        "frames": [
            {k: s[k] for k in ("flagged_fraction", "chi2_ratio", "mean_z", "regions")}
            for s in per_frame
        ],
        **_settings(noise_model, scales, forward, _is_scanned(noise_model, modality)),
    }
    return Fidelity(out, summary)


def fidelity_lazy(
    raw, restored, noise_model: NoiseModel, *, modality=None, scales=SCALES, forward=None
):
    """The fidelity map of a stack as a dask array, one frame per chunk.

    ``raw`` and ``restored`` are dask (or numpy) arrays of the same shape; the noise
    model is required (estimate it once, e.g. with :func:`fidelity_noise` on one frame).
    ``forward`` is one callable for every frame or a sequence of them, one per frame
    (in C order over the leading axes), e.g. each burst window's own blur.
    """
    import dask.array as da

    if not isinstance(noise_model, NoiseModel):
        raise ValueError(
            f"noise_model must be a NoiseModel; got {short(noise_model)}. Estimate it "
            "once with fidelity_noise(frame)."
        )
    if tuple(raw.shape) != tuple(restored.shape):
        raise ValueError(
            f"raw and restored must have the same shape; got {tuple(raw.shape)} and "
            f"{tuple(restored.shape)}."
        )
    scales = _check_scales(scales)
    lines = _is_scanned(noise_model, modality)
    lead = len(raw.shape) - 2
    chunks = (1,) * lead + tuple(raw.shape[-2:])
    a = da.asarray(raw).rechunk(chunks)
    b = da.asarray(restored).rechunk(chunks)

    lead_shape = tuple(raw.shape[:-2])
    per_frame = isinstance(forward, list | tuple)
    if per_frame and len(forward) != int(np.prod(lead_shape, dtype=int)):
        raise ValueError(
            f"forward has {len(forward)} entries for {int(np.prod(lead_shape, dtype=int))} "
            "frames; give one callable, or one per frame."
        )

    def block(x, y, block_info=None):
        xs = x.reshape(x.shape[-2:])
        ys = y.reshape(y.shape[-2:])
        fwd = forward
        if per_frame:
            loc = tuple(block_info[0]["chunk-location"][:lead]) if block_info else (0,) * lead
            fwd = forward[int(np.ravel_multi_index(loc, lead_shape)) if lead else 0]
        m, _ = _frame_fidelity(
            np.asarray(xs, np.float64),
            np.asarray(ys, np.float64),
            noise_model,
            scales,
            fwd,
            lines,
        )
        return m.reshape(x.shape)

    return da.map_blocks(block, a, b, dtype=np.float32)
