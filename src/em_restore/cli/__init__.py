"""``em-restore``: the headless twin of the napari plugin.

Every subcommand calls the same backend functions as the widgets. User errors
(bad file, bad option) print one line to stderr and exit with status 2; a
traceback means a bug in em-restore. One module per command, each with
``add_parser(sub)`` and ``run(args)``; what they share is in :mod:`._common`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from em_restore import __version__

from . import burst, check, deconvolve, denoise, export, info, live, models, profile, train
from ._common import EXIT_USER_ERROR, Parser, UserError
from .info import describe, format_summary

__all__ = ["EXIT_USER_ERROR", "UserError", "build_parser", "describe", "format_summary", "main"]

#: the commands in the order ``em-restore --help`` lists them.
COMMANDS = (info, denoise, profile, deconvolve, burst, train, models, export, check, live)


def build_parser() -> Parser:
    parser = Parser(
        prog="em-restore",
        description="Restore electron-microscopy images (headless twin of the napari plugin).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.add_parser(sub)
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
