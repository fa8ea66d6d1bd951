"""The IoU tracker, fed boxes directly (pure logic)."""

from __future__ import annotations

import pytest

from facegate.errors import ConfigError
from facegate.tracker import Tracker, TrackerConfig
from facegate.types import Box


def box(x: float, y: float, size: float = 100.0) -> Box:
    return Box(x, y, x + size, y + size)


def test_slow_motion_keeps_one_track() -> None:
    tracker = Tracker()
    ids = []
    for i in range(10):
        update = tracker.update("door", [box(100 + 5 * i, 50 + 2 * i)], now=i * 0.1)
        ids.append(update.tracks[0].track_id)
        assert update.expired == ()
    assert len(set(ids)) == 1
    last = tracker.active("door")[0]
    assert last.hits == 10
    assert last.first_seen == 0.0
    assert last.last_seen == pytest.approx(0.9)
    assert last.age == pytest.approx(0.9)
    assert last.box == box(145, 68)


def test_two_faces_keep_their_ids_whatever_the_detection_order() -> None:
    tracker = Tracker()
    first = tracker.update("door", [box(0, 0), box(300, 0)], now=0.0)
    a, b = (t.track_id for t in first.tracks)
    assert a != b
    # detections come back best-score first, so the order may flip between frames
    second = tracker.update("door", [box(305, 3), box(4, 2)], now=0.1)
    assert [t.track_id for t in second.tracks] == [b, a]


def test_expiry_and_monotonic_ids() -> None:
    tracker = Tracker(TrackerConfig(max_age_s=0.5))
    old = tracker.update("door", [box(0, 0)], now=0.0).tracks[0]
    assert tracker.update("door", [], now=0.4).expired == ()
    gone = tracker.update("door", [], now=0.6).expired
    assert [t.track_id for t in gone] == [old.track_id]
    new = tracker.update("door", [box(0, 0)], now=0.7).tracks[0]
    assert new.track_id > old.track_id
    assert new.hits == 1


def test_expire_covers_cameras_without_frames() -> None:
    tracker = Tracker(TrackerConfig(max_age_s=1.0))
    t = tracker.update("garage", [box(0, 0)], now=0.0).tracks[0]
    tracker.update("door", [box(0, 0)], now=1.5)
    assert [s.track_id for s in tracker.expire(1.5)] == [t.track_id]
    assert tracker.active("garage") == ()


def test_ids_unique_across_cameras() -> None:
    tracker = Tracker()
    a = tracker.update("door", [box(0, 0)], now=0.0).tracks[0]
    b = tracker.update("garage", [box(0, 0)], now=0.0).tracks[0]
    assert a.track_id != b.track_id
    # the same box on another camera never continues the first camera's track
    assert tracker.update("garage", [box(2, 0)], now=0.1).tracks[0].track_id == b.track_id


def test_fast_motion_is_followed_by_prediction_and_centre_distance() -> None:
    tracker = Tracker()
    # 60 px per frame with a 100 px face: IoU with the previous box is 0.25, below the 0.3 threshold
    ids = {tracker.update("door", [box(60 * i, 0)], now=i * 0.1).tracks[0].track_id for i in range(6)}
    assert len(ids) == 1
    assert Box(0, 0, 100, 100).iou(box(60, 0)) < TrackerConfig().iou_threshold


def test_without_fallbacks_fast_motion_splits() -> None:
    tracker = Tracker(TrackerConfig(max_center_distance=0.0, velocity_smoothing=0.0))
    ids = {tracker.update("door", [box(60 * i, 0)], now=i * 0.1).tracks[0].track_id for i in range(3)}
    assert len(ids) == 3


def test_distant_or_differently_sized_face_starts_a_new_track() -> None:
    tracker = Tracker()
    a = tracker.update("door", [box(0, 0)], now=0.0).tracks[0]
    far = tracker.update("door", [box(400, 0)], now=0.1).tracks[0]
    assert far.track_id != a.track_id
    tiny = tracker.update("door", [Box(20, 20, 50, 50)], now=0.2).tracks[0]
    assert tiny.track_id not in (a.track_id, far.track_id)


def test_one_track_per_box_in_a_crowded_frame() -> None:
    tracker = Tracker()
    tracker.update("door", [box(0, 0)], now=0.0)
    # two boxes both overlap the one track: the better overlap continues it, the other is new
    update = tracker.update("door", [box(40, 0), box(5, 0)], now=0.1)
    first, second = update.tracks
    assert second.hits == 2 and first.hits == 1
    assert first.track_id != second.track_id


def test_split_renames_a_live_track() -> None:
    tracker = Tracker()
    t = tracker.update("door", [box(0, 0)], now=0.0).tracks[0]
    renamed = tracker.split("door", t.track_id)
    assert renamed is not None and renamed.track_id > t.track_id and renamed.hits == 1
    assert tracker.update("door", [box(1, 0)], now=0.1).tracks[0].track_id == renamed.track_id
    assert tracker.split("door", t.track_id) is None


@pytest.mark.parametrize(
    "kwargs",
    [{"iou_threshold": 0.0}, {"max_age_s": 0.0}, {"max_center_distance": -1.0}, {"max_size_ratio": 0.5},
     {"velocity_smoothing": 2.0}],
)
def test_invalid_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        TrackerConfig(**kwargs)
