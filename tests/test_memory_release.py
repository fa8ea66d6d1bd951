"""Memory released by the long-running processes: enrolment's second detector and glibc's allocator settings."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from facegate import face_confirm
from facegate.engine import FaceEngine
from facegate.face_confirm import confirm_human_face, release_second_detectors
from facegate.images import load_image
from facegate.memory import release_free_memory, tune_allocator

GLIBC = sys.platform.startswith("linux") and "libc.so" in (ctypes.util.find_library("c") or "")


def test_second_detector_is_released_and_reloaded_with_the_same_verdict(engine: FaceEngine,
                                                                          samples_dir: Path) -> None:
    image = load_image(samples_dir / "obama.jpg")
    detection = engine.detect(image)[0]
    first = confirm_human_face(image, detection)
    assert face_confirm._second_detector.cache_info().currsize == 1
    release_second_detectors()
    assert face_confirm._second_detector.cache_info().currsize == 0
    again = confirm_human_face(image, detection)  # loaded again on demand
    assert first == again and again.confirmed
    release_second_detectors()


@pytest.mark.skipif(not GLIBC, reason="mallopt/malloc_trim are glibc's")
def test_allocator_settings_apply_on_glibc() -> None:
    assert tune_allocator() is True
    release_free_memory()  # returns nothing, must not raise


@pytest.mark.slow
def test_demo_replays_without_the_second_detector_loaded(tmp_path: Path) -> None:
    """The demo's replay runs with enrolment's MMOD interpreter released (same events as before)."""
    script = (
        "import sys\n"
        "from facegate import face_confirm\n"
        "from facegate.service import Service\n"
        "seen = []\n"
        "real_run = Service.run\n"
        "def run(self):\n"
        "    seen.append(face_confirm._second_detector.cache_info().currsize)\n"
        "    return real_run(self)\n"
        "Service.run = run\n"
        "from facegate.cli import main\n"
        "code = main(['demo', '--broker', 'none', '--state-dir', sys.argv[1]])\n"
        "print('loaded at replay:', seen)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "state")], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded at replay: [0]" in done.stdout
    assert '"recognized": ["Barack Obama"], "unknown": 1' in done.stderr
