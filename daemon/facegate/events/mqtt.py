"""The MQTT publisher (paho-mqtt 2, ``CallbackAPIVersion.VERSION2``) and a JSON-lines sink.

Delivery guarantee for events: **at-least-once, in order, with a stable ``event_id``**.
Every event is first committed to the on-disk :class:`~facegate.events.spool.Spool`, then handed to
paho at QoS 1, and deleted from the spool only when the broker's PUBACK arrives. A broker outage
therefore loses nothing (paho re-sends unacknowledged messages after reconnecting, and the spool keeps
the rest), and neither does a daemon crash or restart (the next process re-sends whatever is still
spooled). The price is possible duplicates: a message whose PUBACK was lost is sent again with the
same ``event_id``; consumers de-duplicate on it.

Ordering: at most ``max_inflight`` events are unacknowledged at once, handed to paho in spool order
on one connection. On a reconnect paho's own copies of unacknowledged messages are dropped (they carry
the bytes of their first attempt) and the spool is sent again from its oldest row, so a re-sent message
can never overtake or be overtaken by a newer one.

Freshness (:mod:`facegate.events.freshness`): every event is stamped when it is handed to the broker
connection with its ``age_s``, ``replayed_from_spool`` and ``late``; only fresh first attempts go to
the live topic ``<base>/event``, late ones and every re-send go to ``<base>/history``. An unlock
automation listening to the live topic therefore only ever sees live decisions, each once.

Availability: the broker's last will publishes retained ``offline`` on the status topic; on every
connect the publisher first publishes the retained states marked ``before_online`` (presence: a
consumer never sees a stale ``present`` from an earlier run once it sees ``online``), then the retained
current status (``online`` unless the owner set another with :meth:`MqttPublisher.set_status`: the
daemon says ``degraded`` while no camera delivers frames); a clean :meth:`MqttPublisher.stop`
publishes retained ``stopped`` before disconnecting (so the will is not sent).

Retained state (presence, last recognized, config state, Home Assistant discovery) published with
:meth:`MqttPublisher.publish_state` is remembered and republished after every reconnect, then the
registered on-connect hooks run; each retained topic goes out once per connect. Events are never
retained.

Threads: paho's network thread (callbacks only enqueue or flip flags), one sender thread that owns
all delivery bookkeeping, and one dispatcher thread that runs command handlers so a slow handler
(e.g. enrolment) never stalls keep-alives and acknowledgements.

The publisher is the facade and owns the threads; the parts live beside it:
:mod:`~facegate.events.mqtt_settings` (settings and values), :mod:`~facegate.events.mqtt_client` (the
paho client, TLS), :mod:`~facegate.events.mqtt_connection` (paho's callbacks, connection state),
:mod:`~facegate.events.mqtt_delivery` (the sender's spool bookkeeping), :mod:`~facegate.events.mqtt_states`
(retained state), :mod:`~facegate.events.availability` (status), :mod:`~facegate.events.mqtt_commands`
(subscriptions and the dispatcher), :mod:`~facegate.events.sinks` (``EventSink``, ``JsonLinesSink``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from pydantic import BaseModel

from facegate.errors import ConfigError, MqttError
from facegate.events.availability import Availability
from facegate.events.freshness import EventFreshness, EventSigner
from facegate.events.mqtt_commands import CommandDispatcher
from facegate.events.mqtt_connection import BrokerConnection
from facegate.events.mqtt_delivery import SpoolDelivery
from facegate.events.mqtt_settings import (
    RECONNECT_FIELDS,
    ConnectHook,
    InboundMessage,
    MessageHandler,
    MqttSettings,
    PublisherCounters,
    TlsSettings,
    check_settings,
)
from facegate.events.mqtt_states import RetainedStates, StateMessage
from facegate.events.payloads import STATUS_STOPPED, PayloadLike, dumps, event_payload
from facegate.events.sinks import EventSink, JsonLinesSink
from facegate.events.spool import OutgoingMessage, Spool
from facegate.events.topics import Topics, topic_is_concrete
from facegate.types import FaceEvent

logger = logging.getLogger(__name__)


class MqttPublisher:
    """Publishes facegate's events and state to an MQTT broker; see the module docstring for guarantees.

    Typical use::

        publisher = MqttPublisher(Topics("door1"), MqttSettings(host="broker"), spool=Spool(state_dir / "spool.db"))
        publisher.start()
        publisher.publish_face_event(event)           # any thread
        publisher.publish_state(topics.presence("alice"), {...})
        publisher.stop()                              # retained "stopped", clean disconnect
    """

    def __init__(
        self,
        topics: Topics,
        settings: MqttSettings | None = None,
        *,
        spool: Spool | None = None,
        own_spool: bool | None = None,
        signer: EventSigner | None = None,
    ) -> None:
        self.topics = topics
        self.settings = check_settings(settings or MqttSettings())
        self.spool = spool if spool is not None else Spool(None)
        self._own_spool = spool is None if own_spool is None else own_spool
        self.client_id = self.settings.client_id or f"facegate-{topics.device_id}"
        self.freshness = EventFreshness(topics.event, topics.history, max_age_s=self.settings.max_event_age_s,
                                        signer=signer)
        self._delivery = SpoolDelivery(self.spool, self.freshness, max_inflight=self.settings.max_inflight,
                                       start_wall=time.time())
        self._states = RetainedStates()
        self._commands = CommandDispatcher(self.settings.command_queue_size)
        self._availability = Availability(topics.status)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._conn = BrokerConnection(self.settings, self.client_id, topics.status, delivery=self._delivery,
                                      states=self._states, commands=self._commands,
                                      availability=self._availability, wake=self._wake, stopping=self._stop)

        self._lock = threading.Lock()  # guards the fields below; never held while calling paho
        self._hooks: list[ConnectHook] = []
        self._outstanding_any = False  # mirrored by the sender thread for flush()
        self._messages_dropped = 0

        self._idle = threading.Condition()
        self._sender: threading.Thread | None = None
        self._started = False

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Configure paho and start the network, sender and dispatcher threads. Returns immediately;
        the connection is made (and re-made) in the background with capped exponential backoff."""
        if self._started:
            raise MqttError("publisher already started")
        if not hasattr(paho.Client, "drop_out_messages"):
            raise MqttError("paho-mqtt >= 2.2 is required (Client.drop_out_messages)")
        client = self._conn.build()
        self._started = True
        self._stop.clear()
        self._sender = threading.Thread(target=self._sender_loop, name="mqtt-sender", daemon=True)
        self._sender.start()
        self._commands.start()
        s = self.settings
        logger.info(
            "MQTT connecting to %s:%d as %s (tls=%s, auth=%s)",
            s.host, s.port, self.client_id, s.tls is not None, s.username is not None,
        )
        client.connect_async(s.host, s.port, keepalive=s.keepalive)
        rc = client.loop_start()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(f"MQTT loop_start failed: {paho.error_string(rc)}")

    def stop(self, timeout: float = 5.0) -> None:
        """Flush (up to ``timeout`` s), publish retained ``stopped``, disconnect cleanly, stop threads.

        Events still unacknowledged after the timeout stay in the spool for the next start.
        """
        if not self._started:
            return
        client = self._conn.client
        if client is None:  # pragma: no cover - set together with _started
            return
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join(timeout=5.0)
        self._commands.stop(timeout=5.0)
        if self.is_connected:
            info = client.publish(self.topics.status, STATUS_STOPPED, qos=1, retain=True)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                try:
                    info.wait_for_publish(timeout=min(timeout, 3.0) if timeout > 0 else 1.0)
                except (RuntimeError, ValueError) as err:
                    logger.warning("MQTT 'stopped' status not confirmed: %s", err)
            else:
                logger.warning("MQTT 'stopped' status not sent: %s", paho.error_string(info.rc))
        if self.is_connected:
            # only when connected: paho logs an error for a disconnect without a connection
            rc = client.disconnect()
            if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                logger.warning("MQTT disconnect: %s", paho.error_string(rc))
        client.loop_stop()
        self._conn.mark_disconnected()
        self._started = False
        depth = len(self.spool)
        if depth:
            logger.info("MQTT stopped with %d event(s) left in the spool", depth)
        if self._own_spool:
            self.spool.close()

    def flush(self, timeout: float) -> bool:
        """Wait until the spool is empty and nothing is in flight; False on timeout or disconnection."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._idle:
            while True:
                if len(self.spool) == 0 and self._idle_now():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.is_connected:
                    return len(self.spool) == 0 and self._idle_now()
                self._idle.wait(min(remaining, 0.1))

    def _idle_now(self) -> bool:
        with self._lock:
            outstanding = self._outstanding_any
        return not outstanding and not self._states.has_pending

    def update_config(self, settings: MqttSettings) -> frozenset[str]:
        """Apply new settings in place, without reconnecting, and return the names of those that were
        not applied because only a new connection can (:data:`RECONNECT_FIELDS`; logged too).

        Applied live: ``max_event_age_s`` (the next event handed to the broker is judged by it, spooled
        ones included; nothing queued is dropped or re-sent), ``max_inflight`` and the reconnect backoff.
        Invalid settings raise :class:`ConfigError` and change nothing."""
        new = check_settings(settings)
        old = self.settings
        pending = frozenset(name for name in RECONNECT_FIELDS if getattr(new, name) != getattr(old, name))
        self.freshness.update_config(max_age_s=new.max_event_age_s)
        self._delivery.max_inflight = new.max_inflight
        client = self._conn.client
        if client is not None and (new.reconnect_min_s, new.reconnect_max_s) != (old.reconnect_min_s,
                                                                                  old.reconnect_max_s):
            client.reconnect_delay_set(min_delay=new.reconnect_min_s, max_delay=new.reconnect_max_s)
        # what is in effect: the connection fields stay as the running connection has them
        self.settings = replace(new, **{name: getattr(old, name) for name in pending})
        self._conn.settings = self.settings
        self._wake.set()  # a larger max_inflight: hand over more now
        if pending:
            logger.warning("MQTT %s changed: kept the current connection; takes effect after a restart",
                           ", ".join(sorted(pending)))
        return pending

    # --- public publishing API (thread-safe) ----------------------------------------------------------
    def publish_event(self, payload: Mapping[str, Any] | BaseModel) -> int | None:
        """Spool one event (QoS 1, never retained) and return its spool seq, or None if the spool's
        drop policy rejected it. Delivery is at-least-once with the same ``event_id``."""
        data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
        event_id = data.get("event_id")
        seq = self.spool.put(
            OutgoingMessage(
                topic=self.topics.event,
                payload=dumps(data),
                qos=1,
                retain=False,
                event_id=None if event_id is None else str(event_id),
            )
        )
        self._wake.set()
        return seq

    def publish_face_event(self, event: FaceEvent) -> int | None:
        """Convert (``payloads.event_payload``) and spool a :class:`FaceEvent`."""
        return self.publish_event(event_payload(event, device_id=self.topics.device_id))

    def publish_state(
        self, topic: str, payload: PayloadLike, *, retain: bool = True, qos: int = 1, before_online: bool = False
    ) -> None:
        """Publish state (in order, when connected). Retained state is remembered and republished after
        every reconnect; an empty payload clears a retained topic at the broker. ``before_online``
        (retained only) makes every connect publish the latest value before ``online``."""
        if not topic_is_concrete(topic):
            raise ConfigError(f"not a publishable topic: {topic!r}")
        self._states.put(StateMessage(topic, dumps(payload), qos, retain, before_online and retain))
        self._wake.set()

    def clear_state(self, topic: str) -> None:
        """Remove a retained message from the broker (zero-length retained publish)."""
        self.publish_state(topic, b"", retain=True)

    def forget_state(self, topic: str) -> None:
        """Stop republishing ``topic`` on reconnect (without clearing it at the broker)."""
        self._states.forget(topic)

    def publish_message(self, topic: str, payload: PayloadLike, *, qos: int = 0, retain: bool = False) -> bool:
        """Fire-and-forget (command results, snapshots, stats, Frigate updates): sent only while
        connected, otherwise dropped and counted. Returns whether it was handed to the client."""
        if not topic_is_concrete(topic):
            raise ConfigError(f"not a publishable topic: {topic!r}")
        client = self._conn.client
        if client is None or not self.is_connected:
            with self._lock:
                self._messages_dropped += 1
            return False
        info = client.publish(topic, dumps(payload), qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            with self._lock:
                self._messages_dropped += 1
            logger.debug("MQTT publish to %s not sent: %s", topic, paho.error_string(info.rc))
            return False
        return True

    def publish_status(self, status: str) -> None:
        """Retained status (``online``/``stopped``/...); normally managed by the publisher itself."""
        self.publish_state(self.topics.status, status, retain=True)

    def set_status(self, status: str) -> None:
        """The status announced now (when connected) and after every reconnect (``online``/``degraded``).

        Published straight to paho like the connect-time status, so it is never queued behind state."""
        self._availability.set(status, self._conn.client, lambda: self.is_connected)

    @property
    def status(self) -> str:
        return self._availability.status

    # --- subscriptions and hooks ----------------------------------------------------------------------
    def subscribe(
        self, topic_filter: str, handler: MessageHandler, *, qos: int = 1, on_overflow: MessageHandler | None = None
    ) -> None:
        """Call ``handler`` (on the dispatcher thread) for messages matching ``topic_filter``.
        Subscriptions are renewed after every reconnect.

        ``on_overflow`` is called instead, on paho's network thread, for a message that found the
        bounded command queue full (it must be quick: e.g. answer ``busy``); the drop is counted and logged."""
        if not topic_filter or "\x00" in topic_filter:
            raise ConfigError(f"invalid topic filter {topic_filter!r}")
        connected = self._commands.subscribe(topic_filter, handler, qos, on_overflow)
        client = self._conn.client
        if client is not None and connected:
            self._conn.subscribe_now(client, [(topic_filter, qos)])

    def unsubscribe(self, topic_filter: str) -> None:
        connected = self._commands.unsubscribe(topic_filter)
        client = self._conn.client
        if client is not None and connected:
            client.unsubscribe(topic_filter)

    def add_on_connect(self, hook: ConnectHook) -> None:
        """Run ``hook`` (on the sender thread) after every (re)connect, after retained state was queued
        for republishing. Hooks typically call :meth:`publish_state`."""
        with self._lock:
            self._hooks.append(hook)
        if self.is_connected:
            self._safe_hook(hook)

    # --- introspection ------------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._conn.is_connected

    @property
    def last_failure(self) -> str | None:
        """The last connection failure reason (for ``facegate doctor`` and stats)."""
        return self._conn.last_failure

    def wait_connected(self, timeout: float) -> bool:
        return self._conn.wait_connected(timeout)

    def counters(self) -> PublisherCounters:
        spool = self.spool.counters()
        published, rejected, states_published = self._delivery.counts
        received, commands_dropped = self._commands.counts
        states_dropped = self._states.dropped
        connected, reconnects = self._conn.is_connected, self._conn.reconnects
        with self._lock:
            return PublisherCounters(
                connected=connected,
                published=published,
                spooled=spool.put,
                dropped=spool.dropped,
                rejected=rejected,
                reconnects=reconnects,
                spool_depth=spool.depth,
                states_published=states_published,
                commands_received=received,
                commands_dropped=commands_dropped,
                messages_dropped=self._messages_dropped,
                states_dropped=states_dropped,
            )

    # --- sender thread ------------------------------------------------------------------------------
    def _sender_loop(self) -> None:
        seen_gen = 0
        while not self._stop.is_set():
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            client = self._conn.client
            if client is None:
                continue
            try:
                self._delivery.process_acks()
                connected, gen = self._conn.generation
                if gen != seen_gen and connected:
                    seen_gen = gen
                    self._delivery.new_connection()
                    self._states.requeue_retained()
                    with self._lock:
                        hooks = list(self._hooks)
                    for hook in hooks:
                        self._safe_hook(hook)
                if connected:
                    self._delivery.send_states(client, self._states)
                    self._delivery.send_events(client)
            except Exception:
                logger.exception("MQTT sender error; retrying")
                time.sleep(0.5)
            with self._lock:
                self._outstanding_any = self._delivery.outstanding
            with self._idle:
                self._idle.notify_all()

    def _safe_hook(self, hook: ConnectHook) -> None:
        try:
            hook()
        except Exception:
            logger.exception("MQTT on-connect hook failed")


__all__ = [
    "RECONNECT_FIELDS",
    "ConnectHook",
    "EventSink",
    "InboundMessage",
    "JsonLinesSink",
    "MessageHandler",
    "MqttPublisher",
    "MqttSettings",
    "PublisherCounters",
    "TlsSettings",
]
