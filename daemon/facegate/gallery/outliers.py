"""Outlier rejection at enrolment: a photo far from the person's other photos is not stored.

Method: pool the person's existing embeddings with the new ones, take the medoid (the member with the
smallest summed distance to all others; ties prefer an existing embedding, then the higher quality),
and measure every *new* embedding's distance to it. A new embedding is an outlier when

* that distance exceeds the policy's absolute ``threshold`` (normally the model's same-person
  threshold for the metric: a photo that would not verify against the person's most typical photo
  is probably someone else, or a bad crop); or
* with at least ``min_for_z`` embeddings in the pool, its robust z-score
  ``(d - median) / (1.4826 * MAD)`` over the pool's medoid distances exceeds ``z_max`` and ``d``
  is above half the threshold (so a tight cluster never rejects a photo that clearly matches).

Existing embeddings are never rejected here (they were accepted before). Two new photos that disagree
(distance above the threshold) keep the one with the higher quality score; without a threshold two or
three photos cannot be judged and nothing is rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facegate.errors import ConfigError
from facegate.metrics import check_metric, distances
from facegate.types import FloatArray, Metric

logger = logging.getLogger(__name__)

_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, slots=True)
class OutlierPolicy:
    """How enrolment photos are screened. ``threshold=None`` leaves only the relative (z-score) test."""

    metric: Metric = "cosine"
    threshold: float | None = None
    z_max: float = 3.5
    min_for_z: int = 4
    enabled: bool = True

    def __post_init__(self) -> None:
        check_metric(self.metric)
        if self.threshold is not None and self.threshold <= 0:
            raise ConfigError(f"outlier threshold must be > 0, got {self.threshold}")
        if self.z_max <= 0 or self.min_for_z < 3:
            raise ConfigError("outlier z_max must be > 0 and min_for_z >= 3")

    @classmethod
    def for_model(cls, thresholds: dict[str, float], metric: Metric = "cosine") -> OutlierPolicy:
        """The policy using a model's own same-person threshold for ``metric`` (an embedder's ``thresholds``)."""
        return cls(metric=metric, threshold=thresholds.get(metric))

    @classmethod
    def disabled(cls) -> OutlierPolicy:
        return cls(enabled=False)


@dataclass(frozen=True, slots=True)
class OutlierVerdict:
    """A new embedding (``index`` into the candidates) refused as an outlier."""

    index: int
    distance: float
    detail: str


def find_outliers(
    existing: FloatArray,
    candidates: FloatArray,
    policy: OutlierPolicy,
    qualities: Sequence[float | None] | None = None,
) -> list[OutlierVerdict]:
    """Outliers among ``candidates`` ``(n, D)`` given the person's ``existing`` ``(m, D)`` float32 embeddings."""
    n = int(candidates.shape[0])
    m = int(existing.shape[0])
    if not policy.enabled or n == 0 or m + n < 2:
        return []
    pool = np.concatenate([existing, candidates]).astype(np.float32) if m else candidates.astype(np.float32)
    total = m + n
    pair = np.stack([distances(pool[i], pool, policy.metric) for i in range(total)])
    pair = (pair + pair.T) / 2.0  # float rounding may make it slightly asymmetric
    np.fill_diagonal(pair, 0.0)
    quality = [0.0] * m + [float(q) if q is not None else 0.0 for q in (qualities or [None] * n)]
    sums = pair.sum(axis=1)
    # tolerance so that float noise does not decide between equally central members
    tol = 1e-6 * max(1.0, float(sums.max()))
    medoid = min(range(total), key=lambda i: (round(float(sums[i]) / tol), i >= m, -quality[i], i))
    to_medoid = pair[medoid]
    others = np.delete(to_medoid, medoid)
    median = float(np.median(others))
    mad = float(np.median(np.abs(others - median)))
    scale = max(_MAD_TO_SIGMA * mad, 0.1 * median, 1e-6)
    verdicts: list[OutlierVerdict] = []
    for j in range(n):
        i = m + j
        if i == medoid:
            continue
        d = float(to_medoid[i])
        if policy.threshold is not None and d > policy.threshold:
            verdicts.append(
                OutlierVerdict(
                    j,
                    d,
                    f"{policy.metric} distance {d:.3f} to the person's most typical photo exceeds "
                    f"the threshold {policy.threshold:.3f}",
                )
            )
            continue
        z = (d - median) / scale
        half = 0.5 * policy.threshold if policy.threshold is not None else 0.0
        if total >= policy.min_for_z and z > policy.z_max and d > half:
            verdicts.append(
                OutlierVerdict(
                    j,
                    d,
                    f"{policy.metric} distance {d:.3f} to the person's most typical photo is far from the "
                    f"others' (median {median:.3f}, robust z {z:.1f} > {policy.z_max})",
                )
            )
    if verdicts:
        logger.info("outlier rejection: %d of %d new embeddings refused", len(verdicts), n)
    return verdicts


__all__ = ["OutlierPolicy", "OutlierVerdict", "find_outliers"]
