"""``em-restore``: the headless twin of the napari plugin.

Every subcommand calls the same backend functions as the widgets. User errors
(bad file, bad option) print one line to stderr and exit with status 2; a
traceback means a bug in em-restore.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from em_restore import __version__, _cli_check, _cli_export, _cli_live

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input, reported as one line, no traceback."""


def _info(args: argparse.Namespace) -> int:
    from em_restore import io

    images = io.read_all(args.file)
    summary = describe(images[0], args.file)
    others = images[0].metadata.get("other_signals", [])
    if len(images) > 1 or others:  # every image signal, then what is not an image
        summary["image_signals"] = [
            {"title": im.metadata.get("title"), **describe(im, args.file)} for im in images
        ]
        summary["other_signals"] = others
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(format_summary(summary))
    for s in summary.get("image_signals", []):
        shape, (_, px) = " × ".join(map(str, s["shape"])), s["pixel_size"]
        print(f"image:      {s['title']!r} {shape} {s['dtype']} {px:.6g} {s['unit']}")
    for o in summary.get("other_signals", []):
        print(f"not opened: {o['title']!r} {o['kind']} {' × '.join(map(str, o['shape']))}")
    return 0


def _progress_printer(enabled: bool):
    """Consume a backend generator, drawing its Progress events on stderr."""

    def drive(gen):
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                if enabled:
                    print(file=sys.stderr)
                return stop.value
            if enabled and getattr(event, "total", 0):
                _bar(event.done, event.total, event.message)

    return drive


def _check_output(input_path: str | Path, output: str | Path, overwrite: bool) -> Path:
    out = Path(output)
    if out.resolve() == Path(input_path).resolve():
        raise UserError(
            f"output {str(out)!r} is the input file; raw data is never overwritten — "
            "choose another output name"
        )
    if out.exists() and not overwrite:
        raise UserError(f"output {str(out)!r} already exists; pass --overwrite to replace it")
    if out.suffix.lower() not in {".tif", ".tiff", ".zarr"}:
        raise UserError(
            f"output {str(out)!r} has extension {out.suffix!r}; use .tif, .tiff or .zarr"
        )
    return out


def _greyscale(image: Any, path: str) -> None:
    if "c" in image.axes:
        raise UserError(
            f"{path!r} is an RGB/RGBA image; EM restoration works on greyscale data — "
            "convert it to greyscale (e.g. in Fiji: Image > Type > 32-bit) and retry"
        )


def _write_result(
    out: Path,
    data: Any,
    image: Any,
    metadata: dict[str, Any],
    frame_step: int = 1,
    *,
    scheduler: str | None = None,
    progress: bool = False,
) -> None:
    """Write a result with the input's calibration (frame interval × ``frame_step``).

    A dask result is computed while it is written, chunk by chunk (bounded memory),
    locally with a progress bar or on the dask cluster at ``scheduler``.
    """
    from em_restore import io

    write = io.write_zarr if out.suffix.lower() == ".zarr" else io.write_tiff
    timed = image.axes[0] == "t" and image.units[0] == "s"

    def run() -> None:
        write(
            out,
            data,
            pixel_size_nm=image.pixel_size,
            unit=image.spatial_unit,
            axes=image.axes,
            metadata=metadata,
            overwrite=True,
            frame_interval=image.scale[0] * frame_step if timed else None,
        )

    if not hasattr(data, "dask"):
        run()
        return
    from em_restore.backend import stream

    if progress and not scheduler:
        data = stream.with_progress(data, _bar)
    with stream.computing(scheduler):
        run()
    if progress:
        print(file=sys.stderr)


def _bar(done: int, total: int, message: str = "chunks written") -> None:
    width = 30
    filled = int(width * done / total) if total else width
    print(
        f"\r[{'#' * filled}{'-' * (width - filled)}] {done}/{total} {message[:40]:<40}",
        end="",
        file=sys.stderr,
        flush=True,
    )


def _compute(lazy: Any, scheduler: str | None, progress: bool, message: str) -> Any:
    """Compute a small lazy result (locally with a progress bar, or on the cluster)."""
    import numpy as np

    from em_restore.backend import stream

    if progress and not scheduler:
        lazy = stream.with_progress(lazy, lambda d, t: _bar(d, t, message))
    with stream.computing(scheduler):
        value = np.asarray(lazy.compute())
    if progress:
        print(file=sys.stderr)
    return value


def _check_scheduler(args: argparse.Namespace) -> None:
    if args.scheduler and Path(args.output).suffix.lower() != ".zarr":
        raise UserError(
            "--scheduler needs a .zarr output (the workers write its chunks in parallel); "
            "use -o OUT.zarr"
        )


def _stream(args: argparse.Namespace, image: Any) -> bool:
    """Whether to compute lazily, chunk by chunk: stacks, and anything on a cluster."""
    _check_scheduler(args)
    return bool(args.scheduler) or image.data.ndim > 2


# --------------------------------------------------------------------------- batches
# What a batch appends to each input's name (so an output never lands on its input).
BATCH_SUFFIX = {"denoise": "_denoised", "deconvolve": "_deconvolved", "burst": "_burst"}


def _input_files(specs: Sequence[str]) -> tuple[list[Path], bool]:
    """The input files, and whether a folder was among them (a folder is a batch)."""
    from em_restore import io

    files: list[Path] = []
    folder = False
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir() and path.suffix.lower() != ".zarr":
            found = io.image_files(path)
            if not found:
                raise UserError(
                    f"folder {spec!r} holds no image file ({', '.join(io.SUPPORTED_EXTENSIONS)}); "
                    "point at your images"
                )
            files += found
            folder = True
        else:
            files.append(path)
    return files, folder


