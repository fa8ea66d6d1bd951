"""Which landmark provider feeds the Dlib embedder best: measured verification accuracy.

``python -m facegate.evaluation.landmark_choice /path/to/shared/data`` prints, for each chain, the
accuracy on the peer-asserted pairs (``source`` not starting with ``derived:``) and on all pairs, at
euclidean 0.6 and at the best threshold of that subset (an oracle figure: it is fitted on the pairs
it scores), plus the mean landmark time per face:

* ``shape_predictor``: BlazeFace short-range (largest face) + numpy dlib 5-point predictor + dlib chip
  + Dlib embedder (default variant: full int8 TFLite);
* ``facemesh``: the same with FaceMesh points;
* ``dlib-native`` (reference, needs dlib): dlib HOG (upsample 1) + dlib predictor + ``dlib.get_face_chip``
  + dlib's own ResNet.

The choice: best peer accuracy at 0.6, ties broken by all-pairs accuracy, then all-pairs AUC.
An image where the detector finds no face (the dlib "johns" are already 150x150 chips) is embedded as
the whole image resized to the chip, as :mod:`facegate.evaluation.pairs` does.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.align import Aligner
from facegate.embedders.base import Embedder
from facegate.evaluation.metrics import accuracy_at, best_threshold, roc
from facegate.evaluation.pairs import Pair, read_pairs
from facegate.images import load_image
from facegate.landmarks.base import Landmarker
from facegate.output import emit_table, emit_text
from facegate.types import FaceDetection, ImageBGR

logger = logging.getLogger(__name__)

THRESHOLD = 0.6
#: HOG runs on a copy at most this large (then upsampled once, as face_recognition does)
HOG_MAX_SIDE = 1000


@dataclass
class ChainResult:
    """Embeddings of one chain, keyed by the image's path relative to the data folder."""

    name: str
    vectors: dict[str, NDArray[np.float32]] = field(default_factory=dict)
    undetected: int = 0
    landmark_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Row:
    chain: str
    subset: str
    pairs: int
    accuracy: float
    best_threshold: float
    best_accuracy: float
    auc: float


def _whole_image_chip(image: ImageBGR, size: int) -> ImageBGR:
    return np.asarray(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA), dtype=np.uint8)


def run_facegate_chains(root: Path, images: Sequence[str], providers: Sequence[str], *, num_threads: int = 1,
                        detector_name: str = "mediapipe") -> list[ChainResult]:
    """Detect once per image, then landmarks + chip + embedding per provider."""
    from facegate.detectors.registry import build_detector
    from facegate.embedders.registry import build_embedder
    from facegate.landmarks.registry import build_landmarker

    detector = build_detector(detector_name, num_threads=num_threads)
    embedder: Embedder = build_embedder("Dlib", num_threads=num_threads)
    landmarkers: dict[str, Landmarker] = {p: build_landmarker(p, num_threads=num_threads) for p in providers}
    aligners = {p: Aligner(embedder.alignment, lm) for p, lm in landmarkers.items()}
    results = {p: ChainResult(p) for p in providers}
    size = embedder.alignment.size
    for rel in images:
        image = load_image(root / rel)
        found = detector.detect(image)
        best: FaceDetection | None = max(found, key=lambda d: d.box.area) if found else None
        for provider, aligner in aligners.items():
            result = results[provider]
            if best is None:
                result.undetected += 1
                chip = _whole_image_chip(image, size)
            else:
                t0 = time.perf_counter()
                enriched = landmarkers[provider].landmarks(image, best)
                result.landmark_ms.append((time.perf_counter() - t0) * 1000.0)
                chip = aligner.align(image, enriched).image
            result.vectors[rel] = embedder.embed([chip])[0]
    return [results[p] for p in providers]


def dlib_native_embedder(landmark_ms: list[float] | None = None) -> Callable[[ImageBGR, str], NDArray[np.float32]]:
    """``embed(image, label)`` by the reference chain, entirely in dlib (build/test-time dependency).

    A photo without a HOG face is embedded whole; ``landmark_ms`` collects the predictor's times.
    """
    import dlib
    import face_recognition_models

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    resnet = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())

    def embed(image: ImageBGR, label: str) -> NDArray[np.float32]:
        del label
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        h, w = rgb.shape[:2]
        factor = min(1.0, HOG_MAX_SIDE / max(h, w))
        small = cv2.resize(rgb, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA) \
            if factor < 1.0 else rgb
        rects = detector(small, 1)
        if rects:
            r = max(rects, key=lambda q: q.width() * q.height())
            rect = dlib.rectangle(round(r.left() / factor), round(r.top() / factor),
                                  round(r.right() / factor), round(r.bottom() / factor))
            t0 = time.perf_counter()
            shape = predictor(rgb, rect)
            if landmark_ms is not None:
                landmark_ms.append((time.perf_counter() - t0) * 1000.0)
            chip = dlib.get_face_chip(rgb, shape, 150, 0.25)
        else:
            chip = np.ascontiguousarray(_whole_image_chip(rgb, 150))
        return np.asarray(resnet.compute_face_descriptor(chip), dtype=np.float32)

    return embed


