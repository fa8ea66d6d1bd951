"""Home Assistant MQTT *device* discovery (one retained config message for the whole device).

Topic: ``<discovery_prefix>/device/facegate_<device_id>/config``. Payload (Home Assistant's "device
discovery payload", https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload)::

    {"dev": {...}, "o": {"name": "facegate", "sw": ...}, "qos": 1,
     "cmps": {"recognition": {"p": "event", ...},
              "recognized_<person_id>": {"p": "device_automation", "type": "recognized", ...},
              "presence_<person_id>": {"p": "binary_sensor", ...},
              "last_recognized_<camera>": {"p": "sensor", ...},
              "snapshot_<camera>": {"p": "image", ...},            # with mqtt.snapshots
              "camera_problem_<camera>" / "camera_<camera>_error", "fps", "uptime": diagnostics}}

* ``dev`` and ``o`` are mandatory at the root; every entity component has a platform ``p`` and a
  ``unique_id`` (``facegate_<device_id>_<component id>``), so entities survive renames.
* **Unlock automations use the device triggers** (``recognized`` / subtype = person id). Home
  Assistant does not restore triggers, so a restart of facegate or of Home Assistant can never replay
  an old recognition; they follow the live event topic only (see :mod:`facegate.events.freshness`),
  and their payload carries ``event_id`` (for de-duplicating a QoS 1 redelivery) and ``time``.
* The ``event`` entity has **no availability**: it never becomes ``unavailable``, so it never
  "returns" to its last (stale) state when facegate restarts. Its state still survives a Home
  Assistant restart (HA restores it), which is why an automation on it needs
  ``not_from: [unavailable, unknown]`` and a freshness check on the ``time`` attribute.
* Every other entity's availability is the device's status topic. Its payloads are ``online``,
  ``offline`` (last will) and ``stopped`` (clean exit); Home Assistant compares the rendered
  ``value_template`` with exactly one ``payload_not_available``, so the template folds every value but
  ``online`` into ``offline``.
* Each camera has a ``problem`` binary_sensor (on while the camera is stalled or down, the last error
  as an attribute and as its own diagnostic sensor) bound to the camera's retained health topic. The
  daemon says ``degraded`` on the status topic while no camera delivers frames, which makes the
  device's other entities unavailable; the camera sensors have their own availability that counts
  ``degraded`` as available, so they show the problem instead of disappearing with it.
* What was announced is persisted in ``state_dir`` (atomically). Whatever is gone since - a person
  removed, a camera renamed, even while the daemon was stopped - is published once reduced to
  ``{"p": platform}`` (Home Assistant's documented way to delete one component of a device), then the
  config without it; retained presence / last-recognized states of what is gone are cleared.
* Discovery is retained and re-announced whenever Home Assistant publishes ``online`` on
  ``<discovery_prefix>/status`` (its birth message); the publisher republishes it once per reconnect.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from facegate import __version__
from facegate.errors import ConfigError
from facegate.events.mqtt_settings import InboundMessage, MessageHandler
from facegate.events.payloads import STATUS_OFFLINE, STATUS_ONLINE, PayloadLike
from facegate.events.topics import Topics, validate_id

logger = logging.getLogger(__name__)

ORIGIN_NAME = "facegate"
EVENT_TYPES: tuple[str, ...] = ("recognized", "unknown", "spoof")
#: Device trigger type of a live recognition; the subtype is the person id.
TRIGGER_RECOGNIZED = "recognized"

#: Maps every status value onto the two payloads Home Assistant compares with.
AVAILABILITY_TEMPLATE = "{{ 'online' if value == 'online' else 'offline' }}"
#: Renders our event payload into the ``{"event_type": ..., <attributes>}`` JSON the event entity wants.
EVENT_VALUE_TEMPLATE = (
    "{{ {'event_type': value_json.type, 'event_id': value_json.event_id, 'camera': value_json.camera,"
    " 'person_id': value_json.person_id, 'name': value_json.name, 'confidence': value_json.confidence,"
    " 'time': value_json.time, 'age_s': value_json.age_s} | tojson }}"
)
#: Availability of the camera sensors: the daemon is connected (``online`` or ``degraded``).
CONNECTED_TEMPLATE = "{{ 'online' if value in ('online', 'degraded') else 'offline' }}"
CAMERA_PROBLEM_VALUE_TEMPLATE = "{{ 'ON' if value_json.problem else 'OFF' }}"
CAMERA_ERROR_VALUE_TEMPLATE = "{{ (value_json.last_error or 'none')[:250] }}"
PRESENCE_VALUE_TEMPLATE = "{{ 'ON' if value_json.present else 'OFF' }}"
LAST_RECOGNIZED_VALUE_TEMPLATE = "{{ value_json.name if value_json.name else (value_json.person_id or 'nobody') }}"
#: Device triggers compare the rendered value with ``payload`` (the person id); ``late`` can never be
#: true on the live topic, the check is a second line of defence.
TRIGGER_VALUE_TEMPLATE = (
    "{{ value_json.person_id if value_json.type == 'recognized' and not value_json.late else '' }}"
)


class DiscoveryPublisher(Protocol):
    """The subset of :class:`~facegate.events.mqtt.MqttPublisher` discovery needs."""

    def publish_state(self, topic: str, payload: PayloadLike, *, retain: bool = True, qos: int = 1) -> None: ...

    def clear_state(self, topic: str) -> None: ...

    def subscribe(self, topic_filter: str, handler: MessageHandler, *, qos: int = 1) -> None: ...


@dataclass(frozen=True, slots=True)
class HaDeviceInfo:
    """The ``dev`` block: how the device appears in Home Assistant's device registry."""

    name: str
    model: str = "facegate"
    manufacturer: str = "facegate"
    sw_version: str = __version__
    suggested_area: str | None = None
    configuration_url: str | None = None


