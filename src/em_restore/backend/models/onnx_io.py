"""ONNX files, out and in: the low half of model exchange (below inference).

:func:`export_onnx` writes a model as one ONNX file with dynamic batch and spatial
size (and, for the burst network, a dynamic number of frames); the model's
``config.json`` travels in the file's metadata. :func:`load_onnx` gives an
:class:`OnnxModel` that :mod:`.inference` runs like a loaded torch model
(onnxruntime on the CPU); :func:`onnx_model_path` says which model specs mean an
ONNX file. Also here: :class:`ExchangeError` and :func:`require_optional` (the
one-line message naming the extra to install), shared by the BMZ modules.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .store import (
    CONFIG_FILE,
    LoadedModel,
    ModelConfig,
    ModelError,
    file_sha256,
    load_model,
    user_model_dir,
)

__all__ = [
    "BURST_INPUTS",
    "ONNX_FILE",
    "ExchangeError",
    "OnnxModel",
    "export_onnx",
    "load_onnx",
    "onnx_model_path",
    "onnx_user_models",
    "require_optional",
]

ONNX_FILE = "model.onnx"
ONNX_OPSET = 17
#: ONNX metadata keys written by :func:`export_onnx` and read by :func:`load_onnx`.
META_CONFIG = "em_restore_config"
META_STRIDE = "em_restore_stride"
#: Assumed for an ONNX file without our metadata (a foreign export).
FOREIGN_NORMALISATION = {"kind": "percentile", "low": 0.1, "high": 99.9}
FOREIGN_STRIDE = 16
#: The burst network's tensors, in its forward order.
BURST_INPUTS = ("frames", "masks", "motion", "base")


class ExchangeError(ModelError):
    """An export or import that cannot be done (one line: what, why, what to do)."""


def require_optional(module: str, extra: str, what: str):
    """Import an optional dependency or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExchangeError(
            f"{what} needs the optional package {module.split('.')[0]}, which is not "
            f"installed; install it with: pip install 'napari-em-restore[{extra}]'."
        ) from None


def loaded_model(model) -> LoadedModel:
    """``model`` itself when loaded (torch), else the model it names, loaded on the CPU."""
    if isinstance(model, LoadedModel) and not isinstance(model, OnnxModel):
        return model
    return load_model(model, device="cpu")


def cpu_net(model: LoadedModel):
    """A float32, contiguous-format CPU copy of the network in eval mode (for tracing)."""
    import copy

    import torch

    net = copy.deepcopy(model.net).to("cpu", torch.float32)
    return net.to(memory_format=torch.contiguous_format).eval()


def io_names(task: str) -> tuple[tuple[str, ...], str]:
    """Names of the network's inputs and of its output, in forward order."""
    return (BURST_INPUTS, "restored") if task == "burst" else (("input",), "output")


def _example_inputs(task: str, size: int = 64, frames: int = 3):
    import torch

    g = torch.Generator().manual_seed(0)
    if task == "burst":
        return (
            torch.rand(1, frames, size, size, generator=g),
            torch.ones(1, frames, size, size),
            torch.zeros(1, frames, 2),
            torch.rand(1, 1, size, size, generator=g),
        )
    return (torch.rand(1, 1, size, size, generator=g),)


# --------------------------------------------------------------------------- ONNX out
def _export_onnx_graph(net, task: str, path: Path) -> None:
    import torch

    inputs, output = io_names(task)
    spatial = {0: "batch", 2: "y", 3: "x"}
    if task == "burst":
        dims = {
            "frames": {0: "batch", 1: "frames", 2: "y", 3: "x"},
            "masks": {0: "batch", 1: "frames", 2: "y", 3: "x"},
            "motion": {0: "batch", 1: "frames"},
            "base": spatial,
        }
    else:
        dims = {"input": spatial}
    dims[output] = spatial
    with warnings.catch_warnings():
        # torch >= 2.9 warns that this is the TorchScript-based exporter; the
        # torch.export-based one needs onnxscript and gives the same graph here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            net,
            _example_inputs(task),
            str(path),
            dynamo=False,
            input_names=list(inputs),
            output_names=[output],
            dynamic_axes=dims,
            opset_version=ONNX_OPSET,
        )


