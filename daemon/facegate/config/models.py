"""The configuration schema: ``FacegateConfig``, the whole of ``facegate.yaml`` and of remote overrides,
assembled from one module per concern, and the runtime whitelist walked from it.

The sections live in :mod:`facegate.config.capture` (cameras and their sources),
:mod:`~facegate.config.pipeline` (detector, recognition, gates, decision, gallery),
:mod:`~facegate.config.mqtt` (broker, Home Assistant), :mod:`~facegate.config.security` and
:mod:`~facegate.config.analysis` (attributes, liveness), on the building blocks of
:mod:`facegate.config.base` (conventions and runtime markers described there). They are re-exported
here: ``facegate.config.models`` stays the one import path for every section.

Runtime-settable keys carry a ``runtime`` marker; :func:`runtime_settable_keys` lists the whitelist.
Remote changes never set a filesystem path or a GStreamer pipeline: paths in payloads are never
opened (issue 5), and a pipeline string can write files (``filesink``).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic.fields import FieldInfo

from facegate.config.analysis import AnalysisConfig, LivenessConfig
from facegate.config.base import (
    _LIVE,
    ANALYSIS_ACTIONS,
    CREDENTIAL_PATTERN,
    GALLERY_FILE,
    LIVE,
    OVERLAY_FILE,
    REBUILD_ANALYSIS,
    REBUILD_CAMERA,
    REBUILD_DETECTOR,
    REBUILD_EMBEDDER,
    REBUILD_LIVENESS,
    REPLAY_IMAGE_FPS,
    SLUG_PATTERN,
    SPOOL_FILE,
    TOPIC_PATTERN,
    URL_SCHEMES,
    ConfigPath,
    CredentialName,
    ReconnectConfig,
    Size,
    Slug,
    _Section,
    default_state_dir,
    section_default,
)
from facegate.config.capture import (
    SOURCE_OPTIONS,
    SOURCE_TYPES,
    CameraConfig,
    CameraSource,
    OpencvSource,
    Picamera2Source,
    ReplaySource,
    SourceOptions,
)
from facegate.config.mqtt import HomeAssistantConfig, MqttConfig, SpoolConfig, TlsConfig
from facegate.config.pipeline import DecisionConfig, DetectorConfig, GalleryConfig, GatesConfig, RecognitionConfig
from facegate.config.security import SecurityConfig
from facegate.detectors.options import DEFAULT_DETECTOR, DETECTOR_TYPES, BlazeFaceOptions

# --------------------------------------------------------------------------------------------- device


class DeviceConfig(_Section):
    """Identity of this device on the broker and in Home Assistant."""

    device_id: Slug = Field(
        default="facegate",
        description="unique id of this device: one MQTT topic level (<prefix>/<device_id>/...) and the "
        "Home Assistant device identifier; lowercase letters, digits, '_' and '-'",
    )
    name: str = Field(
        default="Facegate", min_length=1, max_length=64, description="display name shown in Home Assistant"
    )
    fleet_id: Slug = Field(
        default="default",
        description="devices with the same fleet_id on one broker share their gallery "
        "(<prefix>/fleet/<fleet_id>/gallery/<person_id>)",
    )


# -------------------------------------------------------------------------------------------- ops


class StatsConfig(_Section):
    interval_s: float = Field(
        default=30.0,
        ge=0.0,
        le=86400.0,
        description="period of the stats message, seconds; 0 = off",
        json_schema_extra=_LIVE,
    )


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="log level: DEBUG, INFO, WARNING or ERROR", json_schema_extra=_LIVE
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class StatePaths:
    """Writable files of the daemon, all under the state directory unless configured."""

    state_dir: Path
    gallery: Path
    spool: Path
    overlay: Path


class FacegateConfig(_Section):
    """The whole of ``facegate.yaml``."""

    version: Literal[1] = Field(default=1, description="configuration format version")
    state_dir: ConfigPath | None = Field(
        default=None,
        description="writable directory for the gallery, the spool and runtime overrides; null = "
        "$STATE_DIRECTORY (systemd), else ~/.local/share/facegate",
    )
    device: DeviceConfig = Field(
        default_factory=DeviceConfig, description="identity of this device on the broker and in Home Assistant"
    )
    cameras: tuple[CameraConfig, ...] = Field(default=(), description="cameras, each with a unique id")
    detector: DetectorConfig = Field(
        default_factory=BlazeFaceOptions,
        description="face detector: 'backend' names it (default mediapipe), the other keys are its options",
    )
    recognition: RecognitionConfig = Field(
        default_factory=RecognitionConfig, description="face embedder and gallery matching"
    )
    gates: GatesConfig = Field(default_factory=GatesConfig, description="face quality gates applied before embedding")
    decision: DecisionConfig = Field(default_factory=DecisionConfig, description="tracking and voting across frames")
    gallery: GalleryConfig = Field(default_factory=GalleryConfig, description="the SQLite gallery of enrolled people")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT broker connection, topics and offline spool")
    homeassistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig, description="Home Assistant MQTT discovery"
    )
    security: SecurityConfig = Field(
        default_factory=SecurityConfig, description="remote commands, signatures and rate limits"
    )
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig, description="facial attributes attached to events")
    liveness: LivenessConfig = Field(
        default_factory=LivenessConfig, description="liveness checks against photos and screens"
    )
    stats: StatsConfig = Field(default_factory=StatsConfig, description="periodic statistics message")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="log level of the daemon")

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, value: tuple[CameraConfig, ...]) -> tuple[CameraConfig, ...]:
        seen: set[str] = set()
        for camera in value:
            if camera.id in seen:
                raise ValueError(f"duplicate camera id {camera.id!r}")
            seen.add(camera.id)
        return value

    @model_validator(mode="after")
    def _events_possible(self) -> FacegateConfig:
        # The voting window stretches to hold the votes at any frame rate (facegate.decision), but a
        # track that ends between two frames never holds more than one vote: no event, ever.
        d = self.decision
        if min(d.votes_required, d.unknown_votes) <= 1:
            return self
        for camera in self.cameras:
            fps = camera.source.fps
            if camera.enabled and isinstance(fps, (int, float)) and fps > 0 and 1.0 / fps >= d.track_max_age_s:
                raise ValueError(
                    f"camera {camera.id!r} delivers a frame every {1.0 / fps:.2f} s (fps {fps:g}) but "
                    f"decision.track_max_age_s is {d.track_max_age_s:g} s: every track ends before its next frame, "
                    f"so no event could ever be sent; raise track_max_age_s above {1.0 / fps:.2f} s"
                )
        return self

    def camera(self, camera_id: str) -> CameraConfig | None:
        return next((c for c in self.cameras if c.id == camera_id), None)

    @property
    def mqtt_client_id(self) -> str:
        return self.mqtt.client_id or f"facegate-{self.device.device_id}"

    @property
    def paths(self) -> StatePaths:
        """Resolved writable paths (the loader fills ``state_dir``; the environment is the fallback)."""
        state = self.state_dir if self.state_dir is not None else default_state_dir()
        return StatePaths(
            state_dir=state,
            gallery=self.gallery.path or state / GALLERY_FILE,
            spool=self.mqtt.spool.path or state / SPOOL_FILE,
            overlay=state / OVERLAY_FILE,
        )


# ------------------------------------------------------------------------------- runtime whitelist


@dataclass(frozen=True, slots=True)
class RuntimeKey:
    """A remotely settable key: ``path`` is dotted (``cameras.<id>.source[opencv].url``), ``effect`` is
    ``live`` or ``rebuild:<component>``."""

    path: str
    effect: str


def runtime_marker(field: FieldInfo) -> str | None:
    extra = field.json_schema_extra
    if isinstance(extra, dict):
        value = extra.get("runtime")
        if isinstance(value, str):
            return value
    return None


def model_class(annotation: Any) -> type[BaseModel] | None:
    """The model class inside ``annotation`` (``X``, ``X | None``, ``tuple[X, ...]``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return model_class(typing.get_args(annotation)[0])
    if origin is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return model_class(args[0])
        return None
    if origin is Union or origin is types.UnionType:
        models = [m for a in typing.get_args(annotation) if (m := model_class(a)) is not None]
        return models[0] if len(models) == 1 else None
    return None


@dataclass(frozen=True, slots=True)
class UnionSection:
    """A section that is one of a plugin kind's options models (a camera's ``source``, the ``detector``):
    the value of ``key`` names the member, case-insensitively; ``default`` is the member without one."""

    key: str
    members: Mapping[str, type[BaseModel]]
    default: str

    def member(self, name: object) -> type[BaseModel] | None:
        if not isinstance(name, str):
            return None
        return next((m for k, m in self.members.items() if k == name.casefold()), None)

    def common(self) -> tuple[str, ...]:
        """Fields every member has (listed once in the whitelist)."""
        first, *rest = self.members.values()
        return tuple(n for n in first.model_fields if all(n in m.model_fields for m in rest))


#: ``(owner section, field)`` -> the plugin union that field holds
UNION_SECTIONS: dict[tuple[type[BaseModel], str], UnionSection] = {
    (CameraConfig, "source"): UnionSection("type", SOURCE_TYPES, default="opencv"),
    (FacegateConfig, "detector"): UnionSection("backend", DETECTOR_TYPES, default=DEFAULT_DETECTOR),
}


def runtime_settable_keys() -> tuple[RuntimeKey, ...]:
    """Every whitelisted key and whether changing it needs a rebuild. A plugin union's fields that every
    member has are listed once (``detector.backend``), the others per member (``source[opencv].url``)."""
    keys: list[RuntimeKey] = []

    def walk(cls: type[BaseModel], prefix: str, skip: tuple[str, ...] = ()) -> None:
        for name, field in cls.model_fields.items():
            path = f"{prefix}{name}"
            marker = runtime_marker(field)
            if name in skip:
                continue
            if marker is not None:
                keys.append(RuntimeKey(path, marker))
            elif (union := UNION_SECTIONS.get((cls, name))) is not None:
                common = union.common()
                first = next(iter(union.members.values()))
                walk(first, f"{path}.", skip=tuple(n for n in first.model_fields if n not in common))
                for member_key, member in union.members.items():
                    walk(member, f"{path}[{member_key}].", skip=common)
            elif cls is FacegateConfig and name == "cameras":
                walk(CameraConfig, "cameras.<id>.")
            elif (sub := model_class(field.annotation)) is not None:
                walk(sub, f"{path}.")

    walk(FacegateConfig, "")
    return tuple(keys)


__all__ = [
    "ANALYSIS_ACTIONS",
    "CREDENTIAL_PATTERN",
    "GALLERY_FILE",
    "LIVE",
    "OVERLAY_FILE",
    "REBUILD_ANALYSIS",
    "REBUILD_CAMERA",
    "REBUILD_DETECTOR",
    "REBUILD_EMBEDDER",
    "REBUILD_LIVENESS",
    "REPLAY_IMAGE_FPS",
    "SLUG_PATTERN",
    "SOURCE_OPTIONS",
    "SOURCE_TYPES",
    "SPOOL_FILE",
    "TOPIC_PATTERN",
    "UNION_SECTIONS",
    "URL_SCHEMES",
    "AnalysisConfig",
    "CameraConfig",
    "CameraSource",
    "ConfigPath",
    "CredentialName",
    "DecisionConfig",
    "DetectorConfig",
    "DeviceConfig",
    "FacegateConfig",
    "GalleryConfig",
    "GatesConfig",
    "HomeAssistantConfig",
    "LivenessConfig",
    "LoggingConfig",
    "MqttConfig",
    "OpencvSource",
    "Picamera2Source",
    "RecognitionConfig",
    "ReconnectConfig",
    "ReplaySource",
    "RuntimeKey",
    "SecurityConfig",
    "Size",
    "Slug",
    "SourceOptions",
    "SpoolConfig",
    "StatePaths",
    "StatsConfig",
    "TlsConfig",
    "UnionSection",
    "default_state_dir",
    "model_class",
    "runtime_marker",
    "runtime_settable_keys",
    "section_default",
]
