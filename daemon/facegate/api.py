"""The public, DeepFace-style API: ``extract_faces``, ``represent``, ``verify``, ``find``, ``analyze``
(the last implemented in :mod:`facegate.analysis.api`).

Names, parameters and result fields follow DeepFace so code written for it ports by changing the import;
results are typed frozen dataclasses with ``to_dict()`` returning DeepFace's dictionaries, and they can be
read like those dictionaries (``result["verified"]``, ``.get``, ``.keys()``: :class:`~facegate.results.DeepFaceDict`).
Defaults differ where facegate ships different models: ``model_name="Dlib"``, ``detector_backend="mediapipe"``
and ``distance_metric="euclidean"`` (dlib's metric); the README's DeepFace table lists every parameter.

Images may be a path (``str`` / ``pathlib.Path``), a BGR numpy array, encoded bytes or a base64 string.
"""

from __future__ import annotations

from typing import Any

from facegate.analysis.api import AnalysisResult, analyze
from facegate.errors import ConfigError
from facegate.facial_area import FacialArea
from facegate.library.faces import extract_faces, represent
from facegate.library.find import default_gallery_path, enroll, find, open_gallery
from facegate.library.options import DEFAULT_DETECTOR, DEFAULT_MODEL, DistanceFunction, expanded_area, threshold_for
from facegate.library.results import (
    FIND_COLUMNS,
    ExtractedFace,
    FindMatch,
    FindResult,
    FindRow,
    Representation,
    VerifyResult,
)
from facegate.library.verify import verify


def build_model(model_name: str, task: str = "facial_recognition", num_threads: int = 1) -> Any:
    """DeepFace's ``build_model``: the loaded embedder (``task="facial_recognition"``) or detector
    (``task="face_detector"``) for a name; raises for names whose weights are not installed."""
    if task == "facial_recognition":
        from facegate.embedders.registry import build_embedder

        return build_embedder(model_name, num_threads=num_threads)
    if task == "face_detector":
        from facegate.detectors.registry import build_detector

        return build_detector(model_name, num_threads=num_threads)
    raise ConfigError(f"unknown task {task!r}; valid: facial_recognition, face_detector")


__all__ = [
    "DEFAULT_DETECTOR",
    "DEFAULT_MODEL",
    "FIND_COLUMNS",
    "AnalysisResult",
    "DistanceFunction",
    "ExtractedFace",
    "FacialArea",
    "FindMatch",
    "FindResult",
    "FindRow",
    "Representation",
    "VerifyResult",
    "analyze",
    "build_model",
    "default_gallery_path",
    "enroll",
    "expanded_area",
    "extract_faces",
    "find",
    "open_gallery",
    "represent",
    "threshold_for",
    "verify",
]
