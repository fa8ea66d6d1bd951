"""Concurrency and crash safety of the SQLite gallery, on real files with real processes.

Invariant checked by every reader: an enrolment is visible completely or not at all (person ``p<i>``
is enrolled with exactly ``i % 4 + 2`` embeddings in one call), and the revision never goes back.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from facegate.gallery import EnrollItem, OutlierPolicy, SqliteGallery
from facegate.matcher import Matcher
from facegate.types import Embedding

MODEL = "m1"
DIM = 32


def expected_count(person_id: str) -> int:
    return int(person_id.removeprefix("p")) % 4 + 2


def _items(i: int) -> list[EnrollItem]:
    rng = np.random.default_rng(i)
    centre = rng.standard_normal(DIM).astype(np.float32)
    return [EnrollItem(Embedding((centre + 0.05 * rng.standard_normal(DIM)).astype(np.float32), MODEL))
            for _ in range(i % 4 + 2)]


def _check_snapshot(g: SqliteGallery) -> int:
    """Assert the all-or-nothing invariant on one consistent snapshot; return its revision."""
    snap = g.snapshot(MODEL)
    counts = np.bincount(snap.row_person, minlength=len(snap.person_ids))
    for pid, n in zip(snap.person_ids, counts.tolist(), strict=True):
        assert n == expected_count(pid), f"{pid}: saw {n} of {expected_count(pid)} embeddings"
    return snap.revision


# a writer in another process: enrols p<start>..p<stop-1>, one transaction each
WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from facegate.gallery import EnrollItem, OutlierPolicy, SqliteGallery
    from facegate.types import Embedding

    path, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    g = SqliteGallery(path, device_id=f"proc-{start}", outliers=OutlierPolicy.disabled())
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        centre = rng.standard_normal(32).astype(np.float32)
        items = [EnrollItem(Embedding((centre + 0.05 * rng.standard_normal(32)).astype(np.float32), "m1"))
                 for _ in range(i % 4 + 2)]
        g.enroll(f"p{i}", f"Person {i}", items)
    g.close()
    """
)

# enrols one person with a hook that announces itself and then sleeps inside the open transaction
HANGING_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from facegate.gallery import EnrollItem, OutlierPolicy, SqliteGallery
    from facegate.types import Embedding

    path, marker, person, replace = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
    g = SqliteGallery(path, device_id="doomed", outliers=OutlierPolicy.disabled())

    def hang(operation):
        marker.write_text(operation)
        time.sleep(120)

    g.before_commit = hang
    rng = np.random.default_rng(99)
    items = [EnrollItem(Embedding(rng.standard_normal(32).astype(np.float32), "m1")) for _ in range(7)]
    g.enroll(person, "Doomed", items, replace=replace)
    """
)


def _spawn(script: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_threads_read_consistent_snapshots_while_a_writer_enrols(tmp_path: Path) -> None:
    g = SqliteGallery(tmp_path / "g.sqlite", outliers=OutlierPolicy.disabled())
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def reader() -> None:
        matcher = Matcher(g, MODEL, threshold=0.2)
        probe = Embedding(np.ones(DIM, np.float32), MODEL)
        last = -1
        try:
            while not stop.is_set():
                rev = _check_snapshot(g)
                assert rev >= last
                last = rev
                matcher.match(probe)  # refreshes as the revision moves
                seen.append(rev)
        except BaseException as err:  # surfaced in the main thread below
            errors.append(err)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for i in range(60):
            g.enroll(f"p{i}", f"Person {i}", _items(i))
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=30)
    assert not errors, errors[0]
    assert len(set(seen)) > 3  # readers really ran during the writes
    assert g.revision == 60 and len(g.people()) == 60
    assert _check_snapshot(g) == 60
    g.close()


def test_another_process_writes_while_this_one_reads(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    g = SqliteGallery(path)
    writer = _spawn(WRITER, str(path), "0", "80")
    last = -1
    reads = 0
    try:
        while writer.poll() is None:
            rev = _check_snapshot(g)
            assert rev >= last
            last = rev
            reads += 1
    finally:
        _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err.decode()
    assert reads > 1
    assert _check_snapshot(g) == 80 and len(g.people()) == 80
    g.close()


def test_two_writer_processes_and_a_thread_all_land(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    SqliteGallery(path).close()
    writers = [_spawn(WRITER, str(path), "0", "40"), _spawn(WRITER, str(path), "40", "80")]
    with SqliteGallery(path, outliers=OutlierPolicy.disabled()) as g:
        for i in range(80, 100):
            g.enroll(f"p{i}", f"Person {i}", _items(i))
        for w in writers:
            _, err = w.communicate(timeout=120)
            assert w.returncode == 0, err.decode()
        assert len(g.people()) == 100 and g.revision == 100
        _check_snapshot(g)


@pytest.mark.parametrize("replace", [False, True])
def test_killed_enrolment_leaves_the_database_consistent(tmp_path: Path, replace: bool) -> None:
    path = tmp_path / "g.sqlite"
    with SqliteGallery(path, outliers=OutlierPolicy.disabled()) as g:
        g.enroll("p1", "Person 1", _items(1))
        g.enroll("p2", "Person 2", _items(2))
        before = g.records()
        rev = g.revision
    marker = tmp_path / "inside-transaction"
    victim = "p2" if replace else "p9"
    child = _spawn(HANGING_WRITER, str(path), str(marker), victim, "1" if replace else "0")
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, child.communicate()[1].decode()
            assert time.monotonic() < deadline, "child never reached the transaction"
            time.sleep(0.02)
        # the child holds the write lock with its rows written but not committed; readers still work
        with SqliteGallery(path) as reader:
            assert reader.records() == before
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with sqlite3.connect(str(path)) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    with SqliteGallery(path, outliers=OutlierPolicy.disabled()) as g:
        assert g.records() == before  # the killed enrolment left nothing, the replaced person intact
        assert g.revision == rev
        _check_snapshot(g)
        # the lock died with the process: writing works again
        g.enroll("p3", "Person 3", _items(3))
        assert g.revision == rev + 1
