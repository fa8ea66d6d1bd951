"""Live configuration changes (remote ``config/set``, SIGHUP) reach the running stages without
rebuilding them: tracks, votes and per-person cooldowns survive a patch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from facegate.capture.synthetic import demo_frames, sample_path
from facegate.config.models import FacegateConfig
from facegate.enrollment import enroll_photos
from facegate.service import Service
from facegate.types import FaceEvent, Frame


def _config(tmp_path: Path, **sections: Any) -> FacegateConfig:
    return FacegateConfig.model_validate({"state_dir": str(tmp_path), "mqtt": {"enabled": False}, **sections})


@pytest.fixture
def service(tmp_path: Path) -> Service:
    service = Service(_config(tmp_path))
    outcome = enroll_photos(service.gallery, service.engine, "barack_obama", "Barack Obama",
                            [("obama.jpg", sample_path("obama.jpg"))])
    assert outcome.ok
    return service


def test_a_live_patch_keeps_tracks_and_cooldowns(service: Service, tmp_path: Path) -> None:
    """Obama stands at the door (20 frames), leaves (1.5 s: his track ends) and comes back within the
    30 s cooldown. Live patches while he stands there and while he is away must not announce him again."""
    fps = 10.0
    sequence = demo_frames(("obama2.jpg", "obama2.jpg"), person_frames=20, empty_frames=15, fps=fps)
    patches: dict[int, dict[str, Any]] = {
        10: {"gates": {"min_sharpness": 4.0}, "recognition": {"margin": 0.05}},  # standing at the door
        27: {"gates": {"min_sharpness": 3.0}, "decision": {"votes_required": 4}},  # away, before coming back
    }
    events: list[tuple[int, FaceEvent]] = []
    tracks_before = tracks_after = None
    for index, image in enumerate(sequence.frames):
        if index in patches:
            if index == 10:
                tracks_before = [t.track_id for t in service.pipeline.tracker.active("default")]
            service.apply_config(_config(tmp_path, **patches[index]))
            if index == 10:
                tracks_after = [t.track_id for t in service.pipeline.tracker.active("default")]
        frame = Frame(image, "default", index, monotonic=index / fps, wall=1_800_000_000 + index / fps)
        events.extend((index, e) for e in service.pipeline.step(frame))
    service.gallery.close()
    assert service.config.decision.votes_required == 4 and service.config.gates.min_sharpness == 3.0
    assert [e.type for _, e in events] == ["recognized"], events
    assert events[0][0] < 10, "recognized before the first patch"
    assert tracks_before and tracks_before == tracks_after, "the patch dropped the track of the person at the door"


def test_library_and_daemon_share_one_default_per_setting() -> None:
    """Each stage's settings carry the configuration's names and take its defaults: the library
    (``DecisionEngine()``, ``QualityGates()``, ``Tracker()``, ``LivenessSettings()``) behaves as the daemon."""
    from facegate.analysis.liveness import LivenessSettings
    from facegate.config import models as sections
    from facegate.decision import DecisionConfig
    from facegate.gates import GateConfig
    from facegate.tracker import TrackerConfig

    decision, gates, liveness = sections.DecisionConfig(), sections.GatesConfig(), sections.LivenessConfig()
    voting, gating, tracking, checking = DecisionConfig(), GateConfig(), TrackerConfig(), LivenessSettings()
    pairs = [
        (voting.votes_required, decision.votes_required), (voting.unknown_votes, decision.unknown_votes),
        (voting.window_s, decision.window_s), (voting.cooldown_s, decision.cooldown_s),
        (tracking.iou_threshold, decision.track_iou), (tracking.max_age_s, decision.track_max_age_s),
        (gating.min_face_px, gates.min_face_px), (gating.min_sharpness, gates.min_sharpness),
        (gating.max_yaw, gates.max_yaw),
        (checking.mode, liveness.mode), (checking.window_s, liveness.window_s),
        (checking.blink_min_count, liveness.blink_min_count),
        (checking.blink_closed_ratio, liveness.blink_closed_ratio),
        (checking.motion_min_parallax, liveness.motion_min_parallax), (checking.on_fail, liveness.on_fail),
    ]
    assert [library for library, _ in pairs] == [daemon for _, daemon in pairs]
    # and the daemon's stages are built from its sections, names unchanged
    assert DecisionConfig.from_section(decision) == voting and GateConfig.from_section(gates) == gating
    assert TrackerConfig.from_section(decision) == tracking


def _example_config() -> FacegateConfig:
    from facegate.config import load_yaml_config
    from tests.conftest import REPO_ROOT

    return load_yaml_config(REPO_ROOT / "config" / "facegate.example.yaml", resolve_secrets=False)


def test_a_stranger_is_reported_at_the_example_configs_2_fps(service: Service, tmp_path: Path) -> None:
    """The example config ships fps: 2 with unknown_votes 6 and window_s 2.0 (6 frames need 2.5 s): the
    window stretches to hold the votes, so a stranger (Biden is not enrolled) is reported."""
    example = _example_config()
    fps = example.cameras[0].source.fps
    assert fps == 2 and example.decision.unknown_votes > fps * example.decision.window_s
    service.apply_config(_config(tmp_path, decision=example.decision.model_dump()))
    sequence = demo_frames(("biden.jpg", "obama2.jpg"), person_frames=10, empty_frames=3, fps=float(fps))
    events: list[FaceEvent] = []
    for index, image in enumerate(sequence.frames):
        frame = Frame(image, "default", index, monotonic=index / fps, wall=1_800_000_000 + index / fps)
        events.extend(service.pipeline.step(frame))
    service.gallery.close()
    assert [(e.type, e.person_id) for e in events] == [("unknown", None), ("recognized", "barack_obama")]
    assert service.pipeline.decisions.window("default") == pytest.approx(2.75)


def test_check_config_rejects_settings_that_can_never_produce_an_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from facegate.cli import main

    text = tmp_path / "facegate.yaml"
    body = """\
state_dir: ./state
mqtt: {{enabled: false}}
cameras:
  - id: porch
    source: {{type: replay, path: ., fps: {fps}}}
decision: {{track_max_age_s: 1.0}}
"""
    text.write_text(body.format(fps=2))
    assert main(["check-config", str(text), "--no-overlay"]) == 0
    text.write_text(body.format(fps=0.5))  # a frame every 2 s: each track ends before its second frame
    assert main(["check-config", str(text), "--no-overlay"]) == 2
    captured = capsys.readouterr()
    assert "no event could ever be sent" in captured.out + captured.err
    assert "track_max_age_s" in captured.out + captured.err


def test_a_reloaded_mqtt_section_reaches_the_publisher_in_place(tmp_path: Path) -> None:
    """SIGHUP with a changed ``mqtt`` section: ``max_event_age_s`` applies to the publisher and the presence
    sink on the same objects (spool and connection kept); a new broker host waits for a restart."""
    def config(**mqtt: Any) -> FacegateConfig:
        return FacegateConfig.model_validate({"state_dir": str(tmp_path), "mqtt": {"port": 1, **mqtt}})

    service = Service(config())
    try:
        publisher, presence = service.publisher, service.presence
        assert publisher is not None and presence is not None
        assert publisher.settings.max_event_age_s == 5.0
        service.apply_config(config(max_event_age_s=2.0, host="broker.example"), frozenset({"mqtt"}))
        assert service.publisher is publisher and service.presence is presence
        assert publisher.settings.max_event_age_s == 2.0 and publisher.freshness.max_age_s == 2.0
        assert presence.max_event_age_s == 2.0
        assert publisher.settings.host == "localhost", "the connection settings wait for a restart"
    finally:
        service.close()
