"""1:1: :func:`verify`, two images or precomputed embeddings, the closest pair of faces decides."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.confidence import calibrated_confidence
from facegate.engine import FaceEngine, FaceResult
from facegate.errors import EmbeddingError, NoFaceError
from facegate.facial_area import FacialArea
from facegate.images import ImageInput, load_image
from facegate.library.options import (
    DEFAULT_DETECTOR,
    DEFAULT_MODEL,
    DistanceFunction,
    call_distance,
    check_deepface_options,
    engine_for,
    expanded_area,
    image_label,
    metric_or_function,
    threshold_for,
)
from facegate.library.results import VerifyResult
from facegate.metrics import distance as metric_distance
from facegate.types import Embedding


def _is_embedding(value: object) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and np.issubdtype(value.dtype, np.number)
    if isinstance(value, (list, tuple)) and value:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    return False


def _as_embedding(value: Any, engine: FaceEngine, label: str) -> Embedding:
    vector = np.asarray(value, dtype=np.float32).reshape(-1)
    if vector.shape[0] != engine.embedder.dim:
        raise EmbeddingError(
            f"{label}: embedding has {vector.shape[0]} dimensions but model {engine.model_name} "
            f"produces {engine.embedder.dim}"
        )
    if not np.all(np.isfinite(vector)):
        raise EmbeddingError(f"{label}: embedding contains NaN or infinity")
    return Embedding(vector, engine.model_id)


def _faces(engine: FaceEngine, img: ImageInput, *, label: str, enforce_detection: bool,
           max_faces: int | None = None) -> tuple[NDArray[np.uint8], list[FaceResult]]:
    image = load_image(img, name=label)
    return image, engine.represent(image, enforce_detection=enforce_detection, max_faces=max_faces, source=label)


def verify(
    img1_path: ImageInput | Sequence[float],
    img2_path: ImageInput | Sequence[float],
    model_name: str = DEFAULT_MODEL,
    detector_backend: str = DEFAULT_DETECTOR,
    distance_metric: str | DistanceFunction = "euclidean",
    enforce_detection: bool = True,
    align: bool = True,
    expand_percentage: int = 0,
    normalization: str = "base",
    silent: bool = False,
    threshold: float | None = None,
    anti_spoofing: bool = False,
    num_threads: int = 1,
) -> VerifyResult:
    """Are two images (or precomputed embeddings) the same person?

    Positional parameters follow DeepFace's order. With several faces in an image, every pair is
    compared and the closest pair decides, as DeepFace does. ``confidence`` is 51..100 when verified and
    0..49 when not. ``distance_metric`` may be a function ``f(a, b) -> float`` of two embeddings
    (smaller = more alike), which needs an explicit ``threshold``; see :func:`represent` for
    ``expand_percentage``, ``normalization``, ``anti_spoofing`` and ``silent``.
    """
    del silent
    start = time.perf_counter()
    check_deepface_options(normalization, anti_spoofing, expand_percentage)
    metric, function, metric_name = metric_or_function(distance_metric, threshold)
    engine = engine_for(model_name, detector_backend, num_threads)
    thr = float(threshold) if threshold is not None else threshold_for(engine, metric or "euclidean")

    def side(img: Any, name: str) -> list[tuple[Embedding, FacialArea | None]]:
        if _is_embedding(img):
            return [(_as_embedding(img, engine, name), None)]
        image, results = _faces(engine, img, label=image_label(img, name), enforce_detection=enforce_detection)
        if not results:  # enforce_detection=False: the whole image, decoded once
            results = engine.represent(image, skip_detection=True, source=name)
        return [(r.embedding, expanded_area(r.detection, image.shape, expand_percentage))
                for r in results if r.embedding is not None]

    left = side(img1_path, "img1")
    right = side(img2_path, "img2")
    best: tuple[float, FacialArea | None, FacialArea | None] | None = None
    for e1, a1 in left:
        for e2, a2 in right:
            if function is not None:
                d = call_distance(function, e1.vector, e2.vector)
            else:
                assert metric is not None
                d = metric_distance(e1.vector, e2.vector, metric)
            if best is None or d < best[0]:
                best = (d, a1, a2)
    if best is None:  # pragma: no cover - side() never returns empty
        raise NoFaceError("no face to compare")
    dist, area1, area2 = best
    verified = dist <= thr
    slope = engine.embedder.confidence_slopes.get(metric) if metric is not None else None
    return VerifyResult(
        verified=bool(verified),
        distance=float(dist),
        threshold=thr,
        confidence=round(calibrated_confidence(float(dist), thr, slope), 2),
        model=engine.model_name,
        detector_backend=engine.detector_backend,
        distance_metric=metric_name,
        facial_areas={"img1": area1, "img2": area2},
        time=round(time.perf_counter() - start, 3),
    )


__all__ = ["verify"]
