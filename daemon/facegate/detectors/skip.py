"""The "skip" detector: the caller says the whole image is already one face (DeepFace's ``skip``).

It returns a single detection covering the image with score 1.0 and the eyes where dlib's
face-chip template puts them (template eye centres with dlib's default padding 0.25). A 150x150
dlib chip therefore aligns onto itself, and any tight face crop gets a plausible, upright alignment.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facegate.detectors.base import FaceDetector
from facegate.errors import ConfigError, ImageError
from facegate.types import Box, FaceDetection, ImageBGR

#: eye centres as fractions of the image width/height (subject's perspective: right eye at smaller x);
#: means of dlib's 5-point template eye corners, (padding + p) / (2 * padding + 1) with padding 0.25
RIGHT_EYE = ((0.25 + (0.1206 + 0.3341) / 2) / 1.5, (0.25 + (0.2137 + 0.2291) / 2) / 1.5)
LEFT_EYE = ((0.25 + (0.8596 + 0.6461) / 2) / 1.5, (0.25 + (0.2135 + 0.2290) / 2) / 1.5)


class SkipDetector(FaceDetector):
    """Treats the whole BGR image as one face."""

    name = "skip"

    def detect(self, image: ImageBGR) -> list[FaceDetection]:
        if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise ImageError(f"skip: want an HxWx3 image, got shape {image.shape}")
        h, w = float(image.shape[0]), float(image.shape[1])
        landmarks = np.asarray([[RIGHT_EYE[0] * w, RIGHT_EYE[1] * h], [LEFT_EYE[0] * w, LEFT_EYE[1] * h]],
                               dtype=np.float32)
        return [FaceDetection(box=Box(0.0, 0.0, w, h), score=1.0, landmarks=landmarks,
                              landmark_names=("right_eye", "left_eye"), detector=self.name)]


#: options every detector accepts; "skip" has nothing to tune, so it accepts and ignores them
IGNORED_OPTIONS = frozenset({"variant", "score_threshold", "max_faces", "min_face_size", "min_face_px"})


def build(*, num_threads: int = 1, **options: Any) -> SkipDetector:
    """The "skip" detector. ``num_threads`` and the common detector options are accepted and ignored
    (so one config works with every backend); anything else is a :class:`ConfigError`."""
    del num_threads
    unknown = sorted(set(options) - IGNORED_OPTIONS)
    if unknown:
        raise ConfigError(f"detector 'skip' has no options {unknown}; it accepts only {sorted(IGNORED_OPTIONS)}")
    return SkipDetector()


__all__ = ["IGNORED_OPTIONS", "LEFT_EYE", "RIGHT_EYE", "SkipDetector", "build"]