def component_id_presence(person_id: str) -> str:
    return f"presence_{validate_id(person_id, 'person_id')}"


def component_id_trigger(person_id: str) -> str:
    return f"recognized_{validate_id(person_id, 'person_id')}"


def component_id_last_recognized(camera: str) -> str:
    return f"last_recognized_{validate_id(camera, 'camera')}"


COMPONENT_RECOGNITION = "recognition"

CameraNames = Mapping[str, str | None] | Sequence[str]


def _camera_names(cameras: CameraNames) -> dict[str, str]:
    if isinstance(cameras, Mapping):
        return {validate_id(c, "camera"): (n or c) for c, n in cameras.items()}
    return {validate_id(c, "camera"): c for c in cameras}


def _availability(topics: Topics, template: str = AVAILABILITY_TEMPLATE) -> dict[str, Any]:
    return {
        "availability": [
            {
                "topic": topics.status,
                "payload_available": STATUS_ONLINE,
                "payload_not_available": STATUS_OFFLINE,
                "value_template": template,
            }
        ],
        "availability_mode": "latest",
    }


def component_id_camera_problem(camera: str) -> str:
    return f"camera_problem_{validate_id(camera, 'camera')}"


def camera_problem_component(topics: Topics, camera: str, display: str | None = None) -> dict[str, Any]:
    """The per-camera problem binary_sensor (see the module docstring for its availability)."""
    cid = component_id_camera_problem(camera)
    return {
        "p": "binary_sensor",
        "name": f"Camera {display or camera}",
        "unique_id": f"{topics.ha_node_id}_{cid}",
        "device_class": "problem",
        "entity_category": "diagnostic",
        "state_topic": topics.camera_health(camera),
        "value_template": CAMERA_PROBLEM_VALUE_TEMPLATE,
        "payload_on": "ON",
        "payload_off": "OFF",
        "json_attributes_topic": topics.camera_health(camera),
        **_availability(topics, CONNECTED_TEMPLATE),
    }


