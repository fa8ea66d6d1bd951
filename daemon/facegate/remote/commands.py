"""The remote command handler: bytes in, one result out, side effects only for accepted commands.

It knows nothing about MQTT (:mod:`facegate.remote.wiring` connects it to the publisher), so it can be
driven and fuzzed in-process. Checks run in this order, and the first failure produces an error
result without touching anything:

1. payload size (``max_payload_bytes``), before any decoding;
2. JSON parsing (UTF-8, an object, no duplicate keys, no NaN, bounded depth);
3. signature, timestamp window and nonce (:class:`~facegate.remote.signing.CommandVerifier`);
4. rate limit (token bucket);
5. strict pydantic validation of the command (unknown keys and wrong types refused);
6. the action. Gallery changes are single SQLite transactions and config patches are validated in
   full before they are stored, so an action that fails also leaves everything as it was.

Payloads are parsed as JSON only: nothing is ``eval``'d or unpickled, and no path, URL or file name
in a payload is ever opened (photos travel inline as base64).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from facegate.config.models import GatesConfig, runtime_settable_keys
from facegate.config.runtime import PatchResult
from facegate.config.validation import ConfigValidationError
from facegate.errors import ConfigError, FacegateError, GalleryError
from facegate.events.payloads import iso_utc
from facegate.events.topics import Topics
from facegate.gallery.store import SqliteGallery
from facegate.remote.canonical import JsonRejected, parse_json_object
from facegate.remote.enrolment import EnrollPolicy, PhotoEmbedder, enroll
from facegate.remote.rate_limit import TokenBucket
from facegate.remote.results import (
    CommandResult,
    ConfigApplier,
    GalleryChange,
    command_topic,
    config_state_payload,
    result_topic,
)
from facegate.remote.schemas import (
    COMMAND_KINDS,
    COMMAND_MODELS,
    REQUEST_ID_PATTERN,
    RESULT_MODELS,
    CommandKind,
    CommandRejected,
    CommandResultPayload,
    ConfigGetCommand,
    ConfigGetOutcome,
    ConfigSetCommand,
    ConfigSetOutcome,
    ErrorPayload,
    FieldErrorPayload,
    GalleryEnrollCommand,
    GalleryListCommand,
    GalleryRemoveCommand,
    GalleryRenameCommand,
    ListOutcome,
    PersonPayload,
    RemoveOutcome,
    RenameOutcome,
    RuntimeKeyPayload,
    validation_fields,
)
from facegate.remote.signing import CommandVerifier

logger = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
_REQUEST_ID_MAX = 64
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
#: how much of an unparsed command :meth:`CommandHandler.busy` searches for its request id
_PEEK_BYTES = 4096
_REQUEST_ID_PEEK = re.compile(rb'"request_id"\s*:\s*"([A-Za-z0-9._:-]{1,64})"')


def _peek_request_id(payload: Mapping[str, Any]) -> str | None:
    """The request id to echo even in an error result, if it is well-formed."""
    value = payload.get("request_id")
    if isinstance(value, str) and len(value) <= _REQUEST_ID_MAX and _REQUEST_ID.fullmatch(value):
        return value
    return None


class CommandHandler:
    """Validates and executes remote commands for one device.

    Collaborators are injected and optional: without ``config`` the ``config/*`` commands answer
    ``unavailable``, likewise ``gallery`` for ``gallery/*`` and ``embedder`` for photo enrolment
    (``embedder`` is a zero-argument factory so the models load only when a photo arrives).
    ``on_config_change`` runs after a patch was stored and applied (the daemon rebuilds
    ``PatchResult.rebuild``); ``on_gallery_change`` after a person changed. Callback failures are
    logged; the command has then already succeeded.
    """

    def __init__(
        self,
        *,
        topics: Topics,
        verifier: CommandVerifier,
        config: ConfigApplier | None = None,
        gallery: SqliteGallery | None = None,
        embedder: Callable[[], PhotoEmbedder] | None = None,
        rate_limiter: TokenBucket | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        enroll_policy: EnrollPolicy | None = None,
        on_config_change: Callable[[PatchResult], None] | None = None,
        on_gallery_change: Callable[[GalleryChange], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_payload_bytes < 1:
            raise ConfigError("max_payload_bytes must be >= 1")
        self.topics = topics
        self.verifier = verifier
        self.config = config
        self.gallery = gallery
        self._embedder_factory = embedder
        self._embedder: PhotoEmbedder | None = None
        self.rate_limiter = rate_limiter
        self.max_payload_bytes = int(max_payload_bytes)
        self.enroll_policy = enroll_policy or EnrollPolicy()
        self.on_config_change = on_config_change
        self.on_gallery_change = on_gallery_change
        self._clock = clock
        self._actions: dict[CommandKind, Callable[[Any], CommandResultPayload]] = {
            "config/set": self._config_set,
            "config/get": self._config_get,
            "gallery/enroll": self._gallery_enroll,
            "gallery/remove": self._gallery_remove,
            "gallery/rename": self._gallery_rename,
            "gallery/list": self._gallery_list,
        }

    # --- entry point ---------------------------------------------------------------------------------
    def handle(self, kind: CommandKind, raw: bytes) -> CommandResult:
        """Process one command received on ``kind``'s topic. Never raises for any ``raw``."""
        if kind not in COMMAND_KINDS:
            raise ConfigError(f"unknown command kind {kind!r}; valid: {', '.join(COMMAND_KINDS)}")
        request_id: str | None = None
        try:
            if len(raw) > self.max_payload_bytes:
                raise CommandRejected(
                    "too_large", f"{len(raw)} bytes exceeds the limit of {self.max_payload_bytes} bytes"
                )
            try:
                data = parse_json_object(bytes(raw))
            except JsonRejected as err:
                raise CommandRejected("malformed", str(err)) from None
            request_id = _peek_request_id(data)
            self.verifier.verify(data, topic=command_topic(self.topics, kind))
            if self.rate_limiter is not None:
                wait = self.rate_limiter.try_acquire()
                if wait is not None:
                    raise CommandRejected(
                        "rate_limited", "too many commands; slow down", retry_after_s=round(wait + 0.05, 1)
                    )
            model = COMMAND_MODELS[kind]
            try:
                command = model.model_validate(data, strict=True)
            except ValidationError as err:
                raise CommandRejected("invalid", f"invalid {kind} command", validation_fields(err, data)) from None
            payload = self._actions[kind](command)
        except CommandRejected as err:
            payload = self._error(kind, request_id, err)
        except Exception:
            # A bug must not take the daemon down; the payload is not logged (it may hold photos).
            logger.exception("remote %s (request %s) failed unexpectedly", kind, request_id)
            payload = self._error(kind, request_id, CommandRejected("internal", "internal error; see the device log"))
        if payload.ok:
            logger.info("remote %s (request %s): ok", kind, request_id)
        else:
            error = payload.error
            logger.warning(
                "remote %s (request %s) rejected: %s", kind, request_id, error.code if error else "?"
            )
        return CommandResult(kind, result_topic(self.topics, kind), payload)

    def busy(self, kind: CommandKind, raw: bytes) -> CommandResult:
        """The ``busy`` answer to a command that found the command queue full: nothing was done, retry.

        Runs on the network thread during a flood, so it does not parse the payload: the request id is
        read with a bounded pattern from the first bytes (echoed only if well-formed)."""
        match = _REQUEST_ID_PEEK.search(bytes(raw[:_PEEK_BYTES]))
        request_id = _peek_request_id({"request_id": match.group(1).decode("ascii")}) if match else None
        error = CommandRejected("busy", "the device's command queue is full; nothing was done, retry later",
                                retry_after_s=1.0)
        return CommandResult(kind, result_topic(self.topics, kind), self._error(kind, request_id, error))

    # --- result building -----------------------------------------------------------------------------
    def _base(self, request_id: str | None, ok: bool) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "device_id": self.topics.device_id,
            "time": iso_utc(self._clock()),
            "ok": ok,
        }

    def _ok(self, kind: CommandKind, request_id: str, result: Any) -> CommandResultPayload:
        return RESULT_MODELS[kind].model_validate({**self._base(request_id, True), "result": result})

    def _error(self, kind: CommandKind, request_id: str | None, err: CommandRejected) -> CommandResultPayload:
        retry = err.retry_after_s if err.retry_after_s is None or math.isfinite(err.retry_after_s) else None
        error = ErrorPayload(code=err.code, message=err.message[:2048], fields=list(err.fields[:100]),
                             retry_after_s=retry)
        return RESULT_MODELS[kind].model_validate(
            {**self._base(request_id, False), "error": error, "result": err.result}
        )

    def _need_config(self) -> ConfigApplier:
        if self.config is None:
            raise CommandRejected("unavailable", "remote configuration is not available on this device")
        return self.config

    def _need_gallery(self) -> SqliteGallery:
        if self.gallery is None:
            raise CommandRejected("unavailable", "this device has no gallery")
        return self.gallery

    def _notify_gallery(self, change: GalleryChange) -> None:
        if self.on_gallery_change is None:
            return
        try:
            self.on_gallery_change(change)
        except Exception:
            logger.exception("gallery change callback failed for %s", change.person_id)

    # --- config --------------------------------------------------------------------------------------
    def _config_set(self, command: ConfigSetCommand) -> CommandResultPayload:
        applier = self._need_config()
        try:
            result = applier.preview(command.patch) if command.dry_run else applier.apply(command.patch)
        except ConfigValidationError as err:
            fields = [
                FieldErrorPayload(loc=(f"patch.{e.loc}" if e.loc else "patch")[:512], msg=e.msg[:1024],
                                  type=e.type[:64])
                for e in err.errors
            ]
            raise CommandRejected("invalid", "the patch was not applied", fields) from None
        except ConfigError as err:
            # e.g. the overlay could not be written: RuntimeConfig changes nothing then
            raise CommandRejected("unavailable", f"the patch was not applied: {err}") from None
        if not command.dry_run and result.changes and self.on_config_change is not None:
            try:
                self.on_config_change(result)
            except Exception:
                logger.exception("config change callback failed")
        outcome = ConfigSetOutcome(changed=list(result.changed), rebuild=sorted(result.rebuild),
                                   dry_run=command.dry_run)
        return self._ok("config/set", command.request_id, outcome)

    def _config_get(self, command: ConfigGetCommand) -> CommandResultPayload:
        applier = self._need_config()
        state = config_state_payload(applier, self.topics.device_id, now=self._clock())
        outcome = ConfigGetOutcome(
            config=state.config,
            overrides=state.overrides,
            runtime_keys=[RuntimeKeyPayload(key=k.path, effect=k.effect) for k in runtime_settable_keys()],
        )
        return self._ok("config/get", command.request_id, outcome)

    # --- gallery -------------------------------------------------------------------------------------
    def _gallery_remove(self, command: GalleryRemoveCommand) -> CommandResultPayload:
        gallery = self._need_gallery()
        try:
            version = gallery.remove(command.person_id)
        except GalleryError as err:
            raise self._gallery_rejection(err, command.person_id) from None
        self._notify_gallery(GalleryChange("remove", command.person_id, version))
        return self._ok("gallery/remove", command.request_id, RemoveOutcome(person_id=command.person_id,
                                                                            version=version))

    def _gallery_rename(self, command: GalleryRenameCommand) -> CommandResultPayload:
        gallery = self._need_gallery()
        try:
            version = gallery.rename(command.person_id, command.name)
        except GalleryError as err:
            raise self._gallery_rejection(err, command.person_id) from None
        self._notify_gallery(GalleryChange("rename", command.person_id, version))
        outcome = RenameOutcome(person_id=command.person_id, name=command.name, version=version)
        return self._ok("gallery/rename", command.request_id, outcome)

    def _gallery_list(self, command: GalleryListCommand) -> CommandResultPayload:
        gallery = self._need_gallery()
        try:
            revision = gallery.revision
            people = gallery.people(include_deleted=command.include_deleted)
        except GalleryError as err:
            raise CommandRejected("unavailable", f"cannot read the gallery: {err}") from None
        outcome = ListOutcome(
            revision=revision,
            people=[
                PersonPayload(
                    person_id=p.person_id,
                    name=p.name,
                    metadata=dict(p.metadata),
                    version=p.version,
                    updated_at=p.updated_at,
                    updated_by=p.updated_by,
                    deleted=p.deleted,
                    model_ids=list(p.model_ids),
                    embeddings=p.embedding_count,
                )
                for p in people
            ],
        )
        return self._ok("gallery/list", command.request_id, outcome)

    @staticmethod
    def _gallery_rejection(err: GalleryError, person_id: str) -> CommandRejected:
        text = str(err)
        if text.startswith("unknown person"):
            return CommandRejected("not_found", f"unknown person {person_id!r}",
                                   [FieldErrorPayload(loc="person_id", msg="no such person", type="not_found")])
        return CommandRejected("invalid", text)

    # --- enrolment -----------------------------------------------------------------------------------
    def _get_embedder(self) -> PhotoEmbedder:
        if self._embedder is None:
            if self._embedder_factory is None:
                raise CommandRejected("unavailable", "this device cannot embed photos (no model configured)")
            try:
                self._embedder = self._embedder_factory()
            except FacegateError as err:
                raise CommandRejected("unavailable", f"the face model cannot be loaded: {err}") from None
        return self._embedder

    def _gates(self) -> GatesConfig:
        return self.config.config.gates if self.config is not None else GatesConfig()

    def _gallery_enroll(self, command: GalleryEnrollCommand) -> CommandResultPayload:
        gallery = self._need_gallery()
        engine = self._get_embedder() if command.photos or self._embedder_factory is not None else None
        outcome, version = enroll(command, gallery, engine, gates=self._gates(), policy=self.enroll_policy)
        self._notify_gallery(GalleryChange("enroll", command.person_id, version))
        return self._ok("gallery/enroll", command.request_id, outcome)


__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "CommandHandler",
    "CommandResult",
    "ConfigApplier",
    "EnrollPolicy",
    "GalleryChange",
    "PhotoEmbedder",
    "command_topic",
    "config_state_payload",
    "result_topic",
]
