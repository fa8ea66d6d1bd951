"""``facegate models import FILE --as NAME [--force]``: install a user-supplied model (see
:mod:`facegate.model_import`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from facegate.cli import EXIT_OK
from facegate.commands.output import emit_json, emit_text


def register_action(actions: Any) -> None:
    from facegate.model_import import known_names

    p = actions.add_parser(
        "import", help="install a .tflite/.onnx model for a name facegate cannot ship",
        description=(f"Check FILE against the known spec of NAME and install it into the user model directory. "
                     f"Importable names: {', '.join(known_names())}. facegate never downloads weights."),
    )
    p.add_argument("file", type=Path, help="the .tflite or .onnx file")
    p.add_argument("--as", dest="as_name", required=True, metavar="NAME", help="DeepFace model or detector name")
    p.add_argument("--force", action="store_true", help="replace a model already imported under NAME")
    p.add_argument("--colour", choices=["RGB", "BGR"], help="channel order the file expects (default: the spec's)")
    p.add_argument("--mean", type=float, nargs="+", help="per-channel mean subtracted (default: the spec's)")
    p.add_argument("--std", type=float, nargs="+", help="per-channel divisor (default: the spec's)")
    p.add_argument("--dir", type=Path, help="target directory (default: the user model directory)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    p.set_defaults(models_handler=run_import)


def run_import(args: argparse.Namespace) -> int:
    from facegate.model_import import ImportOptions, import_model

    options = ImportOptions(colour=args.colour, mean=args.mean, std=args.std, force=args.force, dest=args.dir)
    manifest = import_model(args.file, args.as_name, options)
    info = {"name": manifest.name, "kind": manifest.kind, "family": manifest.family, "format": manifest.format,
            "manifest": str(manifest.path), "model_id": manifest.model_id, "embedding_dim": manifest.embedding_dim,
            "thresholds": dict(manifest.thresholds)}
    if args.json:
        emit_json(info)
    else:
        emit_text(f"imported {args.file} as {manifest.family} ({manifest.kind}): {manifest.path}")
    return EXIT_OK


__all__ = ["register_action", "run_import"]
