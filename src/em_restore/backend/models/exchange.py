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
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .store import (
    CONFIG_FILE,
    LoadedModel,
    ModelConfig,
    ModelError,
    bundled_model_dir,
    file_sha256,
    load_model,
    save_model,
    user_model_dir,
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

ONNX_FILE = "model.onnx"
ONNX_OPSET = 17
BMZ_FORMAT_VERSION = "0.5"
#: ONNX metadata keys written by :func:`export_onnx` and read by :func:`load_onnx`.
META_CONFIG = "em_restore_config"
META_STRIDE = "em_restore_stride"
#: Assumed for an ONNX file without our metadata (a foreign export).
FOREIGN_NORMALISATION = {"kind": "percentile", "low": 0.1, "high": 99.9}
FOREIGN_STRIDE = 16
SCALE_RANGE_EPS = 1e-6  # BMZ scale_range: (x - lo) / (hi - lo + eps)
#: Output pixels a BMZ runner that tiles should drop at each tile edge. Measured on a
#: 1024² frame in 512² tiles (em-denoise-fast, normalised units): largest seam error
#: 2.7e-6 with 96 px, 8.2e-4 with 64, 9.2e-3 with 32.
BMZ_HALO = 96
_ARCH_MODULE = "em_restore.backend.models.nets"
_ARCH_CALLABLE = "build_network"
_PACKAGE_URL = "https://pypi.org/project/napari-em-restore/"
# The burst network's tensors, in its forward order.
_BURST_INPUTS = ("frames", "masks", "motion", "base")


class ExchangeError(ModelError):
    """An export or import that cannot be done (one line: what, why, what to do)."""


def _require(module: str, extra: str, what: str):
    """Import an optional dependency or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExchangeError(
            f"{what} needs the optional package {module.split('.')[0]}, which is not "
            f"installed; install it with: pip install 'napari-em-restore[{extra}]'."
        ) from None


def _loaded(model) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    return load_model(model, device="cpu")


def _cpu_net(model: LoadedModel):
    """A float32, contiguous-format CPU copy of the network in eval mode (for tracing)."""
    import copy

    import torch

    net = copy.deepcopy(model.net).to("cpu", torch.float32)
    return net.to(memory_format=torch.contiguous_format).eval()


def _io_names(task: str) -> tuple[tuple[str, ...], str]:
    return (_BURST_INPUTS, "restored") if task == "burst" else (("input",), "output")


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

    inputs, output = _io_names(task)
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
    onnx = _require("onnx", "onnx", "ONNX export")
    model = _loaded(model)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another name or pass overwrite=True.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        _export_onnx_graph(_cpu_net(model), model.config.task, Path(tmp))
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
class OnnxModel:
    """An ONNX denoiser run by onnxruntime on the CPU, usable wherever a
    :class:`~em_restore.backend.models.store.LoadedModel` is (``predict``,
    ``ModelPlan``): same ``net``, ``config``, ``device``, ``name`` and metadata."""

    net: _OnnxNet
    config: OnnxConfig
    path: Path
    sha256: str
    device: Any

    @property
    def name(self) -> str:
        return self.config.name

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
    ort = _require("onnxruntime", "onnx", "running an ONNX model")
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


# --------------------------------------------------------------------------- BMZ out
def _simulated_frame(size: int = 256, seed: int = 0) -> tuple[np.ndarray, float]:
    """A low-dose TEM recording of nanoparticles (ADU, float32) and its pixel size (nm)."""
    from .. import simulate as sim

    pixel = 0.5
    clean, _ = sim.nanoparticles((size, size), pixel_size_nm=pixel, rng=seed)
    config = sim.AcquisitionConfig.low_dose_tem(dose=20.0, spike_fraction=0.0, dead_fraction=0.0)
    noisy = sim.simulate_acquisition(clean, config, rng=seed + 1)
    return np.asarray(noisy, dtype=np.float32), pixel


def scale_range(x: np.ndarray, rule: dict, axes: tuple[int, ...]) -> np.ndarray:
    """BMZ ``scale_range`` as its runners compute it: ``(x - lo) / (hi - lo + eps)``,
    percentiles over ``axes`` (linear interpolation, like :func:`numpy.percentile`)."""
    lo = np.percentile(x, rule["low"], axis=axes, keepdims=True)
    hi = np.percentile(x, rule["high"], axis=axes, keepdims=True)
    return ((x - lo) / (hi - lo + SCALE_RANGE_EPS)).astype(np.float32)


def _burst_test_window(rule: dict, seed: int = 0) -> dict:
    """A simulated, registered 5-frame window as the burst network gets it."""
    from ..fuse import fuse_wiener, window_velocity
    from .burst import _normalise, simulated_window

    aligned, _, _ = simulated_window(np.random.default_rng(seed), size=128, frames=5)
    frames, lo, scale = _normalise(aligned, rule)
    return {
        "frames": frames[None],
        "masks": aligned.masks.astype(np.float32)[None],
        "motion": window_velocity(aligned.shifts).astype(np.float32)[None],
        "base": ((fuse_wiener(aligned) - lo) / scale).astype(np.float32)[None, None],
    }


def _bmz_test_tensors(model: LoadedModel, net) -> tuple[dict, dict, float]:
    """Raw test inputs (as a BMZ runner gets them), the expected output, pixel size."""
    import torch

    rule = model.config.normalisation
    if model.config.task == "burst":
        # Prepared as em-restore prepares them (BMZ cannot normalise four tensors by
        # the middle frame's percentiles): the package's inputs are normalised.
        raw = _burst_test_window(rule)
        args = tuple(raw.values())
        pixel = 1.0
    else:
        frame, pixel = _simulated_frame()
        raw = {"input": frame[None, None]}
        args = (scale_range(raw["input"], rule, (2, 3)),)
    with torch.inference_mode():
        out = net(*(torch.from_numpy(np.ascontiguousarray(a)) for a in args)).numpy()
    return raw, {_io_names(model.config.task)[1]: out.astype(np.float32)}, pixel


def _cover(raw: np.ndarray, restored: np.ndarray, path: Path) -> None:
    """A 2:1 PNG: the noisy test frame beside the network's output (same contrast)."""
    import imageio.v3 as iio

    def grey(a, lo, hi):
        return (np.clip((a - lo) / (hi - lo or 1.0), 0, 1) * 255).astype(np.uint8)

    lo, hi = np.percentile(raw, [0.5, 99.5])
    left, right = grey(raw, lo, hi), grey(restored, lo, hi)
    iio.imwrite(path, np.concatenate([left, right], axis=1))


def _model_card(model: LoadedModel, card_source: Path | None) -> str:
    cfg = model.config
    lines = [f"# {cfg.name}", "", cfg.description, ""]
    if card_source is not None and card_source.is_file():
        body = card_source.read_text(encoding="utf-8").split("\n", 1)[-1]
        lines += [body.strip(), ""]
    lines += [
        "## Exported from em-restore",
        "",
        f"Exported by em-restore from the model folder `{cfg.name}` (weights SHA-256 "
        f"`{model.sha256}`); the original `config.json` is attached.",
        "",
        "Pre-processing is `scale_range` with the model's percentiles "
        f"({cfg.normalisation['low']}, {cfg.normalisation['high']}) per sample over y and x "
        "(the burst network: over all frames). The output is in those normalised units: "
        "BMZ has no operation that undoes a data-dependent scaling, which em-restore's own "
        "inference does (multiply by p_high - p_low of the input and add p_low). em-restore "
        "also replaces isolated outliers (X-ray spikes, hot pixels) before the network; "
        "no BMZ operation expresses that either.",
        "",
        "## Validation",
        "",
    ]
    metrics = cfg.metrics or {}
    if metrics:
        lines.append("Held-out simulator benchmark recorded with the model:")
        lines.append("")
        lines.append("```json")
        lines.append(json.dumps(metrics, indent=2)[:4000])
        lines.append("```")
    else:
        lines.append("Scored on held-out simulated data during training (see the attached config).")
    lines.append("")
    return "\n".join(lines)


def _axes(task: str, stride: int, pixel: float):
    """BMZ input and output tensor descriptions (without data, processing, tensors)."""
    from bioimageio.spec.model import v0_5 as b

    halo = BMZ_HALO if task == "denoise" else 0  # the burst test window is 128² px

    def space(ids, ref=None):
        out = []
        for a in ids:
            if ref is None:
                size = b.ParameterizedSize(min=max(2 * halo + 64, 4 * stride), step=stride)
                out.append(
                    b.SpaceInputAxis(id=b.AxisId(a), size=size, scale=pixel, unit=_unit(pixel))
                )
                continue
            size = b.SizeReference(tensor_id=b.TensorId(ref), axis_id=b.AxisId(a))
            kw = {"id": b.AxisId(a), "size": size, "scale": pixel, "unit": _unit(pixel)}
            out.append(
                b.SpaceOutputAxisWithHalo(halo=halo, **kw) if halo else b.SpaceOutputAxis(**kw)
            )
        return out

    def channel(name):
        return b.ChannelAxis(channel_names=[b.Identifier(name)])

    if task == "burst":
        frame_axis = b.IndexInputAxis(id=b.AxisId("frame"), size=b.ParameterizedSize(min=2, step=1))
        same_frames = b.SizeReference(tensor_id=b.TensorId("frames"), axis_id=b.AxisId("frame"))

        def follow(a):
            return b.SpaceInputAxis(
                id=b.AxisId(a),
                size=b.SizeReference(tensor_id=b.TensorId("frames"), axis_id=b.AxisId(a)),
                scale=pixel,
                unit=_unit(pixel),
            )

        inputs = {
            "frames": [b.BatchAxis(), frame_axis, *space("yx")],
            "masks": [
                b.BatchAxis(),
                b.IndexInputAxis(id=b.AxisId("frame"), size=same_frames),
                follow("y"),
                follow("x"),
            ],
            "motion": [
                b.BatchAxis(),
                b.IndexInputAxis(id=b.AxisId("frame"), size=same_frames),
                b.ChannelAxis(channel_names=[b.Identifier("dy"), b.Identifier("dx")]),
            ],
            "base": [b.BatchAxis(), channel("intensity"), follow("y"), follow("x")],
        }
        outputs = {"restored": [b.BatchAxis(), channel("intensity"), *space("yx", "frames")]}
    else:
        inputs = {"input": [b.BatchAxis(), channel("intensity"), *space("yx")]}
        outputs = {"output": [b.BatchAxis(), channel("intensity"), *space("yx", "input")]}
    return inputs, outputs


def _unit(pixel: float):
    return "nanometer"


_INPUT_TEXT = {  # BMZ allows 128 characters; docs/exchange.md says more
    "input": "Raw frame (detector units); scale_range normalises it.",
    "frames": "Registered frames of one window (any number, any order), normalised by the "
    "middle frame's percentiles.",
    "masks": "Coverage of each aligned frame: 1 where it covers the pixel, else 0.",
    "motion": "Stage velocity of each frame (dy, dx) in pixels per frame, from the registration.",
    "base": "Multi-frame Wiener estimate, normalised like the frames; the output is a residual "
    "over it.",
    "output": "Denoised frame in normalised units (0: the input's low percentile, 1: its high).",
    "restored": "Sharp middle frame in normalised units (0: the frames' low percentile, 1: high).",
}


def _preprocessing(name: str, rule: dict, task: str):
    from bioimageio.spec.model import v0_5 as b

    steps = [b.EnsureDtypeDescr(kwargs=b.EnsureDtypeKwargs(dtype="float32"))]
    if task == "denoise":
        steps.append(
            b.ScaleRangeDescr(
                kwargs=b.ScaleRangeKwargs(
                    axes=[b.AxisId("y"), b.AxisId("x")],
                    min_percentile=rule["low"],
                    max_percentile=rule["high"],
                    eps=SCALE_RANGE_EPS,
                )
            )
        )
    return steps


def export_bmz(
    model,
    path: str | os.PathLike,
    *,
    authors: list[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a BioImage Model Zoo package (format 0.5).

    ``path`` ending in ``.zip``: the zipped package; otherwise a folder holding
    ``rdf.yaml`` and its files. The description is built with ``bioimageio.spec``
    and validated before anything is written; weights as ``pytorch_state_dict``
    (architecture :func:`em_restore.backend.models.nets.build_network` with the
    model's hyper-parameters), ``torchscript`` and ``onnx``; test tensors from the
    simulator (a low-dose TEM frame, or a registered burst window); a cover; the
    model card as documentation; the original ``config.json`` attached (so
    :func:`import_bmz` restores the model exactly).

    Axes: a denoiser maps ``input (batch, channel, y, x)`` to ``output (batch,
    channel, y, x)``. The burst network takes four inputs in its forward order:
    ``frames (batch, frame, y, x)`` with ``frame`` an index axis of any size >= 2,
    ``masks (batch, frame, y, x)``, ``motion (batch, frame, channel[dy, dx])`` and
    ``base (batch, channel, y, x)``; the sizes of the others refer to ``frames``.
    """
    _require("bioimageio.spec", "bmz", "BioImage Model Zoo export")
    import torch
    from bioimageio.spec import (
        InvalidDescr,
        save_bioimageio_package,
        save_bioimageio_package_as_folder,
    )
    from bioimageio.spec.model import v0_5 as b

    model = _loaded(model)
    cfg = model.config
    if cfg.normalisation["kind"] != "percentile":
        raise ValueError(
            f"{cfg.name} takes its input in the frame's own noise units (normalisation "
            f"{cfg.normalisation['kind']!r}), which no BioImage Model Zoo pre-processing can "
            "compute; export it to ONNX (em-restore export --format onnx) or export a "
            "percentile-normalised model such as em-denoise-fast-v1."
        )
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another name or pass overwrite=True.")
    net = _cpu_net(model)
    stride = int(model.net.stride)
    work = Path(tempfile.mkdtemp(prefix="em-restore-bmz-"))
    try:
        raw_in, expected, pixel = _bmz_test_tensors(model, net)
        weights_pt = work / "weights.pt"
        torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, weights_pt)
        ts_path = work / "weights_torchscript.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            example = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in raw_in.values())
            torch.jit.trace(net, example, check_trace=False).save(str(ts_path))
        onnx_path = export_onnx(model, work / "weights.onnx")
        (work / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", "utf-8")
        card = bundled_model_dir().parents[2] / "docs" / "models" / f"{cfg.name}.md"
        (work / "README.md").write_text(
            _model_card(model, card if card.is_file() else None), "utf-8"
        )
        first_in = next(iter(raw_in.values()))[0]
        out_name, out_arr = next(iter(expected.items()))
        shown = first_in[first_in.shape[0] // 2]  # the (middle) frame, normalised units:
        if cfg.task == "denoise":
            shown = scale_range(first_in, cfg.normalisation, (1, 2))[0]
        _cover(shown, out_arr[0, 0], work / "cover.png")

        in_axes, out_axes = _axes(cfg.task, stride, pixel)
        inputs = []
        for name, arr in raw_in.items():
            np.save(work / f"test_{name}.npy", arr)
            inputs.append(
                b.InputTensorDescr(
                    id=b.TensorId(name),
                    description=_INPUT_TEXT[name],
                    axes=in_axes[name],
                    test_tensor=b.FileDescr(source=work / f"test_{name}.npy"),
                    data=b.IntervalOrRatioDataDescr(type="float32"),
                    preprocessing=_preprocessing(name, cfg.normalisation, cfg.task),
                )
            )
        np.save(work / f"test_{out_name}.npy", out_arr)
        outputs = [
            b.OutputTensorDescr(
                id=b.TensorId(out_name),
                description=_INPUT_TEXT[out_name],
                axes=out_axes[out_name],
                test_tensor=b.FileDescr(source=work / f"test_{out_name}.npy"),
                data=b.IntervalOrRatioDataDescr(type="float32"),
            )
        ]
        version = b.Version(torch.__version__.split("+")[0])
        arch = b.ArchitectureFromLibraryDescr(
            callable=b.Identifier(_ARCH_CALLABLE),
            import_from=_ARCH_MODULE,
            kwargs={"arch": cfg.architecture, "params": dict(cfg.arch_params)},
        )
        weights = b.WeightsDescr(
            pytorch_state_dict=b.PytorchStateDictWeightsDescr(
                source=weights_pt,
                architecture=arch,
                pytorch_version=version,
                dependencies=None,
            ),
            torchscript=b.TorchscriptWeightsDescr(
                source=ts_path, pytorch_version=version, parent="pytorch_state_dict"
            ),
            onnx=b.OnnxWeightsDescr(
                source=onnx_path, opset_version=ONNX_OPSET, parent="pytorch_state_dict"
            ),
        )
        from em_restore import __version__

        descr = b.ModelDescr(
            name=cfg.name,
            description=(cfg.description or f"em-restore {cfg.task} model")[:1024],
            authors=[b.Author(name=a) for a in (authors or ["napari-em-restore developers"])],
            cite=[
                b.CiteEntry(
                    text="napari-em-restore: restoration of electron-microscopy images",
                    url=b.HttpUrl(_PACKAGE_URL),
                )
            ],
            license=b.LicenseId("BSD-3-Clause"),
            documentation=b.FileDescr(source=work / "README.md"),
            covers=[b.FileDescr(source=work / "cover.png")],
            tags=[
                "electron-microscopy",
                "denoising" if cfg.task == "denoise" else "deblurring",
                "2d",
                "pytorch",
                "em-restore",
            ],
            inputs=inputs,
            outputs=outputs,
            weights=weights,
            attachments=[b.FileDescr(source=work / CONFIG_FILE)],
            version=b.Version("1.0"),
            config=b.Config(
                bioimageio=b.BioimageioConfig(
                    reproducibility_tolerance=[
                        b.ReproducibilityTolerance(relative_tolerance=1e-3, absolute_tolerance=1e-4)
                    ]
                ),
                **{"em_restore": {"version": __version__, "weights_sha256": model.sha256}},
            ),
        )
        if isinstance(descr, InvalidDescr):  # pragma: no cover - construction raises instead
            raise ExchangeError(f"BMZ description of {cfg.name} is invalid.")
        if path.suffix.lower() == ".zip":
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            save_bioimageio_package(descr, output_path=tmp)
            os.replace(tmp, path)
        else:
            if path.exists():
                shutil.rmtree(path)
            save_bioimageio_package_as_folder(descr, output_path=path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


# --------------------------------------------------------------------------- BMZ in
def _bmz_descr(source: Path):
    _require("bioimageio.spec", "bmz", "BioImage Model Zoo import")
    from bioimageio.spec import InvalidDescr, load_model_description
    from bioimageio.spec.model import v0_5 as b

    if source.is_dir():
        source = source / "rdf.yaml"
    if not source.exists():
        raise ExchangeError(f"no BMZ package at {source}; pass a package .zip or its rdf.yaml.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        descr = load_model_description(source, format_version="latest", perform_io_checks=True)
    if isinstance(descr, InvalidDescr) or not isinstance(descr, b.ModelDescr):
        raise ExchangeError(
            f"{source} is not a valid BioImage Model Zoo model package; check it with "
            "`bioimageio validate`."
        )
    return descr


def _check_denoiser(descr, where: str) -> None:
    """One 2-D single-channel input and output, processing we can run without code."""
    from bioimageio.spec.model import v0_5 as b

    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise ExchangeError(
            f"{where} has {len(descr.inputs)} inputs and {len(descr.outputs)} outputs; "
            "em-restore imports 2-D single-channel denoisers (one input, one output)."
        )
    for t in (descr.inputs[0], descr.outputs[0]):
        kinds = [a.type for a in t.axes]
        channels = [a for a in t.axes if isinstance(a, b.ChannelAxis)]
        space = [str(a.id) for a in t.axes if a.type == "space"]
        if (
            space != ["y", "x"]
            or any(k not in ("batch", "channel", "space") for k in kinds)
            or (channels and len(channels[0].channel_names) != 1)
        ):
            raise ExchangeError(
                f"{where}: tensor {t.id} has axes {kinds}; em-restore imports 2-D "
                "single-channel denoisers (batch, channel of 1, y, x)."
            )
    allowed = (b.EnsureDtypeDescr, b.ScaleRangeDescr)
    for step in (*descr.inputs[0].preprocessing, *descr.outputs[0].postprocessing):
        if not isinstance(step, allowed):
            raise ExchangeError(
                f"{where} needs processing step {step.id!r}, which em-restore does not run; "
                "it imports denoisers whose only processing is scale_range (and ensure_dtype)."
            )


def _rule_of(descr) -> dict:
    from bioimageio.spec.model import v0_5 as b

    for step in descr.inputs[0].preprocessing:
        if isinstance(step, b.ScaleRangeDescr):
            k = step.kwargs
            return {
                "kind": "percentile",
                "low": float(k.min_percentile),
                "high": float(k.max_percentile),
            }
    return {"kind": "percentile", "low": 0.0, "high": 100.0}


def _stride_of(descr) -> int:
    steps = [
        int(getattr(a.size, "step", 1))
        for a in descr.inputs[0].axes
        if a.type == "space" and hasattr(a.size, "step")
    ]
    return max(steps, default=1)


def _read_file(descr, file_descr, work: Path, name: str) -> Path:
    from bioimageio.spec.common import FileDescr  # noqa: F401  (type only)

    reader = file_descr.get_reader()
    out = work / name
    out.write_bytes(reader.read())
    return out


def _needs_code(descr, where: str):
    """A one-line refusal for weights that would run foreign code (or none we can run)."""
    formats = [
        f
        for f in (
            "pytorch_state_dict",
            "torchscript",
            "onnx",
            "keras_hdf5",
            "tensorflow_saved_model_bundle",
            "tensorflow_js",
            "keras_v3",
        )
        if getattr(descr.weights, f, None) is not None
    ]
    psd = descr.weights.pytorch_state_dict
    arch = ""
    if psd is not None:
        a = psd.architecture
        arch = f" (architecture {getattr(a, 'import_from', None) or a.source}.{a.callable})"
    return ExchangeError(
        f"{where} needs code to run: its weights are {', '.join(formats)}{arch}, and "
        "em-restore runs only its own architectures or ONNX weights, never a package's "
        "code; ask its authors for ONNX weights."
    )


def import_bmz(
    source: str | os.PathLike,
    *,
    name: str | None = None,
    folder: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Install a BMZ package (``.zip``, folder or ``rdf.yaml``) as a user model.

    Ours (``pytorch_state_dict`` whose architecture is
    :func:`em_restore.backend.models.nets.build_network`): the state dict is read
    with ``torch.load(weights_only=True)`` and saved as ``config.json`` +
    ``model.safetensors`` (the attached config when present, so the model is the
    same as before export). Any other 2-D single-channel denoiser with ONNX weights:
    ``model.onnx`` with its normalisation and stride written into the file's
    metadata, run by onnxruntime. Anything else is refused in one line: a foreign
    architecture is code, and em-restore never runs a package's code.

    Returns the new model folder (default ``user_model_dir() / name``).
    """
    src = Path(source).expanduser()
    descr = _bmz_descr(src)
    where = src.name
    _check_denoiser_or_ours(descr, where)
    name = name or str(descr.name).strip().replace("/", "-").replace(" ", "-")
    bundled = {p.name for p in bundled_model_dir().iterdir() if p.is_dir()}
    if name in bundled:
        raise ExchangeError(
            f"a bundled model is named {name!r}; import under another name (--name NAME)."
        )
    target = Path(folder) if folder is not None else user_model_dir() / name
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise ExchangeError(f"{target} already holds a model; pass --name NAME or --overwrite.")
    work = Path(tempfile.mkdtemp(prefix="em-restore-import-"))
    try:
        psd = descr.weights.pytorch_state_dict
        if psd is not None and _is_ours(psd.architecture):
            return _import_ours(descr, psd, name, target, work, overwrite)
        if descr.weights.onnx is not None:
            return _import_onnx(descr, name, target, work, overwrite)
        raise _needs_code(descr, where)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _is_ours(arch) -> bool:
    return (
        getattr(arch, "import_from", None) == _ARCH_MODULE and str(arch.callable) == _ARCH_CALLABLE
    )


def _check_denoiser_or_ours(descr, where: str) -> None:
    psd = descr.weights.pytorch_state_dict
    if psd is not None and _is_ours(psd.architecture):
        kw = psd.architecture.kwargs
        if kw.get("arch") == "burst_dense_unet":
            return  # our burst network: four inputs, restored from its attached config
    _check_denoiser(descr, where)


def _import_ours(descr, psd, name: str, target: Path, work: Path, overwrite: bool) -> Path:
    import torch

    from .nets import build_network

    kw = dict(psd.architecture.kwargs)
    try:
        net = build_network(kw.get("arch"), kw.get("params"))
    except ValueError as err:
        raise ExchangeError(f"{descr.name}: {err}") from None
    weights = _read_file(descr, psd, work, "weights.pt")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    except Exception as err:  # weights-only unpickler refusals and shape mismatches
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExchangeError(f"weights of {descr.name} cannot be loaded as data: {first}") from None
    config = None
    for att in descr.attachments:
        if Path(str(att.source)).name == CONFIG_FILE or str(att.source).endswith(CONFIG_FILE):
            data = json.loads(_read_file(descr, att, work, CONFIG_FILE).read_text("utf-8"))
            data["name"] = name
            data["weights_sha256"] = ""
            config = ModelConfig.from_dict(data, where=f"{descr.name} {CONFIG_FILE}")
    if config is None:
        config = ModelConfig(
            name=name,
            architecture=kw["arch"],
            arch_params=dict(kw.get("params") or {}),
            normalisation=_rule_of(descr),
            description=str(descr.description),
        )
    net.eval()
    return save_model(target, net, config, overwrite=overwrite)


def _import_onnx(descr, name: str, target: Path, work: Path, overwrite: bool) -> Path:
    onnx = _require("onnx", "onnx", "importing ONNX weights")
    src = _read_file(descr, descr.weights.onnx, work, ONNX_FILE)
    proto = onnx.load(str(src))
    meta = {
        META_CONFIG: json.dumps(
            {
                "name": name,
                "task": "denoise",
                "normalisation": _rule_of(descr),
                "architecture": "onnx",
                "description": str(descr.description),
            }
        ),
        META_STRIDE: str(_stride_of(descr)),
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    target.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for stale in (CONFIG_FILE, "model.safetensors"):
            (target / stale).unlink(missing_ok=True)
    tmp = target / f".{ONNX_FILE}.tmp"
    onnx.save(proto, str(tmp))
    os.replace(tmp, target / ONNX_FILE)
    return target


def package_files(path: str | os.PathLike) -> list[str]:
    """Names in a zipped package (for messages and tests)."""
    with zipfile.ZipFile(path) as z:
        return sorted(z.namelist())
