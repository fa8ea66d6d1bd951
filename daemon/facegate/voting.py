"""The votes of one track and the rule that names a winner.

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
rate to ``N_L - 0.5`` frame intervals of the track's camera (measured from the frames the pipeline
reports, :meth:`facegate.decision.DecisionEngine.observe_frame`). At 2 fps the default
``unknown_votes: 6`` needs 2.75 s, longer than ``window_s: 2.0``: without the stretch a stranger would
never be reported. The votes keep their meaning (N agreeing frames); a slow camera decides later.

Split from :mod:`facegate.decision` (which keeps the votes of every live track and emits events, and
re-exports these): the arithmetic is pure functions of a track's votes and :class:`DecisionConfig`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from facegate.config.models import DecisionConfig as DecisionSection
from facegate.config.models import section_default
from facegate.errors import ConfigError
from facegate.types import FaceQuality, MatchResult, Metric

#: votes kept per track (at least the votes required)
MAX_VOTES = 64


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


__all__ = ["MAX_VOTES", "DecisionConfig", "Observation", "Tally", "Vote", "tally", "vote_of", "window_for"]
