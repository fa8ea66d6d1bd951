"""Active 2-D liveness for the daemon: eye blinks and 3-D head motion over a track's frames.

Implements the decision layer's :class:`~facegate.decision.LivenessVerdict` (``update`` per frame of an
undecided track, ``verdict``, ``forget``). For every frame the 468-point FaceMesh runs on the face
(:class:`~facegate.landmarks.facemesh.FaceMeshLandmarker`, ~5-10 ms per face on one x86 core).

Blink (``mode: blink``)
    Eye aspect ratio ``EAR = (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|)`` per eye from the mesh's eyelid
    and corner vertices, averaged over both eyes, only on near-frontal frames (|yaw| <= ``max_yaw``:
    in profile the ratio means nothing). The track's open-eye baseline is the 80th percentile of its
    EARs. A blink is a dip to ``blink_closed_ratio`` x baseline or less, with the eyes open
    (>= ``blink_open_ratio`` x baseline) again within ``blink_max_s`` after they closed and open
    within ``blink_max_s`` before: looking down narrows the eyes too, but slowly and for longer.
Motion (``mode: motion``)
    A flat picture moved in front of the camera (printed, or on a screen), however it is shifted,
    rotated, tilted or brought closer, maps its landmarks from one frame to the next by a plane
    homography; a real head turning does not, because the nose, cheeks and face outline lie at
    different depths (parallax). Each frame's rigid landmarks (face outline, nose, eye corners,
    cheeks; not lips or eyelids) are fitted with the best homography from a reference frame (the
    medoid of the track's first three usable frames); the RMS residual divided by the inter-ocular
    distance is the frame's parallax. The track's parallax is the highest value sustained over three
    consecutive usable frames (a mesh that slips for a frame cannot pass a photo), and it must reach
    ``motion_min_parallax``. The mesh runs twice per frame, the second time on a crop centred on the
    first mesh (see :class:`MeshSource`).
``blink+motion``
    both (a photo with cut-out eyes blinks but stays flat; a bent print may show some parallax but
    never blinks).

A track that has not shown the required evidence ``window_s`` after its first usable frame (and has
at least ``min_frames`` usable frames) gets ``on_fail``: ``spoof`` (the decision layer emits a
``spoof`` event) or ``undecided`` (no event at all). Live and failed verdicts are final for the track.

What 2-D liveness cannot stop (for the README)::

    Liveness uses an ordinary camera: it refuses still pictures (prints and screens held in front of
    the camera, moved or tilted), not every attack. A video of the enrolled person replayed on a
    screen shows real blinks and head motion and passes, and so would a realistic 3-D mask; a bent
    print is not flat and can show some parallax (blink+motion asks for both). Treat it as one factor,
    with a PIN, a second device or an IR/depth camera, where a door must resist a determined attacker.

A blink closes the eyes for 0.1-0.4 s: blink mode wants 10 fps or more, at 5 fps many blinks fall
between frames.

Measured with the defaults (parallax threshold 0.05; ``tests/test_liveness.py`` and the shared
data; 30 frames at 10 fps per print, the print rendered as a plane in front of a pinhole camera with
shake, drift, roll, exposure flicker and sensor noise):

* prints of the 133 internal identity photos, face ~70 px between the eyes: passed 0 of 133 held
  square, 0 of 133 tilted by up to +-20 degrees, 0 of 133 tilted by up to +-35 degrees (highest
  parallax 0.044); prints with the face ~45 px between the eyes: 2 of 101 passed (one at +-20, one
  at +-35 degrees; FaceMesh is noisier on small faces);
* real faces: Lin-Manuel Miranda singing (Hamilton clip, 3 s windows at 30 and 10 fps) passed 8 of
  8 windows, live after 0.3-0.4 s at 30 fps, 0.6-0.8 s at 10 fps, 1.0-1.4 s at 5 fps; of the
  pedestrians walking towards the camera (Royal Opera House clip, tracks of at most ~1.5 s) 3 of
  the 6 tracks with five usable frames passed, the others turned their heads too little in that
  time (parallax 0.025-0.033);
* blinks: no face in the available videos blinks, so the detector's sensitivity is only tested on
  scripted eyelid motion; it fired on none of the 534 print sequences and none of the real videos.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.config.models import LivenessConfig as LivenessSection
from facegate.config.models import section_default
from facegate.decision import LivenessState, LivenessVerdict, OffLiveness
from facegate.errors import ConfigError, NoFaceError
from facegate.types import Box, FaceDetection, Frame, ImageBGR

logger = logging.getLogger(__name__)

Float64Array = NDArray[np.float64]
LivenessMode = Literal["off", "blink", "motion", "blink+motion"]
MODES: tuple[LivenessMode, ...] = ("off", "blink", "motion", "blink+motion")

# MediaPipe FaceMesh vertex indices (canonical 468-point topology).
#: EAR points p1..p6 of the person's right eye (image left in a frontal photo): corners 33/133
RIGHT_EYE: tuple[int, ...] = (33, 160, 158, 133, 153, 144)
#: EAR points p1..p6 of the person's left eye: corners 362/263
LEFT_EYE: tuple[int, ...] = (362, 385, 387, 263, 373, 380)
#: outer eye corners, for the inter-ocular distance
EYE_OUTER: tuple[int, int] = (33, 263)
#: face-outline vertices at the person's right and left cheek edge, and the nose tip (yaw)
OUTLINE_RIGHT, OUTLINE_LEFT, NOSE_TIP = 234, 454, 1
_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
         149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
_NOSE = (1, 2, 4, 5, 6, 19, 94, 168, 197, 195, 98, 327, 129, 358)
_EYE_CORNERS = (33, 133, 362, 263)
_CHEEKS = (50, 280, 205, 425, 187, 411, 116, 345)
#: vertices that move rigidly with the skull (no lips, eyelids or brows), for the parallax fit
RIGID_POINTS: tuple[int, ...] = tuple(sorted(set(_OVAL + _NOSE + _EYE_CORNERS + _CHEEKS)))


#: highest parallax measured on prints held square or tilted up to 20 degrees (faces >= 45 px apart)
MOTION_NOISE_FLOOR = 0.035


_DEFAULT_MODE: LivenessMode = section_default(LivenessSection, "mode")


@dataclass(frozen=True, slots=True)
class LivenessSettings:
    """Parameters; the defaults are the measured ones (see the module docstring). The settings of the
    configuration's ``liveness`` section carry its names and defaults (one default each: ``mode`` is
    ``off`` there and here; a checker needs a mode other than ``off``)."""

    mode: LivenessMode = _DEFAULT_MODE
    window_s: float = section_default(LivenessSection, "window_s")
    blink_min_count: int = section_default(LivenessSection, "blink_min_count")
    blink_closed_ratio: float = section_default(LivenessSection, "blink_closed_ratio")
    blink_open_ratio: float = 0.85
    blink_max_s: float = 0.5
    motion_min_parallax: float = section_default(LivenessSection, "motion_min_parallax")
    on_fail: Literal["spoof", "undecided"] = section_default(LivenessSection, "on_fail")
    min_frames: int = 5
    max_yaw: float = 0.5
    min_face_px: float = 30.0
    min_presence: float = 0.5
    max_frames: int = 300

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown liveness mode {self.mode!r}; valid: {', '.join(MODES)}")
        if not 0.0 < self.blink_closed_ratio < self.blink_open_ratio <= 1.0:
            raise ConfigError("need 0 < blink_closed_ratio < blink_open_ratio <= 1")
        if self.window_s <= 0 or self.blink_max_s <= 0 or self.min_frames < 2 or self.blink_min_count < 1:
            raise ConfigError("window_s and blink_max_s must be > 0, min_frames >= 2, blink_min_count >= 1")
        if self.on_fail not in ("spoof", "undecided"):
            raise ConfigError(f"on_fail must be spoof or undecided, not {self.on_fail!r}")

    @classmethod
    def from_config(cls, config: Any) -> LivenessSettings:
        """From the config's ``liveness`` section (any object with its attribute names)."""
        values: dict[str, Any] = {}
        for name in ("mode", "window_s", "blink_min_count", "blink_closed_ratio", "blink_open_ratio",
                     "blink_max_s", "motion_min_parallax", "on_fail", "min_frames"):
            if hasattr(config, name):
                values[name] = getattr(config, name)
        settings = cls(**values)
        if settings.needs_motion and settings.motion_min_parallax < MOTION_NOISE_FLOOR:
            logger.warning("liveness motion_min_parallax %.3f is below %.3f, the parallax FaceMesh noise reaches "
                           "on prints tilted by 20 degrees: printed photos may pass", settings.motion_min_parallax,
                           MOTION_NOISE_FLOOR)
        return settings

    @property
    def needs_blink(self) -> bool:
        return self.mode in ("blink", "blink+motion")

    @property
    def needs_motion(self) -> bool:
        return self.mode in ("motion", "blink+motion")


