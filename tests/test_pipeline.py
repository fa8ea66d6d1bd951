"""The synchronous pipeline on real models and a real SQLite gallery, and its statistics.

Frames are the synthetic "door camera" sequence built from the bundled public-domain photos
(``facegate.capture.synthetic``): obama is enrolled from ``obama.jpg`` and the frames show obama2,
obama3 and biden with camera shake, separated by empty frames.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facegate.bench.pipeline import replay_frames
from facegate.decision import DecisionConfig, LivenessState
from facegate.errors import ConfigError
from facegate.gates import GateConfig, QualityGates
from facegate.pipeline import Pipeline
from facegate.stats import LatencyRing, StageTimer, Stats
from facegate.types import Box, FaceDetection, FaceEvent, FaceQuality, Frame


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_latency_ring_keeps_the_last_values() -> None:
    ring = LatencyRing(capacity=4)
    assert all(math.isnan(p) for p in ring.percentiles([50.0]))
    for v in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        ring.add(v)
    assert ring.window() == [3.0, 4.0, 5.0, 6.0]
    assert ring.count == 6 and ring.total == 21.0 and ring.max == 6.0
    assert ring.percentiles([0.0, 50.0, 100.0]) == (3.0, 4.5, 6.0)


def test_stage_timer_and_snapshot() -> None:
    clock = FakeClock()
    stats = Stats(clock=clock, fps_horizon_s=5.0)
    timer = StageTimer(stats, clock)
    for _ in range(10):
        timer.start()
        clock.t += 0.004
        timer.lap("detect")
        clock.t += 0.010
        timer.skip()  # a stage that did not run is not recorded
        clock.t += 0.002
        timer.lap("decide")
        timer.total()
        stats.frame_processed(faces=2)
        clock.t += 0.084  # 10 fps
    stats.frame_dropped(3)
    stats.rejected("too_blurry")
    stats.rejected("too_blurry")
    stats.event("recognized")
    snap = stats.snapshot()
    assert snap.frames == 10 and snap.faces == 20 and snap.frames_dropped == 3
    assert snap.fps == pytest.approx(10 / 1.0)  # uptime 1 s < horizon
    assert snap.uptime_s == pytest.approx(1.0)
    detect = snap.stage("detect")
    assert detect is not None and detect.count == 10
    assert detect.p50_ms == pytest.approx(4.0) and detect.p99_ms == pytest.approx(4.0)
    decide = snap.stage("decide")
    assert decide is not None and decide.p50_ms == pytest.approx(2.0)
    total = snap.stage("total")
    assert total is not None and total.mean_ms == pytest.approx(16.0)
    assert snap.stage("align") is None  # never ran: left out rather than NaN
    assert [s.stage for s in snap.stages] == ["detect", "decide", "total"]
    assert snap.counter("rejected.too_blurry") == 2
    assert snap.counter("events.recognized") == 1
    assert snap.counter("nothing") == 0
    # a stalled pipeline reads 0 fps once the horizon has passed
    clock.t += 6.0
    assert stats.snapshot().fps == 0.0


# --- real components -----------------------------------------------------------------------------

_COMPONENTS = {
    "facegate.detectors.registry": "build_detector",
    "facegate.align": "build_aligner",
    "facegate.embedders.registry": "build_embedder",
    "facegate.gallery": "SqliteGallery",
    "facegate.matcher": "Matcher",
    "facegate.capture.synthetic": "demo_frames",
}


def _require_components() -> dict[str, Any]:
    found: dict[str, Any] = {}
    missing: list[str] = []
    for module, attribute in _COMPONENTS.items():
        try:
            found[attribute] = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as err:
            missing.append(f"{module}.{attribute} ({err})")
    if missing:
        pytest.skip("pipeline components not installed yet: " + "; ".join(missing))
    return found


class Rig:
    """Loaded models, a gallery with obama enrolled from obama.jpg, and the demo frames."""

    def __init__(self, parts: dict[str, Any], db: Path, samples_dir: Path) -> None:
        from facegate.gallery import EnrollItem
        from facegate.images import load_image
        from facegate.types import Embedding

        self.detector = parts["build_detector"]("mediapipe")
        self.embedder = parts["build_embedder"]("Dlib")
        self.aligner = parts["build_aligner"](self.embedder.alignment)
        self.gallery = parts["SqliteGallery"](db, model_id=self.embedder.model_id)
        photo = load_image(samples_dir / "obama.jpg")
        detections = self.detector.detect(photo)
        assert len(detections) == 1
        chip = self.aligner.align(photo, detections[0])
        vector = self.embedder.embed([chip.image])[0]
        self.gallery.enroll("obama", "Barack Obama", [EnrollItem(Embedding(vector, self.embedder.model_id))])
        self.matcher = parts["Matcher"](
            self.gallery, self.embedder.model_id, metric="euclidean", threshold=self.embedder.thresholds
        )
        # 1.2 s between two people: longer than decision.track_max_age_s (1 s), so each is a new track
        self.sequence = parts["demo_frames"](("obama2.jpg", "obama3.jpg", "biden.jpg"), empty_frames=12)

    def pipeline(self, **kwargs: Any) -> Pipeline:
        return Pipeline(self.detector, self.aligner, self.embedder, self.matcher, **kwargs)

    def frames(self, images: Any = None, camera: str = "door", start: float = 0.0) -> list[Frame]:
        images = self.sequence.frames if images is None else images
        return replay_frames(images, camera=camera, fps=self.sequence.fps, start=start)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> Iterator[Rig]:
    parts = _require_components()
    r = Rig(parts, tmp_path_factory.mktemp("gallery") / "gallery.db", samples_dir)
    yield r
    r.gallery.close()


def run(pipeline: Pipeline, frames: list[Frame]) -> list[tuple[int, FaceEvent]]:
    return [(frame.index, event) for frame in frames for event in pipeline.step(frame)]


def segment_of(rig: Rig, index: int) -> str | None:
    label: str | None = rig.sequence.labels[index]
    return label


def test_one_event_per_appearance(rig: Rig) -> None:
    pipeline = rig.pipeline(decision_config=DecisionConfig(cooldown_s=0.0))
    events = run(pipeline, rig.frames())
    summary = [(segment_of(rig, i), e.type, e.person_id) for i, e in events]
    assert summary == [
        ("obama2", "recognized", "obama"),
        ("obama3", "recognized", "obama"),
        ("biden", "unknown", None),
    ]
    assert len({e.track_id for _, e in events}) == 3
    for _, e in events:
        assert e.camera == "door" and e.model_id == rig.embedder.model_id
        assert e.frames_voted >= 3
        assert e.distance is not None and e.confidence is not None and e.similarity is not None
        if e.type == "recognized":
            assert e.name == "Barack Obama"
            assert e.distance <= rig.embedder.thresholds["euclidean"] and e.confidence > 50
        else:
            assert e.name is None
            assert e.distance > rig.embedder.thresholds["euclidean"] and e.confidence < 50
    snap = pipeline.snapshot()
    assert snap.frames == len(rig.sequence)
    assert snap.counter("events.recognized") == 2 and snap.counter("events.unknown") == 1
    # decided tracks are only re-checked: far fewer faces embedded than seen
    assert 9 <= snap.counter("faces.embedded") < snap.faces
    for stage in ("detect", "track", "align", "embed", "match", "decide", "total"):
        latency = snap.stage(stage)
        assert latency is not None and latency.count > 0 and latency.p50_ms > 0


def test_cooldown_suppresses_the_second_appearance(rig: Rig) -> None:
    pipeline = rig.pipeline(decision_config=DecisionConfig(cooldown_s=30.0))
    events = run(pipeline, rig.frames())
    assert [(segment_of(rig, i), e.type) for i, e in events] == [("obama2", "recognized"), ("biden", "unknown")]
    assert pipeline.snapshot().counter("decisions.suppressed") == 1


def test_two_faces_in_one_frame(rig: Rig) -> None:
    labels = rig.sequence.labels
    obama = [f for f, lab in zip(rig.sequence.frames, labels, strict=True) if lab == "obama2"]
    biden = [f for f, lab in zip(rig.sequence.frames, labels, strict=True) if lab == "biden"]
    # the demo centres each face: the middle halves of two frames side by side hold one face each
    both = [np.ascontiguousarray(np.hstack([a[:, 160:480], b[:, 160:480]])) for a, b in zip(obama, biden, strict=True)]
    pipeline = rig.pipeline()
    events = run(pipeline, rig.frames(both))
    by_side = sorted((e.box.center[0] > 320, e.type, e.person_id) for _, e in events)
    assert by_side == [(False, "recognized", "obama"), (True, "unknown", None)]
    assert pipeline.snapshot().faces == 2 * len(both)


class ScriptedLiveness:
    """A liveness checker with a fixed verdict, to test the pipeline's wiring of the liveness gate."""

    def __init__(self, state: LivenessState) -> None:
        self.state = state
        self.updates: dict[int, int] = {}
        self.forgotten: list[int] = []

    def update(self, track_id: int, detection: FaceDetection, frame: Frame) -> None:
        assert detection.box.area > 0 and frame.image.ndim == 3
        self.updates[track_id] = self.updates.get(track_id, 0) + 1

    def verdict(self, track_id: int) -> LivenessState:
        return self.state

    def forget(self, track_id: int) -> None:
        self.forgotten.append(track_id)


