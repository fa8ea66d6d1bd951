"""``facegate verify A B``: are two photos the same person? Exit 0 if verified, 1 if not."""

from __future__ import annotations

import argparse
from typing import Any

from facegate.commands.common import add_enforce_arg, add_json_arg, add_model_args
from facegate.commands.output import emit_json, emit_text


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("verify", help="1:1 verification of two images", description=__doc__)
    p.add_argument("img1")
    p.add_argument("img2")
    add_model_args(p, metric=True)
    add_enforce_arg(p)
    add_json_arg(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from facegate.api import verify

    result = verify(args.img1, args.img2, model_name=args.model_name, detector_backend=args.detector_backend,
                    distance_metric=args.distance_metric, enforce_detection=args.enforce_detection,
                    threshold=args.threshold, num_threads=args.threads)
    if args.json:
        emit_json(result.to_dict())
    else:
        verdict = "SAME person" if result.verified else "DIFFERENT people"
        emit_text(f"{verdict}: {result.distance_metric} distance {result.distance:.4f} "
                  f"(threshold {result.threshold:.4f}), confidence {result.confidence:.1f}%")
    return 0 if result.verified else 1