# -- geometry --------------------------------------------------------------------------------------


def eye_aspect_ratio(mesh: Float64Array, eye: Sequence[int]) -> float:
    """EAR of one eye from six mesh vertices ``p1..p6`` (corners p1, p4)."""
    p1, p2, p3, p4, p5, p6 = (mesh[i] for i in eye)
    width = float(np.linalg.norm(p1 - p4))
    if width <= 0.0:
        return 0.0
    return float((np.linalg.norm(p2 - p6) + np.linalg.norm(p3 - p5)) / (2.0 * width))


def mean_ear(mesh: Float64Array) -> float:
    return 0.5 * (eye_aspect_ratio(mesh, RIGHT_EYE) + eye_aspect_ratio(mesh, LEFT_EYE))


def mesh_yaw(mesh: Float64Array) -> float:
    """Nose tip offset from the middle of the face outline, in half outline widths (0 frontal)."""
    right, left, nose = mesh[OUTLINE_RIGHT], mesh[OUTLINE_LEFT], mesh[NOSE_TIP]
    axis = left - right
    width = float(np.linalg.norm(axis))
    if width <= 0.0:
        return 1.0
    offset = float(np.dot(nose - (left + right) / 2.0, axis / width))
    return 2.0 * offset / width


def homography_residual(src: Float64Array, dst: Float64Array) -> float:
    """RMS distance (pixels) between ``dst`` and ``src`` mapped by their least-squares homography."""
    matrix, _ = cv2.findHomography(src, dst, 0)
    if matrix is None:
        return math.inf
    mapped = cv2.perspectiveTransform(src[None], matrix)[0]
    return float(np.sqrt(((mapped - dst) ** 2).sum(axis=1).mean()))