def test_liveness_gate_wiring(rig: Rig) -> None:
    frames = rig.frames()
    undecided = ScriptedLiveness("undecided")
    pipeline = rig.pipeline(decision_config=DecisionConfig(liveness_required=True), liveness=undecided)
    assert run(pipeline, frames) == []
    # every face of every (never decided) track was shown to the checker, and ended tracks were freed
    assert sum(undecided.updates.values()) == pipeline.snapshot().faces
    assert sorted(undecided.forgotten) == sorted(undecided.updates)
    spoof = ScriptedLiveness("spoof")
    pipeline = rig.pipeline(decision_config=DecisionConfig(liveness_required=True), liveness=spoof)
    events = run(pipeline, frames)
    assert [(segment_of(rig, i), e.type, e.person_id) for i, e in events] == [
        ("obama2", "spoof", None), ("obama3", "spoof", None), ("biden", "spoof", None)
    ]


def test_static_photo_with_liveness_required_is_not_recognized(rig: Rig) -> None:
    liveness_module = pytest.importorskip("facegate.analysis.liveness", reason="liveness module not built yet")
    from facegate.config.models import LivenessConfig

    # built the way the service builds it (facegate.service._liveness)
    checker = liveness_module.build_liveness(LivenessConfig(mode="blink+motion"))
    still = rig.sequence.frames[rig.sequence.labels.index("obama2")]
    frames = rig.frames([still] * 30)
    pipeline = rig.pipeline(decision_config=DecisionConfig(liveness_required=True), liveness=checker)
    events = run(pipeline, frames)
    assert all(e.type != "recognized" for _, e in events)


