"""Argument checking shared by :mod:`em_restore.backend.psf` and ``backend.simulate``.

Every public function validates its inputs with these helpers so that errors are
uniform: a :class:`ValueError` whose message names the parameter, shows the value
received and says how to fix it.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["as_rng"]

#: The imaging modalities every part of the project knows (noise priors, models, simulator).
MODALITIES = ("tem", "stem", "sem")

#: Largest and smallest nonzero peak |value| an image may have. Beyond them float32
#: work (models, BM3D) and squared residuals over- or underflow; no detector records
#: such values, so a scaled export is refused with the fix rather than turned to inf.
MAX_MAGNITUDE = 1e15
MIN_MAGNITUDE = 1e-15


def short(value: Any) -> str:
    """repr() of a value, shortened for error messages."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def as_rng(rng: int | np.random.Generator | None) -> np.random.Generator:
    """Normalise a seed into a :class:`numpy.random.Generator`.

    Parameters
    ----------
    rng : None, int or numpy.random.Generator
        ``None`` draws fresh OS entropy (not reproducible); a non-negative int seeds
        a new PCG64 generator; a Generator is returned unchanged (it is consumed
        by the caller, so successive calls with the same Generator differ).

    Returns
    -------
    numpy.random.Generator

    Raises
    ------
    ValueError
        If ``rng`` is of any other type (``numpy.random.RandomState``, float, bool...)
        or a negative int.

    Examples
    --------
    >>> g = as_rng(0)
    >>> as_rng(g) is g
    True
    >>> float(as_rng(0).random()) == float(as_rng(0).random())
    True
    """
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool | np.bool_):
        if int(rng) < 0:
            raise ValueError(f"rng must be a non-negative seed; got {rng}. Use e.g. rng=0.")
        return np.random.default_rng(int(rng))
    raise ValueError(
        f"rng must be None, a non-negative int or a numpy.random.Generator; got "
        f"{type(rng).__name__} {short(rng)}. Pass rng=np.random.default_rng(seed)."
    )


def check_real(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> float:
    """A finite real scalar within [low, high] (open ends on request), as float."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
            value = value.item()
        else:
            raise ValueError(f"{name} must be a real number; got {short(value)}. {hint}".rstrip())
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite; got {v}. {hint}".rstrip())
    bad = (low is not None and (v <= low if low_open else v < low)) or (
        high is not None and (v >= high if high_open else v > high)
    )
    if bad:
        rng_txt = _bounds(low, high, low_open, high_open, "g")
        raise ValueError(f"{name} must be {rng_txt}; got {v:g}. {hint}".rstrip())
    return v


def _bounds(low, high, low_open: bool = False, high_open: bool = False, fmt: str = "") -> str:
    """``>= 1``, ``< 2``, ``in (0, 1]``: the allowed range in words.

    Examples
    --------
    >>> _bounds(0, None), _bounds(None, 1.5, high_open=True, fmt="g"), _bounds(0, 1, True)
    ('>= 0', '< 1.5', 'in (0, 1]')
    """
    if low is None:
        return f"<{'' if high_open else '='} {high:{fmt}}"
    if high is None:
        return f">{'' if low_open else '='} {low:{fmt}}"
    return f"in {'(' if low_open else '['}{low:{fmt}}, {high:{fmt}}{')' if high_open else ']'}"


class KeyEquality:
    """Equality and hash by the tuple ``self._key()`` (for records holding arrays)."""

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def check_int(
    value: Any, name: str, *, low: int | None = None, high: int | None = None, hint: str = ""
) -> int:
    """An integer (Python or numpy, not bool) within [low, high]."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer; got {short(value)}. {hint}".rstrip())
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be {_bounds(low, high)}; got {v}. {hint}".rstrip())
    return v


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """One of a few strings."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {short(value)}."
        )
    return value


def check_shape(shape: Any, name: str = "shape", *, min_size: int = 2) -> tuple[int, int]:
    """A 2-D (rows, cols) shape with each side >= min_size."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape, shape)
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or len(dims) != 2:
        raise ValueError(
            f"{name} must be a (rows, cols) pair of ints; got {short(shape)}. "
            f"Pass e.g. {name}=(256, 256)."
        )
    out = tuple(
        check_int(d, f"{name}[{i}]", low=min_size, hint=f"Use {name} of at least {min_size} px.")
        for i, d in enumerate(dims)
    )
    return out  # type: ignore[return-value]


