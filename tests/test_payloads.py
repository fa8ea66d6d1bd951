"""Payload models, FaceEvent conversion and the committed JSON Schema."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from facegate.events.payloads import (
    EventPayload,
    StatsPayload,
    dumps,
    event_json_schema,
    event_payload,
    iso_utc,
    last_recognized_payload,
    presence_payload,
    render_event_schema,
)
from facegate.types import Box, FaceAttributes, FaceEvent

jsonschema = pytest.importorskip("jsonschema")

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = REPO_ROOT / "config" / "event.schema.json"


def _validator() -> Any:
    schema = json.loads(SCHEMA_FILE.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def make_event(**overrides: Any) -> FaceEvent:
    values: dict[str, Any] = {
        "event_id": "01HZX-abc",
        "type": "recognized",
        "camera": "front_door",
        "track_id": 7,
        "wall": 1_700_000_000.1234,
        "box": Box(100.4, 50.6, 220.2, 190.9),
        "frames_voted": 5,
        "person_id": "alice",
        "name": "Alice Example",
        "distance": 0.312345678,
        "similarity": 0.687654,
        "confidence": 91.26,
        "model_id": "dlib_resnet_v1",
    }
    values.update(overrides)
    return FaceEvent(**values)


def test_committed_schema_is_generated() -> None:
    assert SCHEMA_FILE.read_text() == render_event_schema(), (
        "config/event.schema.json is stale: regenerate with facegate.events.payloads.write_event_schema"
    )


def test_schema_lists_every_key_as_required() -> None:
    schema = event_json_schema()
    assert set(schema["required"]) == set(schema["properties"]) == set(EventPayload.model_fields)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["schema_version"]["const"] == 1


def test_recognized_event_payload() -> None:
    payload = event_payload(make_event(), device_id="door1")
    assert payload["schema_version"] == 1
    assert payload["time"] == "2023-11-14T22:13:20.123Z"
    assert payload["box"] == {"x": 100, "y": 51, "w": 120, "h": 140}
    assert (payload["person_id"], payload["name"], payload["type"]) == ("alice", "Alice Example", "recognized")
    assert payload["distance"] == 0.3123 and payload["confidence"] == 91.3
    assert payload["device_id"] == "door1"
    assert payload["attributes"] is None
    _validator().validate(payload)
    # Round trip through the bytes that are actually published.
    assert EventPayload.model_validate(json.loads(dumps(payload))).model_dump(mode="json") == payload


@pytest.mark.parametrize("kind", ["unknown", "spoof"])
def test_unnamed_event_types(kind: str) -> None:
    payload = event_payload(make_event(type=kind, person_id=None, name=None))
    assert payload["person_id"] is None and payload["name"] is None
    _validator().validate(payload)


def test_unknown_event_drops_a_stray_name() -> None:
    # The tracker may keep the best candidate on an unknown event; it must never be published.
    payload = event_payload(make_event(type="unknown"))
    assert payload["person_id"] is None and payload["name"] is None


def test_attributes_and_non_finite_numbers() -> None:
    attrs = FaceAttributes(age=31.44, gender="Woman", gender_confidence=97.123, emotion="happy",
                           emotion_confidence=55.55, liveness=0.98765)
    payload = event_payload(make_event(attributes=attrs, distance=float("nan"), similarity=math.inf))
    assert payload["attributes"] == {"age": 31.4, "gender": "Woman", "gender_confidence": 97.1, "emotion": "happy",
                                     "emotion_confidence": 55.5, "liveness": 0.9877}
    assert payload["distance"] is None and payload["similarity"] is None
    _validator().validate(payload)
    odd = event_payload(make_event(attributes=FaceAttributes(gender="robot")))
    assert odd["attributes"]["gender"] is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"person_id": None},  # recognized without a person
        {"confidence": 100.5},
        {"frames_voted": 0},
        {"camera": "front/door"},
        {"person_id": "a+b"},
        {"event_id": ""},
        {"track_id": -1},
    ],
)
def test_invalid_events_rejected(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        event_payload(make_event(**overrides))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.update(extra=1),
        lambda p: p.update(time="2023-11-14 22:13:20"),
        lambda p: p.update(type="unknown"),  # still names alice
        lambda p: p.update(schema_version=2),
        lambda p: p.pop("box"),
        lambda p: p.update(confidence=-1),
        lambda p: p["box"].update(w=-3),
    ],
)
def test_schema_and_model_agree_on_rejections(mutate: Any) -> None:
    payload = event_payload(make_event())
    mutate(payload)
    assert not _validator().is_valid(payload)
    with pytest.raises(ValidationError):
        EventPayload.model_validate(payload)


def test_iso_utc() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1.9996) == "1970-01-01T00:00:01.999Z"


def test_presence_and_last_recognized() -> None:
    p = presence_payload("alice", "Alice", present=True, camera="front", last_seen=0.5, event_id="e1")
    assert p == {"schema_version": 1, "person_id": "alice", "name": "Alice", "present": True, "camera": "front",
                 "last_seen": "1970-01-01T00:00:00.500Z", "event_id": "e1"}
    assert last_recognized_payload("front", None)["person_id"] is None
    lr = last_recognized_payload("front", make_event())
    assert (lr["person_id"], lr["name"], lr["event_id"], lr["confidence"]) == ("alice", "Alice Example", "01HZX-abc",
                                                                             91.3)
    assert last_recognized_payload("front", make_event(type="unknown", person_id=None, name=None))["name"] is None


def test_stats_payload() -> None:
    stats = StatsPayload(
        time=iso_utc(10), uptime_s=12.5, fps=14.2, frames=100, dropped_frames=3,
        latency_ms={"detect": {"p50": 4.0, "p99": 9.5}}, gallery_size=3,  # type: ignore[dict-item]
        cameras={"front": {"state": "running", "fps": 14.2, "frames": 100, "dropped_frames": 3, "errors": 0}},  # type: ignore[dict-item]
    )
    data = json.loads(dumps(stats))
    assert data["latency_ms"]["detect"] == {"p50": 4.0, "p99": 9.5}
    assert data["cameras"]["front"]["last_error"] is None
    with pytest.raises(ValidationError):
        StatsPayload.model_validate({**data, "fps": -1})