def _person_components(topics: Topics, node: str, person_id: str, name: str | None) -> dict[str, dict[str, Any]]:
    cid = component_id_presence(person_id)
    return {
        component_id_trigger(person_id): {
            "p": "device_automation",
            "automation_type": "trigger",
            "topic": topics.event,
            "type": TRIGGER_RECOGNIZED,
            "subtype": person_id,
            "payload": person_id,
            "value_template": TRIGGER_VALUE_TEMPLATE,
            "qos": 1,
        },
        cid: {
            "p": "binary_sensor",
            "name": name or person_id,
            "unique_id": f"{node}_{cid}",
            "device_class": "presence",
            "state_topic": topics.presence(person_id),
            "value_template": PRESENCE_VALUE_TEMPLATE,
            "payload_on": "ON",
            "payload_off": "OFF",
            "json_attributes_topic": topics.presence(person_id),
            **_availability(topics),
        },
    }


def _camera_components(
    topics: Topics, node: str, camera: str, display: str, *, snapshots: bool
) -> dict[str, dict[str, Any]]:
    cid = component_id_last_recognized(camera)
    out: dict[str, dict[str, Any]] = {
        cid: {
            "p": "sensor",
            "name": f"Last recognized {display}",
            "unique_id": f"{node}_{cid}",
            "state_topic": topics.last_recognized(camera),
            "value_template": LAST_RECOGNIZED_VALUE_TEMPLATE,
            "json_attributes_topic": topics.last_recognized(camera),
            "icon": "mdi:account-check",
            **_availability(topics),
        },
        component_id_camera_problem(camera): camera_problem_component(topics, camera, display),
        f"camera_{camera}_error": {
            "p": "sensor",
            "name": f"Camera {display} last error",
            "unique_id": f"{node}_camera_{camera}_error",
            "entity_category": "diagnostic",
            "state_topic": topics.camera_health(camera),
            "value_template": CAMERA_ERROR_VALUE_TEMPLATE,
            "icon": "mdi:alert-circle-outline",
            **_availability(topics, CONNECTED_TEMPLATE),
        },
    }
    if snapshots:
        out[f"snapshot_{camera}"] = {
            "p": "image",
            "name": f"Snapshot {display}",
            "unique_id": f"{node}_snapshot_{camera}",
            "image_topic": topics.snapshot(camera),
            "content_type": "image/jpeg",
            **_availability(topics),
        }
    return out


def _device_diagnostics(topics: Topics, node: str) -> dict[str, dict[str, Any]]:
    return {
        "fps": {
            "p": "sensor",
            "name": "Frame rate",
            "unique_id": f"{node}_fps",
            "entity_category": "diagnostic",
            "state_topic": topics.stats,
            "value_template": "{{ value_json.fps }}",
            "unit_of_measurement": "fps",
            "state_class": "measurement",
            "icon": "mdi:speedometer",
            **_availability(topics),
        },
        "uptime": {
            "p": "sensor",
            "name": "Uptime",
            "unique_id": f"{node}_uptime",
            "entity_category": "diagnostic",
            "device_class": "duration",
            "unit_of_measurement": "s",
            "state_topic": topics.stats,
            "value_template": "{{ value_json.uptime_s | round(0) }}",
            **_availability(topics),
        },
    }


