"""The event sink protocol and the JSON-lines sink (``facegate run --stdout``).

Split from :mod:`facegate.events.mqtt`: a sink is anything events can be published to (the MQTT
publisher, a JSON-lines stream, the presence / Frigate / Double Take sinks), not an MQTT concept.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

from pydantic import BaseModel

from facegate.events.payloads import dumps, event_payload
from facegate.types import FaceEvent


class EventSink(Protocol):
    """Something events can be published to (the MQTT publisher, a JSON-lines stream, ...)."""

    def publish_event(self, payload: Mapping[str, Any]) -> None: ...


class JsonLinesSink:
    """Writes each event as one JSON line to a text stream (``facegate run --stdout``). Thread-safe."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def publish_event(self, payload: Mapping[str, Any] | BaseModel) -> None:
        line = dumps(payload).decode("utf-8")
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def publish_face_event(self, event: FaceEvent, *, device_id: str | None = None) -> None:
        self.publish_event(event_payload(event, device_id=device_id))


__all__ = ["EventSink", "JsonLinesSink"]
