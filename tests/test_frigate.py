"""Frigate- and Double Take-compatible outputs: message shapes, consumers written to those projects'
documented schemas, and the real daemon publishing them to a real broker."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from facegate.events.double_take import DoubleTakeSink, double_take_messages, double_take_topic_name
from facegate.events.frigate import FrigateSink, face_message, frigate_face_update, sub_label_message
from facegate.events.mqtt import MqttPublisher, MqttSettings
from facegate.events.payloads import event_payload
from facegate.events.topics import Topics
from facegate.types import Box, FaceEvent
from tests.fixtures.mosquitto import MosquittoBroker, MqttCollector
from tests.test_daemon_e2e import demo_frames_dir, enrolled_state, start_daemon, write_config

__all__ = ["demo_frames_dir"]  # the fixture, imported so this module can use it

FRIGATE_KEYS = {"type", "name", "score", "id", "camera", "timestamp"}

#: Frigate's tracked_object_update face message, as its MQTT documentation describes it
FRIGATE_FACE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "name", "score", "id", "camera", "timestamp"],
    "properties": {
        "type": {"const": "face"},
        "name": {"type": ["string", "null"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "id": {"type": "string", "pattern": r"^\d+\.\d+-[a-z0-9]{6}$"},
        "camera": {"type": "string"},
        "timestamp": {"type": "number"},
    },
}

_TRACKED_OBJECT: dict[str, Any] = {
    "type": "object",
    "required": ["id", "camera", "frame_time", "label", "sub_label", "top_score", "false_positive", "start_time",
                 "end_time", "score", "box", "area", "region", "current_zones", "entered_zones", "has_snapshot",
                 "has_clip", "stationary"],
    "properties": {
        "id": {"type": "string"},
        "label": {"type": "string"},
        # Frigate 0.14+: [name, score] once a name is known, else null
        "sub_label": {"oneOf": [{"type": "null"}, {"type": "array", "prefixItems": [{"type": "string"},
                                                                                     {"type": "number"}],
                                                   "minItems": 2, "maxItems": 2}]},
        "box": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4},
        "end_time": {"type": ["number", "null"]},
    },
}
#: Frigate's <prefix>/events message
FRIGATE_EVENTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "before", "after"],
    "properties": {"type": {"enum": ["new", "update", "end"]}, "before": _TRACKED_OBJECT, "after": _TRACKED_OBJECT},
}

_DT_MATCH: dict[str, Any] = {
    "type": "object",
    "required": ["name", "confidence", "match", "box", "type", "duration", "detector", "filename"],
    "properties": {
        "name": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 100},
        "match": {"type": "boolean"},
        "box": {"type": "object", "required": ["top", "left", "width", "height"],
                "properties": {k: {"type": "integer"} for k in ("top", "left", "width", "height")}},
        "type": {"type": "string"},
        "duration": {"type": "number"},
        "detector": {"type": "string"},
        "filename": {"type": ["string", "null"]},
    },
}
_DT_ENVELOPE = ["id", "duration", "timestamp", "attempts", "camera", "zones"]
#: Double Take's double-take/matches/<name> message (README "MQTT" section sample)
DOUBLE_TAKE_MATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [*_DT_ENVELOPE, "match"],
    "properties": {"timestamp": {"type": "string", "format": "date-time"}, "attempts": {"type": "integer"},
                   "zones": {"type": "array"}, "match": _DT_MATCH},
}
#: Double Take's double-take/matches/unknown message (mqtt.util.js: the envelope + unknown + unknowns)
DOUBLE_TAKE_UNKNOWN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [*_DT_ENVELOPE, "unknown", "unknowns"],
    "properties": {"unknown": _DT_MATCH, "unknowns": {"type": "array", "items": _DT_MATCH, "minItems": 1}},
}
#: Double Take's double-take/cameras/<camera> message
DOUBLE_TAKE_CAMERA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [*_DT_ENVELOPE, "matches", "misses", "unknowns", "counts"],
    "properties": {"matches": {"type": "array", "items": _DT_MATCH}, "unknowns": {"type": "array", "items": _DT_MATCH},
                   "counts": {"type": "object", "required": ["person", "match", "miss", "unknown"]}},
}


def event(kind: str = "recognized", **kw: object) -> FaceEvent:
    values: dict[str, object] = {"event_id": "ev-1", "type": kind, "camera": "front", "track_id": 3,
                                 "wall": 1_700_000_000.25, "box": Box(10, 20, 110, 140), "frames_voted": 3,
                                 "confidence": 87.5, "model_id": "m"}
    if kind == "recognized":
        values.update(person_id="alice", name="Alice Smith")
    values.update(kw)
    return FaceEvent(**values)  # type: ignore[arg-type]


# -- consumers written to the documented schemas (what an automation or a Double Take client does) --


def frigate_automation(update: dict[str, Any]) -> str | None:
    """A Home Assistant automation on tracked_object_update: ``{{ trigger.payload_json['name'] }}``
    when ``type == 'face'`` and the score clears 0.8."""
    if update["type"] != "face" or update["name"] is None or update["score"] < 0.8:
        return None
    return f"{update['name']} at {update['camera']}"


def frigate_sub_label_consumer(message: dict[str, Any]) -> tuple[str, float] | None:
    """Reads ``after.sub_label`` of a frigate/events message (``[name, score]`` since Frigate 0.14)."""
    sub_label = message["after"]["sub_label"]
    if not sub_label:
        return None
    name, score = sub_label
    return str(name), float(score)


def double_take_consumer(topic: str, message: dict[str, Any]) -> tuple[str, float, int]:
    """Reads a double-take/matches/<name> message as Double Take's README documents it."""
    match = message["match"]
    assert topic.rsplit("/", 1)[1] == double_take_topic_name(match["name"])
    return match["name"], match["confidence"], match["box"]["width"]


