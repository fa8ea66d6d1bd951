"""Fleet gallery sync: devices on one broker converge on one gallery without a central server.

Every person is one retained MQTT message on ``<prefix>/fleet/<fleet_id>/gallery/<person_id>``: the
gallery's :class:`~facegate.gallery.records.PersonRecord` (embeddings, name, metadata, ``version``,
``updated_by``, and ``deleted`` for a tombstone) wrapped in a :class:`~facegate.remote.schemas.FleetMessage`
signed with the fleet secret (context ``facegate.fleet.v1``, bound to the topic).

Rules, applied by every device to every record it receives (live, or retained on (re)subscribe, which
is how a device that was offline catches up):

* **order**: the record with the higher ``(version, updated_by)`` wins (integer, then string); every
  local change bumps ``version`` and stamps ``updated_by`` with the device id (see
  :mod:`facegate.gallery.records`);
* **newer than mine** -> applied (embeddings replaced, tombstones delete the embeddings);
* **same as mine** -> nothing (this is also how a device ignores the echo of its own publication);
* **older than mine** -> the retained copy is stale (e.g. published by a device that was offline):
  this device republishes its own record, so the broker converges on the newest one;
* records whose signature does not verify, whose topic and ``person_id`` disagree, or that exceed
  the size limit are ignored with a warning; embeddings of another ``model_id`` than this device's
  are dropped with a warning (the person's name and version are still applied).

Local changes are published at once (:meth:`FleetSync.publish_person`, wired to the command handler),
and a background reconcile pass publishes every local record that is newer than what the broker was
seen to hold: after each (re)connect (once the retained records had ``settle_s`` to arrive) and
whenever the gallery's revision moves (e.g. ``facegate gallery`` or the folder sync changed it from
another process). Tombstones stay retained so that devices that were offline learn of the deletion.

A fleet should use one embedding model: a device that changes a person whose embeddings it had to
drop (other model) publishes a record without embeddings, which would then replace the others'.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import ValidationError

from facegate.errors import ConfigError, GalleryError
from facegate.events.mqtt_settings import ConnectHook, InboundMessage, MessageHandler
from facegate.events.topics import Topics
from facegate.gallery.records import ApplyOutcome, PersonRecord, validate_person_id
from facegate.gallery.store import SqliteGallery
from facegate.remote.canonical import JsonRejected, canonical_json, parse_json_object
from facegate.remote.schemas import FleetMessage
from facegate.remote.signing import SigningKey, sign, signature_valid

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
OrderKey = tuple[int, str]

FleetAction = Literal["applied", "same", "echo", "republished", "ignored", "cleared"]


class FleetTransport(Protocol):
    """The parts of :class:`~facegate.events.mqtt.MqttPublisher` fleet sync uses."""

    def subscribe(self, topic_filter: str, handler: MessageHandler, *, qos: int = 1) -> None: ...

    def add_on_connect(self, hook: ConnectHook) -> None: ...

    def publish_message(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> bool: ...

    @property
    def is_connected(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class FleetOutcome:
    """What :meth:`FleetSync.handle_message` did with one message."""

    action: FleetAction
    person_id: str | None
    detail: str = ""
    applied: ApplyOutcome | None = None


class FleetSync:
    """Publishes this device's person records and applies the fleet's (see the module docstring).

    ``key=None`` with ``allow_unsigned=False`` refuses to construct: unsigned records would let anyone
    with broker access enrol faces. ``model_id`` is this device's embedding model (records of other
    models are applied without their embeddings). ``on_applied`` runs after a remote record changed
    the local gallery (refresh matchers, Home Assistant entities, ...).
    """

    def __init__(
        self,
        gallery: SqliteGallery,
        *,
        topics: Topics,
        fleet_id: str,
        key: SigningKey | None,
        allow_unsigned: bool = False,
        model_id: str | None = None,
        settle_s: float = 2.0,
        poll_s: float = 5.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        include_images: bool = False,
        on_applied: Callable[[ApplyOutcome], None] | None = None,
    ) -> None:
        if key is None and not allow_unsigned:
            raise ConfigError("fleet sync needs the fleet secret (or allow_unsigned for development)")
        if settle_s < 0 or poll_s <= 0:
            raise ConfigError("fleet settle_s must be >= 0 and poll_s > 0")
        self.gallery = gallery
        self.topics = topics
        self.fleet_id = fleet_id
        self.filter = topics.fleet_gallery_filter(fleet_id)
        self.key = key
        self.allow_unsigned = allow_unsigned
        self.model_id = model_id if model_id is not None else gallery.model_id
        self.settle_s = float(settle_s)
        self.poll_s = float(poll_s)
        self.max_message_bytes = int(max_message_bytes)
        self.include_images = include_images
        self.on_applied = on_applied
        self._lock = threading.Lock()
        self._remote: dict[str, OrderKey] = {}  # what the broker was seen to retain
        self._published: dict[str, OrderKey] = {}  # what this process handed to the broker
        self._transport: FleetTransport | None = None
        self._reconcile_at: float | None = None
        self._last_revision: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def device_id(self) -> str:
        return self.topics.device_id

    # --- lifecycle ---------------------------------------------------------------------------------
    def attach(self, transport: FleetTransport) -> None:
        """Subscribe to the fleet's records, reconcile after every connect, start the poll thread."""
        if self._transport is not None:
            raise ConfigError("fleet sync is already attached")
        self._transport = transport
        transport.subscribe(self.filter, self._on_message, qos=1)
        transport.add_on_connect(self._on_connect)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="fleet-sync", daemon=True)
        self._thread.start()
        logger.info("fleet sync: fleet %s on %s", self.fleet_id, self.filter)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _on_connect(self) -> None:
        with self._lock:
            self._reconcile_at = time.monotonic() + self.settle_s
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                due = self._reconcile_at
            timeout = self.poll_s if due is None else max(0.0, min(self.poll_s, due - time.monotonic()))
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                return
            transport = self._transport
            if transport is None or not transport.is_connected:
                continue
            try:
                with self._lock:
                    due = self._reconcile_at
                    settled = due is None or time.monotonic() >= due
                if not settled:
                    continue
                revision = self.gallery.revision
                if due is not None or revision != self._last_revision:
                    with self._lock:
                        self._reconcile_at = None
                    self._last_revision = revision
                    self.reconcile()
            except Exception:
                logger.exception("fleet sync: reconcile failed; retrying")

    # --- publishing --------------------------------------------------------------------------------
    def message_for(self, record: PersonRecord) -> bytes:
        """The signed wire form of ``record``."""
        body = FleetMessage(origin=self.device_id, record=record).model_dump(mode="json", exclude={"sig"})
        topic = self.topics.fleet_gallery(self.fleet_id, record.person_id)
        if self.key is not None:
            body = sign(body, self.key, topic=topic, context="fleet")
        return canonical_json(body)

    def publish_person(self, person_id: str) -> bool:
        """Publish (retained) this device's current record of ``person_id``; False if not sent."""
        transport = self._transport
        if transport is None:
            return False
        try:
            record = self.gallery.record(person_id, include_images=self.include_images)
        except GalleryError as err:
            logger.warning("fleet sync: cannot read %s: %s", person_id, err)
            return False
        try:
            payload = self.message_for(record)
        except JsonRejected as err:
            logger.error("fleet sync: record of %s cannot be serialised: %s", person_id, err)
            return False
        if len(payload) > self.max_message_bytes:
            logger.error("fleet sync: record of %s is %d bytes (> %d); not published",
                         person_id, len(payload), self.max_message_bytes)
            return False
        topic = self.topics.fleet_gallery(self.fleet_id, person_id)
        sent = transport.publish_message(topic, payload, qos=1, retain=True)
        if sent:
            with self._lock:
                self._published[person_id] = record.order_key
            logger.info("fleet sync: published %s v%d%s", person_id, record.version,
                        " (tombstone)" if record.deleted else "")
        return sent

    def reconcile(self) -> int:
        """Publish every local record newer than what the broker holds; returns how many were sent."""
        sent = 0
        for person in self.gallery.people(include_deleted=True):
            mine: OrderKey = (person.version, person.updated_by)
            with self._lock:
                known = [k for k in (self._remote.get(person.person_id), self._published.get(person.person_id)) if k]
            if (not known or mine > max(known)) and self.publish_person(person.person_id):
                sent += 1
        if sent:
            logger.info("fleet sync: reconcile published %d record(s)", sent)
        return sent

    # --- receiving ---------------------------------------------------------------------------------
    def _ignore(self, person_id: str | None, why: str) -> FleetOutcome:
        logger.warning("fleet sync: ignored record%s: %s", f" of {person_id}" if person_id else "", why)
        return FleetOutcome("ignored", person_id, why)

    def _on_message(self, message: InboundMessage) -> None:
        self.handle_message(message)

    def handle_message(self, message: InboundMessage) -> FleetOutcome:
        """Verify and apply one fleet message (the subscription handler). Never raises."""
        try:
            return self._handle(message)
        except Exception:
            logger.exception("fleet sync: failed to process %s", message.topic)
            return FleetOutcome("ignored", None, "internal error")

    def _handle(self, message: InboundMessage) -> FleetOutcome:
        prefix = self.filter[:-1]  # ".../gallery/"
        if not message.topic.startswith(prefix):
            return self._ignore(None, f"unexpected topic {message.topic[:200]!r}")
        person_id = message.topic[len(prefix):]
        try:
            validate_person_id(person_id)
        except GalleryError:
            return self._ignore(None, "topic does not end in a valid person id")
        if not message.payload:
            # Forget what the broker held and what this device published: the reconcile pass then
            # republishes the local record, if there is one. (Nothing is stored for unknown ids, so
            # unauthenticated empty messages cannot grow memory.)
            with self._lock:
                self._remote.pop(person_id, None)
                self._published.pop(person_id, None)
                self._reconcile_at = time.monotonic()
            self._wake.set()
            return FleetOutcome("cleared", person_id, "retained record cleared")
        if len(message.payload) > self.max_message_bytes:
            return self._ignore(person_id, f"{len(message.payload)} bytes exceeds {self.max_message_bytes}")
        try:
            data = parse_json_object(message.payload)
        except JsonRejected as err:
            return self._ignore(person_id, f"not acceptable JSON: {err}")
        if "sig" in data:
            if self.key is None:
                return self._ignore(person_id, "signed, but this device has no fleet secret")
            if not signature_valid(data, self.key, topic=message.topic, context="fleet"):
                return self._ignore(person_id, "bad signature")
        elif self.key is not None or not self.allow_unsigned:
            return self._ignore(person_id, "unsigned")
        try:
            parsed = FleetMessage.model_validate(data)
        except ValidationError as err:
            return self._ignore(person_id, f"invalid record ({err.error_count()} error(s))")
        record = parsed.record
        if record.person_id != person_id:
            return self._ignore(person_id, f"record is for {record.person_id!r}")
        with self._lock:
            self._remote[person_id] = record.order_key
        try:
            local = self.gallery.person(person_id, include_deleted=True)
            mine: OrderKey | None = (local.version, local.updated_by)
        except GalleryError:
            mine = None
        if mine == record.order_key:
            return FleetOutcome("echo" if parsed.origin == self.device_id else "same", person_id)
        if mine is not None and mine > record.order_key:
            self.publish_person(person_id)
            return FleetOutcome("republished", person_id, f"broker held v{record.version}; local is v{mine[0]}")
        if record.embeddings and self.model_id is not None and record.embeddings[0].model_id != self.model_id:
            logger.warning(
                "fleet sync: %s v%d from %s has embeddings of model %s; this device uses %s: ignoring them",
                person_id, record.version, parsed.origin, record.embeddings[0].model_id, self.model_id,
            )
            record = record.model_copy(update={"embeddings": []})
        outcome = self.gallery.apply_record(record)
        if not outcome.applied:
            return FleetOutcome("same", person_id, outcome.reason, outcome)
        logger.info("fleet sync: applied %s v%d from %s%s", person_id, record.version, parsed.origin,
                    " (tombstone)" if record.deleted else "")
        if self.on_applied is not None:
            try:
                self.on_applied(outcome)
            except Exception:
                logger.exception("fleet sync: on_applied callback failed for %s", person_id)
        return FleetOutcome("applied", person_id, "", outcome)


__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "FleetOutcome", "FleetSync", "FleetTransport"]
