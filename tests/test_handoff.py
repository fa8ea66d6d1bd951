"""FrameHandoff: drop-oldest per camera, counts, fairness, stop and end-of-stream wake-ups."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from facegate.capture.handoff import FrameHandoff
from facegate.types import Frame

_IMAGE = np.zeros((4, 4, 3), dtype=np.uint8)


def frame(camera: str, index: int) -> Frame:
    return Frame(image=_IMAGE, camera=camera, index=index)


def test_full_slot_drops_the_oldest_and_counts() -> None:
    handoff = FrameHandoff(capacity=3)
    dropped = [handoff.put(frame("a", i)) for i in range(10)]
    assert [d.index for d in dropped if d is not None] == list(range(7))
    assert handoff.dropped("a") == 7 and handoff.dropped() == 7
    assert [handoff.get(0.0).index for _ in range(3)] == [7, 8, 9]  # type: ignore[union-attr]
    assert handoff.get(0.0) is None
    counters = handoff.counters()["a"]
    assert (counters.put, counters.taken, counters.dropped, counters.waiting) == (10, 3, 7, 0)


def test_capacity_one_keeps_only_the_newest() -> None:
    handoff = FrameHandoff()
    for i in range(5):
        handoff.put(frame("a", i))
    got = handoff.get(0.0)
    assert got is not None and got.index == 4
    assert handoff.dropped("a") == 4


def test_slow_consumer_sees_frames_in_order_and_always_the_last() -> None:
    handoff = FrameHandoff(capacity=2)
    handoff.register("cam")
    produced = 300
    seen: list[int] = []

    def consume() -> None:
        while True:
            got = handoff.get(1.0)
            if got is None:
                if handoff.exhausted:
                    return
                continue
            seen.append(got.index)
            time.sleep(0.002)  # inference is slower than capture

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(produced):
        handoff.put(frame("cam", i))
    handoff.finish("cam")
    consumer.join(10.0)
    assert not consumer.is_alive()
    counters = handoff.counters()["cam"]
    assert counters.put == produced
    assert counters.taken == len(seen)
    assert counters.taken + counters.dropped == produced
    assert counters.dropped > 0
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert seen[-1] == produced - 1  # the newest frame is never the one dropped


def test_one_busy_camera_cannot_push_out_another() -> None:
    handoff = FrameHandoff(capacity=2)
    handoff.put(frame("slow", 0))
    for i in range(50):
        handoff.put(frame("busy", i))
    cameras = [handoff.get(0.0).camera for _ in range(3)]  # type: ignore[union-attr]
    # Oldest first across cameras: the slow camera's frame was captured before the busy camera's survivors.
    assert cameras == ["slow", "busy", "busy"]
    assert handoff.dropped("slow") == 0 and handoff.dropped("busy") == 48


def test_get_times_out_with_none() -> None:
    handoff = FrameHandoff()
    handoff.register("a")
    start = time.monotonic()
    assert handoff.get(0.2) is None
    assert time.monotonic() - start >= 0.19
    assert not handoff.exhausted


def test_stop_event_ends_a_long_get() -> None:
    stop = threading.Event()
    handoff = FrameHandoff(stop=stop)
    handoff.register("a")
    result: list[Frame | None] = []
    waiter = threading.Thread(target=lambda: result.append(handoff.get(60.0)))
    waiter.start()
    time.sleep(0.05)
    stop.set()
    handoff.wake()
    waiter.join(5.0)
    assert not waiter.is_alive() and result == [None]


def test_finish_of_every_producer_exhausts_after_draining() -> None:
    handoff = FrameHandoff(capacity=4)
    handoff.register("a")
    handoff.register("b")
    handoff.put(frame("a", 0))
    handoff.finish("a")
    assert not handoff.exhausted  # b has not finished
    handoff.finish("b")
    assert not handoff.exhausted  # a frame is still waiting
    assert handoff.get(0.0) is not None
    assert handoff.exhausted
    start = time.monotonic()
    assert handoff.get(30.0) is None  # returns at once, nothing more can come
    assert time.monotonic() - start < 5.0


def test_lossless_mode_waits_for_room_instead_of_dropping() -> None:
    handoff = FrameHandoff(capacity=2, lossless=True)
    handoff.register("replay")
    seen: list[int] = []

    def consume() -> None:
        while not handoff.exhausted:
            got = handoff.get(0.5)
            if got is not None:
                seen.append(got.index)
                time.sleep(0.001)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(100):
        assert handoff.put(frame("replay", i)) is None
    handoff.finish("replay")
    consumer.join(10.0)
    assert seen == list(range(100))
    assert handoff.dropped() == 0


def test_lossless_put_gives_up_on_stop() -> None:
    stop = threading.Event()
    handoff = FrameHandoff(capacity=1, stop=stop, lossless=True)
    handoff.put(frame("a", 0))
    threading.Timer(0.05, stop.set).start()
    rejected = handoff.put(frame("a", 1))  # would wait forever without the stop
    assert rejected is not None and rejected.index == 1
    assert handoff.dropped("a") == 1


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FrameHandoff(capacity=0)


def test_per_camera_capacity() -> None:
    handoff = FrameHandoff(capacity=1)
    handoff.register("deep", capacity=3)
    handoff.register("deep")  # registering again (the runner does) keeps the size
    for i in range(5):
        handoff.put(frame("deep", i))
        handoff.put(frame("shallow", i))
    counters = handoff.counters()
    assert (counters["deep"].waiting, counters["deep"].dropped) == (3, 2)
    assert (counters["shallow"].waiting, counters["shallow"].dropped) == (1, 4)
