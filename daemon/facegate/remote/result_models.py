"""What the device publishes for the remote protocol: command results (every key present, ``null`` when
absent), their error codes and per-item outcomes, the retained config state and the signed fleet record."""

from __future__ import annotations

import typing
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from facegate.events.payloads import ID_PATTERN, TIME_PATTERN
from facegate.gallery.records import PersonRecord
from facegate.remote.command_models import SIG_PATTERN, CommandKind

#: Every error a command result can carry. A rejected command has changed nothing.
ErrorCode = Literal[
    "too_large",  # payload above security.max_payload_bytes; refused before decoding
    "malformed",  # not UTF-8 JSON, not an object, duplicate keys, NaN, too deeply nested
    "unsigned",  # no "sig" and allow_unsigned is off
    "no_secret",  # the device has no command secret to verify with
    "bad_signature",  # wrong secret, wrong topic, or the payload was altered
    "stale",  # ts outside the window, or signed before the daemon's replay window opened
    "replayed",  # nonce already used
    "busy",  # command queue full, or too many fresh nonces to remember (replay guard full); retry
    "rate_limited",  # token bucket empty; see retry_after_s
    "invalid",  # validation failed; see fields
    "not_found",  # unknown person
    "nothing_enrolled",  # no photo or embedding was acceptable; see result
    "unavailable",  # the device cannot do this (no gallery, no model, storage failure)
    "internal",  # unexpected failure (a bug); logged on the device
]
ERROR_CODES: tuple[str, ...] = typing.get_args(ErrorCode)

#: Outcome of one photo or embedding of an enrolment.
ItemOutcome = Literal[
    "ok", "no_face", "several_faces", "low_quality", "outlier", "duplicate", "bad_image", "invalid", "model_mismatch"
]


class FieldErrorPayload(BaseModel):
    """One field-level problem: ``loc`` is a dotted path into the command (``photos[0].image``,
    ``patch.recognition.threshold``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True,
                              defer_build=True)

    loc: str = Field(max_length=512)
    msg: str = Field(max_length=1024)
    type: str = Field(max_length=64)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True,
                              defer_build=True)


class ErrorPayload(_Out):
    code: ErrorCode = Field(description="machine-readable reason; the command changed nothing")
    message: str = Field(max_length=2048, description="human-readable explanation")
    fields: list[FieldErrorPayload] = Field(default_factory=list, description="field-level problems")
    retry_after_s: float | None = Field(default=None, ge=0, description="for rate_limited: when to retry")


class CommandResultPayload(_Out):
    """Published (QoS 1, not retained) on the command's result topic."""

    schema_version: Literal[1] = 1
    request_id: str | None = Field(description="the command's request_id; null if it could not be read")
    command: CommandKind
    device_id: str = Field(pattern=ID_PATTERN)
    time: str = Field(pattern=TIME_PATTERN, json_schema_extra={"format": "date-time"})
    ok: bool
    error: ErrorPayload | None = Field(default=None, description="set when ok is false")


class ConfigSetOutcome(_Out):
    changed: list[str] = Field(description="keys whose effective value changed")
    rebuild: list[str] = Field(description="pipeline parts rebuilt for the change (camera:<id>, detector, ...)")
    dry_run: bool


class ConfigSetResult(CommandResultPayload):
    command: Literal["config/set"] = "config/set"
    result: ConfigSetOutcome | None = None


class RuntimeKeyPayload(_Out):
    key: str
    effect: str = Field(description="'live' or 'rebuild:<component>'")


class ConfigGetOutcome(_Out):
    config: dict[str, JsonValue] = Field(description="effective configuration, secrets redacted")
    overrides: dict[str, JsonValue] = Field(description="the runtime overlay (remote changes) on top of the YAML")
    runtime_keys: list[RuntimeKeyPayload] = Field(description="what config/set may change")


class ConfigGetResult(CommandResultPayload):
    command: Literal["config/get"] = "config/get"
    result: ConfigGetOutcome | None = None


