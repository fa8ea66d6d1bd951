"""Per-track decisions: turn per-frame matches into one event per appearance.

Voting (all sums over the votes of one track within the last ``window_s`` seconds)
---------------------------------------------------------------------------------
Every observed frame of a track (a face that passed the quality gates and was matched) is a vote:

* for person ``p`` when the matcher named ``p``;
* for *unknown* when it named nobody and the best distance is beyond the threshold (or the gallery is
  empty);
* an abstention when it named nobody although the best distance is within the threshold: the matcher
  refused because two people were too close (low margin). That is neither a name nor a stranger.

Each vote has a weight ``w = q * (0.5 + 0.5 * s)`` in ``(0, 1]`` where

* ``q = min(1, face_px / full_weight_face_px)``: the inter-ocular distance relative to a comfortable
  size (a face half that size counts half);
* ``s = clip(sep / (separation_ref * threshold), 0, 1)``: how clearly the frame was decided. For a
  person vote ``sep = min(margin, threshold - distance)`` (distance to the runner-up person and to the
  unknown boundary, whichever is closer); for an unknown vote ``sep = distance - threshold``. A barely
  decided frame still counts half, a clear one fully.

Label ``L`` (a person, or unknown) wins when, with ``n_L`` its number of votes, ``W_L`` their summed
weight and ``N_L`` = ``votes_required`` (persons) or ``unknown_votes`` (unknown):

1. ``n_L >= N_L``  (N agreeing frames within the window),
2. ``W_L >= min_mean_weight * N_L``  (small or barely decided faces need more frames),
3. ``W_L >= dominance * max(W_other)`` over every other label, unknown included (a track split between
   two people, or between a person and "unknown", gets no name until one side clearly dominates).

The window holds the required votes at any frame rate: it is ``window_s``, stretched at a low frame
rate to ``N_L - 0.5`` frame intervals of the track's camera (measured
from the frames the pipeline reports, :meth:`DecisionEngine.observe_frame`). At 2 fps the default
``unknown_votes: 6`` needs 2.75 s, longer than ``window_s: 2.0``: without the stretch a stranger would
never be reported. The votes keep their meaning (N agreeing frames); a slow camera decides later.

Then, in order: with liveness required, a ``spoof`` verdict emits ``spoof`` and an ``undecided`` one
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
from dataclasses import dataclass, replace
from typing import Literal, Protocol, runtime_checkable

from facegate.confidence import calibrated_confidence, similarity_from_distance
from facegate.config.models import DecisionConfig as DecisionSection
from facegate.config.models import section_default
from facegate.errors import ConfigError, FacegateError
from facegate.tracker import TrackSnapshot
from facegate.types import (
    AlignedFace,
    EventType,
    FaceAttributes,
    FaceDetection,
    FaceEvent,
    FaceQuality,
    Frame,
    MatchResult,
    Metric,
)

logger = logging.getLogger(__name__)

#: frames further apart than this are a capture outage, not a frame rate (the window is not stretched)
FRAME_GAP_S = 5.0
#: votes kept per track (at least the votes required)
MAX_VOTES = 64

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


@dataclass(frozen=True, slots=True)
class DecisionConfig:
    """Voting parameters; see the module docstring for the formula. The settings the configuration's
    ``decision`` section also has carry its names and take their defaults from it (one default each);
    the others are tuning constants of this module."""

    votes_required: int = section_default(DecisionSection, "votes_required")
    unknown_votes: int = section_default(DecisionSection, "unknown_votes")
    window_s: float = section_default(DecisionSection, "window_s")
    min_mean_weight: float = 0.5
    dominance: float = 2.0
    full_weight_face_px: float = 40.0
    separation_ref: float = 0.25
    cooldown_s: float = section_default(DecisionSection, "cooldown_s")
    liveness_required: bool = False
    recheck_interval_s: float = 0.5
    split_after: int = 3
    max_votes: int = MAX_VOTES

    def __post_init__(self) -> None:
        if self.votes_required < 1 or self.unknown_votes < 1 or self.split_after < 1:
            raise ConfigError("votes_required, unknown_votes and split_after must be >= 1")
        if self.max_votes < max(self.votes_required, self.unknown_votes):
            raise ConfigError("max_votes must be at least votes_required and unknown_votes")
        if not (self.window_s > 0.0 and self.full_weight_face_px > 0.0 and self.separation_ref > 0.0):
            raise ConfigError("window_s, full_weight_face_px and separation_ref must be > 0")
        if not 0.0 <= self.min_mean_weight <= 1.0:
            raise ConfigError(f"min_mean_weight must be in [0, 1], got {self.min_mean_weight!r}")
        if not self.dominance >= 1.0:
            raise ConfigError(f"dominance must be >= 1, got {self.dominance!r}")
        if not (self.cooldown_s >= 0.0 and self.recheck_interval_s >= 0.0):
            raise ConfigError("cooldown_s and recheck_interval_s must be >= 0 (0 disables)")

    @classmethod
    def from_section(cls, section: DecisionSection, *, liveness_required: bool = False) -> DecisionConfig:
        """The voting settings of the configuration's ``decision`` section (the rest keep their defaults)."""
        return cls(votes_required=section.votes_required, unknown_votes=section.unknown_votes,
                   window_s=section.window_s, cooldown_s=section.cooldown_s, liveness_required=liveness_required,
                   max_votes=max(MAX_VOTES, section.votes_required, section.unknown_votes))


