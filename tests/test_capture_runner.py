"""CaptureRunner with real sources: retries with growing backoff, health snapshots, isolation of cameras."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facegate.capture import (
    BackoffPolicy,
    CaptureHealth,
    CaptureRunner,
    FrameHandoff,
    build_source,
)
from facegate.capture.opencv import OpenCvSource
from facegate.capture.replay import ReplaySource
from facegate.capture.synthetic import DemoSequence, demo_frames, write_video
from facegate.types import Frame
from tests.fixtures.mjpeg import MjpegServer, closed_port


@pytest.fixture(scope="module")
def demo() -> DemoSequence:
    return demo_frames(person_frames=6, empty_frames=4)


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


class RecordingOpenCv(OpenCvSource):
    """Records when each (re)connect is attempted, to observe the backoff from outside."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.attempts: list[float] = []

    def open(self) -> None:
        self.attempts.append(time.monotonic())
        super().open()


def test_backoff_policy_grows_and_caps() -> None:
    policy = BackoffPolicy(initial=0.5, maximum=4.0, factor=2.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    jittered = BackoffPolicy(initial=1.0, maximum=30.0, jitter=0.1)
    import random

    rng = random.Random(1)
    assert all(0.9 <= jittered.delay(1, rng) <= 1.1 for _ in range(100))
    with pytest.raises(ValueError):
        BackoffPolicy(initial=2.0, maximum=1.0)


def test_refused_rtsp_retries_with_growing_delays_while_another_camera_delivers(demo: DemoSequence) -> None:
    door = RecordingOpenCv("door", device=f"rtsp://127.0.0.1:{closed_port()}/live", open_timeout=1.0)
    hall = ReplaySource("hall", frames=demo.frames, pacing="realtime", fps=40.0, loop=True)
    handoff = FrameHandoff(capacity=2)
    runner = CaptureRunner([door, hall], handoff, backoff=BackoffPolicy(initial=0.1, maximum=0.8, jitter=0.0))
    received: list[Frame] = []
    done = threading.Event()

    def consume() -> None:
        while not done.is_set():
            got = handoff.get(0.2)
            if got is not None:
                received.append(got)

    consumer = threading.Thread(target=consume)
    consumer.start()
    runner.start()
    try:
        wait_until(lambda: len(door.attempts) >= 6)
        door_health = runner.health_of("door")
        hall_health = runner.health_of("hall")
    finally:
        runner.stop()
        done.set()
        consumer.join(5.0)
    gaps = np.diff(door.attempts)
    # 0.1, 0.2, 0.4, 0.8, 0.8 s (plus the failed connect): each wait at least the policy's delay ...
    for n, gap in enumerate(gaps, start=1):
        assert gap >= min(0.8, 0.1 * 2 ** (n - 1)) * 0.95
    # ... growing until the cap.
    assert gaps[0] < gaps[1] < gaps[2] < gaps[3]
    assert door_health.state == "retrying"
    assert door_health.failures >= 5 and door_health.consecutive_failures == door_health.failures
    assert door_health.frames == 0
    assert door_health.last_error is not None and "cannot open" in door_health.last_error
    assert "127.0.0.1" in door_health.source
    # The healthy camera was never held up by the failing one.
    assert hall_health.state == "running"
    assert hall_health.failures == 0
    assert hall_health.frames > 40
    assert hall_health.fps > 5.0
    assert {f.camera for f in received} == {"hall"}
    after = runner.health()
    assert after["door"].state == "stopped" and after["hall"].state == "stopped"


def test_replay_file_deleted_mid_replay_is_retried_and_reported(tmp_path: Path, demo: DemoSequence) -> None:
    video = write_video(demo.frames, tmp_path / "entry.avi", fps=20.0)
    source = ReplaySource("entry", path=video, pacing="realtime")
    handoff = FrameHandoff(capacity=1000)
    states: list[str] = []
    runner = CaptureRunner(
        [source], handoff, backoff=BackoffPolicy(initial=0.05, maximum=0.4, jitter=0.0),
        listener=lambda h: states.append(h.state),
    )
    runner.start()
    try:
        wait_until(lambda: runner.health_of("entry").frames >= 5)
        stash = video.rename(tmp_path / "moved.avi")
        wait_until(lambda: runner.health_of("entry").failures >= 3)
        during = runner.health_of("entry")
        stash.rename(video)
        assert runner.wait(20.0)
    finally:
        runner.stop()
    assert during.state == "retrying"
    assert during.last_error is not None and ("vanished" in during.last_error or "does not exist" in during.last_error)
    assert during.retry_in is not None and during.retry_in <= 0.4
    final = runner.health_of("entry")
    assert final.state == "ended"
    assert final.frames == len(demo)  # resumed where it stopped: no frame lost or repeated
    assert final.consecutive_failures == 0 and final.failures >= 3
    assert states[0] == "running" and "retrying" in states and states[-1] == "ended"
    indices = []
    while (got := handoff.get(0.0)) is not None:
        indices.append(got.index)
    assert indices == list(range(len(demo)))
    assert handoff.exhausted


def test_mjpeg_camera_that_hangs_is_reconnected(demo: DemoSequence) -> None:
    with MjpegServer(demo.frames, fps=50.0) as server:
        source = OpenCvSource("porch", device=server.url, open_timeout=2.0, read_timeout=0.5)
        handoff = FrameHandoff(capacity=4)
        runner = CaptureRunner([source], handoff, backoff=BackoffPolicy(initial=0.1, maximum=0.5, jitter=0.0))
        runner.start()
        try:
            wait_until(lambda: runner.health_of("porch").frames >= 10)
            server.stall.set()
            wait_until(lambda: runner.health_of("porch").failures >= 1)
            server.stall.clear()
            before = runner.health_of("porch").frames
            wait_until(lambda: runner.health_of("porch").frames >= before + 10)
            health = runner.health_of("porch")
        finally:
            runner.stop()
    assert health.state == "running"
    assert health.consecutive_failures == 0
    assert health.last_error is not None and "no frame" in health.last_error
    assert server.connections >= 2
    assert health.resolution == (640, 360)


def test_fatal_source_fails_alone_and_end_of_stream_ends(tmp_path: Path, demo: DemoSequence) -> None:
    broken = ReplaySource("broken", path=tmp_path / "missing.mp4")
    short = ReplaySource("short", frames=demo.frames[:5], pacing="fast")
    handoff = FrameHandoff(capacity=10)
    runner = CaptureRunner([broken, short], handoff)
    runner.start()
    assert runner.wait(10.0)
    health = runner.health()
    assert health["broken"].state == "failed"
    assert health["broken"].last_error is not None and "does not exist" in health["broken"].last_error
    assert health["short"].state == "ended" and health["short"].frames == 5
    assert len(handoff) == 5
    while handoff.get(0.0) is not None:
        pass
    assert handoff.exhausted
    assert not runner.alive


def test_slow_consumer_drops_are_reported_in_health(demo: DemoSequence) -> None:
    source = ReplaySource("fast", frames=demo.frames, pacing="fast")
    handoff = FrameHandoff(capacity=2)
    runner = CaptureRunner([source], handoff)
    runner.start()
    assert runner.wait(10.0)
    health = runner.health_of("fast")
    assert health.frames == len(demo)
    assert health.dropped == len(demo) - 2 == handoff.dropped("fast")
    assert health.state == "ended"


def test_max_consecutive_failures_gives_up() -> None:
    source = OpenCvSource("dead", device=f"http://127.0.0.1:{closed_port()}/x.mjpg", open_timeout=1.0)
    runner = CaptureRunner([source], FrameHandoff(), backoff=BackoffPolicy(initial=0.01, maximum=0.02),
                           max_consecutive_failures=3)
    runner.start()
    assert runner.wait(15.0)
    health = runner.health_of("dead")
    assert health.state == "failed" and health.failures == 3


def test_health_snapshot_is_frozen_and_serialisable(demo: DemoSequence) -> None:
    source = build_source("x", type="replay", frames=list(demo.frames[:3]), pacing="fast")
    runner = CaptureRunner([source], FrameHandoff(capacity=5))
    runner.start()
    assert runner.wait(10.0)
    health = runner.health_of("x")
    assert isinstance(health, CaptureHealth)
    with pytest.raises(AttributeError):
        health.frames = 0  # type: ignore[misc]
    as_dict = health.as_dict()
    assert as_dict["camera"] == "x" and as_dict["state"] == "ended" and as_dict["resolution"] == (640, 360)


def test_duplicate_camera_ids_are_rejected(demo: DemoSequence) -> None:
    a = ReplaySource("same", frames=demo.frames[:1])
    b = ReplaySource("same", frames=demo.frames[:1])
    with pytest.raises(ValueError, match="twice"):
        CaptureRunner([a, b], FrameHandoff())


def test_capture_bench_rows_add_up(tmp_path: Path, demo: DemoSequence) -> None:
    from facegate.bench.capture import bench_handoff, bench_replay_decode

    video = write_video(demo.frames, tmp_path / "bench.avi", fps=50.0)
    decode = bench_replay_decode(video, size=(320, 180))
    assert (decode.frames, decode.size) == (len(demo), "320x180")
    row = bench_handoff(video, consumer_ms=40.0, capacity=1)
    assert row.captured == len(demo)
    assert row.analysed + row.dropped == row.captured
    assert row.dropped > 0  # 50 fps in, at most 25 fps out


def test_config_sections_build_sources_directly(tmp_path: Path, demo: DemoSequence) -> None:
    """``build_source(camera.id, camera.source.model_dump())`` works for every YAML source type."""
    models = pytest.importorskip("facegate.config.models")
    video = write_video(demo.frames[:4], tmp_path / "clip.avi", fps=20.0)

    replay = build_source("a", models.ReplaySource(path=video, fps="as_fast_as_possible").model_dump())
    assert isinstance(replay, ReplaySource) and replay.pacing == "fast"
    paced = build_source("b", models.ReplaySource(path=video, fps=12.5, loop=True).model_dump())
    assert isinstance(paced, ReplaySource) and paced.pacing == "realtime" and paced.nominal_fps == 12.5

    url = "rtsp://user:pw@127.0.0.1:8554/door"
    stream = build_source("c", models.OpencvSource(url=url, width=640, height=360).model_dump())
    assert isinstance(stream, OpenCvSource) and stream.device == url and stream.backend == "ffmpeg"
    usb = build_source("d", models.OpencvSource(device=2).model_dump())
    assert isinstance(usb, OpenCvSource) and usb.device == 2 and usb.backend == "v4l2"
    default = build_source("e", models.OpencvSource().model_dump())
    assert isinstance(default, OpenCvSource) and default.device == 0

    from facegate.capture.picamera import PicameraSource

    pi = build_source("f", models.Picamera2Source(lores_format="XRGB8888", fps=20).model_dump())
    assert isinstance(pi, PicameraSource) and pi.lores_format == "XRGB8888" and pi.nominal_fps == 20
