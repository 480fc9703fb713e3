"""Model files and the model registry.

A model is a folder with two files:

* ``model.safetensors``: the weights (no pickle: loading never runs code);
* ``config.json``: a strict :class:`ModelConfig` that rebuilds the network
  (architecture name and hyper-parameters), says how to normalise intensities,
  which modalities it was trained for, how it was trained and what it scored, and
  the SHA-256 of the weights file (checked on every load).

The registry (:func:`list_models`) lists the models bundled in the package
(``em_restore/weights/``) and the user's own: every model folder under
:func:`user_model_dir` (``$EM_RESTORE_MODELS``, else
``$XDG_DATA_HOME/em-restore/models``, else ``~/.local/share/em-restore/models``).
:func:`load_model` accepts a registered name or a folder path.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._args import MODALITIES
from .nets import build_network, network_params
from .normalise import check_rule

__all__ = [
    "CONFIG_FILE",
    "ENSEMBLES",
    "WEIGHTS_FILE",
    "LoadedModel",
    "ModelConfig",
    "ModelEntry",
    "ModelError",
    "bundled_model_dir",
    "check_ensemble",
    "default_model_name",
    "file_sha256",
    "list_models",
    "load_model",
    "refuse_pickle",
    "resolve_model",
    "save_model",
    "user_model_dir",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "em-restore-model"
FORMAT_VERSION = 1
TASKS = ("denoise", "burst")
#: the flip/rotation ensembles inference can average (:func:`.inference.iter_predict`)
ENSEMBLES = (1, 2, 4, 8)


def check_ensemble(ensemble) -> int:
    """``ensemble`` as one of :data:`ENSEMBLES`, or a one-line error."""
    if isinstance(ensemble, bool) or ensemble not in ENSEMBLES:
        raise ValueError(
            f"ensemble must be one of {', '.join(map(str, ENSEMBLES))} (flips/rotations "
            f"averaged); got {ensemble!r}. Use e.g. ensemble=4, or 1 for one pass."
        )
    return int(ensemble)


class ModelError(ValueError):
    """A model folder, name or config that cannot be used (message says why and what to do)."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_normalisation(norm: Any) -> dict:
    try:
        return check_rule(norm)
    except ValueError as err:
        raise ModelError(str(err)) from None


@dataclass(frozen=True)
class ModelConfig:
    """Everything besides the weights: rebuilds, normalises, documents.

    ``from_dict`` is strict: unknown keys, a wrong format tag or version, an
    unknown architecture or hyper-parameter are errors, never silently ignored.
    """

    name: str
    architecture: str
    arch_params: dict
    normalisation: dict
    modalities: tuple[str, ...] = MODALITIES
    task: str = "denoise"
    description: str = ""
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    weights_sha256: str = ""
    #: how many of the 8 flips/rotations inference averages by default (1: one pass;
    #: see :mod:`.inference`); written to the file only when it is not 1
    ensemble: int = 1

    _KEYS = (
        "format",
        "format_version",
        "name",
        "task",
        "architecture",
        "arch_params",
        "normalisation",
        "modalities",
        "description",
        "training",
        "metrics",
        "weights_sha256",
        "ensemble",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ModelError(f"name must be a non-empty string without '/'; got {self.name!r}.")
        if self.task not in TASKS:
            raise ModelError(f"task must be one of {', '.join(TASKS)}; got {self.task!r}.")
        mods = tuple(self.modalities)
        bad = [m for m in mods if m not in MODALITIES]
        if not mods or bad:
            raise ModelError(
                f"modalities must be a non-empty subset of tem, stem, sem; got {mods!r}."
            )
        object.__setattr__(self, "modalities", mods)
        object.__setattr__(self, "normalisation", _check_normalisation(self.normalisation))
        try:
            check_ensemble(self.ensemble)
        except ValueError as err:
            raise ModelError(str(err)) from None
        if self.task == "burst" and self.ensemble != 1:
            raise ModelError(f"a burst model runs one pass (ensemble 1); got {self.ensemble!r}.")
        if self.task == "burst" and self.normalisation["kind"] != "percentile":
            raise ModelError(
                "a burst model takes percentile normalisation (its frames are scaled by "
                f"the reference frame's percentiles); got {self.normalisation!r}."
            )
        try:
            build_network(self.architecture, self.arch_params)
        except ValueError as err:
            raise ModelError(str(err)) from None

    def to_dict(self) -> dict:
        extra = {"ensemble": self.ensemble} if self.ensemble != 1 else {}
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "task": self.task,
            "architecture": self.architecture,
            "arch_params": dict(self.arch_params),
            "normalisation": dict(self.normalisation),
            "modalities": list(self.modalities),
            "description": self.description,
            "training": self.training,
            "metrics": self.metrics,
            "weights_sha256": self.weights_sha256,
            **extra,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "config") -> ModelConfig:
        if not isinstance(d, dict):
            raise ModelError(f"{where} must be a JSON object; got {type(d).__name__}.")
        unknown = sorted(set(d) - set(cls._KEYS))
        if unknown:
            raise ModelError(f"{where} has unknown key(s): {', '.join(unknown)}.")
        if d.get("format") != FORMAT or d.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{where} is not an em-restore model config (format {d.get('format')!r} "
                f"version {d.get('format_version')!r}; expected {FORMAT!r} {FORMAT_VERSION})."
            )
        missing = [
            k for k in ("name", "architecture", "arch_params", "normalisation") if k not in d
        ]
        if missing:
            raise ModelError(f"{where} lacks {', '.join(missing)}.")
        kw = {k: d[k] for k in cls._KEYS[2:] if k in d}
        return cls(**kw)

    def build(self):
        """A fresh (untrained) network of this architecture."""
        return build_network(self.architecture, self.arch_params)


