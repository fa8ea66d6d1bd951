"""Broker sections: the MQTT connection (TLS, offline spool, compat topics) and Home Assistant
discovery.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    model_validator,
)

from facegate.config.base import (
    SPOOL_FILE,
    TOPIC_PATTERN,
    ConfigPath,
    ReconnectConfig,
    _Section,
)


class TlsConfig(_Section):
    enabled: bool = Field(default=False, description="connect with TLS")
    ca_file: ConfigPath | None = Field(default=None, description="CA bundle to verify the broker; null = system CAs")
    cert_file: ConfigPath | None = Field(default=None, description="client certificate (PEM) for mutual TLS")
    key_file: ConfigPath | None = Field(default=None, description="client private key (PEM) for mutual TLS")
    insecure: bool = Field(
        default=False, description="skip broker hostname verification (testing only; the chain is still verified)"
    )

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class SpoolConfig(_Section):
    """On-disk queue of events produced while the broker is unreachable."""

    path: ConfigPath | None = Field(default=None, description=f"SQLite spool file; null = <state_dir>/{SPOOL_FILE}")
    max_messages: int = Field(default=10000, ge=1, le=10_000_000, description="bound on spooled messages")
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=1 << 32, description="bound on spooled payload bytes")
    drop_policy: Literal["oldest", "newest"] = Field(
        default="oldest", description="which messages are dropped (and counted) when a bound is reached"
    )


class MqttConfig(_Section):
    enabled: bool = Field(default=True, description="publish to a broker (events are spooled while it is unreachable)")
    host: str = Field(default="localhost", min_length=1, max_length=253, description="broker host name or address")
    port: int | None = Field(default=None, ge=1, le=65535, description="broker port; null = 8883 with TLS, else 1883")
    client_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="MQTT client id; null = facegate-<device_id>",
    )
    username: str | None = Field(default=None, max_length=256, description="broker user name")
    password: SecretStr | None = Field(
        default=None,
        description="broker password; use '!credential NAME', '!secret_file PATH' or ${ENV}, never a literal",
    )
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS settings")
    require_tls: bool = Field(default=False, description="refuse to start with a plain-text broker connection")
    keepalive: int = Field(default=60, ge=5, le=3600, description="MQTT keepalive, seconds")
    reconnect: ReconnectConfig = Field(
        default_factory=lambda: ReconnectConfig(initial_s=1.0, max_s=60.0),
        description="backoff between reconnect attempts",
    )
    prefix: str = Field(
        default="facegate",
        max_length=128,
        pattern=TOPIC_PATTERN,
        description="topic prefix: topics are <prefix>/<device_id>/...; no wildcards, no empty levels",
    )
    qos: int = Field(default=1, ge=0, le=2, description="QoS of events and command results: 0, 1 or 2")
    spool: SpoolConfig = Field(default_factory=SpoolConfig, description="offline event spool")
    snapshots: bool = Field(default=False, description="also publish a JPEG crop per event (separate topic)")
    max_event_age_s: float = Field(
        default=5.0, gt=0, le=3600,
        description="events older than this when published (or re-sent) go to <base>/history, never to the live "
        "event topic Home Assistant triggers on",
    )
    frigate_compat: bool = Field(
        default=False,
        description="also publish Frigate's face messages: <frigate_prefix>/tracked_object_update and "
        "the recognised name as sub_label on <frigate_prefix>/events",
    )
    frigate_prefix: str = Field(
        default="frigate", max_length=128, pattern=TOPIC_PATTERN,
        description="Frigate's topic_prefix for frigate_compat (use another one when a real Frigate shares the broker)",
    )
    double_take: bool = Field(
        default=False,
        description="also publish Double Take's messages: <double_take_prefix>/matches/<name> and /cameras/<camera>",
    )
    double_take_prefix: str = Field(
        default="double-take", max_length=128, pattern=TOPIC_PATTERN, description="Double Take's topic prefix"
    )

    @model_validator(mode="after")
    def _tls_required(self) -> MqttConfig:
        if self.enabled and self.require_tls and not self.tls.enabled:
            raise ValueError("require_tls is set but tls.enabled is false")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 8883 if self.tls.enabled else 1883


class HomeAssistantConfig(_Section):
    enabled: bool = Field(default=True, description="publish Home Assistant MQTT discovery")
    discovery_prefix: str = Field(
        default="homeassistant",
        max_length=128,
        pattern=TOPIC_PATTERN,
        description="Home Assistant's discovery prefix (its birth message is <prefix>/status)",
    )
