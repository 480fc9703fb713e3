"""Sharing models: BioImage Model Zoo packages and ONNX files, out and in.

Out
    :func:`export_onnx` writes a model as one ONNX file with dynamic batch and
    spatial size (and, for the burst network, a dynamic number of frames); the
    model's ``config.json`` travels in the file's metadata, so em-restore reads it
    back with its normalisation. :func:`export_bmz` writes a BioImage Model Zoo
    package (format 0.5, built and validated with ``bioimageio.spec``) that Fiji,
    ilastik, deepImageJ, QuPath and napari can run: ``rdf.yaml``, a model card,
    weights as ``pytorch_state_dict`` (architecture taken from this library),
    ``torchscript`` and ``onnx``, test tensors and a cover made from the simulator.
In
    :func:`load_onnx` gives an :class:`OnnxModel` that the inference code runs like
    a loaded torch model (onnxruntime on the CPU). :func:`import_bmz` installs a BMZ
    package as a user model: one of ours (its ``pytorch_state_dict``, read with
    weights-only loading, becomes a ``model.safetensors`` folder) or any 2-D,
    single-channel denoiser with ONNX weights (kept as ``model.onnx``). A package
    that needs code to run (an architecture that is not ours, custom processing) is
    refused in one line; nothing is unpickled.

What BMZ processing can and cannot say (``docs/exchange.md``): the percentile
normalisation is BMZ's ``scale_range`` (same percentiles, over ``y, x`` of each
sample, ``eps`` 1e-6 against our guard for flat frames); undoing it is not a BMZ
operation (BMZ has no data-dependent inverse), so a BMZ output is in normalised
units, and the outlier replacement of :func:`.inference.replace_outliers` is not
expressible either. em-restore's own inference does both.

onnx, onnxruntime and bioimageio are optional (extras ``onnx`` and ``bmz``) and
imported inside the functions; a missing one is a :class:`ExchangeError` naming
the extra to install.

Where each part lives: :mod:`.onnx_io` (ONNX out and in, :class:`ExchangeError`;
below :mod:`.inference`, which runs ONNX models), :mod:`.bmz_export` (BMZ out,
``scale_range``) and :mod:`.bmz_import` (BMZ in). This module re-exports them.
"""

from __future__ import annotations

from .bmz_export import (  # noqa: F401 (re-exported)
    BMZ_FORMAT_VERSION,
    BMZ_HALO,
    SCALE_RANGE_EPS,
    export_bmz,
    scale_range,
    simulated_frame,
)
from .bmz_import import import_bmz, package_files  # noqa: F401 (re-exported)
from .onnx_io import (  # noqa: F401 (re-exported)
    BURST_INPUTS,
    FOREIGN_NORMALISATION,
    FOREIGN_STRIDE,
    META_CONFIG,
    META_STRIDE,
    ONNX_FILE,
    ONNX_OPSET,
    ExchangeError,
    OnnxConfig,
    OnnxModel,
    export_onnx,
    load_onnx,
    onnx_model_path,
    onnx_user_models,
)

__all__ = [
    "BMZ_FORMAT_VERSION",
    "ONNX_FILE",
    "ExchangeError",
    "OnnxModel",
    "export_bmz",
    "export_onnx",
    "import_bmz",
    "load_onnx",
    "onnx_model_path",
    "onnx_user_models",
]

# The names these had when they lived here (tests and benchmarks read them).
_simulated_frame = simulated_frame
_BURST_INPUTS = BURST_INPUTS
