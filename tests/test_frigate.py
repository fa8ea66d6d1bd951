"""Frigate-compatible ``tracked_object_update`` face messages."""

from __future__ import annotations

import json
from collections.abc import Callable

from facegate.events.frigate import FrigateFaceBridge, frigate_face_update
from facegate.events.mqtt import MqttPublisher, MqttSettings
from facegate.events.topics import Topics
from facegate.types import Box, FaceEvent
from tests.fixtures.mosquitto import MosquittoBroker, MqttCollector

FRIGATE_KEYS = {"type", "name", "score", "id", "camera", "timestamp"}


def event(kind: str = "recognized", **kw: object) -> FaceEvent:
    values: dict[str, object] = {"event_id": "ev-1", "type": kind, "camera": "front", "track_id": 3,
                                 "wall": 1_700_000_000.25, "box": Box(0, 0, 10, 10), "frames_voted": 3,
                                 "confidence": 87.5, "model_id": "m"}
    if kind == "recognized":
        values.update(person_id="alice", name="Alice")
    values.update(kw)
    return FaceEvent(**values)  # type: ignore[arg-type]


def test_message_shape() -> None:
    msg = frigate_face_update(event())
    assert msg is not None and set(msg) == FRIGATE_KEYS
    assert (msg["type"], msg["name"], msg["score"], msg["camera"]) == ("face", "Alice", 0.875, "front")
    head, _, suffix = msg["id"].partition("-")
    assert float(head) == 1_700_000_000.25 and len(suffix) == 6
    assert frigate_face_update(event())["id"] == msg["id"]  # type: ignore[index]  # stable per event
    unknown = frigate_face_update(event("unknown"))
    assert unknown is not None and unknown["name"] is None and unknown["score"] == 0.0
    assert frigate_face_update(event("spoof")) is None


def test_bridge_publishes_only_when_enabled(
    mosquitto: MosquittoBroker, topic_prefix: str, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    frigate_prefix = f"fr{topic_prefix}"
    collector = mqtt_collector(mosquitto, [f"{frigate_prefix}/#"])
    publisher = MqttPublisher(Topics("door1", prefix=topic_prefix), MqttSettings(host="127.0.0.1", port=mosquitto.port))
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        assert FrigateFaceBridge(publisher, enabled=False, prefix=frigate_prefix).on_event(event()) is False
        bridge = FrigateFaceBridge(publisher, enabled=True, prefix=frigate_prefix)
        assert bridge.on_event(event()) is True
        (received,) = collector.wait_for_count(f"{frigate_prefix}/tracked_object_update", 1)
        assert received.retain is False
        assert json.loads(received.payload) == frigate_face_update(event())
    finally:
        publisher.stop(timeout=1.0)
