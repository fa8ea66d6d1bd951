"""Where the daemon sends each decided event, in this order: the MQTT spool (committed before anything
claims it was sent), the ``--stdout`` JSON lines (signed when signing is on), the retained state sinks
(last recognized, presence), the snapshot JPEG, the Frigate / Double Take compat sinks.

Split from :mod:`facegate.service`. Every sink receives the same typed payload
(:func:`facegate.events.payloads.event_payload`); stamping (age, late), routing (live or history) and
signing of the MQTT copy happen when the publisher actually sends it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2

from facegate.config.models import FacegateConfig
from facegate.events.mqtt import EventSink, JsonLinesSink, MqttPublisher
from facegate.events.payloads import event_payload
from facegate.events.state_sinks import LastRecognizedSink, PresenceSink
from facegate.events.topics import Topics
from facegate.service_build import compat_sinks
from facegate.types import FaceEvent, Frame


def snapshot_jpeg(frame: Frame, event: FaceEvent, *, margin: float = 0.25, quality: int = 85) -> bytes | None:
    """JPEG of the event's face box (grown by ``margin`` on each side) cut from the frame it was decided on."""
    b = event.box
    h, w = frame.image.shape[:2]
    mx, my = b.width * margin, b.height * margin
    x1, y1 = max(0, int(b.x1 - mx)), max(0, int(b.y1 - my))
    x2, y2 = min(w, int(b.x2 + mx)), min(h, int(b.y2 + my))
    if x2 <= x1 or y2 <= y1:
        return None
    ok, buf = cv2.imencode(".jpg", frame.image[y1:y2, x1:x2], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None


class EventOutput:
    """The sinks of one daemon; the MQTT ones exist only with a publisher."""

    def __init__(self, config: FacegateConfig, topics: Topics, publisher: MqttPublisher | None,
                 stdout: JsonLinesSink | None, *, presence_timeout_s: float) -> None:
        self.topics = topics
        self.publisher = publisher
        self.sink = stdout
        #: signs the stdout copy (``security.sign_events``); set once remote management is built
        self.sign: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        #: Frigate / Double Take copies of each event (mqtt.frigate_compat, mqtt.double_take)
        self.compat_sinks: list[EventSink] = []
        self.presence: PresenceSink | None = None
        #: retained state derived from events (presence, last recognized), fed every event payload
        self.event_sinks: list[EventSink] = []
        if publisher is not None:
            self.compat_sinks = compat_sinks(config, publisher)
            self.presence = PresenceSink(publisher, topics, timeout_s=presence_timeout_s,
                                         max_event_age_s=config.mqtt.max_event_age_s)
            self.event_sinks = [LastRecognizedSink(publisher, topics), self.presence]

    def emit(self, event: FaceEvent, frame: Frame | None, *, device_id: str, snapshots: bool) -> None:
        payload = event_payload(event, device_id=device_id)
        if self.publisher is not None:
            # committed to the spool before anything claims it was sent; stamped (age, late), routed
            # (live or history) and signed when it is actually published
            self.publisher.publish_event(payload)
        if self.sink is not None:
            signed = payload
            if self.sign is not None:
                signed = self.sign(payload)
            self.sink.publish_event(signed)
        if self.publisher is not None:
            for sink in self.event_sinks:
                sink.publish_event(payload)
            if snapshots:
                jpeg = event.snapshot_jpeg or (snapshot_jpeg(frame, event) if frame is not None else None)
                if jpeg is not None:
                    self.publisher.publish_message(self.topics.snapshot(event.camera), jpeg, qos=0)
            for sink in self.compat_sinks:
                sink.publish_event(payload)


__all__ = ["EventOutput", "snapshot_jpeg"]