def discovery_payload(
    topics: Topics,
    device: HaDeviceInfo,
    *,
    cameras: CameraNames,
    people: Mapping[str, str | None],
    snapshots: bool = False,
    removed: Mapping[str, str] | None = None,
    removed_people: Iterable[str] = (),
    removed_cameras: Iterable[str] = (),
) -> dict[str, Any]:
    """The device discovery config. ``people`` maps person id -> display name (None: use the id);
    ``cameras`` maps camera id -> display name (or is a sequence of ids).

    ``removed`` (component id -> platform) and the ids in ``removed_*`` are emitted as
    ``{"p": platform}`` entries, which tells Home Assistant to delete those components; publish once
    with them, then again without.
    """
    node = topics.ha_node_id
    dev: dict[str, Any] = {
        "ids": [node],
        "name": device.name,
        "mf": device.manufacturer,
        "mdl": device.model,
        "sw": device.sw_version,
    }
    if device.suggested_area:
        dev["sa"] = device.suggested_area
    if device.configuration_url:
        dev["cu"] = device.configuration_url
    components: dict[str, dict[str, Any]] = {
        COMPONENT_RECOGNITION: {
            "p": "event",
            "name": "Recognition",
            "unique_id": f"{node}_{COMPONENT_RECOGNITION}",
            "state_topic": topics.event,
            "event_types": list(EVENT_TYPES),
            "value_template": EVENT_VALUE_TEMPLATE,
            "icon": "mdi:face-recognition",
        },
        **_device_diagnostics(topics, node),
    }
    for person_id, name in sorted(people.items()):
        components.update(_person_components(topics, node, person_id, name))
    names = _camera_names(cameras)
    for camera, display in sorted(names.items()):
        components.update(_camera_components(topics, node, camera, display, snapshots=snapshots))
    gone: dict[str, str] = dict(removed or {})
    for person_id in set(removed_people) - set(people):
        gone[component_id_presence(person_id)] = "binary_sensor"
        gone[component_id_trigger(person_id)] = "device_automation"
    for camera in set(removed_cameras) - set(names):
        gone[component_id_last_recognized(camera)] = "sensor"
        gone[component_id_camera_problem(camera)] = "binary_sensor"
    for cid, platform in sorted(gone.items()):
        if cid not in components:
            components[cid] = {"p": platform}
    return {
        "dev": dev,
        "o": {"name": ORIGIN_NAME, "sw": __version__},
        "qos": 1,
        "cmps": components,
    }


def _owned_state_topics(cid: str, component: Mapping[str, Any]) -> list[str]:
    """Retained topics facegate owns for a component (cleared when the component goes away)."""
    topic = component.get("state_topic")
    if cid.startswith(("presence_", "last_recognized_")) and isinstance(topic, str):
        return [topic]
    if cid.startswith("camera_problem_") and isinstance(topic, str):
        # the health topic and its sibling availability topic (…/camera/<id>/health -> …/availability)
        return [topic, topic.rsplit("/", 1)[0] + "/availability"]
    return []


def _load_announced(path: Path | None) -> dict[str, dict[str, Any]]:
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        components = data["components"]
        if not isinstance(components, dict):
            raise TypeError("components is not an object")
        return {str(k): dict(v) for k, v in components.items() if isinstance(v, dict) and "p" in v}
    except (OSError, ValueError, KeyError, TypeError) as err:
        # losing this file only means old entities are not removed automatically: warn, carry on
        logger.warning("Home Assistant: %s is unreadable (%s); not removing entities announced earlier", path, err)
        return {}


