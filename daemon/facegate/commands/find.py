"""``facegate find IMG``: who is this? (1:N against the gallery). Exit 0 if every face is known, 1 if not."""

from __future__ import annotations

import argparse
from typing import Any

from facegate.commands.common import add_enforce_arg, add_json_arg, add_model_args
from facegate.commands.output import emit_json, emit_table, emit_text
from facegate.operating_point import OPEN_SET_MARGIN


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("find", help="identify faces against the gallery (1:N)", description=__doc__)
    p.add_argument("image")
    p.add_argument("--gallery", help="gallery database, or a folder with one sub-folder of photos per person")
    p.add_argument("-k", type=int, default=3, help="candidates to list per face")
    p.add_argument("--margin", type=float, default=OPEN_SET_MARGIN,
                   help="required distance gap between the best and second-best person "
                        f"(default {OPEN_SET_MARGIN}, the daemon's recognition.margin)")
    add_model_args(p, metric=True)
    add_enforce_arg(p)
    add_json_arg(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from facegate.api import find

    results = find(args.image, gallery=args.gallery, model_name=args.model_name,
                   distance_metric=args.distance_metric, enforce_detection=args.enforce_detection,
                   detector_backend=args.detector_backend, threshold=args.threshold, k=args.k,
                   margin=args.margin, num_threads=args.threads)
    if args.json:
        emit_json([r.to_dict() for r in results])
    else:
        for i, r in enumerate(results):
            a = r.facial_area
            who = f"{r.identity} ({r.person_id})" if r.identity else "UNKNOWN"
            emit_text(f"face {i} at x={a.x} y={a.y} w={a.w} h={a.h}: {who}")
            if r.candidates:
                emit_table(["candidate", "id", "distance", "confidence"],
                           [[c.identity, c.person_id, f"{c.distance:.4f}", f"{c.confidence:.1f}"]
                            for c in r.candidates])
    return 0 if results and all(r.identity for r in results) else 1
