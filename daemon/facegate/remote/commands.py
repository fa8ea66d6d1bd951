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

import base64
import binascii
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import cv2
import numpy as np
from pydantic import ValidationError

from facegate.config.loader import redacted_dump
from facegate.config.models import FacegateConfig, GatesConfig, runtime_settable_keys
from facegate.config.runtime import PatchResult
from facegate.config.secrets import redact
from facegate.config.validation import ConfigValidationError
from facegate.engine import FaceResult
from facegate.errors import ConfigError, FacegateError, GalleryError, ImageError, NoFaceError
from facegate.events.payloads import iso_utc
from facegate.events.topics import Topics
from facegate.face_confirm import confirm_human_face
from facegate.gallery.records import EnrollItem, EnrollReport
from facegate.gallery.store import SqliteGallery
from facegate.images import decode_base64, decode_bytes, sniff_format
from facegate.remote.canonical import JsonRejected, parse_json_object
from facegate.remote.rate_limit import TokenBucket
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
    ConfigStatePayload,
    EnrollOutcome,
    ErrorPayload,
    FieldErrorPayload,
    GalleryEnrollCommand,
    GalleryListCommand,
    GalleryRemoveCommand,
    GalleryRenameCommand,
    ItemReport,
    ListOutcome,
    PersonPayload,
    PhotoInput,
    RemoveOutcome,
    RenameOutcome,
    RuntimeKeyPayload,
    validation_fields,
)
from facegate.remote.signing import CommandVerifier
from facegate.types import Embedding, ImageBGR

logger = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
_REQUEST_ID_MAX = 64


class ConfigApplier(Protocol):
    """What the handler needs of the running configuration (:class:`~facegate.config.RuntimeConfig`)."""

    @property
    def config(self) -> FacegateConfig: ...

    @property
    def overrides(self) -> dict[str, Any]: ...

    def apply(self, patch: Any) -> PatchResult: ...

    def preview(self, patch: Any) -> PatchResult: ...


class _Dimensioned(Protocol):
    @property
    def dim(self) -> int: ...


class PhotoEmbedder(Protocol):
    """Detection + alignment + embedding of a photo (:class:`~facegate.engine.FaceEngine`)."""

    @property
    def model_id(self) -> str: ...

    @property
    def embedder(self) -> _Dimensioned: ...

    def represent(self, image: ImageBGR, *, enforce_detection: bool = True) -> list[FaceResult]: ...


@dataclass(frozen=True, slots=True)
class GalleryChange:
    """A person changed by an accepted command (for fleet publishing, Home Assistant entities, ...)."""

    operation: Literal["enroll", "remove", "rename"]
    person_id: str
    version: int


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What :meth:`CommandHandler.handle` returns: the result payload and where to publish it."""

    kind: CommandKind
    topic: str
    payload: CommandResultPayload

    @property
    def ok(self) -> bool:
        return self.payload.ok

    @property
    def code(self) -> str | None:
        """The error code, ``None`` for success."""
        return None if self.payload.error is None else self.payload.error.code

    @property
    def request_id(self) -> str | None:
        return self.payload.request_id

    def to_json(self) -> bytes:
        return self.payload.model_dump_json().encode("utf-8")


def result_topic(topics: Topics, kind: CommandKind) -> str:
    if kind.startswith("config/"):
        return topics.config_result
    return topics.gallery_result(kind.split("/", 1)[1])


def command_topic(topics: Topics, kind: CommandKind) -> str:
    if kind == "config/set":
        return topics.config_set
    if kind == "config/get":
        return topics.config_get
    return topics.gallery_command(kind.split("/", 1)[1])


def config_state_payload(config: ConfigApplier, device_id: str, *, now: float | None = None) -> ConfigStatePayload:
    """The retained ``config/state`` message: effective config and overlay, secrets redacted."""
    return ConfigStatePayload(
        device_id=device_id,
        time=iso_utc(time.time() if now is None else now),
        config=redacted_dump(config.config),
        overrides=redact(config.overrides),
    )


@dataclass(frozen=True, slots=True)
class EnrollPolicy:
    """Screening of photos sent for enrolment; the quality gates come from the live config and the
    pixel cap is the process's one (:func:`facegate.images.set_max_pixels`)."""

    formats: tuple[str, ...] = ("jpeg", "png")


