"""Blur kernels (point-spread functions) as forward operators.

Kernels are separate from any solver: deconvolution code builds on
:func:`convolve` and :func:`psf_to_otf`.

Conventions
-----------
* Every kernel made here is a 2-D float64 array of odd size, nonnegative, summing
  to 1, whose origin (zero displacement) is the central pixel ``(size // 2, size // 2)``.
  Symmetric kernels (Gaussian, disk, straight motion) have their centre of mass
  exactly there.
* Coordinates are ``(y, x)`` in pixels, ``y`` down the rows, ``x`` along the
  columns. Angles are in degrees, counter-clockwise *as displayed* (rows grow
  downwards), measured from the +x axis: ``angle_deg=90`` points up the screen,
  towards row 0.
* :func:`convolve` is a true convolution, ``out(p) = sum_s psf(s) image(p - s)``
  with ``s`` measured from the kernel centre ``(ky // 2, kx // 2)``, so a delta at
  ``(y0, x0)`` becomes the kernel centred at ``(y0, x0)``. With
  ``boundary="reflect"`` or ``"wrap"`` it equals
  ``scipy.ndimage.convolve(image, psf, mode=boundary)`` for odd kernels.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from ._args import as_rng, check_choice, check_image, check_int, check_real

__all__ = [
    "convolve",
    "disk_psf",
    "gaussian_psf",
    "motion_psf",
    "pad_psf",
    "parse_psf",
    "path_psf",
    "psf_to_otf",
    "random_motion_path",
]

_SPLAT_STEP_PX = 0.05  # path sampling step for bilinear splatting


def _check_size(size, name: str = "size") -> int | None:
    if size is None:
        return None
    s = check_int(size, name, low=1, hint="Pass an odd kernel size such as 15, or None.")
    if s % 2 == 0:
        raise ValueError(
            f"{name} must be odd so the kernel has a central pixel; got {s}. Use {s + 1}."
        )
    return s


def _delta(size: int | None) -> np.ndarray:
    s = 1 if size is None else size
    k = np.zeros((s, s))
    k[s // 2, s // 2] = 1.0
    return k


def gaussian_psf(sigma: float | tuple[float, float], size: int | None = None) -> np.ndarray:
    """Gaussian kernel, sampled at pixel centres (probe, scintillator or vibration blur).

    Parameters
    ----------
    sigma : float or (float, float)
        Standard deviation in pixels, isotropic or ``(sigma_y, sigma_x)``. ``0``
        gives a delta.
    size : int, optional
        Odd side length. Default ``2 * ceil(4 * max(sigma)) + 1`` (at least 3 when
        ``sigma > 0``).

    Returns
    -------
    psf : (size, size) float64 ndarray
        Nonnegative, sums to 1, centred. For ``sigma >= 1`` the second moment along
        each axis equals ``sigma**2`` to better than 0.1 %.

    Examples
    --------
    >>> k = gaussian_psf(2.0)
    >>> k.shape, round(float(k.sum()), 12)
    ((17, 17), 1.0)
    """
    if np.ndim(sigma) == 0:
        sy = sx = check_real(sigma, "sigma", low=0, hint="Use sigma=0 for no blur.")
    else:
        s = tuple(np.ravel(sigma))
        if len(s) != 2:
            raise ValueError(f"sigma must be a number or a (sigma_y, sigma_x) pair; got {sigma!r}.")
        sy, sx = (check_real(v, f"sigma[{i}]", low=0) for i, v in enumerate(s))
    size = _check_size(size)
    if sy == 0 and sx == 0:
        return _delta(size)
    if size is None:
        size = 2 * max(1, math.ceil(4 * max(sy, sx))) + 1
    r = np.arange(size, dtype=np.float64) - size // 2
    gy = np.exp(-0.5 * (r / sy) ** 2) if sy > 0 else (r == 0).astype(float)
    gx = np.exp(-0.5 * (r / sx) ** 2) if sx > 0 else (r == 0).astype(float)
    k = np.outer(gy, gx)
    return k / k.sum()


def disk_psf(radius: float, size: int | None = None, *, supersample: int = 8) -> np.ndarray:
    """Uniform disk (defocus / pill-box) kernel with an anti-aliased edge.

    Each pixel's weight is the fraction of its area inside the circle of
    ``radius`` pixels centred on the central pixel, estimated on a
    ``supersample x supersample`` grid of sub-pixels.

    Parameters
    ----------
    radius : float
        Radius in pixels, ``>= 0`` (``0`` gives a delta).
    size : int, optional
        Odd side length; default ``2 * ceil(radius + 0.5) + 1``.
    supersample : int
        Sub-pixels per axis for the edge coverage (default 8).

    Returns
    -------
    psf : (size, size) float64 ndarray
        Sums to 1. Interior pixels equal ``1 / (pi radius**2)`` (up to the
        sub-pixel sampling of the edge), so ``1 / psf.max()`` estimates the area.

    Examples
    --------
    >>> k = disk_psf(5.0)
    >>> bool(abs(1 / k.max() / (np.pi * 25) - 1) < 0.01)
    True
    """
    radius = check_real(radius, "radius", low=0, hint="Use radius=0 for no blur.")
    size = _check_size(size)
    ss = check_int(supersample, "supersample", low=1, high=64)
    if radius == 0:
        return _delta(size)
    if size is None:
        size = 2 * math.ceil(radius + 0.5) + 1
    sub = (np.arange(size * ss, dtype=np.float64) + 0.5) / ss - 0.5 - size // 2
    inside = (sub[:, None] ** 2 + sub[None, :] ** 2) <= radius**2
    cover = inside.reshape(size, ss, size, ss).mean(axis=(1, 3))
    total = cover.sum()
    if total == 0:  # radius far below a sub-pixel: behaves as a delta
        return _delta(size)
    return cover / total


def motion_psf(length: float, angle_deg: float, size: int | None = None) -> np.ndarray:
    """Linear motion-blur kernel: a segment of ``length`` pixels through the centre.

    The segment is rasterised with bilinear splatting of closely spaced points
    (anti-aliased), uniform speed.

    Parameters
    ----------
    length : float
        Travel during the exposure in pixels, ``>= 0`` (``0`` gives a delta).
    angle_deg : float
        Direction, degrees counter-clockwise as displayed from the +x axis
        (``0``: horizontal, ``90``: vertical).
    size : int, optional
        Odd side length; default just large enough.

    Returns
    -------
    psf : (size, size) float64 ndarray

    Examples
    --------
    >>> k = motion_psf(6, 0)
    >>> k.shape, round(float(k[4].sum()), 12)
    ((9, 9), 1.0)
    """
    length = check_real(length, "length", low=0, hint="Use length=0 for no blur.")
    angle = math.radians(check_real(angle_deg, "angle_deg"))
    d = np.array([-math.sin(angle), math.cos(angle)]) * (length / 2)
    return path_psf(np.stack([-d, d]), size)


def path_psf(path_yx, size: int | None = None) -> np.ndarray:
    """Kernel of an arbitrary motion path (irregular drift or vibration during exposure).

    Parameters
    ----------
    path_yx : (N, 2) array_like
        Displacements ``(dy, dx)`` in pixels, relative to the kernel centre, at
        ``N`` equally spaced instants of the exposure (constant velocity between
        consecutive points, so every segment gets the same weight ``1/(N-1)``,
        whatever its length). ``N = 1`` gives a (possibly sub-pixel shifted) delta.
        The kernel is the fraction of exposure time spent at each displacement,
        rasterised by bilinear splatting of points every 0.05 px.
    size : int, optional
        Odd side length; default ``2 * (floor(max |displacement|) + 1) + 1``.

    Returns
    -------
    psf : (size, size) float64 ndarray
        Nonnegative, sums to 1. The origin of ``path_yx`` is the central pixel; its
        centre of mass is the time-averaged displacement of the path.

    Examples
    --------
    >>> k = path_psf([[0, 0], [0, 2], [2, 2]])
    >>> k.shape, round(float(k.sum()), 12)
    ((7, 7), 1.0)
    """
    p = np.asarray(path_yx, dtype=np.float64) if _is_numeric(path_yx) else None
    if p is None or p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 1:
        shape = None if p is None else p.shape
        raise ValueError(
            f"path_yx must be an (N, 2) array of (dy, dx) pixel displacements; got shape "
            f"{shape}. Pass e.g. [[0, -3], [0, 3]]."
        )
    if not np.isfinite(p).all():
        raise ValueError("path_yx contains NaN or infinite values; remove them.")
    size = _check_size(size)
    reach = float(np.abs(p).max())
    if size is None:
        half = math.floor(reach) + 1
        size = 2 * half + 1
    else:
        half = size // 2
        if reach >= half:
            raise ValueError(
                f"size={size} is too small for path_yx, which reaches {reach:.2f} px from "
                f"the centre; use size >= {2 * (math.floor(reach) + 1) + 1} or size=None."
            )
    if p.shape[0] == 1:
        pts, w = p, np.ones(1)
    else:
        seg = np.diff(p, axis=0)
        seg_len = np.hypot(seg[:, 0], seg[:, 1])
        m = np.maximum(1, np.ceil(seg_len / _SPLAT_STEP_PX).astype(np.int64))
        idx = np.repeat(np.arange(seg.shape[0]), m)
        starts = np.cumsum(m) - m
        frac = (np.arange(idx.size) - starts[idx] + 0.5) / m[idx]
        pts = p[idx] + frac[:, None] * seg[idx]
        w = 1.0 / (seg.shape[0] * m[idx])
    return _splat(pts + half, w, size)


def _is_numeric(x) -> bool:
    try:
        return np.asarray(x).dtype.kind in "biuf"
    except (ValueError, TypeError):
        return False


def _splat(pts: np.ndarray, w: np.ndarray, size: int) -> np.ndarray:
    """Bilinear splat of weighted points (pixel coordinates) into a size x size grid."""
    base = np.floor(pts).astype(np.int64)
    f = pts - base
    out = np.zeros(size * size)
    for dy in (0, 1):
        wy = f[:, 0] if dy else 1.0 - f[:, 0]
        for dx in (0, 1):
            wx = f[:, 1] if dx else 1.0 - f[:, 1]
            iy = np.clip(base[:, 0] + dy, 0, size - 1)  # clipped only where weight is 0
            ix = np.clip(base[:, 1] + dx, 0, size - 1)
            out += np.bincount(iy * size + ix, weights=w * wy * wx, minlength=size * size)
    out = out.reshape(size, size)
    out[out < 0] = 0.0
    return out / out.sum()


def random_motion_path(
    length: float,
    *,
    rng: int | np.random.Generator | None = None,
    curvature: float = 1.0,
    n_points: int | None = None,
) -> np.ndarray:
    """Random smooth motion path of a given arc length, for :func:`path_psf`.

    The heading starts in a uniformly random direction and performs a Gaussian
    random walk; the speed is constant.

    Parameters
    ----------
    length : float
        Arc length in pixels, ``>= 0``.
    rng : None, int or numpy.random.Generator
        Seed or generator.
    curvature : float
        Standard deviation (radians) of the total change of heading from start to
        end. ``0`` gives a straight segment; ``~1`` a gentle arc; ``> 3`` tangles.
    n_points : int, optional
        Number of vertices (>= 2); default ``max(2, ceil(4 * length) + 1)``.

    Returns
    -------
    path_yx : (n_points, 2) float64 ndarray
        Equally time-spaced displacements in pixels, centred so that the kernel's
        centre of mass is at the origin (no net shift).

    Examples
    --------
    >>> p = random_motion_path(10, rng=0)
    >>> round(float(np.hypot(*np.diff(p, axis=0).T).sum()), 9)
    10.0
    """
    length = check_real(length, "length", low=0)
    curvature = check_real(curvature, "curvature", low=0)
    gen = as_rng(rng)
    if n_points is None:
        n_points = max(2, math.ceil(4 * length) + 1)
    n = check_int(n_points, "n_points", low=2)
    heading = gen.uniform(0, 2 * np.pi) + np.concatenate(
        [[0.0], np.cumsum(gen.normal(0, curvature / math.sqrt(max(n - 2, 1)), n - 2))]
    )
    step = length / (n - 1)
    steps = np.stack([-np.sin(heading), np.cos(heading)], axis=1) * step
    path = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    centroid = 0.5 * (path[1:] + path[:-1]).mean(axis=0)
    return path - centroid


def pad_psf(psf, shape: tuple[int, int]) -> np.ndarray:
    """Embed a centred kernel in a ``shape`` array with its centre at index (0, 0).

    This is ``ifftshift`` of the zero-padded kernel: offset ``s`` from the kernel
    centre ``(ky // 2, kx // 2)`` lands at index ``s mod shape``. Kernels larger
    than ``shape`` wrap around (periodic folding).

    Parameters
    ----------
    psf : (ky, kx) array_like
    shape : (int, int)

    Returns
    -------
    (shape) float64 ndarray

    Examples
    --------
    >>> pad_psf(np.arange(9.0).reshape(3, 3), (4, 4))[0, :2]
    array([4., 5.])
    """
    k = check_image(psf, "psf", min_ndim=2, max_ndim=2)
    ly, lx = (check_int(s, f"shape[{i}]", low=1) for i, s in enumerate(tuple(shape)[-2:]))
    ky, kx = k.shape
    iy = (np.arange(ky) - ky // 2) % ly
    ix = (np.arange(kx) - kx // 2) % lx
    out = np.zeros((ly, lx))
    if ky <= ly and kx <= lx:
        out[np.ix_(iy, ix)] = k
    else:
        np.add.at(out, (iy[:, None], ix[None, :]), k)
    return out


def psf_to_otf(psf, shape: tuple[int, int], *, real: bool = False) -> np.ndarray:
    """Optical transfer function: FFT of the kernel centred at the origin of ``shape``.

    Multiplying ``fft2(image) * psf_to_otf(psf, image.shape)`` and inverting gives
    the *circular* convolution (``boundary="wrap"`` of :func:`convolve`).

    Parameters
    ----------
    psf : (ky, kx) array_like
    shape : (int, int)
        Spatial shape of the transform.
    real : bool
        ``True`` returns the half spectrum ``rfft2`` (shape ``(ly, lx // 2 + 1)``) for
        use with ``scipy.fft.rfft2`` / ``irfft2``.

    Returns
    -------
    complex128 ndarray

    Examples
    --------
    >>> otf = psf_to_otf(gaussian_psf(1.0), (32, 32))
    >>> otf.shape, round(float(abs(otf[0, 0])), 12)
    ((32, 32), 1.0)
    """
    padded = pad_psf(psf, shape)
    return scipy.fft.rfft2(padded) if real else scipy.fft.fft2(padded)


def convolve(image, psf, *, boundary: str = "reflect") -> np.ndarray:
    """Convolve the last two axes of ``image`` with ``psf`` using FFTs.

    Parameters
    ----------
    image : (..., rows, cols) array_like
        Real, finite. Leading axes (frames, channels) are convolved independently.
    psf : (ky, kx) array_like
        Real, finite kernel; its centre is ``(ky // 2, kx // 2)``. It is used as
        given (not normalised).
    boundary : {"reflect", "wrap"}
        Extension beyond the edges. ``"reflect"`` mirrors about the pixel edge
        (``d c b a | a b c d | d c b a``; scipy's ``mode="reflect"``, numpy's
        ``"symmetric"``); ``"wrap"`` is periodic.

    Returns
    -------
    out : ndarray, same shape as ``image``
        float32 if ``image`` is float32, otherwise float64. A delta at ``(y0, x0)``
        becomes ``psf`` centred at ``(y0, x0)``. Memory is linear in the image
        size: one padded copy plus its half spectrum.

    Examples
    --------
    >>> img = np.zeros((15, 15)); img[7, 6] = 1
    >>> k = motion_psf(4, 30)  # 5 x 5
    >>> out = convolve(img, k)
    >>> bool(np.allclose(out[5:10, 4:9], k, atol=1e-12))
    True
    """
    img = check_image(image, "image", keep_float32=True)
    k = check_image(psf, "psf", min_ndim=2, max_ndim=2)
    boundary = check_choice(boundary, "boundary", ("reflect", "wrap"))
    h, w = img.shape[-2:]
    ky, kx = k.shape
    if boundary == "wrap":
        shape = (h, w)
        padded = img
        before = (0, 0)
    else:
        before = (ky - 1 - ky // 2, kx - 1 - kx // 2)
        after = (ky // 2, kx // 2)
        pad = [(0, 0)] * (img.ndim - 2) + [(before[0], after[0]), (before[1], after[1])]
        padded = np.pad(img, pad, mode="symmetric")
        shape = tuple(scipy.fft.next_fast_len(int(s), real=True) for s in padded.shape[-2:])
    otf = psf_to_otf(k, shape, real=True)
    spec = scipy.fft.rfft2(padded, s=shape, axes=(-2, -1))
    spec *= otf.astype(spec.dtype, copy=False)
    del padded
    out = scipy.fft.irfft2(spec, s=shape, axes=(-2, -1))
    del spec
    out = out[..., before[0] : before[0] + h, before[1] : before[1] + w]
    return np.ascontiguousarray(out, dtype=img.dtype)


_SPECS = {
    "gaussian": (1, "gaussian:SIGMA_PX"),
    "disk": (1, "disk:RADIUS_PX"),
    "motion": (2, "motion:LENGTH_PX,ANGLE_DEG"),
}


def parse_psf(spec: str) -> np.ndarray:
    """A kernel from a text spec: ``gaussian:2.0``, ``disk:3``, ``motion:11,35``.

    Parameters
    ----------
    spec : str
        ``gaussian:SIGMA_PX`` (:func:`gaussian_psf`), ``disk:RADIUS_PX``
        (:func:`disk_psf`) or ``motion:LENGTH_PX,ANGLE_DEG`` (:func:`motion_psf`).

    Returns
    -------
    psf : 2-D float64 ndarray (odd, sums to 1)

    Examples
    --------
    >>> parse_psf("motion:6,0").shape
    (9, 9)
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(
            f"psf spec must look like gaussian:2.0, disk:3 or motion:11,35; got {spec!r}."
        )
    kind, _, args = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in _SPECS:
        raise ValueError(
            f"unknown psf kind {kind!r} in {spec!r}; use gaussian:SIGMA, disk:RADIUS or "
            "motion:LENGTH,ANGLE."
        )
    n, form = _SPECS[kind]
    try:
        values = [float(v) for v in args.split(",")]
    except ValueError:
        values = []
    if len(values) != n:
        raise ValueError(f"psf spec {spec!r} needs {n} number(s): {form}.")
    if kind == "gaussian":
        return gaussian_psf(values[0])
    if kind == "disk":
        return disk_psf(values[0])
    return motion_psf(values[0], values[1])
