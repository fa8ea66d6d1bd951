"""Typed values passed between pipeline stages.

Conventions (fixed once for the whole code base):

* Images are ``NDArray[np.uint8]`` of shape ``(H, W, 3)`` in **BGR** order (OpenCV's), unless a
  docstring says otherwise.
* Pixel coordinates are floats in the *source image* with the origin at the top-left corner of the
  top-left pixel; boxes are ``(x1, y1, x2, y2)``.
* Landmarks use the **subject's** perspective: ``left_eye`` is the person's left eye, which in a
  frontal, non-mirrored photo has the *larger* x.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

ImageBGR = NDArray[np.uint8]
FloatArray = NDArray[np.float32]

#: Landmark names in the canonical order detectors emit them. A detector emits a prefix-free subset
#: described by :attr:`FaceDetection.landmark_names`; ``right_eye`` and ``left_eye`` are always present.
LANDMARK_NAMES: tuple[str, ...] = (
    "right_eye",
    "left_eye",
    "nose",
    "mouth",
    "mouth_right",
    "mouth_left",
    "right_ear",
    "left_ear",
)


@dataclass(frozen=True, slots=True)
class Box:
    """Axis-aligned box in source pixels, ``x1 <= x2`` and ``y1 <= y2``."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)

    def iou(self, other: Box) -> float:
        ix1, iy1 = max(self.x1, other.x1), max(self.y1, other.y1)
        ix2, iy2 = min(self.x2, other.x2), min(self.y2, other.y2)
        inter = max(0.0, ix2 - ix1) * max(0.0, iy2 - iy1)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def to_xywh(self) -> tuple[int, int, int, int]:
        """Integer ``(x, y, w, h)`` as DeepFace reports ``facial_area``."""
        x, y = round(self.x1), round(self.y1)
        return x, y, round(self.x2) - x, round(self.y2) - y


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured picture.

    ``image`` is BGR uint8 ``(H, W, 3)``. ``monotonic`` orders frames within a process; ``wall`` is
    the UNIX time used in published events.
    """

    image: ImageBGR
    camera: str = "default"
    index: int = 0
    monotonic: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True, slots=True)
class FaceDetection:
    """A detected face.

    ``landmarks`` is ``(K, 2)`` float32 in source pixels, named by ``landmark_names`` (a subset of
    :data:`LANDMARK_NAMES` that contains the two eyes, subject's perspective; the ``skip`` detector's
    whole-image detection alone has no landmarks at all).
    """

    box: Box
    score: float
    landmarks: FloatArray
    landmark_names: tuple[str, ...]
    detector: str = ""

    def point(self, name: str) -> tuple[float, float] | None:
        try:
            i = self.landmark_names.index(name)
        except ValueError:
            return None
        return float(self.landmarks[i, 0]), float(self.landmarks[i, 1])

    @property
    def left_eye(self) -> tuple[float, float]:
        """The person's left eye (larger x in a frontal photo)."""
        p = self.point("left_eye")
        if p is None:  # pragma: no cover - detectors guarantee eyes
            raise ValueError("detection without left_eye")
        return p

    @property
    def right_eye(self) -> tuple[float, float]:
        """The person's right eye (smaller x in a frontal photo)."""
        p = self.point("right_eye")
        if p is None:  # pragma: no cover - detectors guarantee eyes
            raise ValueError("detection without right_eye")
        return p


@dataclass(frozen=True, slots=True)
class FaceQuality:
    """Quality measures of one aligned face, used by the gates and reported at enrolment."""

    face_size: float  # inter-ocular distance in source pixels
    sharpness: float  # variance of the Laplacian on the chip
    yaw: float  # rough yaw estimate in [-1, 1] from landmark symmetry (0 = frontal)

    @property
    def score(self) -> float:
        """A single 0..1 figure for ranking enrolment photos."""
        size = min(1.0, self.face_size / 60.0)
        sharp = min(1.0, self.sharpness / 100.0)
        pose = max(0.0, 1.0 - abs(self.yaw))
        return float(size * 0.4 + sharp * 0.3 + pose * 0.3)


@dataclass(frozen=True, slots=True)
class AlignedFace:
    """A face chip ready for an embedder.

    ``image`` is BGR uint8 ``(S, S, 3)``; ``transform`` is the 2x3 affine matrix mapping source pixels
    to chip pixels.
    """

    image: ImageBGR
    detection: FaceDetection
    transform: FloatArray
    template: str
    quality: FaceQuality


@dataclass(frozen=True, slots=True)
class Embedding:
    """An embedding vector ``(D,)`` float32 produced by the model ``model_id``."""

    vector: FloatArray
    model_id: str

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])


Metric = Literal["cosine", "euclidean", "euclidean_l2", "angular"]
METRICS: tuple[Metric, ...] = ("cosine", "euclidean", "euclidean_l2", "angular")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One gallery person ranked against a probe."""

    person_id: str
    name: str
    distance: float


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Outcome of matching one embedding against a gallery.

    ``person_id`` is ``None`` for *unknown*: the best distance exceeds ``threshold`` or the margin to
    the second-best person is below the required margin.
    """

    person_id: str | None
    name: str | None
    distance: float
    threshold: float
    margin: float
    metric: Metric
    candidates: tuple[Candidate, ...] = ()

    @property
    def is_known(self) -> bool:
        return self.person_id is not None


EventType = Literal["recognized", "unknown", "spoof"]


@dataclass(frozen=True, slots=True)
class FaceAttributes:
    """Optional per-track analysis, computed once per track."""

    age: float | None = None
    gender: str | None = None  # "Woman" / "Man" (DeepFace's labels)
    gender_confidence: float | None = None
    emotion: str | None = None
    emotion_confidence: float | None = None
    liveness: float | None = None  # 0..1, higher = more likely a live face


@dataclass(frozen=True, slots=True)
class FaceEvent:
    """One decision about one appearance (track) of a face; published once, never retained.

    ``person_id``/``name`` are ``None`` unless ``type == "recognized"``. ``confidence`` is 0..100.
    """

    event_id: str
    type: EventType
    camera: str
    track_id: int
    wall: float
    box: Box
    frames_voted: int
    person_id: str | None = None
    name: str | None = None
    distance: float | None = None
    similarity: float | None = None
    confidence: float | None = None
    model_id: str = ""
    attributes: FaceAttributes | None = None
    snapshot_jpeg: bytes | None = None


__all__ = [
    "LANDMARK_NAMES",
    "METRICS",
    "AlignedFace",
    "Box",
    "Candidate",
    "Embedding",
    "EventType",
    "FaceAttributes",
    "FaceDetection",
    "FaceEvent",
    "FaceQuality",
    "FloatArray",
    "Frame",
    "ImageBGR",
    "MatchResult",
    "Metric",
]
