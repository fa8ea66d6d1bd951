"""The "skip" detector: the caller says the whole image is already one face (DeepFace's ``skip``).

It returns a single detection covering the image with score 1.0 and no landmarks: nothing was
detected, so no eye position is invented (DeepFace's ``skip`` reports ``left_eye``/``right_eye`` as
None too). The aligner resizes such a box into the chip as it is (:func:`facegate.align.box_chip`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facegate.detectors.base import FaceDetector
from facegate.errors import ConfigError, ImageError
from facegate.types import Box, FaceDetection, ImageBGR


class SkipDetector(FaceDetector):
    """Treats the whole BGR image as one face."""

    name = "skip"

    def detect(self, image: ImageBGR) -> list[FaceDetection]:
        if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise ImageError(f"skip: want an HxWx3 image, got shape {image.shape}")
        return [whole_image_detection(image)]


def whole_image_detection(image: ImageBGR) -> FaceDetection:
    """One landmark-free detection covering ``image``."""
    h, w = float(image.shape[0]), float(image.shape[1])
    return FaceDetection(box=Box(0.0, 0.0, w, h), score=1.0, landmarks=np.zeros((0, 2), dtype=np.float32),
                         landmark_names=(), detector="skip")


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


__all__ = ["IGNORED_OPTIONS", "SkipDetector", "build", "whole_image_detection"]