class ItemReport(_Out):
    """Outcome of one photo or embedding of an enrolment."""

    index: int = Field(ge=0, description="position in the command's photos/embeddings list")
    label: str
    outcome: ItemOutcome
    detail: str = ""
    faces: int | None = Field(default=None, description="faces found in a photo")
    quality: float | None = Field(default=None, description="0..1 quality score of the face")
    distance: float | None = Field(default=None, description="for outliers: distance to the person's medoid")


class EnrollOutcome(_Out):
    person_id: str
    name: str
    version: int | None = Field(description="the person's version after the enrolment; null if nothing stored")
    created: bool
    stored: int = Field(ge=0, description="embeddings stored")
    photos: list[ItemReport]
    embeddings: list[ItemReport]


class GalleryEnrollResult(CommandResultPayload):
    command: Literal["gallery/enroll"] = "gallery/enroll"
    result: EnrollOutcome | None = None


class RemoveOutcome(_Out):
    person_id: str
    version: int = Field(description="version of the tombstone")


class GalleryRemoveResult(CommandResultPayload):
    command: Literal["gallery/remove"] = "gallery/remove"
    result: RemoveOutcome | None = None


class RenameOutcome(_Out):
    person_id: str
    name: str
    version: int


class GalleryRenameResult(CommandResultPayload):
    command: Literal["gallery/rename"] = "gallery/rename"
    result: RenameOutcome | None = None


class PersonPayload(_Out):
    person_id: str
    name: str
    metadata: dict[str, JsonValue]
    version: int
    updated_at: float
    updated_by: str
    deleted: bool
    model_ids: list[str]
    embeddings: int


class ListOutcome(_Out):
    revision: int = Field(description="gallery revision (increases with every change)")
    people: list[PersonPayload]


class GalleryListResult(CommandResultPayload):
    command: Literal["gallery/list"] = "gallery/list"
    result: ListOutcome | None = None


RESULT_MODELS: dict[CommandKind, type[CommandResultPayload]] = {
    "config/set": ConfigSetResult,
    "config/get": ConfigGetResult,
    "gallery/enroll": GalleryEnrollResult,
    "gallery/remove": GalleryRemoveResult,
    "gallery/rename": GalleryRenameResult,
    "gallery/list": GalleryListResult,
}


# ------------------------------------------------------------------------------------ state and fleet


class ConfigStatePayload(_Out):
    """Retained on ``<prefix>/<device_id>/config/state``: the effective configuration, secrets redacted."""

    schema_version: Literal[1] = 1
    device_id: str = Field(pattern=ID_PATTERN)
    time: str = Field(pattern=TIME_PATTERN, json_schema_extra={"format": "date-time"})
    config: dict[str, JsonValue]
    overrides: dict[str, JsonValue]


class FleetMessage(BaseModel):
    """Retained on ``<prefix>/fleet/<fleet_id>/gallery/<person_id>``: one person's record, signed with the
    fleet secret. A deleted person is a tombstone record (``deleted``, no embeddings)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    schema_version: Literal[1] = 1
    origin: str = Field(pattern=ID_PATTERN, description="device that published this message")
    record: PersonRecord
    sig: str | None = Field(default=None, pattern=SIG_PATTERN, description="HMAC-SHA256 with the fleet secret")



__all__ = [
    "ERROR_CODES",
    "RESULT_MODELS",
    "CommandResultPayload",
    "ConfigGetOutcome",
    "ConfigGetResult",
    "ConfigSetOutcome",
    "ConfigSetResult",
    "ConfigStatePayload",
    "EnrollOutcome",
    "ErrorCode",
    "ErrorPayload",
    "FieldErrorPayload",
    "FleetMessage",
    "GalleryEnrollResult",
    "GalleryListResult",
    "GalleryRemoveResult",
    "GalleryRenameResult",
    "ItemOutcome",
    "ItemReport",
    "ListOutcome",
    "PersonPayload",
    "RemoveOutcome",
    "RenameOutcome",
    "RuntimeKeyPayload",
]
