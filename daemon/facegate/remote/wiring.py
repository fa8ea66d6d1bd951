"""Connecting the command handler and fleet sync to the MQTT publisher, built from the configuration.

The daemon needs three calls::

    remote = build_remote(config, publisher=publisher, runtime=runtime_config, gallery=gallery,
                          embedder=lambda: engine, on_config_change=..., on_gallery_change=...)
    remote.attach()          # before publisher.start(): subscriptions and hooks are registered
    ...
    remote.stop()            # before publisher.stop()

and, when ``security.sign_events`` is on, :func:`build_event_signer` to sign each event payload
before it is spooled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

from pydantic import SecretStr

from facegate.config.models import FacegateConfig
from facegate.config.runtime import PatchResult
from facegate.config.secrets import command_secret, event_key
from facegate.errors import ConfigError
from facegate.events.mqtt import InboundMessage, MqttPublisher
from facegate.events.topics import Topics
from facegate.gallery.records import ApplyOutcome
from facegate.gallery.store import SqliteGallery
from facegate.remote.commands import CommandHandler
from facegate.remote.enrolment import PhotoEmbedder
from facegate.remote.fleet import FleetSync
from facegate.remote.rate_limit import TokenBucket
from facegate.remote.replay_guard import ReplayGuard
from facegate.remote.results import ConfigApplier, GalleryChange, command_topic, config_state_payload
from facegate.remote.schemas import COMMAND_KINDS, CommandKind
from facegate.remote.signing import CommandVerifier, EventSigner, SigningKey

logger = logging.getLogger(__name__)

NONCE_FILE = "command-nonces.json"
#: answers to rejected commands, per minute (a flood of garbage must not become a flood of results)
REJECTION_REPLIES_PER_MINUTE = 60


class RemoteControl:
    """Routes command topics to the :class:`CommandHandler`, publishes results (QoS 1, not retained)
    and the retained ``config/state``, and runs :class:`FleetSync` on the same connection."""

    def __init__(
        self,
        publisher: MqttPublisher,
        *,
        handler: CommandHandler | None,
        fleet: FleetSync | None,
        config: ConfigApplier | None,
        reply_limiter: TokenBucket | None = None,
        qos: int = 1,
    ) -> None:
        self.publisher = publisher
        self.topics: Topics = publisher.topics
        self.handler = handler
        self.fleet = fleet
        self.config = config
        self.reply_limiter = reply_limiter
        self.qos = qos
        self.replies_dropped = 0
        self._attached = False

    def attach(self) -> None:
        """Register subscriptions and hooks (before or after ``publisher.start()``)."""
        if self._attached:
            raise ConfigError("remote control already attached")
        self._attached = True
        if self.handler is not None:
            for kind in COMMAND_KINDS:
                self.publisher.subscribe(command_topic(self.topics, kind), partial(self._on_command, kind), qos=1,
                                         on_overflow=partial(self._on_overflow, kind))
        if self.fleet is not None:
            self.fleet.attach(self.publisher)
        if self.config is not None:
            # config/state follows the configuration at its source: a remote patch, a reset, a reload
            self.config.subscribe(lambda _result: self.publish_config_state())
        self.publish_config_state()

    def stop(self) -> None:
        if self.fleet is not None:
            self.fleet.stop()

    def publish_config_state(self) -> None:
        """(Re)publish the retained ``config/state`` (the publisher repeats it after reconnects)."""
        if self.config is None:
            return
        payload = config_state_payload(self.config, self.topics.device_id)
        self.publisher.publish_state(self.topics.config_state, payload.model_dump(mode="json"), retain=True)

    def _on_command(self, kind: CommandKind, message: InboundMessage) -> None:
        if self.handler is None:  # pragma: no cover - subscribed only with a handler
            return
        result = self.handler.handle(kind, message.payload)
        if not result.ok and self.reply_limiter is not None and self.reply_limiter.try_acquire() is not None:
            self.replies_dropped += 1
            logger.warning("not answering rejected %s: too many rejections (%d unanswered)", kind,
                           self.replies_dropped)
            return
        self.publisher.publish_message(result.topic, result.to_json(), qos=self.qos, retain=False)

    def _on_overflow(self, kind: CommandKind, message: InboundMessage) -> None:
        """The command queue was full: answer ``busy`` (rate-limited like every rejection)."""
        if self.handler is None:  # pragma: no cover - subscribed only with a handler
            return
        if self.reply_limiter is not None and self.reply_limiter.try_acquire() is not None:
            self.replies_dropped += 1
            return
        result = self.handler.busy(kind, message.payload)
        self.publisher.publish_message(result.topic, result.to_json(), qos=self.qos, retain=False)

    # callbacks given to the handler
    def gallery_changed(self, change: GalleryChange, user: Callable[[GalleryChange], None] | None) -> None:
        if self.fleet is not None:
            self.fleet.publish_person(change.person_id)
        if user is not None:
            user(change)


def _load_key(what: str, loader: Callable[[], SecretStr | None]) -> SigningKey | None:
    secret = loader()
    if secret is None:
        return None
    try:
        return SigningKey(secret)
    except ConfigError as err:
        raise ConfigError(f"{what}: {err}") from err


def command_key(config: FacegateConfig, environ: Mapping[str, str] | None = None) -> SigningKey | None:
    """The per-fleet secret from ``$CREDENTIALS_DIRECTORY/<command_secret_credential>`` or
    ``security.command_secret_file``; None when neither is provided."""
    return _load_key("command secret", lambda: command_secret(config.security, environ))


def build_event_signer(config: FacegateConfig, topics: Topics,
                       environ: Mapping[str, str] | None = None) -> EventSigner | None:
    """An :class:`EventSigner` when ``security.sign_events`` is on (ConfigError if the key is missing)."""
    if not config.security.sign_events:
        return None
    key = _load_key("event key", lambda: event_key(config.security, environ))
    if key is None:
        raise ConfigError(
            "security.sign_events is on but no event key is provided (LoadCredential=event_key:... or "
            "security.event_key_file)"
        )
    return EventSigner(key, topics.event)


def build_remote(
    config: FacegateConfig,
    *,
    publisher: MqttPublisher,
    runtime: ConfigApplier | None,
    gallery: SqliteGallery | None,
    embedder: Callable[[], PhotoEmbedder] | None = None,
    environ: Mapping[str, str] | None = None,
    on_config_change: Callable[[PatchResult], None] | None = None,
    on_gallery_change: Callable[[GalleryChange], None] | None = None,
    on_fleet_applied: Callable[[ApplyOutcome], None] | None = None,
    nonce_file: Path | None = None,
    fleet_settle_s: float = 2.0,
    clock: Callable[[], float] = time.time,
) -> RemoteControl:
    """Everything remote management needs, from ``config.security`` / ``config.device``:

    * the fleet secret (systemd credential, else file; never the YAML);
    * a :class:`CommandVerifier` (window ``max_skew_s``, nonces persisted in
      ``<state_dir>/command-nonces.json``, ``allow_unsigned``), a token bucket of
      ``commands_per_minute``, ``max_payload_bytes``;
    * fleet sync on ``<prefix>/fleet/<fleet_id>/gallery/+`` when there is a gallery and a secret.
    """
    security = config.security
    key = command_key(config, environ)
    topics = publisher.topics
    fleet: FleetSync | None = None
    if key is None and not security.allow_unsigned and security.commands_enabled:
        logger.warning(
            "no command secret (LoadCredential=%s:... or security.command_secret_file): remote commands are "
            "refused and fleet sync is off",
            security.command_secret_credential,
        )
    if gallery is not None and (key is not None or security.allow_unsigned):
        fleet = FleetSync(
            gallery,
            topics=topics,
            fleet_id=config.device.fleet_id,
            key=key,
            allow_unsigned=security.allow_unsigned,
            settle_s=fleet_settle_s,
            on_applied=on_fleet_applied,
        )
    remote = RemoteControl(
        publisher,
        handler=None,
        fleet=fleet,
        config=runtime,
        reply_limiter=TokenBucket.per_minute(REJECTION_REPLIES_PER_MINUTE, burst=20),
        qos=max(1, config.mqtt.qos),
    )
    if security.commands_enabled:
        guard = ReplayGuard(
            security.max_skew_s,
            path=nonce_file if nonce_file is not None else config.paths.state_dir / NONCE_FILE,
            clock=clock,
        )
        verifier = CommandVerifier(
            key, max_skew_s=security.max_skew_s, replay_guard=guard, allow_unsigned=security.allow_unsigned,
            clock=clock,
        )
        remote.handler = CommandHandler(
            topics=topics,
            verifier=verifier,
            config=runtime,
            gallery=gallery,
            embedder=embedder,
            rate_limiter=TokenBucket.per_minute(security.commands_per_minute),
            max_payload_bytes=security.max_payload_bytes,
            on_config_change=on_config_change,  # one hop to the owner of the settings
            on_gallery_change=partial(remote.gallery_changed, user=on_gallery_change),
            clock=clock,
        )
    return remote


__all__ = [
    "NONCE_FILE",
    "RemoteControl",
    "build_event_signer",
    "build_remote",
    "command_key",
]
