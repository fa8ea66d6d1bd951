"""OpenCV Haar cascades ("opencv"): DeepFace's default detector, the fast path for weak devices.

The frontal-face cascade finds boxes; the eye cascade, run inside each face's upper part, finds the
eyes as DeepFace does (the two largest eye boxes, ordered by x). When it does not find two plausible
eyes, they are estimated from the box geometry with fractions fitted by the converter (see
:mod:`facegate.detectors.box_eyes`). Frontal cascades see upright, roughly frontal faces only.

Each cascade has a manifest (``models/haar_*.yaml``: source, licence, sha256); the file is the one next
to it (a source checkout, or ``facegate models build --only haar``), else the installed OpenCV's copy of
the same bytes (``cv2.data`` of the wheel, Debian's ``opencv-data``), which is why the wheel leaves the
XML out (:func:`facegate.inference.manifest.locate_file`). OpenCV 5 has neither the files nor
``CascadeClassifier``. Every parameter
(``detectMultiScale`` scale factor, neighbours, minimum size, the eye search region, the fallback
fractions) comes from the manifest's ``decoder`` block, validated by :class:`HaarDecoder`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from facegate.detectors.base import FaceDetector
from facegate.detectors.box_eyes import EyeFractions, eyes_from_box
from facegate.detectors.options import HaarOptions
from facegate.errors import ImageError, ModelError
from facegate.inference.manifest import ModelManifest, ModelZoo, default_zoo, verify_file
from facegate.types import Box, FaceDetection, FloatArray, ImageBGR

logger = logging.getLogger(__name__)

FAMILY = "opencv"
EYES_FAMILY = "opencv_eyes"
LANDMARK_NAMES = ("right_eye", "left_eye")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EyeSearch(_Strict):
    """Where and how the eye cascade looks inside a face box, and what counts as a plausible pair."""

    manifest: str = Field(description="manifest name of the eye cascade")
    scale_factor: float = Field(gt=1.0, description="detectMultiScale scaleFactor of the eye cascade")
    min_neighbors: int = Field(ge=0, description="detectMultiScale minNeighbors of the eye cascade")
    top: float = Field(ge=0.0, lt=1.0, description="search band top, fraction of the face height")
    bottom: float = Field(gt=0.0, le=1.0, description="search band bottom, fraction of the face height")
    min_separation: float = Field(ge=0.0, le=1.0, description="min horizontal eye distance, fraction of face width")
    max_tilt: float = Field(ge=0.0, description="max |dy/dx| between the two eyes")

    @model_validator(mode="after")
    def _check(self) -> EyeSearch:
        if self.top >= self.bottom:
            raise ValueError(f"eye search band top {self.top} must be above bottom {self.bottom}")
        return self


class HaarDecoder(_Strict):
    """The manifest ``decoder`` block of the frontal-face cascade."""

    scale_factor: float = Field(gt=1.0, description="detectMultiScale scaleFactor")
    min_neighbors: int = Field(ge=0, description="detectMultiScale minNeighbors")
    min_size: int = Field(ge=1, description="smallest face searched, pixels (square)")
    eyes: EyeSearch
    eye_fallback: EyeFractions


def parse_decoder(manifest: ModelManifest) -> HaarDecoder:
    try:
        return HaarDecoder.model_validate(manifest.decoder)
    except ValidationError as err:
        raise ModelError(f"model manifest {manifest.name}: invalid Haar decoder options: {err}") from err


def load_cascade(manifest: ModelManifest) -> Any:
    """A ``cv2.CascadeClassifier`` from a verified manifest file."""
    if manifest.format != "xml":
        raise ModelError(f"model manifest {manifest.name}: a Haar cascade must have format xml")
    classifier_type = getattr(cv2, "CascadeClassifier", None)
    if classifier_type is None:
        raise ModelError("this OpenCV build has no CascadeClassifier (OpenCV 5 removed it); install opencv<5")
    path = verify_file(manifest)
    classifier = classifier_type(str(path))
    if classifier.empty():
        raise ModelError(f"OpenCV cannot load the cascade {path.name}")
    return classifier


def _logistic(x: float) -> float:
    return 0.5 * (math.tanh(0.5 * x) + 1.0)


class HaarDetector(FaceDetector):
    """Frontal-face Haar cascade with eye-cascade (or box-geometry) eyes."""

    tells_orientation = False

    name = "opencv"

    def __init__(self, face: ModelManifest, eyes: ModelManifest, *, options: HaarOptions | None = None) -> None:
        self.manifest = face
        self.options = options or HaarOptions()
        # the score is the logistic of the last stage's weight; the cascade itself already decided
        self.min_score = self.options.score_threshold if self.options.score_threshold is not None else 0.0
        self.decoder = parse_decoder(face)
        self._faces = load_cascade(face)
        self._eyes = load_cascade(eyes)
        self._min_neighbors = (
            self.options.min_neighbors if self.options.min_neighbors is not None else self.decoder.min_neighbors
        )

    def find_eyes(self, gray: NDArray[np.uint8], box: tuple[int, int, int, int]) -> FloatArray | None:
        """``(2, 2)`` ``[right_eye, left_eye]`` from the eye cascade in the face's upper band, or None.

        DeepFace's rule: the two largest eye boxes, the one with the smaller x being the person's right
        eye. A pair is rejected when the eyes are closer than ``min_separation`` of the face width or
        tilted more than ``max_tilt`` (the cascade fires on eyebrows, nostrils and glasses rims).
        """
        x, y, w, h = box
        search = self.decoder.eyes
        top = y + round(search.top * h)
        bottom = y + round(search.bottom * h)
        band = gray[max(0, top) : max(0, bottom), max(0, x) : max(0, x + w)]
        if band.shape[0] < 8 or band.shape[1] < 8:
            return None
        found = self._eyes.detectMultiScale(band, search.scale_factor, search.min_neighbors)
        if len(found) < 2:
            return None
        ranked = sorted((tuple(int(v) for v in e) for e in found), key=lambda e: e[2] * e[3], reverse=True)
        a, b = ranked[0], ranked[1]
        right, left = (a, b) if a[0] < b[0] else (b, a)
        ox, oy = float(max(0, x)), float(max(0, top))
        points = np.asarray(
            [[ox + right[0] + right[2] / 2.0, oy + right[1] + right[3] / 2.0],
             [ox + left[0] + left[2] / 2.0, oy + left[1] + left[3] / 2.0]],
            dtype=np.float32,
        )
        dx = float(points[1, 0] - points[0, 0])
        dy = float(points[1, 1] - points[0, 1])
        if dx < search.min_separation * w or abs(dy) > search.max_tilt * dx:
            return None
        return points

    def detect(self, image: ImageBGR) -> list[FaceDetection]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageError(f"{self.name}: want a BGR uint8 HxWx3 image, got {image.dtype} {image.shape}")
        gray: NDArray[np.uint8] = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
        d = self.decoder
        boxes, _levels, weights = self._faces.detectMultiScale3(
            gray, d.scale_factor, self._min_neighbors, minSize=(d.min_size, d.min_size), outputRejectLevels=True
        )
        if len(boxes) == 0:
            return []
        scored = sorted(
            ((_logistic(float(wt)), tuple(int(v) for v in b)) for b, wt in zip(boxes, np.ravel(weights), strict=True)),
            key=lambda item: -item[0],
        )
        faces: list[FaceDetection] = []
        for score, (x, y, w, h) in scored:
            if score < self.min_score or min(w, h) < self.options.min_face_px:
                continue
            box = Box(float(x), float(y), float(x + w), float(y + h))
            eyes = self.find_eyes(gray, (x, y, w, h)) if self.options.detect_eyes else None
            if eyes is None:
                eyes = eyes_from_box(box, d.eye_fallback)
            faces.append(FaceDetection(box=box, score=score, landmarks=eyes, landmark_names=LANDMARK_NAMES,
                                       detector=self.name))
            if self.options.max_faces is not None and len(faces) >= self.options.max_faces:
                break
        return faces


def build(options: HaarOptions, /, *, num_threads: int = 1, zoo: ModelZoo | None = None) -> HaarDetector:
    """The "opencv" detector (``num_threads`` is ignored: OpenCV's cascade uses its own thread pool,
    bounded process-wide by ``cv2.setNumThreads``)."""
    del num_threads
    zoo = zoo or default_zoo()
    face = zoo.family("detector", FAMILY, options.variant)
    eyes = zoo.get(parse_decoder(face).eyes.manifest)
    return HaarDetector(face, eyes, options=options)


__all__ = ["EYES_FAMILY", "FAMILY", "EyeSearch", "HaarDecoder", "HaarDetector", "HaarOptions", "build", "parse_decoder"]
