"""What a camera's capture state means to a user: ``starting``, ``ok``, ``stalled``, ``down``, ``ended``.

The capture runner knows mechanics (``running``, ``retrying``, ...); a door owner needs to know whether
the camera is *delivering frames*. :func:`camera_condition` folds a
:class:`~facegate.capture.runner.CaptureHealth` snapshot into:

* ``starting``: not opened yet, or opened and no frame yet (for less than the stall time);
* ``ok``: a frame arrived within the stall time;
* ``stalled``: open, but no frame for longer than the stall time (a hung stream before its read
  timeout turns it into a reconnect);
* ``down``: reconnecting after an error, or given up (``failed``), with the last error;
* ``ended``: a finite replay finished, or the runner stopped.

``problem`` is true for ``stalled`` and ``down`` (what the Home Assistant problem ``binary_sensor``
shows) and ``delivering`` only for ``ok``: the device is ``online`` while at least one camera delivers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from facegate.capture.runner import CaptureHealth

CameraCondition = Literal["starting", "ok", "stalled", "down", "ended"]

#: no frame for this long (or for 3 frame periods of a slow source, if longer) means ``stalled``
STALL_AFTER_S = 3.0


def stall_after(health: CaptureHealth) -> float:
    fps = health.nominal_fps
    return max(STALL_AFTER_S, 3.0 / fps) if fps else STALL_AFTER_S


def camera_condition(health: CaptureHealth) -> CameraCondition:
    state = health.state
    if state == "starting":
        return "starting"
    if state in ("retrying", "failed"):
        return "down"
    if state in ("ended", "stopped"):
        return "ended"
    limit = stall_after(health)
    if health.last_frame_age is None:
        return "starting" if health.state_age <= limit else "stalled"
    return "ok" if health.last_frame_age <= limit else "stalled"


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """One camera's published condition; equal statuses are not republished."""

    camera: str
    condition: CameraCondition
    last_error: str | None

    @property
    def problem(self) -> bool:
        return self.condition in ("stalled", "down")

    @property
    def delivering(self) -> bool:
        return self.condition == "ok"


def camera_status(health: CaptureHealth) -> CameraStatus:
    condition = camera_condition(health)
    error = health.last_error[:256] if health.last_error and condition != "ok" else None
    return CameraStatus(camera=health.camera, condition=condition, last_error=error)


__all__ = ["STALL_AFTER_S", "CameraCondition", "CameraStatus", "camera_condition", "camera_status", "stall_after"]
