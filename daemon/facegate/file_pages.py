"""Unmapping the file pages that start-up read and the running daemon does not read again (Linux).

Measured on the daemon replaying 640x360 video (``facegate bench --pipeline VIDEO``): of ~135 MB
resident, ~65 MB were file-backed - pages of OpenCV and its ffmpeg, numpy, LiteRT, pydantic-core,
libpython and the model files. Most were touched once: library initialisers, imports, codec probing, and
the model files XNNPACK has since copied into its packed buffers. While frames run only ~25 MB of them
are read. :func:`release_file_pages` drops the clean ones from the process's page tables
(``madvise(MADV_DONTNEED)``); a page the pipeline reads again faults back in from the page cache (or the
file), so the resident set settles at what is really used. The kernel can then reclaim the rest of the
page cache under pressure without waiting for this process.

Only pages that equal their file can go: a mapping qualifies when it maps a regular file that still
exists (not a device, a camera's DMA buffer, a memfd or a deleted file) and has no write permission and
no private (copy-on-write) page, per ``/proc/self/smaps``. Discarding a written private page would lose
data, so those are never touched. A library being loaded by another thread passes through states that
look clean for an instant, hence ``since``: while other threads run, only mappings that were already
there, unchanged and clean, in an earlier reading are released.

Nothing here runs at import; on other systems (no ``/proc/self/smaps``, not glibc) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from facegate.memory import glibc

logger = logging.getLogger(__name__)

_MADV_DONTNEED = 4
_SMAPS = "/proc/self/smaps"


@dataclass(frozen=True, slots=True)
class FileMapping:
    """One file-backed mapping of ``/proc/PID/smaps``."""

    start: int
    end: int
    perms: str
    offset: str
    inode: str
    path: str
    rss_bytes: int
    anonymous_bytes: int

    @property
    def key(self) -> tuple[int, int, str, str, str, str]:
        return (self.start, self.end, self.perms, self.offset, self.inode, self.path)

    @property
    def clean(self) -> bool:
        """Every resident page equals the file: not writable, no copy-on-write page."""
        return "w" not in self.perms and self.anonymous_bytes == 0


def parse_smaps(text: str) -> list[FileMapping]:
    """The file-backed mappings (a path starting with ``/``) of ``/proc/PID/smaps`` text."""
    out: list[FileMapping] = []
    header: list[str] | None = None
    rss = anonymous = 0

    def flush() -> None:
        if header is None or len(header) < 6 or not header[5].startswith("/"):
            return
        start, _, end = header[0].partition("-")
        out.append(FileMapping(int(start, 16), int(end, 16), header[1], header[2], header[4], header[5],
                               rss, anonymous))

    for line in text.splitlines():
        first = line.split(maxsplit=1)[0] if line.strip() else ""
        if "-" in first and not first.endswith(":"):  # a mapping's header line
            flush()
            header = line.split(maxsplit=5)
            rss = anonymous = 0
        elif first == "Rss:":
            rss = int(line.split()[1]) * 1024
        elif first == "Anonymous:":
            anonymous = int(line.split()[1]) * 1024
    flush()
    return out


@functools.lru_cache(maxsize=1024)
def _regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):  # " (deleted)", "/memfd:...", a name that is not a path
        return False


def releasable(mapping: FileMapping) -> bool:
    """Whether :func:`release_file_pages` may unmap ``mapping``: clean, resident, a regular file's."""
    return mapping.clean and mapping.rss_bytes > 0 and _regular_file(mapping.path)


def file_mappings() -> tuple[FileMapping, ...]:
    """This process's file-backed mappings now (empty where ``/proc/self/smaps`` is missing)."""
    try:
        with open(_SMAPS, encoding="utf-8", errors="replace") as fh:
            return tuple(parse_smaps(fh.read()))
    except OSError:
        return ()


@functools.cache
def _madvise() -> Callable[[int, int, int], int] | None:
    libc = glibc()
    if libc is None:
        return None
    fn = libc.madvise
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return cast("Callable[[int, int, int], int]", fn)


def release_file_pages(since: Sequence[FileMapping] | None = None) -> int:
    """Unmap the resident pages of clean file mappings; returns how many resident bytes they held.

    ``since=None`` releases every clean mapping: only where no other thread can be loading a library
    (start-up before the worker threads, enrolment in the demo). With threads running, pass an earlier
    :func:`file_mappings` reading: only mappings clean and unchanged in both are released.
    """
    madvise = _madvise()
    if madvise is None:
        return 0
    stable = None if since is None else {m.key for m in since if m.clean}
    released = 0
    for m in file_mappings():
        if not releasable(m) or (stable is not None and m.key not in stable):
            continue
        if madvise(m.start, m.end - m.start, _MADV_DONTNEED) == 0:
            released += m.rss_bytes
    logger.debug("unmapped %.1f MB of file pages no longer read", released / 1e6)
    return released


class WarmRelease:
    """:func:`release_file_pages` once the daemon has warmed up: ``delay_s`` after READY, and again
    ``delay_s`` after a rebuild of models or cameras (:meth:`rearm`).

    Warm means the capture has opened its decoder, frames have run through every stage and the MQTT
    client has connected or retried: the pages only those first steps touched would otherwise stay
    resident for the daemon's whole life. The reading taken when the delay starts is the ``since``.
    """

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self._due: float | None = None
        self._since: tuple[FileMapping, ...] = ()
        self._waiting_for_ready = True
        #: what the last release unmapped, bytes (None before the first)
        self.last_released: int | None = None

    def rearm(self, now: float) -> None:
        self._since = file_mappings()
        self._due = now + self.delay_s
        self._waiting_for_ready = False

    def poll(self, now: float, ready_at: float | None) -> int | None:
        """Release if due (call from the frame loop): the bytes released, None when not due."""
        if self._waiting_for_ready and ready_at is not None:
            self.rearm(now)
        if self._due is None or now < self._due:
            return None
        self._due = None
        released = release_file_pages(since=self._since)
        self._since = ()
        self.last_released = released
        return released


__all__ = ["FileMapping", "WarmRelease", "file_mappings", "parse_smaps", "releasable", "release_file_pages"]
