"""The bounded hand-off between capture threads and the inference thread.

Capture must never wait for inference: :meth:`FrameHandoff.put` never blocks; when a camera's slot
is full it discards that camera's *oldest* frame (the newest picture is the one worth analysing) and
counts the drop. Each camera has its own bounded slot, so a fast camera cannot push a slow one's
frames out; :meth:`FrameHandoff.get` returns the oldest waiting frame over all cameras (by capture
time), which serves cameras fairly.

Every wait has a timeout and also ends when the stop event is set or when every registered
producer has finished (:meth:`finish`) and nothing is left.

``lossless=True`` is for offline replays only (benchmarks, tests, ``facegate demo``): ``put`` then
waits for room instead of dropping, so every recorded frame is analysed whatever the machine's
speed. Never use it with live cameras.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from facegate.types import Frame

#: longest single sleep inside ``get``, so a stop event set without ``wake()`` is noticed promptly
_STOP_POLL = 0.1


@dataclass(frozen=True, slots=True)
class HandoffCounters:
    """Counts for one camera since the hand-off was created."""

    camera: str
    put: int
    taken: int
    dropped: int
    waiting: int
    finished: bool


class FrameHandoff:
    """Per-camera bounded slots, drop-oldest on overflow.

    ``capacity`` (>= 1) is the default slot size; :meth:`register` can give a camera its own.
    """

    def __init__(self, capacity: int = 1, *, stop: threading.Event | None = None, lossless: bool = False) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.lossless = lossless
        self.stop = stop if stop is not None else threading.Event()
        self._cond = threading.Condition(threading.Lock())
        self._slots: dict[str, deque[Frame]] = {}
        self._put: dict[str, int] = {}
        self._taken: dict[str, int] = {}
        self._dropped: dict[str, int] = {}
        self._finished: set[str] = set()
        self._capacity: dict[str, int] = {}

    def register(self, camera: str, capacity: int | None = None) -> None:
        """Announce a producer, so :attr:`exhausted` waits for it even before its first frame.

        ``capacity`` sets this camera's slot size (kept when registering again without one).
        """
        if capacity is not None and capacity < 1:
            raise ValueError("capacity must be >= 1")
        with self._cond:
            self._ensure(camera)
            self._finished.discard(camera)
            if capacity is not None:
                self._capacity[camera] = capacity

    def _ensure(self, camera: str) -> deque[Frame]:
        slot = self._slots.get(camera)
        if slot is None:
            slot = deque()
            self._slots[camera] = slot
            self._put[camera] = self._taken[camera] = self._dropped[camera] = 0
        return slot

    def put(self, frame: Frame) -> Frame | None:
        """Offer a frame. Returns the frame that was dropped to make room, if any.

        Never blocks unless ``lossless``; then it waits for room until the stop event is set (and
        the frame is dropped and returned if stop comes first).
        """
        with self._cond:
            slot = self._ensure(frame.camera)
            capacity = self._capacity.get(frame.camera, self.capacity)
            while self.lossless and len(slot) >= capacity:
                if self.stop.is_set():
                    self._dropped[frame.camera] += 1
                    return frame
                self._cond.wait(_STOP_POLL)
            dropped = None
            if len(slot) >= capacity:
                dropped = slot.popleft()
                self._dropped[frame.camera] += 1
            slot.append(frame)
            self._put[frame.camera] += 1
            # notify_all: producers waiting for room (lossless) share this condition with consumers.
            self._cond.notify_all()
            return dropped

    def get(self, timeout: float) -> Frame | None:
        """The oldest waiting frame; ``None`` after ``timeout`` seconds, on stop, or when exhausted."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                frame = self._pop_oldest()
                if frame is not None:
                    return frame
                if self.stop.is_set() or self._all_finished():
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, _STOP_POLL))

    def _pop_oldest(self) -> Frame | None:
        best: str | None = None
        best_time = 0.0
        for camera, slot in self._slots.items():
            if slot and (best is None or slot[0].monotonic < best_time):
                best, best_time = camera, slot[0].monotonic
        if best is None:
            return None
        self._taken[best] += 1
        if self.lossless:
            self._cond.notify_all()
        return self._slots[best].popleft()

    def _all_finished(self) -> bool:
        return bool(self._slots) and self._finished.issuperset(self._slots)

    def finish(self, camera: str) -> None:
        """The producer for ``camera`` will put no more frames (its stream ended or failed)."""
        with self._cond:
            self._ensure(camera)
            self._finished.add(camera)
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake every waiting ``get`` (call after setting the stop event)."""
        with self._cond:
            self._cond.notify_all()

    @property
    def exhausted(self) -> bool:
        """Every registered producer has finished and no frame is waiting."""
        with self._cond:
            return self._all_finished() and not any(self._slots.values())

    def dropped(self, camera: str | None = None) -> int:
        """Frames discarded unseen, for one camera or all."""
        with self._cond:
            if camera is not None:
                return self._dropped.get(camera, 0)
            return sum(self._dropped.values())

    def counters(self) -> dict[str, HandoffCounters]:
        with self._cond:
            return {
                camera: HandoffCounters(
                    camera=camera,
                    put=self._put[camera],
                    taken=self._taken[camera],
                    dropped=self._dropped[camera],
                    waiting=len(slot),
                    finished=camera in self._finished,
                )
                for camera, slot in self._slots.items()
            }

    def __len__(self) -> int:
        with self._cond:
            return sum(len(slot) for slot in self._slots.values())


__all__ = ["FrameHandoff", "HandoffCounters"]
