"""The configuration schema: pydantic models for ``facegate.yaml`` and for remote overrides.

This is a trust boundary: every section forbids unknown keys, is frozen, bounds every number and
describes every field (the descriptions feed the committed JSON Schema and the example YAML).

Runtime-settable keys carry ``json_schema_extra={"runtime": EFFECT}`` where EFFECT is ``"live"``
(applied without rebuilding anything) or ``"rebuild:<component>"`` (that pipeline component is rebuilt).
A marker on a field whitelists the whole value below it. Keys without a marker are only read from the
YAML. :func:`runtime_settable_keys` lists the whitelist.

Remote changes never set a filesystem path or a GStreamer pipeline: paths in payloads are never
opened (issue 5), and a pipeline string can write files (``filesink``).
"""

from __future__ import annotations

import importlib
import os
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from facegate.config.redaction import redact_text

LIVE = "live"
REBUILD_CAMERA = "rebuild:camera"
REBUILD_DETECTOR = "rebuild:detector"
REBUILD_EMBEDDER = "rebuild:embedder"
REBUILD_ANALYSIS = "rebuild:analysis"
REBUILD_LIVENESS = "rebuild:liveness"

_LIVE: dict[str, Any] = {"runtime": LIVE}
_CAMERA: dict[str, Any] = {"runtime": REBUILD_CAMERA}
_DETECTOR: dict[str, Any] = {"runtime": REBUILD_DETECTOR}
_EMBEDDER: dict[str, Any] = {"runtime": REBUILD_EMBEDDER}
_ANALYSIS: dict[str, Any] = {"runtime": REBUILD_ANALYSIS}
_LIVENESS: dict[str, Any] = {"runtime": REBUILD_LIVENESS}

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
TOPIC_PATTERN = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"
CREDENTIAL_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
URL_SCHEMES = ("rtsp", "rtsps", "http", "https")
ANALYSIS_ACTIONS = ("emotion", "age", "gender")
#: default pacing of a replayed image folder (a video file replays at its own frame rate)
REPLAY_IMAGE_FPS = 5.0

GALLERY_FILE = "gallery.sqlite3"
SPOOL_FILE = "spool.sqlite3"
OVERLAY_FILE = "runtime-overrides.json"


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``), else ``$XDG_DATA_HOME/facegate``,
    else ``~/.local/share/facegate``."""
    env = os.environ if environ is None else environ
    state = env.get("STATE_DIRECTORY")
    if state:
        # systemd joins several StateDirectory= entries with ':'; ours is the first
        return Path(state.split(":", 1)[0])
    xdg = env.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg) / "facegate"
    home = env.get("HOME")
    base = Path(home) if home else Path.home()
    return base / ".local" / "share" / "facegate"


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the YAML file's directory (the loader passes it as context)."""
    path = value.expanduser()
    if not path.is_absolute() and isinstance(info.context, dict):
        base = info.context.get("base_dir")
        if isinstance(base, Path):
            path = Path(os.path.normpath(base / path))
    return path


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]
CredentialName = Annotated[str, Field(pattern=CREDENTIAL_PATTERN)]
Size = tuple[Annotated[int, Field(ge=16, le=8192)], Annotated[int, Field(ge=16, le=8192)]]


class _Section(BaseModel):
    # coerce_numbers_to_str: YAML reads `name: 1234` as an int
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, validate_default=True, coerce_numbers_to_str=True
    )


def section_default(section: type[BaseModel], name: str) -> Any:
    """The default of setting ``name`` of a config section: the one place a stage's defaults come from
    (``facegate.decision``, ``facegate.gates``, ``facegate.tracker`` and the liveness checker read theirs
    here, so a library user and a daemon user get the same behaviour from the same names)."""
    return section.model_fields[name].get_default(call_default_factory=True)


def _known_name(module: str, attribute: str, name: str) -> str:
    """Canonical spelling of ``name`` in the registry ``module.attribute``; ``name`` unchanged when
    that registry module is not part of this build."""
    try:
        registry = getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError as err:
        if err.name is not None and module.startswith(err.name):
            return name
        raise
    except AttributeError:
        return name
    canonical: str = registry.canonical(name)  # raises ConfigError listing the valid names
    return canonical


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


