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

jsonschema = pytest.importorskip("jsonschema")

Collect = Callable[..., MqttCollector]
SLUG = "^[A-Za-z0-9_-]+$"
TOPIC = r"^[^#+\u0000]+$"

_AVAILABILITY_ITEM = {
    "type": "object",
    "required": ["topic"],
    "properties": {
        "topic": {"type": "string", "pattern": TOPIC},
        "payload_available": {"type": "string"},
        "payload_not_available": {"type": "string"},
        "value_template": {"type": "string"},
    },
    "additionalProperties": False,
}

_ENTITY_COMMON = {
    "p": {"type": "string"},
    "name": {"type": ["string", "null"]},
    "unique_id": {"type": "string", "minLength": 1},
    "state_topic": {"type": "string", "pattern": TOPIC},
    "json_attributes_topic": {"type": "string", "pattern": TOPIC},
    "value_template": {"type": "string"},
    "icon": {"type": "string", "pattern": "^mdi:"},
    "device_class": {"type": ["string", "null"]},
    "qos": {"enum": [0, 1, 2]},
    "entity_category": {"enum": ["config", "diagnostic"]},
    "availability": {"type": "array", "items": _AVAILABILITY_ITEM, "minItems": 1},
    "availability_mode": {"enum": ["all", "any", "latest"]},
}

_PLATFORMS: dict[str, dict[str, Any]] = {
    "event": {"required": ["state_topic", "event_types"],
              "properties": {"event_types": {"type": "array", "items": {"type": "string"}, "minItems": 1}}},
    "binary_sensor": {"required": ["state_topic"],
                      "properties": {"payload_on": {"type": "string"}, "payload_off": {"type": "string"}}},
    "sensor": {"required": ["state_topic"], "properties": {"unit_of_measurement": {"type": "string"}}},
}


def _component_schema() -> dict[str, Any]:
    removal = {"type": "object", "required": ["p"], "properties": {"p": {"enum": list(_PLATFORMS)}},
               "additionalProperties": False}
    entities = []
    for platform, rules in _PLATFORMS.items():
        entities.append({
            "type": "object",
            "required": ["p", "unique_id", *rules["required"]],
            "properties": {**_ENTITY_COMMON, "p": {"const": platform}, **rules["properties"]},
            "additionalProperties": False,
        })
    return {"oneOf": [removal, *entities]}


DEVICE_DISCOVERY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["dev", "o", "cmps"],
    "properties": {
        "dev": {
            "type": "object",
            "required": ["ids", "name"],
            "properties": {
                "ids": {"oneOf": [{"type": "string", "minLength": 1},
                                  {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}]},
                "name": {"type": "string", "minLength": 1},
                "mf": {"type": "string"}, "mdl": {"type": "string"}, "sw": {"type": "string"},
                "hw": {"type": "string"}, "sn": {"type": "string"}, "sa": {"type": "string"},
                "cu": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "o": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1}, "sw": {"type": "string"},
                           "url": {"type": "string", "pattern": "^https?://"}},
            "additionalProperties": False,
        },
        "availability": {"type": "array", "items": _AVAILABILITY_ITEM, "minItems": 1},
        "availability_mode": {"enum": ["all", "any", "latest"]},
        "qos": {"enum": [0, 1, 2]},
        "state_topic": {"type": "string", "pattern": TOPIC},
        "command_topic": {"type": "string", "pattern": TOPIC},
        "encoding": {"type": "string"},
        "cmps": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": SLUG},
            "additionalProperties": _component_schema(),
        },
    },
    "additionalProperties": False,
}


def check_discovery(topic: str, payload: dict[str, Any], topics: Topics) -> None:
    """Schema plus the rules a JSON Schema cannot express."""
    jsonschema.Draft202012Validator(DEVICE_DISCOVERY_SCHEMA).validate(payload)
    prefix, kind, node_id, last = topic.split("/")
    assert (prefix, kind, last) == (topics.discovery_prefix, "device", "config")
    assert node_id == topics.ha_node_id and payload["dev"]["ids"] == [node_id]
    unique_ids = [c["unique_id"] for c in payload["cmps"].values() if "unique_id" in c]
    assert len(unique_ids) == len(set(unique_ids)), "unique_id values must be unique"
    for component in payload["cmps"].values():
        for key, value in component.items():
            if key.endswith("_topic"):
                assert topic_is_concrete(value) and value.startswith(topics.base + "/")
    assert payload["availability"][0]["topic"] == topics.status


@pytest.fixture
def topics(topic_prefix: str) -> Topics:
    return Topics("door1", prefix=topic_prefix, discovery_prefix=f"ha{topic_prefix}")


def test_payload_matches_documented_schema(topics: Topics) -> None:
    payload = discovery_payload(topics, HaDeviceInfo(name="Front door", suggested_area="Hall"),
                                cameras=["front", "garage"], people={"alice": "Alice", "bob": None})
    check_discovery(topics.ha_device_config, payload, topics)
    cmps = payload["cmps"]
    assert set(cmps) == {"recognition", "presence_alice", "presence_bob", "last_recognized_front",
                         "last_recognized_garage", "camera_problem_front", "camera_problem_garage"}
    assert cmps["camera_problem_front"]["device_class"] == "problem"
    assert cmps["camera_problem_front"]["state_topic"] == topics.camera_health("front")
    assert cmps["recognition"]["event_types"] == list(EVENT_TYPES)
    assert cmps["recognition"]["state_topic"] == topics.event
    assert cmps["presence_bob"]["name"] == "bob" and cmps["presence_alice"]["device_class"] == "presence"
    assert cmps["presence_alice"]["unique_id"] == "facegate_door1_presence_alice"
    assert payload["o"]["name"] == "facegate"


def test_removal_form_is_valid_and_the_schema_rejects_broken_payloads(topics: Topics) -> None:
    payload = discovery_payload(topics, HaDeviceInfo(name="d"), cameras=["front"], people={},
                                removed_people=["bob"], removed_cameras=["old"])
    check_discovery(topics.ha_device_config, payload, topics)
    assert payload["cmps"]["presence_bob"] == {"p": "binary_sensor"}
    assert payload["cmps"]["last_recognized_old"] == {"p": "sensor"}
    validator = jsonschema.Draft202012Validator(DEVICE_DISCOVERY_SCHEMA)
    good = discovery_payload(topics, HaDeviceInfo(name="d"), cameras=["front"], people={"a": "A"})
    breakers: tuple[Callable[[dict[str, Any]], object], ...] = (
        lambda p: p.pop("o"),
        lambda p: p["dev"].pop("ids"),
        lambda p: p["cmps"]["recognition"].pop("unique_id"),
        lambda p: p["cmps"]["recognition"].pop("event_types"),
        lambda p: p["cmps"]["presence_a"].update(p="light"),
        lambda p: p["cmps"].update({"bad/id": {"p": "sensor"}}),
        lambda p: p["cmps"]["presence_a"].update(state_topic="x/+/y"),
    )
    for breaker in breakers:
        broken = json.loads(json.dumps(good))
        breaker(broken)
        assert not validator.is_valid(broken)


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
