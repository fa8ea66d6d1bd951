"""``analyze``: DeepFace's facial attribute analysis (emotion, age, gender) on facegate's models.

Result fields follow DeepFace (``region`` {x, y, w, h, left_eye, right_eye}, ``face_confidence``,
``age``, ``dominant_gender``, ``gender`` {Woman, Man} in percent, ``dominant_emotion``, ``emotion``
{angry, ...} in percent); results are typed frozen dataclasses whose ``to_dict()`` gives DeepFace's
dictionaries. ``race`` is recognised but raises: no redistributable race model exists offline.

Models: fer's mini-Xception for emotion, dlib's (Cydral) age and gender networks; each cuts its own
chip from dlib's five points, found by the same detector + landmark chain as ``represent``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.analysis.age_gender import GENDER_LABELS, AgeModel, GenderModel
from facegate.analysis.emotion import EMOTION_LABELS, EmotionModel
from facegate.analysis.views import FaceView, source_view
from facegate.errors import ConfigError, ModelNotInstalledError
from facegate.facial_area import FacialArea
from facegate.images import ImageInput, load_image
from facegate.results import DeepFaceDict

logger = logging.getLogger(__name__)

#: the actions facegate can compute, in DeepFace's result order
ACTIONS: tuple[str, ...] = ("emotion", "age", "gender")
#: DeepFace's default actions; facegate's default leaves out race (no model)
DEEPFACE_ACTIONS: tuple[str, ...] = ("emotion", "age", "gender", "race")
RACE_UNAVAILABLE = (
    "action 'race' is not available: no redistributable race-classification model can be installed offline "
    "(DeepFace downloads its race model at run time; facegate never downloads weights). "
    "Use actions from: emotion, age, gender"
)


def check_actions(actions: str | Iterable[str]) -> tuple[str, ...]:
    """Validated, de-duplicated actions in the caller's order.

    Raises :class:`ConfigError` for unknown names (listing the valid ones) and
    :class:`ModelNotInstalledError` for ``race``.
    """
    items = (actions,) if isinstance(actions, str) else tuple(actions)
    if not items:
        raise ConfigError(f"no action given; valid actions: {', '.join(ACTIONS)}")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"invalid action {item!r}; valid actions: {', '.join(ACTIONS)}")
        key = item.strip().casefold()
        if key == "race":
            raise ModelNotInstalledError(RACE_UNAVAILABLE)
        if key not in ACTIONS:
            raise ConfigError(f"invalid action {item!r}; valid actions: {', '.join(ACTIONS)}")
        if key not in out:
            out.append(key)
    return tuple(out)


# --------------------------------------------------------------------------- result types


#: DeepFace calls the facial area of ``analyze`` results ``region``; it is the same type everywhere
Region = FacialArea


@dataclass(frozen=True, slots=True)
class Scores:
    """Percentages (summing to 100) per label, in the model's label order."""

    labels: tuple[str, ...]
    percent: tuple[float, ...]

    @classmethod
    def from_probabilities(cls, labels: tuple[str, ...], probabilities: NDArray[np.floating[Any]]) -> Scores:
        p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, None)
        total = float(p.sum())
        percent = p * (100.0 / total) if total > 0 else np.full(len(labels), 100.0 / len(labels))
        return cls(labels, tuple(float(v) for v in percent))

    @property
    def dominant(self) -> str:
        return self.labels[int(np.argmax(self.percent))]

    def __getitem__(self, label: str) -> float:
        try:
            return self.percent[self.labels.index(label)]
        except ValueError:
            raise KeyError(label) from None

    def to_dict(self) -> dict[str, float]:
        return dict(zip(self.labels, self.percent, strict=True))


@dataclass(frozen=True, slots=True)
class AnalysisResult(DeepFaceDict):
    """One face. Fields of actions that were not asked for are ``None`` (and absent from ``to_dict``).

    ``age`` is DeepFace's integer apparent age; ``age_years`` keeps the model's expected value.
    """

    region: Region
    face_confidence: float
    age: int | None = None
    age_years: float | None = None
    gender: Scores | None = None
    emotion: Scores | None = None

    @property
    def dominant_gender(self) -> str | None:
        return self.gender.dominant if self.gender is not None else None

    @property
    def dominant_emotion(self) -> str | None:
        return self.emotion.dominant if self.emotion is not None else None

    def to_dict(self) -> dict[str, Any]:
        """DeepFace's dictionary for one face."""
        out: dict[str, Any] = {}
        if self.emotion is not None:
            out["emotion"] = self.emotion.to_dict()
            out["dominant_emotion"] = self.emotion.dominant
        out["region"] = self.region.to_dict()
        out["face_confidence"] = self.face_confidence
        if self.age is not None:
            out["age"] = self.age
        if self.gender is not None:
            out["gender"] = self.gender.to_dict()
            out["dominant_gender"] = self.gender.dominant
        return out


# --------------------------------------------------------------------------- models


@dataclass(frozen=True, slots=True)
class AttributeModels:
    """The loaded heads of some actions (``None`` for actions not asked for)."""

    actions: tuple[str, ...]
    emotion: EmotionModel | None = None
    age: AgeModel | None = None
    gender: GenderModel | None = None

    def predict(self, views: Sequence[FaceView], regions: Sequence[Region],
                confidences: Sequence[float]) -> list[AnalysisResult]:
        """One result per view, in order."""
        emotion = self.emotion.probabilities(views) if self.emotion is not None else None
        years = self.age.years(views) if self.age is not None else None
        gender = self.gender.probabilities(views) if self.gender is not None else None
        out: list[AnalysisResult] = []
        for i, region in enumerate(regions):
            age = float(years[i]) if years is not None else None
            out.append(AnalysisResult(
                region=region,
                face_confidence=float(confidences[i]),
                # DeepFace reports int(apparent_age); round half up like dlib's own package
                age=int(np.floor(age + 0.5)) if age is not None else None,
                age_years=age,
                gender=Scores.from_probabilities(GENDER_LABELS, gender[i]) if gender is not None else None,
                emotion=Scores.from_probabilities(EMOTION_LABELS, emotion[i]) if emotion is not None else None,
            ))
        return out


