"""The device's retained availability on ``<base>/status``: ``online`` (or what the owner set, e.g.
``degraded`` while no camera delivers frames) announced on every connect, ``offline`` by the broker's
last will, ``stopped`` on a clean stop.

Split from :mod:`facegate.events.mqtt`. The status goes straight to paho, never through the state
queue, so it is not queued behind state; one lock serialises "read the status, publish it" so a change
racing a connect cannot be overtaken by the connect's older value.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from facegate.events.payloads import STATUS_ONLINE

#: log records keep the publisher's logger name (journal filters written before the split still match)
logger = logging.getLogger("facegate.events.mqtt")


class Availability:
    """The status announced now and after every reconnect."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._status: str = STATUS_ONLINE
        self._value_lock = threading.Lock()
        self._serial = threading.Lock()

    @property
    def status(self) -> str:
        with self._value_lock:
            return self._status

    def announce(self, client: paho.Client) -> None:
        """Publish the current status (on connect, before paho re-sends older messages)."""
        with self._serial:
            self._send(client, self.status)

    def set(self, status: str, client: paho.Client | None, is_connected: Callable[[], bool]) -> None:
        """Change the status; published now when connected (read inside the serialising lock)."""
        with self._serial:
            with self._value_lock:
                changed = status != self._status
                self._status = status
            if changed and client is not None and is_connected():
                self._send(client, status)

    def _send(self, client: paho.Client, status: str) -> None:
        info = client.publish(self.topic, status, qos=1, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            logger.warning("MQTT %r status not sent: %s", status, paho.error_string(info.rc))


__all__ = ["Availability"]
