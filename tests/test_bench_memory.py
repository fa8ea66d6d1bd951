"""The memory split printed by ``facegate bench --pipeline`` adds up to the process's RSS."""

from __future__ import annotations

import os
from pathlib import Path

import cv2

from facegate.bench.service import memory_breakdown


def test_memory_breakdown_accounts_for_the_resident_set() -> None:
    assert cv2.__version__  # OpenCV is mapped in this process
    rows = dict(memory_breakdown(os.getpid()))
    status = {line.split(":")[0]: line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
              if line.startswith(("VmRSS", "RssAnon"))}
    rss_mb = int(status["VmRSS"]) / 1024.0
    private = next(mb for name, mb in rows.items() if name.startswith("private"))
    opencv = next(mb for name, mb in rows.items() if "OpenCV" in name)
    assert private > 5.0 and opencv > 1.0
    assert abs(sum(rows.values()) - rss_mb) < 0.1 * rss_mb + 2.0  # smaps and status sampled moments apart
    assert memory_breakdown(2**31 - 1) == []  # no such process: nothing, not an error