def _save_announced(path: Path, components: Mapping[str, Mapping[str, Any]]) -> None:
    """Atomic write (temp file in the same directory, fsync, rename)."""
    text = json.dumps({"version": 1, "components": components}, indent=1, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {err}") from err


class HomeAssistantDiscovery:
    """Keeps Home Assistant's view of this device (people, cameras) in step with the daemon. Thread-safe.

    ``state_path`` (``<state_dir>/homeassistant.json``) remembers what was announced, so components
    that disappeared while the daemon was stopped are removed on the next announcement.
    """

    def __init__(
        self,
        publisher: DiscoveryPublisher,
        topics: Topics,
        device: HaDeviceInfo,
        *,
        cameras: CameraNames = (),
        people: Mapping[str, str | None] | None = None,
        snapshots: bool = False,
        state_path: Path | None = None,
    ) -> None:
        self._publisher = publisher
        self.topics = topics
        self.device = device
        self.snapshots = snapshots
        self.state_path = state_path
        self._lock = threading.Lock()
        self._cameras: dict[str, str] = _camera_names(cameras)
        self._people: dict[str, str | None] = {validate_id(p, "person_id"): n for p, n in (people or {}).items()}
        self._announced = _load_announced(state_path)
        self._attached = False

    def attach(self) -> None:
        """Listen for Home Assistant's birth message and announce the device (retained)."""
        if not self._attached:
            self._publisher.subscribe(self.topics.ha_status, self._on_ha_status)
            self._attached = True
        self.announce()

    def config(self) -> dict[str, Any]:
        with self._lock:
            return self._config_locked()

    def _config_locked(self) -> dict[str, Any]:
        return discovery_payload(self.topics, self.device, cameras=self._cameras, people=self._people,
                                 snapshots=self.snapshots)

    def announce(self) -> None:
        """Publish the config; first remove (tombstone, clear retained state) what was announced before
        and is gone now."""
        with self._lock:
            config = self._config_locked()
            current = {cid: {"p": c["p"], **({"state_topics": t} if (t := _owned_state_topics(cid, c))
                                             else {})}
                       for cid, c in config["cmps"].items()}
            gone = {cid: c for cid, c in self._announced.items() if cid not in current}
            self._announced = current
            if gone:
                tombstones = {**config, "cmps": {**config["cmps"], **{cid: {"p": c["p"]} for cid, c in gone.items()}}}
                self._publisher.publish_state(self.topics.ha_device_config, tombstones, retain=True)
                for c in gone.values():
                    for topic in c.get("state_topics") or ():
                        if isinstance(topic, str):
                            self._publisher.clear_state(topic)
                logger.info("Home Assistant: removed %d component(s): %s", len(gone), ", ".join(sorted(gone)))
            self._publisher.publish_state(self.topics.ha_device_config, config, retain=True)
            if self.state_path is not None:
                try:
                    _save_announced(self.state_path, current)
                except ConfigError as err:
                    logger.warning("Home Assistant: %s", err)

    def set_people(self, people: Mapping[str, str | None]) -> None:
        """Replace the enrolled people (id -> display name); removed people lose their entities."""
        new = {validate_id(p, "person_id"): n for p, n in people.items()}
        with self._lock:
            changed = new != self._people
            self._people = new
        if changed:
            self.announce()

    def add_person(self, person_id: str, name: str | None) -> None:
        with self._lock:
            people = {**self._people, validate_id(person_id, "person_id"): name}
        self.set_people(people)

    def remove_person(self, person_id: str) -> None:
        with self._lock:
            people = {p: n for p, n in self._people.items() if p != person_id}
        self.set_people(people)

    def set_cameras(self, cameras: CameraNames) -> None:
        new = _camera_names(cameras)
        with self._lock:
            changed = new != self._cameras
            self._cameras = new
        if changed:
            self.announce()

    def remove_device(self) -> None:
        """Delete the whole device from Home Assistant (empty retained config)."""
        with self._lock:
            self._announced = {}
            if self.state_path is not None:
                self.state_path.unlink(missing_ok=True)
        self._publisher.clear_state(self.topics.ha_device_config)

    def _on_ha_status(self, message: InboundMessage) -> None:
        if message.payload.strip().lower() == b"online":
            logger.info("Home Assistant came online; re-announcing discovery")
            self.announce()


__all__ = [
    "AVAILABILITY_TEMPLATE",
    "CAMERA_ERROR_VALUE_TEMPLATE",
    "CAMERA_PROBLEM_VALUE_TEMPLATE",
    "COMPONENT_RECOGNITION",
    "CONNECTED_TEMPLATE",
    "EVENT_TYPES",
    "EVENT_VALUE_TEMPLATE",
    "LAST_RECOGNIZED_VALUE_TEMPLATE",
    "ORIGIN_NAME",
    "PRESENCE_VALUE_TEMPLATE",
    "TRIGGER_RECOGNIZED",
    "TRIGGER_VALUE_TEMPLATE",
    "DiscoveryPublisher",
    "HaDeviceInfo",
    "HomeAssistantDiscovery",
    "camera_problem_component",
    "component_id_camera_problem",
    "component_id_last_recognized",
    "component_id_presence",
    "component_id_trigger",
    "discovery_payload",
]
