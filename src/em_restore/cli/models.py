"""``em-restore models``: list the bundled and user models"""

from __future__ import annotations

import argparse
import json

from ._common import command_parser


def _models(args: argparse.Namespace) -> int:
    from em_restore.backend import models

    rows = []
    defaults = {m: models.default_model_name(m) for m in ("tem", "stem", "sem")}
    defaults["unknown modality"] = models.default_model_name(None)
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


def add_parser(sub) -> None:
    mod = command_parser(sub, "models", __doc__)
    mod.add_argument("--json", action="store_true", help="print JSON instead of text")
    mod.add_argument(
        "--task", choices=("denoise", "burst"), default=None, help="only models for this task"
    )
    mod.set_defaults(func=_models)


run = _models
