"""IoU tracker: links the faces of consecutive frames of one camera into tracks (appearances).

Assignment is greedy, which is optimal often enough for the handful of faces a door camera sees:
pairs are taken in order of decreasing IoU (against both the last box and the box extrapolated with
the track's velocity, so a fast-moving face still overlaps), then boxes left over are matched by
centre distance relative to the face size (fast motion at a low frame rate), then the rest start new
tracks. A track expires when it has not been seen for ``max_age_s``.

Track ids are positive ints, monotonic and unique across all cameras of one :class:`Tracker`, so the
decision layer can key its state by id alone.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from facegate.config.models import DecisionConfig as DecisionSection
from facegate.config.models import section_default
from facegate.errors import ConfigError
from facegate.types import Box


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """``iou_threshold`` (``decision.track_iou``): minimum IoU to continue a track. ``max_age_s``
    (``decision.track_max_age_s``, whose default and its reason live there): a track unseen this long ends.
    ``max_center_distance``: fallback match when the centres are closer than this many face sizes
    (``sqrt`` of the mean box area; 0 disables); it also requires the box areas to differ by less than
    ``max_size_ratio``. ``velocity_smoothing``: weight of the newest velocity estimate (0 disables the
    motion prediction)."""

    iou_threshold: float = section_default(DecisionSection, "track_iou")
    max_age_s: float = section_default(DecisionSection, "track_max_age_s")
    max_center_distance: float = 0.6
    max_size_ratio: float = 2.0
    velocity_smoothing: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ConfigError(f"tracker iou_threshold must be in (0, 1], got {self.iou_threshold!r}")
        if not self.max_age_s > 0.0:
            raise ConfigError(f"tracker max_age_s must be > 0, got {self.max_age_s!r}")
        if not self.max_center_distance >= 0.0:
            raise ConfigError(f"tracker max_center_distance must be >= 0, got {self.max_center_distance!r}")
        if not self.max_size_ratio >= 1.0:
            raise ConfigError(f"tracker max_size_ratio must be >= 1, got {self.max_size_ratio!r}")
        if not 0.0 <= self.velocity_smoothing <= 1.0:
            raise ConfigError(f"tracker velocity_smoothing must be in [0, 1], got {self.velocity_smoothing!r}")

    @classmethod
    def from_section(cls, section: DecisionSection) -> TrackerConfig:
        """The tracking settings of the configuration's ``decision`` section."""
        return cls(iou_threshold=section.track_iou, max_age_s=section.track_max_age_s)


@dataclass(frozen=True, slots=True)
class TrackSnapshot:
    """The state of one track after an update. Times are the frames' monotonic seconds."""

    track_id: int
    camera: str
    box: Box
    first_seen: float
    last_seen: float
    hits: int

    @property
    def age(self) -> float:
        return self.last_seen - self.first_seen


@dataclass(frozen=True, slots=True)
class TrackerUpdate:
    """``tracks[i]`` is the track of the ``i``-th input box; ``expired`` ended during this update."""

    tracks: tuple[TrackSnapshot, ...]
    expired: tuple[TrackSnapshot, ...]


class _Track:
    __slots__ = ("box", "camera", "first_seen", "hits", "last_seen", "track_id", "vx", "vy")

    def __init__(self, track_id: int, camera: str, box: Box, now: float) -> None:
        self.track_id = track_id
        self.camera = camera
        self.box = box
        self.first_seen = now
        self.last_seen = now
        self.hits = 1
        self.vx = 0.0
        self.vy = 0.0

    def snapshot(self) -> TrackSnapshot:
        return TrackSnapshot(self.track_id, self.camera, self.box, self.first_seen, self.last_seen, self.hits)

    def predicted(self, now: float) -> Box:
        dt = now - self.last_seen
        dx, dy = self.vx * dt, self.vy * dt
        b = self.box
        return Box(b.x1 + dx, b.y1 + dy, b.x2 + dx, b.y2 + dy)

    def update(self, box: Box, now: float, smoothing: float) -> None:
        dt = now - self.last_seen
        if smoothing > 0.0 and dt > 0.0:
            (ox, oy), (nx, ny) = self.box.center, box.center
            self.vx += smoothing * ((nx - ox) / dt - self.vx)
            self.vy += smoothing * ((ny - oy) / dt - self.vy)
        self.box = box
        self.last_seen = now
        self.hits += 1