def test_frigate_face_message_shape_and_consumer() -> None:
    msg = frigate_face_update(event())
    assert msg is not None and set(msg) == FRIGATE_KEYS
    jsonschema.validate(msg, FRIGATE_FACE_SCHEMA)
    assert (msg["type"], msg["name"], msg["score"], msg["camera"]) == ("face", "Alice Smith", 0.875, "front")
    head, _, suffix = msg["id"].partition("-")
    assert float(head) == 1_700_000_000.25 and len(suffix) == 6
    assert frigate_face_update(event())["id"] == msg["id"]  # type: ignore[index]  # stable per event
    assert frigate_automation(msg) == "Alice Smith at front"
    unknown = frigate_face_update(event("unknown"))
    assert unknown is not None and unknown["name"] is None and unknown["score"] == 0.0
    jsonschema.validate(unknown, FRIGATE_FACE_SCHEMA)
    assert frigate_automation(unknown) is None
    assert frigate_face_update(event("spoof")) is None


def test_frigate_sub_label_message_shape_and_consumer() -> None:
    payload = event_payload(event())
    message = sub_label_message(payload)
    assert message is not None
    jsonschema.validate(message, FRIGATE_EVENTS_SCHEMA)
    assert message["before"]["sub_label"] is None
    assert message["after"]["box"] == [10, 20, 110, 140] and message["after"]["label"] == "person"
    assert message["after"]["id"] == face_message(payload)["id"]  # type: ignore[index]
    assert frigate_sub_label_consumer(message) == ("Alice Smith", 0.875)
    assert sub_label_message(event_payload(event("unknown"))) is None
    assert sub_label_message(event_payload(event("spoof"))) is None


def test_double_take_messages_shape_and_consumer() -> None:
    (topic, match), (camera_topic, camera) = double_take_messages(event_payload(event()))
    assert topic == "double-take/matches/Alice-Smith" and camera_topic == "double-take/cameras/front"
    jsonschema.validate(match, DOUBLE_TAKE_MATCH_SCHEMA, format_checker=jsonschema.FormatChecker())
    jsonschema.validate(camera, DOUBLE_TAKE_CAMERA_SCHEMA)
    assert double_take_consumer(topic, match) == ("Alice Smith", 87.5, 100)
    assert match["match"]["box"] == {"top": 20, "left": 10, "width": 100, "height": 120}
    assert match["id"] == frigate_face_update(event())["id"]  # type: ignore[index]  # joins with Frigate's
    assert camera["counts"] == {"person": 1, "match": 1, "miss": 0, "unknown": 0}

    (topic, unknown), (_, camera) = double_take_messages(event_payload(event("unknown")))
    assert topic == "double-take/matches/unknown"
    jsonschema.validate(unknown, DOUBLE_TAKE_UNKNOWN_SCHEMA)
    assert unknown["unknown"]["match"] is False and camera["counts"]["unknown"] == 1
    assert double_take_messages(event_payload(event("spoof"))) == []


def test_double_take_topic_name_follows_double_take() -> None:
    assert double_take_topic_name("Mary  Ann O'Neil") == "Mary-Ann-ONeil"
    assert double_take_topic_name("david") == "david"
    # a name with nothing Double Take keeps falls back to the person id
    (topic, _), _ = double_take_messages(event_payload(event(name="Ωμέγα", person_id="omega")))
    assert topic == "double-take/matches/omega"


