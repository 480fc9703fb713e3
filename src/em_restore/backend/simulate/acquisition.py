"""A recording as a whole: :class:`AcquisitionConfig` (dose, blur, detector, defects;
presets), :func:`simulate_acquisition` (the terms of :mod:`.recording` in order) and
:func:`random_acquisition_config` (a plausible random recording for training data).
Units as in :mod:`.recording`; formulas in ``docs/simulator.md``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .. import psf as _psf
from .._args import KeyEquality, as_rng, check_choice, check_image, check_int, check_real
from .recording import (
    dead_pixels,
    detector,
    line_noise,
    poisson_dose,
    quantize,
    scan_jitter,
    xray_spikes,
)

__all__ = [
    "PRESETS",
    "AcquisitionConfig",
    "random_acquisition_config",
    "simulate_acquisition",
]


# --------------------------------------------------------------------------- pipeline

_PSF_KINDS = {"gaussian": 1, "disk": 1, "motion": 2}


def _resolve_psf(spec) -> np.ndarray | None:
    if spec is None:
        return None
    if isinstance(spec, np.ndarray):
        return spec
    kind, *args = spec
    if kind == "gaussian":
        return _psf.gaussian_psf(args[0])
    if kind == "disk":
        return _psf.disk_psf(args[0])
    return _psf.motion_psf(args[0], args[1])


@dataclass(frozen=True, eq=False)
class AcquisitionConfig(KeyEquality):
    """How a clean specimen is recorded: dose, blur, detector and defects.

    Parameters
    ----------
    modality : {"tem", "stem", "sem"}
        ``"tem"``: parallel beam onto a pixelated camera (spikes, dead pixels).
        ``"stem"``/``"sem"``: scanned probe, serial detector (scan jitter, line noise).
    dose : float
        Incident electrons per pixel (e⁻/px), ``>= 0``.
    psf : None, ndarray or tuple
        Blur before detection: ``None``; a kernel (2-D, odd, sums to 1); or a spec
        ``("gaussian", sigma_px)``, ``("disk", radius_px)``,
        ``("motion", length_px, angle_deg)``.
    gain : float
        ADU per electron, ``> 0``.
    offset : float
        Detector baseline in ADU.
    readout_sigma : float
        Gaussian read noise in ADU.
    dark_current : float
        Mean dark electrons per pixel (Poisson).
    spike_fraction : float
        X-ray hits per pixel per frame (``"tem"`` only).
    spike_amplitude : float
        Mean hit energy as a multiple of ``dose`` electrons (10 = ten unobstructed
        pixels' worth).
    dead_fraction : float
        Fraction of dead pixels (read 0 ADU; ``"tem"`` only).
    scan_jitter : float
        Standard deviation of line shifts in pixels (``"stem"``/``"sem"`` only).
    line_noise : float
        Standard deviation of per-line offsets in ADU (``"stem"``/``"sem"`` only).
    bits : int or None
        ADC depth; ``None`` keeps float64 output, otherwise unsigned integers with
        saturation.

    Examples
    --------
    >>> cfg = AcquisitionConfig.low_dose_tem(dose=5.0)
    >>> cfg.modality, cfg.dose
    ('tem', 5.0)
    """

    modality: str = "tem"
    dose: float = 100.0
    psf: Any = None
    gain: float = 1.0
    offset: float = 0.0
    readout_sigma: float = 0.0
    dark_current: float = 0.0
    spike_fraction: float = 0.0
    spike_amplitude: float = 10.0
    dead_fraction: float = 0.0
    scan_jitter: float = 0.0
    line_noise: float = 0.0
    bits: int | None = None

    MODALITIES: ClassVar[tuple[str, ...]] = ("tem", "stem", "sem")

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "modality", check_choice(self.modality, "modality", self.MODALITIES))
        s(self, "dose", check_real(self.dose, "dose", low=0, hint="dose is in e⁻/px."))
        s(self, "psf", self._check_psf(self.psf))
        s(self, "gain", check_real(self.gain, "gain", low=0, low_open=True))
        s(self, "offset", check_real(self.offset, "offset"))
        s(self, "readout_sigma", check_real(self.readout_sigma, "readout_sigma", low=0))
        s(self, "dark_current", check_real(self.dark_current, "dark_current", low=0))
        for name in ("spike_fraction", "dead_fraction"):
            s(self, name, check_real(getattr(self, name), name, low=0, high=1))
        s(self, "spike_amplitude", check_real(self.spike_amplitude, "spike_amplitude", low=0))
        s(self, "scan_jitter", check_real(self.scan_jitter, "scan_jitter", low=0))
        s(self, "line_noise", check_real(self.line_noise, "line_noise", low=0))
        if self.bits is not None:
            s(self, "bits", check_int(self.bits, "bits", low=1, high=32))
        scanning = self.modality in ("stem", "sem")
        for name in ("spike_fraction", "dead_fraction"):
            if scanning and getattr(self, name) > 0:
                raise ValueError(
                    f"{name}={getattr(self, name):g} models a pixelated camera but modality is "
                    f"{self.modality!r}; set {name}=0 or modality='tem'."
                )
        for name in ("scan_jitter", "line_noise"):
            if not scanning and getattr(self, name) > 0:
                raise ValueError(
                    f"{name}={getattr(self, name):g} models a scanned probe but modality is "
                    f"'tem'; set {name}=0 or modality='stem' / 'sem'."
                )

    @staticmethod
    def _check_psf(spec):
        if spec is None:
            return None
        if isinstance(spec, np.ndarray):
            k = check_image(spec, "psf", min_ndim=2, max_ndim=2)
            if k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0 or k.min() < 0:
                raise ValueError(
                    f"psf kernel must be odd-sized and nonnegative; got shape {k.shape}, "
                    f"min {k.min():g}. Build one with em_restore.backend.psf."
                )
            k = k / k.sum() if k.sum() > 0 else k
            k = k.copy()
            k.setflags(write=False)
            return k
        if isinstance(spec, tuple | list) and spec and spec[0] in _PSF_KINDS:
            kind = spec[0]
            if len(spec) != 1 + _PSF_KINDS[kind]:
                raise ValueError(
                    f"psf spec {tuple(spec)!r} needs {_PSF_KINDS[kind]} number(s) after "
                    f"{kind!r}, e.g. ('gaussian', 1.0), ('disk', 2.0) or ('motion', 5.0, 30.0)."
                )
            args = tuple(
                check_real(a, f"psf[{i + 1}]", low=0 if i == 0 else None)
                for i, a in enumerate(spec[1:])
            )
            return (kind, *args)
        raise ValueError(
            f"psf must be None, a 2-D kernel or a spec like ('gaussian', 1.0), ('disk', 2.0), "
            f"('motion', 5.0, 30.0); got {spec!r}."
        )

    def kernel(self) -> np.ndarray | None:
        """The blur kernel this config applies (``None`` for no blur)."""
        return _resolve_psf(self.psf)

    def replace(self, **changes) -> AcquisitionConfig:
        """Copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def _key(self):
        vals = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = (v.shape, v.tobytes())
            vals.append(v)
        return tuple(vals)

    # ----------------------------------------------------------------- presets
    # Each preset is 16-bit and names only what differs from the field defaults.

    @classmethod
    def _preset(cls, overrides: dict, **settings) -> AcquisitionConfig:
        return cls(**{"bits": 16, **settings, **overrides})

    @classmethod
    def low_dose_tem(cls, **overrides) -> AcquisitionConfig:
        """Direct electron detector in counting mode, dose-limited (beam-sensitive)."""
        camera = dict(spike_fraction=1e-5, spike_amplitude=10.0, dead_fraction=1e-4)
        return cls._preset(overrides, dose=10.0, psf=("gaussian", 0.5), **camera)

    @classmethod
    def high_dose_tem(cls, **overrides) -> AcquisitionConfig:
        """Scintillator-coupled CMOS/CCD camera in integrating mode, high dose."""
        detector = dict(gain=8.0, offset=100.0, readout_sigma=4.0, dark_current=0.5)
        defects = dict(spike_fraction=1e-5, spike_amplitude=20.0, dead_fraction=1e-4)
        return cls._preset(overrides, dose=1000.0, psf=("gaussian", 1.0), **detector, **defects)

    @classmethod
    def stem(cls, **overrides) -> AcquisitionConfig:
        """Scanning TEM (e.g. HAADF): probe blur, scan jitter and line noise."""
        scan = dict(gain=10.0, offset=200.0, readout_sigma=5.0, scan_jitter=0.3, line_noise=3.0)
        return cls._preset(overrides, modality="stem", dose=50.0, psf=("gaussian", 1.0), **scan)

    @classmethod
    def sem(cls, **overrides) -> AcquisitionConfig:
        """Scanning electron microscope, secondary electrons with a scintillator/PMT."""
        pmt = dict(gain=50.0, offset=1000.0, readout_sigma=30.0)
        return cls._preset(
            overrides,
            modality="sem",
            dose=20.0,
            psf=("gaussian", 1.5),
            scan_jitter=0.2,
            line_noise=20.0,
            **pmt,
        )

    @classmethod
    def liquid_cell_tem(cls, **overrides) -> AcquisitionConfig:
        """Liquid-cell TEM: low dose (radiolysis), chromatic blur from the thick liquid.

        The counting camera of :meth:`low_dose_tem`, at 20 e⁻/px through a 1.5 px blur.
        """
        return cls.low_dose_tem(**{"dose": 20.0, "psf": ("gaussian", 1.5), **overrides})


PRESETS = ("low_dose_tem", "high_dose_tem", "stem", "sem", "liquid_cell_tem")


def simulate_acquisition(
    clean, config: AcquisitionConfig | None = None, *, rng=None, return_expected: bool = False
):
    """Record a clean specimen: blur, scan jitter, shot noise, defects, detector, ADC.

    Steps, in order (each skipped when its parameter is zero / ``None``):

    1. ``b = max(convolve(clean, config.kernel(), boundary="reflect"), 0)``
    2. ``b = scan_jitter(b, sigma_px=config.scan_jitter)`` (stem / sem)
    3. ``n = poisson_dose(b, config.dose)`` (electrons)
    4. ``n = xray_spikes(n, fraction=spike_fraction, amplitude=spike_amplitude * dose)``
    5. ``a = detector(n, gain, offset, readout_sigma, dark_current)`` (ADU)
    6. ``a = line_noise(a, sigma=config.line_noise)`` (stem / sem)
    7. ``a = dead_pixels(a, fraction=dead_fraction, value=0)``
    8. ``a = quantize(a, bits=bits)`` when ``bits`` is set.

    Parameters
    ----------
    clean : (..., rows, cols) array_like
        Fraction of the dose reaching the detector (``>= 0``, 1 = vacuum). Frames
        of a stack get independent noise.
    config : AcquisitionConfig, optional
        Default ``AcquisitionConfig()`` (TEM, 100 e⁻/px, Poisson noise only).
    rng : None, int or numpy.random.Generator
    return_expected : bool
        Also return the noise-free expectation in ADU,
        ``gain * (dose * b + dark_current) + offset`` (after blur and jitter), e.g.
        as a training target.

    Returns
    -------
    noisy : float64 ndarray in ADU, or uint8/16/32 when ``config.bits`` is set
    expected : float64 ndarray (only with ``return_expected=True``)

    Examples
    --------
    >>> noisy = simulate_acquisition(np.ones((32, 32)), AcquisitionConfig.high_dose_tem(), rng=0)
    >>> noisy.dtype, 7000 < float(noisy.mean()) < 10000
    (dtype('uint16'), True)
    """
    img = check_image(clean, "clean", nonnegative=True)
    if config is None:
        config = AcquisitionConfig()
    if not isinstance(config, AcquisitionConfig):
        raise ValueError(
            f"config must be an AcquisitionConfig; got {type(config).__name__}. "
            "Use e.g. AcquisitionConfig.low_dose_tem()."
        )
    gen = as_rng(rng)
    c = config
    k = c.kernel()
    b = img if k is None else np.maximum(_psf.convolve(img, k), 0.0)
    if c.scan_jitter > 0:
        b = np.maximum(scan_jitter(b, sigma_px=c.scan_jitter, rng=gen), 0.0)
    n = poisson_dose(b, c.dose, rng=gen)
    if c.spike_fraction > 0:
        n = xray_spikes(n, fraction=c.spike_fraction, amplitude=c.spike_amplitude * c.dose, rng=gen)
    a = detector(
        n,
        gain=c.gain,
        offset=c.offset,
        readout_sigma=c.readout_sigma,
        dark_current=c.dark_current,
        rng=gen,
    )
    if c.line_noise > 0:
        a = line_noise(a, sigma=c.line_noise, rng=gen)
    if c.dead_fraction > 0:
        a = dead_pixels(a, fraction=c.dead_fraction, value=0.0, rng=gen)
    if c.bits is not None:
        a = quantize(a, bits=c.bits)
    if return_expected:
        return a, c.gain * (c.dose * b + c.dark_current) + c.offset
    return a


def _loguniform(gen: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(gen.uniform(math.log(lo), math.log(hi))))


def random_acquisition_config(rng=None, *, modality: str | None = None) -> AcquisitionConfig:
    """Draw a plausible random acquisition (for diverse training data).

    Parameters
    ----------
    rng : None, int or numpy.random.Generator
    modality : {"tem", "stem", "sem"}, optional
        Fixed modality; default drawn uniformly.

    Returns
    -------
    AcquisitionConfig
        Dose log-uniform (TEM 1–1000, STEM 5–500, SEM 2–200 e⁻/px); blur ``None``
        (25 %) or a Gaussian / disk / (TEM) motion kernel of 0.5–4 px; detector
        parameters from the ranges of the presets; 16-bit output.

    Examples
    --------
    >>> random_acquisition_config(0) == random_acquisition_config(0)
    True
    """
    gen = as_rng(rng)
    if modality is None:
        modality = str(gen.choice(AcquisitionConfig.MODALITIES))
    modality = check_choice(modality, "modality", AcquisitionConfig.MODALITIES)
    kinds = ["gaussian", "disk"] + (["motion"] if modality == "tem" else [])
    psf = None
    if gen.random() >= 0.25:
        kind = kinds[gen.integers(len(kinds))]
        if kind == "gaussian":
            psf = ("gaussian", round(gen.uniform(0.5, 2.5), 3))
        elif kind == "disk":
            psf = ("disk", round(gen.uniform(1.0, 4.0), 3))
        else:
            psf = ("motion", round(gen.uniform(1.0, 8.0), 3), round(gen.uniform(0, 180), 1))
    u = gen.uniform
    if modality == "tem":
        dose = _loguniform(gen, 1.0, 1000.0)
        if gen.random() < 0.5:  # counting direct detector
            det = dict(gain=1.0, offset=0.0, readout_sigma=0.0, dark_current=0.0)
        else:  # integrating scintillator camera
            det = dict(gain=u(2, 12), offset=u(0, 200), readout_sigma=u(1, 8), dark_current=u(0, 1))
        extra = dict(
            spike_fraction=_loguniform(gen, 1e-6, 1e-4) if gen.random() < 0.5 else 0.0,
            spike_amplitude=u(5, 30),
            dead_fraction=_loguniform(gen, 1e-5, 1e-3) if gen.random() < 0.5 else 0.0,
        )
    elif modality == "stem":
        dose = _loguniform(gen, 5.0, 500.0)
        gain = u(2, 20)
        det = dict(gain=gain, offset=u(0, 500), readout_sigma=u(0, 10), dark_current=0.0)
        extra = dict(scan_jitter=u(0, 0.6), line_noise=u(0, 0.5) * gain)
    else:
        dose = _loguniform(gen, 2.0, 200.0)
        gain = u(20, 100)
        det = dict(gain=gain, offset=u(200, 2000), readout_sigma=u(5, 60), dark_current=0.0)
        extra = dict(scan_jitter=u(0, 0.5), line_noise=u(0, 0.5) * gain)
    return AcquisitionConfig(modality=modality, dose=dose, psf=psf, bits=16, **det, **extra)