def run_dlib_native(root: Path, images: Sequence[str]) -> ChainResult:
    """The reference chain over ``images`` (paths relative to ``root``)."""
    result = ChainResult("dlib-native")
    embed = dlib_native_embedder(result.landmark_ms)
    for rel in images:
        before = len(result.landmark_ms)
        result.vectors[rel] = embed(load_image(root / rel), rel)
        result.undetected += len(result.landmark_ms) == before
    return result


def score(result: ChainResult, pairs: Sequence[Pair]) -> list[Row]:
    rows = []
    for subset, chosen in (("peer", [p for p in pairs if p.peer]), ("all", list(pairs))):
        d = np.array([float(np.linalg.norm(result.vectors[p.img_a] - result.vectors[p.img_b])) for p in chosen])
        same = np.array([p.same for p in chosen], dtype=bool)
        t, acc = best_threshold(d, same)
        rows.append(Row(result.name, subset, len(chosen), accuracy_at(d, same, THRESHOLD), t, acc, roc(d, same).auc))
    return rows


def evaluate(data: Path, *, providers: Sequence[str] = ("shape_predictor", "facemesh"), native: bool = True,
             num_threads: int = 1) -> tuple[list[Row], list[ChainResult]]:
    pairs = read_pairs(data / "pairs.csv")
    images = sorted({p.img_a for p in pairs} | {p.img_b for p in pairs})
    results = run_facegate_chains(data, images, providers, num_threads=num_threads)
    if native:
        results.append(run_dlib_native(data, images))
    rows = [row for r in results for row in score(r, pairs)]
    return rows, results


def main(argv: Sequence[str] | None = None, *, emit: Callable[[str], None] = emit_text) -> int:
    parser = argparse.ArgumentParser(prog="python -m facegate.evaluation.landmark_choice", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="folder with pairs.csv and the images it names")
    parser.add_argument("--providers", default="shape_predictor,facemesh", help="comma-separated landmarkers")
    parser.add_argument("--no-native", action="store_true", help="skip the dlib-native reference chain")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    providers = tuple(p for p in args.providers.split(",") if p)
    rows, results = evaluate(args.data, providers=providers, native=not args.no_native, num_threads=args.threads)
    emit_table(["chain", "pairs", "n", f"acc@{THRESHOLD}", "best thr", "best acc", "AUC"],
               [[r.chain, r.subset, r.pairs, f"{r.accuracy:.4f}", f"{r.best_threshold:.3f}",
                 f"{r.best_accuracy:.4f}", f"{r.auc:.5f}"] for r in rows])
    native = next((r for r in results if r.name == "dlib-native"), None)
    emit_table(["chain", "images", "undetected", "landmarks ms/face (mean)", "median", "dist to dlib-native (median)"],
               [[r.name, len(r.vectors), r.undetected,
                 f"{np.mean(r.landmark_ms):.2f}" if r.landmark_ms else "-",
                 f"{np.median(r.landmark_ms):.2f}" if r.landmark_ms else "-",
                 f"{_distance_to(r, native):.4f}" if native is not None else "-"] for r in results])
    ranked = {(r.chain, r.subset): r for r in rows}
    if providers:
        # peer accuracy at 0.6 decides; all-pairs accuracy, then all-pairs AUC break ties
        choice = max(providers, key=lambda k: (ranked[(k, "peer")].accuracy, ranked[(k, "all")].accuracy,
                                               ranked[(k, "all")].auc))
        emit(f"choice: {choice} (peer accuracy at {THRESHOLD}: {ranked[(choice, 'peer')].accuracy:.4f}, "
             f"all-pairs AUC {ranked[(choice, 'all')].auc:.5f})")
    return 0


def _distance_to(result: ChainResult, reference: ChainResult) -> float:
    """Median euclidean distance between a chain's and the reference chain's vector of each image."""
    shared = sorted(set(result.vectors) & set(reference.vectors))
    return float(np.median([np.linalg.norm(result.vectors[k] - reference.vectors[k]) for k in shared]))


if __name__ == "__main__":
    raise SystemExit(main())
