"""Quality gates: faces too small, too blurred or too turned to be recognised reliably are not voted on.

Two checks, because the cheap one can save an alignment: :meth:`QualityGates.check_detection` looks at
the detection only (score, box size, eye distance); :meth:`QualityGates.check_quality` looks at the
:class:`~facegate.types.FaceQuality` the aligner measured on the chip (sharpness, yaw, face size).
A rejected face is still tracked (so a blurred frame does not split a track); it just casts no vote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from facegate.errors import ConfigError
from facegate.types import FaceDetection, FaceQuality

GateReason = Literal["low_score", "face_too_small", "too_blurry", "pose_too_far"]
GATE_REASONS: tuple[GateReason, ...] = ("low_score", "face_too_small", "too_blurry", "pose_too_far")


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Thresholds; 0 disables a check.

    ``min_face_px`` is the inter-ocular distance (eye centres, source pixels): the dlib ResNet's
    150 px chip puts the eyes about 45 px apart, so below ~20 px the chip is mostly upsampled blur.
    ``min_box_px`` is the shorter side of the detection box. ``min_sharpness`` is the variance of the
    Laplacian on the chip (``FaceQuality.sharpness``). ``max_abs_yaw`` bounds ``|FaceQuality.yaw|``
    (0 frontal, 1 profile).
    """

    min_score: float = 0.0
    min_face_px: float = 20.0
    min_box_px: float = 0.0
    min_sharpness: float = 0.0
    max_abs_yaw: float = 0.6

    def __post_init__(self) -> None:
        for name in ("min_score", "min_face_px", "min_box_px", "min_sharpness", "max_abs_yaw"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ConfigError(f"gate {name} must be a finite number >= 0, got {value!r}")


def _eye_distance(detection: FaceDetection) -> float:
    (rx, ry), (lx, ly) = detection.right_eye, detection.left_eye
    return math.hypot(lx - rx, ly - ry)


class QualityGates:
    """Applies a :class:`GateConfig`; both checks return ``None`` for a face that passes."""

    __slots__ = ("config",)

    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config or GateConfig()

    def check_detection(self, detection: FaceDetection) -> GateReason | None:
        c = self.config
        if detection.score < c.min_score:
            return "low_score"
        box = detection.box
        if c.min_box_px and min(box.width, box.height) < c.min_box_px:
            return "face_too_small"
        if c.min_face_px and _eye_distance(detection) < c.min_face_px:
            return "face_too_small"
        return None

    def check_quality(self, quality: FaceQuality) -> GateReason | None:
        c = self.config
        if c.min_face_px and quality.face_size < c.min_face_px:
            return "face_too_small"
        if c.min_sharpness and quality.sharpness < c.min_sharpness:
            return "too_blurry"
        if c.max_abs_yaw and abs(quality.yaw) > c.max_abs_yaw:
            return "pose_too_far"
        return None


__all__ = ["GATE_REASONS", "GateConfig", "GateReason", "QualityGates"]
