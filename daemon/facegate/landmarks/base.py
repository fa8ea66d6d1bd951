"""The landmark provider interface and the dlib 5-point vocabulary.

A :class:`Landmarker` refines a detector's face into the points an aligner needs. The dlib face chip
needs the outer and inner corner of each eye and the bottom of the nose (subnasale); BlazeFace gives
eye centres only, so a landmarker adds those five points to the detection, keeping the detector's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from numpy.typing import NDArray

from facegate.types import FaceDetection, ImageBGR

#: The dlib 5-point names in the predictor's output order (subject's perspective: the person's left
#: eye has the larger x in a frontal photo, so point 0 is the outer corner with the largest x).
DLIB5_NAMES: tuple[str, ...] = (
    "left_eye_outer",
    "left_eye_inner",
    "right_eye_outer",
    "right_eye_inner",
    "nose_bottom",
)


def with_points(detection: FaceDetection, names: tuple[str, ...], points: NDArray[np.floating]) -> FaceDetection:
    """A copy of ``detection`` with ``points`` ``(len(names), 2)`` added (replacing same-named ones)."""
    keep = [i for i, n in enumerate(detection.landmark_names) if n not in names]
    old = np.asarray(detection.landmarks, dtype=np.float32).reshape(-1, 2)
    merged = np.concatenate([old[keep], np.asarray(points, dtype=np.float32).reshape(-1, 2)], axis=0)
    return FaceDetection(
        box=detection.box,
        score=detection.score,
        landmarks=np.ascontiguousarray(merged, dtype=np.float32),
        landmark_names=tuple(detection.landmark_names[i] for i in keep) + tuple(names),
        detector=detection.detector,
    )


def has_points(detection: FaceDetection, names: tuple[str, ...]) -> bool:
    return all(n in detection.landmark_names for n in names)


def points_of(detection: FaceDetection, names: tuple[str, ...]) -> NDArray[np.float64]:
    """``(len(names), 2)`` float64 source-pixel coordinates of the named points (all must exist)."""
    index = [detection.landmark_names.index(n) for n in names]
    return np.asarray(detection.landmarks, dtype=np.float64).reshape(-1, 2)[index]


class Landmarker(ABC):
    """Adds named points to a detection; loads its model once in ``__init__``."""

    #: registry key, e.g. "shape_predictor"
    name: str = ""
    #: the names this provider adds
    point_names: tuple[str, ...] = DLIB5_NAMES

    @abstractmethod
    def landmarks(self, image: ImageBGR, detection: FaceDetection) -> FaceDetection:
        """``detection`` enriched with :attr:`point_names` in ``image`` (BGR uint8 HxWx3) pixels."""


__all__ = ["DLIB5_NAMES", "Landmarker", "has_points", "points_of", "with_points"]