def test_sinks_publish_to_a_real_broker(mosquitto: MosquittoBroker, topic_prefix: str) -> None:
    frigate_prefix, dt_prefix = f"fr{topic_prefix}", f"dt{topic_prefix}"
    collector = MqttCollector(mosquitto, [f"{frigate_prefix}/#", f"{dt_prefix}/#"])
    publisher = MqttPublisher(Topics("door1", prefix=topic_prefix), MqttSettings(host="127.0.0.1", port=mosquitto.port))
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        payload = event_payload(event())
        FrigateSink(publisher, prefix=frigate_prefix).publish_event(payload)
        DoubleTakeSink(publisher, prefix=dt_prefix).publish_event(payload)
        (update,) = collector.wait_for_count(f"{frigate_prefix}/tracked_object_update", 1)
        (events,) = collector.wait_for_count(f"{frigate_prefix}/events", 1)
        (match,) = collector.wait_for_count(f"{dt_prefix}/matches/Alice-Smith", 1)
        collector.wait_for_count(f"{dt_prefix}/cameras/front", 1)
    finally:
        publisher.stop(timeout=1.0)
        collector.close()
    assert not (update.retain or events.retain or match.retain)
    assert json.loads(update.payload) == face_message(payload)
    assert frigate_sub_label_consumer(json.loads(events.payload)) == ("Alice Smith", 0.875)


@pytest.mark.slow
def test_daemon_with_frigate_compat_and_double_take(
    tmp_path: Path, demo_frames_dir: Path, mosquitto: MosquittoBroker, topic_prefix: str
) -> None:
    """The real daemon (``facegate run``) with both outputs on and two cameras showing the same replay: it
    keeps running, publishes Frigate's and Double Take's messages that their consumers parse, and the
    per-person cooldown gives Barack Obama one recognition although both cameras see him."""
    state = enrolled_state(tmp_path)
    porch = f"""  - id: porch
    source: {{type: replay, path: {demo_frames_dir}, fps: 10.0, loop: true}}"""
    config = write_config(tmp_path / "facegate.yaml", state=state, frames=demo_frames_dir, broker=mosquitto,
                          prefix=topic_prefix, loop=True, fps=10.0, extra_cameras=porch)
    document = yaml.safe_load(config.read_text())
    frigate_prefix, dt_prefix = f"fr{topic_prefix}", f"dt{topic_prefix}"
    document["mqtt"].update(frigate_compat=True, frigate_prefix=frigate_prefix, double_take=True,
                            double_take_prefix=dt_prefix)
    config.write_text(yaml.safe_dump(document))
    base = f"{topic_prefix}/door1"
    collector = MqttCollector(mosquitto, [f"{base}/event", f"{frigate_prefix}/#", f"{dt_prefix}/#"])
    proc = start_daemon(config)
    try:
        # both cameras decide the unknown (Biden) and at least one of them Obama
        collector.wait_for(lambda ms: sum(m.topic == f"{base}/event" for m in ms) >= 3, timeout=120)
        collector.wait_for(lambda ms: any(m.topic.startswith(f"{dt_prefix}/matches/Barack") for m in ms), timeout=20)
        collector.wait_for_count(f"{frigate_prefix}/events", 1, timeout=20)
        # keep looping a while: the replay shows Obama again on both cameras
        collector.wait_for(lambda ms: sum(m.topic == f"{base}/event" for m in ms) >= 5, timeout=60)
        assert proc.poll() is None, "the daemon must not crash on its first event"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        collector.close()
    assert proc.returncode == 0, err[-2000:]
    events = [json.loads(m.payload) for m in collector.messages(f"{base}/event")]
    recognized = [e for e in events if e["type"] == "recognized"]
    assert len(recognized) == 1, [(e["type"], e["camera"], e["time"]) for e in events]
    assert {e["camera"] for e in events if e["type"] == "unknown"} == {"hall", "porch"}

    updates = [json.loads(m.payload) for m in collector.messages(f"{frigate_prefix}/tracked_object_update")]
    for update in updates:
        jsonschema.validate(update, FRIGATE_FACE_SCHEMA)
    assert [frigate_automation(u) for u in updates].count(f"Barack Obama at {recognized[0]['camera']}") == 1
    (sub_label,) = [json.loads(m.payload) for m in collector.messages(f"{frigate_prefix}/events")]
    jsonschema.validate(sub_label, FRIGATE_EVENTS_SCHEMA)
    assert frigate_sub_label_consumer(sub_label)[0] == "Barack Obama"  # type: ignore[index]

    (match,) = collector.messages(f"{dt_prefix}/matches/Barack-Obama")
    message = json.loads(match.payload)
    jsonschema.validate(message, DOUBLE_TAKE_MATCH_SCHEMA)
    name, confidence, width = double_take_consumer(match.topic, message)
    assert name == "Barack Obama" and confidence == pytest.approx(recognized[0]["confidence"], abs=0.01)
    assert width == recognized[0]["box"]["w"]
    for unknown in collector.messages(f"{dt_prefix}/matches/unknown"):
        jsonschema.validate(json.loads(unknown.payload), DOUBLE_TAKE_UNKNOWN_SCHEMA)
    for camera in ("hall", "porch"):
        for m in collector.messages(f"{dt_prefix}/cameras/{camera}"):
            jsonschema.validate(json.loads(m.payload), DOUBLE_TAKE_CAMERA_SCHEMA)
