"""How well BlazeFace boxes initialise dlib's 5-point predictor: measured against dlib HOG boxes.

``python -m facegate.evaluation.box_mapping ../shared/data/identities [--folds 5]`` (needs dlib, build
/test time only). The predictor was trained on rectangles of dlib's HOG detector, so the landmarks it
gives from the HOG rectangle of a photo are the reference. For every photo whose subject (largest
confirmed face) overlaps a HOG face, it reports the distance of the predictor's five points, in units of
the inter-ocular distance, between that reference and:

* ``box``: the manifest's box-only mapping of the BlazeFace box (what facegate ships);
* ``keypoints``: a linear least-squares mapping from the BlazeFace box and its six keypoints to the
  HOG rectangle, fitted on the other folds' people (identity-disjoint, scored on the held-out fold).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.evaluation.chains import subject
from facegate.evaluation.crossval import assign_folds
from facegate.evaluation.identification import photos_by_person
from facegate.evaluation.landmark_choice import HOG_MAX_SIDE
from facegate.images import load_image
from facegate.landmarks.shape_predictor import ShapePredictorLandmarker
from facegate.output import emit_table, emit_text
from facegate.types import FaceDetection, ImageBGR

logger = logging.getLogger(__name__)

Rect = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Sample:
    photo: str
    person: str
    image: ImageBGR
    detection: FaceDetection
    hog: Rect  # dlib coordinates (pixel centres), as the predictor takes it


def _features(det: FaceDetection) -> NDArray[np.float64]:
    """Six keypoints relative to the box centre in box widths, and a constant."""
    cx, cy = det.box.center
    k = np.asarray(det.landmarks, dtype=np.float64).reshape(-1, 2)[:6]
    return np.concatenate([((k - [cx, cy]) / det.box.width).ravel(), [1.0]])


def _target(det: FaceDetection, rect: Rect) -> NDArray[np.float64]:
    cx, cy = det.box.center
    w = det.box.width
    left, top, right, bottom = rect
    return np.array([((left + right) / 2 + 0.5 - cx) / w, ((top + bottom) / 2 + 0.5 - cy) / w, (right - left) / w])


def _rect(det: FaceDetection, y: NDArray[np.float64]) -> Rect:
    cx, cy = det.box.center
    w = det.box.width
    x, yy, half = cx + y[0] * w - 0.5, cy + y[1] * w - 0.5, y[2] * w / 2
    return x - half, yy - half, x + half, yy + half


def _hog_rect(detector: object, image: ImageBGR) -> Rect | None:
    rgb = np.ascontiguousarray(image[:, :, ::-1])
    h, w = rgb.shape[:2]
    factor = min(1.0, HOG_MAX_SIDE / max(h, w))
    small = cv2.resize(rgb, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA) \
        if factor < 1.0 else rgb
    rects = detector(small, 1)  # type: ignore[operator]
    if not rects:
        return None
    r = max(rects, key=lambda q: q.width() * q.height())
    return (round(r.left() / factor), round(r.top() / factor), round(r.right() / factor), round(r.bottom() / factor))


def collect(root: Path) -> list[Sample]:
    import dlib

    from facegate.engine import get_engine

    engine = get_engine("mediapipe")
    hog = dlib.get_frontal_face_detector()
    out = []
    for person, photos in photos_by_person(root).items():
        for path in photos:
            image = load_image(path)
            best = subject(engine.represent(image, enforce_detection=False), image)
            rect = _hog_rect(hog, image)
            if best is None or rect is None:
                continue
            y = _target(best.detection, rect)
            if abs(y[0]) > 0.3 or abs(y[1]) > 0.3 or not 0.6 < y[2] < 1.6:
                continue  # the two detectors found different faces
            out.append(Sample(str(path.relative_to(root)), person, image, best.detection, rect))
    return out


def landmark_errors(samples: Sequence[Sample], folds: int) -> dict[str, NDArray[np.float64]]:
    landmarker = ShapePredictorLandmarker()
    predictor = landmarker.predictor
    fold_of = assign_folds(sorted({s.person for s in samples}), folds)
    x = np.array([_features(s.detection) for s in samples])
    y = np.array([_target(s.detection, s.hog) for s in samples])
    errors: dict[str, list[float]] = {"box": [], "keypoints": []}
    for k in range(folds):
        train = np.array([fold_of[s.person] != k for s in samples])
        weights = np.linalg.solve(x[train].T @ x[train] + 1e-3 * np.eye(x.shape[1]), x[train].T @ y[train])
        for i, s in enumerate(samples):
            if train[i]:
                continue
            reference = predictor.predict(s.image, s.hog)
            iod = float(np.linalg.norm(reference[0:2].mean(axis=0) - reference[2:4].mean(axis=0)))
            rects = {"box": landmarker.rect_for(s.detection), "keypoints": _rect(s.detection, x[i] @ weights)}
            for name, rect in rects.items():
                pts = predictor.predict(s.image, rect)
                errors[name].append(float(np.linalg.norm(pts - reference, axis=1).mean() / iod))
    return {k: np.asarray(v) for k, v in errors.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facegate.evaluation.box_mapping", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("identities", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    samples = collect(args.identities)
    errors = landmark_errors(samples, args.folds)
    emit_text(f"{len(samples)} photos with a BlazeFace subject and a matching HOG face; landmark distance to the "
              "HOG-initialised predictor, in inter-ocular distances (held-out folds)")
    emit_table(["mapping", "mean", "median", "p90", "max"],
               [[k, f"{v.mean():.4f}", f"{np.median(v):.4f}", f"{np.percentile(v, 90):.4f}", f"{v.max():.4f}"]
                for k, v in errors.items()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
