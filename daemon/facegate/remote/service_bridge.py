"""Remote management inside the daemon (:class:`facegate.service.Service`).

``Service._build`` calls :func:`attach_remote` after the publisher, gallery and engine exist and before
the publisher starts. Threading follows the service's rule that only the frame loop touches the
pipeline: commands are validated and stored on the MQTT dispatcher thread, and

* an applied config patch goes in one hop to its owner: the command handler submits
  ``service.apply_config(new_config, rebuild)`` to the frame loop, where each stage takes its section
  live (``update_config``) and only the named components are rebuilt;
* photos sent for enrolment are embedded on the frame loop too (the TFLite interpreters are not
  thread-safe), the dispatcher waiting for the result;
* gallery changes (commands and fleet records) trigger ``service.people_changed`` on the frame loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any, Protocol

from facegate.config import RuntimeConfig
from facegate.config.models import FacegateConfig
from facegate.config.runtime import PatchResult
from facegate.engine import FaceEngine, FaceResult
from facegate.errors import FacegateError
from facegate.events.mqtt import MqttPublisher
from facegate.gallery.store import SqliteGallery
from facegate.remote.signing import EventSigner
from facegate.remote.wiring import RemoteControl, build_event_signer, build_remote
from facegate.types import ImageBGR

logger = logging.getLogger(__name__)

#: how long an enrolment waits for the frame loop to embed one photo
EMBED_TIMEOUT_S = 60.0


class ServiceLike(Protocol):
    """What the bridge uses of :class:`facegate.service.Service`."""

    config: FacegateConfig
    publisher: MqttPublisher | None
    gallery: SqliteGallery
    engine: FaceEngine

    @property
    def config_path(self) -> Any: ...

    def submit(self, action: Any) -> None: ...

    def apply_config(self, new: FacegateConfig, rebuild: frozenset[str] = ...) -> None: ...

    def people_changed(self) -> None: ...


class FrameLoopUnavailable(FacegateError):
    """The frame loop did not run the embedding in time (the daemon is stopping or stuck)."""


class FrameLoopEmbedder:
    """:class:`~facegate.remote.enrolment.PhotoEmbedder` that runs ``represent`` on the frame loop."""

    def __init__(self, service: ServiceLike, timeout_s: float = EMBED_TIMEOUT_S) -> None:
        self._service = service
        self._timeout_s = timeout_s

    @property
    def model_id(self) -> str:
        return self._service.engine.model_id

    @property
    def embedder(self) -> Any:
        return self._service.engine.embedder

    def represent(self, image: ImageBGR, *, enforce_detection: bool = True) -> list[FaceResult]:
        future: Future[list[FaceResult]] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(self._service.engine.represent(image, enforce_detection=enforce_detection))
            except BaseException as err:
                future.set_exception(err)

        self._service.submit(run)
        try:
            return future.result(timeout=self._timeout_s)
        except FutureTimeout:
            future.cancel()
            raise FrameLoopUnavailable(
                f"the pipeline did not process the photo within {self._timeout_s:.0f} s"
            ) from None


class ServiceRemote:
    """The object the service keeps as ``service.remote``."""

    def __init__(self, service: ServiceLike, environ: Mapping[str, str] | None = None) -> None:
        if service.publisher is None:
            raise FacegateError("remote management needs the MQTT publisher")
        self.service = service
        path = service.config_path
        # The runtime overlay is owned here: config/set writes it, SIGHUP reloads through reload().
        self.runtime = RuntimeConfig.open(path, environ=environ) if path is not None else RuntimeConfig(service.config)
        if self.runtime.config != service.config:
            logger.warning("the running configuration differs from YAML + runtime overrides (--no-overlay?); "
                           "remote changes apply on top of the YAML + overrides")
        self.signer: EventSigner | None = build_event_signer(service.config, service.publisher.topics, environ)
        self.control: RemoteControl = build_remote(
            service.config,
            publisher=service.publisher,
            runtime=self.runtime,
            gallery=service.gallery,
            embedder=lambda: FrameLoopEmbedder(service),
            environ=environ,
            # one hop to the owner of the settings: the frame loop applies the patch between two frames
            on_config_change=lambda result: service.submit(partial(service.apply_config, result.config,
                                                                   result.rebuild)),
            on_gallery_change=lambda _change: service.submit(service.people_changed),
            on_fleet_applied=lambda _outcome: service.submit(service.people_changed),
        )
        self.control.attach()

    def sign_event(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The event payload with ``sig`` when ``security.sign_events`` is on, else unchanged."""
        return self.signer.sign(payload) if self.signer is not None else payload

    def reload(self) -> PatchResult:
        """SIGHUP: re-read the YAML and replay the overrides (``config/state`` is republished by the
        subscription of :class:`RemoteControl`). The caller applies ``result.config`` and ``result.rebuild``."""
        return self.runtime.reload()

    def close(self) -> None:
        self.control.stop()


def attach_remote(service: ServiceLike, environ: Mapping[str, str] | None = None) -> ServiceRemote:
    """Build and attach remote management for ``service`` (see the module docstring)."""
    return ServiceRemote(service, environ)


__all__ = ["EMBED_TIMEOUT_S", "FrameLoopEmbedder", "FrameLoopUnavailable", "ServiceRemote", "attach_remote"]
