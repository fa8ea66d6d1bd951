"""The memory split printed by ``facegate bench --pipeline`` adds up to the process's RSS."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import pytest

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


@pytest.mark.slow
def test_memory_stages_run_in_a_child_and_the_release_unmaps_file_pages() -> None:
    from facegate.bench.memory_stages import memory_stages

    stages = memory_stages()  # the synthetic demo frames
    names = [s.stage for s in stages]
    assert len(names) == 15 and names[-1].startswith("clean file pages unmapped")
    before, after = stages[-2], stages[-1]
    assert before.file_mb > 40.0  # libraries and models touched by imports, loading and the frames
    assert after.file_mb < before.file_mb - 20.0  # most of it is not read again by the pipeline
    assert abs(after.anon_mb - before.anon_mb) < 10.0  # private memory is never released this way
