"""A second opinion that an enrolment face is a human face (BlazeFace alone accepts dogs and cats).

BlazeFace short-range gives dog and cat faces scores of 0.60-0.62 and the quality gates pass them
(sharp, frontal, large), so ``facegate enroll X dogs.jpg`` used to store a dog. Enrolment therefore
asks a second, independently trained detector - dlib's MMOD CNN (``detector_backend="dlib"``), trained
on human faces only - to find a face in a square crop around the candidate. Measured on
``../shared/data`` (BlazeFace's largest face of each photo, crop 2x the box side resized to 200 px):
all 133 identity photos (including the 52 pre-cut 150x150 "johns" chips) are confirmed; the dog, the
cat and the five PASCAL false positives are not; about 20 ms per face on a loaded 2-core box.

When the primary detector is MMOD itself, BlazeFace short-range is the second opinion.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from facegate.detectors.base import FaceDetector
from facegate.errors import ModelNotInstalledError
from facegate.types import Box, FaceDetection, ImageBGR

logger = logging.getLogger(__name__)

#: the crop is this many box sides wide, centred on the box (context for the second detector)
CROP_SIDES = 2.0
#: and resized to this many pixels (the face is then ~100 px wide: above MMOD's 80 px window)
CROP_PX = 200
#: a confirming box must overlap the candidate's expected position at least this much (IoU)
MIN_IOU = 0.3
#: the primary detector's score a face needs when no second detector is installed
FALLBACK_MIN_SCORE = 0.75

_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Confirmation:
    confirmed: bool
    detail: str


@functools.cache
def _second_detector(primary: str) -> FaceDetector | None:
    from facegate.detectors.registry import build_detector

    name = "mediapipe" if primary.casefold() == "dlib" else "dlib"
    try:
        return build_detector(name)
    except ModelNotInstalledError as err:
        logger.warning("enrolment face check: %s not installed (%s); using the detector score only", name, err)
        return None


def release_second_detectors() -> None:
    """Drop the cached second-opinion detectors (MMOD: ~25 MB of LiteRT tensors on a 200 px crop).

    Long-running processes call it after an enrolment so that this memory is not resident between
    enrolments; the next confirmation loads the detector again (tens of ms).
    """
    with _LOCK:
        _second_detector.cache_clear()


def _crop(image: ImageBGR, box: Box) -> tuple[ImageBGR, Box]:
    """A square ``CROP_PX`` crop around ``box`` (zero-padded at the edges) and ``box`` in its pixels."""
    cx, cy = box.center
    half = CROP_SIDES * max(box.width, box.height) / 2.0
    x1, y1 = round(cx - half), round(cy - half)
    side = max(1, round(2 * half))
    h, w = image.shape[:2]
    pad = max(0, -x1, -y1, x1 + side - w, y1 + side - h)
    src = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0)) if pad else image
    crop = src[y1 + pad:y1 + pad + side, x1 + pad:x1 + pad + side]
    scale = CROP_PX / side
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    out = np.ascontiguousarray(cv2.resize(crop, (CROP_PX, CROP_PX), interpolation=interp), dtype=np.uint8)
    mapped = Box((box.x1 - x1) * scale, (box.y1 - y1) * scale, (box.x2 - x1) * scale, (box.y2 - y1) * scale)
    return out, mapped


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def confirm_human_face(image: ImageBGR, detection: FaceDetection) -> Confirmation:
    """Whether a second detector also sees a human face where ``detection`` is."""
    second = _second_detector(detection.detector)
    if second is None:
        ok = detection.score >= FALLBACK_MIN_SCORE
        return Confirmation(ok, "" if ok else f"detector score {detection.score:.2f} below "
                                             f"{FALLBACK_MIN_SCORE:.2f} and no second detector installed")
    crop, expected = _crop(image, detection.box)
    with _LOCK:  # one interpreter shared by every thread of the process
        found = second.detect(crop)
    best = max((_iou(d.box, expected) for d in found), default=0.0)
    if best >= MIN_IOU:
        return Confirmation(True, "")
    return Confirmation(False, f"not confirmed as a human face (score {detection.score:.2f}; a second detector "
                               "finds no face there): an animal, a statue or a drawing?")


__all__ = ["Confirmation", "confirm_human_face", "release_second_detectors"]
