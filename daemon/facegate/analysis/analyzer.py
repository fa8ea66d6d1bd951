"""The daemon's :class:`~facegate.decision.Analyzer`: attributes of a track's best face, once per track.

The decision layer keeps the best-quality :class:`~facegate.types.AlignedFace` of each undecided
track and calls :meth:`AttributeAnalyzer.analyze` once, when it emits the track's event (config
``analysis: [emotion, age, gender]``). The heads cut their chips from the aligned chip (see
:mod:`facegate.analysis.views`); when the embedder's aligner did not add dlib's five points (an
embedder with another template), a landmark provider finds them on the chip.

Measured against cutting the chips from the full frame, on 67 internal photos scaled to a door
camera's 60 px inter-ocular distance: the dominant emotion agrees on 88%, age differs by 0.4 years
(median; 90th percentile 2.3), the gender probability by at most 0.06.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from facegate.analysis.api import ACTIONS, AttributeModels, Region, check_actions, get_models
from facegate.analysis.views import FaceView, aligned_view
from facegate.landmarks.base import DLIB5_NAMES, Landmarker, has_points
from facegate.types import AlignedFace, FaceAttributes

logger = logging.getLogger(__name__)


class AttributeAnalyzer:
    """Emotion / age / gender of one aligned face as :class:`FaceAttributes` (confidences 0..100)."""

    def __init__(self, actions: Sequence[str] = ACTIONS, *, num_threads: int = 1,
                 models: AttributeModels | None = None) -> None:
        self.actions = check_actions(actions)
        self.models = models if models is not None else get_models(self.actions, num_threads)
        self._num_threads = num_threads
        self._landmarker: Landmarker | None = None
        self._lock = threading.Lock()

    def _view(self, face: AlignedFace) -> FaceView:
        view = aligned_view(face)
        det = view.detection
        if det is not None and not has_points(det, DLIB5_NAMES):
            with self._lock:
                if self._landmarker is None:
                    from facegate.landmarks.registry import build_landmarker

                    self._landmarker = build_landmarker("auto", num_threads=self._num_threads)
                landmarker = self._landmarker
            view = FaceView(view.image, landmarker.landmarks(view.image, det))
        return view

    def analyze(self, face: AlignedFace) -> FaceAttributes:
        view = self._view(face)
        region = Region(0, 0, 0, 0, None, None)
        result = self.models.predict([view], [region], [float(face.detection.score)])[0]
        gender = result.gender
        emotion = result.emotion
        return FaceAttributes(
            age=result.age_years,
            gender=gender.dominant if gender is not None else None,
            gender_confidence=gender[gender.dominant] if gender is not None else None,
            emotion=emotion.dominant if emotion is not None else None,
            emotion_confidence=emotion[emotion.dominant] if emotion is not None else None,
        )


def build_analyzer(actions: Sequence[str], *, num_threads: int = 1) -> AttributeAnalyzer | None:
    """The analyzer for config ``analysis.actions`` (``None`` when no action is configured)."""
    if not actions:
        return None
    return AttributeAnalyzer(actions, num_threads=num_threads)


__all__ = ["AttributeAnalyzer", "build_analyzer"]
