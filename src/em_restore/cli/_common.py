"""What every ``em-restore`` command shares: user errors, progress on stderr, output
checks and writing, batches of inputs, and the option groups several commands take."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from em_restore.backend._args import MODALITIES

EXIT_USER_ERROR = 2


def command_parser(sub, name: str, doc: str, description: str | None = None):
    r"""The parser of subcommand ``name``. ``doc`` is the command module's docstring: its
    first paragraph, after ``em-restore NAME``:, is the one-line help, its second the
    description (one text for the reader of the code and of ``--help``). Given
    ``description``, ``doc`` is the help itself.

    Examples
    --------
    >>> p = argparse.ArgumentParser().add_subparsers()
    >>> c = command_parser(p, "x", "``em-restore x``: do\n  it.\n\nAll of it.\n\nMore.")
    >>> c.description
    'All of it.'
    """
    if description is None:
        first, _, rest = (doc or name).strip().partition("\n\n")
        doc = " ".join(first.split()).split(": ", 1)[-1]
        description = " ".join(rest.partition("\n\n")[0].split()) or None
    return sub.add_parser(name, help=doc, description=description)


class UserError(Exception):
    """A problem with the user's input, reported as one line, no traceback."""


def progress_printer(enabled: bool):
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
                bar(event.done, event.total, event.message)

    return drive


def check_output(
    input_path: str | Path,
    output: str | Path,
    overwrite: bool,
    *,
    what: str = "output",
    also: Sequence[str | Path] = (),
) -> Path:
    """``output``'s path, refused (one line) if it is the input or one of ``also``, if
    it exists (without ``overwrite``), or if it is not TIFF or zarr."""
    out = Path(output)
    for p in (input_path, *also):
        if out.resolve() == Path(p).resolve():
            never = "inputs are never overwritten" if also else "raw data is never overwritten"
            raise UserError(f"{what} {str(out)!r} is an input file; {never} — choose another name")
    if out.exists() and not overwrite:
        raise UserError(f"{what} {str(out)!r} already exists; pass --overwrite to replace it")
    if out.suffix.lower() not in {".tif", ".tiff", ".zarr"}:
        raise UserError(
            f"{what} {str(out)!r} has extension {out.suffix!r}; use .tif, .tiff or .zarr"
        )
    return out


def greyscale(image: Any, path: str) -> None:
    if "c" in image.axes:
        raise UserError(
            f"{path!r} is an RGB/RGBA image; EM restoration works on greyscale data — "
            "convert it to greyscale (e.g. in Fiji: Image > Type > 32-bit) and retry"
        )


def write_result(
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
        data = stream.with_progress(data, bar)
    with stream.computing(scheduler):
        run()
    if progress:
        print(file=sys.stderr)


def bar(done: int, total: int, message: str = "chunks written") -> None:
    width = 30
    filled = int(width * done / total) if total else width
    print(
        f"\r[{'#' * filled}{'-' * (width - filled)}] {done}/{total} {message[:40]:<40}",
        end="",
        file=sys.stderr,
        flush=True,
    )


def compute(lazy: Any, scheduler: str | None, progress: bool, message: str) -> Any:
    """Compute a small lazy result (locally with a progress bar, or on the cluster)."""
    import numpy as np

    from em_restore.backend import stream

    if progress and not scheduler:
        lazy = stream.with_progress(lazy, lambda d, t: bar(d, t, message))
    with stream.computing(scheduler):
        value = np.asarray(lazy.compute())
    if progress:
        print(file=sys.stderr)
    return value


def check_scheduler(args: argparse.Namespace) -> None:
    if args.scheduler and Path(args.output).suffix.lower() != ".zarr":
        raise UserError(
            "--scheduler needs a .zarr output (the workers write its chunks in parallel); "
            "use -o OUT.zarr"
        )


def wants_stream(args: argparse.Namespace, image: Any) -> bool:
    """Whether to compute lazily, chunk by chunk: stacks, and anything on a cluster."""
    check_scheduler(args)
    return bool(args.scheduler) or image.data.ndim > 2


# --------------------------------------------------------------------------- batches
# What a batch appends to each input's name (so an output never lands on its input).
BATCH_SUFFIX = {"denoise": "_denoised", "deconvolve": "_deconvolved", "burst": "_burst"}


def input_files(specs: Sequence[str]) -> tuple[list[Path], bool]:
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


def batched(one: Any) -> Any:
    """A subcommand over one file, extended to many: several inputs or a folder
    (``-o`` names an output folder), else the single file as before."""

    def run(args: argparse.Namespace) -> int:
        files, folder = input_files(args.input)
        out = Path(args.output)
        to_folder = out.is_dir() and out.suffix.lower() != ".zarr"
        if len(files) == 1 and not folder and not to_folder and not args.output.endswith("/"):
            args.input = str(files[0])
            return one(args)
        return run_batch(args, one, files, out)

    return run


def run_batch(args: argparse.Namespace, one: Any, files: list[Path], out: Path) -> int:
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


def batch_io(parser: argparse.ArgumentParser, what: str = "input file(s)") -> None:
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


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2) like every user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def fidelity_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fidelity-out",
        default=None,
        metavar="MAP.tif",
        help="also write where the result is not supported by the raw counts: float32 in "
        "[0, 1], higher = less supported (see `em-restore check`)",
    )


def scheduler_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on a dask.distributed cluster (e.g. tcp://host:8786); needs a .zarr output",
    )


#: where networks can run; every command that runs one takes the same --device.
DEVICES = ("auto", "cpu", "cuda", "mps")


def device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="where networks run (auto: CUDA, then MPS, then CPU)",
    )


def restoration_options(parser: argparse.ArgumentParser, one) -> None:
    """What every restoring command ends with: --device, --scheduler, --fidelity-out,
    and ``one`` (the command on one file) extended to batches."""
    device_option(parser)
    scheduler_option(parser)
    fidelity_option(parser)
    parser.set_defaults(func=batched(one))


def modality_option(parser: argparse.ArgumentParser, help: str, default: str | None = None) -> None:
    parser.add_argument("--modality", choices=MODALITIES, default=default, help=help)
