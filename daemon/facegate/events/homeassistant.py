"""Home Assistant MQTT *device* discovery (one retained config message for the whole device).

Topic: ``<discovery_prefix>/device/facegate_<device_id>/config``. Payload (Home Assistant's "device
discovery payload", https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload)::

    {"dev": {...}, "o": {"name": "facegate", "sw": ..., "url": ...},
     "availability": [...], "availability_mode": "latest", "qos": 1,
     "cmps": {"recognition": {"p": "event", ...},
              "presence_<person_id>": {"p": "binary_sensor", ...},
              "last_recognized_<camera>": {"p": "sensor", ...},
              "camera_problem_<camera>": {"p": "binary_sensor", "device_class": "problem", ...}}}

* ``dev`` and ``o`` are mandatory at the root; every component has a platform ``p`` and a
  ``unique_id`` (``facegate_<device_id>_<component id>``), so entities survive renames.
* The ``event`` entity follows the non-retained event topic (Home Assistant discards replayed retained
  messages for events anyway): a replayed "recognized" can never fire an automation twice.
* Availability is the device's status topic. Its payloads are ``online``, ``offline`` (last will) and
  ``stopped`` (clean exit); Home Assistant compares the rendered ``value_template`` with exactly one
  ``payload_not_available``, so the template folds every value but ``online`` into ``offline``.
* Each camera has a ``problem`` binary_sensor (on while the camera is stalled or down, the last error
  as an attribute) bound to the camera's retained health topic. The daemon says ``degraded`` on the
  status topic while no camera delivers frames, which makes the device's other entities unavailable; the
  problem sensors have their own availability that counts ``degraded`` as available, so they show the
  problem instead of disappearing with it.
* Removing a person publishes the config once with that component reduced to ``{"p": platform}``
  (Home Assistant's documented way to delete one component of a device) and then the config without
  it; the person's retained presence state is cleared too.
* Discovery is retained and re-announced whenever Home Assistant publishes ``online`` on
  ``<discovery_prefix>/status`` (its birth message), and republished after every reconnect.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from facegate import __version__
from facegate.events.mqtt import InboundMessage, MessageHandler
from facegate.events.payloads import STATUS_OFFLINE, STATUS_ONLINE, PayloadLike
from facegate.events.topics import Topics, validate_id

logger = logging.getLogger(__name__)

ORIGIN_NAME = "facegate"
ORIGIN_URL = "https://example.invalid/facegate"
EVENT_TYPES: tuple[str, ...] = ("recognized", "unknown", "spoof")

#: Maps every status value onto the two payloads Home Assistant compares with.
AVAILABILITY_TEMPLATE = "{{ 'online' if value == 'online' else 'offline' }}"
#: Renders our event payload into the ``{"event_type": ..., <attributes>}`` JSON the event entity wants.
EVENT_VALUE_TEMPLATE = (
    "{{ {'event_type': value_json.type, 'event_id': value_json.event_id, 'camera': value_json.camera,"
    " 'person_id': value_json.person_id, 'name': value_json.name, 'confidence': value_json.confidence,"
    " 'time': value_json.time} | tojson }}"
)
#: Availability of the camera problem sensors: the daemon is connected (``online`` or ``degraded``).
CONNECTED_TEMPLATE = "{{ 'online' if value in ('online', 'degraded') else 'offline' }}"
CAMERA_PROBLEM_VALUE_TEMPLATE = "{{ 'ON' if value_json.problem else 'OFF' }}"
PRESENCE_VALUE_TEMPLATE = "{{ 'ON' if value_json.present else 'OFF' }}"
LAST_RECOGNIZED_VALUE_TEMPLATE = "{{ value_json.name if value_json.name else (value_json.person_id or 'nobody') }}"


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


def component_id_last_recognized(camera: str) -> str:
    return f"last_recognized_{validate_id(camera, 'camera')}"


def component_id_camera_problem(camera: str) -> str:
    return f"camera_problem_{validate_id(camera, 'camera')}"


def camera_problem_component(topics: Topics, camera: str) -> dict[str, Any]:
    """The per-camera problem binary_sensor (see the module docstring for its availability)."""
    cid = component_id_camera_problem(camera)
    return {
        "p": "binary_sensor",
        "name": f"Camera {camera}",
        "unique_id": f"{topics.ha_node_id}_{cid}",
        "device_class": "problem",
        "entity_category": "diagnostic",
        "state_topic": topics.camera_health(camera),
        "value_template": CAMERA_PROBLEM_VALUE_TEMPLATE,
        "payload_on": "ON",
        "payload_off": "OFF",
        "json_attributes_topic": topics.camera_health(camera),
        "availability": [
            {
                "topic": topics.status,
                "payload_available": STATUS_ONLINE,
                "payload_not_available": STATUS_OFFLINE,
                "value_template": CONNECTED_TEMPLATE,
            }
        ],
    }


COMPONENT_RECOGNITION = "recognition"


def discovery_payload(
    topics: Topics,
    device: HaDeviceInfo,
    *,
    cameras: Sequence[str],
    people: Mapping[str, str | None],
    removed_people: Iterable[str] = (),
    removed_cameras: Iterable[str] = (),
) -> dict[str, Any]:
    """The device discovery config. ``people`` maps person id -> display name (None: use the id).

    ``removed_*`` ids are emitted as ``{"p": platform}`` entries, which tells Home Assistant to delete
    those components; publish once with them, then again without.
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
        }
    }
    for person_id, name in sorted(people.items()):
        cid = component_id_presence(person_id)
        components[cid] = {
            "p": "binary_sensor",
            "name": name or person_id,
            "unique_id": f"{node}_{cid}",
            "device_class": "presence",
            "state_topic": topics.presence(person_id),
            "value_template": PRESENCE_VALUE_TEMPLATE,
            "payload_on": "ON",
            "payload_off": "OFF",
            "json_attributes_topic": topics.presence(person_id),
        }
    for camera in sorted(cameras):
        cid = component_id_last_recognized(camera)
        components[cid] = {
            "p": "sensor",
            "name": f"Last recognized {camera}",
            "unique_id": f"{node}_{cid}",
            "state_topic": topics.last_recognized(camera),
            "value_template": LAST_RECOGNIZED_VALUE_TEMPLATE,
            "json_attributes_topic": topics.last_recognized(camera),
            "icon": "mdi:account-check",
        }
        components[component_id_camera_problem(camera)] = camera_problem_component(topics, camera)
    for person_id in sorted(set(removed_people) - set(people)):
        components[component_id_presence(person_id)] = {"p": "binary_sensor"}
    for camera in sorted(set(removed_cameras) - set(cameras)):
        components[component_id_last_recognized(camera)] = {"p": "sensor"}
        components[component_id_camera_problem(camera)] = {"p": "binary_sensor"}
    return {
        "dev": dev,
        "o": {"name": ORIGIN_NAME, "sw": __version__, "url": ORIGIN_URL},
        "availability": [
            {
                "topic": topics.status,
                "payload_available": STATUS_ONLINE,
                "payload_not_available": STATUS_OFFLINE,
                "value_template": AVAILABILITY_TEMPLATE,
            }
        ],
        "availability_mode": "latest",
        "qos": 1,
        "cmps": components,
    }


