"""Home Assistant device discovery: payloads checked against the documented discovery rules, and the
announce / re-announce / removal flow against a real broker.

``DEVICE_DISCOVERY_SCHEMA`` encodes what https://www.home-assistant.io/integrations/mqtt/ documents for
a *device discovery payload*: ``dev`` (with ``ids`` and a ``name``) and ``o`` (with ``name``) are
mandatory at the root; components live under ``cmps`` keyed by ids from ``[A-Za-z0-9_-]``; each has a
platform ``p``; entity components need a ``unique_id`` and at least one platform option; a component
reduced to ``{"p": ...}`` deletes it; shared options are availability, ``state_topic``,
``command_topic``, ``qos``, ``encoding``. Per platform (event.mqtt, binary_sensor.mqtt, sensor.mqtt):
``event`` needs ``state_topic`` and ``event_types``; binary sensors and sensors need ``state_topic``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from facegate.events.homeassistant import (
    AVAILABILITY_TEMPLATE,
    CAMERA_PROBLEM_VALUE_TEMPLATE,
    CONNECTED_TEMPLATE,
    EVENT_TYPES,
    EVENT_VALUE_TEMPLATE,
    LAST_RECOGNIZED_VALUE_TEMPLATE,
    PRESENCE_VALUE_TEMPLATE,
    HaDeviceInfo,
    HomeAssistantDiscovery,
    discovery_payload,
)
from facegate.events.mqtt import MqttPublisher, MqttSettings
from facegate.events.payloads import event_payload, last_recognized_payload, presence_payload
from facegate.events.topics import Topics, topic_is_concrete
from facegate.types import Box, FaceEvent
from tests.fixtures.mosquitto import MosquittoBroker, MqttCollector, retained_value
from tests.fixtures.publisher_child import make_event

Collect = Callable[..., MqttCollector]


def check_discovery(topic: str, payload: dict[str, Any], topics: Topics) -> None:
    """The rules Home Assistant's schemas (tests/test_ha_validators.py) cannot see: topic layout,
    unique ids, every topic ours and concrete, availability on every entity but the event."""
    prefix, kind, node_id, last = topic.split("/")
    assert (prefix, kind, last) == (topics.discovery_prefix, "device", "config")
    assert node_id == topics.ha_node_id and payload["dev"]["ids"] == [node_id]
    assert set(payload) == {"dev", "o", "qos", "cmps"} and "url" not in payload["o"]
    unique_ids = [c["unique_id"] for c in payload["cmps"].values() if "unique_id" in c]
    assert len(unique_ids) == len(set(unique_ids)), "unique_id values must be unique"
    for cid, component in payload["cmps"].items():
        for key, value in component.items():
            if key.endswith("_topic") or key == "topic":
                assert topic_is_concrete(value) and value.startswith(topics.base + "/")
        if len(component) > 1 and component["p"] not in ("event", "device_automation"):
            assert component["availability"][0]["topic"] == topics.status, cid
        if component["p"] == "event":
            assert "availability" not in component  # never unavailable, so never back to a stale state


@pytest.fixture
def topics(topic_prefix: str) -> Topics:
    return Topics("door1", prefix=topic_prefix, discovery_prefix=f"ha{topic_prefix}")


def test_payload_components(topics: Topics) -> None:
    payload = discovery_payload(topics, HaDeviceInfo(name="Front door", suggested_area="Hall"),
                                cameras={"front": "Front door", "garage": None}, people={"alice": "Alice", "bob": None},
                                snapshots=True)
    check_discovery(topics.ha_device_config, payload, topics)
    cmps = payload["cmps"]
    assert set(cmps) == {"recognition", "fps", "uptime",
                         "presence_alice", "presence_bob", "recognized_alice", "recognized_bob",
                         "last_recognized_front", "last_recognized_garage", "snapshot_front", "snapshot_garage",
                         "camera_problem_front", "camera_problem_garage", "camera_front_error", "camera_garage_error"}
    assert cmps["recognition"]["event_types"] == list(EVENT_TYPES)
    assert cmps["recognition"]["state_topic"] == topics.event
    assert cmps["recognized_alice"]["topic"] == topics.event
    assert (cmps["recognized_alice"]["type"], cmps["recognized_alice"]["subtype"]) == ("recognized", "alice")
    assert cmps["presence_bob"]["name"] == "bob" and cmps["presence_alice"]["device_class"] == "presence"
    assert cmps["presence_alice"]["unique_id"] == "facegate_door1_presence_alice"
    # sensor names use the camera's display name, ids stay the camera id
    assert cmps["last_recognized_front"]["name"] == "Last recognized Front door"
    assert cmps["last_recognized_garage"]["name"] == "Last recognized garage"
    assert cmps["snapshot_front"]["image_topic"] == topics.snapshot("front")
    assert all(cmps[c]["entity_category"] == "diagnostic" for c in ("fps", "uptime", "camera_problem_front"))
    assert payload["o"]["name"] == "facegate"
    without = discovery_payload(topics, HaDeviceInfo(name="d"), cameras=["front"], people={})
    assert "snapshot_front" not in without["cmps"]
    removal = discovery_payload(topics, HaDeviceInfo(name="d"), cameras=["front"], people={},
                                removed_people=["bob"], removed_cameras=["old"])
    assert removal["cmps"]["presence_bob"] == {"p": "binary_sensor"}
    assert removal["cmps"]["recognized_bob"] == {"p": "device_automation"}
    assert removal["cmps"]["last_recognized_old"] == {"p": "sensor"}
    assert removal["cmps"]["camera_problem_old"] == {"p": "binary_sensor"}
    assert cmps["camera_problem_front"]["state_topic"] == topics.camera_health("front")
    assert cmps["camera_problem_front"]["name"] == "Camera Front door"


def test_templates_render_like_home_assistant(topics: Topics) -> None:
    sandbox = pytest.importorskip("jinja2.sandbox")
    env = sandbox.ImmutableSandboxedEnvironment()

    def render(template: str, payload: bytes) -> str:
        text = payload.decode()
        return str(env.from_string(template).render(value=text, value_json=json.loads(text) if text[:1] == "{"
                                                    else None))

    for status, expected in (("online", "online"), ("offline", "offline"), ("stopped", "offline")):
        assert render(AVAILABILITY_TEMPLATE, status.encode()) == expected
    event = json.dumps(event_payload(make_event("ev-1"))).encode()
    rendered = json.loads(render(EVENT_VALUE_TEMPLATE, event))
    assert rendered["event_type"] == "unknown" and rendered["event_id"] == "ev-1"
    assert rendered["event_type"] in EVENT_TYPES and rendered["person_id"] is None
    named = FaceEvent(event_id="ev-2", type="recognized", camera="front", track_id=1, wall=0.0,
                      box=Box(0, 0, 10, 10), frames_voted=3, person_id="zoe", name="Zoë O'Brien \"<x>\"",
                      confidence=90.0, model_id="m")
    rendered = json.loads(render(EVENT_VALUE_TEMPLATE, json.dumps(event_payload(named)).encode()))
    assert (rendered["event_type"], rendered["person_id"], rendered["name"]) == ("recognized", "zoe",
                                                                                 "Zoë O'Brien \"<x>\"")
    present = json.dumps(presence_payload("alice", "Alice", present=True)).encode()
    absent = json.dumps(presence_payload("alice", "Alice", present=False)).encode()
    assert (render(PRESENCE_VALUE_TEMPLATE, present), render(PRESENCE_VALUE_TEMPLATE, absent)) == ("ON", "OFF")
    nobody = json.dumps(last_recognized_payload("front", None)).encode()
    assert render(LAST_RECOGNIZED_VALUE_TEMPLATE, nobody) == "nobody"
    # a blind device is not "online" for its entities, but its camera problem sensors stay available
    assert render(AVAILABILITY_TEMPLATE, b"degraded") == "offline"
    for status, expected in (("online", "online"), ("degraded", "online"), ("offline", "offline"),
                             ("stopped", "offline")):
        assert render(CONNECTED_TEMPLATE, status.encode()) == expected
    for problem, expected in ((True, "ON"), (False, "OFF")):
        health = json.dumps({"camera": "front", "state": "down", "problem": problem}).encode()
        assert render(CAMERA_PROBLEM_VALUE_TEMPLATE, health) == expected


@pytest.fixture
def publisher(mosquitto: MosquittoBroker, topics: Topics) -> Iterator[MqttPublisher]:
    pub = MqttPublisher(topics, MqttSettings(host="127.0.0.1", port=mosquitto.port, keepalive=5, reconnect_max_s=2))
    pub.start()
    assert pub.wait_connected(10)
    yield pub
    pub.stop(timeout=1.0)


def _configs(collector: MqttCollector, topics: Topics) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in collector.messages(topics.ha_device_config) if m.payload]


def test_announce_reannounce_and_remove_person(
    mosquitto: MosquittoBroker, topics: Topics, publisher: MqttPublisher, mqtt_collector: Collect
) -> None:
    collector = mqtt_collector(mosquitto, [f"{topics.discovery_prefix}/#", f"{topics.base}/#"])
    ha = HomeAssistantDiscovery(publisher, topics, HaDeviceInfo(name="Front door"), cameras=["front"],
                                people={"alice": "Alice", "bob": "Bob"})
    ha.attach()
    collector.wait_for_count(topics.ha_device_config, 1)
    first = _configs(collector, topics)[0]
    check_discovery(topics.ha_device_config, first, topics)
    retained = retained_value(mosquitto, topics.ha_device_config)
    assert retained is not None and json.loads(retained) == first

    # Home Assistant's birth message triggers a re-announcement.
    publisher.publish_message(topics.ha_status, "online", qos=1)
    collector.wait_for_count(topics.ha_device_config, 2)

    publisher.publish_state(topics.presence("bob"), presence_payload("bob", "Bob", present=True))
    collector.wait_for_count(topics.presence("bob"), 1)
    ha.remove_person("bob")
    collector.wait_for_count(topics.ha_device_config, 4)
    tombstone, final = _configs(collector, topics)[2:4]
    for config in (tombstone, final):
        check_discovery(topics.ha_device_config, config, topics)
    assert tombstone["cmps"]["presence_bob"] == {"p": "binary_sensor"}
    assert "presence_bob" not in final["cmps"] and "presence_alice" in final["cmps"]
    assert publisher.flush(5)
    assert retained_value(mosquitto, topics.presence("bob"), timeout=1.0) is None
    assert json.loads(retained_value(mosquitto, topics.ha_device_config) or b"{}") == final

    ha.remove_device()
    assert publisher.flush(5)
    assert retained_value(mosquitto, topics.ha_device_config, timeout=1.0) is None


def test_offline_removal_is_announced_on_the_next_start(
    mosquitto: MosquittoBroker, topics: Topics, mqtt_collector: Collect, tmp_path: Path
) -> None:
    """A person removed and a camera dropped while the daemon was stopped: the next start removes
    their components (tombstones) and clears their retained state, from what state_dir remembers."""
    state = tmp_path / "homeassistant.json"
    first = MqttPublisher(topics, MqttSettings(host="127.0.0.1", port=mosquitto.port, keepalive=5))
    first.start()
    HomeAssistantDiscovery(first, topics, HaDeviceInfo(name="d"), cameras=["front", "yard"],
                           people={"alice": "Alice", "bob": "Bob"}, state_path=state).attach()
    first.publish_state(topics.presence("bob"), presence_payload("bob", "Bob", present=True))
    first.publish_state(topics.last_recognized("yard"), last_recognized_payload("yard", None))
    assert first.wait_connected(10) and first.flush(5)
    first.stop(timeout=1.0)
    assert json.loads(state.read_text())["components"]["presence_bob"]["state_topics"] == [topics.presence("bob")]

    collector = mqtt_collector(mosquitto, [topics.ha_device_config])
    second = MqttPublisher(topics, MqttSettings(host="127.0.0.1", port=mosquitto.port, keepalive=5))
    second.start()
    try:
        HomeAssistantDiscovery(second, topics, HaDeviceInfo(name="d"), cameras=["front"], people={"alice": "Alice"},
                               state_path=state).attach()
        assert second.wait_connected(10) and second.flush(5)
        configs = [json.loads(m.payload) for m in collector.wait_for_count(topics.ha_device_config, 3)
                   if m.payload and not m.retain]
        tombstone, final = configs[-2:]
        assert tombstone["cmps"]["presence_bob"] == {"p": "binary_sensor"}
        assert tombstone["cmps"]["recognized_bob"] == {"p": "device_automation"}
        assert tombstone["cmps"]["last_recognized_yard"] == {"p": "sensor"}
        assert not {"presence_bob", "recognized_bob", "last_recognized_yard"} & set(final["cmps"])
        assert retained_value(mosquitto, topics.presence("bob"), timeout=1.0) is None
        assert retained_value(mosquitto, topics.last_recognized("yard"), timeout=1.0) is None
        assert json.loads(retained_value(mosquitto, topics.ha_device_config) or b"{}") == final
        assert "presence_bob" not in json.loads(state.read_text())["components"]
    finally:
        second.stop(timeout=1.0)
