"""glibc allocator settings for the long-running processes (``facegate run``, ``facegate demo``).

Measured on the daemon replaying 640x360 video (``facegate bench --pipeline VIDEO``): frames (691 kB
each) and other large numpy buffers are freed from one thread (capture) and reallocated from another,
and glibc's *dynamic* mmap threshold, once a frame-sized block has been freed, serves every later frame
from the arenas, where freed frames stay resident as fragmentation (3-5 MB). A fixed threshold keeps
blocks from 256 kB up in their own mappings, which go back to the kernel on ``free``; two arenas instead
of 8 per core keep the capture, MQTT and LiteRT threads from each growing their own heap. After the models
are loaded (and after an enrolment, whose second-opinion detector is released) :func:`release_free_memory`
returns the freed heap pages (``malloc_trim``).

Nothing here runs at import. Each call is a no-op where the C library is not glibc (macOS, musl): the
settings are an optimisation, never a requirement.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging

logger = logging.getLogger(__name__)

# mallopt(3) parameter numbers (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

#: blocks of this size and larger get their own mapping, returned to the kernel when freed; smaller than
#: a 640x360 BGR frame (691 kB) and than LiteRT's tensor arenas, larger than Python's objects and the
#: per-face arrays (a 150x150 chip is 67 kB), which stay in the fast arenas
MMAP_THRESHOLD_BYTES = 256 * 1024
#: free memory at the top of a heap beyond this is returned at once (glibc's default is 128 kB too, but
#: it grows with the dynamic mmap threshold, which a fixed threshold switches off)
TRIM_THRESHOLD_BYTES = 128 * 1024
#: one arena for the main thread plus one shared by the others (glibc's default: 8 per core)
ARENA_MAX = 2


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (the settings here and :mod:`facegate.file_pages` call
    into it), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p  # only glibc has it
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator() -> bool:
    """Apply the allocator settings above; call once, early, before the worker threads start.

    Returns whether they were applied (glibc only).
    """
    libc = glibc()
    if libc is None:
        return False
    ok = all(libc.mallopt(param, value) == 1 for param, value in (
        (_M_ARENA_MAX, ARENA_MAX),
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
    ))
    if not ok:
        logger.debug("mallopt refused an allocator setting; glibc defaults kept for it")
    return ok


def release_free_memory() -> None:
    """Collect garbage and give free heap pages back to the kernel (after start-up, after an enrolment)."""
    gc.collect()
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


__all__ = [
    "ARENA_MAX",
    "MMAP_THRESHOLD_BYTES",
    "TRIM_THRESHOLD_BYTES",
    "glibc",
    "release_free_memory",
    "tune_allocator",
]