# -------------------------------------------------------------------------------------------- cameras


class ReconnectConfig(_Section):
    """Capped exponential backoff between attempts to reopen a failed source."""

    initial_s: float = Field(default=1.0, gt=0, le=60, description="first delay before reopening, seconds")
    max_s: float = Field(
        default=5.0, gt=0, le=3600,
        description="the delay doubles up to this cap, seconds (an unreachable camera is also probed "
        "every 0.5 s and reopened as soon as it answers)",
    )

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be >= initial_s")
        return self


class SourceOptions(_Section):
    """Options of one camera source kind: its ``type`` key, the keyword arguments of its class."""

    #: the frame source class, ``module:attribute`` (imported on first use)
    implementation: ClassVar[str]


class ReplaySource(SourceOptions):
    """Frames from a video file or a folder of images (tests, demos, benchmarks)."""

    implementation: ClassVar[str] = "facegate.capture.replay:ReplaySource"

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

    implementation: ClassVar[str] = "facegate.capture.opencv:OpenCvSource"

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

    implementation: ClassVar[str] = "facegate.capture.picamera:PicameraSource"

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
        if self.lores_size[0] > self.main_size[0] or self.lores_size[1] > self.main_size[1]:
            raise ValueError("lores_size must not exceed main_size")
        return self


#: The one list of YAML camera sources: each options model carries its key (``type``) and its
#: ``implementation``; ``SOURCE_TYPES`` and the capture registry (``facegate.capture.registry``) are
#: built from this union, so a new source is one options model added here.
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


# ------------------------------------------------------------------------------------------ pipeline


class DetectorConfig(_Section):
    backend: str = Field(
        default="mediapipe",
        min_length=1,
        max_length=64,
        description="detector registry name: mediapipe (BlazeFace short range), mediapipe_full, opencv, "
        "mtcnn, dlib, skip, ...",
        json_schema_extra=_DETECTOR,
    )
    variant: str | None = Field(
        default=None,
        max_length=64,
        description="model variant such as int8 or fp32; null = the manifest's default",
        json_schema_extra=_DETECTOR,
    )
    score_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="minimum detection score", json_schema_extra=_DETECTOR
    )
    min_face_px: int = Field(
        default=32,
        ge=0,
        le=4096,
        description="drop detections whose box is narrower than this, pixels",
        json_schema_extra=_DETECTOR,
    )
    num_threads: int = Field(
        default=2, ge=1, le=8, description="TFLite interpreter threads", json_schema_extra=_DETECTOR
    )

    @field_validator("backend")
    @classmethod
    def _registered(cls, value: str) -> str:
        return _known_name("facegate.detectors.registry", "DETECTORS", value)


class RecognitionConfig(_Section):
    model_name: str = Field(
        default="Dlib",
        min_length=1,
        max_length=64,
        description="embedder registry name (DeepFace's model_name), e.g. Dlib",
        json_schema_extra=_EMBEDDER,
    )
    variant: str | None = Field(
        default=None,
        max_length=64,
        description="embedder variant such as int8 or fp32; null = the manifest's default",
        json_schema_extra=_EMBEDDER,
    )
    num_threads: int = Field(
        default=2, ge=1, le=8, description="TFLite interpreter threads", json_schema_extra=_EMBEDDER
    )
    distance_metric: Literal["cosine", "euclidean", "euclidean_l2", "angular"] = Field(
        default="euclidean", description="distance between embeddings", json_schema_extra=_LIVE
    )
    threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=4.0,
        description="a match needs distance <= threshold; null = the model manifest's value for the metric",
        json_schema_extra=_LIVE,
    )
    margin: float = Field(
        # the Dlib manifest's operating_point.open_set_margin (cross-validated: 1:N open-set false accept
        # 2.3% -> 0% at 97% genuine accept on ../shared/data, see README Accuracy)
        default=0.17,
        ge=0.0,
        le=2.0,
        description="the best person must beat the second best by this distance, else no name",
        json_schema_extra=_LIVE,
    )
    top_k: int = Field(default=3, ge=1, le=50, description="candidates reported per match", json_schema_extra=_LIVE)

    @field_validator("model_name")
    @classmethod
    def _registered(cls, value: str) -> str:
        return _known_name("facegate.embedders.registry", "EMBEDDERS", value)


