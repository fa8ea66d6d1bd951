"""One synchronous pipeline step: a frame in, the events it decided out.

``detect -> track -> gates -> align -> gates -> embed (one batch per frame) -> match -> decide``.

Tracking runs right after detection (the IoU tracker needs only boxes) so that faces of tracks that
are already decided skip alignment and embedding, apart from a periodic re-check: on a door camera a
recognised person usually stays in view for many frames, and those frames then cost only detection.
Faces rejected by the gates are still tracked so that one blurred frame does not split a track.

:class:`Pipeline` is not thread-safe; the threaded runner (service) owns one per worker and feeds it
frames in order. It does no I/O and keeps no frame beyond the step (except the best chip of each
undecided track, for attribute analysis).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from facegate.decision import Analyzer, DecisionConfig, DecisionEngine, LivenessVerdict, Observation
from facegate.gates import GateConfig, QualityGates
from facegate.orientation import UpsideDownFaceError
from facegate.stats import StageTimer, Stats, StatsSnapshot
from facegate.tracker import Tracker, TrackerConfig
from facegate.types import AlignedFace, Embedding, FaceDetection, FaceEvent, FloatArray, Frame, ImageBGR, MatchResult

logger = logging.getLogger(__name__)


class DetectorLike(Protocol):
    def detect(self, image: ImageBGR) -> list[FaceDetection]: ...


class AlignerLike(Protocol):
    def align(self, image: ImageBGR, detection: FaceDetection) -> AlignedFace: ...


class EmbedderLike(Protocol):
    @property
    def model_id(self) -> str: ...

    def embed(self, chips: Sequence[ImageBGR]) -> FloatArray: ...


class MatcherLike(Protocol):
    def match(self, embedding: Embedding) -> MatchResult: ...


class Pipeline:
    """Detection to decisions for any number of cameras (tracks are kept per ``Frame.camera``).

    ``clock`` times the stages (seconds, monotonic); decisions use the frames' own timestamps.
    """

    def __init__(
        self,
        detector: DetectorLike,
        aligner: AlignerLike,
        embedder: EmbedderLike,
        matcher: MatcherLike,
        *,
        gates: QualityGates | GateConfig | None = None,
        decision_config: DecisionConfig | None = None,
        tracker_config: TrackerConfig | None = None,
        liveness: LivenessVerdict | None = None,
        analyzer: Analyzer | None = None,
        clock: Callable[[], float] = time.perf_counter,
        stats: Stats | None = None,
    ) -> None:
        self.detector = detector
        self.aligner = aligner
        self.embedder = embedder
        self.matcher = matcher
        self.gates = gates if isinstance(gates, QualityGates) else QualityGates(gates)
        self.tracker = Tracker(tracker_config)
        self.decisions = DecisionEngine(
            decision_config,
            model_id=embedder.model_id,
            liveness=liveness,
            analyzer=analyzer,
            # optional on the protocol: an embedder without calibration gets the linear mapping
            confidence_slopes=getattr(embedder, "confidence_slopes", None),
        )
        self.stats = stats if stats is not None else Stats()
        self._timer = StageTimer(self.stats, clock)
        self.sightings: list[tuple[str, str]] = []
        self._model_id = embedder.model_id

    def update_config(self, *, gates: GateConfig, decision: DecisionConfig, tracker: TrackerConfig) -> None:
        """Live settings from the next frame on; tracks, votes and cooldowns are kept (each stage's
        ``update_config``)."""
        self.gates.update_config(gates)
        self.decisions.update_config(decision)
        self.tracker.update_config(tracker)

    def step(self, frame: Frame) -> list[FaceEvent]:
        """Process one frame (BGR ``frame.image``); returns the events decided on this frame."""
        stats, timer, engine, gates = self.stats, self._timer, self.decisions, self.gates
        timer.start()
        detections = self.detector.detect(frame.image)
        timer.lap("detect")

        now = frame.monotonic
        engine.observe_frame(frame.camera, now)
        update = self.tracker.update(frame.camera, [d.box for d in detections], now)
        for gone in (*update.expired, *self.tracker.expire(now)):
            self._end_track(gone.track_id)
        timer.lap("track")

        n = len(detections)
        observations: list[Observation | None] = [None] * n
        aligned: list[AlignedFace | None] = [None] * n
        chips: list[ImageBGR] = []
        slots: list[int] = []
        aligned_any = False
        for i, det in enumerate(detections):
            if not engine.needs_observation(update.tracks[i].track_id, now):
                continue
            reason = gates.check_detection(det)
            if reason is None:
                try:
                    face = self.aligner.align(frame.image, det)
                except UpsideDownFaceError:
                    # a sideways or upside-down face (set cameras[].rotation): no vote, never a wrong chip
                    stats.rejected("upside_down")
                    continue
                aligned_any = True
                reason = gates.check_quality(face.quality)
                if reason is None:
                    aligned[i] = face
                    chips.append(face.image)
                    slots.append(i)
                    continue
            stats.rejected(reason)
        if aligned_any:
            timer.lap("align")
        else:
            timer.skip()

        if chips:
            vectors = self.embedder.embed(chips)
            timer.lap("embed")
            model_id = self._model_id
            for k, i in enumerate(slots):
                match = self.matcher.match(Embedding(vectors[k], model_id))
                chip = aligned[i]
                if chip is not None:
                    observations[i] = Observation.from_match(match, chip.quality, now)
            timer.lap("match")
            stats.count("faces.embedded", len(chips))

        events: list[FaceEvent] = []
        suppressed = engine.suppressed
        for i, det in enumerate(detections):
            track = update.tracks[i]
            event = engine.update(frame, track, det, observations[i], aligned[i])
            if event is not None:
                events.append(event)
                stats.event(event.type)
                logger.debug("%s track %d: %s %s", frame.camera, track.track_id, event.type, event.person_id)
            elif observations[i] is not None and engine.contradicted(track.track_id):
                renamed = self.tracker.split(frame.camera, track.track_id)
                engine.forget(track.track_id)
                stats.count("tracks.split")
                logger.debug("%s track %d contradicted its decision; continues as %s", frame.camera,
                             track.track_id, renamed.track_id if renamed else None)
        #: (camera, person) of every face on this frame whose track was recognised (presence sightings)
        self.sightings = [(frame.camera, p) for i in range(n)
                          if (p := engine.recognized_person(update.tracks[i].track_id)) is not None]
        if engine.suppressed != suppressed:
            stats.count("decisions.suppressed", engine.suppressed - suppressed)
        if n:
            timer.lap("decide")
        timer.total()
        stats.frame_processed(n)
        return events

    def snapshot(self) -> StatsSnapshot:
        return self.stats.snapshot()

    def _end_track(self, track_id: int) -> None:
        if not self.decisions.is_decided(track_id):
            self.stats.count("tracks.undecided")
        self.stats.count("tracks.ended")
        self.decisions.forget(track_id)


__all__ = ["AlignerLike", "DetectorLike", "EmbedderLike", "MatcherLike", "Pipeline"]
