"""How well BlazeFace boxes initialise dlib's 5-point predictor: measured against dlib HOG boxes.

``python -m facegate.evaluation.box_mapping ../shared/data/identities [--folds 5]`` (needs dlib, build
/test time only). The predictor was trained on rectangles of dlib's HOG detector, so the landmarks it
gives from the HOG rectangle of a photo are the reference. For every photo whose subject (largest
confirmed face) overlaps a HOG face, it reports the distance of the predictor's five points, in units of
the inter-ocular distance, between that reference and:

* ``box``: the manifest's box-only mapping of the BlazeFace box (what facegate ships);
* ``keypoints``: a linear least-squares mapping from the BlazeFace box and its six keypoints to the
  HOG rectangle, fitted on the other folds' people (identity-disjoint, scored on the held-out fold);
* ``iterate``: the predictor run a second time from the rectangle its first points imply (the median
  HOG rectangle relative to the predictor's own points, fitted on the other folds' people).

With ``--pairs`` it also embeds every photo with each mapping (refitted per fold: fold ``k``'s photos and
the training pairs its threshold is fitted on all use the mapping fitted without fold ``k``) and scores
pair verification at the secure point (:func:`facegate.evaluation.crossval.secure_point`) on the
held-out people, so a mapping is judged by what it does to decisions, not only to landmarks.
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

from facegate.errors import ConfigError
from facegate.evaluation.chains import subject
from facegate.evaluation.crossval import (
    TARGET_FAR,
    PairScore,
    _split_pairs,
    assign_folds,
    distance_matrix,
    score_pairs,
    secure_point,
)
from facegate.evaluation.identification import photos_by_person
from facegate.evaluation.landmark_choice import HOG_MAX_SIDE
from facegate.images import load_image
from facegate.landmarks.base import DLIB5_NAMES, with_points
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


@dataclass(frozen=True, slots=True)
class Photo:
    photo: str
    person: str
    image: ImageBGR
    detection: FaceDetection | None  # the BlazeFace subject; None = embedded whole, as the chains do
    hog: Rect | None  # only when HOG found the same face


def collect_photos(root: Path) -> list[Photo]:
    import dlib

    from facegate.engine import get_engine

    engine = get_engine("mediapipe")
    hog = dlib.get_frontal_face_detector()
    out = []
    for person, photos in photos_by_person(root).items():
        for path in photos:
            image = load_image(path)
            best = subject(engine.represent(image, enforce_detection=False), image)
            rect = _hog_rect(hog, image) if best is not None else None
            if best is not None and rect is not None:
                y = _target(best.detection, rect)
                if abs(y[0]) > 0.3 or abs(y[1]) > 0.3 or not 0.6 < y[2] < 1.6:
                    rect = None  # the two detectors found different faces
            out.append(Photo(str(path.relative_to(root)), person, image,
                             best.detection if best is not None else None, rect))
    return out


def collect(root: Path) -> list[Sample]:
    """The photos whose BlazeFace subject and HOG face are the same face."""
    return [Sample(p.photo, p.person, p.image, p.detection, p.hog) for p in collect_photos(root)
            if p.detection is not None and p.hog is not None]


def _lm_frame(points: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
    """Centre of the five points and the inter-ocular distance (points 0-1 and 2-3 are the eyes' corners)."""
    iod = float(np.linalg.norm(points[0:2].mean(axis=0) - points[2:4].mean(axis=0)))
    return points.mean(axis=0), max(iod, 1e-6)


@dataclass(frozen=True, slots=True)
class FoldMappings:
    """The mappings fitted on one fold's training people."""

    weights: NDArray[np.float64]  # keypoint features -> HOG rectangle (see :func:`_target`)
    from_points: NDArray[np.float64]  # HOG rectangle centre offset and span in inter-ocular distances

    def rects(self, landmarker: ShapePredictorLandmarker, image: ImageBGR, det: FaceDetection) -> dict[str, Rect]:
        box = landmarker.rect_for(det)
        first = landmarker.predictor.predict(image, box)
        centre, iod = _lm_frame(first)
        x, y = centre + self.from_points[:2] * iod
        half = self.from_points[2] * iod / 2
        return {"box": box, "keypoints": _rect(det, _features(det) @ self.weights),
                "iterate": (x - half, y - half, x + half, y + half)}


def fit_mappings(samples: Sequence[Sample], predictor: object) -> FoldMappings:
    x = np.array([_features(s.detection) for s in samples])
    y = np.array([_target(s.detection, s.hog) for s in samples])
    weights = np.linalg.solve(x.T @ x + 1e-3 * np.eye(x.shape[1]), x.T @ y)
    offsets = []
    for s in samples:
        centre, iod = _lm_frame(predictor.predict(s.image, s.hog))  # type: ignore[attr-defined]
        left, top, right, bottom = s.hog
        offsets.append([((left + right) / 2 - centre[0]) / iod, ((top + bottom) / 2 - centre[1]) / iod,
                        (right - left) / iod])
    return FoldMappings(weights, np.median(np.asarray(offsets), axis=0))


def landmark_errors(samples: Sequence[Sample], folds: int) -> dict[str, NDArray[np.float64]]:
    landmarker = ShapePredictorLandmarker()
    predictor = landmarker.predictor
    fold_of = assign_folds(sorted({s.person for s in samples}), folds)
    errors: dict[str, list[float]] = {"box": [], "keypoints": [], "iterate": []}
    for k in range(folds):
        mappings = fit_mappings([s for s in samples if fold_of[s.person] != k], predictor)
        for s in samples:
            if fold_of[s.person] != k:
                continue
            reference = predictor.predict(s.image, s.hog)
            iod = _lm_frame(reference)[1]
            for name, rect in mappings.rects(landmarker, s.image, s.detection).items():
                pts = predictor.predict(s.image, rect)
                errors[name].append(float(np.linalg.norm(pts - reference, axis=1).mean() / iod))
    return {k: np.asarray(v) for k, v in errors.items()}


def pair_scores(photos: Sequence[Photo], folds: int, target_far: float = TARGET_FAR) -> dict[str, list[PairScore]]:
    """Held-out pair verification per fold for each mapping, every mapping refitted per fold."""
    from facegate.engine import get_engine

    engine = get_engine("mediapipe")
    landmarker = engine.aligner.landmarker
    if not isinstance(landmarker, ShapePredictorLandmarker):
        raise ConfigError("the default chain's landmarker is not the 5-point shape predictor")
    names = np.asarray([p.person for p in photos])
    fold_map = assign_folds(sorted(set(names.tolist())), folds)
    fold_of = np.array([fold_map[p.person] for p in photos])
    whole = {i: engine.represent(p.image, skip_detection=True)[0] for i, p in enumerate(photos) if p.detection is None}
    out: dict[str, list[PairScore]] = {"box": [], "keypoints": [], "iterate": []}
    for k in range(folds):
        train = [Sample(p.photo, p.person, p.image, p.detection, p.hog) for p in photos
                 if fold_map[p.person] != k and p.detection is not None and p.hog is not None]
        mappings = fit_mappings(train, landmarker.predictor)
        vectors = {name: np.zeros((len(photos), engine.embedder.dim), dtype=np.float32) for name in out}
        for i, p in enumerate(photos):
            if p.detection is None:
                emb = whole[i].embedding
                assert emb is not None
                for v in vectors.values():
                    v[i] = emb.vector
                continue
            rects = mappings.rects(landmarker, p.image, p.detection)
            chips = [engine.align(p.image, with_points(p.detection, DLIB5_NAMES,
                                                       landmarker.predictor.predict(p.image, r) + 0.5)).image
                     for r in rects.values()]
            for name, vec in zip(rects, engine.embed_chips(chips), strict=True):
                vectors[name][i] = vec
        test = fold_of == k
        for name, v in vectors.items():
            dist = distance_matrix(v)
            g_train, i_train = _split_pairs(dist, names, ~test)
            g_test, i_test = _split_pairs(dist, names, test)
            out[name].append(score_pairs(g_test, i_test, secure_point(g_train, i_train, target_far)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facegate.evaluation.box_mapping", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("identities", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--pairs", action="store_true",
                        help="also embed with each mapping (refitted per fold) and score held-out pairs")
    args = parser.parse_args(argv)
    photos = collect_photos(args.identities)
    samples = [Sample(p.photo, p.person, p.image, p.detection, p.hog) for p in photos
               if p.detection is not None and p.hog is not None]
    errors = landmark_errors(samples, args.folds)
    emit_text(f"{len(samples)} photos with a BlazeFace subject and a matching HOG face; landmark distance to the "
              "HOG-initialised predictor, in inter-ocular distances (held-out folds)")
    emit_table(["mapping", "mean", "median", "p90", "max"],
               [[k, f"{v.mean():.4f}", f"{np.median(v):.4f}", f"{np.percentile(v, 90):.4f}", f"{v.max():.4f}"]
                for k, v in errors.items()])
    if args.pairs:
        scores = pair_scores(photos, args.folds)
        emit_text(f"pair verification of held-out people at the secure point, {len(photos)} photos, mappings "
                  "refitted per fold")
        emit_table(["mapping", "bal. acc. mean", "worst fold", "per fold", "TAR mean", "false accepts"],
                   [[k, f"{100 * np.mean([x.balanced_accuracy for x in v]):.2f}%",
                     f"{100 * min(x.balanced_accuracy for x in v):.2f}%",
                     " ".join(f"{100 * x.balanced_accuracy:.2f}" for x in v),
                     f"{100 * np.mean([x.tar for x in v]):.2f}%",
                     f"{sum(x.false_accepts for x in v)}/{sum(x.impostors for x in v)}"] for k, v in scores.items()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