def _batched(one: Any) -> Any:
    """A subcommand over one file, extended to many: several inputs or a folder
    (``-o`` names an output folder), else the single file as before."""

    def run(args: argparse.Namespace) -> int:
        files, folder = _input_files(args.input)
        out = Path(args.output)
        to_folder = out.is_dir() and out.suffix.lower() != ".zarr"
        if len(files) == 1 and not folder and not to_folder and not args.output.endswith("/"):
            args.input = str(files[0])
            return one(args)
        return _run_batch(args, one, files, out)

    return run


def _run_batch(args: argparse.Namespace, one: Any, files: list[Path], out: Path) -> int:
    """Each input into ``out/<stem><suffix>.<format>``; a bad file does not stop the rest."""
    import copy
    from collections import Counter

    if (out.exists() and not out.is_dir()) or (
        not out.exists() and out.suffix.lower() in {".tif", ".tiff", ".zarr"}
    ):
        raise UserError(
            f"-o {str(out)!r} is a file; with several inputs -o names an output folder — "
            "give a folder name (and --format tif or zarr)"
        )
    if getattr(args, "fidelity_out", None):
        raise UserError(
            "--fidelity-out names one map file; in a batch run `em-restore check` on each "
            "output, or run one file at a time"
        )
    if getattr(args, "psf_out", None):
        raise UserError(
            "--psf-out names one kernel file; in a batch each kernel is in its output's "
            "metadata — drop --psf-out or run one file at a time"
        )
    suffix = BATCH_SUFFIX[args.command]
    targets = [out / f"{f.stem}{suffix}.{args.format}" for f in files]
    twice = [t for t, n in Counter(targets).items() if n > 1]
    if twice:
        named = [str(f) for f, t in zip(files, targets, strict=True) if t == twice[0]]
        raise UserError(
            f"inputs {' and '.join(named)} would both write {twice[0].name}; "
            "rename one or run them separately"
        )
    existing = [t for t in targets if t.exists()]
    if existing and not (args.overwrite or args.skip_existing):
        raise UserError(
            f"{len(existing)} of the {len(targets)} outputs already exist in {str(out)!r} "
            f"(e.g. {existing[0].name}); pass --overwrite to replace them or --skip-existing "
            "to keep them and do the rest"
        )
    out.mkdir(parents=True, exist_ok=True)
    n = len(files)
    failed: list[str] = []
    skipped = 0
    for i, (src, target) in enumerate(zip(files, targets, strict=True), 1):
        if args.skip_existing and target.exists() and not args.overwrite:
            skipped += 1
            if not args.quiet:
                print(f"[{i}/{n}] {src}: {target.name} exists, skipped", file=sys.stderr)
            continue
        if not args.quiet:
            print(f"[{i}/{n}] {src}", file=sys.stderr)
        job = copy.copy(args)
        job.input, job.output = str(src), str(target)
        try:
            one(job)
        except (UserError, ValueError, OSError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"em-restore: error: {src}: {message}", file=sys.stderr)
            failed.append(str(src))
    done = n - skipped - len(failed)
    if not args.quiet or failed:
        extra = f", {skipped} skipped (output exists)" if skipped else ""
        print(
            f"{args.command}: {done} of {n} file(s) written to {out}{extra}"
            + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else "")
        )
    return EXIT_USER_ERROR if failed else 0


def _batch_io(parser: argparse.ArgumentParser, what: str = "input file(s)") -> None:
    """The inputs (files or folders), -o, --overwrite, -q and the batch options of a
    restoring command."""
    parser.add_argument(
        "input",
        nargs="+",
        help=f"{what} or folder(s), any format `info` reads; several: -o is a folder",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="output .tif/.tiff (float32) or .zarr; for several inputs an output folder",
    )
    parser.add_argument(
        "--format",
        choices=("tif", "zarr"),
        default="tif",
        help="output format in a batch (-o FOLDER): tif (default) or zarr",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="in a batch, keep outputs already there and do the rest (resume a batch)",
    )


def _denoise(args: argparse.Namespace) -> int:
    from em_restore import io
    from em_restore.backend import denoise as backend

    if args.method is not None and args.model is not None:
        raise UserError("--method and --model exclude each other; pass one of them")
    if args.method is not None and args.method not in backend.METHODS:
        raise UserError(
            f"unknown --method {args.method!r}; choose one of {', '.join(backend.METHODS)} "
            "(or --model NAME for a trained model)"
        )
    if args.strength is not None and args.model is not None:
        raise UserError("--strength applies to --method filters; models have no strength")
    if args.method is None and args.model is None:
        # The bundled model for the modality is the default: on the held-out benchmark
        # it beats 'classical' in PSNR and runs ~100x faster (docs/models/em-denoise-fast.md).
        if args.strength is not None:
            raise UserError(
                "--strength applies to --method filters (e.g. --method tv --strength 2); "
                "the default model has no strength"
            )
        args.model = "auto"
    if args.no_fallback and args.model != "auto":
        raise UserError(
            "--no-fallback applies to the default model (its fidelity check and classical "
            "fallback); a --model or --method runs alone already"
        )
    out = _check_output(args.input, args.output, args.overwrite)
    fid_out = _cli_check.prepare_fidelity_out(args, out)
    image = io.read(args.input)
    _greyscale(image, args.input)
    shown = not args.quiet and sys.stderr.isatty()
    drive = _progress_printer(shown)
    lazy = _stream(args, image)
    plan = None
    if args.method is None:
        restored, plan, summary = _denoise_model(args, image, drive, lazy)
        record = plan.to_metadata()
    else:
        restored, record, summary = _denoise_classical(args, image, drive, backend, lazy)
    metadata = {
        "operation": "denoise",
        "input": str(args.input),
        "denoise": record,
        "em_restore_version": __version__,
    }
    _write_result(out, restored, image, metadata, scheduler=args.scheduler, progress=shown)
    if not args.quiet:
        print(f"denoised {args.input} with {summary} -> {out}")
        if hasattr(plan, "notice"):
            print(plan.notice())
    _cli_check.write_fidelity_out(fid_out, args, out, image)
    return 0