@dataclass(frozen=True)
class ModelEntry:
    """One row of the registry."""

    name: str
    path: Path
    source: str  # "bundled" or "user"
    config: ModelConfig


@dataclass
class LoadedModel:
    """A network ready for inference, with what is needed to reproduce its use."""

    net: Any
    config: ModelConfig
    path: Path
    sha256: str
    device: Any

    @property
    def name(self) -> str:
        return self.config.name

    def to_metadata(self) -> dict:
        """JSON-able record for a result layer / file: name, hash, architecture, source."""
        return {
            "name": self.config.name,
            "sha256": self.sha256,
            "architecture": self.config.architecture,
            "arch_params": dict(self.config.arch_params),
            "normalisation": dict(self.config.normalisation),
            "path": str(self.path),
        }


# --------------------------------------------------------------------------- registry
def bundled_model_dir() -> Path:
    """The package's ``weights`` folder (read-only)."""
    return Path(__file__).resolve().parents[2] / "weights"


def user_model_dir() -> Path:
    """Where the user's own models live (created by ``em-restore train`` when needed)."""
    env = os.environ.get("EM_RESTORE_MODELS")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "em-restore" / "models"


def read_config(folder: str | os.PathLike) -> ModelConfig:
    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise ModelError(
            f"{folder} is not a model folder (no {CONFIG_FILE}); pass a registered model name "
            f"(em-restore models) or a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}."
        )
    try:
        data = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"cannot read {cfg_path}: {err}; re-export the model.") from None
    return ModelConfig.from_dict(data, where=str(cfg_path))


def _scan(root: Path, source: str) -> list[ModelEntry]:
    if not root.is_dir():
        return []
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if (sub / CONFIG_FILE).is_file():
            try:
                config = read_config(sub)
            except ModelError:
                continue  # a broken user folder does not hide the others
            out.append(ModelEntry(config.name, sub, source, config))
    return out


def list_models(task: str | None = None) -> list[ModelEntry]:
    """Bundled models, then the user's (a user model named like a bundled one is skipped)."""
    entries = _scan(bundled_model_dir(), "bundled")
    names = {e.name for e in entries}
    entries += [e for e in _scan(user_model_dir(), "user") if e.name not in names]
    if task is not None:
        entries = [e for e in entries if e.config.task == task]
    return entries


#: ``defaults.json``'s entry for images whose modality nobody knows
UNKNOWN_MODALITY = "unknown"


def default_model_name(modality: str | None = None) -> str:
    """The bundled default denoiser for a modality (``"tem"``, ``"stem"``, ``"sem"``).

    ``None`` (the modality is unknown): the default for unknown images, the network
    trained on every modality, not a specialist of one (the TEM default when the
    table has no such entry).

    Examples
    --------
    >>> default_model_name("stem") in [e.name for e in list_models()]
    True
    """
    table = json.loads((bundled_model_dir() / "defaults.json").read_text(encoding="utf-8"))
    if modality is None:
        return table.get(UNKNOWN_MODALITY, table["tem"])
    key = str(modality).lower()
    known = sorted(k for k in table if k != UNKNOWN_MODALITY)
    if key not in known:
        raise ModelError(f"modality must be one of {', '.join(known)}; got {modality!r}.")
    return table[key]


# Files that hold (or may hold) pickled Python objects: loading one can run any code.
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".tar", ".joblib")
_PICKLE_MAGICS = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, torch's zip checkpoints


