"""Property-based tests: every public backend function over hostile inputs.

Microscopists hand the backend RGB exports, 8- to 64-bit integers, float16,
complex FFT output, NaN-filled corrections, one-pixel ROIs, extreme aspect
ratios, stacks where a frame is expected and constant (blank) frames. For each
public function that takes an image, hypothesis draws such inputs and checks
the contract (docs/troubleshooting.md lists the classes and the answers):

* the call returns a finite, correctly shaped result, or raises a ``ValueError``
  whose message is one line naming the problem and the fix;
* no other exception, no numpy overflow/invalid-value warning, no hang
  (a watchdog alarm), never a NaN/inf output, never an all-NaN one;
* the input array is never modified.

Two further properties check results, not only their absence of failure: a
constant image comes back as the same constant from every restoring method
(nothing to restore, nothing invented), and integer input of any width gives
the same result as the same values in float64.

Examples are derandomised (the same in every CI run) and the database is off,
so a failure reproduces from the printed falsifying example.
"""

from __future__ import annotations

import dataclasses
import re
import signal
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from em_restore.backend import (
    bm3d,
    burst,
    deconvolve,
    denoise,
    filters,
    metrics,
    noise,
    profile,
    psf,
    simulate,
    vst,
)
from em_restore.backend import models as mdl
from em_restore.backend.models import burst as mburst

# --------------------------------------------------------------------------- inputs
DTYPES = [
    "bool",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "int8",
    "int16",
    "int32",
    "int64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
]
INT_DTYPES = [d for d in DTYPES if d[0] in "ui"]
CONTENTS = ["counts", "counts", "constant", "full_range", "nonfinite", "arbitrary"]
WATCHDOG_S = 60.0
#: A ValueError must say what to do; these are the imperative openings we use.
FIX = re.compile(
    r"\b(e\.g\.|Pass|pass|Select|Use|use|Convert|convert|Replace|Rescale|rescale|Draw|"
    r"Open|Clip|Process|Pick|pick|Take|Pad|Crop|Reshape|Check)\b"
)


@st.composite
def shapes(draw, stacks: bool = False) -> tuple[int, ...]:
    side = st.integers(2, 40)
    kinds = [
        "1x1",
        "1xN",
        "Nx1",
        "small",
        "small",
        "aspect",
        "stack",
        "rgb",
        "4d",
        "1d",
        "empty",
    ]
    if stacks:
        kinds += ["stack", "stack", "stack"]
    kind = draw(st.sampled_from(kinds))
    if kind == "1x1":
        return (1, 1)
    if kind == "1xN":
        return (1, draw(side))
    if kind == "Nx1":
        return (draw(side), 1)
    if kind == "small":
        return (draw(side), draw(side))
    if kind == "aspect":
        short, long = draw(st.integers(2, 4)), draw(st.integers(100, 300))
        return (short, long) if draw(st.booleans()) else (long, short)
    if kind == "stack":
        return (draw(st.integers(1, 5)), draw(st.integers(8, 32)), draw(st.integers(8, 32)))
    if kind == "rgb":
        return (draw(st.integers(8, 32)), draw(st.integers(8, 32)), draw(st.sampled_from([3, 4])))
    if kind == "4d":
        return (2, 2, 12, 12)
    if kind == "1d":
        return (draw(side),)
    return (0, draw(side))


