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

Beside it: :mod:`facegate.gallery.schema` (tables, migrations, row mapping, connection pragmas) and
:mod:`facegate.gallery.writer` (:class:`GalleryWriter`, the operations of one write transaction).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from facegate.errors import GalleryError
from facegate.gallery.outliers import OutlierPolicy
from facegate.gallery.records import (
    ApplyOutcome,
    EmbeddingRecord,
    EnrollItem,
    EnrollReport,
    Person,
    PersonRecord,
    StoredEmbedding,
    validate_person_id,
)
from facegate.gallery.schema import (
    EMBEDDING_COLUMNS,
    PERSON_COLUMNS,
    SCHEMA_VERSION,
    FileState,
    connect,
    embedding_from_row,
    migrate,
    person_from_row,
)
from facegate.gallery.writer import GalleryWriter
from facegate.gallery_snapshot import GallerySnapshot
from facegate.types import FloatArray


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
        return connect(self.path, self.busy_timeout_ms)

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
            migrate(conn, self.path)
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
            rows = conn.execute(f"SELECT {PERSON_COLUMNS} FROM people {where} ORDER BY person_id").fetchall()
        return [
            person_from_row(
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
            row = conn.execute(f"SELECT {PERSON_COLUMNS} FROM people WHERE person_id = ?", (pid,)).fetchone()
            stats = conn.execute(
                "SELECT model_id, COUNT(*) FROM embeddings WHERE person_id = ? GROUP BY model_id", (pid,)
            ).fetchall()
        if row is None or (row[6] and not include_deleted):
            raise GalleryError(f"unknown person {pid!r}")
        return person_from_row(row, tuple(sorted(m for m, _ in stats)), sum(int(n) for _, n in stats))

    def embeddings(self, person_id: str, model_id: str | None = None) -> list[StoredEmbedding]:
        """A person's stored embeddings in enrolment order (vectors included, face images not)."""
        pid = validate_person_id(person_id)
        sql = f"SELECT {EMBEDDING_COLUMNS} FROM embeddings WHERE person_id = ?"
        args: tuple[str, ...] = (pid,)
        if model_id is not None:
            sql += " AND model_id = ?"
            args = (pid, model_id)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
        return [embedding_from_row(r) for r in rows]

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
                row = conn.execute(f"SELECT {PERSON_COLUMNS} FROM people WHERE person_id = ?", (pid,)).fetchone()
                if row is None:
                    raise GalleryError(f"unknown person {pid!r}")
                person = person_from_row(row)
                rows = conn.execute(
                    f"SELECT {EMBEDDING_COLUMNS}, face_image FROM embeddings WHERE person_id = ? ORDER BY id", (pid,)
                ).fetchall()
                embeddings = [
                    EmbeddingRecord.encode(
                        embedding_from_row(r),
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
