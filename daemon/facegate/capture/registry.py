"""Frame source names (the YAML ``type:`` of a camera) and a factory from plain options.

``build_source("door", {"type": "opencv", "device": "rtsp://..."})`` or
``build_source("door", type="replay", path="clip.mp4", pacing="fast")``. Options are the keyword
arguments of the source class; unknown or missing ones raise :class:`~facegate.errors.ConfigError`
before anything is opened. Implementations are imported only when their name is used, so a machine
without picamera2 can build every other source.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from facegate.capture.base import FrameSource
from facegate.errors import ConfigError
from facegate.registry import Registry

SourceFactory = Callable[..., FrameSource]

SOURCES: Registry[SourceFactory] = Registry("frame source")
SOURCES.register_lazy("replay", "facegate.capture.replay:ReplaySource")
SOURCES.register_lazy("opencv", "facegate.capture.opencv:OpenCvSource")
SOURCES.register_lazy("picamera2", "facegate.capture.picamera:PicameraSource")
#: the bundled demo sequence (``facegate demo``): options of ``demo_source``
SOURCES.register_lazy("synthetic", "facegate.capture.synthetic:demo_source")


def build_source(camera: str, config: Mapping[str, Any] | None = None, /, **options: Any) -> FrameSource:
    """Build (not open) the source for ``camera`` from ``type`` plus that type's options.

    ``config`` and ``options`` are merged (``options`` win); ``type`` is required.
    """
    merged: dict[str, Any] = {**(config or {}), **options}
    kind = merged.pop("type", None)
    if not isinstance(kind, str):
        raise ConfigError(f"camera {camera!r}: 'type' is required; valid: {', '.join(SOURCES.names())}")
    factory = SOURCES.get(kind)
    try:
        inspect.signature(factory).bind(camera, **merged)
    except TypeError as err:
        raise ConfigError(f"camera {camera!r} ({kind}): {err}") from None
    return factory(camera, **merged)


__all__ = ["SOURCES", "SourceFactory", "build_source"]
