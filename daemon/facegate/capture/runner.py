"""One capture thread per camera: read the source, hand frames off, retry failures with capped backoff.

A :class:`~facegate.errors.CaptureError` (stream dropped, file vanished, device busy) closes the
source and reopens it after ``initial * factor**(n-1)`` seconds (capped at ``maximum``, 5 s by default,
with a little jitter), where ``n`` counts failures since the last delivered frame. While it waits
after a failure that left the source unreachable (:meth:`FrameSource.probe` false: device node or
file missing, TCP port refused), the runner probes it every ``probe_interval`` seconds and reopens
as soon as it answers, so a camera that comes back delivers frames within about a probe interval
plus its open time, however long it was away. (Without the cap and the probe, a 70 s outage grew
the delay to 29 s and frames resumed 21 s after the camera was back.) A
:class:`~facegate.errors.CaptureFatal` marks the camera ``failed`` and ends its thread;
:class:`~facegate.capture.base.EndOfStream` marks it ``ended``. Either way the other cameras keep
running and the decision about the process belongs to the daemon, which reads the per-camera
:class:`CaptureHealth` snapshots (``status``, ``stats``, watchdog).

States: ``starting`` (not opened yet) -> ``running`` <-> ``retrying`` -> ``ended`` | ``failed`` |
``stopped`` (after :meth:`CaptureRunner.stop`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from facegate.capture.base import EndOfStream, FrameSource
from facegate.capture.handoff import FrameHandoff
from facegate.errors import CaptureError, CaptureFatal

logger = logging.getLogger(__name__)

CaptureState = Literal["starting", "running", "retrying", "ended", "failed", "stopped"]

#: window over which the delivered frame rate is measured
FPS_WINDOW = 2.0
#: how often an unreachable source is probed while the runner waits to reconnect it
PROBE_INTERVAL = 0.5


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Delay before reconnect attempt ``n`` (1-based): ``initial * factor**(n-1)``, capped, +-``jitter``."""

    initial: float = 1.0
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"invalid backoff policy {self}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        base = min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        if self.jitter and rng is not None:
            # Spread reconnects of cameras that failed together (one switch, one NVR).
            base *= 1.0 + rng.uniform(-self.jitter, self.jitter)
        return min(self.maximum, base)


