"""Image streams from a moving stage: drift, motion blur and per-frame noise.

Convention: ``offsets[k] = (y, x)`` is the position, in specimen pixels, of the
frame's pixel ``(0, 0)`` at the middle of exposure ``k``; the sharp frame is
``specimen(offsets[k] + (i, j))`` sampled with a cubic spline.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from .. import psf as _psf
from .._args import (
    as_rng,
    check_choice,
    check_image,
    check_int,
    check_pair,
    check_real,
    check_shape,
)
from ..spline import Spline
from .acquisition import AcquisitionConfig, simulate_acquisition

__all__ = ["drift", "moving_stage_stream", "subpixel_crop"]


def subpixel_crop(image, offset_yx, shape) -> np.ndarray:
    """Crop at a sub-pixel position: ``out[i, j] = image(oy + i, ox + j)``.

    Cubic-spline interpolation (mirror boundary, so crops may extend past the
    edges); integer offsets give an exact copy of the crop.

    Parameters
    ----------
    image : (rows, cols) array_like
    offset_yx : (float, float)
        Position in ``image`` of the crop's pixel ``(0, 0)``.
    shape : (int, int)

    Returns
    -------
    (shape) float64 ndarray

    Examples
    --------
    >>> img = np.random.default_rng(0).random((6, 7))
    >>> bool(np.allclose(subpixel_crop(img, (1, 2), (3, 4)), img[1:4, 2:6]))
    True
    >>> import scipy.ndimage as ndi
    >>> ref = ndi.map_coordinates(img, np.mgrid[0:3, 0:4] + [[[1.3]], [[2.6]]], mode="mirror")
    >>> bool(np.allclose(subpixel_crop(img, (1.3, 2.6), (3, 4)), ref))
    True
    """
    img = check_image(image, "image", max_ndim=2)
    oy, ox = check_pair(offset_yx, "offset_yx")
    h, w = check_shape(shape, "shape", min_size=1)
    return Spline(img).crop(oy, ox, h, w)


def drift(frames_or_image, shifts, *, method: str = "spline") -> np.ndarray:
    """Shift images by sub-pixel amounts: ``out(p) = image(p - shift)``.

    Content moves by ``+shift`` (a feature at ``(y, x)`` ends up at
    ``(y + dy, x + dx)``).

    Parameters
    ----------
    frames_or_image : (..., rows, cols) array_like
    shifts : (2,) or (..., 2) array_like
        ``(dy, dx)`` in pixels; one pair for all frames or one per frame (leading
        shape of ``shifts`` equal to the leading shape of the image).
    method : {"spline", "fourier"}
        ``"spline"``: cubic spline, mirror boundary. ``"fourier"``: phase ramp,
        exact for band-limited periodic images, wraps around the edges.

    Returns
    -------
    float64 ndarray, same shape

    Examples
    --------
    >>> img = np.zeros((8, 8)); img[2, 3] = 1
    >>> out = drift(img, (1, 2), method="fourier")
    >>> bool(np.isclose(out[3, 5], 1.0))
    True
    """
    img = check_image(frames_or_image, "frames_or_image")
    method = check_choice(method, "method", ("spline", "fourier"))
    s = np.asarray(shifts, dtype=np.float64) if np.asarray(shifts).dtype.kind in "biuf" else None
    lead = img.shape[:-2]
    want = "(2,)" if not lead else f"(2,) or {(*lead, 2)}"
    if s is None or s.shape[-1:] != (2,) or s.shape[:-1] not in ((), lead):
        raise ValueError(
            f"shifts must have shape {want} for image shape {img.shape}; got "
            f"{None if s is None else s.shape}. Pass one (dy, dx) pair"
            f"{' per frame' if lead else ''}."
        )
    if not np.isfinite(s).all():
        raise ValueError("shifts contains NaN or infinite values; pass finite (dy, dx) pairs.")
    h, w = img.shape[-2:]
    s = np.broadcast_to(s, (*lead, 2))
    if method == "fourier":
        fy = scipy.fft.fftfreq(h)[:, None]
        fx = scipy.fft.fftfreq(w)[None, :]
        phase = np.exp(-2j * np.pi * (s[..., 0, None, None] * fy + s[..., 1, None, None] * fx))
        return scipy.fft.ifft2(scipy.fft.fft2(img, axes=(-2, -1)) * phase, axes=(-2, -1)).real
    frames = img.reshape(-1, h, w)
    flat = s.reshape(-1, 2)
    out = np.empty(frames.shape)
    for k in range(frames.shape[0]):
        out[k] = Spline(frames[k]).crop(-flat[k, 0], -flat[k, 1], h, w)
    return out.reshape(img.shape)


def _stage_path(gen, n_fine, dt, v0, jitter, tau):
    """Stage positions on a fine time grid: constant velocity + OU velocity noise."""
    v = np.broadcast_to(v0, (n_fine, 2)).copy()
    if jitter > 0:
        rho = math.exp(-dt / tau)
        e = gen.normal(0.0, jitter, (n_fine, 2))
        u = np.empty_like(e)
        u[0] = e[0]
        innov = math.sqrt(1 - rho**2)
        for i in range(1, n_fine):
            u[i] = rho * u[i - 1] + innov * e[i]
        v += u
    step = 0.5 * (v[1:] + v[:-1]) * dt
    return np.concatenate([np.zeros((1, 2)), np.cumsum(step, axis=0)])


def moving_stage_stream(
    specimen_large,
    *,
    n_frames: int,
    frame_shape,
    velocity_px_per_frame=(0.0, 2.0),
    jitter: float = 0.0,
    jitter_time: float = 2.0,
    exposure_fraction: float = 1.0,
    dose: float | None = None,
    config: AcquisitionConfig | None = None,
    start_yx=None,
    substeps: int = 32,
    return_psfs: bool = False,
    rng=None,
):
    """Fast image stream of a specimen scrolling under a drifting stage.

    The field of view moves over ``specimen_large`` with velocity
    ``velocity_px_per_frame + u(t)``, ``u`` an Ornstein–Uhlenbeck process (random
    acceleration) of standard deviation ``jitter`` px/frame and correlation time
    ``jitter_time`` frames. Frame ``k`` is exposed during
    ``t in [k, k + exposure_fraction]`` (frame periods). Its blur kernel is the
    path actually travelled during the exposure relative to the mid-exposure
    position (:func:`~em_restore.backend.psf.path_psf`, combined with
    ``config.psf``); the blurred frame is computed on a crop with margins, so it
    has no boundary artefacts. Noise comes from
    :func:`~em_restore.backend.simulate.simulate_acquisition`, frames independent.

    Parameters
    ----------
    specimen_large : (rows, cols) array_like
        Clean specimen (fraction of dose reaching the detector, ``>= 0``), larger
        than the frames plus the path.
    n_frames : int
    frame_shape : (int, int)
        Each side ``>= 8``.
    velocity_px_per_frame : (float, float)
        Mean motion of the field of view, specimen pixels per frame (``(vy, vx)``);
        the specimen appears to move the opposite way in the frames. The blur
        length of a frame is ``|v| * exposure_fraction``.
    jitter : float
        Standard deviation of the velocity fluctuation, px/frame (0 = uniform).
    jitter_time : float
        Correlation time of the fluctuation, frames.
    exposure_fraction : float
        Fraction of the frame period the detector integrates, in (0, 1].
    dose : float, optional
        e⁻/px per frame; overrides ``config.dose``. Default 100 without ``config``.
    config : AcquisitionConfig, optional
        Default ``AcquisitionConfig(modality="tem", dose=dose)`` (shot noise only).
    start_yx : (float, float), optional
        Offset of the first frame's start; default random among positions that keep
        the whole path inside the specimen.
    substeps : int
        Time steps per frame for the path and the blur kernels (>= 2).
    return_psfs : bool
        Also return the per-frame total blur kernels, ``(T, K, K)``, centred.
    rng : None, int or numpy.random.Generator

    Returns
    -------
    noisy : (T, rows, cols) ndarray
        float64 in ADU (integers if ``config.bits`` is set).
    sharp : (T, rows, cols) float64 ndarray
        Clean crops at the mid-exposure offsets, no blur or noise.
    offsets : (T, 2) float64 ndarray
        Mid-exposure ``(y, x)`` of each frame's pixel (0, 0) in the specimen.
    psfs : (T, K, K) float64 ndarray (only with ``return_psfs=True``)

    Raises
    ------
    ValueError
        If the path does not fit in ``specimen_large``.

    Examples
    --------
    >>> spec = np.random.default_rng(0).random((64, 128))
    >>> noisy, sharp, off = moving_stage_stream(spec, n_frames=4, frame_shape=(32, 32),
    ...                                         velocity_px_per_frame=(0, 3), rng=0)
    >>> noisy.shape, sharp.shape, np.round(np.diff(off[:, 1]), 6).tolist()
    ((4, 32, 32), (4, 32, 32), [3.0, 3.0, 3.0])
    """
    spec = check_image(specimen_large, "specimen_large", max_ndim=2, nonnegative=True)
    n_frames = check_int(n_frames, "n_frames", low=1)
    fh, fw = check_shape(frame_shape, "frame_shape", min_size=8)
    v0 = np.array(check_pair(velocity_px_per_frame, "velocity_px_per_frame"))
    jitter = check_real(jitter, "jitter", low=0)
    tau = check_real(jitter_time, "jitter_time", low=0, low_open=True)
    expo = check_real(exposure_fraction, "exposure_fraction", low=0, high=1, low_open=True)
    substeps = check_int(substeps, "substeps", low=2)
    if config is None:
        config = AcquisitionConfig(dose=100.0 if dose is None else dose)
    elif not isinstance(config, AcquisitionConfig):
        raise ValueError(f"config must be an AcquisitionConfig; got {type(config).__name__}.")
    elif dose is not None:
        config = config.replace(dose=dose)
    gen = as_rng(rng)

    dt = 1.0 / substeps
    n_fine = n_frames * substeps + 1
    t_fine = np.arange(n_fine) * dt
    r = _stage_path(gen, n_fine, dt, v0, jitter, tau)

    def pos(t):
        t = np.asarray(t, dtype=np.float64)
        return np.stack([np.interp(t, t_fine, r[:, 0]), np.interp(t, t_fine, r[:, 1])], axis=-1)

    k = np.arange(n_frames)[:, None]
    t_win = k + expo * np.arange(substeps + 1)[None, :] / substeps  # (T, S+1)
    win = pos(t_win)  # (T, S+1, 2)
    mid = pos(k[:, 0] + expo / 2)  # (T, 2)
    optical = config.kernel()
    kernels = []
    for i in range(n_frames):
        kern = _psf.path_psf(-(win[i] - mid[i]))
        if optical is not None:
            oy, ox = optical.shape[0] // 2, optical.shape[1] // 2
            kern = np.pad(kern, ((oy, oy), (ox, ox)))  # full linear convolution of the two
            kern = np.maximum(_psf.convolve(kern, optical), 0.0)
            d = (kern.shape[0] - kern.shape[1]) // 2  # back to a square kernel
            kern = np.pad(kern, ((max(-d, 0),) * 2, (max(d, 0),) * 2))
            kern /= kern.sum()
        kernels.append(kern)
    hk = max(kk.shape[0] // 2 for kk in kernels)
    margin = hk + 2
    used = np.concatenate([win.reshape(-1, 2), mid])
    lo = margin - used.min(axis=0)
    hi = np.array(spec.shape) - np.array([fh, fw]) - margin - used.max(axis=0)
    if (hi < lo).any():
        need = np.array([fh, fw]) + 2 * margin + used.max(axis=0) - used.min(axis=0)
        raise ValueError(
            f"specimen_large of shape {spec.shape} is too small for {n_frames} frames of "
            f"{(fh, fw)} along this path (needs about {tuple(math.ceil(x) for x in need)}); "
            "enlarge it or reduce n_frames, velocity_px_per_frame or jitter."
        )
    if start_yx is None:
        start = gen.uniform(lo, hi)
    else:
        start = np.array(check_pair(start_yx, "start_yx"))
        if ((start < lo) | (start > hi)).any():
            raise ValueError(
                f"start_yx={tuple(start)} puts the path outside specimen_large; it must lie in "
                f"y [{lo[0]:.2f}, {hi[0]:.2f}], x [{lo[1]:.2f}, {hi[1]:.2f}]."
            )
    offsets = start + mid
    spline = Spline(spec)
    sharp = np.empty((n_frames, fh, fw))
    blurred = np.empty((n_frames, fh, fw))
    for i in range(n_frames):
        big = spline.crop(offsets[i, 0] - hk, offsets[i, 1] - hk, fh + 2 * hk, fw + 2 * hk)
        sharp[i] = big[hk : hk + fh, hk : hk + fw]
        blurred[i] = _psf.convolve(big, kernels[i])[hk : hk + fh, hk : hk + fw]
    noisy = simulate_acquisition(np.maximum(blurred, 0.0), config.replace(psf=None), rng=gen)
    if not return_psfs:
        return noisy, sharp, offsets
    size = 2 * hk + 1
    psfs = np.zeros((n_frames, size, size))
    for i, kern in enumerate(kernels):
        o = hk - kern.shape[0] // 2
        psfs[i, o : o + kern.shape[0], o : o + kern.shape[1]] = kern
    return noisy, sharp, offsets, psfs
