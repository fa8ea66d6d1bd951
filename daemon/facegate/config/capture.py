"""Camera sections: the YAML frame sources (one options model per ``type``) and ``cameras[]``.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from facegate.config.base import (
    _CAMERA,
    REPLAY_IMAGE_FPS,
    URL_SCHEMES,
    ConfigPath,
    ReconnectConfig,
    Size,
    Slug,
    _Section,
)
from facegate.config.redaction import redact_text


class SourceOptions(_Section):
    """Options of one camera source kind: its ``type`` key and its settings (the library's options models
    in :mod:`facegate.capture.options` extend these)."""

    #: the factory, ``module:attribute`` (imported on first use): ``factory(camera, options) -> FrameSource``
    implementation: ClassVar[str]

    # each member narrows it to its own key (the union's discriminator)
    type: str = Field(description="source kind", json_schema_extra=_CAMERA)


class ReplaySource(SourceOptions):
    """Frames from a video file or a folder of images (tests, demos, benchmarks)."""

    implementation: ClassVar[str] = "facegate.capture.replay:build"

    type: Literal["replay"] = Field(default="replay", description="source kind", json_schema_extra=_CAMERA)
    path: ConfigPath = Field(
        description="video file or folder of images (sorted by name); relative to the YAML's directory"
    )
    fps: float | Literal["as_fast_as_possible"] | None = Field(
        default=None,
        description=f"pacing: frames per second, 'as_fast_as_possible', or null for the video's own "
        f"rate ({REPLAY_IMAGE_FPS:g} fps for an image folder)",
        json_schema_extra=_CAMERA,
    )
    loop: bool = Field(
        default=False, description="start again at the end instead of stopping", json_schema_extra=_CAMERA
    )

    @field_validator("fps")
    @classmethod
    def _positive_fps(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, float) and not 0 < value <= 1000:
            raise ValueError("fps must be in (0, 1000]")
        return value


class OpencvSource(SourceOptions):
    """A camera opened with OpenCV: a V4L2/USB index or device path, an RTSP/HTTP URL or a GStreamer
    pipeline (e.g. Jetson CSI). Set at most one of device, path, url, pipeline; none means device 0."""

    implementation: ClassVar[str] = "facegate.capture.opencv:build"

    type: Literal["opencv"] = Field(default="opencv", description="source kind", json_schema_extra=_CAMERA)
    device: int | None = Field(
        default=None, ge=0, le=63, description="V4L2/USB camera index (/dev/video<N>)", json_schema_extra=_CAMERA
    )
    path: ConfigPath | None = Field(default=None, description="device node such as /dev/video0 or /dev/v4l/by-id/...")
    url: str | None = Field(
        default=None,
        max_length=2048,
        description="network stream, rtsp://, rtsps://, http:// or https:// (credentials in the URL are "
        "redacted in logs and in config/state)",
        json_schema_extra=_CAMERA,
    )
    pipeline: str | None = Field(
        default=None, max_length=4096, description="GStreamer pipeline ending in appsink (needs OpenCV with GStreamer)"
    )
    api: Literal["auto", "v4l2", "ffmpeg", "gstreamer"] = Field(
        default="auto", description="OpenCV capture backend; 'auto' picks by target (pipeline -> gstreamer)"
    )
    width: int | None = Field(
        default=None,
        ge=16,
        le=8192,
        description="requested frame width; null = driver default",
        json_schema_extra=_CAMERA,
    )
    height: int | None = Field(
        default=None,
        ge=16,
        le=8192,
        description="requested frame height; null = driver default",
        json_schema_extra=_CAMERA,
    )
    fps: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="requested frame rate; null = driver default",
        json_schema_extra=_CAMERA,
    )

    @field_validator("url")
    @classmethod
    def _stream_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Whitespace and '!' would let a "URL" become a GStreamer pipeline description.
        if any(c.isspace() or c == "!" or ord(c) < 32 for c in value):
            raise ValueError("url must not contain whitespace, control characters or '!'")
        parts = urlsplit(value)
        if parts.scheme.lower() not in URL_SCHEMES or not parts.hostname:
            raise ValueError("url must start with rtsp://, rtsps://, http:// or https:// and name a host")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> OpencvSource:
        given = [n for n in ("device", "path", "url", "pipeline") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"set only one of device, path, url, pipeline (got {', '.join(given)})")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # an RTSP URL or a pipeline may carry a camera password
        for name, value in super().__repr_args__():
            yield name, redact_text(value) if isinstance(value, str) else value

    @property
    def target(self) -> int | str:
        """What to hand to ``cv2.VideoCapture``: an index, a device path, a URL or a pipeline."""
        if self.path is not None:
            return str(self.path)
        if self.url is not None:
            return self.url
        if self.pipeline is not None:
            return self.pipeline
        return 0 if self.device is None else self.device


class Picamera2Source(SourceOptions):
    """A Raspberry Pi camera through picamera2/libcamera: inference on the small lores stream, the main
    stream kept for snapshots."""

    implementation: ClassVar[str] = "facegate.capture.picamera:build"

    type: Literal["picamera2"] = Field(default="picamera2", description="source kind", json_schema_extra=_CAMERA)
    camera_num: int = Field(default=0, ge=0, le=7, description="libcamera camera index", json_schema_extra=_CAMERA)
    main_size: Size = Field(
        default=(1280, 720), description="main (full) stream size [width, height]", json_schema_extra=_CAMERA
    )
    main_format: Literal["RGB888", "XRGB8888"] = Field(
        default="RGB888",
        description="main stream pixel format; RGB888 is BGR in memory (OpenCV order)",
        json_schema_extra=_CAMERA,
    )
    lores_size: Size = Field(
        default=(640, 360),
        description="lores stream size [width, height] used for inference; <= main_size",
        json_schema_extra=_CAMERA,
    )
    lores_format: Literal["YUV420", "RGB888", "XRGB8888"] = Field(
        default="YUV420",
        description="lores stream format; Pi 4 and older only support YUV420 (converted to BGR)",
        json_schema_extra=_CAMERA,
    )
    fps: float | None = Field(
        default=None, gt=0, le=240, description="frame rate; null = sensor mode default", json_schema_extra=_CAMERA
    )
    snapshot_from_main: bool = Field(
        default=True,
        description="take snapshot crops from the full-resolution main stream instead of lores",
        json_schema_extra=_CAMERA,
    )
    hflip: bool = Field(
        default=False, description="mirror horizontally (libcamera transform)", json_schema_extra=_CAMERA
    )
    vflip: bool = Field(default=False, description="flip vertically (libcamera transform)", json_schema_extra=_CAMERA)

    @model_validator(mode="after")
    def _lores_fits(self) -> Picamera2Source:
        # the library's options allow no main size (the sensor's own)
        main = self.main_size
        if main is not None and (self.lores_size[0] > main[0] or self.lores_size[1] > main[1]):
            raise ValueError("lores_size must not exceed main_size")
        return self


#: The one list of YAML camera sources: each options model carries its key (``type``) and its
#: ``implementation``; ``SOURCE_TYPES`` is built from this union, and the capture registry from the
#: library's extension of each member (``facegate.capture.options``).
CameraSource = Annotated[ReplaySource | OpencvSource | Picamera2Source, Field(discriminator="type")]
SOURCE_OPTIONS: tuple[type[SourceOptions], ...] = typing.get_args(typing.get_args(CameraSource)[0])
SOURCE_TYPES: dict[str, type[SourceOptions]] = {
    typing.get_args(model.model_fields["type"].annotation)[0]: model for model in SOURCE_OPTIONS
}


class CameraConfig(_Section):
    """One camera; several run in one process."""

    id: Slug = Field(default="default", description="unique camera id (topic level, event field, HA entity id)")
    name: str | None = Field(default=None, max_length=64, description="display name; null = the id")
    enabled: bool = Field(default=True, description="capture from this camera", json_schema_extra=_CAMERA)
    source: CameraSource = Field(
        default_factory=OpencvSource,
        description="where frames come from, selected by 'type': replay, opencv or picamera2",
    )
    reconnect: ReconnectConfig = Field(
        default_factory=ReconnectConfig,
        description="backoff when the source fails (file vanishes, stream drops, device unplugged)",
        json_schema_extra=_CAMERA,
    )
    queue_size: int = Field(
        default=2,
        ge=1,
        le=64,
        description="bounded hand-off to inference; when full the oldest frame is dropped and counted",
        json_schema_extra=_CAMERA,
    )
    rotation: Literal[0, 90, 180, 270] = Field(
        default=0,
        description="turn every frame clockwise by this many degrees (a camera mounted sideways or upside "
        "down), for every source type",
        json_schema_extra=_CAMERA,
    )