@dataclass(frozen=True, slots=True)
class CaptureHealth:
    """A consistent snapshot of one camera's capture, for ``status`` and ``stats``."""

    camera: str
    source: str
    state: CaptureState
    frames: int
    dropped: int
    failures: int
    consecutive_failures: int
    last_error: str | None
    last_error_wall: float | None
    retry_in: float | None
    fps: float
    nominal_fps: float | None
    last_frame_age: float | None
    resolution: tuple[int, int] | None
    state_age: float = 0.0  # seconds since ``state`` was entered

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Worker:
    """Mutable per-camera bookkeeping, guarded by ``lock``; read through :meth:`snapshot`."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.state: CaptureState = "starting"
        self.frames = 0
        self.failures = 0
        self.consecutive = 0
        self.last_error: str | None = None
        self.last_error_wall: float | None = None
        self.retry_at: float | None = None
        self.times: deque[float] = deque(maxlen=512)
        self.running_since: float | None = None
        self.state_since = time.monotonic()
        self.resolution: tuple[int, int] | None = None

    def snapshot(self, dropped: int) -> CaptureHealth:
        now = time.monotonic()
        with self.lock:
            recent = sum(1 for t in self.times if now - t <= FPS_WINDOW)
            span = FPS_WINDOW if self.running_since is None else min(FPS_WINDOW, now - self.running_since)
            fps = recent / span if span > 0 and self.state == "running" else 0.0
            return CaptureHealth(
                camera=self.source.camera,
                source=self.source.name,
                state=self.state,
                frames=self.frames,
                dropped=dropped,
                failures=self.failures,
                consecutive_failures=self.consecutive,
                last_error=self.last_error,
                last_error_wall=self.last_error_wall,
                retry_in=max(0.0, self.retry_at - now) if self.retry_at is not None else None,
                fps=fps,
                nominal_fps=self.source.nominal_fps,
                last_frame_age=now - self.times[-1] if self.times else None,
                resolution=self.resolution,
                state_age=now - self.state_since,
            )


class CaptureRunner:
    """Runs every source on its own daemon thread and feeds ``handoff``.

    ``read_timeout`` bounds each ``source.read`` call (how quickly a stop is noticed for sources
    that honour it). ``max_consecutive_failures`` (``None`` = retry forever) turns a camera that
    keeps failing into ``failed``. ``listener`` is called (on the capture thread) with a fresh
    snapshot whenever a camera changes state; it must be quick and must not raise.
    """

    def __init__(
        self,
        sources: Iterable[FrameSource],
        handoff: FrameHandoff,
        *,
        backoff: BackoffPolicy | None = None,
        read_timeout: float = 0.25,
        max_consecutive_failures: int | None = None,
        listener: Callable[[CaptureHealth], None] | None = None,
        seed: int | None = None,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self.handoff = handoff
        self.backoff = backoff or BackoffPolicy()
        self.probe_interval = probe_interval
        self.read_timeout = read_timeout
        self.max_consecutive_failures = max_consecutive_failures
        self.listener = listener
        self.stop_event = threading.Event()
        self._rng = random.Random(seed)
        self._workers: dict[str, _Worker] = {}
        for source in sources:
            if source.camera in self._workers:
                raise ValueError(f"camera id {source.camera!r} is used twice")
            self._workers[source.camera] = _Worker(source)
        if not self._workers:
            raise ValueError("no frame sources to run")

    @property
    def cameras(self) -> list[str]:
        return list(self._workers)

    def start(self) -> None:
        for camera, worker in self._workers.items():
            if worker.thread is not None:
                raise RuntimeError("CaptureRunner.start() called twice")
            self.handoff.register(camera)
            worker.thread = threading.Thread(
                target=self._run, args=(worker,), name=f"capture-{camera}", daemon=True
            )
        for worker in self._workers.values():
            if worker.thread is not None:
                worker.thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask every thread to stop and wait up to ``timeout`` seconds in total; True if all ended."""
        self.stop_event.set()
        self.handoff.wake()
        deadline = time.monotonic() + timeout
        all_joined = True
        for camera, worker in self._workers.items():
            if worker.thread is None:
                continue
            worker.thread.join(max(0.0, deadline - time.monotonic()))
            if worker.thread.is_alive():
                all_joined = False
                # Stuck in a driver call: consumers must not wait for it.
                self.handoff.finish(camera)
                logger.warning("capture thread for %s did not stop within %.1fs", camera, timeout)
        return all_joined

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every capture thread has ended (finite sources, failures, stop); True if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in self._workers.values():
            if worker.thread is None:
                continue
            worker.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if worker.thread.is_alive():
                return False
        return True

    @property
    def alive(self) -> bool:
        return any(w.thread is not None and w.thread.is_alive() for w in self._workers.values())

    def health(self) -> dict[str, CaptureHealth]:
        return {camera: self.health_of(camera) for camera in self._workers}

    def health_of(self, camera: str) -> CaptureHealth:
        return self._workers[camera].snapshot(self.handoff.dropped(camera))

    # -- the capture thread ----------------------------------------------------------------------------
    def _set_state(self, worker: _Worker, state: CaptureState) -> None:
        with worker.lock:
            changed = worker.state != state
            worker.state = state
            if changed:
                worker.state_since = time.monotonic()
            if state == "running" and changed:
                worker.running_since = time.monotonic()
        if changed and self.listener is not None:
            try:
                self.listener(worker.snapshot(self.handoff.dropped(worker.source.camera)))
            except Exception:
                logger.exception("capture listener failed")

    def _run(self, worker: _Worker) -> None:
        source = worker.source
        camera = source.camera
        opened = False
        final: CaptureState = "stopped"
        try:
            while not self.stop_event.is_set():
                try:
                    if not opened:
                        source.open()
                        opened = True
                        logger.info("camera %s: %s open", camera, source.name)
                        self._set_state(worker, "running")
                    frame = source.read(self.read_timeout)
                except EndOfStream:
                    logger.info("camera %s: end of stream after %d frames", camera, worker.frames)
                    final = "ended"
                    break
                except CaptureFatal as err:
                    logger.error("camera %s: %s", camera, err)
                    self._record_error(worker, err)
                    final = "failed"
                    break
                except Exception as err:
                    opened = False
                    source.close()
                    if not isinstance(err, CaptureError):
                        logger.exception("camera %s: unexpected capture error (treated as transient)", camera)
                    if not self._backoff(worker, err):
                        final = "failed"
                        break
                    continue
                if frame is None:
                    continue
                self.handoff.put(frame)
                with worker.lock:
                    worker.frames += 1
                    worker.consecutive = 0
                    worker.retry_at = None
                    worker.times.append(frame.monotonic)
                    worker.resolution = (frame.width, frame.height)
        finally:
            source.close()
            self.handoff.finish(camera)
            self._set_state(worker, final)

    def _record_error(self, worker: _Worker, err: BaseException) -> None:
        with worker.lock:
            worker.failures += 1
            worker.consecutive += 1
            worker.last_error = str(err) or type(err).__name__
            worker.last_error_wall = time.time()

    def _backoff(self, worker: _Worker, err: BaseException) -> bool:
        """Record a transient failure and sleep before the next attempt; False if the camera gives up."""
        self._record_error(worker, err)
        attempt = worker.consecutive
        camera = worker.source.camera
        limit = self.max_consecutive_failures
        if limit is not None and attempt >= limit:
            logger.error("camera %s: giving up after %d consecutive failures: %s", camera, attempt, err)
            return False
        delay = self.backoff.delay(attempt, self._rng)
        with worker.lock:
            worker.retry_at = time.monotonic() + delay
        logger.warning("camera %s: %s; retry %d in %.1fs", camera, err, attempt, delay)
        self._set_state(worker, "retrying")
        self._wait_to_reconnect(worker.source, delay)
        return True

    def _wait_to_reconnect(self, source: FrameSource, delay: float) -> None:
        """Sleep ``delay`` seconds, cut short by stop or, for a source that was unreachable, by a probe
        that finds it reachable again (then the full open is worth trying at once)."""
        deadline = time.monotonic() + delay
        unreachable = not self._probe(source)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.stop_event.wait(min(remaining, self.probe_interval)):
                return
            if unreachable and self._probe(source):
                logger.info("camera %s: reachable again; reconnecting now", source.camera)
                return

    @staticmethod
    def _probe(source: FrameSource) -> bool:
        try:
            return source.probe()
        except Exception:  # a probe is advisory: never let it break the retry loop
            logger.debug("camera %s: probe failed", source.camera, exc_info=True)
            return True


__all__ = ["FPS_WINDOW", "PROBE_INTERVAL", "BackoffPolicy", "CaptureHealth", "CaptureRunner", "CaptureState"]