def refuse_pickle(path: Path) -> None:
    """Raise :class:`ModelError` if ``path`` is a pickled checkpoint; never unpickles it."""
    head = b""
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(4)
    if path.suffix.lower() in PICKLE_SUFFIXES or (head and head.startswith(_PICKLE_MAGICS)):
        raise ModelError(
            f"{path.name} is a pickled checkpoint, which em-restore never loads (a pickle can "
            f"run arbitrary code); use a model folder of {CONFIG_FILE} + {WEIGHTS_FILE} — ask "
            "for that export, or convert the checkpoint yourself where you trust it."
        )


def resolve_model(spec: str | os.PathLike) -> Path:
    """Folder of a model given by registered name or path.

    Only folders of ``config.json`` + ``model.safetensors`` are models; a pickled
    checkpoint (``.pt``, ``.ckpt``...) is refused without being read past its first
    bytes.
    """
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_file() and path.name in (CONFIG_FILE, WEIGHTS_FILE):
        path = path.parent
    if path.is_file():
        refuse_pickle(path)
        raise ModelError(
            f"{text!r} is a file; a model is a folder with {CONFIG_FILE} and {WEIGHTS_FILE} "
            "— pass the folder."
        )
    if path.is_dir():
        return path
    for entry in list_models():
        if entry.name == text:
            return entry.path
    known = ", ".join(e.name for e in list_models()) or "none"
    raise ModelError(
        f"no model named or found at {text!r}; known models: {known} "
        f"(or pass a folder with {CONFIG_FILE} and {WEIGHTS_FILE})."
    )


def load_model(spec: str | os.PathLike, device: Any = None) -> LoadedModel:
    """Load a model by name or folder, check its weights' hash, ready for inference.

    Parameters
    ----------
    spec : str or path
        A registered name (:func:`list_models`) or a model folder.
    device : None, str or torch.device
        ``None`` / ``"auto"``: CUDA, then MPS, then CPU (:func:`.device.select_device`).
    """
    from safetensors.torch import load_file

    from .device import select_device

    folder = resolve_model(spec)
    config = read_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            refuse_pickle(folder / pickles[0])
        raise ModelError(f"{folder} has no {WEIGHTS_FILE}; re-export the model.")
    digest = file_sha256(weights)
    if config.weights_sha256 and digest != config.weights_sha256:
        raise ModelError(
            f"{weights} does not match its {CONFIG_FILE} (SHA-256 {digest[:12]}…, expected "
            f"{config.weights_sha256[:12]}…); the file is damaged or was replaced: re-export it."
        )
    net = config.build()
    try:
        state = load_file(str(weights))
        net.load_state_dict(state, strict=True)
    except (RuntimeError, OSError) as err:
        first = str(err).strip().splitlines()[0]
        raise ModelError(
            f"weights in {weights} do not fit {config.architecture}: {first}"
        ) from None
    dev = select_device(device)
    net = net.to(dev).eval()
    if dev.type == "cpu":
        import torch

        net = net.to(memory_format=torch.channels_last)
    return LoadedModel(net, config, folder, digest, dev)


def save_model(
    folder: str | os.PathLike, net, config: ModelConfig, *, overwrite: bool = False
) -> Path:
    """Write ``net`` (weights) and ``config`` (with the weights' hash) to a model folder.

    Files are written to temporary names and moved into place, so a crash never
    leaves a half-written model. An existing model folder is an error unless
    ``overwrite``.
    """
    from dataclasses import replace

    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    if (folder / CONFIG_FILE).exists() and not overwrite:
        raise FileExistsError(f"{folder} already holds a model; choose another folder or name.")
    if config.architecture != getattr(net, "arch", None) or network_params(
        config.build()
    ) != network_params(net):
        raise ModelError("config.architecture/arch_params do not describe this network.")
    folder.mkdir(parents=True, exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask  # what open() would give; mkstemp's 0600 is for secrets
    state = {  # safetensors orders tensors itself (dtype, then name): dict order is moot
        k: v.detach()
        .to("cpu", torch.float32 if v.dtype.is_floating_point else v.dtype)
        .contiguous()
        for k, v in net.state_dict().items()
    }
    fd, tmp_w = tempfile.mkstemp(dir=folder, suffix=".safetensors.tmp")
    os.close(fd)
    tmp_c = ""
    try:
        save_file(state, tmp_w, metadata={"format": FORMAT, "name": config.name})
        os.chmod(tmp_w, mode)
        digest = file_sha256(tmp_w)
        cfg = replace(config, weights_sha256=digest)
        fd, tmp_c = tempfile.mkstemp(dir=folder, suffix=".json.tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(cfg.to_dict(), fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.chmod(tmp_c, mode)
        os.replace(tmp_w, folder / WEIGHTS_FILE)
        os.replace(tmp_c, folder / CONFIG_FILE)
    finally:
        for p in (tmp_w, tmp_c):
            if p and os.path.exists(p):
                os.remove(p)
    return folder