def inter_ocular(mesh: Float64Array) -> float:
    return float(np.linalg.norm(mesh[EYE_OUTER[0]] - mesh[EYE_OUTER[1]]))


# -- per-track evidence ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LivenessEvidence:
    """What a track has shown so far: blinks, parallax (fraction of the inter-ocular distance),
    usable frames and the time they span (seconds), and the verdict."""

    state: LivenessState
    blinks: int
    parallax: float
    frames: int
    span_s: float

    def score(self, settings: LivenessSettings) -> float:
        """0..1: the weakest required signal relative to its threshold (1 = live)."""
        if self.state == "live":
            return 1.0
        parts = []
        if settings.needs_blink:
            parts.append(min(1.0, self.blinks / settings.blink_min_count))
        if settings.needs_motion and settings.motion_min_parallax > 0:
            parts.append(min(1.0, self.parallax / settings.motion_min_parallax))
        return float(min(parts)) if parts else 0.0


@dataclass(slots=True)
class _Blinks:
    """Online blink detector over ``(time, ear)`` samples of near-frontal frames."""

    settings: LivenessSettings
    ears: list[float] = field(default_factory=list)
    last_open: float = -math.inf
    closed_since: float | None = None
    count: int = 0

    def add(self, t: float, ear: float) -> None:
        s = self.settings
        self.ears.append(ear)
        if len(self.ears) > s.max_frames:
            del self.ears[: len(self.ears) - s.max_frames]
        if len(self.ears) < 3:
            if self.closed_since is None:
                self.last_open = t
            return
        baseline = float(np.percentile(self.ears, 80))
        if ear >= s.blink_open_ratio * baseline:
            if self.closed_since is not None and t - self.closed_since <= s.blink_max_s:
                self.count += 1
                logger.debug("blink: closed %.2f s, ear %.3f of baseline %.3f", t - self.closed_since, ear,
                             baseline)
            self.closed_since = None
            self.last_open = t
        elif ear <= s.blink_closed_ratio * baseline and self.closed_since is None:
            if t - self.last_open <= s.blink_max_s:
                self.closed_since = t
            else:
                self.last_open = -math.inf  # narrowed slowly (looking down): not a blink onset


