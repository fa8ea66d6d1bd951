"""DeepFace's ``facial_area`` / ``region``: shared by every result type of the public API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from facegate.types import FaceDetection


@dataclass(frozen=True, slots=True)
class FacialArea:
    """Integer box and the eye centres (person's perspective: the left eye has the larger x)."""

    x: int
    y: int
    w: int
    h: int
    left_eye: tuple[int, int] | None
    right_eye: tuple[int, int] | None

    @classmethod
    def from_detection(cls, det: FaceDetection) -> FacialArea:
        x, y, w, h = det.box.to_xywh()
        left = det.point("left_eye")
        right = det.point("right_eye")
        return cls(
            x, y, w, h,
            (round(left[0]), round(left[1])) if left else None,
            (round(right[0]), round(right[1])) if right else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h,
                "left_eye": self.left_eye, "right_eye": self.right_eye}


__all__ = ["FacialArea"]
