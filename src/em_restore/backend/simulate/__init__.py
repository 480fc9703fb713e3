"""Physics-based simulator of electron-microscopy images.

Clean specimens with ground truth (:mod:`.specimens`), blur kernels
(:mod:`em_restore.backend.psf`), dose / detector / scan degradations
(:mod:`.degrade`) and moving-stage image streams (:mod:`.streams`).
See ``docs/simulator.md`` for the physical model and conventions.

Examples
--------
>>> from em_restore.backend import simulate as sim
>>> clean, particles = sim.nanoparticles((128, 128), pixel_size_nm=0.5, rng=0)
>>> noisy = sim.simulate_acquisition(clean, sim.AcquisitionConfig.low_dose_tem(), rng=1)
>>> noisy.shape, noisy.dtype
((128, 128), dtype('uint16'))
"""

from .._args import as_rng
from ..psf import (
    convolve,
    disk_psf,
    gaussian_psf,
    motion_psf,
    pad_psf,
    path_psf,
    psf_to_otf,
    random_motion_path,
)
from .degrade import (
    PRESETS,
    AcquisitionConfig,
    blur,
    correlated_noise,
    dead_pixels,
    detector,
    line_noise,
    poisson_dose,
    quantize,
    random_acquisition_config,
    scan_jitter,
    simulate_acquisition,
    xray_spikes,
)
from .specimens import (
    SPECIMEN_KINDS,
    GridInfo,
    LatticeInfo,
    Particle,
    SpecimenInfo,
    TissueInfo,
    Vesicle,
    VesicleScene,
    atomic_lattice,
    calibration_grid,
    nanoparticles,
    projected_spheres,
    random_specimen,
    tissue_texture,
    vesicles,
)
from .streams import drift, moving_stage_stream, subpixel_crop

__all__ = [
    "PRESETS",
    "SPECIMEN_KINDS",
    "AcquisitionConfig",
    "GridInfo",
    "LatticeInfo",
    "Particle",
    "SpecimenInfo",
    "TissueInfo",
    "Vesicle",
    "VesicleScene",
    "as_rng",
    "atomic_lattice",
    "blur",
    "calibration_grid",
    "convolve",
    "correlated_noise",
    "dead_pixels",
    "detector",
    "disk_psf",
    "drift",
    "gaussian_psf",
    "line_noise",
    "motion_psf",
    "moving_stage_stream",
    "nanoparticles",
    "pad_psf",
    "path_psf",
    "poisson_dose",
    "projected_spheres",
    "psf_to_otf",
    "quantize",
    "random_acquisition_config",
    "random_motion_path",
    "random_specimen",
    "scan_jitter",
    "simulate_acquisition",
    "subpixel_crop",
    "tissue_texture",
    "vesicles",
    "xray_spikes",
]

from . import atomic, distortions, mesoscale, wide  # the wide simulator (issue 28)

__all__ += ["atomic", "distortions", "mesoscale", "wide"]
