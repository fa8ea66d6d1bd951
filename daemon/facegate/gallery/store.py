"""The SQLite gallery: people, their embeddings (tagged with model, detector, alignment) and provenance.

Durability and concurrency:

* WAL journal, ``synchronous=FULL`` (enrolments are rare; a door lock loses power), ``busy_timeout``,
  foreign keys on. Readers never block the writer and always see a committed snapshot.
* Every write is one ``BEGIN IMMEDIATE`` transaction (:meth:`SqliteGallery.transaction`): an
  enrolment of several photos is stored completely or not at all, also when the process is killed.
* ``meta.revision`` increases by one in every transaction that changes people or embeddings; the
  :class:`~facegate.matcher.Matcher` polls it to refresh its snapshot (also across processes).
* Schema versioned with ``PRAGMA user_version`` and forward-only migrations; a database written by a
  newer facegate is refused rather than guessed at.
* Vectors are float32 little-endian BLOBs; nothing is pickled. Face images are stored only when the
  gallery is opened with ``store_face_images=True``.

One connection per thread (``sqlite3`` connections must not be shared between threads mid-statement).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from facegate.errors import GalleryError
from facegate.gallery.outliers import OutlierPolicy, find_outliers
from facegate.gallery.records import (
    ApplyOutcome,
    EmbeddingRecord,
    EnrollItem,
    EnrollReport,
    Person,
    PersonRecord,
    RejectedItem,
    StoredEmbedding,
    StoredItem,
    blob_to_vector,
    check_vector,
    encode_metadata,
    validate_name,
    validate_person_id,
    vector_to_blob,
)
from facegate.matcher import GallerySnapshot
from facegate.types import Embedding, FloatArray

logger = logging.getLogger(__name__)

#: the schema version this code writes; ``_MIGRATIONS[i]`` upgrades ``user_version`` i -> i + 1
SCHEMA_VERSION = 1

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('revision', 0)",
        """CREATE TABLE people (
            person_id TEXT PRIMARY KEY NOT NULL,
            name TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            version INTEGER NOT NULL CHECK (version >= 0),
            updated_at REAL NOT NULL,
            updated_by TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1))
        )""",
        """CREATE TABLE embeddings (
            id INTEGER PRIMARY KEY,
            person_id TEXT NOT NULL REFERENCES people (person_id) ON DELETE CASCADE,
            model_id TEXT NOT NULL,
            detector TEXT NOT NULL DEFAULT '',
            alignment TEXT NOT NULL DEFAULT '',
            dim INTEGER NOT NULL CHECK (dim > 0),
            vector BLOB NOT NULL CHECK (length(vector) = 4 * dim),
            source_sha256 TEXT,
            source_path TEXT,
            quality REAL,
            created_at REAL NOT NULL,
            face_image BLOB
        )""",
        "CREATE INDEX embeddings_by_model ON embeddings (model_id, person_id, id)",
        "CREATE INDEX embeddings_by_person ON embeddings (person_id, id)",
        """CREATE TABLE folder_files (
            path TEXT PRIMARY KEY NOT NULL,
            person_id TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            status TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            synced_at REAL NOT NULL
        )""",
    ),
)
_OWN_TABLES = frozenset({"meta", "people", "embeddings", "folder_files"})

_PERSON_COLUMNS = "person_id, name, metadata, version, updated_at, updated_by, deleted"
_EMBEDDING_COLUMNS = (
    "id, person_id, model_id, detector, alignment, dim, vector, source_sha256, source_path, quality, created_at, "
    "face_image IS NOT NULL"
)


@dataclass(frozen=True, slots=True)
class FileState:
    """A file the folder sync has seen (path relative to the synced folder, POSIX separators)."""

    path: str
    person_id: str
    size: int
    mtime_ns: int
    sha256: str
    status: str  # "ok", "outlier", "duplicate" or "error"
    detail: str = ""
    synced_at: float = 0.0


def _person_from_row(row: Sequence[Any], model_ids: tuple[str, ...] = (), count: int = 0) -> Person:
    return Person(
        person_id=row[0],
        name=row[1],
        metadata=json.loads(row[2]),
        version=int(row[3]),
        updated_at=float(row[4]),
        updated_by=row[5],
        deleted=bool(row[6]),
        model_ids=model_ids,
        embedding_count=count,
    )


def _embedding_from_row(row: Sequence[Any]) -> StoredEmbedding:
    return StoredEmbedding(
        id=int(row[0]),
        person_id=row[1],
        model_id=row[2],
        detector=row[3],
        alignment=row[4],
        vector=blob_to_vector(row[6], int(row[5])),
        source_sha256=row[7],
        source_path=row[8],
        quality=row[9],
        created_at=float(row[10]),
        has_face_image=bool(row[11]),
    )


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
        row = self._conn.execute(f"SELECT {_PERSON_COLUMNS} FROM people WHERE person_id = ?", (person_id,)).fetchone()
        return _person_from_row(row) if row else None

    def _person_embeddings(self, person_id: str) -> list[StoredEmbedding]:
        rows = self._conn.execute(
            f"SELECT {_EMBEDDING_COLUMNS} FROM embeddings WHERE person_id = ? ORDER BY id", (person_id,)
        ).fetchall()
        return [_embedding_from_row(r) for r in rows]

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
            f"INSERT INTO people ({_PERSON_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
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


class SqliteGallery:
    """The gallery database at ``path`` (created if missing).

    ``model_id`` binds the gallery to one model: embeddings of another model are refused (and fleet
    records of another model are applied without their embeddings). ``device_id`` stamps local
    changes (``updated_by``) for the fleet conflict rule. ``outliers`` is the default enrolment
    screening; pass the model's thresholds (:meth:`OutlierPolicy.for_model`) for the absolute test.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        model_id: str | None = None,
        device_id: str = "local",
        busy_timeout_ms: int = 10_000,
        store_face_images: bool = False,
        outliers: OutlierPolicy | None = None,
    ) -> None:
        self.path = Path(path)
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise GalleryError("SqliteGallery needs a file path (every thread opens its own connection)")
        self.model_id = model_id
        self.device_id = device_id
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.store_face_images = store_face_images
        self.outliers = outliers if outliers is not None else OutlierPolicy()
        #: test hook: called with the operation name inside every write transaction, just before COMMIT
        self.before_commit: Callable[[str], None] | None = None
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self._migrate()

    # -- connections ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                str(self.path),
                timeout=self.busy_timeout_ms / 1000.0,
                isolation_level=None,  # explicit BEGIN/COMMIT only
                check_same_thread=False,  # used by one thread only; closed from whichever thread calls close()
            )
            conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("gallery %s: journal mode is %s, not WAL", self.path, mode)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as err:
            raise GalleryError(f"cannot open gallery {self.path}: {err}") from err
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise GalleryError(f"gallery {self.path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection. Further use raises :class:`GalleryError`."""
        self._closed = True
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    def __enter__(self) -> SqliteGallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        conn = self._conn()
        try:
            # the common case needs no write lock: opening must not wait for another process's enrolment
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION:
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                current = int(conn.execute("PRAGMA user_version").fetchone()[0])
                if current > SCHEMA_VERSION:
                    raise GalleryError(
                        f"gallery {self.path} has schema version {current}; this facegate understands up to "
                        f"{SCHEMA_VERSION} (written by a newer version?)"
                    )
                if current == 0:
                    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                    if tables - _OWN_TABLES:
                        raise GalleryError(f"{self.path} is an SQLite database but not a facegate gallery")
                for version in range(current, SCHEMA_VERSION):
                    for statement in _MIGRATIONS[version]:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {version + 1}")
                    logger.info("gallery %s: migrated schema to version %d", self.path, version + 1)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            self.close()
            raise GalleryError(f"cannot open gallery {self.path}: {err}") from err
        except GalleryError:
            self.close()
            raise

    # -- transactions --------------------------------------------------------------------------
    @contextmanager
    def transaction(self, operation: str = "write") -> Iterator[GalleryWriter]:
        """One atomic write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), rolled back on any exception."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise GalleryError(f"gallery {self.path} is busy or read-only ({operation}): {err}") from err
        writer = GalleryWriter(self, conn)
        try:
            yield writer
            if writer.dirty:
                conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
            if self.before_commit is not None:
                self.before_commit(operation)
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback(conn)
            raise GalleryError(f"gallery {self.path}: {operation} failed: {err}") from err
        except BaseException:
            self._rollback(conn)
            raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed snapshot.

        Inside this thread's own write transaction, reads simply join it (and see its changes).
        """
        conn = self._conn()
        if conn.in_transaction:
            yield conn
            return
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.Error as err:
            raise GalleryError(f"cannot read gallery {self.path}: {err}") from err

    # -- writes --------------------------------------------------------------------------------
    def enroll(
        self,
        person_id: str,
        name: str,
        embeddings: Sequence[EnrollItem],
        metadata: Mapping[str, Any] | None = None,
        replace: bool = False,
        *,
        outliers: OutlierPolicy | None = None,
    ) -> EnrollReport:
        """Add embeddings to a person (created, or revived from a tombstone, if needed), atomically.

        New embeddings far from the person's others are refused as outliers and photos already enrolled
        (same ``source_sha256``) as duplicates; both are listed in the report's ``rejected``.
        ``replace=True`` first deletes the person's embeddings. ``metadata=None`` keeps the old metadata.
        Raises :class:`GalleryError` for invalid ids/names/vectors and for mixing model ids.
        """
        with self.transaction("enroll") as txn:
            return txn.enroll(person_id, name, embeddings, metadata, replace, outliers=outliers)

    def remove(self, person_id: str) -> int:
        """Delete a person (tombstone + embeddings gone); returns the tombstone's version."""
        with self.transaction("remove") as txn:
            return txn.remove(person_id)

    def rename(self, person_id: str, new_name: str) -> int:
        """Change the display name; returns the new version."""
        with self.transaction("rename") as txn:
            return txn.rename(person_id, new_name)

    def set_metadata(self, person_id: str, metadata: Mapping[str, Any]) -> int:
        with self.transaction("set_metadata") as txn:
            return txn.set_metadata(person_id, metadata)

    def apply_record(self, record: PersonRecord | Mapping[str, Any] | str | bytes) -> ApplyOutcome:
        """Apply a fleet record (validated here) if it is newer by the conflict rule."""
        parsed = parse_record(record)
        with self.transaction("apply_record") as txn:
            return txn.apply_record(parsed)

    # -- reads ---------------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        """Monotonically increasing change counter (across processes sharing the file)."""
        try:
            row = self._conn().execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        except sqlite3.Error as err:
            raise GalleryError(f"cannot read gallery {self.path}: {err}") from err
        return int(row[0])

    def people(self, *, include_deleted: bool = False) -> list[Person]:
        """People sorted by id, with their model ids and embedding counts."""
        with self._read() as conn:
            counts: dict[str, list[tuple[str, int]]] = {}
            for pid, model, n in conn.execute(
                "SELECT person_id, model_id, COUNT(*) FROM embeddings GROUP BY person_id, model_id"
            ):
                counts.setdefault(pid, []).append((model, int(n)))
            where = "" if include_deleted else "WHERE deleted = 0"
            rows = conn.execute(f"SELECT {_PERSON_COLUMNS} FROM people {where} ORDER BY person_id").fetchall()
        return [
            _person_from_row(
                r,
                tuple(sorted(m for m, _ in counts.get(r[0], []))),
                sum(n for _, n in counts.get(r[0], [])),
            )
            for r in rows
        ]

    def person(self, person_id: str, *, include_deleted: bool = False) -> Person:
        """One person; :class:`GalleryError` if unknown (or deleted, unless ``include_deleted``)."""
        pid = validate_person_id(person_id)
        with self._read() as conn:
            row = conn.execute(f"SELECT {_PERSON_COLUMNS} FROM people WHERE person_id = ?", (pid,)).fetchone()
            stats = conn.execute(
                "SELECT model_id, COUNT(*) FROM embeddings WHERE person_id = ? GROUP BY model_id", (pid,)
            ).fetchall()
        if row is None or (row[6] and not include_deleted):
            raise GalleryError(f"unknown person {pid!r}")
        return _person_from_row(row, tuple(sorted(m for m, _ in stats)), sum(int(n) for _, n in stats))

    def embeddings(self, person_id: str, model_id: str | None = None) -> list[StoredEmbedding]:
        """A person's stored embeddings in enrolment order (vectors included, face images not)."""
        pid = validate_person_id(person_id)
        sql = f"SELECT {_EMBEDDING_COLUMNS} FROM embeddings WHERE person_id = ?"
        args: tuple[str, ...] = (pid,)
        if model_id is not None:
            sql += " AND model_id = ?"
            args = (pid, model_id)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
        return [_embedding_from_row(r) for r in rows]

    def face_image(self, embedding_id: int) -> bytes | None:
        """The stored face image of one embedding (only when images were opted in), else ``None``."""
        with self._read() as conn:
            row = conn.execute("SELECT face_image FROM embeddings WHERE id = ?", (int(embedding_id),)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def model_ids(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT model_id FROM embeddings ORDER BY model_id")]

    def _resolve_model(self, model_id: str | None) -> str:
        if model_id is not None:
            if self.model_id is not None and model_id != self.model_id:
                raise GalleryError(f"gallery {self.path} is bound to model {self.model_id!r}, not {model_id!r}")
            return model_id
        if self.model_id is not None:
            return self.model_id
        models = self.model_ids()
        if len(models) != 1:
            raise GalleryError(
                f"gallery {self.path} holds models {models or 'none'}: say which model_id to match against"
            )
        return models[0]

    def snapshot(self, model_id: str | None = None) -> GallerySnapshot:
        """The live people's embeddings of one model, consistent with the returned ``revision``."""
        model = self._resolve_model(model_id)
        with self._read() as conn:
            revision = int(conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])
            rows = conn.execute(
                "SELECT e.person_id, p.name, e.dim, e.vector FROM embeddings e JOIN people p "
                "ON p.person_id = e.person_id WHERE e.model_id = ? AND p.deleted = 0 ORDER BY e.person_id, e.id",
                (model,),
            ).fetchall()
        if not rows:
            return GallerySnapshot.empty(model, revision=revision)
        dim = int(rows[0][2])
        person_ids: list[str] = []
        names: list[str] = []
        row_person = np.empty(len(rows), dtype=np.int64)
        for i, (pid, name, _, _) in enumerate(rows):
            if not person_ids or person_ids[-1] != pid:
                person_ids.append(pid)
                names.append(name)
            row_person[i] = len(person_ids) - 1
        blob = b"".join(r[3] for r in rows)
        if len(blob) != 4 * dim * len(rows):
            raise GalleryError(f"gallery {self.path}: model {model!r} has embeddings of different dimensions")
        matrix = np.frombuffer(blob, dtype="<f4").astype(np.float32).reshape(len(rows), dim)
        return GallerySnapshot(revision, model, dim, tuple(person_ids), tuple(names), row_person, matrix)

    def embeddings_matrix(self, model_id: str | None = None) -> tuple[list[str], FloatArray]:
        """``(person_id per row, (N, D) float32 matrix)`` of the live people's embeddings of one model."""
        snap = self.snapshot(model_id)
        return [snap.person_ids[i] for i in snap.row_person.tolist()], snap.matrix

    def record(self, person_id: str, *, vectors: Literal["base64", "list"] = "base64",
               include_images: bool = False) -> PersonRecord:
        """The person's fleet record (also for a tombstone)."""
        return self._records([validate_person_id(person_id)], vectors, include_images)[0]

    def records(self, *, include_deleted: bool = True, vectors: Literal["base64", "list"] = "base64",
                include_images: bool = False) -> list[PersonRecord]:
        """Every person's record, sorted by id (for a full fleet republish or an export)."""
        ids = [p.person_id for p in self.people(include_deleted=include_deleted)]
        return self._records(ids, vectors, include_images)

    def _records(self, ids: Sequence[str], vectors: Literal["base64", "list"],
                 include_images: bool) -> list[PersonRecord]:
        out: list[PersonRecord] = []
        with self._read() as conn:
            for pid in ids:
                row = conn.execute(f"SELECT {_PERSON_COLUMNS} FROM people WHERE person_id = ?", (pid,)).fetchone()
                if row is None:
                    raise GalleryError(f"unknown person {pid!r}")
                person = _person_from_row(row)
                rows = conn.execute(
                    f"SELECT {_EMBEDDING_COLUMNS}, face_image FROM embeddings WHERE person_id = ? ORDER BY id", (pid,)
                ).fetchall()
                embeddings = [
                    EmbeddingRecord.encode(
                        _embedding_from_row(r),
                        vectors=vectors,
                        face_image=bytes(r[12]) if include_images and r[12] is not None else None,
                    )
                    for r in rows
                ]
                out.append(
                    PersonRecord(
                        person_id=person.person_id,
                        name=person.name,
                        metadata=dict(person.metadata),
                        version=person.version,
                        updated_at=person.updated_at,
                        updated_by=person.updated_by,
                        deleted=person.deleted,
                        embeddings=embeddings,
                    )
                )
        return out

    def file_states(self) -> dict[str, FileState]:
        """What the folder sync recorded about each file."""
        with self._read() as conn:
            return GalleryWriter(self, conn).file_states()


def parse_record(record: PersonRecord | Mapping[str, Any] | str | bytes) -> PersonRecord:
    """Validate an untrusted person record (JSON text/bytes or a mapping) -> :class:`GalleryError`."""
    if isinstance(record, PersonRecord):
        return record
    try:
        if isinstance(record, (str, bytes)):
            return PersonRecord.model_validate_json(record)
        return PersonRecord.model_validate(record)
    except ValidationError as err:
        raise GalleryError(f"invalid person record: {err}") from err


__all__ = ["SCHEMA_VERSION", "FileState", "GalleryWriter", "SqliteGallery", "parse_record"]