class _Abort(Exception):
    """Rolls back an enrolment transaction that stored nothing."""

    def __init__(self, report: EnrollReport) -> None:
        super().__init__("nothing stored")
        self.report = report


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

    def _photo(self, engine: PhotoEmbedder, index: int, photo: PhotoInput, store_image: bool
               ) -> tuple[ItemReport, EnrollItem | None]:
        label = photo.label

        def report(outcome: Any, detail: str, **extra: Any) -> tuple[ItemReport, None]:
            return ItemReport(index=index, label=label, outcome=outcome, detail=detail, **extra), None

        try:
            data = decode_base64(photo.image)
        except ImageError:
            return report("bad_image", "not valid base64")
        fmt = sniff_format(data)
        if fmt not in self.enroll_policy.formats:
            return report("bad_image", "not a JPEG or PNG image")
        try:  # the process's pixel cap (security.max_image_pixels), checked on the header first
            image = decode_bytes(data, name=f"photo {index}")
        except ImageError as err:
            return report("bad_image", str(err)[:200])
        try:
            faces = engine.represent(image, enforce_detection=False)
        except ImageError as err:
            return report("bad_image", str(err)[:200])
        except NoFaceError:
            faces = []
        if not faces:
            return report("no_face", "no face found", faces=0)
        if len(faces) > 1:
            return report("several_faces", f"{len(faces)} faces found; send a photo of one person", faces=len(faces))
        face = faces[0]
        check = confirm_human_face(image, face.detection)  # BlazeFace alone accepts dog and cat faces
        if not check.confirmed:
            return report("no_face", check.detail, faces=1)
        quality = face.aligned.quality
        gates = self._gates()
        problems = []
        if quality.face_size < gates.min_face_px:
            problems.append(f"face too small ({quality.face_size:.0f} px between the eyes < {gates.min_face_px:g})")
        if quality.sharpness < gates.min_sharpness:
            problems.append(f"too blurry (sharpness {quality.sharpness:.0f} < {gates.min_sharpness:g})")
        if abs(quality.yaw) > gates.max_yaw:
            problems.append(f"face turned away (yaw {quality.yaw:.2f} > {gates.max_yaw:g})")
        if problems or face.embedding is None:
            detail = "; ".join(problems) or "no embedding"
            return report("low_quality", detail, faces=1, quality=round(quality.score, 3))
        chip: bytes | None = None
        if store_image:
            ok, encoded = cv2.imencode(".jpg", face.aligned.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            chip = encoded.tobytes() if ok else None
        item = EnrollItem(
            embedding=face.embedding,
            detector=face.detection.detector,
            alignment=face.aligned.template,
            quality=quality.score,
            source_sha256=hashlib.sha256(data).hexdigest(),
            label=label,
            face_image=chip,
        )
        return ItemReport(index=index, label=label, outcome="ok", faces=1, quality=round(quality.score, 3)), item

    @staticmethod
    def _vector(value: list[float] | str) -> np.ndarray[Any, np.dtype[np.float32]]:
        if isinstance(value, str):
            raw = base64.b64decode(value, validate=True)
            if len(raw) % 4:
                raise ValueError("base64 vector length is not a multiple of 4 bytes")
            return np.frombuffer(raw, dtype="<f4").astype(np.float32)
        with np.errstate(over="ignore"):
            return np.asarray(value, dtype=np.float64).astype(np.float32)

    def _gallery_enroll(self, command: GalleryEnrollCommand) -> CommandResultPayload:
        gallery = self._need_gallery()
        # The model (and its dimension) of this device; embeddings alone need it too, so that a wrong
        # vector length cannot become the first entry of an empty gallery.
        engine = self._get_embedder() if command.photos or self._embedder_factory is not None else None
        expected_model = engine.model_id if engine is not None else gallery.model_id
        expected_dim = engine.embedder.dim if engine is not None else None
        photo_reports: dict[int, ItemReport] = {}
        emb_reports: dict[int, ItemReport] = {}
        items: list[EnrollItem] = []
        origin: list[tuple[str, int]] = []  # per item: ("photo"|"embedding", index)
        for i, photo in enumerate(command.photos):
            if engine is None:  # pragma: no cover - loaded above whenever there are photos
                raise CommandRejected("unavailable", "no face model")
            try:
                rep, item = self._photo(engine, i, photo, gallery.store_face_images)
            except CommandRejected:
                raise
            except FacegateError as err:  # e.g. the daemon's frame loop did not run the embedding
                raise CommandRejected("unavailable", f"photos cannot be processed now: {err}") from None
            photo_reports[i] = rep
            if item is not None:
                items.append(item)
                origin.append(("photo", i))
        for j, emb in enumerate(command.embeddings):
            if expected_model is not None and emb.model_id != expected_model:
                emb_reports[j] = ItemReport(index=j, label=emb.label, outcome="model_mismatch",
                                            detail=f"this device uses model {expected_model!r}")
                continue
            try:
                vector = self._vector(emb.vector)
            except (ValueError, binascii.Error):
                emb_reports[j] = ItemReport(index=j, label=emb.label, outcome="invalid", detail="not valid base64")
                continue
            if expected_dim is not None and vector.shape[0] != expected_dim:
                detail = f"{vector.shape[0]} values; model {expected_model} has {expected_dim}"
                emb_reports[j] = ItemReport(index=j, label=emb.label, outcome="invalid", detail=detail)
                continue
            if not np.all(np.isfinite(vector)) or not np.any(vector):
                emb_reports[j] = ItemReport(index=j, label=emb.label, outcome="invalid",
                                            detail="vector contains NaN/infinity or is all zeros")
                continue
            emb_reports[j] = ItemReport(index=j, label=emb.label, outcome="ok")
            items.append(EnrollItem(embedding=Embedding(vector, emb.model_id), detector="remote",
                                    alignment="remote", label=emb.label))
            origin.append(("embedding", j))

        report: EnrollReport | None = None
        if items:
            try:
                with gallery.transaction("remote enroll") as txn:
                    report = txn.enroll(command.person_id, command.name, items, command.metadata, command.replace)
                    if not report.stored:
                        raise _Abort(report)
            except _Abort as abort:
                report = abort.report
            except GalleryError as err:
                raise CommandRejected("invalid", str(err)[:500]) from None
            for rejected in report.rejected:
                kind, idx = origin[rejected.index]
                target = photo_reports if kind == "photo" else emb_reports
                old = target[idx]
                target[idx] = ItemReport(
                    index=idx, label=old.label, outcome="outlier" if rejected.reason == "outlier" else "duplicate",
                    detail=rejected.detail[:200], faces=old.faces, quality=old.quality,
                    distance=None if rejected.distance is None or not math.isfinite(rejected.distance)
                    else round(rejected.distance, 4),
                )
        stored = len(report.stored) if report is not None else 0
        outcome = EnrollOutcome(
            person_id=command.person_id,
            name=command.name,
            version=report.version if report is not None and stored else None,
            created=bool(report is not None and stored and report.created),
            stored=stored,
            photos=[photo_reports[i] for i in sorted(photo_reports)],
            embeddings=[emb_reports[j] for j in sorted(emb_reports)],
        )
        if report is None or not stored:
            raise CommandRejected("nothing_enrolled", "no photo or embedding was acceptable; nothing changed",
                                  result=outcome)
        self._notify_gallery(GalleryChange("enroll", command.person_id, report.version))
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
