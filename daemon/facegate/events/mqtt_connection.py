"""The publisher's broker connection: the paho client, its callbacks and the connection state.

Split from :mod:`facegate.events.mqtt`. paho's network thread runs these callbacks, so they only flip
flags and hand work over: acknowledgements to :class:`~facegate.events.mqtt_delivery.SpoolDelivery`,
inbound messages to :class:`~facegate.events.mqtt_commands.CommandDispatcher`, and a wake-up to the
sender thread. On every connect, in this order: paho's copies of unacknowledged messages are dropped
(the sender re-sends from the spool), subscriptions are renewed, the ``before_online`` retained states
are published, then the status (``online`` first, before anything older is re-sent).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from facegate.events.availability import Availability
from facegate.events.mqtt_client import build_client
from facegate.events.mqtt_commands import CommandDispatcher
from facegate.events.mqtt_delivery import SpoolDelivery
from facegate.events.mqtt_settings import InboundMessage, MqttSettings
from facegate.events.mqtt_states import RetainedStates

#: log records keep the publisher's logger name (journal filters written before the split still match)
logger = logging.getLogger("facegate.events.mqtt")


class BrokerConnection:
    """Connection state (connected, generation, connects, last failure) and paho's callbacks."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        status_topic: str,
        *,
        delivery: SpoolDelivery,
        states: RetainedStates,
        commands: CommandDispatcher,
        availability: Availability,
        wake: threading.Event,
        stopping: threading.Event,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.status_topic = status_topic
        self._delivery = delivery
        self._states = states
        self._commands = commands
        self._availability = availability
        self._wake = wake
        self._stopping = stopping
        self.client: paho.Client | None = None
        self._lock = threading.Lock()  # guards the fields below; never held while calling paho
        self._connected = False
        self._gen = 0
        self._connects = 0
        self._last_failure: str | None = None

    def build(self) -> paho.Client:
        client = build_client(self.settings, self.client_id, self.status_topic)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client
        return client

    # --- state --------------------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        with self._lock:
            return self._connected

    @property
    def generation(self) -> tuple[bool, int]:
        """``(connected, connection number)``: the sender starts over when the number changes."""
        with self._lock:
            return self._connected, self._gen

    @property
    def reconnects(self) -> int:
        with self._lock:
            return max(0, self._connects - 1)

    @property
    def last_failure(self) -> str | None:
        with self._lock:
            return self._last_failure

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_connected:
                return True
            time.sleep(0.02)
        return self.is_connected

    def mark_disconnected(self) -> bool:
        """Clear the connected flags; whether it was connected."""
        with self._lock:
            was_connected = self._connected
            self._connected = False
        self._commands.disconnected()
        self._states.disconnected()
        return was_connected

    def subscribe_now(self, client: paho.Client, subscriptions: list[tuple[str, int]]) -> None:
        rc, _mid = client.subscribe(subscriptions)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            logger.warning("MQTT subscribe not sent (%s); retried after reconnect", paho.error_string(rc))

    # --- paho callbacks (network thread: enqueue and flip flags only) ----------------------------------
    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        if reason_code.is_failure:
            with self._lock:
                self._last_failure = str(reason_code)
            logger.error("MQTT broker refused the connection: %s", reason_code)
            return
        with self._lock:
            self._connected = True
            self._gen += 1
            self._connects += 1
            self._last_failure = None
            first = self._connects == 1
        subscriptions = self._commands.connected()
        early = self._states.connected()
        # paho's copies of unacknowledged messages hold the bytes of their first attempt (topic and
        # age included); the sender re-sends events from the spool and states from the snapshot.
        client.drop_out_messages()
        logger.info("MQTT %s to %s:%d", "connected" if first else "reconnected", self.settings.host, self.settings.port)
        # Subscribe before announcing "online": a controller that sends a command as soon as it sees
        # "online" must find the subscription in place (the broker handles SUBSCRIBE before PUBLISH).
        if subscriptions:
            self.subscribe_now(client, subscriptions)
        for message in early:
            sent = client.publish(message.topic, message.payload, qos=message.qos, retain=True)
            if sent.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                logger.warning("MQTT state on %s not sent before 'online': %s", message.topic,
                               paho.error_string(sent.rc))
        # Published here, before paho re-sends older unacknowledged messages, so "online" comes first.
        self._availability.announce(client)
        self._wake.set()

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        with self._lock:
            first_failure = self._last_failure is None
            self._last_failure = "connection failed (broker unreachable or TLS handshake failed)"
        if first_failure:
            logger.warning("MQTT broker %s:%d unreachable; events are spooled, retrying with backoff",
                           self.settings.host, self.settings.port)
        else:
            logger.debug("MQTT connection attempt to %s:%d failed", self.settings.host, self.settings.port)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        was_connected = self.mark_disconnected()
        if self._stopping.is_set():
            return
        if was_connected:
            logger.warning("MQTT disconnected (%s); reconnecting with backoff", reason_code)
        self._wake.set()

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Any
    ) -> None:
        self._delivery.ack(mid, bool(reason_code.is_failure), str(reason_code))
        self._wake.set()

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode], properties: Any
    ) -> None:
        for rc in reason_codes:
            if rc.is_failure:
                logger.error("MQTT subscription refused by the broker: %s", rc)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._commands.receive(
            InboundMessage(str(message.topic), bytes(message.payload), int(message.qos), bool(message.retain))
        )


__all__ = ["BrokerConnection"]
