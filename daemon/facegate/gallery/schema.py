"""The gallery's on-disk format: tables and forward-only migrations (``PRAGMA user_version``), the
connection pragmas (WAL, ``synchronous=FULL``), the column lists and how a row becomes a
:class:`~facegate.gallery.records.Person` or :class:`~facegate.gallery.records.StoredEmbedding`, the
folder-sync file state.

Split from :mod:`facegate.gallery.store` (connections, transactions, reads) and
:mod:`facegate.gallery.writer` (the write operations), which both read rows through these helpers.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facegate.errors import GalleryError
from facegate.gallery.records import Person, StoredEmbedding, blob_to_vector

#: log records keep the store's logger name (journal filters written before the split still match)
logger = logging.getLogger("facegate.gallery.store")

#: the schema version this code writes; ``MIGRATIONS[i]`` upgrades ``user_version`` i -> i + 1
SCHEMA_VERSION = 1

MIGRATIONS: tuple[tuple[str, ...], ...] = (
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
OWN_TABLES = frozenset({"meta", "people", "embeddings", "folder_files"})

PERSON_COLUMNS = "person_id, name, metadata, version, updated_at, updated_by, deleted"
EMBEDDING_COLUMNS = (
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


def person_from_row(row: Sequence[Any], model_ids: tuple[str, ...] = (), count: int = 0) -> Person:
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


def embedding_from_row(row: Sequence[Any]) -> StoredEmbedding:
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



def connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection in WAL mode, ``synchronous=FULL``, foreign keys on, explicit transactions only."""
    try:
        conn = sqlite3.connect(
            str(path),
            timeout=busy_timeout_ms / 1000.0,
            isolation_level=None,  # explicit BEGIN/COMMIT only
            check_same_thread=False,  # used by one thread only; closed from whichever thread calls close()
        )
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            logger.warning("gallery %s: journal mode is %s, not WAL", path, mode)
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as err:
        raise GalleryError(f"cannot open gallery {path}: {err}") from err
    return conn


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the database to :data:`SCHEMA_VERSION`; refuse a newer schema or a foreign database."""
    try:
        # the common case needs no write lock: opening must not wait for another process's enrolment
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if current > SCHEMA_VERSION:
                raise GalleryError(
                    f"gallery {path} has schema version {current}; this facegate understands up to "
                    f"{SCHEMA_VERSION} (written by a newer version?)"
                )
            if current == 0:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if tables - OWN_TABLES:
                    raise GalleryError(f"{path} is an SQLite database but not a facegate gallery")
            for version in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version + 1}")
                logger.info("gallery %s: migrated schema to version %d", path, version + 1)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as err:
        raise GalleryError(f"cannot open gallery {path}: {err}") from err


__all__ = [
    "EMBEDDING_COLUMNS",
    "MIGRATIONS",
    "OWN_TABLES",
    "PERSON_COLUMNS",
    "SCHEMA_VERSION",
    "FileState",
    "connect",
    "embedding_from_row",
    "migrate",
    "person_from_row",
]