@st.composite
def images(draw, stacks: bool = False) -> np.ndarray:
    """A hostile array: any shape class, any dtype, realistic or extreme values."""
    shape = draw(shapes(stacks))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    content = draw(st.sampled_from(CONTENTS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if content == "arbitrary":  # hypothesis' own elements: subnormals, NaN, extremes
        return draw(hnp.arrays(dtype, shape))
    if content == "constant":
        return np.full(shape, draw(st.integers(0, 100)), dtype=dtype)
    if content == "full_range" and dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    if content == "full_range" and dtype.kind in "fc":
        top = float(np.finfo(dtype).max) / 2
        return (rng.uniform(-1, 1, shape) * top).astype(dtype)
    x = rng.poisson(rng.uniform(1, 100), shape)
    if dtype.kind == "b":
        return x > np.median(x) if x.size else x.astype(bool)
    x = x.astype(dtype)
    if content == "nonfinite" and dtype.kind in "fc" and x.size:
        bad = rng.choice([np.nan, np.inf, -np.inf], size=draw(st.integers(1, 3)))
        x.flat[rng.integers(0, x.size, bad.size)] = bad
    return x


# ------------------------------------------------------------------------ functions
_RNG = np.random.default_rng(0)
_GOOD = _RNG.poisson(50, (32, 32)).astype(float)
_GOOD_STACK = _RNG.poisson(50, (5, 32, 32)).astype(np.float32)
_PSF = psf.gaussian_psf(1.0, 5)
_NOISE = noise.NoiseModel(gain=1.0, offset=0.0, readout_sigma=1.0)
_CACHE: dict[str, object] = {}


def _cached(key: str, make: Callable[[], object]):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _dplan():
    return _cached("dplan", lambda: denoise.plan_denoise(_GOOD, "gaussian"))


def _cplan():
    return _cached("cplan", lambda: deconvolve.plan_deconvolve(_GOOD, "gaussian:1.0", denoise=None))


def _model():
    return _cached("model", lambda: mdl.load_model(mdl.default_model_name()))


def _burst_model():
    return _cached("burst_model", lambda: mdl.load_model(mburst.DEFAULT_BURST_MODEL))


def _line(x) -> list[tuple[float, float]]:
    h, w = np.shape(x)[-2:] if np.ndim(x) >= 2 else (1, 1)
    return [(0.0, 0.0), (max(h - 1, 1) * 1.0, max(w - 1, 1) * 1.0)]


def _shifts_for(x) -> list:
    n = np.shape(x)[0] if np.ndim(x) == 3 else None
    return [0.5, -0.25] if n is None else [[0.5, -0.25]] * n


@dataclasses.dataclass(frozen=True)
class Case:
    fn: Callable
    stacks: bool = False  # draw mostly stacks (burst)
    same_shape: bool = False  # an accepted image comes back with its own shape
    restores: bool = False  # a constant image must come back as that constant
    examples: int = 15
    nan_propagates: bool = False  # NaN in -> NaN out at the same pixels (difference)
    pointwise: bool = False  # a per-value transform: 1-D input (a profile) is valid


# name -> Case; every public function of the backend that takes an image.
CASES: dict[str, Case] = {
    # filters
    "filters.gaussian": Case(
        lambda x: filters.gaussian(x, sigma_px=1.0), same_shape=True, restores=True
    ),
    "filters.median": Case(lambda x: filters.median(x, size=3), same_shape=True, restores=True),
    "filters.nlm": Case(lambda x: filters.nlm(x, sigma=1.0, h=1.0), same_shape=True, restores=True),
    "filters.tv": Case(lambda x: filters.tv(x, weight=0.1), same_shape=True, restores=True),
    "filters.wavelet": Case(
        lambda x: filters.wavelet(x, sigma=1.0), same_shape=True, restores=True
    ),
    "filters.remove_spikes": Case(
        lambda x: filters.remove_spikes(x), same_shape=True, restores=True
    ),
    "filters.apply_filter": Case(
        lambda x: filters.apply_filter(x, "median", size=3), same_shape=True, restores=True
    ),
    "bm3d.bm3d": Case(
        lambda x: bm3d.bm3d(x, sigma=1.0), same_shape=True, restores=True, examples=8
    ),
    # denoise facade
    "denoise.denoise[classical]": Case(
        lambda x: denoise.denoise(x), same_shape=True, restores=True
    ),
    "denoise.denoise[gaussian]": Case(
        lambda x: denoise.denoise(x, "gaussian"), same_shape=True, restores=True
    ),
    "denoise.denoise[median]": Case(
        lambda x: denoise.denoise(x, "median"), same_shape=True, restores=True
    ),
    "denoise.denoise[nlm]": Case(
        lambda x: denoise.denoise(x, "nlm"), same_shape=True, restores=True
    ),
    "denoise.denoise[tv]": Case(lambda x: denoise.denoise(x, "tv"), same_shape=True, restores=True),
    "denoise.denoise[wavelet]": Case(
        lambda x: denoise.denoise(x, "wavelet"), same_shape=True, restores=True
    ),
    "denoise.denoise[bm3d]": Case(
        lambda x: denoise.denoise(x, "bm3d"), same_shape=True, restores=True, examples=8
    ),
    "denoise.plan_denoise": Case(lambda x: denoise.plan_denoise(x)),
    "denoise.apply_plan": Case(
        lambda x: denoise.apply_plan(x, _dplan()), same_shape=True, restores=True
    ),
    "denoise.denoise_lazy": Case(
        lambda x: np.asarray(denoise.denoise_lazy(x, _dplan())), same_shape=True, restores=True
    ),
    # deconvolution
    "deconvolve.deconvolve": Case(
        lambda x: deconvolve.deconvolve(x, "gaussian:1.0")[0], same_shape=True
    ),
    "deconvolve.deconvolve[blind]": Case(
        lambda x: deconvolve.deconvolve(x)[0], same_shape=True, examples=8
    ),
    "deconvolve.plan_deconvolve": Case(lambda x: deconvolve.plan_deconvolve(x), examples=8),
    "deconvolve.apply_deconv_plan": Case(
        lambda x: deconvolve.apply_deconv_plan(x, _cplan()), same_shape=True, restores=True
    ),
    "deconvolve.deconvolve_lazy": Case(
        lambda x: np.asarray(deconvolve.deconvolve_lazy(x, _cplan())),
        same_shape=True,
        restores=True,
    ),
    "deconvolve.estimate_kernel": Case(lambda x: deconvolve.estimate_kernel(x), examples=8),
    "deconvolve.richardson_lucy": Case(
        lambda x: deconvolve.richardson_lucy(x, _PSF), same_shape=True, restores=True
    ),
    "deconvolve.richardson_lucy(psf)": Case(lambda x: deconvolve.richardson_lucy(_GOOD, x)),
    "deconvolve.wiener": Case(lambda x: deconvolve.wiener(x, _PSF), same_shape=True, restores=True),
    "deconvolve.periodic_pad": Case(lambda x: deconvolve.periodic_pad(x, 3)),
    "deconvolve.kernel_error": Case(lambda x: deconvolve.kernel_error(x, _PSF)),
    # noise and variance stabilisation
    "noise.estimate_noise": Case(lambda x: noise.estimate_noise(x)),
    "noise.estimate_noise_kernel": Case(lambda x: noise.estimate_noise_kernel(x)),
    "noise.estimate_sigma": Case(lambda x: noise.estimate_sigma(x)),
    "noise.highpass_residual": Case(lambda x: noise.highpass_residual(x), same_shape=True),
    "vst.forward_vst": Case(lambda x: vst.forward_vst(x, _NOISE), same_shape=True, pointwise=True),
    "vst.inverse_vst": Case(lambda x: vst.inverse_vst(x, _NOISE), same_shape=True, pointwise=True),
    # comparison
    "metrics.compare": Case(lambda x: metrics.compare(x, x)),
    "metrics.difference": Case(
        lambda x: metrics.difference(x, x), same_shape=True, nan_propagates=True
    ),
    "metrics.histograms": Case(lambda x: metrics.histograms(x), pointwise=True),
    # line profiles
    "profile.sample_profile": Case(lambda x: profile.sample_profile(x, _line(x))),
    "profile.measure_line": Case(lambda x: profile.measure_line(x, _line(x))),
    # kernels
    "psf.convolve": Case(lambda x: psf.convolve(x, _PSF), same_shape=True, restores=True),
    "psf.convolve(psf)": Case(lambda x: psf.convolve(_GOOD, x)),
    "psf.pad_psf": Case(lambda x: psf.pad_psf(x, (64, 64))),
    "psf.psf_to_otf": Case(lambda x: psf.psf_to_otf(x, (64, 64))),
    # trained networks
    "models.predict": Case(lambda x: mdl.predict(_model(), x), same_shape=True, examples=8),
    "models.predict_frame": Case(
        lambda x: mdl.predict_frame(_model(), x), same_shape=True, examples=8
    ),
    "models.predict_lazy": Case(
        lambda x: np.asarray(mdl.predict_lazy(_model(), x)), same_shape=True, examples=8
    ),
    "models.predict_burst": Case(
        lambda x: mburst.predict_burst(_burst_model(), burst.align_window(x)),
        stacks=True,
        examples=8,
    ),
    # burst
    "burst.burst[mean]": Case(
        lambda x: burst.burst(x, "mean", frames=3)[0], stacks=True, restores=True
    ),
    "burst.burst[classical]": Case(
        lambda x: burst.burst(x, "classical", frames=3)[0], stacks=True, restores=True
    ),
    "burst.burst[fba]": Case(
        lambda x: burst.burst(x, "fba", frames=3)[0], stacks=True, restores=True
    ),
    "burst.burst[network]": Case(
        lambda x: burst.burst(x, "network", frames=3)[0], stacks=True, examples=8
    ),
    "burst.register_window": Case(lambda x: burst.register_window(x), stacks=True),
    "burst.align_window": Case(lambda x: burst.align_window(x), stacks=True),
    "burst.burst_lazy": Case(
        lambda x: np.asarray(burst.burst_lazy(x, burst.plan_burst("mean", frames=3))),
        stacks=True,
        restores=True,
    ),
    "burst.registrations_lazy": Case(
        lambda x: np.asarray(burst.registrations_lazy(x, burst.plan_burst("mean", frames=3))),
        stacks=True,
    ),
    # simulation (degrading a user's clean image)
    "simulate.blur": Case(lambda x: simulate.blur(x, _PSF), same_shape=True, restores=True),
    "simulate.dead_pixels": Case(
        lambda x: simulate.dead_pixels(x, fraction=0.01, rng=0), same_shape=True
    ),
    "simulate.detector": Case(
        lambda x: simulate.detector(x, gain=1.0, readout_sigma=1.0, rng=0), same_shape=True
    ),
    "simulate.drift": Case(lambda x: simulate.drift(x, _shifts_for(x)), same_shape=True),
    "simulate.line_noise": Case(
        lambda x: simulate.line_noise(x, sigma=1.0, rng=0), same_shape=True
    ),
    "simulate.poisson_dose": Case(lambda x: simulate.poisson_dose(x, 10.0, rng=0), same_shape=True),
    "simulate.quantize": Case(lambda x: simulate.quantize(x), same_shape=True),
    "simulate.scan_jitter": Case(
        lambda x: simulate.scan_jitter(x, sigma_px=0.5, rng=0), same_shape=True
    ),
    "simulate.xray_spikes": Case(
        lambda x: simulate.xray_spikes(x, fraction=0.01, amplitude=5.0, rng=0), same_shape=True
    ),
    "simulate.subpixel_crop": Case(lambda x: simulate.subpixel_crop(x, (0.5, 0.5), (2, 2))),
    "simulate.simulate_acquisition": Case(lambda x: simulate.simulate_acquisition(x, rng=0)),
}


# --------------------------------------------------------------------------- checks
class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"no answer within {WATCHDOG_S:g} s")


def _call(fn: Callable, x: np.ndarray):
    """fn(x) under a watchdog, with numpy's overflow/invalid warnings as errors."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, WATCHDOG_S)
    try:
        with warnings.catch_warnings(), np.errstate(over="warn", invalid="warn", divide="warn"):
            warnings.simplefilter("error", RuntimeWarning)
            return fn(x)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _arrays(obj, depth: int = 0):
    """Every numeric ndarray or float inside a result (tuples, dicts, dataclasses)."""
    if depth > 3:
        return
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, float | np.floating):
        yield np.asarray(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _arrays(v, depth + 1)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _arrays(v, depth + 1)
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _arrays(getattr(obj, f.name), depth + 1)


def check_contract(name: str, case: Case, x: np.ndarray) -> str:
    before = x.copy()
    try:
        result = _call(case.fn, x)
    except ValueError as err:
        message = str(err)
        assert "\n" not in message, f"{name}: multi-line message {message!r}"
        assert FIX.search(message), f"{name}: message names no fix: {message!r}"
        outcome = "refused"
    else:
        outcome = "ok"
        for a in _arrays(result):
            if a.dtype.kind not in "fc":
                continue
            if case.nan_propagates:
                assert np.array_equal(np.isnan(a), np.isnan(before) | np.isnan(before)), name
                a = a[~np.isnan(a)]
            if name == "metrics.compare" and a.ndim == 0 and a == np.inf:
                continue  # PSNR of an image against itself
            assert np.isfinite(a).all(), f"{name}: {np.size(a) - np.isfinite(a).sum()} non-finite"
        if case.same_shape:
            out = result[0] if isinstance(result, tuple) else result
            assert np.shape(out) == x.shape, f"{name}: shape {np.shape(out)} for {x.shape}"
    assert np.array_equal(x, before, equal_nan=x.dtype.kind in "fc"), f"{name} modified its input"
    return outcome


def _settings(case: Case):
    return settings(
        max_examples=case.examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_gets_a_result_or_a_clear_error(name):
    case = CASES[name]

    outcomes = []

    @_settings(case)
    @given(x=images(stacks=case.stacks))
    @example(x=_GOOD_STACK if case.stacks else _GOOD.astype(np.uint16))
    def run(x):
        outcomes.append(check_contract(name, case, x))

    run()
    assert "ok" in outcomes, f"{name} refused even a plain image"  # not vacuous


def _value_classes() -> list[tuple[str, str]]:
    """(dtype, content) pairs tried on every function, whatever hypothesis draws."""
    pairs = [(d, "counts") for d in DTYPES]
    pairs += [(d, "full_range") for d in ("uint32", "uint64", "int64", "float16", "float32")]
    pairs += [("float64", "full_range")]
    pairs += [(d, "nonfinite") for d in ("float16", "float32", "float64")]
    pairs += [("uint8", "constant"), ("float64", "constant"), ("bool", "constant")]
    pairs += [("float64", "tiny")]
    return pairs


def _fixed(shape, dtype: str, content: str, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if content == "constant":
        return np.full(shape, 1 if dt.kind == "b" else 42, dtype=dt)
    if content == "full_range" and dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
    if content == "full_range":
        return (rng.uniform(-1, 1, shape) * float(np.finfo(dt).max) / 2).astype(dt)
    if content == "tiny":
        return rng.uniform(0, 1, shape) * 1e-300
    x = rng.poisson(40, shape)
    if dt.kind == "b":
        return x > 40
    x = x.astype(dt)
    if content == "nonfinite":
        x.flat[[3, 50, 100]] = [np.nan, np.inf, -np.inf]
    return x


@pytest.mark.parametrize("name", list(CASES))
def test_every_dtype_and_value_class(name):
    """The whole dtype x value-class matrix on a plain frame (or stack) per function."""
    case = CASES[name]
    shape = (4, 25, 25) if case.stacks else (25, 25)  # odd: kernels are inputs too
    outcomes = {}
    for dtype, content in _value_classes():
        outcomes[dtype, content] = check_contract(name, case, _fixed(shape, dtype, content))
    # Unusable classes are refused; the realistic ones are not all refused.
    assert outcomes["complex64", "counts"] == outcomes["complex128", "counts"] == "refused"
    if not case.pointwise and not case.nan_propagates:
        assert outcomes["float64", "nonfinite"] == "refused"
    assert outcomes["float64", "full_range"] == outcomes["uint64", "full_range"] == "refused"
    assert "ok" in {outcomes[d, "counts"] for d in INT_DTYPES}, (
        f"{name} refused every integer image"
    )


# Inputs every function must refuse, whatever else hypothesis draws.
REFUSED = {
    "complex": lambda: (_GOOD + 1j).astype(np.complex64),
    "nan": lambda: np.where(_GOOD > 60, np.nan, _GOOD),
    "inf": lambda: np.where(_GOOD > 60, np.inf, _GOOD),
    "rgb": lambda: np.stack([_GOOD] * 3, axis=-1),
    "huge": lambda: _GOOD * 1e300,
    "1-D": lambda: _GOOD[0],
    "empty": lambda: np.zeros((0, 32)),
}


@pytest.mark.parametrize("bad", list(REFUSED))
def test_every_function_refuses_the_unusable_classes(bad):
    x = REFUSED[bad]()
    as_stack = x[None].repeat(3, 0) if x.ndim == 2 else x  # for functions that take bursts
    for name, case in CASES.items():
        arg = as_stack if case.stacks else x
        if case.nan_propagates and bad == "nan":
            continue  # the difference keeps NaN (frames still being computed)
        if case.pointwise and bad == "1-D":
            _call(case.fn, arg)  # values of a line profile are as valid as a frame's
            continue
        with pytest.raises(ValueError) as info:
            _call(case.fn, arg)
            pytest.fail(f"{name} accepted {bad} input")
        assert FIX.search(str(info.value)), f"{name}: {info.value}"


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.restores])
def test_a_constant_image_is_restored_to_itself(name):
    """A flat frame has nothing to restore: every method returns the same constant."""
    case = CASES[name]

    @_settings(dataclasses.replace(case, examples=4))
    @given(
        value=st.floats(0.5, 5000.0),
        shape=st.sampled_from(
            [(24, 24), (17, 40), (3, 24, 24)] if not case.stacks else [(4, 24, 24)]
        ),
    )
    def run(value, shape):
        x = np.full(shape, value)
        out = np.asarray(_call(case.fn, x))
        np.testing.assert_allclose(out, value, rtol=1e-4, atol=1e-6 * value, err_msg=name)

    run()


DETERMINISTIC = [n for n, c in CASES.items() if c.same_shape and not n.startswith("models.")]


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_integer_input_equals_the_same_values_in_float64(name):
    case = CASES[name]

    @_settings(dataclasses.replace(case, examples=3))
    @given(dtype=st.sampled_from(INT_DTYPES), seed=st.integers(0, 1000))
    def run(dtype, seed):
        shape = (4, 24, 24) if case.stacks else (24, 24)
        counts = np.random.default_rng(seed).poisson(40, shape).clip(0, 120)
        a = _call(case.fn, counts.astype(dtype))
        b = _call(case.fn, counts.astype(np.float64))
        a, b = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6, err_msg=name)

    run()
