"""Per-track voting, cooldown, liveness gate and confidence mapping, fed match results directly."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from facegate.confidence import calibrated_confidence, confidence_from_distance, similarity_from_distance
from facegate.decision import (
    DecisionConfig,
    DecisionEngine,
    LivenessState,
    Observation,
    OffLiveness,
    vote_of,
    window_for,
)
from facegate.errors import ConfigError, FacegateError
from facegate.tracker import TrackSnapshot
from facegate.types import (
    AlignedFace,
    Box,
    FaceAttributes,
    FaceDetection,
    FaceEvent,
    FaceQuality,
    Frame,
    MatchResult,
)

THRESHOLD = 0.6
IMAGE = np.zeros((4, 4, 3), np.uint8)
DETECTION = FaceDetection(
    box=Box(100, 100, 200, 200),
    score=0.9,
    landmarks=np.array([[130, 140], [170, 140]], np.float32),
    landmark_names=("right_eye", "left_eye"),
)


def frame(t: float, camera: str = "door") -> Frame:
    return Frame(image=IMAGE, camera=camera, index=int(t * 10), monotonic=t, wall=1_700_000_000.0 + t)


def track(track_id: int, t: float, camera: str = "door") -> TrackSnapshot:
    return TrackSnapshot(track_id, camera, DETECTION.box, 0.0, t, 1)


def match(person: str | None, distance: float, margin: float = 0.3) -> MatchResult:
    return MatchResult(
        person_id=person,
        name=None if person is None else person.title(),
        distance=distance,
        threshold=THRESHOLD,
        margin=margin,
        metric="euclidean",
    )


def obs(person: str | None, distance: float, t: float, *, margin: float = 0.3, face_px: float = 50.0) -> Observation:
    return Observation.from_match(match(person, distance, margin), FaceQuality(face_px, 100.0, 0.0), t)


def feed(
    engine: DecisionEngine,
    track_id: int,
    seq: Sequence[tuple[str | None, float]],
    *,
    start: float = 0.0,
    dt: float = 0.1,
    camera: str = "door",
    face_px: float = 50.0,
    margin: float = 0.3,
) -> list[tuple[int, FaceEvent]]:
    """Feed ``(person, distance)`` observations one per frame; returns ``(frame number, event)``."""
    out = []
    for i, (person, distance) in enumerate(seq):
        t = start + i * dt
        o = obs(person, distance, t, margin=margin, face_px=face_px)
        event = engine.update(frame(t, camera), track(track_id, t, camera), DETECTION, o)
        if event is not None:
            out.append((i, event))
    return out


def test_recognized_after_n_agreeing_frames_then_silent() -> None:
    engine = DecisionEngine(DecisionConfig(votes_required=3), model_id="dlib_resnet_v1")
    events = feed(engine, 1, [("obama", 0.35)] * 10)
    assert [i for i, _ in events] == [2]
    event = events[0][1]
    assert event.type == "recognized"
    assert (event.person_id, event.name, event.track_id, event.camera) == ("obama", "Obama", 1, "door")
    assert event.frames_voted == 3
    assert event.distance == pytest.approx(0.35)
    assert event.confidence == pytest.approx(confidence_from_distance(0.35, THRESHOLD))
    assert event.similarity == pytest.approx(1 - 0.35**2 / 2)
    assert event.model_id == "dlib_resnet_v1"
    assert event.wall == pytest.approx(1_700_000_000.2)
    assert len(event.event_id) == 32
    assert engine.is_decided(1)


def test_event_confidence_uses_the_embedder_calibration() -> None:
    slope = 12.0
    engine = DecisionEngine(DecisionConfig(votes_required=3), confidence_slopes={"euclidean": slope})
    event = feed(engine, 1, [("obama", 0.35)] * 3)[0][1]
    expected = 100.0 / (1.0 + math.exp(-slope * (THRESHOLD - 0.35)))
    assert event.confidence == pytest.approx(expected)
    assert event.confidence == pytest.approx(calibrated_confidence(0.35, THRESHOLD, slope))
    assert event.confidence != pytest.approx(confidence_from_distance(0.35, THRESHOLD))
    unknown = DecisionEngine(DecisionConfig(unknown_votes=3), confidence_slopes={"euclidean": slope})
    stranger = feed(unknown, 1, [(None, 0.62)] * 3)[0][1]
    assert stranger.confidence is not None and stranger.confidence <= 49.0


def test_two_frames_are_not_enough() -> None:
    engine = DecisionEngine(DecisionConfig(votes_required=3))
    assert feed(engine, 1, [("obama", 0.3)] * 2) == []
    assert not engine.is_decided(1)


def test_vote_weight_formula() -> None:
    cfg = DecisionConfig(full_weight_face_px=40.0, separation_ref=0.25)
    # person vote: q = 20/40 = 0.5; sep = min(0.05, 0.6-0.3) = 0.05; s = 0.05/0.15 = 1/3
    v = vote_of(obs("a", 0.3, 0.0, margin=0.05, face_px=20.0), cfg)
    assert v is not None and v.person_id == "a"
    assert v.weight == pytest.approx(0.5 * (0.5 + 0.5 / 3))
    # unknown vote: q = 1; sep = 0.9 - 0.6 = 0.3 >= 0.15 -> s = 1
    u = vote_of(obs(None, 0.9, 0.0, face_px=80.0), cfg)
    assert u is not None and u.person_id is None and u.weight == pytest.approx(1.0)
    # empty gallery: infinite distance is a full-strength unknown vote
    e = vote_of(obs(None, math.inf, 0.0, margin=math.inf, face_px=40.0), cfg)
    assert e is not None and e.weight == pytest.approx(1.0)
    # one person in the gallery: infinite margin, separation from the threshold decides
    one = vote_of(obs("a", 0.55, 0.0, margin=math.inf, face_px=40.0), cfg)
    assert one is not None and one.weight == pytest.approx(0.5 + 0.5 * (0.05 / 0.15))
    # refused for a low margin although within the threshold: abstention
    assert vote_of(obs(None, 0.4, 0.0, margin=0.01), cfg) is None


def test_small_faces_need_more_frames() -> None:
    cfg = DecisionConfig(votes_required=3, min_mean_weight=0.5)
    big = DecisionEngine(cfg)
    small = DecisionEngine(cfg)
    assert [i for i, _ in feed(big, 1, [("a", 0.3)] * 8, face_px=40.0)] == [2]
    # q = 0.5, full separation -> w = 0.5 per frame; 1.5 needed -> still 3 frames
    assert [i for i, _ in feed(small, 1, [("a", 0.3)] * 8, face_px=20.0)] == [2]
    smaller = DecisionEngine(cfg)
    # q = 0.3 -> w = 0.3; 1.5 needed -> 5 frames
    assert [i for i, _ in feed(smaller, 1, [("a", 0.3)] * 8, face_px=12.0)] == [4]


def test_split_votes_give_no_name_until_one_dominates() -> None:
    engine = DecisionEngine(DecisionConfig(votes_required=3, dominance=2.0))
    alternating = [("alice", 0.4), ("bob", 0.4)] * 4
    assert feed(engine, 1, alternating) == []
    # alice keeps coming while bob's votes age out of the 3 s window
    events = feed(engine, 1, [("alice", 0.4)] * 30, start=0.8)
    assert len(events) == 1
    i, event = events[0]
    assert event.person_id == "alice"
    # at 0.1 s per frame the 4 bob votes (W=4 * w) are outweighed 2:1 after 8 alice votes
    t = 0.8 + i * 0.1
    assert t < 3.0, "decided by dominance, not only after the window dropped bob"


def test_unknown_after_unknown_votes_and_abstentions_do_not_count() -> None:
    engine = DecisionEngine(DecisionConfig(unknown_votes=5))
    events = feed(engine, 1, [(None, 0.9)] * 8)
    assert [i for i, _ in events] == [4]
    event = events[0][1]
    assert event.type == "unknown"
    assert event.person_id is None and event.name is None
    assert event.distance == pytest.approx(0.9)
    assert event.confidence is not None and event.confidence < 50
    # low-margin refusals within the threshold never become "unknown"
    ambiguous = DecisionEngine(DecisionConfig(unknown_votes=5))
    assert feed(ambiguous, 2, [(None, 0.4)] * 20, margin=0.01) == []


def test_empty_gallery_gives_unknown_without_distance() -> None:
    engine = DecisionEngine(DecisionConfig(unknown_votes=3))
    events = feed(engine, 1, [(None, math.inf)] * 3, margin=math.inf)
    assert len(events) == 1
    assert events[0][1].type == "unknown"
    assert events[0][1].distance is None and events[0][1].confidence is None


def test_unknown_votes_block_a_weak_name() -> None:
    engine = DecisionEngine(DecisionConfig(votes_required=3, unknown_votes=5))
    seq: list[tuple[str | None, float]] = [("a", 0.5), (None, 0.8), ("a", 0.5), (None, 0.8), ("a", 0.5)]
    assert feed(engine, 1, seq) == []


def test_votes_outside_the_window_do_not_count() -> None:
    engine = DecisionEngine(DecisionConfig(votes_required=3, window_s=1.0))
    # frames every 0.3 s (the window holds 3 votes), a vote on every other one: 3 votes span 1.2 s
    for i in range(7):
        t = i * 0.3
        observation = obs("a", 0.3, t) if i % 2 == 0 else None
        assert engine.update(frame(t), track(1, t), DETECTION, observation) is None
    assert [i for i, _ in feed(engine, 1, [("a", 0.3)] * 3, start=5.0, dt=0.3)] == [2]


def test_the_window_stretches_to_hold_the_votes_at_a_low_frame_rate() -> None:
    """2 fps, 6 unknown votes, window_s 2.0: 6 frames span 2.5 s; the window becomes 2.75 s."""
    engine = DecisionEngine(DecisionConfig(unknown_votes=6, window_s=2.0))
    events = feed(engine, 1, [(None, 0.9)] * 8, dt=0.5)
    assert [(i, e.type) for i, e in events] == [(5, "unknown")]
    assert engine.window("door") == pytest.approx(2.75)
    assert window_for(DecisionConfig(unknown_votes=6, window_s=2.0), 0.1) == 2.0  # 10 fps: unchanged


def test_cooldown_per_person_across_cameras() -> None:
    engine = DecisionEngine(DecisionConfig(votes_required=3, cooldown_s=30.0))
    assert len(feed(engine, 1, [("a", 0.3)] * 3)) == 1
    engine.forget(1)
    # a new appearance of the same person on the same camera within the cooldown: no event
    assert feed(engine, 2, [("a", 0.3)] * 5, start=10.0) == []
    assert engine.is_decided(2) and engine.suppressed == 1
    # another person is not affected
    assert len(feed(engine, 3, [("b", 0.3)] * 3, start=10.0)) == 1
    # the same person on another camera 0.94 s later is the same appearance at the door: suppressed
    assert feed(engine, 4, [("a", 0.3)] * 3, start=10.94, camera="garage") == []
    assert engine.suppressed == 2
    # after the cooldown (counted from the last emitted event) the person is announced again
    assert len(feed(engine, 5, [("a", 0.3)] * 3, start=31.0)) == 1


class StubLiveness:
    def __init__(self, state: LivenessState) -> None:
        self.state = state
        self.updates: list[int] = []
        self.forgotten: list[int] = []

    def update(self, track_id: int, detection: FaceDetection, frame: Frame) -> None:
        self.updates.append(track_id)

    def verdict(self, track_id: int) -> LivenessState:
        return self.state

    def forget(self, track_id: int) -> None:
        self.forgotten.append(track_id)


def test_liveness_required_waits_for_a_live_verdict() -> None:
    liveness = StubLiveness("undecided")
    engine = DecisionEngine(DecisionConfig(votes_required=3, liveness_required=True), liveness=liveness)
    assert feed(engine, 1, [("a", 0.3)] * 6) == []
    assert liveness.updates == [1] * 6
    liveness.state = "live"
    # the verdict turns live on a frame where the face was not embedded: still decided there
    t = 0.6
    event = engine.update(frame(t), track(1, t), DETECTION, None)
    assert event is not None and event.type == "recognized" and event.person_id == "a"
    engine.forget(1)
    assert liveness.forgotten == [1]


def test_spoof_verdict_emits_spoof_without_a_name() -> None:
    liveness = StubLiveness("spoof")
    engine = DecisionEngine(DecisionConfig(votes_required=3, liveness_required=True), liveness=liveness)
    events = feed(engine, 1, [("a", 0.3)] * 6)
    assert len(events) == 1
    event = events[0][1]
    assert event.type == "spoof"
    assert event.person_id is None and event.name is None and event.distance is None
    # a spoofed appearance does not start the person's cooldown
    liveness.state = "live"
    assert len(feed(engine, 2, [("a", 0.3)] * 3, start=1.0)) == 1


def test_liveness_required_without_a_checker_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        DecisionEngine(DecisionConfig(liveness_required=True))
    with pytest.raises(ConfigError):
        DecisionEngine(DecisionConfig(liveness_required=True), liveness=OffLiveness())


def test_liveness_not_consulted_when_not_required() -> None:
    liveness = StubLiveness("spoof")
    engine = DecisionEngine(DecisionConfig(votes_required=3), liveness=liveness)
    events = feed(engine, 1, [("a", 0.3)] * 3)
    assert events[0][1].type == "recognized"
    assert liveness.updates == []


def aligned(score_size: float) -> AlignedFace:
    return AlignedFace(
        image=np.full((8, 8, 3), int(score_size), np.uint8),
        detection=DETECTION,
        transform=np.eye(2, 3, dtype=np.float32),
        template="test",
        quality=FaceQuality(score_size, 100.0, 0.0),
    )


class CountingAnalyzer:
    def __init__(self, fail: bool = False) -> None:
        self.seen: list[float] = []
        self.fail = fail

    def analyze(self, face: AlignedFace) -> FaceAttributes:
        self.seen.append(face.quality.face_size)
        if self.fail:
            raise FacegateError("model missing")
        return FaceAttributes(age=40.0)


def test_analyzer_runs_once_per_track_on_the_best_face() -> None:
    analyzer = CountingAnalyzer()
    engine = DecisionEngine(DecisionConfig(votes_required=3), analyzer=analyzer)
    events = []
    for i, size in enumerate([30.0, 55.0, 40.0, 45.0, 50.0]):
        t = i * 0.1
        e = engine.update(frame(t), track(1, t), DETECTION, obs("a", 0.3, t, face_px=size), aligned(size))
        if e is not None:
            events.append(e)
    assert len(events) == 1
    assert events[0].attributes == FaceAttributes(age=40.0)
    assert analyzer.seen == [55.0]


def test_analyzer_failure_does_not_lose_the_event() -> None:
    engine = DecisionEngine(DecisionConfig(votes_required=1), analyzer=CountingAnalyzer(fail=True))
    e = engine.update(frame(0.0), track(1, 0.0), DETECTION, obs("a", 0.3, 0.0), aligned(50.0))
    assert e is not None and e.type == "recognized" and e.attributes is None


def test_rechecks_and_contradiction() -> None:
    engine = DecisionEngine(DecisionConfig(votes_required=3, recheck_interval_s=0.5, split_after=3))
    assert len(feed(engine, 1, [("a", 0.3)] * 3)) == 1
    assert not engine.needs_observation(1, 0.3)
    assert engine.needs_observation(1, 0.75)
    assert engine.needs_observation(99, 0.0)  # unseen tracks always
    # re-checks agreeing, then two contradicting, then agreeing again: the count restarts
    for person, t in [("a", 0.7), ("b", 1.2), (None, 1.7), ("a", 2.2)]:
        assert engine.update(frame(t), track(1, t), DETECTION, obs(person, 0.3 if person else 0.9, t)) is None
        assert not engine.contradicted(1)
        # while contradicted, the track is re-checked on every frame rather than every 0.5 s
        assert engine.needs_observation(1, t + 0.1) == (person != "a")
    for t in (2.7, 3.2, 3.7):
        assert engine.update(frame(t), track(1, t), DETECTION, obs("b", 0.3, t)) is None
    assert engine.contradicted(1)


def test_invalid_decision_config() -> None:
    for kwargs in ({"votes_required": 0}, {"dominance": 0.5}, {"window_s": 0.0}, {"max_votes": 2},
                   {"min_mean_weight": 1.5}, {"cooldown_s": -1.0}):
        with pytest.raises(ConfigError):
            DecisionConfig(**kwargs)


@given(
    st.floats(0.0, 5.0, allow_nan=False),
    st.floats(0.0, 5.0, allow_nan=False),
    st.floats(0.05, 2.0, allow_nan=False),
)
def test_confidence_is_monotone_and_split_at_the_threshold(d1: float, d2: float, threshold: float) -> None:
    c1, c2 = confidence_from_distance(d1, threshold), confidence_from_distance(d2, threshold)
    assert 0.0 <= c1 <= 100.0
    if d1 <= d2:
        assert c1 >= c2
    assert (c1 > 50.0) == (d1 <= threshold)
    assert (c1 >= 51.0) == (d1 <= threshold)


def test_confidence_anchor_points() -> None:
    assert confidence_from_distance(0.0, 0.6) == 100.0
    assert confidence_from_distance(0.6, 0.6) == 51.0
    assert confidence_from_distance(0.3, 0.6) == pytest.approx(75.5)
    assert confidence_from_distance(0.9, 0.6) == pytest.approx(24.5)
    assert confidence_from_distance(1.2, 0.6) == 0.0
    assert confidence_from_distance(math.inf, 0.6) == 0.0
    with pytest.raises(ValueError):
        confidence_from_distance(0.1, 0.0)


def test_similarity_mappings_match_cosine() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    a /= np.linalg.norm(a)
    b /= np.linalg.norm(b)
    cos = float(a @ b)
    assert similarity_from_distance(1 - cos, "cosine") == pytest.approx(cos)
    assert similarity_from_distance(float(np.linalg.norm(a - b)), "euclidean_l2") == pytest.approx(cos)
    assert similarity_from_distance(math.acos(cos) / math.pi, "angular") == pytest.approx(cos)
    assert similarity_from_distance(math.inf, "cosine") is None