class GatesConfig(_Section):
    """Quality gates between alignment and embedding: faces failing one are not embedded."""

    min_face_px: float = Field(
        default=20.0,
        ge=0.0,
        le=2000.0,
        description="minimum inter-ocular distance, source pixels",
        json_schema_extra=_LIVE,
    )
    min_sharpness: float = Field(
        default=5.0,
        ge=0.0,
        le=1e6,
        description="minimum variance of the Laplacian on the aligned chip",
        json_schema_extra=_LIVE,
    )
    max_yaw: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="maximum |yaw| estimate, 0 = frontal, 1 = profile",
        json_schema_extra=_LIVE,
    )


class DecisionConfig(_Section):
    """Tracking and voting: one event per appearance, never one per frame."""

    votes_required: int = Field(
        default=3,
        ge=1,
        le=100,
        description="agreeing frames needed to announce a recognized person",
        json_schema_extra=_LIVE,
    )
    window_s: float = Field(
        default=2.0,
        gt=0.0,
        le=60.0,
        description="votes older than this are forgotten, seconds (longer at a low frame rate, to hold the votes)",
        json_schema_extra=_LIVE,
    )
    unknown_votes: int = Field(
        default=6, ge=1, le=100, description="frames without a match before announcing unknown", json_schema_extra=_LIVE
    )
    cooldown_s: float = Field(
        default=30.0,
        ge=0.0,
        le=86400.0,
        description="no second event for the same person within this time, seconds",
        json_schema_extra=_LIVE,
    )
    track_iou: float = Field(
        default=0.3, gt=0.0, lt=1.0, description="minimum box IoU to continue a track", json_schema_extra=_LIVE
    )
    track_max_age_s: float = Field(
        default=1.0,
        gt=0.0,
        le=60.0,
        # 0.5 s separates people who follow each other closer, but breaks tracks when a slow device drops frames
        description="a track unseen for this long ends, seconds",
        json_schema_extra=_LIVE
    )


class GalleryConfig(_Section):
    path: ConfigPath | None = Field(default=None, description=f"SQLite gallery file; null = <state_dir>/{GALLERY_FILE}")
    store_face_images: bool = Field(
        default=False, description="keep the enrolment face crops in the gallery (biometric data: off by default)"
    )


# ---------------------------------------------------------------------------------------------- MQTT


class TlsConfig(_Section):
    enabled: bool = Field(default=False, description="connect with TLS")
    ca_file: ConfigPath | None = Field(default=None, description="CA bundle to verify the broker; null = system CAs")
    cert_file: ConfigPath | None = Field(default=None, description="client certificate (PEM) for mutual TLS")
    key_file: ConfigPath | None = Field(default=None, description="client private key (PEM) for mutual TLS")
    insecure: bool = Field(
        default=False, description="skip broker hostname verification (testing only; the chain is still verified)"
    )

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class SpoolConfig(_Section):
    """On-disk queue of events produced while the broker is unreachable."""

    path: ConfigPath | None = Field(default=None, description=f"SQLite spool file; null = <state_dir>/{SPOOL_FILE}")
    max_messages: int = Field(default=10000, ge=1, le=10_000_000, description="bound on spooled messages")
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=1 << 32, description="bound on spooled payload bytes")
    drop_policy: Literal["oldest", "newest"] = Field(
        default="oldest", description="which messages are dropped (and counted) when a bound is reached"
    )


