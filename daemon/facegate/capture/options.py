"""The camera source plugins: one typed options model per source ``type``, the one list of them.

Each model is the YAML source section of its ``type`` (:mod:`facegate.config.capture`) extended with the
keywords only a library caller can give (in-memory ``frames``, ``pacing``, timeouts, libcamera
``controls`` ...), plus the library-only ``synthetic`` demo source. It carries its key (``type``) and its
``implementation`` (``module:factory``, imported on first use): ``factory(camera, options) -> FrameSource``.
The capture registry and :func:`facegate.capture.registry.build_source` are built from
:data:`SOURCE_OPTIONS`, so a new source is its YAML model, its options model here and its module.

This module imports pydantic and numpy only (the implementations pull in OpenCV and picamera2).
"""

from __future__ import annotations

import typing
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, ConfigDict, Field, model_validator

from facegate.config.base import ConfigPath, Size
from facegate.config.capture import OpencvSource, Picamera2Source, ReplaySource, SourceOptions
from facegate.types import ImageBGR

Pacing = Literal["realtime", "fast"]

_PACING = "'realtime' keeps the frame rate like a live camera; 'fast' delivers frames as soon as asked"


class ReplayOptions(ReplaySource):
    """``replay``: the YAML section, or in-memory ``frames`` instead of ``path``, and a resize."""

    # frames are numpy arrays, checked by type
    model_config = ConfigDict(arbitrary_types_allowed=True)

    # optional here: a library caller may give ``frames`` instead (exactly one of the two)
    path: ConfigPath | None = Field(  # type: ignore[assignment]
        default=None, description="video file or folder of images (sorted by name)"
    )
    frames: tuple[ImageBGR, ...] | None = Field(
        default=None, min_length=1, description="BGR uint8 (H, W, 3) images to replay instead of a path"
    )
    pacing: Pacing = Field(default="realtime", description=_PACING)
    width: int | None = Field(default=None, ge=2, le=8192, description="resize every frame (with height)")
    height: int | None = Field(default=None, ge=2, le=8192, description="resize every frame (with width)")

    @model_validator(mode="after")
    def _one_input(self) -> ReplayOptions:
        if (self.path is None) == (self.frames is None):
            raise ValueError("give exactly one of 'path' and 'frames'")
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height or neither")
        return self


class OpenCvOptions(OpencvSource):
    """``opencv``: the YAML section plus the capture's fourcc, timeouts and buffer size."""

    # the library has always taken a device path or URL string as ``device`` too
    device: int | str | None = Field(  # type: ignore[assignment]
        default=None, description="camera index, or a device path, URL or pipeline string"
    )
    # ``backend`` is the library's older name of ``api``
    api: Literal["auto", "v4l2", "ffmpeg", "gstreamer"] = Field(
        default="auto", validation_alias=AliasChoices("api", "backend"), description="OpenCV capture backend"
    )
    fourcc: str | None = Field(
        default=None, min_length=4, max_length=4, description="requested pixel format such as MJPG"
    )
    open_timeout: float = Field(default=10.0, gt=0, le=3600, description="seconds to wait for the first frame")
    read_timeout: float = Field(default=5.0, gt=0, le=3600, description="seconds without a frame = a failure")
    buffer_size: int | None = Field(
        default=1, ge=0, le=64, description="driver frame buffer; 1 = always the newest frame; null = driver's"
    )


class PicameraOptions(Picamera2Source):
    """``picamera2``: the YAML section plus buffer count and libcamera controls."""

    main_size: Size | None = Field(  # type: ignore[assignment]
        default=(1280, 720), description="main (full) stream size [width, height]; null = the sensor's"
    )
    buffer_count: int = Field(default=4, ge=1, le=32, description="libcamera request buffers")
    controls: dict[str, Any] | None = Field(default=None, description="libcamera controls set at start")


class SyntheticOptions(SourceOptions):
    """``synthetic``: the bundled demo sequence of ``facegate demo`` (library only, no YAML section)."""

    implementation: ClassVar[str] = "facegate.capture.synthetic:build"

    type: Literal["synthetic"] = "synthetic"
    pacing: Pacing = Field(default="realtime", description=_PACING)
    loop: bool = False
    people: tuple[str, ...] = Field(default=("obama.jpg", "biden.jpg"), min_length=1, description="sample photos")
    person_frames: int = Field(default=15, ge=1, le=10_000, description="frames showing each person")
    empty_frames: int = Field(default=8, ge=0, le=10_000, description="empty frames after each person")
    fps: float = Field(default=10.0, gt=0, le=1000, description="frame rate")
    seed: int = Field(default=0, description="noise seed")


_Members = ReplayOptions | OpenCvOptions | PicameraOptions | SyntheticOptions
#: source ``type`` -> options model, in registry order (the YAML sources first)
SOURCE_OPTIONS: dict[str, type[SourceOptions]] = {
    typing.get_args(model.model_fields["type"].annotation)[0]: model for model in typing.get_args(_Members)
}

__all__ = [
    "SOURCE_OPTIONS",
    "OpenCvOptions",
    "Pacing",
    "PicameraOptions",
    "ReplayOptions",
    "SyntheticOptions",
]
