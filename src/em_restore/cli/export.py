"""``em-restore export`` and ``em-restore import``: share models (BMZ packages, ONNX).

Kept apart from :mod:`em_restore.cli` (which wires them in with one call); the work
is done by :mod:`em_restore.backend.models.exchange`, imported on use so the CLI
starts without torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import command_parser

FORMATS = ("bmz", "onnx")


EXPORT_HELP = "write a model as a BioImage Model Zoo package or an ONNX file"
EXPORT_DESCRIPTION = (
    "Write a bundled or user model as a BioImage Model Zoo package (format 0.5: rdf.yaml, "
    "model card, pytorch_state_dict + torchscript + onnx weights, test tensors, cover; a "
    ".zip, or a folder for any other name) or as one ONNX file with dynamic size (run it with"
    " `em-restore denoise --model FILE.onnx`)."
)
IMPORT_HELP = "install a BioImage Model Zoo package as a user model"
IMPORT_DESCRIPTION = (
    "Install a BMZ package (.zip, folder or rdf.yaml) as a user model: one exported by "
    "em-restore, or any 2-D single-channel denoiser with ONNX weights. Packages that need "
    "code to run (a foreign architecture) are refused."
)


def add_parser(subparsers) -> None:
    """Add the ``export`` and ``import`` subcommands to ``em-restore``'s subparsers."""
    exp = command_parser(subparsers, "export", EXPORT_HELP, EXPORT_DESCRIPTION)
    exp.add_argument("model", metavar="MODEL", help="model name (`em-restore models`) or folder")
    exp.add_argument("--format", choices=FORMATS, required=True, help="bmz or onnx")
    exp.add_argument(
        "-o", "--output", required=True, metavar="PATH", help="PACKAGE.zip, a folder, or FILE.onnx"
    )
    exp.add_argument(
        "--author", action="append", default=None, metavar="NAME", help="BMZ author (repeatable)"
    )
    exp.add_argument("--overwrite", action="store_true", help="replace an existing PATH")
    exp.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    exp.set_defaults(func=run)

    imp = command_parser(subparsers, "import", IMPORT_HELP, IMPORT_DESCRIPTION)
    imp.add_argument("package", metavar="PACKAGE", help="package .zip, folder or rdf.yaml")
    imp.add_argument("--name", default=None, help="model name (default: the package's name)")
    imp.add_argument("--overwrite", action="store_true", help="replace a user model of that name")
    imp.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    imp.set_defaults(func=run_import)


def run(args: argparse.Namespace) -> int:
    """``em-restore export MODEL --format bmz|onnx -o PATH``."""
    from em_restore.backend.models import exchange

    out = Path(args.output)
    if args.format == "onnx" and out.suffix.lower() != ".onnx":
        raise ValueError(f"--format onnx writes one file; name it FILE.onnx (got {out}).")
    if args.format == "onnx":
        path = exchange.export_onnx(args.model, out, overwrite=args.overwrite)
    else:
        path = exchange.export_bmz(args.model, out, authors=args.author, overwrite=args.overwrite)
    if not args.quiet:
        print(f"exported {args.model} as {args.format} -> {path}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    """``em-restore import PACKAGE [--name NAME]``."""
    from em_restore.backend.models import exchange

    folder = exchange.import_bmz(args.package, name=args.name, overwrite=args.overwrite)
    if not args.quiet:
        print(
            f"imported {args.package} -> {folder}\nuse it: em-restore denoise IN -o OUT "
            f"--model {folder.name}"
        )
    return 0
