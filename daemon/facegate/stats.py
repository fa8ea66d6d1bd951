"""Counters and per-stage latency of the pipeline, for the periodic ``stats`` message and ``bench``.

Recording is O(1) and allocation-free (fixed-size rings of floats); percentiles are computed only when
a snapshot is taken. One lock guards everything because drops are counted on the capture thread,
stages on the pipeline thread and snapshots are read by the publisher thread.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

#: Stage names recorded by :class:`facegate.pipeline.Pipeline`, in pipeline order.
PIPELINE_STAGES: tuple[str, ...] = ("detect", "track", "align", "embed", "match", "decide", "total")


class LatencyRing:
    """The last ``capacity`` durations (seconds) of one stage, plus lifetime count/total/max."""

    __slots__ = ("_buf", "_next", "_size", "count", "max", "total")

    def __init__(self, capacity: int = 1024) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._buf: list[float] = [0.0] * capacity
        self._next = 0
        self._size = 0
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        buf = self._buf
        buf[self._next] = seconds
        self._next = (self._next + 1) % len(buf)
        if self._size < len(buf):
            self._size += 1
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def window(self) -> list[float]:
        """The durations currently in the ring, oldest first."""
        if self._size < len(self._buf):
            return self._buf[: self._size]
        return self._buf[self._next :] + self._buf[: self._next]

    def percentiles(self, qs: Iterable[float]) -> tuple[float, ...]:
        """Percentiles (0..100) of the window, NaN when empty."""
        values = self.window()
        if not values:
            return tuple(math.nan for _ in qs)
        return tuple(float(v) for v in np.percentile(np.asarray(values, dtype=np.float64), list(qs)))


class StageTimer:
    """Lap timer over consecutive stages: ``start()``, then ``lap("detect")``, ``lap("align")``...

    Each lap records the time since the previous lap (or ``start``) into ``stats``; no object is
    created per measurement, unlike a context manager.
    """

    __slots__ = ("_clock", "_start", "_stats", "_t")

    def __init__(self, stats: Stats, clock: Callable[[], float] = time.perf_counter) -> None:
        self._stats = stats
        self._clock = clock
        self._t = self._start = clock()

    def start(self) -> float:
        self._t = self._start = self._clock()
        return self._t

    def lap(self, stage: str) -> float:
        """Record and return the seconds since the previous lap."""
        now = self._clock()
        elapsed = now - self._t
        self._stats.record(stage, elapsed)
        self._t = now
        return elapsed

    def skip(self) -> None:
        """Restart the lap without recording (a stage that did not run this frame)."""
        self._t = self._clock()

    def total(self, stage: str = "total") -> float:
        """Record and return the seconds since ``start``."""
        elapsed = self._clock() - self._start
        self._stats.record(stage, elapsed)
        return elapsed


@dataclass(frozen=True, slots=True)
class StageLatency:
    """Latency of one stage in milliseconds; p50/p99 over the recent window, the rest lifetime."""

    stage: str
    count: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """An immutable copy of :class:`Stats` at one instant (what the ``stats`` MQTT message carries).

    ``stages`` lists only stages that ran at least once, in the order they were declared or first seen.
    """

    uptime_s: float
    frames: int
    frames_dropped: int
    fps: float
    faces: int
    stages: tuple[StageLatency, ...]
    #: ``(name, count)`` sorted by name: ``rejected.<reason>``, ``events.<type>``, and free counters
    counters: tuple[tuple[str, int], ...]

    def counter(self, name: str) -> int:
        for key, value in self.counters:
            if key == name:
                return value
        return 0

    def stage(self, name: str) -> StageLatency | None:
        for s in self.stages:
            if s.stage == name:
                return s
        return None


class Stats:
    """Mutable, thread-safe pipeline statistics.

    ``clock`` is a monotonic clock in seconds (injectable for tests); ``fps`` counts frames processed
    during the last ``fps_horizon_s`` seconds (so a stalled pipeline reads 0, not its old rate).
    """

    def __init__(
        self,
        stages: Iterable[str] = PIPELINE_STAGES,
        *,
        capacity: int = 1024,
        fps_horizon_s: float = 5.0,
        fps_capacity: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._capacity = capacity
        self._started = clock()
        self._stages: dict[str, LatencyRing] = {name: LatencyRing(capacity) for name in stages}
        self._counters: dict[str, int] = {}
        self._frames = 0
        self._dropped = 0
        self._faces = 0
        self._fps_horizon = fps_horizon_s
        self._frame_times: list[float] = [-math.inf] * fps_capacity
        self._frame_next = 0

    def record(self, stage: str, seconds: float) -> None:
        """Add one duration (seconds) to ``stage``; unknown stages are created on first use."""
        with self._lock:
            ring = self._stages.get(stage)
            if ring is None:
                ring = self._stages[stage] = LatencyRing(self._capacity)
            ring.add(seconds)

    def frame_processed(self, faces: int = 0) -> None:
        now = self._clock()
        with self._lock:
            self._frames += 1
            self._faces += faces
            times = self._frame_times
            times[self._frame_next] = now
            self._frame_next = (self._frame_next + 1) % len(times)

    def frame_dropped(self, n: int = 1) -> None:
        with self._lock:
            self._dropped += n

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def rejected(self, reason: str) -> None:
        self.count("rejected." + reason)

    def event(self, event_type: str) -> None:
        self.count("events." + event_type)

    def snapshot(self) -> StatsSnapshot:
        now = self._clock()
        with self._lock:
            rings = [(name, ring.count, ring.total, ring.max, ring.window()) for name, ring in self._stages.items()]
            counters = tuple(sorted(self._counters.items()))
            frames, dropped, faces = self._frames, self._dropped, self._faces
            recent = sum(1 for t in self._frame_times if now - t <= self._fps_horizon)
        uptime = now - self._started
        span = min(self._fps_horizon, uptime)
        fps = recent / span if span > 0 else 0.0
        stages = []
        for name, count, total, mx, window in rings:
            if not count:
                continue  # a stage that never ran has no latency (and NaN is not JSON)
            p50, p99 = np.percentile(np.asarray(window, dtype=np.float64), [50.0, 99.0])
            mean = total / count
            stages.append(StageLatency(name, count, float(p50) * 1e3, float(p99) * 1e3, mean * 1e3, mx * 1e3))
        return StatsSnapshot(
            uptime_s=uptime,
            frames=frames,
            frames_dropped=dropped,
            fps=fps,
            faces=faces,
            stages=tuple(stages),
            counters=counters,
        )


__all__ = ["PIPELINE_STAGES", "LatencyRing", "StageLatency", "StageTimer", "Stats", "StatsSnapshot"]
