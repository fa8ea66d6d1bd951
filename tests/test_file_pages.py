"""Unmapping clean file pages (facegate.file_pages): which mappings go, which stay, and that nothing a
mapping holds changes - raw file mappings, the models, and a daemon replay."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import numpy as np
import pytest

from facegate.commands.demo import demo_config
from facegate.engine import FaceEngine
from facegate.file_pages import FileMapping, WarmRelease, file_mappings, parse_smaps, releasable, release_file_pages
from facegate.images import load_image
from facegate.service import Service
from facegate.types import FaceEvent

pytestmark = pytest.mark.skipif(not (sys.platform.startswith("linux") and Path("/proc/self/smaps").exists()),
                                reason="needs Linux /proc/self/smaps and madvise")

SIZE = 4 * 1024 * 1024

SMAPS = """\
55d4c0a2b000-55d4c0a2d000 r-xp 00001000 fe:00 123                        /usr/lib/libx.so
Size:                  8 kB
Rss:                   8 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Rss:                1024 kB
Anonymous:          1024 kB
7f0000200000-7f0000203000 r--p 00002000 fe:00 124                        /usr/lib/lib y.so (deleted)
Rss:                  12 kB
Anonymous:             4 kB
7f0000300000-7f0000301000 rw-p 00003000 fe:00 124                        /usr/lib/liby.so
Rss:                   4 kB
Anonymous:             0 kB
"""


def _resident(path: Path) -> int:
    return sum(m.rss_bytes for m in file_mappings() if m.path == str(path))


def _random_file(path: Path) -> bytes:
    data = np.random.default_rng(0).integers(0, 256, SIZE, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    return data


def test_smaps_text_gives_file_mappings_and_which_are_clean() -> None:
    maps = parse_smaps(SMAPS)
    assert [m.path for m in maps] == ["/usr/lib/libx.so", "/usr/lib/lib y.so (deleted)", "/usr/lib/liby.so"]
    text, relro, data = maps
    assert (text.start, text.end, text.rss_bytes, text.clean) == (0x55D4C0A2B000, 0x55D4C0A2D000, 8192, True)
    assert not relro.clean  # a read-only page that was written (relocations): private now
    assert not data.clean  # writable
    assert parse_smaps("") == []


def test_only_regular_files_that_still_exist_are_released(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 4096)

    def mapping(name: str) -> FileMapping:
        return FileMapping(0x1000, 0x2000, "r--p", "00000000", "1", name, 4096, 0)

    assert releasable(mapping(str(path)))
    # devices (a camera's DMA buffers), memfds and replaced files are left alone
    for name in ("/dev/zero", "/dmabuf:", "/memfd:frames (deleted)", f"{path} (deleted)", str(tmp_path)):
        assert not releasable(mapping(name)), name
    assert not releasable(FileMapping(0x1000, 0x2000, "r--p", "00000000", "1", str(path), 0, 0))  # nothing resident


def test_a_clean_mapping_is_unmapped_and_reads_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    data = _random_file(path)
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
        assert view[:] == data  # every page touched
        assert _resident(path) >= SIZE * 0.9
        released = release_file_pages()
        assert released >= SIZE * 0.9
        assert _resident(path) < SIZE * 0.1
        assert view[:] == data  # faulted back in from the file, unchanged
        assert _resident(path) >= SIZE * 0.9


def test_a_written_private_mapping_keeps_its_pages(tmp_path: Path) -> None:
    path = tmp_path / "copy.bin"
    data = _random_file(path)
    with path.open("r+b") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY) as view:
        view[:16] = b"written in place"  # copy-on-write: only this process's copy changes
        assert view[16:] == data[16:]
        before = _resident(path)
        release_file_pages()
        assert _resident(path) == before  # writable: never touched
        assert view[:16] == b"written in place" and view[16:] == data[16:]
    assert path.read_bytes() == data


def test_only_mappings_unchanged_since_the_earlier_reading_are_released(tmp_path: Path) -> None:
    since = file_mappings()
    path = tmp_path / "new.bin"
    data = _random_file(path)
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
        assert view[:] == data
        release_file_pages(since=since)
        assert _resident(path) >= SIZE * 0.9  # mapped after the reading: kept
        release_file_pages(since=file_mappings())
        assert _resident(path) < SIZE * 0.1


def test_models_embed_the_same_after_their_pages_are_unmapped(engine: FaceEngine, samples_dir: Path) -> None:
    image = load_image(samples_dir / "obama.jpg")
    before = engine.represent(image)
    assert release_file_pages() > 0
    after = engine.represent(image)
    assert len(before) == len(after) == 1
    assert before[0].embedding is not None and after[0].embedding is not None
    np.testing.assert_array_equal(before[0].embedding.vector, after[0].embedding.vector)
    assert before[0].detection.box == after[0].detection.box


def test_warm_release_waits_for_ready_then_the_delay_and_runs_once_per_arming() -> None:
    warm = WarmRelease(5.0)
    assert warm.poll(100.0, None) is None  # not ready
    assert warm.poll(101.0, 101.0) is None  # ready: the delay starts now
    assert warm.poll(105.9, 101.0) is None
    released = warm.poll(106.0, 101.0)
    assert released is not None and released >= 0 and warm.last_released == released
    assert warm.poll(500.0, 101.0) is None  # once
    warm.rearm(600.0)  # a rebuild
    assert warm.poll(604.0, 101.0) is None
    assert warm.poll(605.0, 101.0) is not None


@pytest.mark.slow
def test_daemon_replay_gives_the_same_decisions_after_the_warm_release(tmp_path: Path) -> None:
    from facegate.capture.synthetic import demo_frames, sample_path, write_image_folder
    from facegate.enrollment import enroll_photos

    frames = tmp_path / "frames"
    write_image_folder(demo_frames(("obama2.jpg", "biden.jpg")).frames, frames)
    events: list[FaceEvent] = []
    config = demo_config(tmp_path / "state", frames, "none", "door-test")
    # released at once after READY, while the replay's first frames are in the pipeline
    service = Service(config, lossless=True, on_event=events.append, warm_release_s=0.0)
    enroll_photos(service.gallery, service.engine, "barack_obama", "Barack Obama",
                  [("obama.jpg", sample_path("obama.jpg"))])
    assert service.run() == 0
    assert service.warm_release.last_released is not None and service.warm_release.last_released > 0
    assert [e.person_id for e in events if e.type == "recognized"] == ["barack_obama"]
    assert sum(e.type == "unknown" for e in events) == 1