def test_gates_name_their_reason() -> None:
    gates = QualityGates(GateConfig(min_score=0.5, min_face_px=20.0, min_box_px=30.0, min_sharpness=5.0,
                                    max_yaw=0.7))

    def detection(score: float, size: float, eye_gap: float) -> FaceDetection:
        eyes = np.array([[50.0, 50.0], [50.0 + eye_gap, 50.0]], np.float32)
        return FaceDetection(Box(40, 40, 40 + size, 40 + size), score, eyes, ("right_eye", "left_eye"))

    assert gates.check_detection(detection(0.9, 100, 40)) is None
    assert gates.check_detection(detection(0.4, 100, 40)) == "low_score"
    assert gates.check_detection(detection(0.9, 25, 40)) == "face_too_small"
    assert gates.check_detection(detection(0.9, 100, 15)) == "face_too_small"
    assert gates.check_quality(FaceQuality(40.0, 100.0, 0.1)) is None
    assert gates.check_quality(FaceQuality(15.0, 100.0, 0.1)) == "face_too_small"
    assert gates.check_quality(FaceQuality(40.0, 3.0, 0.1)) == "too_blurry"
    assert gates.check_quality(FaceQuality(40.0, 100.0, -0.8)) == "pose_too_far"
    off = QualityGates(GateConfig(min_face_px=0.0, min_sharpness=0.0, max_yaw=0.0))
    assert off.check_quality(FaceQuality(1.0, 0.0, 1.0)) is None
    with pytest.raises(ConfigError):
        GateConfig(min_sharpness=-1.0)


