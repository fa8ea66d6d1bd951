"""The face gallery: SQLite store, enrolment screening, export/import and folder sync.

``from facegate.gallery import SqliteGallery, EnrollItem`` is the usual entry point; the folder sync
(:mod:`facegate.gallery.folder_sync`) and JSON exchange (:mod:`facegate.gallery.exchange`) are imported
from their modules.
"""

from __future__ import annotations

from facegate.gallery.outliers import OutlierPolicy
from facegate.gallery.records import (
    ApplyOutcome,
    EnrollItem,
    EnrollReport,
    Person,
    PersonRecord,
    RejectedItem,
    StoredEmbedding,
    StoredItem,
    slugify,
    validate_person_id,
)
from facegate.gallery.store import SqliteGallery

__all__ = [
    "ApplyOutcome",
    "EnrollItem",
    "EnrollReport",
    "OutlierPolicy",
    "Person",
    "PersonRecord",
    "RejectedItem",
    "SqliteGallery",
    "StoredEmbedding",
    "StoredItem",
    "slugify",
    "validate_person_id",
]
