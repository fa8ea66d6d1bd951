"""Arguments shared by the recognition sub-commands."""

from __future__ import annotations

import argparse

from facegate.types import METRICS


def add_model_args(parser: argparse.ArgumentParser, *, metric: bool = False) -> None:
    parser.add_argument("-d", "--detector-backend", default="mediapipe",
                        help="face detector (mediapipe, mediapipe_full, opencv, mtcnn, dlib, skip, ...)")
    parser.add_argument("-m", "--model-name", default="Dlib", help="recognition model (default: Dlib)")
    parser.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    if metric:
        parser.add_argument("--distance-metric", default="euclidean", choices=METRICS,
                            help="distance metric (default euclidean)")
        parser.add_argument("--threshold", type=float, default=None,
                            help="override the model's calibrated threshold for the metric")


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def add_enforce_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-enforce-detection", dest="enforce_detection", action="store_false",
                        help="use the whole image when no face is found instead of failing (exit 3)")
