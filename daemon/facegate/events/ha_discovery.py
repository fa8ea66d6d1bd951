"""The Home Assistant device discovery payload: the entity components (event, device triggers, presence,
last recognized, snapshots, camera problem and diagnostics), their ids, templates and availability.

Pure functions of the topics, the device info, the people and the cameras; what the components are and
why (availability, tombstones) is described in :mod:`facegate.events.homeassistant`, which publishes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from facegate import __version__
from facegate.events.payloads import STATUS_OFFLINE, STATUS_ONLINE
from facegate.events.topics import Topics, validate_id

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

def camera_names(cameras: CameraNames) -> dict[str, str]:
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
    names = camera_names(cameras)
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
    "CameraNames",
    "HaDeviceInfo",
    "camera_names",
    "camera_problem_component",
    "component_id_camera_problem",
    "component_id_last_recognized",
    "component_id_presence",
    "component_id_trigger",
    "discovery_payload",
]
