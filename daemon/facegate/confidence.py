"""Mapping match distances to the similarity and confidence figures published in events.

Both mappings are pure functions of one distance so that an event can be re-derived from its
``distance`` alone; they are not probabilities.
"""

from __future__ import annotations

import math

from facegate.types import Metric


def confidence_from_distance(distance: float, threshold: float) -> float:
    """A 0..100 figure, monotone decreasing in ``distance``, split at the decision threshold.

    ``r = distance / threshold``:

    * ``r <= 1`` (a match): ``51 + 49 * (1 - r)``, i.e. 100 at distance 0 and 51 at the threshold;
    * ``r > 1`` (no match): ``49 * max(0, 2 - r)``, i.e. just under 49 past the threshold and 0 at
      twice the threshold or further.

    So ``confidence > 50`` exactly when the distance is within the threshold. The gap between 49 and
    51 keeps a rounded confidence from ever reading 50 (undecidable) for either side. A non-finite
    distance (an empty gallery) gives 0; a non-positive threshold is a caller bug.
    """
    if not threshold > 0.0:
        raise ValueError(f"threshold must be positive, got {threshold!r}")
    if not math.isfinite(distance):
        return 0.0
    r = max(0.0, distance) / threshold
    if r <= 1.0:
        return 51.0 + 49.0 * (1.0 - r)
    return 49.0 * max(0.0, 2.0 - r)


def calibrated_confidence(distance: float, threshold: float, slope: float | None) -> float:
    """``100 * sigmoid(slope * (threshold - distance))``, kept in DeepFace's bands (51..100 when
    ``distance <= threshold``, 0..49 otherwise). ``slope`` comes from the model manifest, fitted on
    labelled pairs by :mod:`facegate.evaluation.calibrate`; without one the linear mapping of
    :func:`confidence_from_distance` is used."""
    if slope is None or not slope > 0.0:
        return confidence_from_distance(distance, threshold)
    if not math.isfinite(distance):
        return 0.0
    p = 100.0 / (1.0 + math.exp(-max(-50.0, min(50.0, slope * (threshold - distance)))))
    return max(51.0, min(100.0, p)) if distance <= threshold else max(0.0, min(49.0, p))


def similarity_from_distance(distance: float, metric: Metric) -> float | None:
    """A cosine-like similarity in [-1, 1] (1 = identical direction), or ``None`` if not finite.

    * ``cosine`` (``1 - cos``): ``1 - d``, exact;
    * ``euclidean_l2`` (distance of unit vectors): ``1 - d**2 / 2``, exact;
    * ``angular`` (``arccos(cos) / pi``): ``cos(pi * d)``, exact;
    * ``euclidean`` (raw vectors): ``1 - d**2 / 2``, the cosine the two vectors would have if they had
      unit norm. dlib's descriptors have norms close to 1, so this is a close estimate for "Dlib";
      for other models it is only a monotone re-expression of the distance.
    """
    if not math.isfinite(distance):
        return None
    if metric == "cosine":
        sim = 1.0 - distance
    elif metric == "angular":
        sim = math.cos(math.pi * distance)
    else:
        sim = 1.0 - distance * distance / 2.0
    return min(1.0, max(-1.0, sim))


__all__ = ["calibrated_confidence", "confidence_from_distance", "similarity_from_distance"]
