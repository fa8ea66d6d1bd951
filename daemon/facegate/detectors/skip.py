"""The "skip" detector: the caller says the whole image is already one face (DeepFace's ``skip``).

It returns a single detection covering the image with score 1.0 and no landmarks: nothing was
detected, so no eye position is invented (DeepFace's ``skip`` reports ``left_eye``/``right_eye`` as
None too). The aligner resizes such a box into the chip as it is (:func:`facegate.align.box_chip`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from facegate.detectors.base import FaceDetector
from facegate.detectors.options import SkipOptions
from facegate.errors import ImageError
from facegate.types import Box, FaceDetection, ImageBGR

if TYPE_CHECKING:
    from facegate.inference.manifest import ModelZoo


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


def build(options: SkipOptions, /, *, num_threads: int = 1, zoo: ModelZoo | None = None) -> SkipDetector:
    """The "skip" detector. Its options are the common ones, accepted and ignored (so one config works
    with every backend), like ``num_threads`` and ``zoo``."""
    del options, num_threads, zoo
    return SkipDetector()


__all__ = ["SkipDetector", "build", "whole_image_detection"]