class _Parallax:
    """Homography residuals of the rigid points against a reference frame; the track's value is the
    highest residual sustained over ``SUSTAIN`` consecutive usable frames (a mesh that slips for a frame
    or two cannot pass a photo)."""

    SUSTAIN = 3
    __slots__ = ("best", "pending", "recent", "reference")

    def __init__(self) -> None:
        self.pending: list[tuple[Float64Array, float]] = []
        self.reference: Float64Array | None = None
        self.recent: deque[float] = deque(maxlen=self.SUSTAIN)
        self.best = 0.0

    def add(self, rigid: Float64Array, iod: float) -> None:
        if self.reference is None:
            self.pending.append((rigid, iod))
            if len(self.pending) < 3:
                return
            # the medoid of the first three: a glitched first frame cannot become the reference
            points = [p for p, _ in self.pending]
            costs = [sum(homography_residual(a, b) for j, b in enumerate(points) if j != i)
                     for i, a in enumerate(points)]
            best = int(np.argmin(costs))
            self.reference = points[best]
            for i, (p, d) in enumerate(self.pending):
                self._score(0.0 if i == best else homography_residual(self.reference, p) / d)
            self.pending = []
            return
        self._score(homography_residual(self.reference, rigid) / iod if iod > 0 else math.inf)

    def _score(self, value: float) -> None:
        self.recent.append(value if math.isfinite(value) else 0.0)
        if len(self.recent) == self.SUSTAIN:
            self.best = max(self.best, min(self.recent))

    @property
    def value(self) -> float:
        return self.best


class _Track:
    __slots__ = ("blinks", "first", "frames", "last", "parallax", "state")

    def __init__(self, settings: LivenessSettings) -> None:
        self.blinks = _Blinks(settings)
        self.parallax = _Parallax()
        self.first: float | None = None
        self.last = 0.0
        self.frames = 0
        self.state: LivenessState = "undecided"


class MeshSource:
    """FaceMesh on a detection: ``(468, 2)`` source-pixel points and the face-presence probability.

    With ``refine`` the mesh runs twice, the second time on a crop re-centred on the first mesh and
    rotated by its eye corners (MediaPipe crops from landmarks the same way when it tracks). On
    faces 45-50 px between the eyes, a crop from the detector's box alone let the mesh slip for a
    frame or two often enough to fake parallax on 2 of 35 prints; the second pass removed it.
    """

    def __init__(self, num_threads: int = 1, *, refine: bool = True) -> None:
        from facegate.landmarks.facemesh import FaceMeshLandmarker

        self._mesh = FaceMeshLandmarker(num_threads=num_threads)
        self.refine = refine

    def __call__(self, image: ImageBGR, detection: FaceDetection) -> tuple[Float64Array, float]:
        points, presence = self._mesh.mesh_points(image, detection)
        if not self.refine or presence < 0.5:
            return points, presence
        return self._mesh.mesh_points(image, recentred(detection, points))


def recentred(detection: FaceDetection, mesh: Float64Array) -> FaceDetection:
    """``detection`` moved onto ``mesh``: the box (same size) centred on the mesh's centroid, the eyes
    replaced by the mesh's eye centres (the crop's rotation)."""
    centre = mesh.mean(axis=0)
    dx, dy = centre[0] - detection.box.center[0], centre[1] - detection.box.center[1]
    box = detection.box
    right = mesh[list(RIGHT_EYE)].mean(axis=0)
    left = mesh[list(LEFT_EYE)].mean(axis=0)
    return FaceDetection(
        box=Box(box.x1 + dx, box.y1 + dy, box.x2 + dx, box.y2 + dy),
        score=detection.score,
        landmarks=np.array([right, left], dtype=np.float32),
        landmark_names=("right_eye", "left_eye"),
        detector=detection.detector,
    )


