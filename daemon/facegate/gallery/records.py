"""Values of the gallery: person ids, enrolment items and reports, and the person record.

The :class:`PersonRecord` is what crosses trust boundaries (fleet sync over MQTT, JSON export/import),
so it is a strict pydantic model; everything used in-process is a frozen dataclass.

Fleet conflict rule: of two records of one person, the one with the higher ``(version, updated_by)``
wins, compared as an integer and then as a string (so two devices that both bump a person to the
same version converge on the record of the device whose id sorts last). Every local change bumps
``version`` by one and stamps ``updated_by`` with the device id; a delete is a change too (a tombstone
with no embeddings), so a delete beats the enrolment it follows and loses to a later re-enrolment.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from facegate.errors import GalleryError
from facegate.types import Embedding, FloatArray

PERSON_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_PERSON_ID_RE = re.compile(PERSON_ID_PATTERN)
MAX_NAME_CHARS = 200
#: serialised metadata per person, bytes
MAX_METADATA_BYTES = 16 * 1024
MAX_DIM = 4096
MAX_EMBEDDINGS_PER_RECORD = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_person_id(value: object) -> str:
    """``value`` if it is a valid person id (``[a-z0-9][a-z0-9_-]{0,63}``; it becomes an MQTT topic level)."""
    if not isinstance(value, str) or not _PERSON_ID_RE.fullmatch(value):
        raise GalleryError(
            f"invalid person id {value!r}: use 1-64 characters a-z, 0-9, '_' or '-', starting with a letter or digit"
        )
    return value


def validate_name(value: object) -> str:
    """A display name: free text, stripped, 1-200 characters, no control characters."""
    if not isinstance(value, str):
        raise GalleryError(f"person name must be a string, got {type(value).__name__}")
    name = value.strip()
    if not name or len(name) > MAX_NAME_CHARS or _CONTROL.search(name):
        raise GalleryError(f"invalid person name {value!r}: 1-{MAX_NAME_CHARS} characters, no control characters")
    return name


def slugify(text: str) -> str:
    """A person id derived from a display name or folder name (``"Angelina Jolie"`` -> ``"angelina-jolie"``).

    Non-ASCII letters are transliterated where Unicode allows; text with no usable characters gets an
    id derived from its hash, so every name maps to some valid id.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9_]+", "-", ascii_text).strip("-_")[:64].rstrip("-_")
    if not slug:
        import hashlib

        slug = "p-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return slug


def encode_metadata(metadata: Mapping[str, Any] | None) -> str:
    """Canonical JSON text of a metadata mapping (``{}`` for ``None``)."""
    if metadata is None:
        return "{}"
    if not isinstance(metadata, Mapping):
        raise GalleryError(f"person metadata must be a mapping, got {type(metadata).__name__}")
    try:
        text = json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise GalleryError(f"person metadata is not JSON-serialisable: {err}") from err
    if len(text.encode("utf-8")) > MAX_METADATA_BYTES:
        raise GalleryError(f"person metadata exceeds {MAX_METADATA_BYTES} bytes")
    return text


_M = TypeVar("_M", bound=Mapping[str, Any] | None)


def check_metadata(value: _M) -> _M:
    """``value`` unchanged when :func:`encode_metadata` takes it, else ``ValueError`` (pydantic validators)."""
    try:
        encode_metadata(value)
    except GalleryError as err:
        raise ValueError(str(err)) from err
    return value


