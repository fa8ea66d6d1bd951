"""The daemon: builds the components from the configuration and runs the frame loop.

Threads: one capture thread per camera (``CaptureRunner``) feeding a bounded hand-off that drops the
oldest frame; this module's frame loop (inference, decisions, publishing); paho's network thread and
the publisher's sender/dispatcher threads. Remote commands arrive on the dispatcher thread and are
applied between frames (``_pending`` queue), so the pipeline is only ever touched by the frame loop.

Lifecycle: ``READY=1`` once the models are loaded, the spool is open and a camera delivered its first
frame, or after ``READY_TIMEOUT_S`` without one (then with ``STATUS=degraded: ...``, so systemd neither
waits for ever nor kill-loops a daemon whose camera is unplugged; the broker may still be connecting:
events are spooled meanwhile). Camera health (see :mod:`facegate.capture.health`) is checked from the
frame loop and published on change: retained ``camera/<id>/health`` and ``camera/<id>/availability``,
and the device status ``online`` only while at least one camera delivers frames, else ``degraded``.
``WATCHDOG=1`` from the frame loop, so a hung pipeline is
restarted by systemd; SIGTERM/SIGINT stop cleanly (retained ``stopped``); SIGHUP reloads the YAML and
the runtime overlay and rebuilds only what changed.
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

import cv2

from facegate import images, sdnotify
from facegate.capture.handoff import FrameHandoff
from facegate.capture.health import CameraStatus, camera_status
from facegate.capture.registry import build_source
from facegate.capture.rotation import with_rotation
from facegate.capture.runner import BackoffPolicy, CaptureRunner
from facegate.config.models import FacegateConfig
from facegate.config.state_dir import require_state_dir
from facegate.decision import DecisionConfig as VotingConfig
from facegate.decision import LivenessVerdict
from facegate.engine import FaceEngine
from facegate.errors import CaptureFatal, ConfigError, FacegateError
from facegate.events.mqtt import EventSink, JsonLinesSink, MqttPublisher, MqttSettings, TlsSettings
from facegate.events.payloads import (
    STATUS_DEGRADED,
    STATUS_OFFLINE,
    STATUS_ONLINE,
    CameraHealthPayload,
    CameraStatusPayload,
    LatencyPayload,
    StatsPayload,
    event_payload,
    iso_utc,
)
from facegate.events.spool import Spool
from facegate.events.state_sinks import LastRecognizedSink, PresenceSink
from facegate.events.topics import Topics
from facegate.gates import GateConfig
from facegate.matcher import Matcher
from facegate.pipeline import Pipeline
from facegate.stats import Stats
from facegate.tracker import TrackerConfig
from facegate.types import FaceEvent, Frame

if TYPE_CHECKING:  # the remote module is optional in a build; imported when remote management starts
    from facegate.remote.service_bridge import ServiceRemote

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FATAL = 5

#: READY=1 at the latest this long after capture started, even if no camera delivered a frame
READY_TIMEOUT_S = 20.0
#: how often the frame loop re-evaluates camera health
HEALTH_INTERVAL_S = 0.2

#: capture runner states -> the states published in ``stats``
_CAMERA_STATES: dict[str, Any] = {
    "starting": "running",
    "running": "running",
    "retrying": "reconnecting",
    "ended": "finished",
    "stopped": "finished",
    "failed": "failed",
}


def voting_config(config: FacegateConfig) -> VotingConfig:
    return VotingConfig.from_section(config.decision, liveness_required=config.liveness.mode != "off")


def snapshot_jpeg(frame: Frame, event: FaceEvent, *, margin: float = 0.25, quality: int = 85) -> bytes | None:
    """JPEG of the event's face box (grown by ``margin`` on each side) cut from the frame it was decided on."""
    b = event.box
    h, w = frame.image.shape[:2]
    mx, my = b.width * margin, b.height * margin
    x1, y1 = max(0, int(b.x1 - mx)), max(0, int(b.y1 - my))
    x2, y2 = min(w, int(b.x2 + mx)), min(h, int(b.y2 + my))
    if x2 <= x1 or y2 <= y1:
        return None
    ok, buf = cv2.imencode(".jpg", frame.image[y1:y2, x1:x2], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None


def detector_options(config: FacegateConfig) -> dict[str, object]:
    """Options the YAML sets explicitly; the rest stay at each model manifest's defaults."""
    d = config.detector
    options: dict[str, object] = {}
    if "score_threshold" in d.model_fields_set:
        options["score_threshold"] = d.score_threshold
    if "min_face_px" in d.model_fields_set:
        options["min_face_px"] = d.min_face_px
    return options


def gate_config(config: FacegateConfig) -> GateConfig:
    return GateConfig.from_section(config.gates)


def tracker_config(config: FacegateConfig) -> TrackerConfig:
    return TrackerConfig.from_section(config.decision)


def mqtt_settings(config: FacegateConfig) -> MqttSettings:
    m = config.mqtt
    tls = None
    if m.tls.enabled:
        tls = TlsSettings(ca_file=m.tls.ca_file, cert_file=m.tls.cert_file, key_file=m.tls.key_file)
    elif m.require_tls:
        raise ConfigError("mqtt.require_tls is set but mqtt.tls.enabled is false: refusing a plain-text connection")
    return MqttSettings(
        host=m.host,
        port=m.port if m.port is not None else (8883 if tls else 1883),
        username=m.username,
        password=m.password.get_secret_value() if m.password is not None else None,
        tls=tls,
        client_id=config.mqtt_client_id,
        keepalive=m.keepalive,
        reconnect_min_s=max(1, round(m.reconnect.initial_s)),
        reconnect_max_s=max(1, round(m.reconnect.max_s)),
        max_event_age_s=m.max_event_age_s,
    )


def compat_sinks(config: FacegateConfig, publisher: MqttPublisher) -> list[EventSink]:
    """The Frigate and Double Take sinks the configuration asks for."""
    sinks: list[EventSink] = []
    if config.mqtt.frigate_compat:
        from facegate.events.frigate import FrigateSink

        sinks.append(FrigateSink(publisher, prefix=config.mqtt.frigate_prefix))
    if config.mqtt.double_take:
        from facegate.events.double_take import DoubleTakeSink

        sinks.append(DoubleTakeSink(publisher, prefix=config.mqtt.double_take_prefix))
    return sinks


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
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.lossless = lossless
        self.on_event = on_event
        self.stop_event = threading.Event()
        self._reload_requested = threading.Event()
        self._pending: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.stats = Stats()
        self.sink = JsonLinesSink(stdout) if stdout is not None else None
        self.publisher: MqttPublisher | None = None
        #: Frigate / Double Take copies of each event (mqtt.frigate_compat, mqtt.double_take)
        self.compat_sinks: list[EventSink] = []
        self.discovery: Any = None
        self.remote: ServiceRemote | None = None
        self.runner: CaptureRunner | None = None
        self.handoff: FrameHandoff | None = None
        self.presence: PresenceSink | None = None
        #: retained state derived from events (presence, last recognized), fed every event payload
        self.event_sinks: list[EventSink] = []
        self._started = time.monotonic()
        self._last_stats = 0.0
        self.counters = ServiceCounters()
        self.ready_at: float | None = None
        self.ready_timeout_s = READY_TIMEOUT_S
        self._ready_deadline = 0.0
        self._camera_status: dict[str, CameraStatus] = {}
        self._camera_since: dict[str, float] = {}
        self._last_health = 0.0
        self._systemd_status = ""
        self._build()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        cfg = self.config
        paths = cfg.paths
        images.set_max_pixels(cfg.security.max_image_pixels)
        require_state_dir(paths.state_dir)
        self.topics = Topics(cfg.device.device_id, prefix=cfg.mqtt.prefix,
                             discovery_prefix=cfg.homeassistant.discovery_prefix)
        self._build_recognition()
        self.gallery = self.engine.open_gallery(paths.gallery, device_id=cfg.device.device_id,
                                                store_face_images=cfg.gallery.store_face_images)
        self._build_matcher()
        self._build_pipeline()
        if cfg.mqtt.enabled:
            spool = Spool(paths.spool, max_messages=cfg.mqtt.spool.max_messages, max_bytes=cfg.mqtt.spool.max_bytes,
                          drop_policy="drop_oldest" if cfg.mqtt.spool.drop_policy == "oldest" else "drop_newest")
            self.publisher = MqttPublisher(self.topics, mqtt_settings(cfg), spool=spool, own_spool=True)
            self.compat_sinks = compat_sinks(cfg, self.publisher)
            self.presence = PresenceSink(self.publisher, self.topics, timeout_s=self._presence_timeout(),
                                         max_event_age_s=cfg.mqtt.max_event_age_s)
            self.event_sinks = [LastRecognizedSink(self.publisher, self.topics), self.presence]
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

    def _sign_at_publish(self) -> None:
        """Events are signed when published (the signature covers ``age_s``/``late`` and the topic)."""
        signer = self.remote.signer if self.remote is not None else None
        if self.publisher is None or signer is None:
            return
        from facegate.remote.signing import sign

        key = signer.key
        self.publisher.freshness.signer = lambda payload, topic: sign(payload, key, topic=topic, context="event")

    def _build_recognition(self) -> None:
        cfg = self.config
        self.engine = FaceEngine(
            cfg.detector.backend,
            cfg.recognition.model_name,
            model_variant=cfg.recognition.variant,
            detector_variant=cfg.detector.variant,
            num_threads=max(cfg.detector.num_threads, cfg.recognition.num_threads),
            detector_options=detector_options(cfg),
        )

    def _thresholds(self) -> dict[str, float]:
        thresholds = dict(self.engine.embedder.thresholds)
        if self.config.recognition.threshold is not None:
            thresholds[self.config.recognition.distance_metric] = self.config.recognition.threshold
        return thresholds

    def _build_matcher(self) -> None:
        r = self.config.recognition
        self.matcher = Matcher(self.gallery, self.engine.model_id, metric=r.distance_metric,
                               threshold=self._thresholds(), margin=r.margin, k=r.top_k)

    def _liveness(self) -> LivenessVerdict | None:
        mode = self.config.liveness.mode
        if mode == "off":
            return None
        from facegate.analysis.liveness import build_liveness

        verdict: LivenessVerdict = build_liveness(self.config.liveness)
        return verdict

    def _analyzer(self) -> Any:
        actions = self.config.analysis.actions
        if not actions:
            return None
        from facegate.analysis.analyzer import build_analyzer

        return build_analyzer(actions)

    def _build_pipeline(self) -> None:
        self.pipeline = Pipeline(
            self.engine,
            self.engine.aligner,
            self.engine.embedder,
            self.matcher,
            gates=gate_config(self.config),
            decision_config=voting_config(self.config),
            tracker_config=tracker_config(self.config),
            liveness=self._liveness(),
            analyzer=self._analyzer(),
            stats=self.stats,
        )

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
        cams = [c for c in self.config.cameras if c.enabled]
        self.handoff = FrameHandoff(stop=self.stop_event, lossless=self.lossless)
        sources = []
        for cam in cams:
            self.handoff.register(cam.id, capacity=cam.queue_size)
            sources.append(with_rotation(build_source(cam.id, cam.source), cam.rotation))
        if not sources:
            # every camera disabled (possibly remotely): idle, still answering commands, until one is enabled
            logger.warning("no camera is enabled; waiting for configuration")
            self.runner = None
            return
        first = cams[0].reconnect
        backoff = BackoffPolicy(initial=first.initial_s, maximum=first.max_s)
        self.runner = CaptureRunner(sources, self.handoff, backoff=backoff)

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
        self._ready_deadline = time.monotonic() + self.ready_timeout_s
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
            if now - self._last_stats >= self.config.stats.interval_s:
                self._last_stats = now
                self.publish_stats()
        return EXIT_OK

    # ------------------------------------------------------------------ camera health and readiness
    def check_camera_health(self, now: float | None = None) -> dict[str, CameraStatus]:
        """Publish every camera whose condition changed, the device status, and READY when due."""
        now = time.monotonic() if now is None else now
        health = self.runner.health() if self.runner is not None else {}
        statuses = {camera: camera_status(h) for camera, h in health.items()}
        for camera, status in statuses.items():
            if self._camera_status.get(camera) != status:
                self._camera_status[camera] = status
                self._camera_since[camera] = time.time()
                self._publish_camera_status(status)
        for camera in set(self._camera_status) - set(statuses):  # camera removed or disabled
            del self._camera_status[camera]
        delivering = [c for c, st in statuses.items() if st.delivering]
        if self.publisher is not None:
            self.publisher.set_status(STATUS_ONLINE if delivering else STATUS_DEGRADED)
        text = self._status_text(statuses, delivering)
        if self.ready_at is None and (delivering or now >= self._ready_deadline or not statuses):
            self.ready_at = now
            sdnotify.ready(text)
            (logger.info if delivering else logger.warning)("facegate ready: %s", text)
        elif self.ready_at is not None and text != self._systemd_status:
            sdnotify.status(text)
        self._systemd_status = text
        return statuses

    @staticmethod
    def _status_text(statuses: dict[str, CameraStatus], delivering: list[str]) -> str:
        if not statuses:
            return "degraded: no camera enabled"
        if delivering:
            return f"running: {len(delivering)} of {len(statuses)} camera(s) delivering frames"
        worst = "; ".join(f"{c} {st.condition}" + (f" ({st.last_error})" if st.last_error else "")
                          for c, st in sorted(statuses.items()))
        return f"degraded: no camera delivers frames: {worst}"[:400]

    def _publish_camera_status(self, status: CameraStatus) -> None:
        log = logger.warning if status.problem else logger.info
        log("camera %s: %s%s", status.camera, status.condition, f" ({status.last_error})" if status.last_error else "")
        if self.publisher is None:
            return
        payload = CameraStatusPayload(camera=status.camera, state=status.condition, problem=status.problem,
                                      last_error=status.last_error,
                                      since=iso_utc(self._camera_since.get(status.camera, time.time())))
        self.publisher.publish_state(self.topics.camera_health(status.camera), payload.model_dump(mode="json"))
        self.publisher.publish_state(self.topics.camera_availability(status.camera),
                                     STATUS_ONLINE if status.delivering else STATUS_OFFLINE)

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
        payload = event_payload(event, device_id=self.config.device.device_id)
        if self.publisher is not None:
            # committed to the spool before anything claims it was sent; stamped (age, late), routed
            # (live or history) and signed when it is actually published
            self.publisher.publish_event(payload)
        if self.sink is not None:
            signed = payload
            if self.remote is not None:
                signed = self.remote.sign_event(payload)
            self.sink.publish_event(signed)
        if self.publisher is not None:
            for sink in self.event_sinks:
                sink.publish_event(payload)
            if self.config.mqtt.snapshots:
                jpeg = event.snapshot_jpeg or (snapshot_jpeg(frame, event) if frame is not None else None)
                if jpeg is not None:
                    self.publisher.publish_message(self.topics.snapshot(event.camera), jpeg, qos=0)
            for sink in self.compat_sinks:
                sink.publish_event(payload)
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

    def stats_payload(self) -> StatsPayload:
        snap = self.stats.snapshot()
        cameras: dict[str, CameraHealthPayload] = {}
        dropped = 0
        if self.runner is not None:
            for cam, h in self.runner.health().items():
                dropped += h.dropped
                cameras[cam] = CameraHealthPayload(state=_CAMERA_STATES[h.state], fps=round(h.fps, 2), frames=h.frames,
                                                   dropped_frames=h.dropped, errors=h.failures,
                                                   last_error=(h.last_error or None) and h.last_error[:256])
        return StatsPayload(
            time=iso_utc(time.time()),
            uptime_s=round(time.monotonic() - self._started, 1),
            fps=round(snap.fps, 2),
            frames=snap.frames,
            dropped_frames=dropped,
            latency_ms={s.stage: LatencyPayload(p50=round(s.p50_ms, 3), p99=round(s.p99_ms, 3)) for s in snap.stages},
            gallery_size=len(self.gallery.people()),
            cameras=cameras,
            mqtt=self.publisher.counters().to_payload() if self.publisher is not None else None,
        )

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
        Live keys (thresholds, margins, votes, gates, stats interval, log level) need no rebuild.
        """
        old = self.config
        self.config = new
        if new.logging.level != old.logging.level:
            logging.getLogger().setLevel(new.logging.level)
        images.set_max_pixels(new.security.max_image_pixels)
        if {"detector", "embedder"} & rebuild:
            # other models: the votes and tracks of the old ones mean nothing, the cooldowns still hold
            previous = self.pipeline.decisions
            self._build_recognition()
            self._build_matcher()
            self._build_pipeline()
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
        logger.info("configuration applied%s", f" (rebuilt: {', '.join(sorted(rebuild))})" if rebuild else "")

    def _update_stages(self, old: FacegateConfig, new: FacegateConfig) -> None:
        """Each stage takes its changed section live (``update_config``): tracks, votes and per-person
        cooldowns survive, so a patch never re-announces a person standing at the door."""
        r = new.recognition
        self.matcher.update_config(metric=r.distance_metric, threshold=self._thresholds(), margin=r.margin, k=r.top_k)
        if new.liveness != old.liveness:  # first: the voting settings below say whether it is required
            self.pipeline.decisions.update_liveness(self._liveness(), required=new.liveness.mode != "off")
        self.pipeline.update_config(gates=gate_config(new), decision=voting_config(new), tracker=tracker_config(new))
        if new.analysis != old.analysis:
            self.pipeline.decisions.analyzer = self._analyzer()

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
        self.apply_config(result.config, frozenset(rebuild))
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
    service.install_signal_handlers()
    return service.run()


__all__ = ["Service", "run_service"]
