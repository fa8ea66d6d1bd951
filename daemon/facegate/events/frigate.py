"""Optional Frigate-compatible messages (``mqtt.frigate_compat: true``), published by :class:`FrigateSink`.

Two of Frigate's own conventions, so automations written for Frigate work unchanged:

``<frigate_prefix>/tracked_object_update``
    Frigate (0.16+) publishes, after each face recognition attempt on a tracked person, a non-retained
    JSON message ``{"type": "face", "name": <str|null>, "score": <0..1>, "id": <tracked object id>,
    "camera": <camera>, "timestamp": <UNIX seconds>}`` (``name`` is null when nobody matched);
    automations test ``trigger.payload_json['type'] == 'face'``.

``<frigate_prefix>/events``
    Frigate's tracked-object messages ``{"type": "new"|"update"|"end", "before": {...}, "after": {...}}``
    carry a recognised name as ``sub_label``: ``[name, score]`` (Frigate 0.14+; null before a name is
    known). A recognition is published as an ``update`` whose ``after.sub_label`` is the name, which
    is what Frigate sends when a face recogniser sets the sub label of a running object; automations
    read ``trigger.payload_json['after']['sub_label'][0]``.

Spoof decisions have no Frigate equivalent and are not emitted. Frigate's ids are
``<start timestamp>-<6 random characters>``; ours keep that shape with a suffix derived from the event
id, so the same event always maps to the same Frigate id (the Double Take sink uses the same id).
When a real Frigate shares the broker, give facegate its own ``mqtt.frigate_prefix`` so the two never
mix in one topic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from facegate.events.payloads import PayloadLike, dumps, event_payload
from facegate.events.topics import Topics, validate_prefix
from facegate.types import FaceEvent


class MessagePublisher(Protocol):
    def publish_message(self, topic: str, payload: PayloadLike, *, qos: int = 0, retain: bool = False) -> bool: ...


def payload_wall(payload: Mapping[str, Any]) -> float:
    """UNIX time of an event payload (its ``time`` is ISO-8601 UTC with a ``Z``)."""
    return datetime.fromisoformat(str(payload["time"]).replace("Z", "+00:00")).timestamp()


def frigate_object_id(payload: Mapping[str, Any]) -> str:
    """A Frigate-shaped tracked object id, stable for one event."""
    suffix = hashlib.sha1(str(payload["event_id"]).encode("utf-8"), usedforsecurity=False).hexdigest()[:6]
    return f"{payload_wall(payload):.6f}-{suffix}"


def face_score(payload: Mapping[str, Any]) -> float:
    """The event's confidence 0..100 as Frigate's 0..1 score (0 for unknown faces)."""
    confidence = payload.get("confidence")
    if payload.get("type") != "recognized" or confidence is None:
        return 0.0
    return round(min(100.0, max(0.0, float(confidence))) / 100.0, 4)


def face_message(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``tracked_object_update`` face message for an event payload, or None for spoof events."""
    if payload.get("type") == "spoof":
        return None
    recognized = payload.get("type") == "recognized"
    return {
        "type": "face",
        "name": (payload.get("name") or payload.get("person_id")) if recognized else None,
        "score": face_score(payload),
        "id": frigate_object_id(payload),
        "camera": payload["camera"],
        "timestamp": payload_wall(payload),
    }


def frigate_face_update(event: FaceEvent) -> dict[str, Any] | None:
    """:func:`face_message` for a :class:`FaceEvent`."""
    return face_message(event_payload(event))


def _tracked_object(payload: Mapping[str, Any], sub_label: list[Any] | None) -> dict[str, Any]:
    """One side (``before``/``after``) of a Frigate ``events`` message, with Frigate's documented keys."""
    box = payload["box"]
    x1, y1, w, h = int(box["x"]), int(box["y"]), int(box["w"]), int(box["h"])
    wall = payload_wall(payload)
    score = face_score(payload)
    return {
        "id": frigate_object_id(payload),
        "camera": payload["camera"],
        "frame_time": wall,
        "snapshot_time": wall,
        "label": "person",
        "sub_label": sub_label,
        "top_score": score,
        "false_positive": False,
        "start_time": wall,
        "end_time": None,
        "score": score,
        "box": [x1, y1, x1 + w, y1 + h],
        "area": w * h,
        "ratio": round(w / h, 6) if h else 0.0,
        "region": [x1, y1, x1 + w, y1 + h],
        "current_zones": [],
        "entered_zones": [],
        "thumbnail": None,
        "has_snapshot": False,
        "has_clip": False,
        "active": True,
        "stationary": False,
        "motionless_count": 0,
        "position_changes": 0,
        "attributes": {"face": score},
        "current_attributes": [],
    }


def sub_label_message(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``events`` update setting the recognised person as ``sub_label``; None unless recognized."""
    if payload.get("type") != "recognized":
        return None
    name = payload.get("name") or payload.get("person_id")
    return {
        "type": "update",
        "before": _tracked_object(payload, None),
        "after": _tracked_object(payload, [name, face_score(payload)]),
    }


class FrigateSink:
    """An :class:`~facegate.events.mqtt.EventSink` mirroring facegate events in Frigate's shapes.

    Messages are QoS 1, never retained; they are derived copies of the durable event (which goes
    through the spool), so a message dropped while the broker is unreachable is not re-sent.
    """

    def __init__(self, publisher: MessagePublisher, *, prefix: str = "frigate") -> None:
        self.prefix = validate_prefix(prefix, "frigate prefix")
        self.update_topic = Topics.frigate_tracked_object_update(prefix)
        self.events_topic = f"{self.prefix}/events"
        self._publisher = publisher

    def publish_event(self, payload: Mapping[str, Any]) -> None:
        face = face_message(payload)
        if face is None:
            return
        self._publisher.publish_message(self.update_topic, dumps(face), qos=1, retain=False)
        sub_label = sub_label_message(payload)
        if sub_label is not None:
            self._publisher.publish_message(self.events_topic, dumps(sub_label), qos=1, retain=False)


__all__ = [
    "FrigateSink",
    "MessagePublisher",
    "face_message",
    "face_score",
    "frigate_face_update",
    "frigate_object_id",
    "payload_wall",
    "sub_label_message",
]