def _denoise_classical(args, image, drive, backend, lazy=False):
    import numpy as np

    params = None
    if args.strength is not None:
        if args.method not in backend.STRENGTH_PARAM:
            raise UserError(
                f"--strength is not used by method {args.method!r}; "
                f"it applies to {', '.join(backend.STRENGTH_PARAM)}"
            )
        params = {backend.STRENGTH_PARAM[args.method]: args.strength}
    lead = image.data.shape[:-2]
    frame = np.asarray(image.data[tuple(n // 2 for n in lead)])
    plan = drive(
        backend.iter_plan_denoise(frame, args.method, modality=args.modality, params=params)
    )
    if lazy:
        restored = backend.denoise_lazy(image.data, plan)
    else:
        restored = drive(backend.iter_denoise(image.data, plan))
    shown = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in plan.params.items()
    )
    return restored.astype(np.float32, copy=False), plan.to_metadata(), f"{plan.method} ({shown})"


def _denoise_model(args, image, drive, lazy=False):
    from em_restore.backend.models.guarded import GuardedPlan
    from em_restore.backend.models.inference import plan_model

    plan = plan_model(
        None if args.model == "auto" else args.model,
        modality=args.modality,
        metadata=image.metadata,
        device=args.device,
        **({} if args.tile is None else {"tile": args.tile}),
    )
    if args.model == "auto" and not args.no_fallback:
        plan = GuardedPlan(plan)  # checked against the counts, classical where not supported
    restored = plan.lazy(image.data) if lazy else drive(plan.iter_apply(image.data))
    m = plan.model
    source = getattr(plan, "model_plan", plan).modality_source
    summary = (
        f"model {m.name} (sha256 {m.sha256[:12]}, modality {plan.modality or 'tem'}: "
        f"{source}, {m.device}{', checked' if hasattr(plan, 'notice') else ''})"
    )
    return restored, plan, summary


def _read_psf(spec: str) -> tuple[Any, str]:
    """--psf: a spec (gaussian:2.0, disk:3, motion:11,35) or a 2-D kernel file."""
    import numpy as np

    from em_restore import io
    from em_restore.backend.psf import parse_psf

    kind = spec.partition(":")[0].strip().lower()
    if kind in {"gaussian", "disk", "motion"}:
        return parse_psf(spec), spec
    path = Path(spec)
    if not path.exists():
        raise UserError(
            f"--psf {spec!r} is neither a kernel spec (gaussian:SIGMA, disk:RADIUS, "
            "motion:LENGTH,ANGLE) nor an existing file; fix the spec or the path"
        )
    kernel = io.read(path)
    if kernel.data.ndim != 2:
        raise UserError(
            f"--psf file {spec!r} has shape {tuple(kernel.data.shape)}; a kernel is one 2-D "
            "image — save a single frame"
        )
    return np.asarray(kernel.data, dtype=np.float64), str(path)


def _deconvolve(args: argparse.Namespace) -> int:
    import numpy as np

    from em_restore import io
    from em_restore.backend import deconvolve as backend

    out = _check_output(args.input, args.output, args.overwrite)
    psf_out = None
    if args.psf_out is not None:
        psf_out = Path(args.psf_out)
        if psf_out.resolve() in {Path(args.input).resolve(), out.resolve()}:
            raise UserError(
                f"--psf-out {str(psf_out)!r} is the input or the output; choose another name"
            )
        psf_out = _check_output(args.input, psf_out, args.overwrite)
        if psf_out.suffix.lower() == ".zarr":
            raise UserError("--psf-out must be a .tif/.tiff file (the kernel is one small image)")
    fid_out = _cli_check.prepare_fidelity_out(args, out)
    if fid_out is not None and args.windows != 1:
        raise UserError(
            "--fidelity-out needs one kernel for the whole frame; drop --windows or --fidelity-out"
        )
    psf, source = (None, "blind") if args.psf is None else _read_psf(args.psf)
    if psf is not None and args.windows != 1:
        raise UserError("--windows applies to blind deconvolution; drop --psf or --windows")
    image = io.read(args.input)
    _greyscale(image, args.input)
    drive = _progress_printer(not args.quiet and sys.stderr.isatty())
    lead = image.data.shape[:-2]
    frame = np.asarray(image.data[tuple(n // 2 for n in lead)])
    stage1: object = None if args.no_denoise else "classical"
    if stage1 is not None and args.denoise == "model":
        from em_restore.backend.models.inference import plan_model

        stage1 = plan_model(None, modality=args.modality, metadata=image.metadata)
    plan = drive(
        backend.iter_plan_deconvolve(
            frame,
            psf,
            solver=args.solver,
            denoise=stage1,
            modality=args.modality,
            windows=(args.windows, args.windows),
            max_size=args.max_kernel_size,
        )
    )
    if _stream(args, image):
        restored = backend.deconvolve_lazy(image.data, plan)
    else:
        restored = drive(backend.iter_deconvolve(image.data, plan))
    meta = plan.to_metadata()
    if source != "blind":
        meta["psf_source"] = source
    metadata = {
        "operation": "deconvolve",
        "input": str(args.input),
        "deconvolve": meta,
        "em_restore_version": __version__,
    }
    shown = not args.quiet and sys.stderr.isatty()
    _write_result(out, restored, image, metadata, scheduler=args.scheduler, progress=shown)
    if psf_out is not None:
        io.write_tiff(
            psf_out,
            plan.psf.astype(np.float32),
            metadata={"operation": "psf", "input": str(args.input), "psf_source": source},
            overwrite=True,
        )
    if not args.quiet:
        k = plan.psf
        kind = "estimated" if source == "blind" else "given"
        extra = f", kernel -> {psf_out}" if psf_out is not None else ""
        print(
            f"deconvolved {args.input} ({plan.solver}, {kind} kernel {k.shape[0]}x{k.shape[1]} px"
            f"{', denoised first' if plan.denoise is not None else ''}) -> {out}{extra}"
        )
    if fid_out is not None:
        from em_restore.backend.psf import convolve

        kernel = np.asarray(plan.psf, dtype=np.float64)

        def blur(x, kernel=kernel):
            return convolve(x, kernel)

        _cli_check.write_fidelity_out(fid_out, args, out, image, forward=blur)
    return 0


def _burst(args: argparse.Namespace) -> int:
    import numpy as np

    from em_restore import io
    from em_restore.backend import burst as backend

    out = _check_output(args.input, args.output, args.overwrite)
    fid_out = _cli_check.prepare_fidelity_out(args, out)
    if args.model is not None and args.method != "network":
        raise UserError("--model applies to --method network; drop --model or the --method")
    image = io.read(args.input)
    _greyscale(image, args.input)
    shape = tuple(int(n) for n in image.data.shape)
    if len(shape) == 2 or (len(shape) == 3 and shape[0] < 2):
        raise UserError(
            f"{args.input!r} holds a single frame {shape}; burst needs a stack of consecutive "
            "frames of a stream (T, rows, cols) — open the whole stream"
        )
    if len(shape) != 3:
        raise UserError(
            f"{args.input!r} has shape {shape} (axes {image.axes!r}); burst needs one stream "
            "(T, rows, cols) — split the other axes first"
        )
    if args.frames > shape[0]:
        raise UserError(
            f"--frames {args.frames} is more than the {shape[0]} frames of {args.input!r}; "
            f"use --frames {shape[0]} or fewer"
        )
    plan = backend.plan_burst(
        args.method,
        frames=args.frames,
        stride=args.stride,
        model=args.model,
        device=args.device,
        exposure=args.exposure,
    )
    shown = not args.quiet and sys.stderr.isatty()
    _check_scheduler(args)  # a stream is always computed lazily
    # Two passes, each one window at a time: register every window (small result,
    # into the metadata before any pixel is written), then fuse with those shifts.
    shifts = _compute(
        backend.registrations_lazy(image.data, plan), args.scheduler, shown, "windows registered"
    )
    restored = backend.burst_lazy(image.data, plan, shifts)
    info = {
        "centres": backend.output_centres(shape[0], plan.frames, plan.stride),
        "shifts": np.round(shifts, 4).tolist(),
    }
    metadata = {
        "operation": "burst",
        "input": str(args.input),
        "burst": {**plan.to_metadata(), **info},
        "em_restore_version": __version__,
    }
    _write_result(
        out,
        restored,
        image,
        metadata,
        frame_step=args.stride,
        scheduler=args.scheduler,
        progress=shown,
    )
    if not args.quiet:
        what = f"model {plan.model.name}" if plan.model is not None else plan.method
        print(
            f"burst {args.input}: {len(info['centres'])} frame(s) from windows of {args.frames} "
            f"(stride {args.stride}, {what}) -> {out}"
        )
    if fid_out is not None:
        # each output frame against its window's middle raw frame, blurred as that
        # frame was by the stage motion the registration measured
        from em_restore.backend.psf import convolve

        kernels = [backend.motion_kernels(s, plan.exposure)[len(s) // 2] for s in shifts]
        forwards = [lambda x, k=k: convolve(x, k) for k in kernels]
        raw = image.data[np.asarray(info["centres"])]
        _cli_check.write_fidelity_out(fid_out, args, out, image, raw_frames=raw, forward=forwards)
    return 0


def _training_images(spec: str | None, what: str) -> tuple[list[Any], list[str]]:
    """Images of a file or of every readable file in a folder (sorted by name)."""
    from em_restore import io

    if spec is None:
        return [], []
    path = Path(spec).expanduser()
    if path.is_dir() and path.suffix.lower() != ".zarr":
        files = io.image_files(path)
        if not files:
            raise UserError(
                f"--{what} folder {spec!r} holds no image file "
                f"({', '.join(io.SUPPORTED_EXTENSIONS)}); point it at your images"
            )
    else:
        files = [path]
    images = []
    for f in files:
        image = io.read(f)
        _greyscale(image, str(f))
        images.append(image.data)
    return images, [f.name for f in files]


def _pair_by_name(noisy, noisy_names, clean, clean_names):
    """Pair two folders by file name when they hold the same names, else by order."""
    if len(clean) > 1 and sorted(noisy_names) == sorted(clean_names):
        index = {n: i for i, n in enumerate(clean_names)}
        clean = [clean[index[n]] for n in noisy_names]
    return noisy, clean


def _epoch_line(e: Any) -> str:
    score = (
        f"val PSNR {e.val_psnr:6.2f} dB  SSIM {e.val_ssim:.3f}"
        if e.val_ssim is not None
        else f"val loss {e.val_loss:.5f}"
    )
    mark = "  *best" if e.best else ""
    return f"epoch {e.epoch:3d}/{e.epochs}  train {e.train_loss:.5f}  {score}  ETA {e.eta}{mark}"


def _origin_line(result: Any) -> str:
    """What a run started from, and (fine-tuned) what that model scored before it."""
    s = result.start
    if s is None:
        return f"from scratch ({result.config.architecture})"
    before = (
        f"val PSNR {s['val_psnr_db']:.2f} dB before"
        if s["val_psnr_db"] is not None
        else f"val loss {s['val_loss']:.5f} before"
    )
    kept = "; no epoch beat it, its weights are kept" if result.best_epoch == 0 else ""
    return f"fine-tuned from {s['name']} ({before}{kept})"


def _train(args: argparse.Namespace) -> int:
    import numpy as np

    from em_restore.backend.models import datasets as ds
    from em_restore.backend.models import fit as F
    from em_restore.backend.models.store import user_model_dir

    if args.output is None and args.name is None:
        raise UserError(
            "say where the model goes: -o MODEL_DIR, or --name NAME for the user models"
        )
    folder = Path(args.output) if args.output else user_model_dir() / args.name
    burst = args.task == "burst"
    if burst and args.mode != "simulated":
        raise UserError(
            "--task burst trains on simulated streams: use --mode simulated (with --clean "
            "images of your specimens, or none for the built-in ones)"
        )
    noisy, noisy_names = _training_images(args.noisy, "noisy")
    clean, clean_names = _training_images(args.clean, "clean")
    if args.mode in ("paired", "self") and not noisy:
        raise UserError(f"--mode {args.mode} needs --noisy FILE_OR_FOLDER")
    if args.mode == "paired" and not clean:
        raise UserError(
            "--mode paired needs --clean FILE_OR_FOLDER (the high-dose or sharp images)"
        )
    if args.mode == "self" and clean:
        raise UserError(
            "--mode self trains on noisy images alone; drop --clean or use --mode paired"
        )
    if args.mode == "simulated" and noisy:
        raise UserError("--mode simulated makes its own noisy images; drop --noisy")
    as_np = [np.asarray(a) for a in noisy]
    seed = args.seed
    if args.mode == "paired":
        noisy, clean = _pair_by_name(
            as_np, noisy_names, [np.asarray(a) for a in clean], clean_names
        )
        data = ds.PairedData(noisy, clean, val_fraction=args.val_fraction, seed=seed)
    elif args.mode == "self":
        data = ds.NoisyData(as_np, val_fraction=args.val_fraction, seed=seed)
    else:
        user_clean = [np.asarray(a) for a in clean] or None
        if burst:
            dose = tuple(args.dose) if args.dose else (5.0, 300.0)
            data = ds.BurstData(
                user_clean, frames=args.frames, dose_range=dose, pool=args.pool or 200, seed=seed
            )
        else:
            dose = tuple(args.dose) if args.dose else (1.0, 100.0)
            data = ds.SimulatedData(
                user_clean,
                modality=args.modality,
                dose_range=dose,
                pool=args.pool or 256,
                seed=seed,
            )
    cfg = F.FitConfig(
        architecture=args.arch,
        start=args.start,
        from_scratch=args.from_scratch,
        loss=args.loss,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch=args.batch,
        patch=args.patch,
        lr=args.lr,
        patience=args.patience,
        max_minutes=args.max_minutes,
        seed=seed,
    )
    modalities = (args.modality,) if args.mode == "simulated" else None
    gen = F.iter_train_model(
        cfg,
        data,
        folder,
        name=args.name,
        modalities=modalities,
        modality=args.modality,
        overwrite=args.overwrite,
        resume=args.resume,
        device=args.device or "auto",
    )
    verbose = not args.quiet
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            if verbose and isinstance(event, F.Epoch):
                print(_epoch_line(event), file=sys.stderr, flush=True)
            elif verbose and getattr(event, "message", "") == "preparing data":
                print(f"preparing {data.kind} data...", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        gen.close()
        kept = (folder / "config.json").is_file()
        print(
            "em-restore: training interrupted; "
            + (f"the best epoch so far is kept in {folder}" if kept else "no epoch finished")
            + f" (continue with --resume -o {folder})",
            file=sys.stderr,
        )
        return 130
    if verbose:
        if result.best_psnr is not None:
            score = (
                f"val PSNR {result.best_psnr:.2f} dB (input {result.input_psnr:.2f}), "
                f"SSIM {result.best_ssim:.3f} (input {result.input_ssim:.3f})"
            )
        else:
            score = f"val loss {result.best_val_loss:.5f} (self-supervised)"
        use = "burst STACK" if burst else "denoise IN"
        print(
            f"trained {folder.name} {_origin_line(result)}, lr {result.config.lr:g}: best epoch "
            f"{result.best_epoch} of {len(result.history)}, {score}; {result.stop_reason}, "
            f"{result.seconds:.0f} s -> {folder}\nuse it: em-restore {use} -o OUT --model {folder}"
        )
    return 0


def _models(args: argparse.Namespace) -> int:
    from em_restore.backend import models

    rows = []
    defaults = {m: models.default_model_name(m) for m in ("tem", "stem", "sem")}
    for e in models.list_models(task=args.task):
        rows.append(
            {
                "name": e.name,
                "source": e.source,
                "task": e.config.task,
                "architecture": e.config.architecture,
                "modalities": list(e.config.modalities),
                "default_for": [m for m, n in defaults.items() if n == e.name],
                "path": str(e.path),
                "description": e.config.description,
            }
        )
    if args.task in (None, "denoise"):
        from em_restore.backend.models.exchange import ONNX_FILE, onnx_user_models

        for folder in onnx_user_models():  # imported ONNX denoisers (onnxruntime)
            rows.append(
                {
                    "name": folder.name,
                    "source": "user",
                    "task": "denoise",
                    "architecture": "onnx",
                    "modalities": [],
                    "default_for": [],
                    "path": str(folder / ONNX_FILE),
                    "description": "imported ONNX model, run with onnxruntime on the CPU",
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        default = f"  default for {', '.join(r['default_for'])}" if r["default_for"] else ""
        print(f"{r['name']:<28} {r['source']:<8} {r['task']:<8} {r['architecture']:<16}{default}")
        if r["description"]:
            print(f"    {r['description']}")
    print(f"user models folder: {models.user_model_dir()}")
    return 0


def _parse_line(text: str) -> list[tuple[float, float]]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) < 4 or len(values) % 2:
        raise UserError(
            f"--line must be Y0,X0,Y1,X1 (or more Y,X pairs for a polyline) in pixels; "
            f"got {text!r}."
        )
    return list(zip(values[::2], values[1::2], strict=True))


def _frame_of(image: Any, frame: int | None) -> tuple[Any, str]:
    """The 2-D frame to measure, and a note naming it for a stack."""
    if "c" in image.axes:
        raise UserError(
            f"{image.metadata.get('format', 'this')} image has colour channels (axes "
            f"{image.axes!r}); line profiles need a greyscale image. Convert it to greyscale."
        )
    lead = image.data.shape[:-2]
    if not lead:
        if frame not in (None, 0):
            raise UserError(f"--frame {frame} given but the image is a single frame; drop it.")
        return image.data, ""
    n = math.prod(lead)
    index = 0 if frame is None else frame
    if not 0 <= index < n:
        raise UserError(f"--frame must be in 0..{n - 1} for this stack of {n} frames; got {index}.")
    return image.data.reshape((n, *image.data.shape[-2:]))[index], f"frame {index} of {n}"


def _profile(args: argparse.Namespace) -> int:
    import numpy as np

    from em_restore import io
    from em_restore.backend.profile import length_unit, measure_line

    points = _parse_line(args.line)
    image = io.read(args.input)
    frame, note = _frame_of(image, args.frame)
    unit = length_unit(image.spatial_unit)
    prof, res = measure_line(
        np.asarray(frame),
        points,
        width=args.width,
        scale=image.pixel_size if unit != "px" else 1.0,
        unit=unit,
        appearance=args.appearance,
    )
    if args.json:
        out = {
            "unit": unit,
            "file": str(args.input),
            "frame": args.frame if note else None,
            "line": [list(p) for p in points],
            "width": args.width,
            "profile": prof.to_list(),
            **res.to_dict(),  # background, noise, blur_sigma, particles, pairs
        }
        print(json.dumps(out, indent=1))
        return 0
    print(
        f"{args.input}{' (' + note + ')' if note else ''}: {len(prof.positions)} samples over "
        f"{prof.positions[-1]:.4g} {unit}, width {args.width} px, background "
        f"{res.background:.4g}, noise {res.noise:.3g}"
    )
    if not res.particles:
        print("no particle found on this line (draw it across particles, from background to "
              "background)")  # fmt: skip
    for i, p in enumerate(res.particles):
        edge = "n/a" if p.edge_width is None else f"{p.edge_width:.4g}"
        fwhm = "n/a" if p.fwhm is None else f"{p.fwhm:.4g}"
        print(
            f"particle {i}: centre {p.center:.4g} {unit}, diameter {p.diameter:.4g} {unit}, "
            f"FWHM {fwhm}, edge width {edge} ({p.appearance})"
        )
    for q in res.pairs:
        verdict = "resolved" if q.resolved else "NOT resolved"
        print(
            f"pair {q.first}-{q.second}: distance {q.distance:.4g} {unit}, "
            f"(d1+d2)/2 {q.distance - q.gap:.4g} {unit}: {verdict}"
        )
    return 0


def describe(image: Any, path: str | Path) -> dict[str, Any]:
    """Plain-dict summary of an :class:`em_restore.io.EMImage` (no pixels read)."""
    py, px = image.pixel_size
    frames = [
        {"axis": a, "length": int(n), "step": s, "unit": u}
        for a, n, s, u in zip(image.axes, image.data.shape, image.scale, image.units, strict=True)
        if a not in "yxc"
    ]
    return {
        "file": str(path),
        "format": image.metadata.get("format"),
        "shape": [int(n) for n in image.data.shape],
        "axes": image.axes,
        "dtype": str(image.data.dtype),
        "pixel_size": [py, px],
        "unit": image.spatial_unit,
        "frames": frames,
        "size_mb": round(image.data.nbytes / 1e6, 3),
    }


def format_summary(s: dict[str, Any]) -> str:
    shape = " × ".join(str(n) for n in s["shape"])
    py, px = s["pixel_size"]
    size = f"{px:.6g} {s['unit']}" if py == px else f"{py:.6g} × {px:.6g} {s['unit']} (y × x)"
    lines = [
        f"file:       {s['file']}",
        f"format:     {s['format']}",
        f"shape:      {shape} ({s['axes']})",
        f"dtype:      {s['dtype']}",
        f"pixel size: {size}",
    ]
    for f in s["frames"]:
        lines.append(f"axis {f['axis']}:     {f['length']} × {f['step']:.6g} {f['unit']}")
    lines.append(f"size:       {s['size_mb']:.3f} MB")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2) like every user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _fidelity_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fidelity-out",
        default=None,
        metavar="MAP.tif",
        help="also write where the result is not supported by the raw counts: float32 in "
        "[0, 1], higher = less supported (see `em-restore check`)",
    )


def _scheduler_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on a dask.distributed cluster (e.g. tcp://host:8786); needs a .zarr output",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="em-restore",
        description="Restore electron-microscopy images (headless twin of the napari plugin).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    info = sub.add_parser("info", help="print shape, dtype, pixel size and unit of a file")
    info.add_argument("file", help="TIFF, MRC, DM3/DM4, EMD, TIA (.emi/.ser), PNG or JPEG")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_info)

    den = sub.add_parser(
        "denoise",
        help="denoise an image or stack (automatic by default)",
        description="Denoise an image or stack. By default the bundled model for the "
        "modality (--modality, else the file's metadata, else TEM) restores it; --model "
        "NAME_OR_DIR picks any trained model; --method classical picks a filter and its "
        "strength by self-supervised calibration on the image itself (no tuning).",
    )
    _batch_io(den)
    den.add_argument(
        "--method",
        default=None,
        help="a classical filter instead of the model: classical (automatic choice), "
        "gaussian, median, nlm, tv, wavelet, bm3d",
    )
    den.add_argument(
        "--model",
        default=None,
        metavar="NAME_OR_DIR",
        help="'auto' (default: the bundled model for the modality), a name "
        "(`em-restore models`) or a model folder",
    )
    den.add_argument(
        "--modality",
        choices=("tem", "stem", "sem"),
        default=None,
        help="picks the default model; for filters, checks STEM/SEM noise for scan correlation",
    )
    den.add_argument(
        "--no-fallback",
        action="store_true",
        help="the default model's result everywhere: skip its fidelity check and the "
        "classical fallback where the counts do not support it",
    )
    den.add_argument(
        "--strength",
        type=float,
        default=None,
        help="fix a filter's strength instead of calibrating it (with --method)",
    )
    den.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda", "mps"),
        help="where models run (auto: CUDA, then MPS, then CPU)",
    )
    den.add_argument(
        "--tile",
        type=int,
        default=None,
        help="model tile side in px (a multiple of the network's stride, larger than the "
        "overlap; default: the model's inference default, 1152)",
    )
    _scheduler_option(den)
    den.set_defaults(func=_batched(_denoise))

    prof = sub.add_parser(
        "profile",
        help="line profile with particle sizing (diameter, edge width, pair resolution)",
        description="Sample a line (or polyline) across particles and size them with a "
        "projected-sphere fit: centre, diameter, FWHM, edge width and, for neighbours, "
        "whether (d1+d2)/2 < l. Positions and sizes are in the file's physical unit "
        "(px if it has none).",
    )
    prof.add_argument("input", help="input file (any format `info` reads)")
    prof.add_argument(
        "--line",
        required=True,
        metavar="Y0,X0,Y1,X1",
        help="end points in pixels (row, column); more pairs make a polyline",
    )
    prof.add_argument("--width", type=int, default=1, help="average this many parallel lines")
    prof.add_argument("--frame", type=int, default=None, help="frame of a stack (default 0)")
    prof.add_argument(
        "--appearance",
        choices=("auto", "dark", "bright"),
        default="auto",
        help="particles darker (bright-field TEM) or brighter (HAADF) than the background",
    )
    prof.add_argument("--json", action="store_true", help="print JSON (profile, particles, pairs)")
    prof.set_defaults(func=_profile)

    dec = sub.add_parser(
        "deconvolve",
        help="denoise, estimate the blur kernel and remove it (blind unless --psf)",
        description="Two-stage restoration: automatic denoising, then deconvolution. Without "
        "--psf the blur kernel is estimated from the image (blind); --psf-out saves it. The "
        "kernel and the parameters are planned on the middle frame of a stack and applied to "
        "every frame.",
    )
    _batch_io(dec)
    dec.add_argument("--psf-out", default=None, metavar="PSF.tif", help="save the kernel used")
    dec.add_argument(
        "--psf",
        default=None,
        metavar="SPEC_OR_FILE",
        help="known kernel: gaussian:SIGMA_PX, disk:RADIUS_PX, motion:LENGTH_PX,ANGLE_DEG "
        "or a 2-D kernel image file (default: blind estimation)",
    )
    dec.add_argument(
        "--solver",
        choices=("rl", "wiener"),
        default="rl",
        help="Richardson-Lucy with TV (default, no ringing) or Wiener (one pass)",
    )
    dec.add_argument(
        "--denoise",
        choices=("model", "classical"),
        default="model",
        help="stage 1: the bundled denoising network for the modality (default) or the "
        "automatic classical filters",
    )
    dec.add_argument(
        "--no-denoise", action="store_true", help="skip the denoise stage (clean data)"
    )
    dec.add_argument(
        "--modality", choices=("tem", "stem", "sem"), default=None, help="for the denoise stage"
    )
    dec.add_argument(
        "--windows",
        type=int,
        default=1,
        help="N: one kernel per window of an N x N grid (spatially varying blur, blind only)",
    )
    dec.add_argument(
        "--max-kernel-size",
        type=int,
        default=None,
        help="largest kernel side in px, odd (default: min(31, short side / 8))",
    )
    _scheduler_option(dec)
    dec.set_defaults(func=_batched(_deconvolve))

    bur = sub.add_parser(
        "burst",
        help="restore a fast stream: each window of frames -> one sharp frame",
        description="Burst deblurring of a stream from a moving stage. Each window of N "
        "consecutive frames (every S frames) is registered to its middle frame and fused "
        "into one sharp frame by the burst network (default), the classical multi-frame "
        "Wiener deconvolution, Fourier burst accumulation or the registered mean. Output: "
        "a stack, frame i registered to input frame centre_i (in the file's metadata).",
    )
    _batch_io(bur, "stream stack(s) (T, rows, cols)")
    bur.add_argument("--frames", type=int, default=5, help="frames per window, >= 2 (default 5)")
    bur.add_argument("--stride", type=int, default=1, help="frames between windows (default 1)")
    bur.add_argument(
        "--method",
        choices=("network", "classical", "fba", "mean"),
        default="network",
        help="burst network (default), classical multi-frame Wiener, Fourier burst "
        "accumulation, or the registered mean",
    )
    bur.add_argument("--model", default=None, help="burst model name or folder (default: em-burst)")
    bur.add_argument(
        "--exposure",
        type=float,
        default=1.0,
        help="fraction of the frame time the detector integrates, for --method classical",
    )
    bur.add_argument("--device", default=None, help="auto (default), cpu, cuda or mps")
    _scheduler_option(bur)
    bur.set_defaults(func=_batched(_burst))

    tr = sub.add_parser(
        "train",
        help="train your own denoiser or burst network (paired, self-supervised, simulated)",
        description="Train a restoration network on your data and save it as a model folder "
        "(weights, config, model card) that denoise/burst accept with --model. Modes: paired "
        "(--noisy low-dose or blurry images with --clean high-dose or sharp images of the same "
        "areas: registered and intensity-matched), self (--noisy images alone, "
        "Neighbor2Neighbor), simulated (--clean images, or the built-in specimens, through the "
        "physics simulator). Training fine-tunes the bundled model of the task and "
        "--modality (or --from MODEL) unless --from-scratch. The best epoch (validation SSIM) "
        "is saved as soon as it is reached; Ctrl-C keeps it and --resume continues.",
    )
    tr.add_argument("--mode", required=True, choices=("paired", "self", "simulated"))
    tr.add_argument("--task", choices=("denoise", "burst"), default="denoise")
    tr.add_argument("--noisy", default=None, metavar="DIR_OR_FILE", help="noisy image(s)")
    tr.add_argument("--clean", default=None, metavar="DIR_OR_FILE", help="clean image(s)")
    tr.add_argument("-o", "--output", default=None, metavar="MODEL_DIR", help="model folder")
    tr.add_argument(
        "--name",
        default=None,
        help="model name (default: the folder's); alone: save it in the user model folder",
    )
    tr.add_argument("--epochs", type=int, default=20, help="epochs (default 20)")
    tr.add_argument("--steps-per-epoch", type=int, default=50, help="default 50")
    tr.add_argument("--max-minutes", type=float, default=None, help="stop after this long")
    tr.add_argument(
        "--from",
        dest="start",
        default=None,
        metavar="MODEL",
        help="model (name or folder) to fine-tune (default: the bundled model of the task "
        "and --modality)",
    )
    tr.add_argument(
        "--from-scratch",
        action="store_true",
        help="start from random weights of --arch instead of fine-tuning a model",
    )
    tr.add_argument(
        "--arch",
        choices=("fast_denoiser", "unet_resnet18", "burst_dense_unet"),
        default=None,
        help="network, with --from-scratch (default fast_denoiser; burst_dense_unet for "
        "--task burst); fine-tuning keeps the start model's",
    )
    tr.add_argument(
        "--loss", choices=("auto", "l1", "l2", "ssim", "l1+ssim", "gradient"), default="auto"
    )
    tr.add_argument("--patch", type=int, default=64, help="training crop size (default 64)")
    tr.add_argument("--batch", type=int, default=8, help="crops per step (default 8)")
    tr.add_argument(
        "--lr",
        type=float,
        default=None,
        help="Adam learning rate (default: the backend's, lower when fine-tuning than from "
        "scratch; the summary prints the one used)",
    )
    tr.add_argument("--patience", type=int, default=0, help="early stopping after N epochs")
    tr.add_argument("--val-fraction", type=float, default=0.15, help="held out (default 0.15)")
    tr.add_argument(
        "--modality",
        choices=("tem", "stem", "sem"),
        default="tem",
        help="the images' modality: picks the bundled model to fine-tune and the simulated "
        "modality (default tem)",
    )
    tr.add_argument(
        "--dose",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="simulated dose range in e-/px (default 1 100; burst 5 300)",
    )
    tr.add_argument("--frames", type=int, default=5, help="frames per burst window (default 5)")
    tr.add_argument(
        "--pool", type=int, default=None, help="simulated training images (default 256; burst 200)"
    )
    tr.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    tr.add_argument(
        "--device", default=None, help="auto (default: CUDA when present), cpu, cuda or mps"
    )
    tr.add_argument("--resume", action="store_true", help="continue an interrupted run")
    tr.add_argument("--overwrite", action="store_true", help="replace a model in MODEL_DIR")
    tr.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    tr.set_defaults(func=_train)

    mod = sub.add_parser("models", help="list the bundled and user models")
    mod.add_argument("--json", action="store_true", help="print JSON instead of text")
    mod.add_argument(
        "--task", choices=("denoise", "burst"), default=None, help="only models for this task"
    )
    mod.set_defaults(func=_models)
    _cli_export.add_parser(sub)  # export, import (BMZ packages, ONNX)
    _cli_check.add_parser(sub)  # check: fidelity maps
    _cli_live.add_parser(sub)  # live: restore while recording
    for command in (den, dec, bur):
        _fidelity_option(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``em-restore`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (UserError, ValueError, OSError) as exc:
        # ValueError covers io.UnsupportedFileError and the backend's input checks;
        # OSError covers missing, unreadable and refused (existing) files.
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"em-restore: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("em-restore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
