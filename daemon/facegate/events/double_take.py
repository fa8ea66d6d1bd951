"""Optional Double Take-compatible messages (``mqtt.double_take: true``), published by :class:`DoubleTakeSink`.

Double Take (jakowenko/double-take) publishes, for each processed Frigate event:

``<double_take_prefix>/matches/<name>``
    per recognised person (``<name>``: the name with whitespace turned into ``-`` and everything but
    ``[A-Za-z0-9-]`` removed, as Double Take does) ``{"id", "duration", "timestamp", "attempts",
    "camera", "zones", "match": {"name", "confidence", "match", "box": {"top", "left", "width",
    "height"}, "type", "duration", "detector", "filename"}}``;
``<double_take_prefix>/matches/unknown``
    for an unknown face: the same envelope with ``"unknown": {...}`` and ``"unknowns": [...]``;
``<double_take_prefix>/cameras/<camera>``
    the envelope with ``matches``, ``misses``, ``unknowns``, ``personCount`` and ``counts``.

Mapping: ``id`` is the Frigate-shaped id of :mod:`facegate.events.frigate` (so both outputs join),
``timestamp`` the decision time (ISO-8601 UTC), ``attempts`` the frames that voted, ``confidence`` the
event's 0..100 confidence, ``box`` the face box in frame pixels, ``detector`` ``"facegate"``, ``type``
``"latest"`` (Double Take's name for a live camera frame), ``duration`` 0 (the decision is made in the
stream, there is no separate recognition request to time) and ``filename`` null (facegate stores no
match images; snapshots are on ``camera/<camera>/snapshot``). Spoof decisions are not published.
Double Take's retained ``cameras/<camera>/person`` counter is not reproduced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from facegate.events.frigate import MessagePublisher, frigate_object_id
from facegate.events.payloads import dumps
from facegate.events.topics import validate_id, validate_prefix


def double_take_topic_name(name: str) -> str:
    """Double Take's topic level for a name: whitespace -> ``-``, then only ``[A-Za-z0-9-]`` kept."""
    return re.sub(r"[^a-z0-9-]", "", re.sub(r"\s+", "-", name), flags=re.IGNORECASE)


def _match(payload: Mapping[str, Any], name: str, matched: bool) -> dict[str, Any]:
    box = payload["box"]
    confidence = payload.get("confidence")
    return {
        "name": name,
        "confidence": round(float(confidence), 2) if confidence is not None else 0.0,
        "match": matched,
        "box": {"top": int(box["y"]), "left": int(box["x"]), "width": int(box["w"]), "height": int(box["h"])},
        "type": "latest",
        "duration": 0.0,
        "detector": "facegate",
        "filename": None,
    }


def _envelope(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": frigate_object_id(payload),
        "duration": 0.0,
        "timestamp": payload["time"],
        "attempts": int(payload.get("frames_voted") or 1),
        "camera": payload["camera"],
        "zones": [],
    }


def double_take_messages(payload: Mapping[str, Any], prefix: str = "double-take") -> list[tuple[str, dict[str, Any]]]:
    """``(topic, message)`` pairs Double Take would publish for this event payload (none for spoof)."""
    kind = payload.get("type")
    if kind not in ("recognized", "unknown"):
        return []
    base = _envelope(payload)
    camera = validate_id(payload["camera"], "camera")
    if kind == "recognized":
        name = str(payload.get("name") or payload.get("person_id"))
        level = double_take_topic_name(name) or str(payload.get("person_id"))
        match = _match(payload, name, True)
        matches, unknowns = [match], []
        first = (f"{prefix}/matches/{validate_id(level, 'Double Take name')}", {**base, "match": match})
    else:
        unknown = _match(payload, "unknown", False)
        matches, unknowns = [], [unknown]
        first = (f"{prefix}/matches/unknown", {**base, "unknown": unknown, "unknowns": unknowns})
    counts = {"person": 1, "match": len(matches), "miss": 0, "unknown": len(unknowns)}
    camera_message = {**base, "matches": matches, "misses": [], "unknowns": unknowns, "personCount": 1,
                      "counts": counts}
    return [first, (f"{prefix}/cameras/{camera}", camera_message)]


class DoubleTakeSink:
    """An :class:`~facegate.events.mqtt.EventSink` publishing Double Take's match and camera messages.

    QoS 1, never retained (Double Take does not retain them either); derived copies of the durable event.
    """

    def __init__(self, publisher: MessagePublisher, *, prefix: str = "double-take") -> None:
        self.prefix = validate_prefix(prefix, "double_take prefix")
        self._publisher = publisher

    def publish_event(self, payload: Mapping[str, Any]) -> None:
        for topic, message in double_take_messages(payload, self.prefix):
            self._publisher.publish_message(topic, dumps(message), qos=1, retain=False)


__all__ = ["DoubleTakeSink", "double_take_messages", "double_take_topic_name"]
