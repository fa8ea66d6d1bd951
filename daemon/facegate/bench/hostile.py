"""Peak RSS of ``facegate detect`` on a hostile image (a valid 20000x20000 PNG of 1.2 MB).

Each measurement is a fresh ``python -m facegate detect`` process whose own peak comes from
``os.wait4`` (``RUSAGE_CHILDREN`` would be the maximum over every child so far). "pixel cap off"
raises this process's cap above the image (what facegate did before the cap: decode everything,
then shrink), "pixel cap on" is the default.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

#: The hostile image: 20000x20000 RGB is 1.2 GB decoded.
BOMB_SIDE = 20000

_DETECT = (
    "import sys\n"
    "from facegate.cli import main\n"
    "from facegate.images import set_max_pixels\n"
    "if sys.argv[2] == 'off':\n"
    "    set_max_pixels(10**9)\n"
    "sys.exit(main(['detect', sys.argv[1]]))\n"
)


@dataclass(frozen=True, slots=True)
class HostileRow:
    input: str
    mode: str
    exit_code: int
    peak_rss_mb: float
    wall_s: float


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_png_bomb(path: Path, side: int = BOMB_SIDE) -> int:
    """A complete, decodable ``side x side`` black RGB PNG (zlib makes ~1000:1 of zero rows); its size."""
    compressor = zlib.compressobj(9)
    rows = b"\x00" * ((1 + 3 * side) * 500)
    parts = [compressor.compress(rows) for _ in range(side // 500)]
    parts.append(compressor.compress(b"\x00" * ((1 + 3 * side) * (side % 500))))
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
    path.write_bytes(data)
    return len(data)


def measure_detect(path: Path, mode: str) -> HostileRow:
    """Run ``facegate detect PATH`` in a child and read that child's own peak RSS."""
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _DETECT, str(path), mode],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / 1024.0 if sys.platform != "darwin" else usage.ru_maxrss / (1024.0 * 1024.0)
    return HostileRow(path.name, f"pixel cap {mode}", child.returncode, round(peak, 1),
                      round(time.perf_counter() - t0, 2))


def bench_hostile(*, cap_off: bool = True) -> list[HostileRow]:
    """Cap on, then (unless ``cap_off`` is False: it needs ~1.3 GB free) cap off."""
    with tempfile.TemporaryDirectory(prefix="facegate-hostile-") as tmp:
        path = Path(tmp) / f"bomb_{BOMB_SIDE}x{BOMB_SIDE}.png"
        write_png_bomb(path)
        rows = [measure_detect(path, "on")]
        if cap_off:
            rows.append(measure_detect(path, "off"))
        return rows


__all__ = ["HostileRow", "bench_hostile", "measure_detect", "write_png_bomb"]
