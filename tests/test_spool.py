"""The bounded SQLite spool: order, acknowledgement, persistence, bounds and drop policies."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from facegate.errors import ConfigError
from facegate.events.spool import OutgoingMessage, Spool


def msg(i: int, size: int = 10) -> OutgoingMessage:
    return OutgoingMessage(topic="t/event", payload=bytes([i % 256]) * size, qos=1, retain=False, event_id=f"e{i}")


def test_fifo_peek_ack(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as spool:
        seqs = [spool.put(msg(i)) for i in range(5)]
        assert all(s is not None for s in seqs)
        assert seqs == sorted(s for s in seqs if s is not None)
        batch = spool.peek_batch(3)
        assert [m.event_id for m in batch] == ["e0", "e1", "e2"]
        assert len(spool) == 5  # peek removes nothing
        assert [m.event_id for m in spool.peek_batch(10, after_seq=batch[-1].seq)] == ["e3", "e4"]
        assert spool.ack(batch[1].seq) is True
        assert spool.ack(batch[1].seq) is False
        assert [m.event_id for m in spool.peek_batch(10)] == ["e0", "e2", "e3", "e4"]
        first = spool.peek_batch(1)[0]
        assert (first.topic, first.qos, first.retain, first.payload) == ("t/event", 1, False, b"\x00" * 10)
        c = spool.counters()
        assert (c.put, c.acked, c.depth, c.bytes, c.dropped) == (5, 1, 4, 40, 0)


def test_survives_reopen_and_seq_never_goes_back(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path)
    for i in range(3):
        spool.put(msg(i))
    last = spool.peek_batch(10)[-1].seq
    spool.close()

    reopened = Spool(path)
    assert [m.event_id for m in reopened.peek_batch(10)] == ["e0", "e1", "e2"]
    assert reopened.total_bytes == 30
    for m in reopened.peek_batch(10):
        reopened.ack(m.seq)
    assert len(reopened) == 0
    # An emptied table must not reuse old seqs (the publisher remembers the last seq it sent).
    new_seq = reopened.put(msg(9))
    assert new_seq is not None and new_seq > last
    reopened.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    db.close()


def test_drop_oldest_by_count(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_messages=3, drop_policy="drop_oldest")
    for i in range(5):
        assert spool.put(msg(i)) is not None
    assert [m.event_id for m in spool.peek_batch(10)] == ["e2", "e3", "e4"]
    c = spool.counters()
    assert (c.dropped_oldest, c.dropped_newest, c.depth) == (2, 0, 3)


def test_drop_newest_by_count(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_messages=3, drop_policy="drop_newest")
    results = [spool.put(msg(i)) for i in range(5)]
    assert results[3] is None and results[4] is None
    assert [m.event_id for m in spool.peek_batch(10)] == ["e0", "e1", "e2"]
    assert spool.counters().dropped_newest == 2


def test_byte_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_messages=100, max_bytes=100, drop_policy="drop_oldest")
    for i in range(4):
        spool.put(msg(i, size=30))  # 4 x 30 > 100: the oldest goes
    assert [m.event_id for m in spool.peek_batch(10)] == ["e1", "e2", "e3"]
    assert spool.total_bytes == 90
    spool.put(msg(9, size=95))  # needs 95 bytes: all three older ones go
    assert [m.event_id for m in spool.peek_batch(10)] == ["e9"]
    assert spool.put(msg(10, size=101)) is None  # can never fit, whatever the policy
    c = spool.counters()
    assert (c.dropped_oldest, c.dropped_newest, c.depth, c.bytes) == (4, 1, 1, 95)


def test_memory_spool_and_bad_arguments(tmp_path: Path) -> None:
    spool = Spool(None, max_messages=2)
    spool.put(msg(1))
    assert len(spool) == 1
    with pytest.raises(ConfigError):
        Spool(tmp_path / "x.db", drop_policy="drop_random")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Spool(tmp_path / "x.db", max_messages=0)


def test_corrupt_file_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not a database" * 100)
    spool = Spool(path)
    assert len(spool) == 0
    assert spool.put(msg(1)) is not None
    assert list(tmp_path.glob("s.db.corrupt-*"))


def test_concurrent_put_and_ack(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", synchronous="NORMAL")
    n_threads, per_thread = 4, 50

    def producer(k: int) -> None:
        for i in range(per_thread):
            spool.put(msg(k * 1000 + i))

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    acked = 0
    while any(t.is_alive() for t in threads) or len(spool):
        for m in spool.peek_batch(16):
            acked += spool.ack(m.seq)
    for t in threads:
        t.join()
    assert acked == n_threads * per_thread
    c = spool.counters()
    assert (c.put, c.acked, c.depth, c.bytes) == (200, 200, 0, 0)
