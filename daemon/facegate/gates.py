"""Quality gates: faces too small, too blurred or too turned to be recognised reliably are not voted on.

Two checks, because the cheap one can save an alignment: :meth:`QualityGates.check_detection` looks at
the detection only (score, box size, eye distance, upside-down landmarks);
:meth:`QualityGates.check_quality` looks at the :class:`~facegate.types.FaceQuality` the aligner
measured on the chip (sharpness, yaw, face size).
A rejected face is still tracked (so a blurred frame does not split a track); it just casts no vote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from facegate.config.models import GatesConfig as GatesSection
from facegate.config.models import section_default
from facegate.errors import ConfigError
from facegate.orientation import is_upright
from facegate.types import FaceDetection, FaceQuality

GateReason = Literal["low_score", "face_too_small", "too_blurry", "pose_too_far", "upside_down"]
GATE_REASONS: tuple[GateReason, ...] = ("low_score", "face_too_small", "too_blurry", "pose_too_far", "upside_down")


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Thresholds; 0 disables a check.

    ``min_face_px`` is the inter-ocular distance (eye centres, source pixels): shrinking the demo faces
    (BlazeFace full-range, int8 dlib ResNet, threshold 0.6) moved obama's distance to his enrolled
    photo from 0.36 (57 px) to 0.42-0.45 (19-23 px), 0.45-0.50 (16 px) and 0.52-0.56 (12 px), hence 20.
    ``min_box_px`` is the shorter side of the detection box. ``min_sharpness`` is the variance of the
    Laplacian on the chip (``FaceQuality.sharpness``). ``max_yaw`` bounds ``|FaceQuality.yaw|``
    (0 frontal, 1 profile). The settings of the configuration's ``gates`` section carry its names and
    defaults (one default each).

    Defaults measured with BlazeFace + the dlib chip + the int8 dlib ResNet: on the demo frames
    (640x360, inter-ocular ~57 px) sharpness is 100-145 and Gaussian blur of sigma 1/2/3/6 gives
    ~30/9/5/3, the distance to the enrolled photo growing 0.36 -> 0.39/0.42/0.46/0.56 (threshold 0.6)
    and a stranger's shrinking 0.85 -> 0.74 at sigma 6; a dark, low-contrast frame (x0.25) reads 9-12 yet
    matches well, hence the low 5. Over the 133 identity photos of the evaluation data every face with
    ``|yaw| <= 0.54`` stayed closer to its own person than to anyone else; of the two above 0.65 one
    did not, hence 0.7.
    """

    min_score: float = 0.0
    min_face_px: float = section_default(GatesSection, "min_face_px")
    min_box_px: float = 0.0
    min_sharpness: float = section_default(GatesSection, "min_sharpness")
    max_yaw: float = section_default(GatesSection, "max_yaw")

    def __post_init__(self) -> None:
        for name in ("min_score", "min_face_px", "min_box_px", "min_sharpness", "max_yaw"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ConfigError(f"gate {name} must be a finite number >= 0, got {value!r}")

    @classmethod
    def from_section(cls, section: GatesSection) -> GateConfig:
        """The gates of the configuration's ``gates`` section."""
        return cls(min_face_px=section.min_face_px, min_sharpness=section.min_sharpness, max_yaw=section.max_yaw)


def _eye_distance(detection: FaceDetection) -> float:
    right, left = detection.point("right_eye"), detection.point("left_eye")
    if right is None or left is None:
        # the skip detector's whole-image box has no eyes: estimate from the box, as box_chip does
        return detection.box.width * 0.3
    return math.hypot(left[0] - right[0], left[1] - right[1])


class QualityGates:
    """Applies a :class:`GateConfig`; both checks return ``None`` for a face that passes."""

    __slots__ = ("config",)

    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config or GateConfig()

    def update_config(self, config: GateConfig) -> None:
        """New thresholds from the next face on (a live patch)."""
        self.config = config

    def check_detection(self, detection: FaceDetection) -> GateReason | None:
        c = self.config
        if detection.score < c.min_score:
            return "low_score"
        box = detection.box
        if c.min_box_px and min(box.width, box.height) < c.min_box_px:
            return "face_too_small"
        if c.min_face_px and _eye_distance(detection) < c.min_face_px:
            return "face_too_small"
        if is_upright(detection) is False:
            # the mouth above the eyes in the face's own frame: its chip would be upside down
            return "upside_down"
        return None

    def check_quality(self, quality: FaceQuality) -> GateReason | None:
        c = self.config
        if c.min_face_px and quality.face_size < c.min_face_px:
            return "face_too_small"
        if c.min_sharpness and quality.sharpness < c.min_sharpness:
            return "too_blurry"
        if c.max_yaw and abs(quality.yaw) > c.max_yaw:
            return "pose_too_far"
        return None


__all__ = ["GATE_REASONS", "GateConfig", "GateReason", "QualityGates"]
