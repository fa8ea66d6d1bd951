"""The remote commands (a trust boundary, hence pydantic): strict models, unknown keys refused, types never
coerced (``"yes"`` is not a boolean, ``"3"`` is not a number); the command kinds and the patterns of the
fields every command carries."""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from facegate.errors import GalleryError
from facegate.gallery.records import MAX_DIM, MAX_NAME_CHARS, PERSON_ID_PATTERN, check_metadata, validate_name

REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
NONCE_PATTERN = r"^[A-Za-z0-9_-]{16,128}$"
SIG_PATTERN = r"^[0-9a-f]{64}$"

CommandKind = Literal["config/set", "config/get", "gallery/enroll", "gallery/remove", "gallery/rename", "gallery/list"]
COMMAND_KINDS: tuple[CommandKind, ...] = typing.get_args(CommandKind)

MAX_PHOTOS = 10
MAX_EMBEDDINGS = 100
MAX_LABEL_CHARS = 128
#: largest face number a photo may name (detectors report far fewer faces per photo)
MAX_FACE_INDEX = 99
#: base64 text of a float32 vector of MAX_DIM values
_MAX_VECTOR_B64 = (4 * MAX_DIM + 2) // 3 * 4


class _Strict(BaseModel):
    # defer_build: validators are built on the first command, not at import (memory of a daemon that
    # never receives one)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False, defer_build=True)


class Command(_Strict):
    """Fields every command carries."""

    request_id: str = Field(
        pattern=REQUEST_ID_PATTERN, description="chosen by the sender, echoed in the result (1-64 characters)"
    )
    ts: float | None = Field(default=None, description="UNIX time in seconds when signed; required with sig")
    nonce: str | None = Field(
        default=None, pattern=NONCE_PATTERN, description="random, >= 96 bits, never reused; required with sig"
    )
    sig: str | None = Field(
        default=None,
        pattern=SIG_PATTERN,
        description="HMAC-SHA256 (hex) over the canonical command, see the README; required unless the "
        "device allows unsigned commands",
    )


class ConfigSetCommand(Command):
    """``<prefix>/<device_id>/config/set``: change runtime-settable keys (a JSON merge patch)."""

    patch: dict[str, JsonValue] = Field(
        description="JSON merge patch of runtime-settable keys (null resets a key to its default); cameras are "
        'addressed by id: {"cameras": {"door": {"enabled": false}}}'
    )
    dry_run: bool = Field(default=False, description="validate and report the effect without applying")


class ConfigGetCommand(Command):
    """``<prefix>/<device_id>/config/get``: return the effective configuration (secrets redacted)."""


class PhotoInput(_Strict):
    image: str = Field(
        min_length=4,
        description="base64 JPEG or PNG (a data:image/...;base64, prefix is allowed); never a path or URL",
    )
    label: str = Field(default="", max_length=MAX_LABEL_CHARS, description="name reported back (e.g. the file name)")
    face_index: int | None = Field(
        default=None, ge=0, le=MAX_FACE_INDEX,
        description="which face of a photo with several (0 = largest; the numbers `facegate detect --draw` "
                    "shows, as `facegate enroll --face N`); null = the photo must show exactly one face",
    )


class EmbeddingInput(_Strict):
    model_id: str = Field(min_length=1, max_length=128, description="model that produced the vector")
    vector: Annotated[list[float], Field(min_length=1, max_length=MAX_DIM)] | Annotated[
        str, Field(min_length=4, max_length=_MAX_VECTOR_B64)
    ] = Field(description="the embedding: a list of numbers, or base64 of float32 little-endian values")
    label: str = Field(default="", max_length=MAX_LABEL_CHARS, description="name reported back")


def _name(value: str) -> str:
    try:
        return validate_name(value)
    except GalleryError as err:
        raise ValueError("1-200 characters, no control characters") from err


class GalleryEnrollCommand(Command):
    """``<prefix>/<device_id>/gallery/enroll``: add photos and/or embeddings to a person (created if new).

    Each photo must show exactly one face of sufficient quality, or name one with ``face_index``. The
    accepted items are stored in one transaction (all or nothing); rejected ones are reported per item.
    If none is acceptable the command fails with ``nothing_enrolled`` and changes nothing.
    """

    person_id: str = Field(pattern=PERSON_ID_PATTERN, description="gallery id: [a-z0-9][a-z0-9_-]{0,63}")
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS, description="display name")
    photos: list[PhotoInput] = Field(default_factory=list, max_length=MAX_PHOTOS, description="photos to embed")
    embeddings: list[EmbeddingInput] = Field(
        default_factory=list, max_length=MAX_EMBEDDINGS, description="precomputed embeddings"
    )
    metadata: dict[str, JsonValue] | None = Field(default=None, description="free JSON; null keeps the current one")
    replace: bool = Field(default=False, description="delete the person's current embeddings first")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _name(value)

    @field_validator("metadata")
    @classmethod
    def _check_metadata(cls, value: dict[str, JsonValue] | None) -> dict[str, JsonValue] | None:
        return check_metadata(value)

    @model_validator(mode="after")
    def _something(self) -> GalleryEnrollCommand:
        if not self.photos and not self.embeddings:
            raise ValueError("give at least one photo or embedding")
        return self


class GalleryRemoveCommand(Command):
    """``<prefix>/<device_id>/gallery/remove``: delete a person (a tombstone propagates to the fleet)."""

    person_id: str = Field(pattern=PERSON_ID_PATTERN)


class GalleryRenameCommand(Command):
    """``<prefix>/<device_id>/gallery/rename``: change a person's display name."""

    person_id: str = Field(pattern=PERSON_ID_PATTERN)
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _name(value)


class GalleryListCommand(Command):
    """``<prefix>/<device_id>/gallery/list``: list the enrolled people (no embeddings)."""

    include_deleted: bool = Field(default=False, description="also list tombstones")


COMMAND_MODELS: dict[CommandKind, type[Command]] = {
    "config/set": ConfigSetCommand,
    "config/get": ConfigGetCommand,
    "gallery/enroll": GalleryEnrollCommand,
    "gallery/remove": GalleryRemoveCommand,
    "gallery/rename": GalleryRenameCommand,
    "gallery/list": GalleryListCommand,
}



__all__ = [
    "COMMAND_KINDS",
    "COMMAND_MODELS",
    "MAX_EMBEDDINGS",
    "MAX_FACE_INDEX",
    "MAX_LABEL_CHARS",
    "MAX_PHOTOS",
    "NONCE_PATTERN",
    "REQUEST_ID_PATTERN",
    "SIG_PATTERN",
    "Command",
    "CommandKind",
    "ConfigGetCommand",
    "ConfigSetCommand",
    "EmbeddingInput",
    "GalleryEnrollCommand",
    "GalleryListCommand",
    "GalleryRemoveCommand",
    "GalleryRenameCommand",
    "PhotoInput",
]
