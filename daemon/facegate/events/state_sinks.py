"""Retained per-person and per-camera state derived from events: presence and "last recognized".

Both implement :class:`~facegate.events.mqtt.EventSink` (``publish_event(payload)``, the JSON event
payload) so the service hands every event to a list of sinks instead of building state inline.

Presence (``<base>/presence/<person_id>``, retained):

* **reset before ``online``**: at start everyone enrolled is published absent, and presence states go
  out before ``online`` on every connect (``before_online``), so Home Assistant never sees an old
  ``present: true`` on an available entity (no ``to: on`` blip at start).
* **refreshed by sightings**: a face whose track was recognised keeps its person present, also while
  the cooldown suppresses new events, so a person standing at the door does not flap.
* **absent after ``timeout_s``** without a sighting; the absent payload keeps ``last_seen`` and
  ``camera``.
* **only live**: a sighting made while the broker is unreachable turns presence on after the
  reconnect only if it is younger than ``max_event_age_s`` (the rule of
  :mod:`facegate.events.freshness`).
* **cleared on a clean stop**: everyone present is published absent before ``stopped``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from facegate.events.freshness import decision_time
from facegate.events.payloads import LastRecognizedPayload, PayloadLike, PresencePayload, iso_utc
from facegate.events.topics import Topics

logger = logging.getLogger(__name__)


class StatePublisher(Protocol):
    """The subset of :class:`~facegate.events.mqtt.MqttPublisher` the state sinks need."""

    @property
    def is_connected(self) -> bool: ...

    def publish_state(
        self, topic: str, payload: PayloadLike, *, retain: bool = True, qos: int = 1, before_online: bool = False
    ) -> None: ...

    def add_on_connect(self, hook: Callable[[], None]) -> None: ...


@dataclass
class _Presence:
    name: str | None
    camera: str | None = None
    last_seen_wall: float | None = None
    last_seen_mono: float = -1e18
    event_id: str | None = None
    present: bool = False
    published_present: bool = False


class PresenceSink:
    """Retained presence per enrolled person (see the module docstring). Thread-safe."""

    def __init__(
        self,
        publisher: StatePublisher,
        topics: Topics,
        *,
        timeout_s: float = 30.0,
        max_event_age_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publisher = publisher
        self.topics = topics
        self.timeout_s = timeout_s
        self.max_event_age_s = max_event_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._people: dict[str, _Presence] = {}
        publisher.add_on_connect(self._on_connect)

    # --- lifecycle ------------------------------------------------------------------------------
    def reset(self, people: Mapping[str, str | None]) -> None:
        """Everyone in ``people`` (id -> name) absent; people no longer enrolled are forgotten."""
        with self._lock:
            self._people = {p: _Presence(n) for p, n in people.items()}
            for person_id, state in self._people.items():
                self._publish(person_id, state)

    def set_people(self, people: Mapping[str, str | None]) -> None:
        """The gallery changed: new people start absent, removed ones are forgotten (discovery clears
        their retained state), renamed ones keep their state under the new name."""
        with self._lock:
            old = self._people
            self._people = {}
            for person_id, name in people.items():
                state = old.get(person_id)
                if state is None:
                    state = _Presence(name)
                    self._people[person_id] = state
                    self._publish(person_id, state)
                else:
                    renamed = state.name != name
                    state.name = name
                    self._people[person_id] = state
                    if renamed:
                        self._publish(person_id, state)

    def clear(self) -> None:
        """Clean stop: everyone present becomes absent (``last_seen`` kept)."""
        with self._lock:
            for person_id, state in self._people.items():
                if state.present or state.published_present:
                    state.present = False
                    self._publish(person_id, state)

    # --- input ----------------------------------------------------------------------------------
    def publish_event(self, payload: Mapping[str, Any]) -> None:
        """EventSink: a ``recognized`` event is a sighting that also records its ``event_id``."""
        person_id = payload.get("person_id")
        if payload.get("type") != "recognized" or not isinstance(person_id, str):
            return
        camera = payload.get("camera")
        self.sighting(person_id, camera if isinstance(camera, str) else None,
                      wall=decision_time(payload, time.time()), event_id=payload.get("event_id"),
                      name=payload.get("name"))

    def sighting(
        self, person_id: str, camera: str | None, *, wall: float | None = None, event_id: object = None,
        name: object = None,
    ) -> None:
        """``person_id`` was seen (a recognised track on a frame, or its event)."""
        with self._lock:
            state = self._people.get(person_id)
            if state is None:
                if not isinstance(name, str) and name is not None:
                    return
                state = self._people[person_id] = _Presence(name if isinstance(name, str) else None)
            was_present = state.present
            state.present = True
            state.camera = camera or state.camera
            state.last_seen_wall = time.time() if wall is None else wall
            state.last_seen_mono = self._clock()
            if isinstance(event_id, str):
                state.event_id = event_id
            # transitions and events are published; plain sightings only extend the timeout
            if (not was_present or isinstance(event_id, str)) and self._publisher.is_connected:
                self._publish(person_id, state)

    def expire(self) -> None:
        """Publish absent for everyone not seen for ``timeout_s``."""
        now = self._clock()
        with self._lock:
            for person_id, state in self._people.items():
                if state.present and now - state.last_seen_mono > self.timeout_s:
                    state.present = False
                    self._publish(person_id, state)

    def present(self) -> set[str]:
        with self._lock:
            return {p for p, s in self._people.items() if s.present}

    # --- output ---------------------------------------------------------------------------------
    def _on_connect(self) -> None:
        # Sightings made while disconnected: present now only if they are still live.
        now = self._clock()
        with self._lock:
            for person_id, state in self._people.items():
                if state.present and not state.published_present:
                    if now - state.last_seen_mono <= self.max_event_age_s:
                        self._publish(person_id, state)
                    else:
                        logger.info("presence of %s not published: last seen %.1f s ago, before the reconnect",
                                    person_id, now - state.last_seen_mono)

    def _publish(self, person_id: str, state: _Presence) -> None:
        payload = PresencePayload(
            person_id=person_id, name=state.name, present=state.present, camera=state.camera,
            last_seen=None if state.last_seen_wall is None else iso_utc(state.last_seen_wall),
            event_id=state.event_id,
        ).model_dump(mode="json")
        self._publisher.publish_state(self.topics.presence(person_id), payload, before_online=True)
        state.published_present = state.present


class LastRecognizedSink:
    """Retained ``<base>/camera/<camera>/last_recognized`` from ``recognized`` events (EventSink)."""

    def __init__(self, publisher: StatePublisher, topics: Topics) -> None:
        self._publisher = publisher
        self.topics = topics

    def publish_event(self, payload: Mapping[str, Any]) -> None:
        camera = payload.get("camera")
        if payload.get("type") != "recognized" or not isinstance(camera, str):
            return
        # the values are the event payload's, so rounding is the event's (confidence: 1 decimal)
        state = LastRecognizedPayload(
            camera=camera, person_id=payload.get("person_id"), name=payload.get("name"), time=payload.get("time"),
            event_id=payload.get("event_id"), confidence=payload.get("confidence"),
        )
        self._publisher.publish_state(self.topics.last_recognized(camera), state.model_dump(mode="json"))


__all__ = ["LastRecognizedSink", "PresenceSink", "StatePublisher"]