class LivenessChecker:
    """Per-track blink and motion evidence (a :class:`~facegate.decision.LivenessVerdict`).

    ``mesh`` maps ``(image, detection)`` to FaceMesh points and presence (injectable for tests);
    thread-safe (the daemon may share one checker between camera workers).
    """

    def __init__(self, settings: LivenessSettings | None = None, *, mesh: Any = None, num_threads: int = 1) -> None:
        # without settings a checker checks everything it can (the configuration's default is no checker)
        self.settings = settings or LivenessSettings(mode="blink+motion")
        if self.settings.mode == "off":
            raise ConfigError("liveness mode 'off' has no checker; use decision.OffLiveness")
        self._mesh = mesh if mesh is not None else MeshSource(num_threads)
        self._tracks: dict[int, _Track] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.settings.mode

    def update(self, track_id: int, detection: FaceDetection, frame: Frame) -> None:
        with self._lock:
            track = self._tracks.get(track_id)
            if track is None:
                track = self._tracks[track_id] = _Track(self.settings)
            if track.state != "undecided":
                return
        try:
            mesh, presence = self._mesh(frame.image, detection)
        except NoFaceError:
            return
        with self._lock:
            self._observe(track, frame.monotonic, np.asarray(mesh, dtype=np.float64)[:, :2], presence)

    def _observe(self, track: _Track, t: float, mesh: Float64Array, presence: float) -> None:
        s = self.settings
        iod = inter_ocular(mesh)
        if presence < s.min_presence or iod < s.min_face_px or not np.all(np.isfinite(mesh)):
            return
        if track.first is None:
            track.first = t
        track.last = t
        track.frames += 1
        if s.needs_blink and abs(mesh_yaw(mesh)) <= s.max_yaw:
            track.blinks.add(t, mean_ear(mesh))
        if s.needs_motion:
            track.parallax.add(mesh[list(RIGID_POINTS)], iod)
        track.state = self._judge(track)

    def _judge(self, track: _Track) -> LivenessState:
        s = self.settings
        blink_ok = not s.needs_blink or track.blinks.count >= s.blink_min_count
        motion_ok = not s.needs_motion or track.parallax.value >= s.motion_min_parallax
        if blink_ok and motion_ok:
            return "live"
        span = track.last - (track.first if track.first is not None else track.last)
        if span >= s.window_s and track.frames >= s.min_frames and s.on_fail == "spoof":
            return "spoof"
        return "undecided"

    def verdict(self, track_id: int) -> LivenessState:
        with self._lock:
            track = self._tracks.get(track_id)
            return track.state if track is not None else "undecided"

    def evidence(self, track_id: int) -> LivenessEvidence:
        with self._lock:
            track = self._tracks.get(track_id)
            if track is None:
                return LivenessEvidence("undecided", 0, 0.0, 0, 0.0)
            span = track.last - track.first if track.first is not None else 0.0
            return LivenessEvidence(track.state, track.blinks.count, track.parallax.value, track.frames, span)

    def score(self, track_id: int) -> float:
        """0..1 for :attr:`FaceAttributes.liveness` (1 = live)."""
        return self.evidence(track_id).score(self.settings)

    def forget(self, track_id: int) -> None:
        with self._lock:
            self._tracks.pop(track_id, None)


def build_liveness(settings: LivenessSettings | Any, *, num_threads: int = 1) -> LivenessVerdict:
    """The checker for a config ``liveness`` section (or settings): :class:`OffLiveness` for ``off``."""
    resolved = settings if isinstance(settings, LivenessSettings) else LivenessSettings.from_config(settings)
    if resolved.mode == "off":
        return OffLiveness()
    return LivenessChecker(resolved, num_threads=num_threads)


# -- library entry point ---------------------------------------------------------------------------


def check_frames(
    frames: Sequence[ImageBGR],
    *,
    fps: float,
    mode: LivenessMode = "blink+motion",
    detector_backend: str = "mediapipe",
    settings: LivenessSettings | None = None,
    num_threads: int = 1,
) -> LivenessEvidence:
    """Liveness of the largest face over a burst of BGR frames taken ``1 / fps`` apart.

    The frames form one track (the largest face of each frame; frames without a face are skipped).
    ``settings`` overrides ``mode``. Returns the evidence, whose ``state`` is the verdict.
    """
    from facegate.detectors.registry import build_detector

    if fps <= 0:
        raise ConfigError(f"fps must be > 0, got {fps!r}")
    resolved = settings or LivenessSettings(mode=mode)
    checker = LivenessChecker(resolved, num_threads=num_threads)
    detector = build_detector(detector_backend, num_threads=num_threads)
    for i, image in enumerate(frames):
        faces = detector.detect(image)
        if not faces:
            continue
        face = max(faces, key=lambda d: d.box.area)
        checker.update(1, face, Frame(image=image, index=i, monotonic=i / fps, wall=i / fps))
    return checker.evidence(1)


__all__ = [
    "LEFT_EYE",
    "MODES",
    "RIGHT_EYE",
    "RIGID_POINTS",
    "LivenessChecker",
    "LivenessEvidence",
    "LivenessMode",
    "LivenessSettings",
    "MeshSource",
    "build_liveness",
    "check_frames",
    "eye_aspect_ratio",
    "homography_residual",
    "inter_ocular",
    "mean_ear",
    "mesh_yaw",
    "recentred",
]