def check_pair(value: Any, name: str, *, low: float | None = None, low_open: bool = False):
    """A scalar (broadcast to a pair) or a pair of finite reals."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value, value)
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if len(items) != 2:
        raise ValueError(f"{name} must be a number or a pair of numbers; got {short(value)}.")
    return tuple(
        check_real(v, f"{name}[{i}]", low=low, low_open=low_open) for i, v in enumerate(items)
    )


def looks_rgb(shape: Sequence[int]) -> bool:
    """An RGB(A) picture, colour last: ``(..., rows > 4, cols > 4, 3 or 4)``."""
    return len(shape) >= 3 and shape[-1] in (3, 4) and min(shape[-3:-1]) > 4


#: True inside :func:`validated`: the data were checked at the public entry.
_VALIDATED: contextvars.ContextVar[bool] = contextvars.ContextVar("validated", default=False)


@contextlib.contextmanager
def validated():
    """Inside, :func:`check_image` skips its full passes over the data (finite values,
    magnitude): a public function checks its input once, then runs its pipeline of
    public steps (VST, despiking, filter, inverse VST) under this. The cheap checks
    (dtype, shape, size) stay. Per thread and task (a ``contextvars`` flag).

    Examples
    --------
    >>> bad = np.array([[np.nan, 1.0]])
    >>> with validated():
    ...     check_image(bad).shape
    (1, 2)
    """
    token = _VALIDATED.set(True)
    try:
        yield
    finally:
        _VALIDATED.reset(token)


def full_checks(out: np.ndarray, name: str) -> None:
    """The full passes of :func:`check_image`: every value finite and of a magnitude
    float arithmetic handles."""
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        n_bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite value(s). "
            f"Replace them first, e.g. np.nan_to_num({name})."
        )
    if out.size and out.dtype.kind == "f":
        peak = float(np.max(np.abs(out)))
        if peak > MAX_MAGNITUDE or 0 < peak < MIN_MAGNITUDE:
            raise ValueError(
                f"{name} values reach {peak:.3g} in magnitude, outside the supported "
                f"{MIN_MAGNITUDE:g} to {MAX_MAGNITUDE:g} (float arithmetic would over- or "
                f"underflow); rescale first, e.g. {name} / np.abs({name}).max() * 1000."
            )


def check_image(
    image: Any,
    name: str = "image",
    *,
    min_ndim: int = 2,
    max_ndim: int | None = None,
    min_size: int = 1,
    nonnegative: bool = False,
    keep_float32: bool = False,
) -> np.ndarray:
    """A finite real array with >= min_ndim axes, returned as float64.

    ``keep_float32`` keeps float32 input in float32; everything else becomes float64.
    The input is never modified; the result may share memory with it (treat as
    read-only).
    """
    arr = np.asarray(image)
    if looks_rgb(arr.shape):
        raise ValueError(
            f"{name} looks like an RGB(A) picture (shape {arr.shape}, colour last); EM "
            f"restoration works on greyscale: convert first, e.g. skimage.color.rgb2gray({name})."
        )
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must be a real numeric array; got dtype {arr.dtype}. "
            f"Convert with np.asarray({name}, dtype=float)."
        )
    if arr.ndim < min_ndim or (max_ndim is not None and arr.ndim > max_ndim):
        want = f"{min_ndim}" if max_ndim == min_ndim else f"at least {min_ndim}"
        if max_ndim is not None and max_ndim != min_ndim:
            want = f"{min_ndim} to {max_ndim}"
        if max_ndim == 2:
            fix = "Pass one 2-D image (rows, cols)."
        elif min_ndim >= 3 and max_ndim == min_ndim:
            fix = "Pass a stack of frames (frames, rows, cols)."
        else:
            fix = "Pass a 2-D image or a stack of images."
        raise ValueError(
            f"{name} must have {want} dimensions (..., rows, cols); got shape {arr.shape}. {fix}"
        )
    if any(s < min_size for s in arr.shape[-2:]):
        raise ValueError(
            f"{name} must be at least {min_size}x{min_size} pixels; got shape {arr.shape}. "
            f"Select a region of at least {min_size}x{min_size} pixels."
        )
    if keep_float32 and arr.dtype == np.float32:
        out = arr
    else:
        out = arr.astype(np.float64, copy=False)
    if not _VALIDATED.get():
        full_checks(out, name)
    if nonnegative and out.size and out.min() < 0:
        raise ValueError(
            f"{name} must be >= 0 everywhere; got minimum {out.min():g}. "
            f"Clip with np.clip({name}, 0, None) or rescale."
        )
    return out


def check_layout(shape: tuple[int, ...], name: str, *, stack: bool, min_side: int) -> None:
    """Refuse, in one line, a shape that is not a 2-D frame (or a stack of them, ``stack``)
    of at least ``min_side`` pixels a side, or that looks like an RGB(A) picture."""
    ndim = len(shape)
    if looks_rgb(shape):
        raise ValueError(
            f"{name} looks like an RGB(A) picture (shape {tuple(shape)}, colour last); "
            f"convert to greyscale first, e.g. skimage.color.rgb2gray({name})."
        )
    if ndim < 2:
        raise ValueError(
            f"{name} must be a 2-D image (rows, cols); got shape {tuple(shape)}. "
            f"Reshape it to (rows, cols)."
        )
    if not stack and ndim > 2:
        raise ValueError(
            f"{name} must be one 2-D frame (rows, cols); got shape {tuple(shape)}. "
            f"Pass one frame, e.g. {name}[{', '.join(['0'] * (ndim - 2))}]."
        )
    if 0 in shape:
        raise ValueError(f"{name} is empty (shape {tuple(shape)}); pass an image with pixels.")
    if min(shape[-2:]) < min_side:
        raise ValueError(
            f"{name} must be at least {min_side}x{min_side} pixels; got shape {tuple(shape)}. "
            f"Select a region of at least {min_side}x{min_side} pixels."
        )
