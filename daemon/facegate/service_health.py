"""What the daemon says about itself: camera health, device availability, systemd readiness and the
periodic stats payload.

Split from :mod:`facegate.service`. Evaluated on the frame loop: every camera whose condition changed
is published (retained ``camera/<id>/health`` and ``camera/<id>/availability``), the device status is
``online`` only while at least one camera delivers frames, else ``degraded``; ``READY=1`` goes out once
a camera delivered a frame, or after the ready timeout without one (with ``STATUS=degraded: ...``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from facegate import sdnotify
from facegate.capture.health import CameraStatus, camera_status
from facegate.capture.runner import CaptureRunner
from facegate.events.mqtt import MqttPublisher
from facegate.events.payloads import (
    STATUS_DEGRADED,
    STATUS_OFFLINE,
    STATUS_ONLINE,
    CameraHealthPayload,
    CameraStatusPayload,
    LatencyPayload,
    StatsPayload,
    iso_utc,
)
from facegate.events.topics import Topics
from facegate.stats import Stats

#: log records keep the service's logger name (journal filters written before the split still match)
logger = logging.getLogger("facegate.service")

#: READY=1 at the latest this long after capture started, even if no camera delivered a frame
READY_TIMEOUT_S = 20.0

#: capture runner states -> the states published in ``stats``
_CAMERA_STATES: dict[str, Any] = {
    "starting": "running",
    "running": "running",
    "retrying": "reconnecting",
    "ended": "finished",
    "stopped": "finished",
    "failed": "failed",
}


class DeviceHealth:
    """Camera conditions, the device status and readiness (frame loop only)."""

    def __init__(self, topics: Topics, publisher: MqttPublisher | None) -> None:
        self.topics = topics
        self.publisher = publisher
        self.ready_at: float | None = None
        self._ready_deadline = 0.0
        self._camera_status: dict[str, CameraStatus] = {}
        self._camera_since: dict[str, float] = {}
        self._systemd_status = ""

    def start(self, now: float, ready_timeout_s: float) -> None:
        """Capture started: READY is due after ``ready_timeout_s`` at the latest."""
        self._ready_deadline = now + ready_timeout_s

    def check(self, runner: CaptureRunner | None, now: float) -> dict[str, CameraStatus]:
        """Publish every camera whose condition changed, the device status, and READY when due."""
        health = runner.health() if runner is not None else {}
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
        text = status_text(statuses, delivering)
        if self.ready_at is None and (delivering or now >= self._ready_deadline or not statuses):
            self.ready_at = now
            sdnotify.ready(text)
            (logger.info if delivering else logger.warning)("facegate ready: %s", text)
        elif self.ready_at is not None and text != self._systemd_status:
            sdnotify.status(text)
        self._systemd_status = text
        return statuses

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


def status_text(statuses: dict[str, CameraStatus], delivering: list[str]) -> str:
    """The systemd ``STATUS=`` line."""
    if not statuses:
        return "degraded: no camera enabled"
    if delivering:
        return f"running: {len(delivering)} of {len(statuses)} camera(s) delivering frames"
    worst = "; ".join(f"{c} {st.condition}" + (f" ({st.last_error})" if st.last_error else "")
                      for c, st in sorted(statuses.items()))
    return f"degraded: no camera delivers frames: {worst}"[:400]


def stats_payload(stats: Stats, runner: CaptureRunner | None, *, uptime_s: float, gallery_size: int,
                  publisher: MqttPublisher | None) -> StatsPayload:
    """The ``stats`` message: throughput, per-stage latency, cameras, gallery size, MQTT counters."""
    snap = stats.snapshot()
    cameras: dict[str, CameraHealthPayload] = {}
    dropped = 0
    if runner is not None:
        for cam, h in runner.health().items():
            dropped += h.dropped
            cameras[cam] = CameraHealthPayload(state=_CAMERA_STATES[h.state], fps=round(h.fps, 2), frames=h.frames,
                                               dropped_frames=h.dropped, errors=h.failures,
                                               last_error=(h.last_error or None) and h.last_error[:256])
    return StatsPayload(
        time=iso_utc(time.time()),
        uptime_s=round(uptime_s, 1),
        fps=round(snap.fps, 2),
        frames=snap.frames,
        dropped_frames=dropped,
        latency_ms={s.stage: LatencyPayload(p50=round(s.p50_ms, 3), p99=round(s.p99_ms, 3)) for s in snap.stages},
        gallery_size=gallery_size,
        cameras=cameras,
        mqtt=publisher.counters().to_payload() if publisher is not None else None,
    )


__all__ = ["READY_TIMEOUT_S", "DeviceHealth", "stats_payload", "status_text"]
