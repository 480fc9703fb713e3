"""Image-quality metrics of a restored image against a reference, and histograms.

Used by the comparison panel and the benchmarks: PSNR and SSIM with the data
range of the **reference** (so scores of different restorations of the same
reference are comparable), mean absolute error, the signed difference, and
intensity histograms on a shared binning (the low-dose TEM paper compares
restored and high-dose histograms on a log scale).

Examples
--------
>>> ref = np.linspace(0, 1, 64 * 64).reshape(64, 64)
>>> m = compare(ref + 0.01, ref)
>>> round(m["psnr"], 1), round(m["mae"], 3)
(40.0, 0.01)
"""

from __future__ import annotations

import math

import numpy as np

from ._args import MAX_MAGNITUDE, check_image, check_int, looks_rgb

__all__ = ["compare", "difference", "histograms"]


def _pair(image, reference) -> tuple[np.ndarray, np.ndarray]:
    a = check_image(image, "image", min_ndim=2, max_ndim=2, min_size=3)
    b = check_image(reference, "reference", min_ndim=2, max_ndim=2, min_size=3)
    if a.shape != b.shape:
        raise ValueError(
            f"image and reference must have the same shape; got {a.shape} and {b.shape}. "
            "Compare a restoration with its own source or high-dose twin."
        )
    return a, b


def compare(image, reference) -> dict[str, float]:
    """PSNR (dB), SSIM and MAE of ``image`` against ``reference`` (2-D frames).

    The data range is the reference's (max - min); a constant reference gives
    ``psnr = inf`` when the images are equal and SSIM on a unit range.
    """
    from skimage.metrics import structural_similarity

    a, b = _pair(image, reference)
    rng = float(b.max() - b.min()) or 1.0
    mse = float(np.mean((a - b) ** 2))
    psnr = math.inf if mse == 0 else 10 * math.log10(rng * rng / mse)
    win = min(7, *(s if s % 2 else s - 1 for s in a.shape))
    ssim = float(structural_similarity(a, b, data_range=rng, win_size=max(win, 3)))
    return {"psnr": psnr, "ssim": ssim, "mae": float(np.mean(np.abs(a - b)))}


def difference(image, reference):
    """``image - reference`` as float32; lazy (dask) when either input is.

    NaN propagates (a frame of a restoration still being computed is NaN); complex,
    infinite or out-of-range input is refused with a ValueError.
    """
    if hasattr(image, "chunks") or hasattr(reference, "chunks"):
        import dask.array as da

        a, b = da.asarray(image), da.asarray(reference)
        if a.shape != b.shape:
            raise ValueError(
                f"image and reference must have the same shape; got {a.shape} and {b.shape}."
            )
        return a.astype(np.float32) - b.astype(np.float32)
    a = _difference_operand(image, "image")
    b = _difference_operand(reference, "reference")
    if a.shape != b.shape:
        raise ValueError(
            f"image and reference must have the same shape; got {a.shape} and {b.shape}."
        )
    return a.astype(np.float32) - b.astype(np.float32)


def _difference_operand(x, name: str) -> np.ndarray:
    """A real array within float32's range; NaN is kept (a frame not yet computed)."""
    a = np.asarray(x)
    if a.ndim < 2 or a.size == 0 or looks_rgb(a.shape):
        raise ValueError(
            f"{name} must be a greyscale image or stack (..., rows, cols) with pixels; got "
            f"shape {a.shape}. Pass a 2-D frame or stack (convert RGB to greyscale first)."
        )
    if a.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must be a real numeric array; got dtype {a.dtype}. "
            f"Take the magnitude or real part first, e.g. np.abs({name})."
        )
    if a.dtype.kind in "iuf":
        finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
        n_inf = finite.size != a.size - (
            np.count_nonzero(np.isnan(a)) if a.dtype.kind == "f" else 0
        )
        if n_inf or (
            finite.size and float(np.max(np.abs(finite.astype(np.float64)))) > MAX_MAGNITUDE
        ):
            raise ValueError(
                f"{name} has infinite values or values beyond {MAX_MAGNITUDE:g}; "
                f"rescale it and replace infinities first, e.g. np.nan_to_num({name})."
            )
    return a


def histograms(*images, bins: int = 256) -> tuple[np.ndarray, list[np.ndarray]]:
    """Counts of every image on one shared binning: ``(edges, [counts, ...])``.

    Examples
    --------
    >>> edges, (c1, c2) = histograms(np.zeros((4, 4)), np.ones((4, 4)), bins=2)
    >>> edges.tolist(), c1.tolist(), c2.tolist()
    ([0.0, 0.5, 1.0], [16, 0], [0, 16])
    """
    bins = check_int(bins, "bins", low=1)
    arrays = [check_image(im, f"images[{i}]", min_ndim=1).ravel() for i, im in enumerate(images)]
    if not arrays:
        raise ValueError("histograms needs at least one image.")
    lo = min(float(a.min()) for a in arrays)
    hi = max(float(a.max()) for a in arrays)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    return edges, [np.histogram(a, bins=edges)[0] for a in arrays]
