"""HMAC-SHA256 signatures on commands, events and fleet records.

What is signed (one rule for all three, version ``v1``)::

    sig = hex(HMAC-SHA256(key, JCS({"context": C, "topic": T, "payload": P})))

``P`` is the message's JSON object without its ``sig`` member, ``T`` the full MQTT topic the message
is published on, ``C`` one of ``facegate.command.v1`` / ``facegate.event.v1`` / ``facegate.fleet.v1``,
and ``JCS`` the RFC 8785 canonical JSON of :mod:`facegate.remote.canonical` (sorted keys, no
whitespace, UTF-8). The signature goes into the same object as ``"sig"`` (64 lowercase hex digits).
Binding the topic means a command signed for ``door1/config/set`` is refused by ``door2`` and by
``door1/gallery/remove``; the context keeps a signed event from ever passing as a command.

Freshness: a command carries ``ts`` (UNIX seconds, number) and ``nonce`` (16-128 characters of
``[A-Za-z0-9_-]``, at least 96 random bits; :func:`new_nonce` makes 128). The device refuses a
command whose ``ts`` is more than ``max_skew_s`` (default 30 s) away from its clock in either
direction, and a nonce it has already accepted (:mod:`facegate.remote.replay_guard`). An event
uses its own ``time`` (ISO-8601) as timestamp and its ``event_id`` (a random UUID) as nonce, so only
``sig`` is added to it. Fleet records are retained, hence old by design: their order is the gallery's
``(version, updated_by)`` rule, not a timestamp.

Keys: the per-fleet command secret (commands and fleet records) and the per-device event key are
read from a systemd credential or a file (:func:`facegate.config.secrets.command_secret`); the UTF-8
bytes of that text are the HMAC key (``openssl rand -hex 32`` makes a good one). Keys are never
logged and never part of the YAML. :class:`SigningKey` hides its value from ``repr``.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from facegate.config.secrets import read_secret_file
from facegate.errors import CommandError, ConfigError
from facegate.remote.canonical import JsonRejected, canonical_json, parse_json_object
from facegate.remote.replay_guard import Freshness, ReplayGuard, ReplayGuardFull, ReplayGuardUnavailable
from facegate.remote.schemas import NONCE_PATTERN, SIG_PATTERN, CommandRejected, FieldErrorPayload

logger = logging.getLogger(__name__)

SIGNATURE_FIELD = "sig"
Context = Literal["command", "event", "fleet"]
CONTEXTS: dict[str, str] = {
    "command": "facegate.command.v1",
    "event": "facegate.event.v1",
    "fleet": "facegate.fleet.v1",
}
DEFAULT_MAX_SKEW_S = 30.0
MIN_KEY_BYTES = 16
RECOMMENDED_KEY_BYTES = 32

_NONCE = re.compile(NONCE_PATTERN)
_SIG = re.compile(SIG_PATTERN)


class SigningKey:
    """An HMAC key. ``repr``/``str`` never show it; compare keys with :meth:`same_as`."""

    __slots__ = ("_key",)

    def __init__(self, secret: bytes | str | SecretStr) -> None:
        if isinstance(secret, SecretStr):
            secret = secret.get_secret_value()
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"signing key has {len(key)} bytes; at least {MIN_KEY_BYTES} are required "
                f"(make one with: openssl rand -hex {RECOMMENDED_KEY_BYTES})"
            )
        self._key = key

    @classmethod
    def from_file(cls, path: str | Path) -> SigningKey:
        """The key in a secret file (trailing newline removed; warns when group/others can read it)."""
        return cls(read_secret_file(Path(path)))

    @classmethod
    def coerce(cls, secret: SigningKey | bytes | str | SecretStr) -> SigningKey:
        return secret if isinstance(secret, SigningKey) else cls(secret)

    def mac(self, message: bytes) -> str:
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def same_as(self, other: SigningKey) -> bool:
        return hmac.compare_digest(self._key, other._key)

    def __repr__(self) -> str:
        return "SigningKey(<redacted>)"

    __str__ = __repr__


def new_nonce() -> str:
    """128 random bits, base64url (22 characters)."""
    return secrets.token_urlsafe(16)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def signing_input(payload: Mapping[str, Any], *, topic: str, context: Context) -> bytes:
    """The exact bytes the HMAC covers (see the module docstring)."""
    body = {k: v for k, v in payload.items() if k != SIGNATURE_FIELD}
    return canonical_json({"context": CONTEXTS[context], "topic": topic, "payload": body})


def sign(payload: Mapping[str, Any], key: SigningKey, *, topic: str, context: Context) -> dict[str, Any]:
    """A deep copy of ``payload`` with ``sig`` set (an existing ``sig`` is replaced)."""
    body = copy.deepcopy({k: v for k, v in payload.items() if k != SIGNATURE_FIELD})
    body[SIGNATURE_FIELD] = key.mac(signing_input(body, topic=topic, context=context))
    return body


def signature_valid(payload: Mapping[str, Any], key: SigningKey, *, topic: str, context: Context) -> bool:
    """True if ``payload['sig']`` is the signature of the rest (constant-time comparison)."""
    sig = payload.get(SIGNATURE_FIELD)
    if not isinstance(sig, str) or not _SIG.fullmatch(sig):
        return False
    try:
        expected = key.mac(signing_input(payload, topic=topic, context=context))
    except JsonRejected:
        return False
    return hmac.compare_digest(expected, sig)


def sign_command(
    payload: Mapping[str, Any],
    secret: SigningKey | bytes | str | SecretStr,
    *,
    topic: str,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """Sign a command for ``topic``: adds ``ts`` (whole UNIX seconds), a fresh ``nonce``, a
    ``request_id`` when missing, and ``sig``. Operators (``facegate sign``) and tests use this."""
    body = {k: v for k, v in payload.items() if k != SIGNATURE_FIELD}
    body.setdefault("request_id", new_request_id())
    body["ts"] = int(time.time() if now is None else now)
    body["nonce"] = new_nonce() if nonce is None else nonce
    if not isinstance(body["nonce"], str) or not _NONCE.fullmatch(body["nonce"]):
        raise ConfigError("nonce must be 16-128 characters of [A-Za-z0-9_-]")
    return sign(body, SigningKey.coerce(secret), topic=topic, context="command")


# ------------------------------------------------------------------------------------------- commands


def _field(loc: str, msg: str, kind: str = "value_error") -> FieldErrorPayload:
    return FieldErrorPayload(loc=loc, msg=msg, type=kind)


def _timestamp(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        ts = float(value)
    except OverflowError:  # an integer beyond the float range
        return None
    return ts if math.isfinite(ts) else None


def _nonce(value: object) -> str | None:
    return value if isinstance(value, str) and _NONCE.fullmatch(value) else None


class CommandVerifier:
    """Signature, timestamp and nonce checks of incoming commands (in that order).

    ``key=None`` means no secret is configured: every command is refused (``no_secret``) unless
    ``allow_unsigned``. With ``allow_unsigned`` an *unsigned* command is accepted without freshness
    checks (development only); a signed one is still verified in full.
    """

    def __init__(
        self,
        key: SigningKey | None,
        *,
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        replay_guard: ReplayGuard | None = None,
        allow_unsigned: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (math.isfinite(max_skew_s) and max_skew_s > 0):
            raise ConfigError(f"max_skew_s must be > 0, got {max_skew_s}")
        self.key = key
        self.max_skew_s = float(max_skew_s)
        self.replay_guard = replay_guard if replay_guard is not None else ReplayGuard(max_skew_s, clock=clock)
        if self.replay_guard.window_s < self.max_skew_s:
            raise ConfigError("the replay guard must remember nonces at least as long as max_skew_s")
        self.allow_unsigned = allow_unsigned
        self._clock = clock
        if allow_unsigned:
            logger.warning("remote commands: UNSIGNED commands are accepted (allow_unsigned; development only)")

    def verify(self, payload: Mapping[str, Any], *, topic: str) -> bool:
        """Raise :class:`CommandRejected` unless ``payload`` may act; returns whether it was signed."""
        if SIGNATURE_FIELD not in payload:
            if self.allow_unsigned:
                return False
            raise CommandRejected("unsigned", "commands must be signed (see `facegate sign`)")
        if self.key is None:
            raise CommandRejected("no_secret", "this device has no command secret to verify commands with")
        if not signature_valid(payload, self.key, topic=topic, context="command"):
            raise CommandRejected("bad_signature", "signature does not match (wrong secret, topic or altered payload)")
        ts = _timestamp(payload.get("ts"))
        nonce = _nonce(payload.get("nonce"))
        problems: list[FieldErrorPayload] = []
        if ts is None:
            problems.append(_field("ts", "signed commands need 'ts', UNIX time in seconds", "missing"))
        if nonce is None:
            problems.append(_field("nonce", "signed commands need 'nonce', 16-128 characters of [A-Za-z0-9_-]",
                                   "missing"))
        if ts is None or nonce is None:
            raise CommandRejected("invalid", "signed command without a valid ts/nonce", problems)
        skew = self._clock() - ts
        if abs(skew) > self.max_skew_s:
            direction = "old" if skew > 0 else "in the future"
            raise CommandRejected(
                "stale", f"timestamp is {abs(skew):.0f} s {direction}; the limit is {self.max_skew_s:.0f} s"
            )
        try:
            freshness = self.replay_guard.check_and_remember(nonce, ts)
        except ReplayGuardFull as err:
            raise CommandRejected("busy", str(err)) from err
        except ReplayGuardUnavailable as err:
            raise CommandRejected("unavailable", str(err)) from err
        if freshness is Freshness.REPLAYED:
            raise CommandRejected("replayed", "this nonce was already used")
        if freshness is Freshness.BEFORE_BARRIER:
            raise CommandRejected(
                "stale", "signed before this daemon's replay window opened (it restarted); sign it again"
            )
        return True


# --------------------------------------------------------------------------------------------- events


def _iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class EventSigner:
    """Signs event payloads for one topic with the device's event key (``security.sign_events``)."""

    def __init__(self, key: SigningKey, topic: str) -> None:
        self.key = key
        self.topic = topic

    def sign(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return sign(payload, self.key, topic=self.topic, context="event")


def verify_event(
    event: bytes | str | Mapping[str, Any],
    key: SigningKey | bytes | str | SecretStr,
    *,
    topic: str,
    max_age_s: float = DEFAULT_MAX_SKEW_S,
    now: float | None = None,
    replay_guard: ReplayGuard | None = None,
) -> dict[str, Any]:
    """For a lock controller: check that an event came from the device holding ``key``, on ``topic``,
    is fresh (``time`` within ``max_age_s`` of ``now`` either way) and, with a ``replay_guard``, that
    its ``event_id`` was not seen before. Returns the event; raises :class:`CommandError` otherwise.

    The daemon delivers events at least once: after a broker outage a spooled event arrives late and
    is refused here as stale, which is what a door must do with an old "recognized".
    """
    if replay_guard is not None and replay_guard.window_s < max_age_s:
        raise ConfigError("the replay guard must remember event ids at least as long as max_age_s")
    if isinstance(event, (bytes, str)):
        try:
            payload: dict[str, Any] = parse_json_object(event.encode("utf-8") if isinstance(event, str) else event)
        except JsonRejected as err:
            raise CommandError(f"event is not acceptable JSON: {err}") from err
    else:
        payload = dict(event)
    if not signature_valid(payload, SigningKey.coerce(key), topic=topic, context="event"):
        raise CommandError("event signature missing or invalid")
    stamp = payload.get("time")
    event_id = payload.get("event_id")
    try:
        ts = _iso_seconds(stamp) if isinstance(stamp, str) else math.nan
    except ValueError:
        ts = math.nan
    if not math.isfinite(ts):
        raise CommandError("event has no valid 'time'")
    age = (time.time() if now is None else now) - ts
    if abs(age) > max_age_s:
        raise CommandError(f"event is stale: {age:.1f} s old (limit {max_age_s:.0f} s)")
    if replay_guard is not None:
        if not isinstance(event_id, str) or not event_id:
            raise CommandError("event has no event_id")
        if replay_guard.check_and_remember(event_id, ts) is not Freshness.FRESH:
            raise CommandError(f"event {event_id} was already seen")
    return payload


__all__ = [
    "CONTEXTS",
    "DEFAULT_MAX_SKEW_S",
    "MIN_KEY_BYTES",
    "SIGNATURE_FIELD",
    "CommandVerifier",
    "Context",
    "EventSigner",
    "SigningKey",
    "new_nonce",
    "new_request_id",
    "sign",
    "sign_command",
    "signature_valid",
    "signing_input",
    "verify_event",
]
