"""Camera rotation (``cameras[].rotation: 0 | 90 | 180 | 270``), the same for every capture backend.

A camera mounted sideways or upside down (a doorbell on its side, a Pi camera hung from a ceiling)
delivers rotated faces; face detectors and the alignment templates expect upright ones. picamera2 can
only flip (its ``transform`` has no 90-degree rotation) and RTSP cameras often have no setting at all,
so the rotation is applied here, once, to every frame a source delivers, with :func:`cv2.rotate`
(:func:`facegate.orientation.rotate_image`, a lossless pixel permutation). Degrees are clockwise:
``rotation: 90`` turns the picture a quarter turn clockwise, which makes upright a camera that shows
people lying on their left side.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from facegate.capture.base import FrameSource
from facegate.errors import ConfigError
from facegate.orientation import ROTATIONS, rotate_image
from facegate.types import Frame


class RotatedSource(FrameSource):
    """Wraps a source and rotates every frame it delivers; everything else is the wrapped source's."""

    def __init__(self, inner: FrameSource, degrees: int) -> None:
        if degrees not in ROTATIONS or degrees == 0:
            raise ConfigError(f"RotatedSource needs a rotation of 90, 180 or 270 degrees, got {degrees!r}")
        super().__init__(inner.camera)
        self.inner = inner
        self.degrees = degrees
        self.kind = inner.kind

    @property
    def name(self) -> str:
        return f"{self.inner.name} (rotated {self.degrees})"

    @property
    def nominal_fps(self) -> float | None:
        return self.inner.nominal_fps

    @property
    def finite(self) -> bool:
        return self.inner.finite

    def probe(self) -> bool:
        return self.inner.probe()

    def open(self) -> None:
        self.inner.open()

    def read(self, timeout: float) -> Frame | None:
        frame = self.inner.read(timeout)
        if frame is None:
            return None
        return dataclasses.replace(frame, image=rotate_image(frame.image, self.degrees))

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # backend-specific figures (a replay's late_frames, ...) stay readable through the wrapper
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def with_rotation(source: FrameSource, degrees: int) -> FrameSource:
    """``source`` itself for 0 degrees, else a :class:`RotatedSource`."""
    if degrees not in ROTATIONS:
        raise ConfigError(f"rotation must be one of {ROTATIONS} (degrees clockwise), got {degrees!r}")
    return source if degrees == 0 else RotatedSource(source, degrees)


__all__ = ["ROTATIONS", "RotatedSource", "rotate_image", "with_rotation"]
