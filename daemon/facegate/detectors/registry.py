"""Detector names -> factories, and :func:`build_detector`.

Names equal the YAML ``detector.backend`` values and the API's ``detector_backend`` strings.
Implementations are imported only when their name is built.

"opencv", "mtcnn" and "dlib" ship with facegate; "ssd", "retinaface" and "yunet" ship without
weights (see :data:`facegate.model_import.NOT_SHIPPED`): building one before
``facegate models import FILE --as NAME`` raises :class:`~facegate.errors.ModelNotInstalledError`
explaining that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from facegate.detectors.base import FaceDetector
from facegate.registry import Registry

#: ``factory(*, num_threads: int = 1, **options) -> FaceDetector``
DetectorFactory = Callable[..., FaceDetector]

DEFAULT_DETECTOR = "mediapipe"

DETECTORS: Registry[DetectorFactory] = Registry("detector")
DETECTORS.register_lazy("mediapipe", "facegate.detectors.blazeface:build_short_range")
DETECTORS.register_lazy("mediapipe_full", "facegate.detectors.blazeface:build_full_range")
DETECTORS.register_lazy("skip", "facegate.detectors.skip:build")
DETECTORS.register_lazy("opencv", "facegate.detectors.haar:build")
DETECTORS.register_lazy("mtcnn", "facegate.detectors.mtcnn:build")
DETECTORS.register_lazy("dlib", "facegate.detectors.mmod:build")
DETECTORS.register_lazy("ssd", "facegate.detectors.onnx_dnn:build_ssd")
DETECTORS.register_lazy("retinaface", "facegate.detectors.onnx_dnn:build_retinaface")
DETECTORS.register_lazy("yunet", "facegate.detectors.onnx_dnn:build_yunet")


def build_detector(name: str = DEFAULT_DETECTOR, *, num_threads: int = 1, **options: Any) -> FaceDetector:
    """A ready detector for ``name`` (case-insensitive).

    ``options`` are backend options, validated by the backend (BlazeFace: ``variant``,
    ``score_threshold``, ``max_faces``, ``min_face_size``). Raises :class:`~facegate.errors.ConfigError`
    for an unknown name or bad options and :class:`~facegate.errors.ModelNotInstalledError` when the
    backend's model is not installed.
    """
    factory = DETECTORS.get(name)
    return factory(num_threads=num_threads, **options)


__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "DetectorFactory", "build_detector"]
