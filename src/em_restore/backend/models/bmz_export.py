"""BioImage Model Zoo packages, out: :func:`export_bmz`.

Writes a package (format 0.5, built and validated with ``bioimageio.spec``) that
Fiji, ilastik, deepImageJ, QuPath and napari can run: ``rdf.yaml``, a model card,
weights as ``pytorch_state_dict`` (architecture taken from this library),
``torchscript`` and ``onnx``, test tensors and a cover made from the simulator.
Also here: :func:`scale_range`, BMZ's percentile normalisation as its runners
compute it, and the tensor and axis descriptions of the denoisers and the burst
network.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .inference import normalisation_of
from .onnx_io import (
    ONNX_OPSET,
    ExchangeError,
    cpu_net,
    export_onnx,
    io_names,
    loaded_model,
    require_optional,
)
from .store import CONFIG_FILE, LoadedModel, bundled_model_dir

__all__ = ["BMZ_FORMAT_VERSION", "BMZ_HALO", "export_bmz", "scale_range", "simulated_frame"]

BMZ_FORMAT_VERSION = "0.5"
SCALE_RANGE_EPS = 1e-6  # BMZ scale_range: (x - lo) / (hi - lo + eps)
#: Output pixels a BMZ runner that tiles should drop at each tile edge. Measured on a
#: 1024² frame in 512² tiles (em-denoise-fast, normalised units): largest seam error
#: 2.7e-6 with 96 px, 8.2e-4 with 64, 9.2e-3 with 32.
BMZ_HALO = 96
#: The architecture a package of ours names (``import_from`` and ``callable``).
ARCH_MODULE = "em_restore.backend.models.nets"
ARCH_CALLABLE = "build_network"
_PACKAGE_URL = "https://pypi.org/project/napari-em-restore/"


def simulated_frame(size: int = 256, seed: int = 0) -> tuple[np.ndarray, float]:
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
    """A simulated, registered 5-frame window as the burst network gets it (frames
    normalised by the middle frame's percentiles, as :mod:`.burst` does)."""
    from .burst import fuse_wiener, simulated_window, window_velocity

    aligned, _, _ = simulated_window(np.random.default_rng(seed), size=128, frames=5)
    lo, scale = normalisation_of(aligned.frames[aligned.reference], rule)
    frames = ((aligned.frames - lo) / scale).astype(np.float32)
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
        frame, pixel = simulated_frame()
        raw = {"input": frame[None, None]}
        args = (scale_range(raw["input"], rule, (2, 3)),)
    with torch.inference_mode():
        out = net(*(torch.from_numpy(np.ascontiguousarray(a)) for a in args)).numpy()
    return raw, {io_names(model.config.task)[1]: out.astype(np.float32)}, pixel


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
        *(
            [
                "",
                f"em-restore averages this model over {cfg.ensemble} flips/rotations of the "
                "input by default (`ensemble` in the config); a BMZ runner runs it once.",
            ]
            if getattr(cfg, "ensemble", 1) != 1
            else []
        ),
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


def _tensor_descr(b, kind, name: str, axes, work: Path, **kw):
    """A BMZ input or output tensor description with its ``test_{name}.npy``."""
    return kind(
        id=b.TensorId(name),
        description=_INPUT_TEXT[name],
        axes=axes,
        test_tensor=b.FileDescr(source=work / f"test_{name}.npy"),
        data=b.IntervalOrRatioDataDescr(type="float32"),
        **kw,
    )


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
    require_optional("bioimageio.spec", "bmz", "BioImage Model Zoo export")
    import torch
    from bioimageio.spec import (
        InvalidDescr,
        save_bioimageio_package,
        save_bioimageio_package_as_folder,
    )
    from bioimageio.spec.model import v0_5 as b

    model = loaded_model(model)
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
    net = cpu_net(model)
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
                _tensor_descr(
                    b,
                    b.InputTensorDescr,
                    name,
                    in_axes[name],
                    work,
                    preprocessing=_preprocessing(name, cfg.normalisation, cfg.task),
                )
            )
        np.save(work / f"test_{out_name}.npy", out_arr)
        outputs = [_tensor_descr(b, b.OutputTensorDescr, out_name, out_axes[out_name], work)]
        version = b.Version(torch.__version__.split("+")[0])
        arch = b.ArchitectureFromLibraryDescr(
            callable=b.Identifier(ARCH_CALLABLE),
            import_from=ARCH_MODULE,
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