def export_onnx(model, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` (a name, folder or loaded model) as one ONNX file.

    Batch and spatial sizes are dynamic (any multiple of the network's stride; the
    burst network also takes any number of frames). The model's config (name, task,
    normalisation, weights' SHA-256) and stride are stored in the file's metadata,
    so :func:`load_onnx` restores it with the same normalisation as the original.
    The file is written under a temporary name and moved into place.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "fast.onnx"
    >>> export_onnx("em-denoise-fast", out).name  # doctest: +SKIP
    'fast.onnx'
    """
    onnx = require_optional("onnx", "onnx", "ONNX export")
    model = loaded_model(model)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another name or pass overwrite=True.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        _export_onnx_graph(cpu_net(model), model.config.task, Path(tmp))
        proto = onnx.load(tmp)
        meta = {
            META_CONFIG: json.dumps(model.config.to_dict()),
            META_STRIDE: str(int(model.net.stride)),
        }
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        proto.producer_name = "em-restore"
        proto.doc_string = model.config.description
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


# --------------------------------------------------------------------------- ONNX in
@dataclass(frozen=True)
class OnnxConfig:
    """What inference needs to know about an ONNX model (mirrors :class:`ModelConfig`)."""

    name: str
    task: str = "denoise"
    normalisation: dict = field(default_factory=lambda: dict(FOREIGN_NORMALISATION))
    architecture: str = "onnx"
    arch_params: dict = field(default_factory=dict)
    description: str = ""
    source: str = "em-restore"  # or "foreign": no em-restore metadata, defaults assumed
    ensemble: int = 1  # flips/rotations averaged by default (the exported config's)


class _OnnxNet:
    """Callable like the torch network: ``(B, 1, H, W)`` tensor in, same out."""

    def __init__(self, session, stride: int) -> None:
        self.session = session
        self.stride = stride
        self.input_name = session.get_inputs()[0].name

    def __call__(self, x):
        import torch

        batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.run(batch))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """numpy ``(B, 1, H, W)`` float32 in, numpy out."""
        return self.session.run(None, {self.input_name: batch})[0]


@dataclass
class OnnxModel(LoadedModel):
    """An ONNX denoiser run by onnxruntime on the CPU, usable wherever a
    :class:`~em_restore.backend.models.store.LoadedModel` is (``predict``,
    ``ModelPlan``): same ``net`` (an :class:`_OnnxNet`), ``config`` (an
    :class:`OnnxConfig`), ``path``, ``sha256``, ``device``, ``name`` and metadata."""

    def to_metadata(self) -> dict:
        return {
            "name": self.config.name,
            "sha256": self.sha256,
            "architecture": "onnx",
            "runtime": "onnxruntime (CPU)",
            "normalisation": dict(self.config.normalisation),
            "path": str(self.path),
        }


def onnx_model_path(spec) -> Path | None:
    """The ONNX file ``spec`` means (an ``.onnx`` path, or a user model folder or name
    holding ``model.onnx``), else ``None``."""
    if spec is None:
        return None
    path = Path(os.fspath(spec)).expanduser()
    if path.suffix.lower() == ".onnx":
        return path
    for folder in (path, user_model_dir() / os.fspath(spec)):
        if (
            folder.is_dir()
            and (folder / ONNX_FILE).is_file()
            and not (folder / CONFIG_FILE).exists()
        ):
            return folder / ONNX_FILE
    return None


def onnx_user_models() -> list[Path]:
    """The user model folders that hold an imported ONNX denoiser (``model.onnx``, no
    ``config.json``), by name; listed by ``em-restore models`` beside the torch models."""
    root = user_model_dir()
    if not root.is_dir():
        return []
    return sorted(
        f
        for f in root.iterdir()
        if f.is_dir() and (f / ONNX_FILE).is_file() and not (f / CONFIG_FILE).exists()
    )


def _onnx_config(meta: dict, path: Path) -> tuple[OnnxConfig, int]:
    if META_CONFIG not in meta:
        return OnnxConfig(name=path.stem, source="foreign"), FOREIGN_STRIDE
    try:
        d = json.loads(meta[META_CONFIG])
        norm = (
            ModelConfig.from_dict(d, where=f"{path} metadata").normalisation
            if (d.get("format") == "em-restore-model")
            else d["normalisation"]
        )
        cfg = OnnxConfig(
            name=str(d["name"]),
            task=str(d.get("task", "denoise")),
            normalisation=dict(norm),
            architecture=str(d.get("architecture", "onnx")),
            arch_params=dict(d.get("arch_params", {})),
            description=str(d.get("description", "")),
            ensemble=int(d.get("ensemble", 1)),
        )
        return cfg, int(meta.get(META_STRIDE, FOREIGN_STRIDE))
    except (ValueError, KeyError, TypeError) as err:
        raise ExchangeError(
            f"{path} has unreadable em-restore metadata ({err}); re-export it."
        ) from None


def load_onnx(path: str | os.PathLike, *, threads: int | None = None) -> OnnxModel:
    """Open an ONNX denoiser for :mod:`.inference` (onnxruntime, CPU).

    A file written by :func:`export_onnx` (or :func:`import_bmz`) carries its
    normalisation and stride; any other single-input ``(batch, 1, y, x)`` float32
    network is run with the 0.1/99.9 percentile normalisation and a stride of 16.
    """
    ort = require_optional("onnxruntime", "onnx", "running an ONNX model")
    import torch

    path = Path(path)
    if not path.is_file():
        raise ExchangeError(f"no ONNX file at {path}; pass the path of a .onnx file.")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types for bad files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExchangeError(f"{path} is not a usable ONNX model: {first}") from None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    config, stride = _onnx_config(meta, path)
    ins = session.get_inputs()
    if config.task == "denoise" and (len(ins) != 1 or len(ins[0].shape) != 4):
        shapes = ", ".join(f"{i.name}{list(i.shape)}" for i in ins)
        raise ExchangeError(
            f"{path} takes {shapes}; em-restore runs ONNX denoisers with one "
            "(batch, 1, y, x) input."
        )
    net = _OnnxNet(session, stride)
    return OnnxModel(net, config, path, file_sha256(path), torch.device("cpu"))
