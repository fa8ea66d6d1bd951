"""Capture-side numbers: how fast a replay decodes, and what the hand-off does behind a slow consumer.

:func:`bench_replay_decode` reads a video with ``pacing="fast"`` and reports frames/s (optionally
resized, as the daemon would for a 1080p file). :func:`bench_handoff` runs the real
:class:`~facegate.capture.runner.CaptureRunner` on a replay paced in real time while a consumer
spends ``consumer_ms`` per frame (standing in for inference), and reports frames captured, analysed
and dropped plus the age of each frame when the consumer takes it (capture-to-inference delay).
Nothing is printed; the ``bench`` command formats rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegate.capture.base import EndOfStream
from facegate.capture.handoff import FrameHandoff
from facegate.capture.replay import Pacing, ReplaySource
from facegate.capture.runner import CaptureRunner


@dataclass(frozen=True, slots=True)
class DecodeBenchRow:
    source: str
    size: str
    frames: int
    seconds: float
    fps: float

    HEADERS = ("source", "size", "frames", "seconds", "fps")

    def cells(self) -> list[object]:
        return [self.source, self.size, self.frames, self.seconds, self.fps]


@dataclass(frozen=True, slots=True)
class HandoffBenchRow:
    consumer_ms: float
    capacity: int
    captured: int
    analysed: int
    dropped: int
    capture_fps: float
    age_p50_ms: float
    age_p99_ms: float

    HEADERS = ("consumer ms", "capacity", "captured", "analysed", "dropped", "capture fps", "age p50 ms", "age p99 ms")

    def cells(self) -> list[object]:
        return [self.consumer_ms, self.capacity, self.captured, self.analysed, self.dropped, self.capture_fps,
                self.age_p50_ms, self.age_p99_ms]


def bench_replay_decode(path: str | Path, *, size: tuple[int, int] | None = None, repeat: int = 1) -> DecodeBenchRow:
    """Decode ``path`` ``repeat`` times as fast as possible; ``size`` = (W, H) resizes like the daemon."""
    frames = 0
    shape = ""
    start = time.perf_counter()
    for _ in range(repeat):
        source = ReplaySource("bench", path=path, pacing="fast",
                              width=size[0] if size else None, height=size[1] if size else None)
        source.open()
        try:
            while True:
                frame = source.read(1.0)
                if frame is not None:
                    frames += 1
                    shape = f"{frame.width}x{frame.height}"
        except EndOfStream:
            pass
        finally:
            source.close()
    seconds = time.perf_counter() - start
    return DecodeBenchRow(Path(path).name, shape, frames, seconds, frames / seconds if seconds > 0 else 0.0)


def bench_handoff(
    path: str | Path,
    *,
    consumer_ms: float,
    capacity: int = 1,
    pacing: Pacing = "realtime",
    size: tuple[int, int] | None = None,
) -> HandoffBenchRow:
    """Replay ``path`` through a runner and a consumer that needs ``consumer_ms`` per frame."""
    source = ReplaySource("bench", path=path, pacing=pacing,
                          width=size[0] if size else None, height=size[1] if size else None)
    handoff = FrameHandoff(capacity=capacity)
    runner = CaptureRunner([source], handoff)
    ages: list[float] = []
    start = time.monotonic()
    runner.start()
    try:
        while True:
            frame = handoff.get(0.5)
            if frame is None:
                if handoff.exhausted:
                    break
                continue
            ages.append(time.monotonic() - frame.monotonic)
            # Stand-in for inference; like TFLite's invoke it releases the GIL while busy.
            time.sleep(consumer_ms / 1000.0)
    finally:
        runner.stop()
    elapsed = time.monotonic() - start
    health = runner.health_of("bench")
    counters = handoff.counters()["bench"]
    p50, p99 = (np.percentile(np.asarray(ages) * 1e3, [50.0, 99.0]).tolist() if ages else [float("nan")] * 2)
    return HandoffBenchRow(
        consumer_ms=consumer_ms,
        capacity=capacity,
        captured=health.frames,
        analysed=counters.taken,
        dropped=counters.dropped,
        capture_fps=health.frames / elapsed if elapsed > 0 else float("nan"),
        age_p50_ms=float(p50),
        age_p99_ms=float(p99),
    )


__all__ = ["DecodeBenchRow", "HandoffBenchRow", "bench_handoff", "bench_replay_decode"]
