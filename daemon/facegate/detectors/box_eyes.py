"""Eye centres estimated from a face box's geometry, for detectors that give no (or unreliable) eyes.

Haar cascades and dlib's MMOD detector return boxes only. A box drawn by one detector sits at a
consistent place on the face, so the eyes sit at consistent fractions of its width and height: the
converter fits those fractions per detector (against dlib's 5-point landmarks on frontal photos) and
stores them in the manifest ``decoder`` block. The estimate is upright by construction, so it only
serves faces that are roughly upright; alignment then equals a crop of the box.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from facegate.types import Box, FloatArray


class EyeFractions(BaseModel):
    """Eye centres as fractions of the box: ``x = x1 + fx * width``, ``y = y1 + fy * height``.

    Subject's perspective: the person's right eye has the smaller x in a frontal photo.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    right_eye: tuple[float, float] = Field(description="(fx, fy) of the person's right eye")
    left_eye: tuple[float, float] = Field(description="(fx, fy) of the person's left eye")


def eyes_from_box(box: Box, fractions: EyeFractions) -> FloatArray:
    """``(2, 2)`` float32 ``[right_eye, left_eye]`` in source pixels."""
    rx, ry = fractions.right_eye
    lx, ly = fractions.left_eye
    out: FloatArray = np.asarray(
        [[box.x1 + rx * box.width, box.y1 + ry * box.height], [box.x1 + lx * box.width, box.y1 + ly * box.height]],
        dtype=np.float32,
    )
    return out


__all__ = ["EyeFractions", "eyes_from_box"]