def _centre_distance(a: Box, b: Box, max_ratio: float) -> float:
    """Centre distance in face sizes, or ``inf`` when the sizes are too different to be one face."""
    area_a, area_b = a.area, b.area
    if area_a <= 0.0 or area_b <= 0.0 or max(area_a, area_b) > max_ratio * min(area_a, area_b):
        return math.inf
    (ax, ay), (bx, by) = a.center, b.center
    return math.hypot(ax - bx, ay - by) / math.sqrt((area_a + area_b) / 2.0)


class Tracker:
    """Tracks of every camera. Not thread-safe: one pipeline thread owns it."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._ids = itertools.count(1)
        self._cameras: dict[str, list[_Track]] = {}

    def update_config(self, config: TrackerConfig) -> None:
        """New matching settings from the next frame on; live tracks are kept."""
        self.config = config

    def update(self, camera: str, boxes: Sequence[Box], now: float) -> TrackerUpdate:
        """Assign ``boxes`` (one frame of ``camera`` at monotonic time ``now``) to tracks."""
        cfg = self.config
        tracks = self._cameras.setdefault(camera, [])
        expired = self._expire_list(tracks, now)

        assigned: list[_Track | None] = [None] * len(boxes)
        if tracks and boxes:
            taken: set[int] = set()
            pairs: list[tuple[float, int, int]] = []
            for ti, track in enumerate(tracks):
                predicted = track.predicted(now) if cfg.velocity_smoothing > 0.0 else track.box
                for bi, box in enumerate(boxes):
                    iou = max(track.box.iou(box), predicted.iou(box))
                    if iou >= cfg.iou_threshold:
                        pairs.append((-iou, ti, bi))
            pairs.sort()
            for _, ti, bi in pairs:
                if ti not in taken and assigned[bi] is None:
                    taken.add(ti)
                    assigned[bi] = tracks[ti]
            if cfg.max_center_distance > 0.0 and len(taken) < len(tracks) and None in assigned:
                far: list[tuple[float, int, int]] = []
                for ti, track in enumerate(tracks):
                    if ti in taken:
                        continue
                    predicted = track.predicted(now)
                    for bi, box in enumerate(boxes):
                        if assigned[bi] is None:
                            d = _centre_distance(predicted, box, cfg.max_size_ratio)
                            if d <= cfg.max_center_distance:
                                far.append((d, ti, bi))
                far.sort()
                for _, ti, bi in far:
                    if ti not in taken and assigned[bi] is None:
                        taken.add(ti)
                        assigned[bi] = tracks[ti]

        out: list[TrackSnapshot] = []
        for bi, box in enumerate(boxes):
            match = assigned[bi]
            if match is None:
                match = _Track(next(self._ids), camera, box, now)
                tracks.append(match)
            else:
                match.update(box, now, cfg.velocity_smoothing)
            out.append(match.snapshot())
        return TrackerUpdate(tuple(out), expired)

    def split(self, camera: str, track_id: int) -> TrackSnapshot | None:
        """Give a live track a new id from now on (the decision layer found a different person in it).

        Returns the renamed track, or ``None`` if ``track_id`` is not live on ``camera``.
        """
        for track in self._cameras.get(camera, ()):
            if track.track_id == track_id:
                track.track_id = next(self._ids)
                track.first_seen = track.last_seen
                track.hits = 1
                return track.snapshot()
        return None

    def expire(self, now: float) -> tuple[TrackSnapshot, ...]:
        """End the tracks of every camera unseen for ``max_age_s`` at monotonic time ``now``."""
        out: list[TrackSnapshot] = []
        for tracks in self._cameras.values():
            out.extend(self._expire_list(tracks, now))
        return tuple(out)

    def active(self, camera: str | None = None) -> tuple[TrackSnapshot, ...]:
        cams = self._cameras.values() if camera is None else (self._cameras.get(camera, []),)
        return tuple(t.snapshot() for tracks in cams for t in tracks)

    def _expire_list(self, tracks: list[_Track], now: float) -> tuple[TrackSnapshot, ...]:
        max_age = self.config.max_age_s
        if not any(now - t.last_seen > max_age for t in tracks):
            return ()
        gone = tuple(t.snapshot() for t in tracks if now - t.last_seen > max_age)
        tracks[:] = [t for t in tracks if now - t.last_seen <= max_age]
        return gone


__all__ = ["TrackSnapshot", "Tracker", "TrackerConfig", "TrackerUpdate"]
