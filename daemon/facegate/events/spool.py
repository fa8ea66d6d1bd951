"""Bounded on-disk spool (SQLite, WAL) for outgoing MQTT messages.

Every event is written here before it is handed to the MQTT client and deleted only after the
broker acknowledged it (PUBACK), so broker outages and daemon restarts lose nothing. Rows are
delivered in ``seq`` order; ``seq`` is an AUTOINCREMENT key, so it never goes backwards even after the
table was emptied (the publisher relies on that to remember how far it got).

The spool is bounded by a message count and a payload byte total. When a new message does not fit,
``drop_oldest`` deletes the oldest rows to make room (the newest information survives, e.g. a door
keeps reporting the latest people) and ``drop_newest`` rejects the new message (the oldest history
survives). Either way the loss is counted and logged. A single message larger than ``max_bytes`` is
always rejected.

Thread-safe: one connection guarded by a lock (SQLite serialises writers anyway).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from facegate.errors import ConfigError

logger = logging.getLogger(__name__)

DropPolicy = Literal["drop_oldest", "drop_newest"]
DROP_POLICIES: tuple[DropPolicy, ...] = ("drop_oldest", "drop_newest")
Synchronous = Literal["NORMAL", "FULL"]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic    TEXT    NOT NULL,
    payload  BLOB    NOT NULL,
    qos      INTEGER NOT NULL,
    retain   INTEGER NOT NULL,
    event_id TEXT,
    created  REAL    NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to spool. ``payload`` is the exact bytes to publish."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    """A spooled message with its delivery order ``seq`` and creation time (UNIX seconds)."""

    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    event_id: str | None
    created: float


@dataclass(frozen=True, slots=True)
class SpoolCounters:
    """Counters since this :class:`Spool` was opened, plus the current depth."""

    put: int
    acked: int
    dropped_oldest: int
    dropped_newest: int
    depth: int
    bytes: int

    @property
    def dropped(self) -> int:
        return self.dropped_oldest + self.dropped_newest


class Spool:
    """Bounded FIFO of :class:`OutgoingMessage` persisted in SQLite.

    ``path=None`` keeps the spool in memory (tests, ``--stdout`` demos): bounded the same way, but
    lost on exit. ``synchronous="NORMAL"`` (default; WAL) makes every committed :meth:`put` survive a
    process crash or SIGKILL but may lose the last commits on power loss; a put costs ~0.03 ms.
    ``"FULL"`` fsyncs every commit (power-cut safe) at ~3.5 ms per put on an SSD-backed dev box and
    more on SD cards, time the caller's thread spends blocked.
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        max_messages: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
        drop_policy: DropPolicy = "drop_oldest",
        synchronous: Synchronous = "NORMAL",
    ) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ConfigError(f"spool bounds must be positive (max_messages={max_messages}, max_bytes={max_bytes})")
        if drop_policy not in DROP_POLICIES:
            raise ConfigError(f"unknown spool drop policy {drop_policy!r}; valid: {', '.join(DROP_POLICIES)}")
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError(f"spool synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = None if path is None else Path(path)
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.drop_policy: DropPolicy = drop_policy
        self._lock = threading.Lock()
        self._put = 0
        self._acked = 0
        self._dropped_oldest = 0
        self._dropped_newest = 0
        self._db = self._open(synchronous)
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
        self._depth, self._bytes = int(row[0]), int(row[1])
        if self._depth:
            logger.info("spool %s holds %d undelivered message(s)", self.path or ":memory:", self._depth)

    def _open(self, synchronous: Synchronous) -> sqlite3.Connection:
        if self.path is None:
            return self._connect(":memory:", synchronous)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect(str(self.path), synchronous)
        except sqlite3.DatabaseError as err:
            # A corrupt spool must not crash-loop the daemon: keep the file for inspection, start empty.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            logger.error("spool %s is unreadable (%s); moved aside to %s", self.path, err, aside)
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            return self._connect(str(self.path), synchronous)

    @staticmethod
    def _connect(target: str, synchronous: Synchronous) -> sqlite3.Connection:
        db = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            if target != ":memory:":
                mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    logger.warning("spool %s: journal_mode is %s, not WAL", target, mode)
            db.execute(f"PRAGMA synchronous={synchronous}")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version not in (0, _SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"unknown spool schema version {version}")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    # --- writing ----------------------------------------------------------------------------------
    def put(self, message: OutgoingMessage) -> int | None:
        """Append ``message``; return its ``seq``, or ``None`` if the drop policy rejected it."""
        size = len(message.payload)
        with self._lock:
            if size > self.max_bytes:
                self._dropped_newest += 1
                logger.warning(
                    "spool: message for %s (%d bytes) exceeds max_bytes=%d; dropped",
                    message.topic, size, self.max_bytes,
                )
                return None
            over = self._depth + 1 > self.max_messages or self._bytes + size > self.max_bytes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if over and self.drop_policy == "drop_newest":
                    self._db.execute("ROLLBACK")
                    self._dropped_newest += 1
                    self._log_drop("newest", message.event_id)
                    return None
                if over:
                    self._evict_for(size)
                cursor = self._db.execute(
                    "INSERT INTO outbox (topic, payload, qos, retain, event_id, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        message.topic,
                        message.payload,
                        int(message.qos),
                        int(message.retain),
                        message.event_id,
                        time.time(),
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._recount()
                raise
            self._depth += 1
            self._bytes += size
            self._put += 1
            seq = cursor.lastrowid
            if seq is None:  # pragma: no cover - sqlite always sets it after INSERT
                raise RuntimeError("sqlite returned no rowid")
            return int(seq)

    def _evict_for(self, size: int) -> None:
        """Delete the oldest rows until one more message of ``size`` bytes fits (inside a transaction)."""
        need_count = self._depth + 1 - self.max_messages
        need_bytes = self._bytes + size - self.max_bytes
        cutoff = None
        freed_count = freed_bytes = 0
        for seq, length in self._db.execute("SELECT seq, LENGTH(payload) FROM outbox ORDER BY seq"):
            if freed_count >= need_count and freed_bytes >= need_bytes:
                break
            cutoff = int(seq)
            freed_count += 1
            freed_bytes += int(length)
        if cutoff is None:
            return
        self._db.execute("DELETE FROM outbox WHERE seq <= ?", (cutoff,))
        self._depth -= freed_count
        self._bytes -= freed_bytes
        self._dropped_oldest += freed_count
        self._log_drop("oldest", None, freed_count)

    def _log_drop(self, which: str, event_id: str | None, count: int = 1) -> None:
        total = self._dropped_oldest + self._dropped_newest
        # First loss and then every 100th: a long outage must not flood the journal.
        if total == count or total // 100 != (total - count) // 100:
            logger.warning(
                "spool full (max_messages=%d, max_bytes=%d): dropped %d %s message(s)%s; %d dropped since start",
                self.max_messages,
                self.max_bytes,
                count,
                which,
                f" ({event_id})" if event_id else "",
                total,
            )

    def _recount(self) -> None:
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
        self._depth, self._bytes = int(row[0]), int(row[1])

    # --- reading and acknowledging ----------------------------------------------------------------
    def peek_batch(self, limit: int, after_seq: int = 0) -> list[SpooledMessage]:
        """Up to ``limit`` messages with ``seq > after_seq``, oldest first; nothing is removed."""
        if limit <= 0:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, qos, retain, event_id, created FROM outbox"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [
            SpooledMessage(
                seq=int(r[0]),
                topic=str(r[1]),
                payload=bytes(r[2]),
                qos=int(r[3]),
                retain=bool(r[4]),
                event_id=None if r[5] is None else str(r[5]),
                created=float(r[6]),
            )
            for r in rows
        ]

    def ack(self, seq: int) -> bool:
        """Delete a delivered message; False if it was already gone (dropped, or acked twice)."""
        with self._lock:
            row = self._db.execute("SELECT LENGTH(payload) FROM outbox WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                return False
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._depth -= 1
            self._bytes -= int(row[0])
            self._acked += 1
            return True

    def __len__(self) -> int:
        with self._lock:
            return self._depth

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def counters(self) -> SpoolCounters:
        with self._lock:
            return SpoolCounters(
                put=self._put,
                acked=self._acked,
                dropped_oldest=self._dropped_oldest,
                dropped_newest=self._dropped_newest,
                depth=self._depth,
                bytes=self._bytes,
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "DROP_POLICIES",
    "DropPolicy",
    "OutgoingMessage",
    "Spool",
    "SpoolCounters",
    "SpooledMessage",
]
