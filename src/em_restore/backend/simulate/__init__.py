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
from . import degrade, specimens
from .degrade import *  # noqa: F403
from .specimens import *  # noqa: F403
from .streams import drift, moving_stage_stream, subpixel_crop

__all__ = [
    "as_rng",
    "convolve",
    "disk_psf",
    "drift",
    "gaussian_psf",
    "motion_psf",
    "moving_stage_stream",
    "pad_psf",
    "path_psf",
    "psf_to_otf",
    "random_motion_path",
    "subpixel_crop",
    *degrade.__all__,
    *specimens.__all__,
]

from . import atomic, distortions, mesoscale, wide  # the wide simulator (issue 28)

__all__ += ["atomic", "distortions", "mesoscale", "wide"]
