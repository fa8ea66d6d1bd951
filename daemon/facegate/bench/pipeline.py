"""Throughput and latency of :meth:`facegate.pipeline.Pipeline.step` over a replay.

:func:`bench_pipeline` measures, for each configuration:

* ``threads``: the ``num_threads`` the factory gives the models (TFLite interpreter threads);
* ``workers``: independent pipelines run concurrently in Python threads, each on its own copy of the
  replay under its own camera name (several cameras in one process; TFLite releases the GIL).

It reports frames/s over the whole run (all workers), the per-frame step latency p50/p99 (frame in to
decisions out) and the same for the frames that produced an event, plus per-stage p50 from the
pipeline's own :class:`~facegate.stats.Stats`. Nothing is printed: the ``bench`` command formats rows.
Frames keep the timestamps of the replay, so decisions behave as on the live stream while frames are
processed as fast as possible.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from facegate.pipeline import Pipeline
from facegate.types import Frame, ImageBGR

logger = logging.getLogger(__name__)

PipelineFactory = Callable[[int], Pipeline]


@dataclass(frozen=True, slots=True)
class PipelineBenchRow:
    threads: int
    workers: int
    frames: int
    faces: int
    events: int
    seconds: float
    fps: float
    latency_p50_ms: float
    latency_p99_ms: float
    decision_p50_ms: float  # step latency of the frames that emitted an event (NaN if none)
    decision_p99_ms: float
    #: ``(stage, p50 ms)`` in pipeline order, from the first worker's stats
    stages: tuple[tuple[str, float], ...]

    HEADERS = (
        "threads", "workers", "frames", "faces", "events", "fps", "p50 ms", "p99 ms",
        "decision p50 ms", "decision p99 ms", "stages p50 ms",
    )

    def cells(self) -> list[object]:
        stages = " ".join(f"{name}={ms:.2f}" for name, ms in self.stages)
        return [self.threads, self.workers, self.frames, self.faces, self.events, self.fps, self.latency_p50_ms,
                self.latency_p99_ms, self.decision_p50_ms, self.decision_p99_ms, stages]


@dataclass(slots=True)
class _WorkerResult:
    latencies: list[float]
    decision_latencies: list[float]
    faces: int = 0
    events: int = 0


def _percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(np.asarray(values, dtype=np.float64) * 1e3, [50.0, 99.0])
    return float(p50), float(p99)


def _run(pipeline: Pipeline, frames: Sequence[Frame], result: _WorkerResult) -> None:
    clock = time.perf_counter
    for frame in frames:
        t0 = clock()
        events = pipeline.step(frame)
        elapsed = clock() - t0
        result.latencies.append(elapsed)
        if events:
            result.decision_latencies.append(elapsed)
            result.events += len(events)
    result.faces = pipeline.stats.snapshot().faces


def bench_pipeline(
    make_pipeline: PipelineFactory,
    frames: Sequence[Frame],
    *,
    configs: Sequence[tuple[int, int]] = ((1, 1), (2, 1), (1, 2)),
    warmup: int = 5,
) -> list[PipelineBenchRow]:
    """One row per ``(threads, workers)`` in ``configs``.

    ``make_pipeline(threads)`` must return a *fresh* :class:`Pipeline` (its own tracker and decision
    state; models may be shared and loaded once). Each pipeline first sees ``warmup`` frames under the
    camera name ``"warmup"`` so model warm-up and first-call allocations are not measured.
    """
    if not frames:
        raise ValueError("no frames to replay")
    rows: list[PipelineBenchRow] = []
    for threads, workers in configs:
        pipelines = [make_pipeline(threads) for _ in range(workers)]
        for pipeline in pipelines:
            for frame in frames[:warmup]:
                pipeline.step(dataclasses.replace(frame, camera="warmup"))
        streams = [
            [dataclasses.replace(f, camera=f"{f.camera}-{w}") for f in frames] if workers > 1 else list(frames)
            for w in range(workers)
        ]
        results = [_WorkerResult([], []) for _ in range(workers)]
        threads_ = [
            threading.Thread(target=_run, args=(p, s, r), name=f"bench-worker-{i}", daemon=True)
            for i, (p, s, r) in enumerate(zip(pipelines, streams, results, strict=True))
        ]
        start = time.perf_counter()
        for t in threads_:
            t.start()
        for t in threads_:
            t.join()
        seconds = time.perf_counter() - start
        latencies = [x for r in results for x in r.latencies]
        decisions = [x for r in results for x in r.decision_latencies]
        p50, p99 = _percentiles(latencies)
        d50, d99 = _percentiles(decisions)
        snapshot = pipelines[0].stats.snapshot()
        stages = tuple((s.stage, s.p50_ms) for s in snapshot.stages if s.count)
        rows.append(
            PipelineBenchRow(
                threads=threads,
                workers=workers,
                frames=len(latencies),
                faces=sum(r.faces for r in results),
                events=sum(r.events for r in results),
                seconds=seconds,
                fps=len(latencies) / seconds if seconds > 0 else float("nan"),
                latency_p50_ms=p50,
                latency_p99_ms=p99,
                decision_p50_ms=d50,
                decision_p99_ms=d99,
                stages=stages,
            )
        )
        logger.debug("pipeline bench threads=%d workers=%d: %.1f fps", threads, workers, rows[-1].fps)
    return rows


def replay_frames(
    images: Sequence[ImageBGR], *, camera: str = "bench", fps: float = 10.0, start: float = 0.0
) -> list[Frame]:
    """Wrap BGR images as frames ``1/fps`` apart (monotonic from ``start``, wall from the UNIX epoch)."""
    step = 1.0 / fps
    return [
        Frame(image=image, camera=camera, index=i, monotonic=start + i * step, wall=1_700_000_000.0 + i * step)
        for i, image in enumerate(images)
    ]


__all__ = ["PipelineBenchRow", "PipelineFactory", "bench_pipeline", "replay_frames"]
