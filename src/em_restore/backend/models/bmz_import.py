"""BioImage Model Zoo packages, in: :func:`import_bmz`.

Installs a BMZ package as a user model: one of ours (its ``pytorch_state_dict``,
read with weights-only loading, becomes a ``model.safetensors`` folder) or any 2-D,
single-channel denoiser with ONNX weights (kept as ``model.onnx``, its
normalisation and stride written into the file's metadata). A package that needs
code to run (an architecture that is not ours, custom processing) is refused in
one line; nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path

from .bmz_export import ARCH_CALLABLE, ARCH_MODULE
from .onnx_io import META_CONFIG, META_STRIDE, ONNX_FILE, ExchangeError, require_optional
from .store import CONFIG_FILE, ModelConfig, bundled_model_dir, save_model, user_model_dir

__all__ = ["import_bmz", "package_files"]


def _bmz_descr(source: Path):
    require_optional("bioimageio.spec", "bmz", "BioImage Model Zoo import")
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
    return getattr(arch, "import_from", None) == ARCH_MODULE and str(arch.callable) == ARCH_CALLABLE


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
    onnx = require_optional("onnx", "onnx", "importing ONNX weights")
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
