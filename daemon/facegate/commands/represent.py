"""``facegate represent IMG``: embeddings of the faces in an image (JSON)."""

from __future__ import annotations

import argparse
from typing import Any

from facegate.commands.common import add_enforce_arg, add_model_args
from facegate.commands.output import emit_json


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("represent", help="embeddings of the faces in an image", description=__doc__)
    p.add_argument("image")
    add_model_args(p)
    add_enforce_arg(p)
    p.add_argument("--max-faces", type=int, default=None)
    p.add_argument("--l2-normalize", action="store_true")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from facegate.api import represent

    reps = represent(args.image, model_name=args.model_name, detector_backend=args.detector_backend,
                     enforce_detection=args.enforce_detection, max_faces=args.max_faces,
                     l2_normalize=args.l2_normalize, num_threads=args.threads)
    emit_json([r.to_dict() for r in reps])  # type: ignore[union-attr]
    return 0