class MqttConfig(_Section):
    enabled: bool = Field(default=True, description="publish to a broker (events are spooled while it is unreachable)")
    host: str = Field(default="localhost", min_length=1, max_length=253, description="broker host name or address")
    port: int | None = Field(default=None, ge=1, le=65535, description="broker port; null = 8883 with TLS, else 1883")
    client_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="MQTT client id; null = facegate-<device_id>",
    )
    username: str | None = Field(default=None, max_length=256, description="broker user name")
    password: SecretStr | None = Field(
        default=None,
        description="broker password; use '!credential NAME', '!secret_file PATH' or ${ENV}, never a literal",
    )
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS settings")
    require_tls: bool = Field(default=False, description="refuse to start with a plain-text broker connection")
    keepalive: int = Field(default=60, ge=5, le=3600, description="MQTT keepalive, seconds")
    reconnect: ReconnectConfig = Field(
        default_factory=lambda: ReconnectConfig(initial_s=1.0, max_s=60.0),
        description="backoff between reconnect attempts",
    )
    prefix: str = Field(
        default="facegate",
        max_length=128,
        pattern=TOPIC_PATTERN,
        description="topic prefix: topics are <prefix>/<device_id>/...; no wildcards, no empty levels",
    )
    qos: int = Field(default=1, ge=0, le=2, description="QoS of events and command results: 0, 1 or 2")
    spool: SpoolConfig = Field(default_factory=SpoolConfig, description="offline event spool")
    snapshots: bool = Field(default=False, description="also publish a JPEG crop per event (separate topic)")
    max_event_age_s: float = Field(
        default=5.0, gt=0, le=3600,
        description="events older than this when published (or re-sent) go to <base>/history, never to the live "
        "event topic Home Assistant triggers on",
    )
    frigate_compat: bool = Field(
        default=False,
        description="also publish Frigate's face messages: <frigate_prefix>/tracked_object_update and "
        "the recognised name as sub_label on <frigate_prefix>/events",
    )
    frigate_prefix: str = Field(
        default="frigate", max_length=128, pattern=TOPIC_PATTERN,
        description="Frigate's topic_prefix for frigate_compat (use another one when a real Frigate shares the broker)",
    )
    double_take: bool = Field(
        default=False,
        description="also publish Double Take's messages: <double_take_prefix>/matches/<name> and /cameras/<camera>",
    )
    double_take_prefix: str = Field(
        default="double-take", max_length=128, pattern=TOPIC_PATTERN, description="Double Take's topic prefix"
    )

    @model_validator(mode="after")
    def _tls_required(self) -> MqttConfig:
        if self.enabled and self.require_tls and not self.tls.enabled:
            raise ValueError("require_tls is set but tls.enabled is false")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 8883 if self.tls.enabled else 1883


class HomeAssistantConfig(_Section):
    enabled: bool = Field(default=True, description="publish Home Assistant MQTT discovery")
    discovery_prefix: str = Field(
        default="homeassistant",
        max_length=128,
        pattern=TOPIC_PATTERN,
        description="Home Assistant's discovery prefix (its birth message is <prefix>/status)",
    )


class SecurityConfig(_Section):
    """Remote commands and event signing. Secrets are read from systemd credentials or files at run
    time: the YAML names them, it never contains them."""

    commands_enabled: bool = Field(default=True, description="accept remote commands (config, gallery) over MQTT")
    command_secret_credential: CredentialName | None = Field(
        default="command_secret",
        description="systemd credential ($CREDENTIALS_DIRECTORY/<name>) holding the per-fleet HMAC secret",
    )
    command_secret_file: ConfigPath | None = Field(
        default=None, description="file holding the HMAC secret, used when the credential is absent"
    )
    allow_unsigned: bool = Field(default=False, description="accept unsigned commands (development only)")
    max_skew_s: float = Field(
        default=30.0, ge=1.0, le=3600.0, description="reject commands whose timestamp is further off, seconds"
    )
    sign_events: bool = Field(default=False, description="sign published events with the device key")
    event_key_credential: CredentialName | None = Field(
        default="event_key", description="systemd credential holding the device's event-signing key"
    )
    event_key_file: ConfigPath | None = Field(
        default=None, description="file holding the event-signing key, used when the credential is absent"
    )
    max_payload_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="commands larger than this are rejected before decoding",
    )
    commands_per_minute: int = Field(default=30, ge=1, le=6000, description="rate limit on accepted commands")
    max_image_pixels: int = Field(
        default=40_000_000,  # facegate.images.DEFAULT_MAX_PIXELS (not imported: config loads no OpenCV)
        ge=100_000,
        le=400_000_000,
        description="pixel cap on every decoded image (enrolment photos, replayed image folders): an image "
        "whose header announces more pixels is refused before decoding, except a JPEG, decoded at 1/2, 1/4 "
        "or 1/8 size when that fits; bounds memory on hostile input",
    )


