"""The daemon's components built from their configuration sections: stage configs, models, matcher,
pipeline, spool, publisher settings, compat sinks, capture.

Split from :mod:`facegate.service` (which runs the frame loop and applies changes): each function here
reads the validated config and returns one component, so the build at start-up, a SIGHUP reload and a
remote patch construct things the same way. Nothing here keeps state.
"""

from __future__ import annotations

import threading
from typing import Any

from facegate.capture.handoff import FrameHandoff
from facegate.capture.registry import build_source
from facegate.capture.rotation import with_rotation
from facegate.capture.runner import BackoffPolicy, CaptureRunner
from facegate.config.models import FacegateConfig
from facegate.decision import DecisionConfig as VotingConfig
from facegate.decision import LivenessVerdict
from facegate.engine import FaceEngine
from facegate.errors import ConfigError
from facegate.events.mqtt import EventSink, MqttPublisher, MqttSettings, TlsSettings
from facegate.events.spool import Spool
from facegate.gallery.store import SqliteGallery
from facegate.gates import GateConfig
from facegate.matcher import Matcher
from facegate.pipeline import Pipeline
from facegate.stats import Stats
from facegate.tracker import TrackerConfig


def voting_config(config: FacegateConfig) -> VotingConfig:
    return VotingConfig.from_section(config.decision, liveness_required=config.liveness.mode != "off")


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


def build_spool(config: FacegateConfig) -> Spool:
    s = config.mqtt.spool
    return Spool(config.paths.spool, max_messages=s.max_messages, max_bytes=s.max_bytes,
                 drop_policy="drop_oldest" if s.drop_policy == "oldest" else "drop_newest")


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


def build_engine(config: FacegateConfig) -> FaceEngine:
    return FaceEngine(
        config.detector,  # the validated section is the detector's typed options
        config.recognition.model_name,
        model_variant=config.recognition.variant,
        num_threads=max(config.detector.num_threads, config.recognition.num_threads),
    )


def thresholds(config: FacegateConfig, engine: FaceEngine) -> dict[str, float]:
    """The model's calibrated thresholds, with ``recognition.threshold`` for its metric when set."""
    values = dict(engine.embedder.thresholds)
    if config.recognition.threshold is not None:
        values[config.recognition.distance_metric] = config.recognition.threshold
    return values


def build_matcher(config: FacegateConfig, gallery: SqliteGallery, engine: FaceEngine) -> Matcher:
    r = config.recognition
    return Matcher(gallery, engine.model_id, metric=r.distance_metric, threshold=thresholds(config, engine),
                   margin=r.margin, k=r.top_k)


def build_liveness(config: FacegateConfig) -> LivenessVerdict | None:
    mode = config.liveness.mode
    if mode == "off":
        return None
    from facegate.analysis.liveness import build_liveness as build

    verdict: LivenessVerdict = build(config.liveness)
    return verdict


def build_analyzer(config: FacegateConfig) -> Any:
    actions = config.analysis.actions
    if not actions:
        return None
    from facegate.analysis.analyzer import build_analyzer as build

    return build(actions)


def build_pipeline(config: FacegateConfig, engine: FaceEngine, matcher: Matcher, stats: Stats) -> Pipeline:
    return Pipeline(
        engine,
        engine.aligner,
        engine.embedder,
        matcher,
        gates=gate_config(config),
        decision_config=voting_config(config),
        tracker_config=tracker_config(config),
        liveness=build_liveness(config),
        analyzer=build_analyzer(config),
        stats=stats,
    )


def build_capture(config: FacegateConfig, stop: threading.Event, *, lossless: bool
                  ) -> tuple[FrameHandoff, CaptureRunner | None]:
    """The hand-off and the capture runner of the enabled cameras (no runner when none is enabled)."""
    cams = [c for c in config.cameras if c.enabled]
    handoff = FrameHandoff(stop=stop, lossless=lossless)
    sources = []
    for cam in cams:
        handoff.register(cam.id, capacity=cam.queue_size)
        sources.append(with_rotation(build_source(cam.id, cam.source), cam.rotation))
    if not sources:
        return handoff, None
    first = cams[0].reconnect
    backoff = BackoffPolicy(initial=first.initial_s, maximum=first.max_s)
    return handoff, CaptureRunner(sources, handoff, backoff=backoff)


__all__ = [
    "build_analyzer",
    "build_capture",
    "build_engine",
    "build_liveness",
    "build_matcher",
    "build_pipeline",
    "build_spool",
    "compat_sinks",
    "gate_config",
    "mqtt_settings",
    "thresholds",
    "tracker_config",
    "voting_config",
]
