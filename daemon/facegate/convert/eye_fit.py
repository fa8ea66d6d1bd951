"""Fitting where a box-only detector's boxes put the eyes (build time, dlib as the reference).

For each frontal sample photo (and its mirror image, so the fit is left-right symmetric), the
detector's largest box is matched with the eye centres of dlib's 5-point landmarks (HOG detector,
``shape_predictor_5_face_landmarks``); the fractions of the box at which the eyes lie are averaged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from facegate.errors import ModelError
from facegate.types import Box

if TYPE_CHECKING:
    from facegate.convert.dlib_resnet import ChipMaker

logger = logging.getLogger(__name__)

#: public-domain frontal photos: the package samples and scikit-image's astronaut
FIT_SAMPLES: tuple[str, ...] = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "skimage:astronaut")

BoxFinder = Callable[[NDArray[np.uint8]], Sequence[Box]]


def dlib_eye_centres(bgr: NDArray[np.uint8]) -> tuple[Box, NDArray[np.float64]] | None:
    """dlib's HOG box and ``(2, 2)`` ``[right_eye, left_eye]`` centres (corner-origin pixels) of the
    largest face, or None."""
    maker = _maker()
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    try:
        shape = maker.largest_face(rgb)
    except ModelError:
        return None
    p = np.array([(shape.part(i).x, shape.part(i).y) for i in range(5)], dtype=np.float64) + 0.5
    r = shape.rect
    box = Box(float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1))
    return box, np.stack([(p[2] + p[3]) / 2.0, (p[0] + p[1]) / 2.0])


_MAKER: list[ChipMaker] = []


def _maker() -> ChipMaker:
    """One dlib detector + predictor per build process (loading them takes a second)."""
    from facegate.convert.dlib_resnet import ChipMaker

    if not _MAKER:
        _MAKER.append(ChipMaker())
    return _MAKER[0]


def fit_images() -> list[tuple[str, NDArray[np.uint8]]]:
    """``(label, BGR image)`` of every fit sample and its mirror image."""
    from facegate.convert.dlib_resnet import load_sample_rgb

    out: list[tuple[str, NDArray[np.uint8]]] = []
    for name in FIT_SAMPLES:
        bgr = np.ascontiguousarray(load_sample_rgb(name)[:, :, ::-1])
        out.append((name, bgr))
        out.append((f"{name}:mirror", np.ascontiguousarray(bgr[:, ::-1])))
    return out


def fit_eye_fractions(find_boxes: BoxFinder, *, min_iou: float = 0.3) -> tuple[dict[str, tuple[float, float]], int]:
    """Mean eye fractions ``{"right_eye": (fx, fy), "left_eye": (fx, fy)}`` of ``find_boxes``' boxes
    and the number of faces used. A box counts when it overlaps dlib's box by ``min_iou``."""
    rows: list[NDArray[np.float64]] = []
    for label, bgr in fit_images():
        ref = dlib_eye_centres(bgr)
        boxes = list(find_boxes(bgr))
        if ref is None or not boxes:
            logger.info("eye fit: no face pair in %s", label)
            continue
        dlib_box, eyes = ref
        box = max(boxes, key=lambda b: b.iou(dlib_box))
        if box.iou(dlib_box) < min_iou:
            logger.info("eye fit: %s box does not overlap dlib's", label)
            continue
        rows.append(np.stack([(eyes[:, 0] - box.x1) / box.width, (eyes[:, 1] - box.y1) / box.height], axis=1))
    if len(rows) < 4:
        raise ModelError(f"eye fit: only {len(rows)} usable faces")
    mean = np.mean(np.stack(rows), axis=0)
    # mirror pairs make the fit symmetric; average the halves explicitly against rounding drift
    half = abs(float(mean[1, 0]) - float(mean[0, 0])) / 2.0
    centre = (float(mean[0, 0]) + float(mean[1, 0])) / 2.0
    fy = (float(mean[0, 1]) + float(mean[1, 1])) / 2.0
    fractions = {
        "right_eye": (round(centre - half, 4), round(fy, 4)),
        "left_eye": (round(centre + half, 4), round(fy, 4)),
    }
    return fractions, len(rows)


__all__ = ["FIT_SAMPLES", "dlib_eye_centres", "fit_eye_fractions", "fit_images"]
