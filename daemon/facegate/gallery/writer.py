"""The write operations of one gallery transaction: enrolment (model binding, duplicate and outlier
screening), removal as a tombstone, rename, metadata, fleet records (the conflict rule of
:mod:`facegate.gallery.records`), folder-sync file states.

Split from :mod:`facegate.gallery.store`, which opens the transaction (``BEGIN IMMEDIATE``), bumps the
revision when the writer changed something and commits; a :class:`GalleryWriter` only runs statements
on that connection.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from facegate.errors import GalleryError
from facegate.gallery.outliers import OutlierPolicy, find_outliers
from facegate.gallery.records import (
    ApplyOutcome,
    EnrollItem,
    EnrollReport,
    Person,
    PersonRecord,
    RejectedItem,
    StoredEmbedding,
    StoredItem,
    check_vector,
    encode_metadata,
    validate_name,
    validate_person_id,
    vector_to_blob,
)
from facegate.gallery.schema import EMBEDDING_COLUMNS, PERSON_COLUMNS, FileState, embedding_from_row, person_from_row
from facegate.types import Embedding, FloatArray

if TYPE_CHECKING:
    from facegate.gallery.store import SqliteGallery

#: log records keep the store's logger name (journal filters written before the split still match)
logger = logging.getLogger("facegate.gallery.store")


class GalleryWriter:
    """The operations of one write transaction (see :meth:`SqliteGallery.transaction`).

    Several operations in one ``with gallery.transaction(...)`` block commit together or not at all.
    """

    def __init__(self, gallery: SqliteGallery, conn: sqlite3.Connection) -> None:
        self._gallery = gallery
        self._conn = conn
        #: set when people or embeddings changed: the gallery revision is bumped at commit
        self.dirty = False

    # -- reads inside the transaction ----------------------------------------------------------
    def person(self, person_id: str) -> Person | None:
        """The person's row, including a tombstone, or ``None``."""
        row = self._conn.execute(f"SELECT {PERSON_COLUMNS} FROM people WHERE person_id = ?", (person_id,)).fetchone()
        return person_from_row(row) if row else None

    def _person_embeddings(self, person_id: str) -> list[StoredEmbedding]:
        rows = self._conn.execute(
            f"SELECT {EMBEDDING_COLUMNS} FROM embeddings WHERE person_id = ? ORDER BY id", (person_id,)
        ).fetchall()
        return [embedding_from_row(r) for r in rows]

    def _check_model(self, model_id: str, dim: int) -> None:
        bound = self._gallery.model_id
        if bound is not None and model_id != bound:
            raise GalleryError(
                f"gallery {self._gallery.path} holds model {bound!r}; refusing embeddings of model {model_id!r}"
            )
        row = self._conn.execute("SELECT dim FROM embeddings WHERE model_id = ? LIMIT 1", (model_id,)).fetchone()
        if row is not None and int(row[0]) != dim:
            raise GalleryError(f"model {model_id!r} has {row[0]}-d embeddings in this gallery; got {dim}-d")

    # -- writes --------------------------------------------------------------------------------
    def _put_person(
        self,
        person_id: str,
        name: str,
        metadata_json: str,
        version: int,
        *,
        updated_at: float | None = None,
        updated_by: str | None = None,
        deleted: bool = False,
    ) -> None:
        self._conn.execute(
            f"INSERT INTO people ({PERSON_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (person_id) DO UPDATE SET name = excluded.name, metadata = excluded.metadata, "
            "version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by, "
            "deleted = excluded.deleted",
            (
                person_id,
                name,
                metadata_json,
                version,
                time.time() if updated_at is None else updated_at,
                self._gallery.device_id if updated_by is None else updated_by,
                int(deleted),
            ),
        )
        self.dirty = True

    def _insert_embedding(self, person_id: str, item: EnrollItem, vector: FloatArray, created_at: float) -> int:
        image = item.face_image if self._gallery.store_face_images else None
        cur = self._conn.execute(
            "INSERT INTO embeddings (person_id, model_id, detector, alignment, dim, vector, source_sha256, "
            "source_path, quality, created_at, face_image) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                person_id,
                item.embedding.model_id,
                item.detector,
                item.alignment,
                int(vector.shape[0]),
                vector_to_blob(vector),
                item.source_sha256,
                item.source_path,
                None if item.quality is None else float(item.quality),
                created_at,
                image,
            ),
        )
        self.dirty = True
        return int(cur.lastrowid or 0)

    def _live(self, person_id: str) -> Person:
        pid = validate_person_id(person_id)
        person = self.person(pid)
        if person is None or person.deleted:
            raise GalleryError(f"unknown person {pid!r}")
        return person

    def enroll(
        self,
        person_id: str,
        name: str,
        embeddings: Sequence[EnrollItem],
        metadata: Mapping[str, Any] | None = None,
        replace: bool = False,
        *,
        outliers: OutlierPolicy | None = None,
        drop_sources: Sequence[str] = (),
    ) -> EnrollReport:
        """See :meth:`SqliteGallery.enroll`. ``drop_sources`` first removes the person's embeddings
        whose ``source_path`` is listed (a changed file in the folder sync)."""
        pid = validate_person_id(person_id)
        display = validate_name(name)
        items = list(embeddings)
        if not items and not drop_sources:
            raise GalleryError(f"nothing to enrol for {pid!r}: no embeddings")
        vectors = [check_vector(it.embedding.vector, f"{pid} item {i}") for i, it in enumerate(items)]
        models = {it.embedding.model_id for it in items}
        if len(models) > 1:
            raise GalleryError(f"one enrolment mixes model ids {sorted(models)}; enrol each model separately")
        dims = {int(v.shape[0]) for v in vectors}
        if len(dims) > 1:
            raise GalleryError(f"one enrolment mixes embedding dimensions {sorted(dims)}")
        meta_json = encode_metadata(metadata) if metadata is not None else None
        policy = outliers if outliers is not None else self._gallery.outliers

        row = self.person(pid)
        live = row is not None and not row.deleted
        if drop_sources and live:
            marks = ",".join("?" * len(drop_sources))
            cur = self._conn.execute(
                f"DELETE FROM embeddings WHERE person_id = ? AND source_path IN ({marks})", (pid, *drop_sources)
            )
            self.dirty = self.dirty or cur.rowcount > 0
        existing = self._person_embeddings(pid) if live and not replace else []
        if items:
            model_id = items[0].embedding.model_id
            self._check_model(model_id, vectors[0].shape[0])
            foreign = sorted({e.model_id for e in existing} - {model_id})
            if foreign:
                raise GalleryError(
                    f"person {pid!r} has embeddings of model {foreign[0]!r}; refusing to mix in model "
                    f"{model_id!r} (use replace=True to re-enrol with the new model)"
                )

        rejected: list[RejectedItem] = []
        known_hashes = {e.source_sha256 for e in existing if e.source_sha256}
        fresh: list[int] = []
        for i, it in enumerate(items):
            if it.source_sha256 and it.source_sha256 in known_hashes:
                rejected.append(RejectedItem(i, "duplicate", "this photo is already enrolled", None, it.label))
                continue
            if it.source_sha256:
                known_hashes.add(it.source_sha256)
            fresh.append(i)
        if fresh:
            old = (
                np.stack([e.vector for e in existing]) if existing else np.zeros((0, vectors[0].shape[0]), np.float32)
            )
            verdicts = find_outliers(
                old, np.stack([vectors[i] for i in fresh]), policy, [items[i].quality for i in fresh]
            )
            refused = {fresh[v.index]: v for v in verdicts}
            for i, v in sorted(refused.items()):
                rejected.append(RejectedItem(i, "outlier", v.detail, v.distance, items[i].label))
            fresh = [i for i in fresh if i not in refused]

        changed_meta = meta_json is not None and (row is None or meta_json != encode_metadata(row.metadata))
        if not fresh and live and row is not None and display == row.name and not changed_meta and not replace:
            version = row.version
            if self.dirty:  # only dropped sources: still a change of the person
                version += 1
                self._put_person(pid, row.name, encode_metadata(row.metadata), version)
            return EnrollReport(pid, row.name, version, False, (), tuple(sorted(rejected, key=lambda r: r.index)))

        replaced = 0
        if replace and row is not None:
            replaced = self._conn.execute("DELETE FROM embeddings WHERE person_id = ?", (pid,)).rowcount
        version = row.version + 1 if row is not None else 1
        if meta_json is None:
            meta_json = encode_metadata(row.metadata) if row is not None and live else "{}"
        self._put_person(pid, display, meta_json, version)
        now = time.time()
        stored = tuple(
            StoredItem(i, self._insert_embedding(pid, items[i], vectors[i], now), items[i].label) for i in fresh
        )
        return EnrollReport(
            person_id=pid,
            name=display,
            version=version,
            created=not live,
            stored=stored,
            rejected=tuple(sorted(rejected, key=lambda r: r.index)),
            replaced=replaced,
        )

    def remove(self, person_id: str) -> int:
        """Tombstone the person and delete their embeddings; returns the tombstone's version."""
        person = self._live(person_id)
        self._conn.execute("DELETE FROM embeddings WHERE person_id = ?", (person.person_id,))
        self._put_person(person.person_id, person.name, "{}", person.version + 1, deleted=True)
        return person.version + 1

    def rename(self, person_id: str, new_name: str) -> int:
        person = self._live(person_id)
        name = validate_name(new_name)
        self._put_person(person.person_id, name, encode_metadata(person.metadata), person.version + 1)
        return person.version + 1

    def set_metadata(self, person_id: str, metadata: Mapping[str, Any]) -> int:
        person = self._live(person_id)
        self._put_person(person.person_id, person.name, encode_metadata(metadata), person.version + 1)
        return person.version + 1

    def apply_record(self, record: PersonRecord) -> ApplyOutcome:
        """Apply a fleet/import record if it wins the conflict rule (see :mod:`facegate.gallery.records`)."""
        pid = record.person_id
        local = self.person(pid)
        if local is not None:
            mine = (local.version, local.updated_by)
            if mine >= record.order_key:
                return ApplyOutcome(pid, False, "same" if mine == record.order_key else "stale")
        embeddings = list(record.embeddings)
        ignored = 0
        bound = self._gallery.model_id
        if embeddings and bound is not None and embeddings[0].model_id != bound:
            logger.warning(
                "record of %s v%d carries embeddings of model %s; this gallery holds %s: ignoring them",
                pid, record.version, embeddings[0].model_id, bound,
            )
            ignored, embeddings = len(embeddings), []
        vectors = [rec.array() for rec in embeddings]
        if embeddings:
            self._check_model(embeddings[0].model_id, embeddings[0].dim)
        self._conn.execute("DELETE FROM embeddings WHERE person_id = ?", (pid,))
        self._put_person(
            pid,
            record.name,
            encode_metadata(record.metadata),
            record.version,
            updated_at=record.updated_at,
            updated_by=record.updated_by,
            deleted=record.deleted,
        )
        for rec, vector in zip(embeddings, vectors, strict=True):
            item = EnrollItem(
                embedding=Embedding(vector, rec.model_id),
                detector=rec.detector,
                alignment=rec.alignment,
                quality=rec.quality,
                source_sha256=rec.source_sha256,
                face_image=rec.face_image_bytes(),
            )
            self._insert_embedding(pid, item, vector, rec.created_at)
        return ApplyOutcome(pid, True, "applied", len(embeddings), ignored)

    # -- folder-sync bookkeeping ---------------------------------------------------------------
    def file_states(self) -> dict[str, FileState]:
        rows = self._conn.execute(
            "SELECT path, person_id, size, mtime_ns, sha256, status, detail, synced_at FROM folder_files"
        ).fetchall()
        return {r[0]: FileState(*r) for r in rows}

    def set_file_state(self, state: FileState) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO folder_files (path, person_id, size, mtime_ns, sha256, status, detail, synced_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (state.path, state.person_id, state.size, state.mtime_ns, state.sha256, state.status, state.detail,
             state.synced_at or time.time()),
        )

    def delete_file_state(self, path: str) -> None:
        self._conn.execute("DELETE FROM folder_files WHERE path = ?", (path,))

    def embedding_count(self, person_id: str) -> int:
        row = self._conn.execute("SELECT COUNT(*) FROM embeddings WHERE person_id = ?", (person_id,)).fetchone()
        return int(row[0])


__all__ = ["GalleryWriter"]
