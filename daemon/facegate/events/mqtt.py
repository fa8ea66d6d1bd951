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
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel

from facegate.errors import ConfigError, MqttError
from facegate.events.freshness import DEFAULT_MAX_EVENT_AGE_S, EventFreshness, EventSigner
from facegate.events.payloads import (
    STATUS_OFFLINE,
    STATUS_ONLINE,
    STATUS_STOPPED,
    PayloadLike,
    PublisherStatsPayload,
    dumps,
    event_payload,
)
from facegate.events.spool import OutgoingMessage, Spool
from facegate.events.topics import Topics, topic_is_concrete
from facegate.types import FaceEvent

logger = logging.getLogger(__name__)

Protocol_ = Literal["3.1.1", "5"]


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS for the broker connection. Certificate and host name verification are always on.

    ``ca_file=None`` verifies against the system CA store. ``cert_file``/``key_file`` enable client
    certificate authentication.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Broker connection settings. ``password`` is excluded from ``repr`` and never logged."""

    host: str = "localhost"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsSettings | None = None
    client_id: str | None = None  # default: "facegate-<device_id>"
    protocol: Protocol_ = "3.1.1"
    keepalive: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60
    max_inflight: int = 10
    stale_timeout_s: float = 30.0  # unused since paho's copies are dropped on reconnect; kept for callers
    command_queue_size: int = 64
    max_event_age_s: float = DEFAULT_MAX_EVENT_AGE_S


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message received on a subscribed topic (commands, fleet records, HA birth)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


MessageHandler = Callable[[InboundMessage], None]
ConnectHook = Callable[[], None]


@dataclass(frozen=True, slots=True)
class PublisherCounters:
    """Figures for the stats message. ``published`` counts events acknowledged by the broker; ``dropped``
    counts only *events* lost (the spool's bound and drop policy). Fire-and-forget messages not sent while
    offline (stats, snapshots, command results) are ``messages_dropped``; state updates squeezed out of a
    long offline backlog (their latest retained value is still republished) are ``states_dropped``."""

    connected: bool
    published: int
    spooled: int
    dropped: int
    rejected: int
    reconnects: int
    spool_depth: int
    states_published: int
    commands_received: int
    commands_dropped: int
    messages_dropped: int = 0
    states_dropped: int = 0

    def to_payload(self) -> PublisherStatsPayload:
        return PublisherStatsPayload(
            connected=self.connected,
            published=self.published,
            spooled=self.spooled,
            dropped=self.dropped,
            reconnects=self.reconnects,
            spool_depth=self.spool_depth,
            messages_dropped=self.messages_dropped,
            states_dropped=self.states_dropped,
            commands_dropped=self.commands_dropped,
        )


class EventSink(Protocol):
    """Something events can be published to (the MQTT publisher, a JSON-lines stream, ...)."""

    def publish_event(self, payload: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class _Pending:
    kind: Literal["event", "state"]
    seq: int  # spool seq for events, 0 for states
    topic: str


@dataclass(frozen=True, slots=True)
class _StateMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    before_online: bool = False


class _PahoNoConnectionFilter(logging.Filter):
    """paho 2.x logs an ERROR on every loop iteration while a reconnect is pending ("Client is not
    connected"); the publisher reports unreachable brokers itself, once, so those records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


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
        self.settings = settings or MqttSettings()
        if self.settings.max_inflight < 1:
            raise ConfigError("mqtt max_inflight must be >= 1")
        if self.settings.reconnect_min_s < 1 or self.settings.reconnect_max_s < self.settings.reconnect_min_s:
            raise ConfigError("mqtt reconnect delays must satisfy 1 <= reconnect_min_s <= reconnect_max_s")
        self.spool = spool if spool is not None else Spool(None)
        self._own_spool = spool is None if own_spool is None else own_spool
        self.client_id = self.settings.client_id or f"facegate-{topics.device_id}"
        self.freshness = EventFreshness(topics.event, topics.history, max_age_s=self.settings.max_event_age_s,
                                        signer=signer)
        #: rows spooled before this publisher existed come from an earlier process: replays
        self._start_wall = time.time()
        #: spool seqs handed to a connection and not acknowledged yet (sender thread only)
        self._handed: set[int] = set()

        self._lock = threading.Lock()  # guards the fields below; never held while calling paho
        self._connected = False
        self._conn_gen = 0
        self._connects = 0
        self._retained: dict[str, _StateMessage] = {}
        self._pending_states: collections.deque[_StateMessage] = collections.deque()
        self._max_pending_states = 1000
        self._subscriptions: dict[str, tuple[int, list[MessageHandler]]] = {}
        self._overflow: dict[str, list[MessageHandler]] = {}
        self._hooks: list[ConnectHook] = []
        self._last_failure: str | None = None
        self._status: str = STATUS_ONLINE  # what every connect announces; see set_status
        # serialises "read the status, publish it" so a change racing a connect cannot be overtaken
        self._status_lock = threading.Lock()
        self._outstanding_any = False  # mirrored by the sender thread for flush()

        self._published = 0
        self._rejected = 0
        self._messages_dropped = 0
        self._states_dropped = 0
        self._states_published = 0
        self._commands_received = 0
        self._commands_dropped = 0

        self._acks: queue.SimpleQueue[tuple[int, bool, str]] = queue.SimpleQueue()
        self._commands: queue.Queue[InboundMessage | None] = queue.Queue(maxsize=self.settings.command_queue_size)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._client: paho.Client | None = None
        self._sender: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self._started = False

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Configure paho and start the network, sender and dispatcher threads. Returns immediately;
        the connection is made (and re-made) in the background with capped exponential backoff."""
        if self._started:
            raise MqttError("publisher already started")
        if not hasattr(paho.Client, "drop_out_messages"):
            raise MqttError("paho-mqtt >= 2.2 is required (Client.drop_out_messages)")
        self._client = self._build_client()
        self._started = True
        self._stop.clear()
        self._sender = threading.Thread(target=self._sender_loop, name="mqtt-sender", daemon=True)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="mqtt-commands", daemon=True)
        self._sender.start()
        self._dispatcher.start()
        s = self.settings
        logger.info(
            "MQTT connecting to %s:%d as %s (tls=%s, auth=%s)",
            s.host, s.port, self.client_id, s.tls is not None, s.username is not None,
        )
        self._client.connect_async(s.host, s.port, keepalive=s.keepalive)
        rc = self._client.loop_start()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(f"MQTT loop_start failed: {paho.error_string(rc)}")

    def _build_client(self) -> paho.Client:
        s = self.settings
        protocol = paho.MQTTv5 if s.protocol == "5" else paho.MQTTv311
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            clean_session=True if protocol == paho.MQTTv311 else None,
        )
        paho_logger = logging.getLogger(f"{__name__}.paho")
        if not any(isinstance(f, _PahoNoConnectionFilter) for f in paho_logger.filters):
            paho_logger.addFilter(_PahoNoConnectionFilter())
        client.enable_logger(paho_logger)
        # Unlimited inside paho: the sender bounds what it hands over itself.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=s.reconnect_min_s, max_delay=s.reconnect_max_s)
        client.will_set(self.topics.status, STATUS_OFFLINE, qos=1, retain=True)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls is not None:
            self._configure_tls(client, s.tls)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    @staticmethod
    def _configure_tls(client: paho.Client, tls: TlsSettings) -> None:
        for label, path in (("ca_file", tls.ca_file), ("cert_file", tls.cert_file), ("key_file", tls.key_file)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"mqtt tls {label} {path} does not exist")
        if (tls.cert_file is None) != (tls.key_file is None):
            raise ConfigError("mqtt tls cert_file and key_file must be given together")
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None)
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.cert_file is not None and tls.key_file is not None:
            try:
                context.load_cert_chain(str(tls.cert_file), str(tls.key_file), password=tls.key_password)
            except (ssl.SSLError, OSError) as err:
                raise ConfigError(f"mqtt tls client certificate/key cannot be loaded: {err}") from err
        client.tls_set_context(context)
        client.tls_insecure_set(False)

    def stop(self, timeout: float = 5.0) -> None:
        """Flush (up to ``timeout`` s), publish retained ``stopped``, disconnect cleanly, stop threads.

        Events still unacknowledged after the timeout stay in the spool for the next start.
        """
        if not self._started:
            return
        client = self._client
        if client is None:  # pragma: no cover - set together with _started
            return
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join(timeout=5.0)
        with contextlib.suppress(queue.Full):
            self._commands.put_nowait(None)
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=5.0)
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
        with self._lock:
            self._connected = False
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
            return not self._outstanding_any and not self._pending_states

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
        message = _StateMessage(topic, dumps(payload), qos, retain, before_online and retain)
        with self._lock:
            if retain:
                self._retained[topic] = message
            if message.before_online and not self._connected:
                # the next connect publishes it before "online"; queueing it too would send it twice
                self._wake.set()
                return
            self._pending_states.append(message)
            while len(self._pending_states) > self._max_pending_states:
                # Retained values come back with the reconnect snapshot; only older intents are lost.
                self._pending_states.popleft()
                self._states_dropped += 1
        self._wake.set()

    def clear_state(self, topic: str) -> None:
        """Remove a retained message from the broker (zero-length retained publish)."""
        self.publish_state(topic, b"", retain=True)

    def forget_state(self, topic: str) -> None:
        """Stop republishing ``topic`` on reconnect (without clearing it at the broker)."""
        with self._lock:
            self._retained.pop(topic, None)

    def publish_message(self, topic: str, payload: PayloadLike, *, qos: int = 0, retain: bool = False) -> bool:
        """Fire-and-forget (command results, snapshots, stats, Frigate updates): sent only while
        connected, otherwise dropped and counted. Returns whether it was handed to the client."""
        if not topic_is_concrete(topic):
            raise ConfigError(f"not a publishable topic: {topic!r}")
        client = self._client
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
        with self._status_lock:
            with self._lock:
                changed = status != self._status
                self._status = status
                connected = self._connected
            client = self._client
            if changed and connected and client is not None:
                self._send_status(client, status)

    def _send_status(self, client: paho.Client, status: str) -> None:
        info = client.publish(self.topics.status, status, qos=1, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            logger.warning("MQTT %r status not sent: %s", status, paho.error_string(info.rc))

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

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
        with self._lock:
            if on_overflow is not None:
                self._overflow.setdefault(topic_filter, []).append(on_overflow)
            existing = self._subscriptions.get(topic_filter)
            handlers = [*existing[1], handler] if existing else [handler]
            self._subscriptions[topic_filter] = (max(qos, existing[0]) if existing else qos, handlers)
            connected = self._connected
        client = self._client
        if client is not None and connected:
            self._subscribe_now(client, [(topic_filter, qos)])

    def unsubscribe(self, topic_filter: str) -> None:
        with self._lock:
            self._subscriptions.pop(topic_filter, None)
            self._overflow.pop(topic_filter, None)
            connected = self._connected
        if self._client is not None and connected:
            self._client.unsubscribe(topic_filter)

    def add_on_connect(self, hook: ConnectHook) -> None:
        """Run ``hook`` (on the sender thread) after every (re)connect, after retained state was queued
        for republishing. Hooks typically call :meth:`publish_state`."""
        with self._lock:
            self._hooks.append(hook)
            connected = self._connected
        if connected:
            self._safe_hook(hook)

    # --- introspection ------------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        with self._lock:
            return self._connected

    @property
    def last_failure(self) -> str | None:
        """The last connection failure reason (for ``facegate doctor`` and stats)."""
        with self._lock:
            return self._last_failure

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_connected:
                return True
            time.sleep(0.02)
        return self.is_connected

    def counters(self) -> PublisherCounters:
        spool = self.spool.counters()
        with self._lock:
            return PublisherCounters(
                connected=self._connected,
                published=self._published,
                spooled=spool.put,
                dropped=spool.dropped,
                rejected=self._rejected,
                reconnects=max(0, self._connects - 1),
                spool_depth=spool.depth,
                states_published=self._states_published,
                commands_received=self._commands_received,
                commands_dropped=self._commands_dropped,
                messages_dropped=self._messages_dropped,
                states_dropped=self._states_dropped,
            )

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
            self._conn_gen += 1
            self._connects += 1
            self._last_failure = None
            subscriptions = [(f, q) for f, (q, _) in self._subscriptions.items()]
            first = self._connects == 1
            early = [m for m in self._retained.values() if m.before_online]
        # paho's copies of unacknowledged messages hold the bytes of their first attempt (topic and
        # age included); the sender re-sends events from the spool and states from the snapshot.
        client.drop_out_messages()
        logger.info("MQTT %s to %s:%d", "connected" if first else "reconnected", self.settings.host, self.settings.port)
        # Subscribe before announcing "online": a controller that sends a command as soon as it sees
        # "online" must find the subscription in place (the broker handles SUBSCRIBE before PUBLISH).
        if subscriptions:
            self._subscribe_now(client, subscriptions)
        for message in early:
            sent = client.publish(message.topic, message.payload, qos=message.qos, retain=True)
            if sent.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                logger.warning("MQTT state on %s not sent before 'online': %s", message.topic,
                               paho.error_string(sent.rc))
        # Published here, before paho re-sends older unacknowledged messages, so "online" comes first.
        with self._status_lock:
            self._send_status(client, self.status)
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
        with self._lock:
            was_connected = self._connected
            self._connected = False
        if self._stop.is_set():
            return
        if was_connected:
            logger.warning("MQTT disconnected (%s); reconnecting with backoff", reason_code)
        self._wake.set()

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Any
    ) -> None:
        self._acks.put((mid, bool(reason_code.is_failure), str(reason_code)))
        self._wake.set()

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode], properties: Any
    ) -> None:
        for rc in reason_codes:
            if rc.is_failure:
                logger.error("MQTT subscription refused by the broker: %s", rc)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        inbound = InboundMessage(str(message.topic), bytes(message.payload), int(message.qos), bool(message.retain))
        try:
            self._commands.put_nowait(inbound)
        except queue.Full:
            with self._lock:
                self._commands_dropped += 1
                dropped = self._commands_dropped
                overflow = [h for f, hs in self._overflow.items() if paho.topic_matches_sub(f, inbound.topic)
                            for h in hs]
            if dropped == 1 or dropped % 100 == 0:  # a flood must not flood the journal too
                logger.warning("MQTT command queue full (%d slots); dropped message on %s (%d dropped so far)",
                               self.settings.command_queue_size, inbound.topic, dropped)
            for answer in overflow:
                try:
                    answer(inbound)
                except Exception:
                    logger.exception("MQTT overflow handler for %s failed", inbound.topic)
            return
        with self._lock:
            self._commands_received += 1

    def _subscribe_now(self, client: paho.Client, subscriptions: list[tuple[str, int]]) -> None:
        rc, _mid = client.subscribe(subscriptions)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            logger.warning("MQTT subscribe not sent (%s); retried after reconnect", paho.error_string(rc))

    # --- dispatcher thread --------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        while True:
            try:
                item = self._commands.get(timeout=0.5)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is None:
                return
            with self._lock:
                handlers = [h for f, (_, hs) in self._subscriptions.items() if paho.topic_matches_sub(f, item.topic)
                            for h in hs]
            for handler in handlers:
                try:
                    handler(item)
                except Exception:
                    # A faulty command must never take the publisher down.
                    logger.exception("MQTT handler for %s failed", item.topic)

    # --- sender thread ------------------------------------------------------------------------------
    def _sender_loop(self) -> None:
        outstanding: dict[int, _Pending] = {}
        seen_gen = 0
        last_seq = 0
        while not self._stop.is_set():
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            client = self._client
            if client is None:
                continue
            try:
                self._process_acks(outstanding)
                with self._lock:
                    connected, gen = self._connected, self._conn_gen
                if gen != seen_gen and connected:
                    # New connection: paho dropped its copies in _on_connect, so nothing is in flight;
                    # events start again from the oldest spooled row (re-sends are routed as replays).
                    seen_gen = gen
                    outstanding.clear()
                    last_seq = 0
                    with self._lock:
                        # each retained topic once: what is still queued is already its latest value
                        queued = {m.topic for m in self._pending_states}
                        self._pending_states.extend(
                            m for t, m in self._retained.items() if t not in queued and not m.before_online
                        )
                        hooks = list(self._hooks)
                    for hook in hooks:
                        self._safe_hook(hook)
                if connected:
                    self._send_states(client, outstanding)
                    last_seq = self._send_events(client, outstanding, last_seq)
            except Exception:
                logger.exception("MQTT sender error; retrying")
                time.sleep(0.5)
            with self._lock:
                self._outstanding_any = bool(outstanding)
            with self._idle:
                self._idle.notify_all()

    def _process_acks(self, outstanding: dict[int, _Pending]) -> None:
        while True:
            try:
                mid, failed, reason = self._acks.get_nowait()
            except queue.Empty:
                return
            pending = outstanding.pop(mid, None)
            if pending is None:
                continue  # QoS 0, status, or a message we stopped tracking
            if pending.kind == "state":
                if failed:
                    logger.error("MQTT broker rejected state on %s: %s", pending.topic, reason)
                else:
                    with self._lock:
                        self._states_published += 1
                continue
            self.spool.ack(pending.seq)
            self._handed.discard(pending.seq)
            with self._lock:
                if failed:
                    self._rejected += 1
                else:
                    self._published += 1
            if failed:
                # Not authorised / quota: retrying cannot succeed, and blocking would stop every event.
                logger.error("MQTT broker rejected event (spool seq %d): %s; dropped", pending.seq, reason)

    def _send_states(self, client: paho.Client, outstanding: dict[int, _Pending]) -> None:
        while True:
            with self._lock:
                if not self._pending_states or not self._connected:
                    return
                message = self._pending_states.popleft()
            info = client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and message.qos):
                # NO_CONN with QoS>0: paho keeps the message and sends it after reconnecting.
                if message.qos:
                    outstanding[info.mid] = _Pending("state", 0, message.topic)
                else:
                    with self._lock:
                        self._states_published += 1
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return
            else:
                logger.warning("MQTT state on %s not sent: %s", message.topic, paho.error_string(info.rc))
                with self._lock:
                    self._pending_states.appendleft(message)
                return

    def _send_events(self, client: paho.Client, outstanding: dict[int, _Pending], last_seq: int) -> int:
        in_flight = sum(1 for p in outstanding.values() if p.kind == "event")
        room = self.settings.max_inflight - in_flight
        if room <= 0:
            return last_seq
        for message in self.spool.peek_batch(room, after_seq=last_seq):
            replayed = message.seq in self._handed or message.created < self._start_wall
            routed = self.freshness.route(message.payload, created=message.created, replayed=replayed,
                                          now=time.time())
            info = client.publish(routed.topic, routed.payload, qos=message.qos, retain=message.retain)
            if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                # NO_CONN: the connection dropped just now; the next connect drops paho's copy and the
                # row is sent again from the spool, as a replay.
                outstanding[info.mid] = _Pending("event", message.seq, routed.topic)
                self._handed.add(message.seq)
                last_seq = message.seq
                if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                    break
            else:
                logger.warning("MQTT event (spool seq %d) not sent: %s", message.seq, paho.error_string(info.rc))
                break
        return last_seq

    def _safe_hook(self, hook: ConnectHook) -> None:
        try:
            hook()
        except Exception:
            logger.exception("MQTT on-connect hook failed")


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


__all__ = [
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
