"""A second detection pass on the image padded with a border, for faces cut by the frame edge.

Single-shot detectors with small inputs (BlazeFace sees 128 or 192 pixels) rarely fire on a face that
the picture cuts in half: the anchor that should see it is centred outside the image. Padding the image
with a replicated border of ``pad`` times its size puts those faces back inside the detector's field.
The two passes are merged with non-maximum suppression (the un-padded pass wins ties) and the boxes of
the padded pass are clipped to the picture. Measured on deepface's selfie photo: 4 faces without the
pass, 5 with it (the cut selfie-taker); costs one more detector run per image.

The second pass runs only when it can add something: when the plain pass found nothing (BlazeFace's
short-range model also finds a face too large for it on the shrunken padded picture: fnp_multiface)
or when a plain face touches the border (a group running off the edge: the selfie). Over the 40 shared
detection images this finds the same faces as always running it; over 54 identity photos of 0.4-3.4 MP
it skips the pass on all but a few and leaves every embedding unchanged.
"""

from __future__ import annotations

import cv2
import numpy as np

from facegate.detectors.base import FaceDetector
from facegate.detectors.nms import iou_matrix
from facegate.types import Box, FaceDetection, ImageBGR

#: Overlap above which a face of the padded pass is the same as one of the plain pass.
SAME_FACE_IOU = 0.3
#: A plain face closer to the edge than this fraction of the picture's side "touches the border".
BORDER_MARGIN = 0.02


def touches_border(detections: list[FaceDetection], width: int, height: int, margin: float = BORDER_MARGIN) -> bool:
    """True when any box comes within ``margin`` (fraction of the side) of the picture's edge."""
    mx, my = margin * width, margin * height
    return any(d.box.x1 <= mx or d.box.y1 <= my or d.box.x2 >= width - mx or d.box.y2 >= height - my
               for d in detections)


class EdgePaddedDetector(FaceDetector):
    """Wraps ``inner``: its faces plus those only found on the border-padded image.

    ``always=True`` runs the padded pass on every image (the behaviour before the skip; benchmarks).
    """

    def __init__(self, inner: FaceDetector, pad: float = 0.2, *, always: bool = False) -> None:
        self.inner = inner
        self.pad = float(pad)
        self.always = always
        self.name = inner.name
        self.tells_orientation = inner.tells_orientation
        self.padded_passes = 0  # how often the second pass ran (benchmarks report it)

    def needs_padded_pass(self, plain: list[FaceDetection], shape: tuple[int, ...],
                          margin: float = BORDER_MARGIN) -> bool:
        """Whether :meth:`detect` runs the padded pass after the plain pass found ``plain``."""
        h, w = int(shape[0]), int(shape[1])
        if round(max(h, w) * self.pad) <= 0:
            return False
        return self.always or not plain or touches_border(plain, w, h, margin)

    def detect(self, image: ImageBGR) -> list[FaceDetection]:
        plain = self.inner.detect(image)
        if not self.needs_padded_pass(plain, image.shape):
            return plain
        h, w = image.shape[:2]
        p = round(max(h, w) * self.pad)
        self.padded_passes += 1
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


__all__ = ["BORDER_MARGIN", "EdgePaddedDetector", "touches_border"]