# -------------------------------------------------------------------------------------- extras, ops


class AnalysisConfig(_Section):
    """Also accepts the YAML shorthand ``analysis: [emotion, age, gender]``."""

    actions: tuple[Literal["emotion", "age", "gender"], ...] = Field(
        default=(),
        description="attributes computed once per track and attached to events: emotion, age, gender",
        json_schema_extra=_ANALYSIS,
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"actions": value} if isinstance(value, (list, tuple)) else value

    @field_validator("actions", mode="before")
    @classmethod
    def _no_race(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if "race" in value:
                raise ValueError("'race' is not available: no redistributable race model exists offline")
            if len(set(map(str, value))) != len(value):
                raise ValueError("actions must not repeat")
        return value


class LivenessConfig(_Section):
    """Active 2-D liveness: a print or a screen is refused, a video replay of a blinking face is not.
    Also accepts the YAML shorthand ``liveness: blink``."""

    mode: Literal["off", "blink", "motion", "blink+motion"] = Field(
        default="off",
        description="liveness evidence a track needs before it can be recognized",
        json_schema_extra=_LIVENESS,
    )
    window_s: float = Field(
        default=3.0,
        gt=0.0,
        le=60.0,
        description="time a track has to show liveness, seconds",
        json_schema_extra=_LIVENESS,
    )
    blink_closed_ratio: float = Field(
        default=0.6,
        gt=0.05,
        lt=0.85,
        description="a blink is the eye aspect ratio dipping to this fraction of the track's own open-eye value",
        json_schema_extra=_LIVENESS,
    )
    blink_min_count: int = Field(
        default=1, ge=1, le=10, description="blinks needed within the window", json_schema_extra=_LIVENESS
    )
    motion_min_parallax: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="minimum relative 3-D parallax between landmarks across frames (a flat photo has ~0)",
        json_schema_extra=_LIVENESS,
    )
    on_fail: Literal["spoof", "undecided"] = Field(
        default="spoof",
        description="outcome for a track that fails: a 'spoof' event, or no event",
        json_schema_extra=_LIVENESS,
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"mode": value} if isinstance(value, (str, bool)) else value

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted `mode: off` as false
        return "off" if value is False else value


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
        default_factory=DetectorConfig, description="face detector backend and its options"
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


def runtime_settable_keys() -> tuple[RuntimeKey, ...]:
    """Every whitelisted key and whether changing it needs a rebuild."""
    keys: list[RuntimeKey] = []

    def walk(cls: type[BaseModel], prefix: str) -> None:
        for name, field in cls.model_fields.items():
            path = f"{prefix}{name}"
            marker = runtime_marker(field)
            if marker is not None:
                keys.append(RuntimeKey(path, marker))
            elif cls is CameraConfig and name == "source":
                for type_name, source_cls in SOURCE_TYPES.items():
                    walk(source_cls, f"{path}[{type_name}].")
            elif cls is FacegateConfig and name == "cameras":
                walk(CameraConfig, "cameras.<id>.")
            elif (sub := model_class(field.annotation)) is not None:
                walk(sub, f"{path}.")

    walk(FacegateConfig, "")
    return tuple(keys)


__all__ = [
    "LIVE",
    "SOURCE_OPTIONS",
    "SOURCE_TYPES",
    "AnalysisConfig",
    "CameraConfig",
    "ConfigPath",
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
    "SourceOptions",
    "SpoolConfig",
    "StatePaths",
    "StatsConfig",
    "TlsConfig",
    "default_state_dir",
    "model_class",
    "runtime_marker",
    "runtime_settable_keys",
]
