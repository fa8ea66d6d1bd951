"""The daemon: builds the components from the configuration and runs the frame loop.

Threads: one capture thread per camera (``CaptureRunner``) feeding a bounded hand-off that drops the
oldest frame; this module's frame loop (inference, decisions, publishing); paho's network thread and
the publisher's sender/dispatcher threads. Remote commands arrive on the dispatcher thread and are
applied between frames (``_pending`` queue), so the pipeline is only ever touched by the frame loop.

Lifecycle: ``READY=1`` once the models are loaded, the spool is open and a camera delivered its first
frame, or after ``READY_TIMEOUT_S`` without one (then with ``STATUS=degraded: ...``, so systemd neither
waits for ever nor kill-loops a daemon whose camera is unplugged; the broker may still be connecting:
events are spooled meanwhile). Camera health is checked from the frame loop and published on change
(:mod:`facegate.service_health`). ``WATCHDOG=1`` from the frame loop, so a hung pipeline is restarted
by systemd; SIGTERM/SIGINT stop cleanly (retained ``stopped``); SIGHUP reloads the YAML and the runtime
overlay and rebuilds only what changed.

Beside it: :mod:`facegate.service_build` builds each component from its config section,
:mod:`facegate.service_events` sends each event to its sinks, :mod:`facegate.service_health` evaluates
camera health, readiness and the stats payload.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from facegate import images, sdnotify
from facegate.capture.handoff import FrameHandoff
from facegate.capture.health import CameraStatus
from facegate.capture.runner import CaptureRunner
from facegate.config.models import FacegateConfig
from facegate.config.state_dir import require_state_dir
from facegate.errors import CaptureFatal, FacegateError, ModelNotInstalledError
from facegate.events.mqtt import JsonLinesSink, MqttPublisher
from facegate.events.payloads import STATUS_DEGRADED, StatsPayload
from facegate.events.topics import Topics
from facegate.file_pages import WarmRelease, release_file_pages
from facegate.memory import release_free_memory
from facegate.model_check import require_models
from facegate.service_build import (
    build_analyzer,
    build_capture,
    build_engine,
    build_liveness,
    build_matcher,
    build_pipeline,
    build_spool,
    gate_config,
    mqtt_settings,
    thresholds,
    tracker_config,
    voting_config,
)
from facegate.service_events import EventOutput, snapshot_jpeg
from facegate.service_health import READY_TIMEOUT_S, DeviceHealth, stats_payload
from facegate.stats import Stats
from facegate.types import FaceEvent, Frame

if TYPE_CHECKING:  # the remote module is optional in a build; imported when remote management starts
    from facegate.remote.service_bridge import ServiceRemote

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FATAL = 5

#: how often the frame loop re-evaluates camera health
HEALTH_INTERVAL_S = 0.2
#: seconds after READY (and after a rebuild) when the file pages of the first frames are unmapped
#: (:class:`facegate.file_pages.WarmRelease`): by then frames have run through every stage
WARM_RELEASE_S = 5.0


@dataclass
class ServiceCounters:
    events: dict[str, int] = field(default_factory=dict)


class Service:
    """One facegate daemon process.

    ``stdout`` (a text stream) receives every event as a JSON line, after it was committed to the spool;
    ``lossless`` makes replays wait for the pipeline instead of dropping frames (demo and tests);
    ``on_event`` is called for every event.
    """

    def __init__(
        self,
        config: FacegateConfig,
        *,
        config_path: Path | None = None,
        stdout: TextIO | None = None,
        lossless: bool = False,
        on_event: Callable[[FaceEvent], None] | None = None,
        warm_release_s: float = WARM_RELEASE_S,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.lossless = lossless
        self.on_event = on_event
        self.stop_event = threading.Event()
        self._reload_requested = threading.Event()
        self._pending: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.stats = Stats()
        self._stdout = JsonLinesSink(stdout) if stdout is not None else None
        self.publisher: MqttPublisher | None = None
        self.discovery: Any = None
        self.remote: ServiceRemote | None = None
        self.runner: CaptureRunner | None = None
        self.handoff: FrameHandoff | None = None
        self._started = time.monotonic()
        self._last_stats = 0.0
        self.counters = ServiceCounters()
        self.ready_timeout_s = READY_TIMEOUT_S
        self._last_health = 0.0
        self.warm_release = WarmRelease(warm_release_s)
        self._build()
        self.health = DeviceHealth(self.topics, self.publisher)

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        cfg = self.config
        paths = cfg.paths
        images.set_max_pixels(cfg.security.max_image_pixels)
        require_state_dir(paths.state_dir)
        # a build-on-demand model the wheel leaves out: refused with how to build it, before anything starts
        require_models(cfg)
        self.topics = Topics(cfg.device.device_id, prefix=cfg.mqtt.prefix,
                             discovery_prefix=cfg.homeassistant.discovery_prefix)
        self.engine = build_engine(cfg)
        self.gallery = self.engine.open_gallery(paths.gallery, device_id=cfg.device.device_id,
                                                store_face_images=cfg.gallery.store_face_images)
        self.matcher = build_matcher(cfg, self.gallery, self.engine)
        self.pipeline = build_pipeline(cfg, self.engine, self.matcher, self.stats)
        if cfg.mqtt.enabled:
            self.publisher = MqttPublisher(self.topics, mqtt_settings(cfg), spool=build_spool(cfg), own_spool=True)
        self.output = EventOutput(cfg, self.topics, self.publisher, self._stdout,
                                  presence_timeout_s=self._presence_timeout())
        #: presence per person (retained, before "online"), fed sightings by the frame loop
        self.presence = self.output.presence
        if self.publisher is not None:
            if cfg.homeassistant.enabled:
                from facegate.events.homeassistant import HaDeviceInfo, HomeAssistantDiscovery

                self.discovery = HomeAssistantDiscovery(
                    self.publisher, self.topics, HaDeviceInfo(name=cfg.device.name or cfg.device.device_id),
                    cameras={c.id: c.name for c in cfg.cameras if c.enabled},
                    people={p.person_id: p.name for p in self.gallery.people()},
                    snapshots=cfg.mqtt.snapshots,
                    state_path=paths.state_dir / "homeassistant.json",
                )
            self._build_remote()
            self._sign_at_publish()
            if self.remote is not None:
                self.output.sign = self.remote.sign_event

    def _sign_at_publish(self) -> None:
        """Events are signed when published (the signature covers ``age_s``/``late`` and the topic)."""
        signer = self.remote.signer if self.remote is not None else None
        if self.publisher is None or signer is None:
            return
        from facegate.remote.signing import sign

        key = signer.key
        self.publisher.freshness.signer = lambda payload, topic: sign(payload, key, topic=topic, context="event")

    def _build_remote(self) -> None:
        """Remote configuration, enrolment, fleet sync and event signing (with a broker; the remote module
        itself honours ``security.commands_enabled``)."""
        if self.publisher is None:
            return
        try:
            from facegate.remote.service_bridge import attach_remote
        except ImportError:  # remote management not installed in this build
            return
        self.remote = attach_remote(self)

    def _build_capture(self) -> None:
        self.handoff, self.runner = build_capture(self.config, self.stop_event, lossless=self.lossless)
        if self.runner is None:
            # every camera disabled (possibly remotely): idle, still answering commands, until one is enabled
            logger.warning("no camera is enabled; waiting for configuration")

    # ------------------------------------------------------------------ running
    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            logger.info("signal %d: stopping", signum)
            self.stop_event.set()
            if self.handoff is not None:
                self.handoff.wake()

        def reload(_signum: int, _frame: FrameType | None) -> None:
            self._reload_requested.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def submit(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the frame loop between frames (thread-safe)."""
        self._pending.put(action)
        if self.handoff is not None:
            self.handoff.wake()

    def run(self) -> int:
        """Run until stopped, or until every (finite) source has ended. Returns an exit code."""
        self._build_capture()
        if self.publisher is not None:
            if self.presence is not None:
                # absent for everyone, published before "online" (no stale "present" on an available entity)
                self.presence.reset({p.person_id: p.name for p in self.gallery.people()})
            # "online" only once a camera delivers frames (set by the health check)
            self.publisher.set_status(STATUS_DEGRADED)
            self.publisher.start()
            if self.discovery is not None:
                self.discovery.attach()
        cameras = 0
        if self.runner is not None:
            self.runner.start()
            cameras = len(self.runner.cameras)
        self.health.start(time.monotonic(), self.ready_timeout_s)
        logger.info("facegate started: %d camera(s), model %s, detector %s, gallery %d people",
                    cameras, self.engine.model_id, self.engine.detector_backend, len(self.gallery.people()))
        watchdog = sdnotify.Watchdog()
        code = EXIT_OK
        try:
            code = self._loop(watchdog)
        finally:
            sdnotify.stopping("stopping")
            self.close()
        return code

    def _loop(self, watchdog: sdnotify.Watchdog) -> int:
        while not self.stop_event.is_set():
            watchdog.ping()
            self._drain_pending()
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self.reload()
            if self.runner is None or self.handoff is None:
                self.stop_event.wait(0.5)  # no camera: only commands and stats
                frame = None
            else:
                frame = self.handoff.get(0.5)
            now = time.monotonic()
            if frame is None:
                if self.runner is not None and self.handoff is not None and self.handoff.exhausted:
                    if self._all_failed():
                        logger.error("every camera failed permanently; exiting so systemd can restart us")
                        return EXIT_FATAL
                    logger.info("every source has ended")
                    break
            else:
                try:
                    events = self.pipeline.step(frame)
                except FacegateError as err:
                    logger.warning("frame %d of %s skipped: %s", frame.index, frame.camera, err)
                    events = []
                for event in events:
                    self._emit(event, frame)
                if self.presence is not None:
                    for camera, person_id in self.pipeline.sightings:
                        self.presence.sighting(person_id, camera)
            if self.presence is not None:
                self.presence.expire()
            if now - self._last_health >= HEALTH_INTERVAL_S:
                self._last_health = now
                self.check_camera_health(now)
                if self.warm_release.poll(now, self.ready_at) is not None:
                    release_free_memory()
            if now - self._last_stats >= self.config.stats.interval_s:
                self._last_stats = now
                self.publish_stats()
        return EXIT_OK

    # ------------------------------------------------------------------ camera health and readiness
    @property
    def ready_at(self) -> float | None:
        """When READY=1 was sent (monotonic), None before."""
        return self.health.ready_at

    def check_camera_health(self, now: float | None = None) -> dict[str, CameraStatus]:
        """Publish every camera whose condition changed, the device status, and READY when due."""
        return self.health.check(self.runner, time.monotonic() if now is None else now)

    def _all_failed(self) -> bool:
        if self.runner is None:
            return False
        health = self.runner.health()
        return bool(health) and all(h.state == "failed" for h in health.values())

    def _drain_pending(self) -> None:
        while True:
            try:
                action = self._pending.get_nowait()
            except queue.Empty:
                return
            try:
                action()
            except Exception:
                logger.exception("queued action failed")

    # ------------------------------------------------------------------ events and state
    def _emit(self, event: FaceEvent, frame: Frame | None = None) -> None:
        self.counters.events[event.type] = self.counters.events.get(event.type, 0) + 1
        self.output.emit(event, frame, device_id=self.config.device.device_id, snapshots=self.config.mqtt.snapshots)
        if self.on_event is not None:
            self.on_event(event)

    def _presence_timeout(self) -> float:
        # present until the cooldown after the last recognition has passed (at least 30 s)
        return max(30.0, self.config.decision.cooldown_s)

    def people_changed(self) -> None:
        """The gallery changed (enrolment, removal, fleet sync): refresh HA entities and presence."""
        people = {p.person_id: p.name for p in self.gallery.people()}
        if self.discovery is not None:
            self.discovery.set_people(people)
        if self.presence is not None:
            self.presence.set_people(people)
        # an enrolment ran the photo decoder and the second-opinion detector: their pages, 5 s from now
        self.warm_release.rearm(time.monotonic())

    def stats_payload(self) -> StatsPayload:
        return stats_payload(self.stats, self.runner, uptime_s=time.monotonic() - self._started,
                             gallery_size=len(self.gallery.people()), publisher=self.publisher)

    def publish_stats(self) -> None:
        if self.publisher is None:
            return
        try:
            payload = self.stats_payload()
        except FacegateError as err:
            logger.warning("stats not published: %s", err)
            return
        self.publisher.publish_message(self.topics.stats, payload.model_dump(mode="json"), qos=0)

    # ------------------------------------------------------------------ reconfiguration
    def apply_config(self, new: FacegateConfig, rebuild: frozenset[str] = frozenset()) -> None:
        """Apply a new effective configuration between frames; rebuild only the named components.

        Components: ``detector``/``embedder`` (models), ``camera`` (capture), ``liveness``, ``analysis``.
        Live keys (thresholds, margins, votes, gates, stats interval, log level) need no rebuild; a
        changed ``mqtt`` section goes to :meth:`MqttPublisher.update_config` (no reconnect). A model
        ``new`` needs that is not installed raises :class:`ModelNotInstalledError` with nothing changed.
        """
        # before anything changes, so the running models stay: cheap (manifests only), and done on every
        # change because a reload without the remote module diffs the re-read file against itself
        require_models(new)
        old = self.config
        self.config = new
        if new.logging.level != old.logging.level:
            logging.getLogger().setLevel(new.logging.level)
        images.set_max_pixels(new.security.max_image_pixels)
        if {"detector", "embedder"} & rebuild:
            # other models: the votes and tracks of the old ones mean nothing, the cooldowns still hold
            previous = self.pipeline.decisions
            self.engine = build_engine(new)
            self.matcher = build_matcher(new, self.gallery, self.engine)
            self.pipeline = build_pipeline(new, self.engine, self.matcher, self.stats)
            self.pipeline.decisions.adopt_cooldowns(previous)
        else:
            self._update_stages(old, new)
        if any(c == "camera" or c.startswith("camera:") for c in rebuild):
            if self.runner is not None:
                self.runner.stop()
            self._build_capture()
            if self.runner is not None:
                self.runner.start()
            if self.discovery is not None:
                self.discovery.set_cameras({c.id: c.name for c in new.cameras if c.enabled})
        if rebuild:
            self.warm_release.rearm(time.monotonic())
        if self.publisher is not None and new.mqtt != old.mqtt:
            # SIGHUP (mqtt is never remotely settable): in place, queued events kept; the connection
            # settings wait for a restart (the publisher names them)
            self.publisher.update_config(mqtt_settings(new))
            if self.presence is not None:
                self.presence.max_event_age_s = new.mqtt.max_event_age_s
        logger.info("configuration applied%s", f" (rebuilt: {', '.join(sorted(rebuild))})" if rebuild else "")

    def _update_stages(self, old: FacegateConfig, new: FacegateConfig) -> None:
        """Each stage takes its changed section live (``update_config``): tracks, votes and per-person
        cooldowns survive, so a patch never re-announces a person standing at the door."""
        r = new.recognition
        self.matcher.update_config(metric=r.distance_metric, threshold=thresholds(new, self.engine), margin=r.margin,
                                   k=r.top_k)
        if new.liveness != old.liveness:  # first: the voting settings below say whether it is required
            self.pipeline.decisions.update_liveness(build_liveness(new), required=new.liveness.mode != "off")
        self.pipeline.update_config(gates=gate_config(new), decision=voting_config(new), tracker=tracker_config(new))
        if new.analysis != old.analysis:
            self.pipeline.decisions.analyzer = build_analyzer(new)

    def reload(self) -> None:
        """SIGHUP: re-read the YAML and the overlay."""
        if self.config_path is None:
            logger.warning("SIGHUP ignored: no configuration file")
            return
        sdnotify.reloading()
        try:
            if self.remote is not None:
                # the remote module owns the runtime overlay: reload through it so later patches apply
                # on top of the new YAML, and config/state is republished
                result = self.remote.reload()
                rebuild = result.rebuild
            else:
                from facegate.config.runtime import RuntimeConfig

                result = RuntimeConfig.open(self.config_path).reload()
                rebuild = result.rebuild
        except FacegateError as err:
            logger.error("reload failed, keeping the running configuration: %s", err)
            sdnotify.ready("reload failed")
            return
        try:
            self.apply_config(result.config, frozenset(rebuild))
        except ModelNotInstalledError as err:  # refused by require_models before anything changed
            logger.error("reload not applied, keeping the running configuration: %s", err)
            sdnotify.ready("reload failed")
            return
        sdnotify.ready("reloaded")

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        if self.remote is not None:
            self.remote.close()
        if self.publisher is not None:
            self.publish_stats()
            if self.presence is not None:
                self.presence.clear()  # a clean stop leaves nobody "present"
            self.publisher.stop()
        self.gallery.close()


def run_service(config: FacegateConfig, *, config_path: Path | None, stdout: TextIO | None,
                lossless: bool = False) -> int:
    try:
        service = Service(config, config_path=config_path, stdout=stdout, lossless=lossless)
    except CaptureFatal as err:
        logger.error("%s", err)
        return EXIT_FATAL
    release_free_memory()  # model loading's transient buffers, before the threads start
    release_file_pages()  # imports' and model loading's file pages (no worker thread runs yet)
    service.install_signal_handlers()
    return service.run()


__all__ = [
    "HEALTH_INTERVAL_S",
    "READY_TIMEOUT_S",
    "WARM_RELEASE_S",
    "Service",
    "gate_config",
    "mqtt_settings",
    "run_service",
    "snapshot_jpeg",
    "tracker_config",
    "voting_config",
]
