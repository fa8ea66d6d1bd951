"""``facegate detect IMG [--draw OUT.jpg]``: faces, landmarks and scores."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facegate.cli import EXIT_NO_FACE
from facegate.commands.common import add_json_arg
from facegate.commands.drawing import draw_labelled_box, line_thickness
from facegate.commands.output import emit_json, emit_table, emit_text
from facegate.errors import ConfigError, ImageError
from facegate.images import load_image
from facegate.types import FaceDetection, ImageBGR

_COLOURS = {"right_eye": (255, 128, 0), "left_eye": (0, 128, 255), "nose": (0, 255, 0), "mouth": (255, 0, 255)}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("detect", help="detect faces in an image", description=__doc__)
    p.add_argument("image", help="image file")
    p.add_argument("-d", "--detector-backend", default="mediapipe")
    p.add_argument("--draw", metavar="OUT", help="write a copy of the image with boxes and landmarks")
    add_json_arg(p)
    p.set_defaults(handler=run)


def draw_detections(image: ImageBGR, detections: list[FaceDetection]) -> ImageBGR:
    canvas: ImageBGR = image.copy()
    thickness = line_thickness(image)
    for i, det in enumerate(detections):
        b = det.box
        # "#i" is the number `facegate enroll --face N` / `face_index=` takes
        draw_labelled_box(canvas, (round(b.x1), round(b.y1), round(b.x2), round(b.y2)), f"#{i} {det.score:.2f}",
                          (0, 220, 0))
        for name, (x, y) in zip(det.landmark_names, det.landmarks.tolist(), strict=True):
            colour = _COLOURS.get(name, (200, 200, 200))
            cv2.circle(canvas, (round(x), round(y)), 2 * thickness, colour, -1)
    return canvas


def detection_dict(det: FaceDetection) -> dict[str, Any]:
    x, y, w, h = det.box.to_xywh()
    return {
        "box": {"x": x, "y": y, "w": w, "h": h},
        "score": round(det.score, 4),
        "landmarks": {n: [round(float(p[0]), 1), round(float(p[1]), 1)]
                      for n, p in zip(det.landmark_names, np.asarray(det.landmarks), strict=True)},
    }


def run(args: argparse.Namespace) -> int:
    from facegate.engine import get_engine

    if args.detector_backend.casefold() == "skip":
        raise ConfigError("detect needs a real detector, not 'skip'")
    image = load_image(args.image)
    # largest first: the numbering `facegate enroll --face N` and `facegate.enroll(face_index=)` use
    detections = sorted(get_engine(args.detector_backend).detect(image), key=lambda d: d.box.area, reverse=True)
    if args.draw:
        out = Path(args.draw)
        if not cv2.imwrite(str(out), draw_detections(image, detections)):
            raise ImageError(f"{out}: cannot write image (unknown extension or unwritable path)")
    if args.json:
        emit_json({"image": args.image, "faces": [detection_dict(d) for d in detections]})
    else:
        rows = [[i, *d.box.to_xywh(), f"{d.score:.3f}"] for i, d in enumerate(detections)]
        emit_text(f"{args.image}: {len(detections)} face(s)")
        if rows:
            emit_table(["#", "x", "y", "w", "h", "score"], rows)
    # the result is still printed (and drawn); the exit status says "no face", as find's does
    return 0 if detections else EXIT_NO_FACE
