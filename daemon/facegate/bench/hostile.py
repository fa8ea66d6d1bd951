"""Peak RSS of ``facegate detect`` on a hostile image (a valid 20000x20000 PNG of 1.2 MB).

Each measurement is a fresh ``python -m facegate detect`` process that reports its own ``VmHWM``
(:func:`~facegate.bench.timing.child_peak_rss_mb`). "pixel cap off"
raises this process's cap above the image (what facegate did before the cap: decode everything,
then shrink), "pixel cap on" is the default.
"""

from __future__ import annotations

import struct
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from facegate.bench.timing import child_peak_rss_mb

#: The hostile image: 20000x20000 RGB is 1.2 GB decoded.
BOMB_SIDE = 20000


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
    """Run ``facegate detect PATH`` in a child (cap ``on`` or ``off``) and read the child's own peak RSS."""
    t0 = time.perf_counter()
    code, peak = child_peak_rss_mb([*(["--cap-off"] if mode == "off" else []), "detect", str(path)])
    return HostileRow(path.name, f"pixel cap {mode}", code, round(peak, 1), round(time.perf_counter() - t0, 2))


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
