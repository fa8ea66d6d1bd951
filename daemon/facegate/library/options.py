"""What every library function shares: DeepFace's options checked one way (metric, normalization,
anti-spoofing, expand_percentage), the engine for a model/detector pair, default thresholds, the
``facial_area`` grown as DeepFace grows it, and the label an input is named by in errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.engine import FaceEngine, get_engine
from facegate.errors import ConfigError
from facegate.facial_area import FacialArea
from facegate.types import METRICS, Box, FaceDetection, Metric

#: DeepFace's ``distance_metric`` may also be a function of two vectors (smaller = more alike)
DistanceFunction = Callable[[Any, Any], float]

DEFAULT_MODEL = "Dlib"
DEFAULT_DETECTOR = "mediapipe"

def check_metric(distance_metric: str) -> Metric:
    for metric in METRICS:
        if metric == distance_metric:
            return metric
    raise ConfigError(f"unknown distance_metric {distance_metric!r}; valid: {', '.join(METRICS)} or a function")


def metric_or_function(distance_metric: str | DistanceFunction, threshold: float | None
                        ) -> tuple[Metric | None, DistanceFunction | None, str]:
    """A named metric, or DeepFace's callable one (which needs an explicit threshold)."""
    if callable(distance_metric):
        if threshold is None:
            name = getattr(distance_metric, "__name__", "the distance function")
            raise ConfigError(f"distance_metric={name} is a function: pass threshold=... (no calibrated default)")
        return None, distance_metric, str(getattr(distance_metric, "__name__", "custom"))
    metric = check_metric(distance_metric)
    return metric, None, metric


def call_distance(fn: DistanceFunction, a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    value = float(fn(a, b))
    if not np.isfinite(value):
        raise ConfigError(f"distance_metric function returned {value}")
    return value


#: DeepFace's input normalisations; facegate's models carry their own in their manifest
_NORMALIZATIONS = ("base", "raw", "Facenet", "Facenet2018", "VGGFace", "VGGFace2", "ArcFace")


def check_deepface_options(normalization: str, anti_spoofing: bool, expand_percentage: int) -> None:
    """DeepFace options every recognition function accepts, checked the same way everywhere."""
    if normalization != "base":
        if normalization in _NORMALIZATIONS:
            raise ConfigError(
                f"normalization={normalization!r} is DeepFace's preprocessing for its own {normalization} weights; "
                "facegate's models apply the normalisation written in their manifest, so only 'base' (that) "
                "is accepted"
            )
        raise ConfigError(f"unknown normalization {normalization!r}; DeepFace knows {', '.join(_NORMALIZATIONS)}")
    if anti_spoofing:
        from facegate.analysis.antispoof import static_antispoof_unavailable

        raise static_antispoof_unavailable()
    if not (isinstance(expand_percentage, int) and 0 <= expand_percentage <= 1000):
        raise ConfigError(f"expand_percentage must be an integer 0..1000, got {expand_percentage!r}")


def expanded_area(det: FaceDetection, image_shape: tuple[int, ...], expand_percentage: int) -> FacialArea:
    """``facial_area`` with the box grown by ``expand_percentage`` as DeepFace grows it (clipped to the
    image). The embedding does not change: the aligned chip is placed by landmarks, not by the box."""
    if expand_percentage <= 0:
        return FacialArea.from_detection(det)
    x, y, w, h = det.box.to_xywh()
    height, width = int(image_shape[0]), int(image_shape[1])
    ew, eh = w + int(w * expand_percentage / 100), h + int(h * expand_percentage / 100)
    x, y = max(0, x - int((ew - w) / 2)), max(0, y - int((eh - h) / 2))
    w, h = min(width - x, ew), min(height - y, eh)
    grown = FaceDetection(Box(float(x), float(y), float(x + w), float(y + h)), det.score, det.landmarks,
                          det.landmark_names, det.detector)
    return FacialArea.from_detection(grown)


def engine_for(model_name: str, detector_backend: str, num_threads: int = 1) -> FaceEngine:
    return get_engine(detector_backend, model_name, num_threads=num_threads)


def threshold_for(engine: FaceEngine, metric: Metric) -> float:
    thresholds = engine.embedder.thresholds
    if metric in thresholds:
        return float(thresholds[metric])
    raise ConfigError(
        f"model {engine.model_name} has no default threshold for {metric}; pass threshold=..."
    )


def image_label(img: Any, default: str) -> str:
    return str(img) if isinstance(img, (str, Path)) and len(str(img)) < 512 else default


__all__ = [
    "DEFAULT_DETECTOR",
    "DEFAULT_MODEL",
    "DistanceFunction",
    "call_distance",
    "check_deepface_options",
    "check_metric",
    "engine_for",
    "expanded_area",
    "image_label",
    "metric_or_function",
    "threshold_for",
]
