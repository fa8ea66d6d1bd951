"""Where an attribute head cuts its chip from: a source image plus the face's landmarks in it.

The library API has the full source image; the daemon's analyzer only gets the
:class:`~facegate.types.AlignedFace` of the embedder (dlib's 150x150 chip, padding 0.25), so it cuts
the heads' chips out of that chip, with the landmarks mapped through ``AlignedFace.transform``. The
emotion crop reaches a little above the 150 chip (forehead), so the chip is first extended by
replicating its border rather than leaving a black band.

A view without dlib's five points (``detector_backend="skip"``, or no face with
``enforce_detection=False``) is a *whole-image* view: every head resizes the whole image to its input.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.landmarks.base import DLIB5_NAMES, has_points
from facegate.types import AlignedFace, Box, FaceDetection, ImageBGR

#: pixels of replicated border added around an aligned chip before heads sample it
CHIP_BORDER = 48


@dataclass(frozen=True, slots=True)
class FaceView:
    """``image`` BGR uint8 ``(H, W, 3)``; ``detection`` in its pixels (corner origin), or ``None``
    when the whole image is the face."""

    image: ImageBGR
    detection: FaceDetection | None

    @property
    def whole_image(self) -> bool:
        return self.detection is None or not has_points(self.detection, DLIB5_NAMES)


def source_view(image: ImageBGR, detection: FaceDetection | None) -> FaceView:
    """A view of a face in its source image (``detection`` with dlib's five points, or ``None``)."""
    return FaceView(image, detection)


def _map_points(points: NDArray[np.float64], matrix: NDArray[np.float64], shift: float) -> NDArray[np.float32]:
    out: NDArray[np.float32] = (points @ matrix[:, :2].T + matrix[:, 2] + shift).astype(np.float32)
    return out


def aligned_view(face: AlignedFace, border: int = CHIP_BORDER) -> FaceView:
    """A view of a face inside its aligned chip, the chip extended by ``border`` replicated pixels."""
    image: ImageBGR = np.ascontiguousarray(
        cv2.copyMakeBorder(face.image, border, border, border, border, cv2.BORDER_REPLICATE), dtype=np.uint8
    )
    det = face.detection
    if not det.landmark_names or face.template == "skip":
        return FaceView(image, None)
    matrix = np.asarray(face.transform, dtype=np.float64)
    points = _map_points(np.asarray(det.landmarks, dtype=np.float64).reshape(-1, 2), matrix, float(border))
    corners = _map_points(np.array([[det.box.x1, det.box.y1], [det.box.x2, det.box.y2],
                                    [det.box.x1, det.box.y2], [det.box.x2, det.box.y1]]), matrix, float(border))
    box = Box(float(corners[:, 0].min()), float(corners[:, 1].min()),
              float(corners[:, 0].max()), float(corners[:, 1].max()))
    mapped = FaceDetection(box=box, score=det.score, landmarks=points, landmark_names=det.landmark_names,
                           detector=det.detector)
    return FaceView(image, mapped)


__all__ = ["CHIP_BORDER", "FaceView", "aligned_view", "source_view"]
