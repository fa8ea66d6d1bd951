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
    patches = {
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
