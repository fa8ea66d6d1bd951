"""``facegate analyze IMG [--actions emotion age gender] [--draw OUT.jpg] [--json]``: facial attributes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2

from facegate.commands.common import add_enforce_arg, add_json_arg
from facegate.commands.drawing import draw_labelled_box
from facegate.commands.output import emit_json, emit_table, emit_text
from facegate.errors import ImageError
from facegate.types import ImageBGR

if TYPE_CHECKING:
    from facegate.analysis.api import AnalysisResult


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("analyze", help="emotion, age and gender of the faces in an image",
                              description=__doc__)
    p.add_argument("image", help="image file")
    p.add_argument("-a", "--actions", nargs="+", default=["emotion", "age", "gender"], metavar="ACTION",
                   help="any of emotion, age, gender (default: all three; 'race' has no model)")
    p.add_argument("-d", "--detector-backend", default="mediapipe",
                   help="face detector (mediapipe, mediapipe_full, ..., skip)")
    p.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    p.add_argument("--draw", metavar="OUT", help="write a copy of the image with boxes and labels")
    add_enforce_arg(p)
    add_json_arg(p)
    p.set_defaults(handler=run)


def label_of(result: AnalysisResult) -> str:
    parts = []
    if result.gender is not None:
        parts.append(f"{result.gender.dominant} {result.gender[result.gender.dominant]:.0f}%")
    if result.age is not None:
        parts.append(f"{result.age} y")
    if result.emotion is not None:
        parts.append(f"{result.emotion.dominant} {result.emotion[result.emotion.dominant]:.0f}%")
    return ", ".join(parts)


def draw_results(image: ImageBGR, results: list[AnalysisResult]) -> ImageBGR:
    canvas: ImageBGR = image.copy()
    for r in results:
        region = r.region
        draw_labelled_box(canvas, (region.x, region.y, region.x + region.w, region.y + region.h), label_of(r),
                          (0, 200, 255))
    return canvas


def run(args: argparse.Namespace) -> int:
    from facegate.analysis.api import analyze_image
    from facegate.images import load_image

    image = load_image(args.image)
    results = analyze_image(image, actions=args.actions, enforce_detection=args.enforce_detection,
                      detector_backend=args.detector_backend, num_threads=args.threads)
    if args.draw:
        out = Path(args.draw)
        if not cv2.imwrite(str(out), draw_results(image, results)):
            raise ImageError(f"{out}: cannot write image (unknown extension or unwritable path)")
    if args.json:
        emit_json([r.to_dict() for r in results])
        return 0
    emit_text(f"{args.image}: {len(results)} face(s)")
    rows = []
    for i, r in enumerate(results):
        rows.append([i, r.region.x, r.region.y, r.region.w, r.region.h, f"{r.face_confidence:.2f}", label_of(r)])
    if rows:
        emit_table(["#", "x", "y", "w", "h", "confidence", "attributes"], rows)
    return 0
