"""The MQTT publisher's plain values: connection settings, inbound messages, handler types, counters.

Split from :mod:`facegate.events.mqtt` so the parts that only pass these around (Home Assistant
discovery, fleet sync, the command dispatcher) do not depend on the publisher's threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from facegate.errors import ConfigError
from facegate.events.freshness import DEFAULT_MAX_EVENT_AGE_S
from facegate.events.payloads import PublisherStatsPayload

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


#: settings sent in CONNECT or fixed when the client is built: :meth:`MqttPublisher.update_config`
#: reports them instead of applying them (the daemon applies them on restart)
RECONNECT_FIELDS = (
    "host", "port", "username", "password", "tls", "client_id", "protocol", "keepalive", "command_queue_size",
)


def check_settings(settings: MqttSettings) -> MqttSettings:
    """``settings`` if the publisher can run with them, else :class:`ConfigError` naming the problem."""
    if settings.max_inflight < 1:
        raise ConfigError("mqtt max_inflight must be >= 1")
    if settings.reconnect_min_s < 1 or settings.reconnect_max_s < settings.reconnect_min_s:
        raise ConfigError("mqtt reconnect delays must satisfy 1 <= reconnect_min_s <= reconnect_max_s")
    if not (math.isfinite(settings.max_event_age_s) and settings.max_event_age_s > 0):
        raise ConfigError(f"mqtt max_event_age_s must be a positive number of seconds, not "
                          f"{settings.max_event_age_s!r}")
    return settings


__all__ = [
    "RECONNECT_FIELDS",
    "ConnectHook",
    "InboundMessage",
    "MessageHandler",
    "MqttSettings",
    "Protocol_",
    "PublisherCounters",
    "TlsSettings",
    "check_settings",
]