class HomeAssistantDiscovery:
    """Keeps Home Assistant's view of this device (people, cameras) in step with the daemon. Thread-safe."""

    def __init__(
        self,
        publisher: DiscoveryPublisher,
        topics: Topics,
        device: HaDeviceInfo,
        *,
        cameras: Sequence[str] = (),
        people: Mapping[str, str | None] | None = None,
    ) -> None:
        self._publisher = publisher
        self.topics = topics
        self.device = device
        self._lock = threading.Lock()
        self._cameras: tuple[str, ...] = tuple(validate_id(c, "camera") for c in cameras)
        self._people: dict[str, str | None] = {validate_id(p, "person_id"): n for p, n in (people or {}).items()}
        self._attached = False

    def attach(self) -> None:
        """Listen for Home Assistant's birth message and announce the device (retained)."""
        if not self._attached:
            self._publisher.subscribe(self.topics.ha_status, self._on_ha_status)
            self._attached = True
        self.announce()

    def config(self) -> dict[str, Any]:
        with self._lock:
            return discovery_payload(self.topics, self.device, cameras=self._cameras, people=self._people)

    def announce(self) -> None:
        self._publisher.publish_state(self.topics.ha_device_config, self.config(), retain=True)

    def set_people(self, people: Mapping[str, str | None]) -> None:
        """Replace the enrolled people (id -> display name); removed people lose their entities."""
        new = {validate_id(p, "person_id"): n for p, n in people.items()}
        with self._lock:
            removed = sorted(set(self._people) - set(new))
            changed = new != self._people
            self._people = new
            cameras = self._cameras
        if removed:
            tombstones = discovery_payload(
                self.topics, self.device, cameras=cameras, people=new, removed_people=removed
            )
            self._publisher.publish_state(self.topics.ha_device_config, tombstones, retain=True)
            for person_id in removed:
                self._publisher.clear_state(self.topics.presence(person_id))
            logger.info("Home Assistant: removed presence entities of %d person(s)", len(removed))
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

    def set_cameras(self, cameras: Sequence[str]) -> None:
        new = tuple(validate_id(c, "camera") for c in cameras)
        with self._lock:
            removed = sorted(set(self._cameras) - set(new))
            changed = new != self._cameras
            self._cameras = new
            people = dict(self._people)
        if removed:
            tombstones = discovery_payload(
                self.topics, self.device, cameras=new, people=people, removed_cameras=removed
            )
            self._publisher.publish_state(self.topics.ha_device_config, tombstones, retain=True)
            for camera in removed:
                self._publisher.clear_state(self.topics.last_recognized(camera))
                self._publisher.clear_state(self.topics.camera_health(camera))
                self._publisher.clear_state(self.topics.camera_availability(camera))
        if changed:
            self.announce()

    def remove_device(self) -> None:
        """Delete the whole device from Home Assistant (empty retained config)."""
        self._publisher.clear_state(self.topics.ha_device_config)

    def _on_ha_status(self, message: InboundMessage) -> None:
        if message.payload.strip().lower() == b"online":
            logger.info("Home Assistant came online; re-announcing discovery")
            self.announce()


__all__ = [
    "AVAILABILITY_TEMPLATE",
    "CAMERA_PROBLEM_VALUE_TEMPLATE",
    "COMPONENT_RECOGNITION",
    "CONNECTED_TEMPLATE",
    "EVENT_TYPES",
    "EVENT_VALUE_TEMPLATE",
    "LAST_RECOGNIZED_VALUE_TEMPLATE",
    "ORIGIN_NAME",
    "PRESENCE_VALUE_TEMPLATE",
    "DiscoveryPublisher",
    "HaDeviceInfo",
    "HomeAssistantDiscovery",
    "camera_problem_component",
    "component_id_camera_problem",
    "component_id_last_recognized",
    "component_id_presence",
    "discovery_payload",
]