def vector_to_blob(vector: FloatArray) -> bytes:
    """float32 little-endian bytes of a ``(D,)`` vector (the storage format, never pickle)."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def blob_to_vector(blob: bytes, dim: int) -> FloatArray:
    if len(blob) != 4 * dim:
        raise GalleryError(f"stored vector has {len(blob)} bytes, expected {4 * dim} for dim {dim}")
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def check_vector(vector: FloatArray, what: str) -> FloatArray:
    """A finite, non-zero ``(D,)`` float32 vector, else :class:`GalleryError`."""
    v = np.asarray(vector, dtype=np.float32)
    if v.ndim != 1 or not 0 < v.shape[0] <= MAX_DIM:
        raise GalleryError(f"{what}: embedding must be a 1-d vector of 1-{MAX_DIM} values, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise GalleryError(f"{what}: embedding contains NaN or infinity")
    if not np.any(v):
        raise GalleryError(f"{what}: embedding is the zero vector")
    return v


# -- in-process values ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnrollItem:
    """One embedding to enrol with its provenance.

    ``face_image`` (encoded JPEG/PNG bytes) is stored only when the gallery was opened with
    ``store_face_images=True``; ``source_path`` is set by the folder sync; ``label`` names the item
    in reports (e.g. the file name).
    """

    embedding: Embedding
    detector: str = ""
    alignment: str = ""
    quality: float | None = None
    source_sha256: str | None = None
    source_path: str | None = None
    label: str = ""
    face_image: bytes | None = None


@dataclass(frozen=True, slots=True)
class StoredItem:
    index: int  # position in the enrol call's list
    embedding_id: int
    label: str = ""


@dataclass(frozen=True, slots=True)
class RejectedItem:
    index: int
    reason: str  # "outlier" or "duplicate"
    detail: str
    distance: float | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class EnrollReport:
    """Outcome of one enrolment: what was stored, what was refused and why."""

    person_id: str
    name: str
    version: int
    created: bool
    stored: tuple[StoredItem, ...]
    rejected: tuple[RejectedItem, ...]
    replaced: int = 0  # embeddings removed by replace=True

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "replaced": self.replaced,
            "stored": [{"index": s.index, "embedding_id": s.embedding_id, "label": s.label} for s in self.stored],
            "rejected": [
                {"index": r.index, "reason": r.reason, "detail": r.detail, "distance": r.distance, "label": r.label}
                for r in self.rejected
            ],
        }


@dataclass(frozen=True, slots=True)
class Person:
    person_id: str
    name: str
    metadata: Mapping[str, Any]
    version: int
    updated_at: float
    updated_by: str
    deleted: bool
    model_ids: tuple[str, ...] = ()
    embedding_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "name": self.name,
            "metadata": dict(self.metadata),
            "version": self.version,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "deleted": self.deleted,
            "model_ids": list(self.model_ids),
            "embeddings": self.embedding_count,
        }


@dataclass(frozen=True, slots=True)
class StoredEmbedding:
    id: int
    person_id: str
    model_id: str
    detector: str
    alignment: str
    vector: FloatArray = field(repr=False)
    source_sha256: str | None
    source_path: str | None
    quality: float | None
    created_at: float
    has_face_image: bool

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])

    def embedding(self) -> Embedding:
        return Embedding(self.vector, self.model_id)


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    """What :meth:`SqliteGallery.apply_record` did with a fleet record."""

    person_id: str
    applied: bool
    reason: str  # "applied", "stale", "same"
    stored: int = 0
    ignored_embeddings: int = 0


# -- trust-boundary models ------------------------------------------------------------------------

_HEX64 = r"^[0-9a-f]{64}$"


class EmbeddingRecord(BaseModel):
    """One embedding in a record: ``vector`` is base64 float32 little-endian, or a list of numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: str = Field(min_length=1, max_length=128)
    dim: int = Field(gt=0, le=MAX_DIM)
    vector: str | list[float] = Field(description="base64 of float32 little-endian values, or a list")
    detector: str = Field(default="", max_length=128)
    alignment: str = Field(default="", max_length=128)
    quality: float | None = Field(default=None, allow_inf_nan=False)
    source_sha256: str | None = Field(default=None, pattern=_HEX64)
    created_at: float = Field(default=0.0, allow_inf_nan=False)
    face_image: str | None = Field(default=None, description="base64 JPEG/PNG, only if the owner opted in")

    @model_validator(mode="after")
    def _check_vector(self) -> EmbeddingRecord:
        values = self.array()
        if values.shape[0] != self.dim:
            raise ValueError(f"vector has {values.shape[0]} values, dim says {self.dim}")
        if not np.all(np.isfinite(values)) or not np.any(values):
            raise ValueError("vector contains NaN/infinity or is all zeros")
        return self

    def array(self) -> FloatArray:
        """The vector as ``(dim,)`` float32."""
        if isinstance(self.vector, list):
            with np.errstate(over="ignore"):  # out-of-range values become inf and are refused below
                return np.asarray(self.vector, dtype=np.float64).astype(np.float32)
        try:
            raw = base64.b64decode(self.vector, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"vector is not valid base64: {err}") from err
        if len(raw) % 4:
            raise ValueError("base64 vector length is not a multiple of 4 bytes")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)

    def face_image_bytes(self) -> bytes | None:
        if self.face_image is None:
            return None
        try:
            return base64.b64decode(self.face_image, validate=True)
        except (binascii.Error, ValueError) as err:
            raise GalleryError(f"face image is not valid base64: {err}") from err

    @classmethod
    def encode(
        cls,
        stored: StoredEmbedding,
        *,
        vectors: Literal["base64", "list"] = "base64",
        face_image: bytes | None = None,
    ) -> EmbeddingRecord:
        vector: str | list[float]
        if vectors == "list":
            vector = [float(x) for x in stored.vector]  # float32 -> float64 repr round-trips exactly
        else:
            vector = base64.b64encode(vector_to_blob(stored.vector)).decode("ascii")
        return cls(
            model_id=stored.model_id,
            dim=stored.dim,
            vector=vector,
            detector=stored.detector,
            alignment=stored.alignment,
            quality=stored.quality,
            source_sha256=stored.source_sha256,
            created_at=stored.created_at,
            face_image=base64.b64encode(face_image).decode("ascii") if face_image is not None else None,
        )


class PersonRecord(BaseModel):
    """A person as one self-contained, versioned record (fleet sync, export/import).

    A tombstone (``deleted``) carries no embeddings. All embeddings of a record share one model id.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    person_id: str = Field(pattern=PERSON_ID_PATTERN)
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    version: int = Field(ge=0)
    updated_at: float = Field(allow_inf_nan=False)
    updated_by: str = Field(min_length=1, max_length=128)
    deleted: bool = False
    embeddings: list[EmbeddingRecord] = Field(default_factory=list, max_length=MAX_EMBEDDINGS_PER_RECORD)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        try:
            return validate_name(value)
        except GalleryError as err:
            raise ValueError(str(err)) from err

    @field_validator("metadata")
    @classmethod
    def _check_metadata(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        return check_metadata(value)

    @model_validator(mode="after")
    def _check_consistency(self) -> PersonRecord:
        if self.deleted and self.embeddings:
            raise ValueError("a deleted person's record carries no embeddings")
        models = {e.model_id for e in self.embeddings}
        if len(models) > 1:
            raise ValueError(f"one record mixes model ids {sorted(models)}")
        return self

    @property
    def order_key(self) -> tuple[int, str]:
        """The conflict-rule key: higher wins."""
        return (self.version, self.updated_by)


__all__ = [
    "MAX_NAME_CHARS",
    "PERSON_ID_PATTERN",
    "ApplyOutcome",
    "EmbeddingRecord",
    "EnrollItem",
    "EnrollReport",
    "Person",
    "PersonRecord",
    "RejectedItem",
    "StoredEmbedding",
    "StoredItem",
    "blob_to_vector",
    "check_metadata",
    "check_vector",
    "encode_metadata",
    "slugify",
    "validate_name",
    "validate_person_id",
    "vector_to_blob",
]
