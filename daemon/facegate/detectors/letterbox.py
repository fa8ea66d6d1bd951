"""Fit an image into a fixed model input without distorting it, and map results back.

The image is scaled to fit, centred, and the rest is filled with a constant (MediaPipe's
``keep_aspect_ratio`` with a zero border): faces keep their shape, which the anchors assume.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.types import ImageBGR


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a source image was placed in the model input: ``input = source * (scale_x, scale_y) + (pad_x, pad_y)``.

    The two scales differ only by the rounding of the resized size.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    width: int
    height: int

    def to_source(self, points: NDArray[np.float32]) -> NDArray[np.float32]:
        """Input-pixel ``(..., 2)`` xy coordinates -> source pixels (same shape, float32)."""
        offset = np.asarray([self.pad_x, self.pad_y], dtype=np.float32)
        scale = np.asarray([self.scale_x, self.scale_y], dtype=np.float32)
        out: NDArray[np.float32] = ((points - offset) / scale).astype(np.float32)
        return out


def _fitted(src_w: int, src_h: int, width: int, height: int) -> tuple[float, int, int]:
    scale = min(width / src_w, height / src_h)
    return scale, max(1, min(width, round(src_w * scale))), max(1, min(height, round(src_h * scale)))


def prereduced(image: ImageBGR, width: int, height: int) -> ImageBGR:
    """``image`` after the first step :func:`letterbox` takes for a ``width x height`` input (itself
    when there is none): ``letterbox`` of the result is the same input as ``letterbox`` of ``image``.

    A reduction of more than 2x first goes bilinearly to twice the fitted size; the result's fitted
    scale is then exactly 1/2 (its limiting side is twice the input's), which ``letterbox`` does with
    the same 2x2 box average. Small enough to turn or copy cheaply (orientation screening).
    """
    scale, new_w, new_h = _fitted(image.shape[1], image.shape[0], width, height)
    if scale >= 0.5:
        return image
    return np.ascontiguousarray(cv2.resize(image, (2 * new_w, 2 * new_h), interpolation=cv2.INTER_LINEAR))


def letterbox(image: ImageBGR, width: int, height: int, *, pad_value: int = 0) -> tuple[ImageBGR, Letterbox]:
    """``image`` (H, W, C uint8) scaled to fit ``width x height``, centred and padded with ``pad_value``."""
    src_h, src_w = image.shape[:2]
    scale, new_w, new_h = _fitted(src_w, src_h, width, height)
    if scale >= 1.0:
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    elif scale >= 0.5:
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    else:
        # Bilinear alone aliases at 5-15x reductions and INTER_AREA costs 1-7 ms on a 640x480-1080p
        # frame; bilinear to twice the size and a 2x2 box average costs 0.3-0.7 ms and keeps most of
        # the anti-aliasing.
        resized = cv2.resize(prereduced(image, width, height), (new_w, new_h), interpolation=cv2.INTER_AREA)
    pad_x = (width - new_w) // 2
    pad_y = (height - new_h) // 2
    canvas = np.full((height, width, image.shape[2]), pad_value, dtype=np.uint8)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return canvas, Letterbox(
        scale_x=new_w / src_w, scale_y=new_h / src_h, pad_x=float(pad_x), pad_y=float(pad_y), width=width, height=height
    )


__all__ = ["Letterbox", "letterbox", "prereduced"]
