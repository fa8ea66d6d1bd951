"""JSON export and import of a gallery (backups, migration between devices).

The file is one JSON object::

    {"format": "facegate-gallery", "schema_version": 1, "exported_at": <unix time>,
     "exported_by": "<device id>", "people": [<PersonRecord>, ...]}

Each person is a :class:`~facegate.gallery.records.PersonRecord` (embeddings as base64 float32
little-endian, or as lists of numbers with ``vectors="list"``; both round-trip bit-exactly, so an
import into a new database gives identical match results). Tombstones are exported too, so that a
restored backup does not resurrect people deleted elsewhere in the fleet.

An import is untrusted input: it is validated with pydantic and applied in one transaction with the
fleet conflict rule (a person is replaced only by a record with a higher ``(version, updated_by)``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from facegate.atomic_file import atomic_write
from facegate.errors import GalleryError
from facegate.gallery.records import ApplyOutcome, PersonRecord

if TYPE_CHECKING:
    from facegate.gallery.store import SqliteGallery

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "facegate-gallery"
#: refuse import files above this size before parsing (a 100k-embedding export is ~70 MB)
MAX_IMPORT_BYTES = 1 << 30


class GalleryExport(BaseModel):
    """The export file (validated on import)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["facegate-gallery"] = "facegate-gallery"
    schema_version: Literal[1] = 1
    exported_at: float = Field(allow_inf_nan=False)
    exported_by: str = Field(max_length=128)
    people: list[PersonRecord]


@dataclass(frozen=True, slots=True)
class ImportReport:
    applied: int
    skipped: int  # records not newer than the local person
    ignored_embeddings: int  # embeddings of another model than the gallery's
    outcomes: tuple[ApplyOutcome, ...]

    def to_dict(self) -> dict[str, object]:
        return {"applied": self.applied, "skipped": self.skipped, "ignored_embeddings": self.ignored_embeddings}


def export_gallery(
    gallery: SqliteGallery,
    destination: str | os.PathLike[str] | IO[str],
    *,
    vectors: Literal["base64", "list"] = "base64",
    include_deleted: bool = True,
    include_images: bool = False,
) -> int:
    """Write the gallery to a path (atomically: temp file, fsync, rename) or a text file object.

    Returns the number of people written. Face images are included only with ``include_images``.
    """
    document = GalleryExport(
        exported_at=time.time(),
        exported_by=gallery.device_id,
        people=gallery.records(include_deleted=include_deleted, vectors=vectors, include_images=include_images),
    )
    text = document.model_dump_json()
    if isinstance(destination, (str, os.PathLike)):
        atomic_write(Path(destination), text.encode("utf-8"))
    else:
        destination.write(text)
    logger.info("exported %d people from %s", len(document.people), gallery.path)
    return len(document.people)


def _read_source(source: str | os.PathLike[str] | IO[str] | IO[bytes]) -> str | bytes:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > MAX_IMPORT_BYTES:
                raise GalleryError(f"gallery import {path} is {size} bytes, above the {MAX_IMPORT_BYTES} limit")
            return path.read_bytes()
        except OSError as err:
            raise GalleryError(f"cannot read gallery import {path}: {err}") from err
    data = source.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise GalleryError(f"gallery import is above the {MAX_IMPORT_BYTES} byte limit")
    return data


#: field problems named in an import error; the rest are counted
_MAX_LISTED_ERRORS = 3


def _problems(err: ValidationError) -> str:
    """``people.0.name: Field required; format: Input should be ...`` - one line, never the input."""
    errors = err.errors(include_url=False, include_input=False)
    listed = [f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in errors[:_MAX_LISTED_ERRORS]]
    more = len(errors) - len(listed)
    return "; ".join(listed) + (f" (and {more} more)" if more > 0 else "")


def parse_export(data: str | bytes, name: str = "gallery export") -> GalleryExport:
    """Validate an export document -> :class:`GalleryError` naming ``name`` and the first problems."""
    try:
        return GalleryExport.model_validate_json(data)
    except ValidationError as err:
        raise GalleryError(f"{name}: not a valid facegate gallery export: {_problems(err)}") from err
    except (ValueError, json.JSONDecodeError) as err:
        raise GalleryError(f"{name}: not a valid facegate gallery export: {err}") from err


def import_gallery(gallery: SqliteGallery, source: str | os.PathLike[str] | IO[str] | IO[bytes]) -> ImportReport:
    """Merge an export into ``gallery`` in one transaction (all people or none)."""
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "gallery export"
    document = parse_export(_read_source(source), name)
    ids = [p.person_id for p in document.people]
    if len(set(ids)) != len(ids):
        raise GalleryError(f"{name}: not a valid facegate gallery export: a person id appears twice")
    with gallery.transaction("import") as txn:
        outcomes = tuple(txn.apply_record(record) for record in document.people)
    applied = sum(o.applied for o in outcomes)
    report = ImportReport(
        applied=applied,
        skipped=len(outcomes) - applied,
        ignored_embeddings=sum(o.ignored_embeddings for o in outcomes),
        outcomes=outcomes,
    )
    logger.info("imported %d people into %s (%d not newer than the local copy)", applied, gallery.path, report.skipped)
    return report


__all__ = ["EXPORT_FORMAT", "GalleryExport", "ImportReport", "export_gallery", "import_gallery", "parse_export"]
