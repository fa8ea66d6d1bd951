"""Per-track decisions: turn per-frame matches into one event per appearance.

The votes, their weights and the winning rule are in :mod:`facegate.voting` (re-exported here); this
module keeps the votes of every live track, applies liveness and the cooldown, and emits the events.

Once a label wins, in order: with liveness required, a ``spoof`` verdict emits ``spoof`` and an ``undecided`` one
waits; a person recognised less than ``cooldown_s`` ago, on any camera, is suppressed (the track is
decided, nothing is emitted: one person walking past two cameras of one door is one announcement);
otherwise ``recognized`` / ``unknown`` is emitted. Either way the track emits at most one event.

A decided track is re-checked every ``recheck_interval_s`` (the pipeline embeds it again); when
``split_after`` consecutive re-check votes contradict the decision, :meth:`DecisionEngine.contradicted`
says so and the pipeline starts a new track (an IoU tracker can hand a spot over from one person to the
next, e.g. at a door).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from typing import Literal, Protocol, runtime_checkable

from facegate.confidence import calibrated_confidence, similarity_from_distance
from facegate.errors import ConfigError, FacegateError
from facegate.tracker import TrackSnapshot
from facegate.types import AlignedFace, EventType, FaceAttributes, FaceDetection, FaceEvent, Frame
from facegate.voting import MAX_VOTES, DecisionConfig, Observation, Tally, Vote, tally, vote_of, window_for

logger = logging.getLogger(__name__)

#: frames further apart than this are a capture outage, not a frame rate (the window is not stretched)
FRAME_GAP_S = 5.0

LivenessState = Literal["live", "spoof", "undecided"]


@runtime_checkable
class LivenessVerdict(Protocol):
    """A liveness checker that accumulates evidence per track (blink, motion...).

    ``update`` is called once per frame for every undecided track seen in that frame (``detection`` in
    ``frame``'s pixels; ``frame.image`` is BGR); ``verdict`` may be asked any time; ``forget`` frees
    the state of a track that ended.
    """

    def update(self, track_id: int, detection: FaceDetection, frame: Frame) -> None: ...

    def verdict(self, track_id: int) -> LivenessState: ...

    def forget(self, track_id: int) -> None: ...


class OffLiveness:
    """The "off" checker: never has an opinion.

    Requiring liveness with this checker would block every decision, so :class:`DecisionEngine`
    refuses that combination.
    """

    name = "off"

    def update(self, track_id: int, detection: FaceDetection, frame: Frame) -> None:
        return None

    def verdict(self, track_id: int) -> LivenessState:
        return "undecided"

    def forget(self, track_id: int) -> None:
        return None


@runtime_checkable
class Analyzer(Protocol):
    """Facial attributes of one aligned face (BGR chip), computed once per track at decision time."""

    def analyze(self, face: AlignedFace) -> FaceAttributes: ...


class _TrackState:
    __slots__ = ("best_face", "best_score", "contradictions", "decided", "decided_label", "last_observed", "person",
                 "votes")

    def __init__(self, max_votes: int) -> None:
        self.votes: deque[Vote] = deque(maxlen=max_votes)
        self.decided = False
        self.decided_label: str | None = None
        #: the person this track was recognised as (event sent or suppressed by the cooldown)
        self.person: str | None = None
        self.best_face: AlignedFace | None = None
        self.best_score = -1.0
        self.contradictions = 0
        self.last_observed = -math.inf


class DecisionEngine:
    """Holds the votes of every live track and emits :class:`FaceEvent`s. Not thread-safe.

    ``model_id`` is the embedder's id, copied into every event; ``confidence_slopes`` (metric -> slope,
    the embedder's calibration) make event confidences equal to those of the API's ``verify``/``find``
    for the same distance (:func:`facegate.confidence.calibrated_confidence`; linear without a slope).
    Times come from the frames
    (``Frame.monotonic`` for windows and cooldowns, ``Frame.wall`` for the event), so a replay decides
    exactly as the live stream did.
    """

    def __init__(
        self,
        config: DecisionConfig | None = None,
        *,
        model_id: str = "",
        liveness: LivenessVerdict | None = None,
        analyzer: Analyzer | None = None,
        confidence_slopes: Mapping[str, float] | None = None,
    ) -> None:
        self.config = config or DecisionConfig()
        self.confidence_slopes = dict(confidence_slopes or {})
        if self.config.liveness_required and (liveness is None or isinstance(liveness, OffLiveness)):
            raise ConfigError("liveness is required but no liveness checker is configured (liveness: off)")
        self.model_id = model_id
        self.liveness: LivenessVerdict = liveness or OffLiveness()
        self.analyzer = analyzer
        self._tracks: dict[int, _TrackState] = {}
        #: person_id -> time of the last recognition event, whatever the camera (the cooldown is per person)
        self._last_recognized: dict[str, float] = {}
        #: tracks decided without an event because of the cooldown (for stats)
        self.suppressed = 0
        #: camera -> (monotonic time of its last frame, smoothed interval between its frames)
        self._frames: dict[str, tuple[float, float | None]] = {}

    def update_config(self, config: DecisionConfig) -> None:
        """Apply new voting settings to the running engine: tracks, their votes and the per-person
        cooldowns are kept (a live patch must not re-announce a person standing at the door)."""
        if config.liveness_required and isinstance(self.liveness, OffLiveness):
            raise ConfigError("liveness is required but no liveness checker is configured (liveness: off)")
        self.config = config

    def update_liveness(self, liveness: LivenessVerdict | None, *, required: bool) -> None:
        """Replace the liveness checker (its section changed); undecided tracks gather evidence anew."""
        if required and (liveness is None or isinstance(liveness, OffLiveness)):
            raise ConfigError("liveness is required but no liveness checker is configured (liveness: off)")
        self.liveness = liveness or OffLiveness()
        self.config = replace(self.config, liveness_required=required)

    def adopt_cooldowns(self, other: DecisionEngine) -> None:
        """Take over ``other``'s per-person cooldowns (the pipeline was rebuilt for other models)."""
        self._last_recognized.update(other._last_recognized)

    def observe_frame(self, camera: str, now: float) -> None:
        """A frame of ``camera`` at monotonic ``now`` (with or without faces): measures its frame rate."""
        last = self._frames.get(camera)
        if last is None:
            self._frames[camera] = (now, None)
            return
        previous, interval = last
        dt = now - previous
        if dt <= 0.0:
            return
        if dt > FRAME_GAP_S:  # a capture outage, not the frame rate
            self._frames[camera] = (now, interval)
            return
        self._frames[camera] = (now, dt if interval is None else interval + 0.2 * (dt - interval))

    def frame_interval(self, camera: str) -> float | None:
        """The smoothed interval between ``camera``'s frames, seconds (None before two frames)."""
        last = self._frames.get(camera)
        return last[1] if last is not None else None

    def window(self, camera: str, need: int | None = None) -> float:
        """The voting window for ``need`` votes at ``camera`` now (:func:`window_for`)."""
        return window_for(self.config, self.frame_interval(camera), need)

    def needs_observation(self, track_id: int, now: float) -> bool:
        """Whether the face of this track is worth aligning and embedding in the frame at ``now``."""
        st = self._tracks.get(track_id)
        if st is None or not st.decided or st.contradictions:
            return True  # a contradicted decision is re-checked on every frame until settled
        interval = self.config.recheck_interval_s
        return interval > 0.0 and now - st.last_observed >= interval

    def is_decided(self, track_id: int) -> bool:
        st = self._tracks.get(track_id)
        return st is not None and st.decided

    def recognized_person(self, track_id: int) -> str | None:
        """The person a decided track was recognised as (also when the cooldown suppressed its event),
        None for undecided, unknown and spoof tracks; presence uses it as a sighting."""
        st = self._tracks.get(track_id)
        return st.person if st is not None else None

    def contradicted(self, track_id: int) -> bool:
        """A decided track whose re-checks disagree with its decision ``split_after`` times in a row."""
        st = self._tracks.get(track_id)
        return st is not None and st.decided and st.contradictions >= self.config.split_after

    def update(
        self,
        frame: Frame,
        track: TrackSnapshot,
        detection: FaceDetection,
        observation: Observation | None = None,
        face: AlignedFace | None = None,
    ) -> FaceEvent | None:
        """Feed one frame's view of ``track``; returns the track's event on the frame that decides it.

        ``observation`` is ``None`` when the face was gated out or not embedded this frame; ``face``
        is the aligned face the observation came from (kept, best quality first, for the analyzer).
        """
        cfg = self.config
        track_id = track.track_id
        st = self._tracks.get(track_id)
        if st is None:
            st = self._tracks[track_id] = _TrackState(cfg.max_votes)
        now = frame.monotonic
        self.observe_frame(track.camera, now)  # no-op when the pipeline reported this frame already
        if cfg.liveness_required and not st.decided:
            self.liveness.update(track_id, detection, frame)
        vote: Vote | None = None
        if observation is not None:
            st.last_observed = now
            vote = vote_of(observation, cfg)
        if st.decided:
            if vote is not None:
                if vote.person_id == st.decided_label:
                    st.contradictions = 0
                else:
                    st.contradictions += 1
            return None
        if vote is not None:
            st.votes.append(vote)
            if face is not None:
                score = face.quality.score
                if score > st.best_score:
                    st.best_face, st.best_score = face, score
        elif observation is None and not cfg.liveness_required:
            return None  # nothing new to count
        result = tally(st.votes, now, cfg, self.frame_interval(track.camera))
        if result is None:
            return None
        event_type: EventType = "recognized" if result.person_id is not None else "unknown"
        if cfg.liveness_required:
            state = self.liveness.verdict(track_id)
            if state == "undecided":
                return None
            if state == "spoof":
                event_type = "spoof"
        st.decided = True
        st.decided_label = result.person_id
        if event_type == "recognized" and result.person_id is not None:
            st.person = result.person_id
            person_id = result.person_id
            last = self._last_recognized.get(person_id)
            if last is not None and now - last < cfg.cooldown_s:
                self.suppressed += 1
                logger.debug("track %d on %s: %s within cooldown, suppressed", track_id, track.camera, person_id)
                self._release(st)
                return None
            self._remember(person_id, now)
        event = self._event(event_type, frame, track, result, st.best_face)
        self._release(st)
        return event

    def forget(self, track_id: int) -> None:
        """Drop the state of an ended (or split) track."""
        if self._tracks.pop(track_id, None) is not None and self.config.liveness_required:
            self.liveness.forget(track_id)

    def _release(self, st: _TrackState) -> None:
        # A decided track only needs its label for re-checks; free the chip and the votes.
        st.votes.clear()
        st.best_face = None

    def _remember(self, key: str, now: float) -> None:
        self._last_recognized[key] = now
        if len(self._last_recognized) > 256:
            horizon = now - self.config.cooldown_s
            self._last_recognized = {k: t for k, t in self._last_recognized.items() if t >= horizon}

    def _event(
        self, event_type: EventType, frame: Frame, track: TrackSnapshot, result: Tally, face: AlignedFace | None
    ) -> FaceEvent:
        attributes: FaceAttributes | None = None
        if self.analyzer is not None and face is not None:
            try:
                attributes = self.analyzer.analyze(face)
            except FacegateError as err:
                logger.warning("track %d: attribute analysis failed: %s", track.track_id, err)
        distance: float | None = None
        similarity: float | None = None
        confidence: float | None = None
        if event_type != "spoof" and math.isfinite(result.distance):
            distance = result.distance
            similarity = similarity_from_distance(distance, result.metric)
            slope = self.confidence_slopes.get(result.metric)
            confidence = calibrated_confidence(distance, result.threshold, slope)
        recognized = event_type == "recognized"
        return FaceEvent(
            event_id=uuid.uuid4().hex,
            type=event_type,
            camera=track.camera,
            track_id=track.track_id,
            wall=frame.wall,
            box=track.box,
            frames_voted=result.frames_voted,
            person_id=result.person_id if recognized else None,
            name=result.name if recognized else None,
            distance=distance,
            similarity=similarity,
            confidence=confidence,
            model_id=self.model_id,
            attributes=attributes,
        )


__all__ = [
    "MAX_VOTES",
    "Analyzer",
    "DecisionConfig",
    "DecisionEngine",
    "LivenessState",
    "LivenessVerdict",
    "Observation",
    "OffLiveness",
    "Tally",
    "Vote",
    "tally",
    "vote_of",
    "window_for",
]
