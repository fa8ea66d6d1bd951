"""Frame source names (the YAML ``type:`` of a camera) and a factory from their validated options.

The registry is built from the options models of :mod:`facegate.capture.options` (each the YAML source
section of its ``type`` extended with the library-only keywords, plus the library-only ``synthetic`` demo
source), each naming its ``implementation``. ``build_source("door", camera.source)`` takes a validated
YAML section; ``build_source("door", {"type": "opencv", "device": "rtsp://..."})`` or
``build_source("door", type="replay", path="clip.mp4", pacing="fast")`` take plain options, validated by
the options model of their ``type``: an unknown or mistyped one raises
:class:`~facegate.errors.ConfigError` naming the camera, the source type and the option before anything
is opened. Implementations are imported only when their name is used, so a machine without picamera2 can
build every other source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import BaseModel

from facegate.capture.base import FrameSource
from facegate.capture.options import SOURCE_OPTIONS
from facegate.config.capture import SourceOptions
from facegate.errors import ConfigError
from facegate.registry import Registry, validate_options

#: what a source's ``implementation`` names: the camera id and its validated options model in, a source
#: (not yet opened) out; each factory takes its own options model
SourceFactory = Callable[[str, SourceOptions], FrameSource]

SOURCES: Registry[SourceFactory] = Registry("frame source")
for _kind, _options in SOURCE_OPTIONS.items():
    SOURCES.register_lazy(_kind, _options.implementation)


def source_options(camera: str, config: Mapping[str, object] | BaseModel | None = None, /,
                   **options: object) -> SourceOptions:
    """The validated options model of ``camera``'s source from ``type`` plus that type's options.

    ``config`` (a YAML source section, an options model or a mapping) and ``options`` are merged
    (``options`` win); ``type`` is required, case-insensitive. An options model of the registry is
    returned as is; a YAML section is re-validated as its type's options model (same fields, same values).
    """
    if isinstance(config, SourceOptions) and type(config) in SOURCE_OPTIONS.values() and not options:
        return config
    base = config.model_dump() if isinstance(config, BaseModel) else dict(config or {})
    values: dict[str, object] = {**base, **options}
    kind = values.pop("type", None)
    if not isinstance(kind, str):
        raise ConfigError(f"camera {camera!r}: 'type' is required; valid: {', '.join(SOURCE_OPTIONS)}")
    key = kind.casefold()
    model = SOURCE_OPTIONS.get(key)
    if model is None:
        raise ConfigError(f"camera {camera!r}: unknown source type {kind!r}; valid: {', '.join(SOURCE_OPTIONS)}")
    return validate_options(model, {**values, "type": key}, key=key, key_field="type",
                            context=f"camera {camera!r} ({key})")


def create_source(camera: str, options: SourceOptions) -> FrameSource:
    """The source (not yet opened) of ``camera`` that its validated options name."""
    return SOURCES.get(options.type)(camera, options)


def build_source(camera: str, config: Mapping[str, object] | BaseModel | None = None, /,
                 **options: object) -> FrameSource:
    """Build (not open) the source for ``camera``: :func:`source_options`, then its factory."""
    return create_source(camera, source_options(camera, config, **options))


__all__ = ["SOURCES", "SourceFactory", "build_source", "create_source", "source_options"]
