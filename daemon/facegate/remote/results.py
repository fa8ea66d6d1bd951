"""What a remote command produces and where it travels: result values, command and result topics, the
retained ``config/state`` payload, and the protocol of the running configuration they read.

Split from :mod:`facegate.remote.commands` so that the MQTT side (:mod:`facegate.remote.wiring`) and
the handler share these shapes without the wiring depending on how commands are executed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from facegate.config.loader import redacted_dump
from facegate.config.models import FacegateConfig
from facegate.config.runtime import PatchResult
from facegate.config.secrets import redact
from facegate.events.payloads import iso_utc
from facegate.events.topics import Topics
from facegate.remote.schemas import CommandKind, CommandResultPayload, ConfigStatePayload


class ConfigApplier(Protocol):
    """What the handler needs of the running configuration (:class:`~facegate.config.RuntimeConfig`)."""

    @property
    def config(self) -> FacegateConfig: ...

    @property
    def overrides(self) -> dict[str, Any]: ...

    def apply(self, patch: Any) -> PatchResult: ...

    def preview(self, patch: Any) -> PatchResult: ...

    def subscribe(self, listener: Callable[[PatchResult], None]) -> None: ...


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


__all__ = [
    "CommandResult",
    "ConfigApplier",
    "GalleryChange",
    "command_topic",
    "config_state_payload",
    "result_topic",
]
