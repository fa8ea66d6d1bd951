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

The payload is built in :mod:`facegate.events.ha_discovery` and the announced components are stored by
:mod:`facegate.events.ha_announced`; their names are re-exported here. This module keeps
:class:`HomeAssistantDiscovery`, which publishes, tombstones and re-announces.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from facegate.errors import ConfigError
from facegate.events.ha_announced import load_announced, owned_state_topics, save_announced
from facegate.events.ha_discovery import (
    AVAILABILITY_TEMPLATE,
    CAMERA_ERROR_VALUE_TEMPLATE,
    CAMERA_PROBLEM_VALUE_TEMPLATE,
    COMPONENT_RECOGNITION,
    CONNECTED_TEMPLATE,
    EVENT_TYPES,
    EVENT_VALUE_TEMPLATE,
    LAST_RECOGNIZED_VALUE_TEMPLATE,
    ORIGIN_NAME,
    PRESENCE_VALUE_TEMPLATE,
    TRIGGER_RECOGNIZED,
    TRIGGER_VALUE_TEMPLATE,
    CameraNames,
    HaDeviceInfo,
    camera_names,
    camera_problem_component,
    component_id_camera_problem,
    component_id_last_recognized,
    component_id_presence,
    component_id_trigger,
    discovery_payload,
)
from facegate.events.mqtt_settings import InboundMessage, MessageHandler
from facegate.events.payloads import PayloadLike
from facegate.events.topics import Topics, validate_id

logger = logging.getLogger(__name__)


class DiscoveryPublisher(Protocol):
    """The subset of :class:`~facegate.events.mqtt.MqttPublisher` discovery needs."""

    def publish_state(self, topic: str, payload: PayloadLike, *, retain: bool = True, qos: int = 1) -> None: ...

    def clear_state(self, topic: str) -> None: ...

    def subscribe(self, topic_filter: str, handler: MessageHandler, *, qos: int = 1) -> None: ...


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
        self._cameras: dict[str, str] = camera_names(cameras)
        self._people: dict[str, str | None] = {validate_id(p, "person_id"): n for p, n in (people or {}).items()}
        self._announced = load_announced(state_path)
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
            current = {cid: {"p": c["p"], **({"state_topics": t} if (t := owned_state_topics(cid, c))
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
                    save_announced(self.state_path, current)
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
        new = camera_names(cameras)
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
