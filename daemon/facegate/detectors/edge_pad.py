"""A second detection pass on the image padded with a border, for faces cut by the frame edge.

Single-shot detectors with small inputs (BlazeFace sees 128 or 192 pixels) rarely fire on a face that
the picture cuts in half: the anchor that should see it is centred outside the image. Padding the image
with a replicated border of ``pad`` times its size puts those faces back inside the detector's field.
The two passes are merged with non-maximum suppression (the un-padded pass wins ties) and the boxes of
the padded pass are clipped to the picture. Measured on deepface's selfie photo: 4 faces without the
pass, 5 with it (the cut selfie-taker); costs one more detector run per image.
"""

from __future__ import annotations

import cv2
import numpy as np

from facegate.detectors.base import FaceDetector
from facegate.detectors.nms import iou_matrix
from facegate.types import Box, FaceDetection, ImageBGR

#: Overlap above which a face of the padded pass is the same as one of the plain pass.
SAME_FACE_IOU = 0.3


class EdgePaddedDetector(FaceDetector):
    """Wraps ``inner``: its faces plus those only found on the border-padded image."""

    def __init__(self, inner: FaceDetector, pad: float = 0.2) -> None:
        self.inner = inner
        self.pad = float(pad)
        self.name = inner.name

    def detect(self, image: ImageBGR) -> list[FaceDetection]:
        plain = self.inner.detect(image)
        h, w = image.shape[:2]
        p = round(max(h, w) * self.pad)
        if p <= 0:
            return plain
        padded = cv2.copyMakeBorder(image, p, p, p, p, cv2.BORDER_REPLICATE)
        extra: list[FaceDetection] = []
        for det in self.inner.detect(np.ascontiguousarray(padded)):
            b = det.box
            box = Box(max(0.0, b.x1 - p), max(0.0, b.y1 - p), min(float(w), b.x2 - p), min(float(h), b.y2 - p))
            if box.width < 0.25 * b.width or box.height < 0.25 * b.height:
                continue  # mostly outside the picture: a face of the replicated border
            extra.append(FaceDetection(box=box, score=det.score,
                                       landmarks=(det.landmarks - np.float32(p)).astype(np.float32),
                                       landmark_names=det.landmark_names, detector=det.detector))
        if not extra:
            return plain
        if plain:
            kept = np.array([[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in plain], dtype=np.float32)
            new = np.array([[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in extra], dtype=np.float32)
            overlap = iou_matrix(new, kept).max(axis=1)
            extra = [d for d, o in zip(extra, overlap, strict=True) if o < SAME_FACE_IOU]
        merged: list[FaceDetection] = []
        for det in extra:  # extra faces may overlap each other too
            if all(det.box.iou(m.box) < SAME_FACE_IOU for m in merged):
                merged.append(det)
        return sorted([*plain, *merged], key=lambda d: d.score, reverse=True)


__all__ = ["EdgePaddedDetector"]
