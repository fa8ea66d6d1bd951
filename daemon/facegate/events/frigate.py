"""Optional Frigate-compatible face messages on ``<frigate_prefix>/tracked_object_update``.

Frigate (0.16+) publishes, after each face recognition attempt on a tracked person, a non-retained
JSON message ``{"type": "face", "name": <str|null>, "score": <0..1>, "id": <tracked object id>,
"camera": <camera>, "timestamp": <UNIX seconds>}`` (``name`` is null when nobody matched). Emitting the
same shape lets automations written for Frigate (``trigger.payload_json['type'] == 'face'``) work
unchanged. Off by default; spoof decisions have no Frigate equivalent and are not emitted.

Frigate's ids are ``<start timestamp>-<6 random characters>``; ours keep that shape with a suffix
derived from the event id, so the same event always maps to the same Frigate id.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from facegate.events.payloads import PayloadLike, dumps
from facegate.events.topics import Topics
from facegate.types import FaceEvent


class MessagePublisher(Protocol):
    def publish_message(self, topic: str, payload: PayloadLike, *, qos: int = 0, retain: bool = False) -> bool: ...


def frigate_object_id(event: FaceEvent) -> str:
    suffix = hashlib.sha1(event.event_id.encode("utf-8"), usedforsecurity=False).hexdigest()[:6]
    return f"{event.wall:.6f}-{suffix}"


def frigate_face_update(event: FaceEvent) -> dict[str, Any] | None:
    """The Frigate ``tracked_object_update`` face message for ``event``, or None for spoof events."""
    if event.type == "spoof":
        return None
    recognized = event.type == "recognized"
    score = 0.0
    if recognized and event.confidence is not None:
        score = round(min(100.0, max(0.0, event.confidence)) / 100.0, 4)
    return {
        "type": "face",
        "name": (event.name or event.person_id) if recognized else None,
        "score": score,
        "id": frigate_object_id(event),
        "camera": event.camera,
        "timestamp": event.wall,
    }


class FrigateFaceBridge:
    """Mirrors facegate events as Frigate face updates when ``enabled`` (a config switch)."""

    def __init__(self, publisher: MessagePublisher, *, enabled: bool = False, prefix: str = "frigate") -> None:
        self.enabled = enabled
        self.topic = Topics.frigate_tracked_object_update(prefix)
        self._publisher = publisher

    def on_event(self, event: FaceEvent) -> bool:
        """Publish the Frigate message for ``event``; False when disabled, not applicable or offline."""
        if not self.enabled:
            return False
        message = frigate_face_update(event)
        if message is None:
            return False
        return self._publisher.publish_message(self.topic, dumps(message), qos=1, retain=False)


__all__ = ["FrigateFaceBridge", "MessagePublisher", "frigate_face_update", "frigate_object_id"]
