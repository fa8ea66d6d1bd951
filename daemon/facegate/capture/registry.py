"""Frame source names (the YAML ``type:`` of a camera) and a factory from their options.

The YAML sources are the options models of :data:`facegate.config.models.CameraSource` (each names its
``implementation``); this registry is built from them, plus the library-only ``synthetic`` demo source.
``build_source("door", camera.source)`` takes a validated options model as is;
``build_source("door", {"type": "opencv", "device": "rtsp://..."})`` or
``build_source("door", type="replay", path="clip.mp4", pacing="fast")`` take plain keyword arguments of
the source class (which may go beyond the YAML's), checked against its signature: unknown or missing
ones raise :class:`~facegate.errors.ConfigError` before anything is opened. Implementations are imported
only when their name is used, so a machine without picamera2 can build every other source.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from facegate.capture.base import FrameSource
from facegate.config.models import SOURCE_TYPES
from facegate.errors import ConfigError
from facegate.registry import Registry

SourceFactory = Callable[..., FrameSource]

SOURCES: Registry[SourceFactory] = Registry("frame source")
for _kind, _options in SOURCE_TYPES.items():
    SOURCES.register_lazy(_kind, _options.implementation)
#: the bundled demo sequence (``facegate demo``): options of ``demo_source``
SOURCES.register_lazy("synthetic", "facegate.capture.synthetic:demo_source")


def build_source(camera: str, config: Mapping[str, Any] | BaseModel | None = None, /,
                 **options: Any) -> FrameSource:
    """Build (not open) the source for ``camera`` from ``type`` plus that type's options.

    ``config`` (a validated options model, or a mapping) and ``options`` are merged (``options`` win);
    ``type`` is required. A validated model alone is not re-checked: its fields are the class's keywords.
    """
    if isinstance(config, BaseModel) and not options:
        values = config.model_dump()
        return SOURCES.get(values.pop("type"))(camera, **values)
    merged: dict[str, Any] = {**(dict(config) if isinstance(config, Mapping) else
                                 config.model_dump() if config is not None else {}), **options}
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