def test_blurred_faces_cast_no_vote(rig: Rig) -> None:
    import cv2

    obama = [f for f, lab in zip(rig.sequence.frames, rig.sequence.labels, strict=True) if lab == "obama2"]
    blurred = [np.ascontiguousarray(cv2.GaussianBlur(f, (0, 0), 6.0)) for f in obama]
    pipeline = rig.pipeline()
    assert run(pipeline, rig.frames(blurred)) == []
    snap = pipeline.snapshot()
    assert snap.faces > 0
    assert snap.counter("rejected.too_blurry") == snap.faces
    assert snap.counter("faces.embedded") == 0
    # the track goes on through the blur; its sharp frames decide once they come
    blurred_track = {e.track_id for e in pipeline.tracker.active("door")}
    events = run(pipeline, rig.frames(obama, start=len(blurred) / rig.sequence.fps)[:5])
    assert [(e.type, e.person_id) for _, e in events] == [("recognized", "obama")]
    assert {e.track_id for _, e in events} == blurred_track


@pytest.mark.shared
@pytest.mark.slow
def test_hamilton_clip_names_only_lin_manuel_miranda(rig: Rig, shared_data: Path, tmp_path: Path) -> None:
    import cv2

    from facegate.gallery import EnrollItem, SqliteGallery
    from facegate.images import load_image
    from facegate.matcher import Matcher
    from facegate.types import Embedding

    gallery = SqliteGallery(tmp_path / "hamilton.db", model_id=rig.embedder.model_id)
    for person in ("lin_manuel_miranda", "alex_lacamoire", "barack_obama"):
        items = []
        for path in sorted((shared_data / "identities" / person).glob("*.jpg")):
            photo = load_image(path)
            face = max(rig.detector.detect(photo), key=lambda d: d.box.area)
            vector = rig.embedder.embed([rig.aligner.align(photo, face).image])[0]
            items.append(EnrollItem(Embedding(vector, rig.embedder.model_id), label=path.name))
        gallery.enroll(person, person, items)
    matcher = Matcher(gallery, rig.embedder.model_id, metric="euclidean", threshold=rig.embedder.thresholds)
    pipeline = Pipeline(rig.detector, rig.aligner, rig.embedder, matcher)
    capture = cv2.VideoCapture(str(shared_data / "video" / "short_hamilton_clip.mp4"))
    fps = capture.get(cv2.CAP_PROP_FPS)
    events: list[tuple[int, FaceEvent]] = []
    index = 0
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            frame = Frame(np.asarray(image, dtype=np.uint8), "hamilton", index, monotonic=index / fps, wall=index / fps)
            events.extend((index, e) for e in pipeline.step(frame))
            index += 1
    finally:
        capture.release()
        gallery.close()
    assert index == 275
    seen = [(i, e.type, e.person_id, e.distance) for i, e in events]
    recognized = [(i, person) for i, kind, person, _ in seen if kind == "recognized"]
    # the frontal Lin-Manuel Miranda shot runs from about frame 84 to 215 (checked by eye)
    assert recognized and all(p == "lin_manuel_miranda" and 80 <= i <= 215 for i, p in recognized), seen