@dataclass(frozen=True, slots=True)
class Observation:
    """One frame's evidence about a track: the match of its face and the face's size."""

    time: float  # the frame's monotonic seconds
    person_id: str | None
    name: str | None
    distance: float
    threshold: float
    margin: float
    metric: Metric
    face_px: float  # inter-ocular distance in source pixels

    @classmethod
    def from_match(cls, match: MatchResult, quality: FaceQuality, time: float) -> Observation:
        return cls(
            time=time,
            person_id=match.person_id,
            name=match.name,
            distance=match.distance,
            threshold=match.threshold,
            margin=match.margin,
            metric=match.metric,
            face_px=quality.face_size,
        )


@dataclass(frozen=True, slots=True)
class Vote:
    """An observation reduced to a label (``person_id``, or ``None`` for unknown) and a weight."""

    time: float
    person_id: str | None
    name: str | None
    weight: float
    distance: float
    threshold: float
    metric: Metric


def vote_of(obs: Observation, config: DecisionConfig) -> Vote | None:
    """The vote of one observation, or ``None`` for an abstention (see the module docstring)."""
    threshold = obs.threshold
    distance = obs.distance
    if obs.person_id is not None:
        margin = obs.margin if math.isfinite(obs.margin) else math.inf
        sep = min(margin, threshold - distance)
    elif not math.isfinite(distance) or distance > threshold:
        sep = distance - threshold
    else:
        return None
    q = min(1.0, max(0.0, obs.face_px) / config.full_weight_face_px)
    s = 1.0 if sep == math.inf else min(1.0, max(0.0, sep) / (config.separation_ref * threshold))
    return Vote(obs.time, obs.person_id, obs.name, q * (0.5 + 0.5 * s), distance, threshold, obs.metric)


@dataclass(frozen=True, slots=True)
class Tally:
    """The result of counting a track's votes: the winning label, if any, and its evidence."""

    person_id: str | None  # the winner; None = unknown
    name: str | None
    votes: int  # votes of the winner
    frames_voted: int  # all votes in the window
    weight: float
    distance: float  # weight-averaged distance of the winner's votes (inf: empty gallery)
    threshold: float
    metric: Metric


def window_for(config: DecisionConfig, frame_interval: float | None, need: int | None = None) -> float:
    """The window for ``need`` votes (default: the larger requirement) at a camera whose frames come
    ``frame_interval`` seconds apart (None: unknown): ``window_s``, or longer when it cannot hold them
    (see the module docstring)."""
    if frame_interval is None or not frame_interval > 0.0:
        return config.window_s
    votes = max(config.votes_required, config.unknown_votes) if need is None else need
    return max(config.window_s, (votes - 0.5) * frame_interval)


def tally(votes: deque[Vote], now: float, config: DecisionConfig, frame_interval: float | None = None) -> Tally | None:
    """The label that satisfies all three conditions among the votes of its window (``window_s``,
    stretched for its requirement at ``frame_interval``, :func:`window_for`)."""
    person_start = now - window_for(config, frame_interval, config.votes_required)
    unknown_start = now - window_for(config, frame_interval, config.unknown_votes)
    weights: dict[str | None, float] = {}
    counts: dict[str | None, int] = {}
    total = 0
    for v in votes:
        if v.time < (unknown_start if v.person_id is None else person_start):
            continue
        total += 1
        weights[v.person_id] = weights.get(v.person_id, 0.0) + v.weight
        counts[v.person_id] = counts.get(v.person_id, 0) + 1
    if not weights:
        return None
    ranked = sorted(weights.items(), key=lambda kv: kv[1], reverse=True)
    label, best = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
    need = config.unknown_votes if label is None else config.votes_required
    if counts[label] < need or best < config.min_mean_weight * need or best < config.dominance * runner_up:
        return None
    wsum = dsum = 0.0
    name: str | None = None
    threshold = math.nan
    metric: Metric = "cosine"
    finite = True
    start = unknown_start if label is None else person_start
    for v in votes:
        if v.time < start or v.person_id != label:
            continue
        name, threshold, metric = v.name, v.threshold, v.metric
        if math.isfinite(v.distance):
            wsum += v.weight
            dsum += v.weight * v.distance
        else:
            finite = False
    distance = dsum / wsum if finite and wsum > 0.0 else math.inf
    return Tally(label, name, counts[label], total, best, distance, threshold, metric)


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