_LOADED: dict[tuple[str, int], EmotionModel | AgeModel | GenderModel] = {}
_LOADED_LOCK = threading.Lock()


def _load(action: str, num_threads: int) -> EmotionModel | AgeModel | GenderModel:
    if action == "emotion":
        return EmotionModel(num_threads=num_threads)
    if action == "age":
        return AgeModel(num_threads=num_threads)
    return GenderModel(num_threads=num_threads)


def get_models(actions: str | Sequence[str], num_threads: int = 1) -> AttributeModels:
    """The heads of ``actions``, each loaded once per process and thread count."""
    wanted = check_actions(actions)
    with _LOADED_LOCK:
        for action in wanted:
            if (action, num_threads) not in _LOADED:
                _LOADED[(action, num_threads)] = _load(action, num_threads)
        emotion = _LOADED.get(("emotion", num_threads)) if "emotion" in wanted else None
        age = _LOADED.get(("age", num_threads)) if "age" in wanted else None
        gender = _LOADED.get(("gender", num_threads)) if "gender" in wanted else None
    return AttributeModels(
        actions=wanted,
        emotion=emotion if isinstance(emotion, EmotionModel) else None,
        age=age if isinstance(age, AgeModel) else None,
        gender=gender if isinstance(gender, GenderModel) else None,
    )


# --------------------------------------------------------------------------- API

_IGNORED_WARNED: set[str] = set()


def _warn_once(option: str, message: str) -> None:
    if option not in _IGNORED_WARNED:
        _IGNORED_WARNED.add(option)
        logger.info("%s", message)


def analyze(
    img_path: ImageInput | Sequence[ImageInput],
    actions: str | Sequence[str] = ACTIONS,
    enforce_detection: bool = True,
    detector_backend: str = "mediapipe",
    align: bool = True,
    expand_percentage: int = 0,
    silent: bool = False,
    anti_spoofing: bool = False,
    num_threads: int = 1,
) -> list[AnalysisResult] | list[list[AnalysisResult]]:
    """Emotion, age and gender of every face in an image, largest face first.

    A list of images (or a 4-D array) gives a list of lists, one per image. Without a face,
    ``enforce_detection=True`` raises :class:`~facegate.errors.NoFaceError`; ``False`` analyses the
    whole image with ``face_confidence`` 0. ``align=False`` and ``expand_percentage`` are accepted for
    DeepFace compatibility: the models are only accurate on their own aligned chips, so facegate
    always aligns. ``anti_spoofing=True`` raises like :func:`facegate.analysis.antispoof.static_antispoof`:
    a single image cannot be checked for liveness offline (the daemon checks tracks over time).
    """
    wanted = check_actions(actions)
    if anti_spoofing:
        from facegate.analysis.antispoof import static_antispoof_unavailable

        raise static_antispoof_unavailable()
    if not align:
        _warn_once("align", "analyze(align=False) ignored: attribute models need their aligned chips")
    if expand_percentage:
        _warn_once("expand", "analyze(expand_percentage=...) ignored: chips come from the models' templates")
    del silent  # DeepFace's progress bar; facegate logs instead
    if isinstance(img_path, (list, tuple)) or (isinstance(img_path, np.ndarray) and img_path.ndim == 4):
        return [_analyze_one(item, wanted, enforce_detection, detector_backend, num_threads, f"image[{i}]")
                for i, item in enumerate(img_path)]
    label = str(img_path) if isinstance(img_path, (str, Path)) and len(str(img_path)) < 512 else "image"
    return _analyze_one(img_path, wanted, enforce_detection, detector_backend, num_threads, label)  # type: ignore[arg-type]


def analyze_image(
    img: ImageInput,
    actions: str | Sequence[str] = ACTIONS,
    enforce_detection: bool = True,
    detector_backend: str = "mediapipe",
    num_threads: int = 1,
) -> list[AnalysisResult]:
    """:func:`analyze` for exactly one image (typed: always a flat list)."""
    label = str(img) if isinstance(img, (str, Path)) and len(str(img)) < 512 else "image"
    return _analyze_one(img, check_actions(actions), enforce_detection, detector_backend, num_threads, label)


def _analyze_one(img: ImageInput, actions: tuple[str, ...], enforce_detection: bool, detector_backend: str,
                 num_threads: int, label: str) -> list[AnalysisResult]:
    from facegate.engine import get_engine

    image = load_image(img, name=label)
    engine = get_engine(detector_backend, num_threads=num_threads)
    results = engine.faces(image, enforce_detection=enforce_detection, source=label)
    low_confidence = False
    if not results:
        results = [engine.whole_image_face(image)]
        low_confidence = True
    views: list[FaceView] = []
    regions: list[Region] = []
    confidences: list[float] = []
    for r in results:
        whole = r.aligned.template == "skip"
        views.append(source_view(image, None if whole else r.aligned.detection))
        regions.append(Region.from_detection(r.detection))
        confidences.append(0.0 if low_confidence else round(float(r.detection.score), 4))
    return get_models(actions, num_threads).predict(views, regions, confidences)


__all__ = [
    "ACTIONS",
    "DEEPFACE_ACTIONS",
    "AnalysisResult",
    "AttributeModels",
    "Region",
    "Scores",
    "analyze",
    "analyze_image",
    "check_actions",
    "get_models",
]
