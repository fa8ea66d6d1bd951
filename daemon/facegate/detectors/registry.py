"""Detector names -> factories, and :func:`build_detector`.

Names equal the YAML ``detector.backend`` values and the API's ``detector_backend`` strings.
Implementations are imported only when their name is built.

Placeholders: "opencv", "mtcnn" and "dlib" are planned backends; "ssd", "retinaface" and "yunet" have
no redistributable weights and will be user-importable (``facegate models import``). Until their
module exists, building one raises :class:`~facegate.errors.ModelNotInstalledError` saying so; a
backend's implementation replaces its placeholder line with a ``register_lazy`` call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from facegate.detectors.base import FaceDetector
from facegate.errors import ModelNotInstalledError
from facegate.registry import Registry

#: ``factory(*, num_threads: int = 1, **options) -> FaceDetector``
DetectorFactory = Callable[..., FaceDetector]

DEFAULT_DETECTOR = "mediapipe"


class _Unavailable:
    """Factory of a known but not yet available backend: raises with the reason and what to do."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def __call__(self, *, num_threads: int = 1, **options: Any) -> FaceDetector:
        raise ModelNotInstalledError(f"detector {self.name!r} is not available yet: {self.reason}")


_PLANNED = "not implemented in this version of facegate; use 'mediapipe' or 'mediapipe_full'"
_IMPORT_ONLY = (
    "its weights cannot be shipped with facegate; once supported, import them with `facegate models import`. "
    "Meanwhile use 'mediapipe' or 'mediapipe_full'"
)

DETECTORS: Registry[DetectorFactory] = Registry("detector")
DETECTORS.register_lazy("mediapipe", "facegate.detectors.blazeface:build_short_range")
DETECTORS.register_lazy("mediapipe_full", "facegate.detectors.blazeface:build_full_range")
DETECTORS.register_lazy("skip", "facegate.detectors.skip:build")
DETECTORS.register("opencv", _Unavailable("opencv", _PLANNED))
DETECTORS.register("mtcnn", _Unavailable("mtcnn", _PLANNED))
DETECTORS.register("dlib", _Unavailable("dlib", _PLANNED))
DETECTORS.register("ssd", _Unavailable("ssd", _IMPORT_ONLY))
DETECTORS.register("retinaface", _Unavailable("retinaface", _IMPORT_ONLY))
DETECTORS.register("yunet", _Unavailable("yunet", _IMPORT_ONLY))


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
