"""Distances between embeddings (all "smaller is closer"):

* ``cosine``: ``1 - cos(a, b)``, in [0, 2];
* ``euclidean``: ``||a - b||`` on the raw vectors;
* ``euclidean_l2``: ``||a/|a| - b/|b|||`` = ``sqrt(2 - 2 cos)``, in [0, 2];
* ``angular``: ``arccos(clip(cos, -1, 1)) / pi``, in [0, 1].

1:N is one matrix-vector product: ``euclidean`` is expanded as ``||a||^2 + ||b||^2 - 2 a.b`` and
clipped at 0. Near zero the expansion loses precision to cancellation (float32: up to ~1e-3 times the
vectors' norm), far below any decision threshold; the 1:1 :func:`distance` is computed directly in
float64.

Split from :mod:`facegate.matcher` (the 1:N search, which re-exports these): the library's ``verify``
and ``find`` and the gallery's outlier screening need the metrics, not the matcher.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from facegate.errors import ConfigError, EmbeddingError
from facegate.types import METRICS, FloatArray, Metric

#: the smallest norm divided by (zero vectors stay zero)
EPS = np.float32(1e-12)


def check_metric(metric: str) -> Metric:
    """``metric`` if it is one of :data:`facegate.types.METRICS`, else :class:`ConfigError`."""
    for name in METRICS:
        if metric == name:
            return name
    raise ConfigError(f"unknown distance metric {metric!r}; valid: {', '.join(METRICS)}")


def l2_normalize(x: NDArray[np.floating], axis: int = -1) -> FloatArray:
    """``x / ||x||`` along ``axis`` as float32; zero vectors stay zero."""
    arr = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.sum(arr * arr, axis=axis, keepdims=True, dtype=np.float32))
    out: FloatArray = arr / np.maximum(norms, EPS)
    return out


def cos_to_distance(cos: FloatArray, metric: Metric) -> FloatArray:
    """Distances from cosines for the normalised metrics (not ``euclidean``)."""
    if metric == "cosine":
        out: FloatArray = (np.float32(1.0) - cos).astype(np.float32, copy=False)
    elif metric == "euclidean_l2":
        out = np.sqrt(np.maximum(np.float32(2.0) - np.float32(2.0) * cos, np.float32(0.0)))
    else:  # angular
        out = (np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi).astype(np.float32)
    return out.astype(np.float32, copy=False)


def distances(probe: NDArray[np.floating], matrix: NDArray[np.floating], metric: str = "cosine") -> FloatArray:
    """Distances ``(N,)`` float32 from ``probe`` ``(D,)`` to every row of ``matrix`` ``(N, D)``.

    One matrix-vector product; norms are computed here (the :class:`Matcher` precomputes them).
    Raises :class:`EmbeddingError` on mismatched shapes, :class:`ConfigError` on an unknown metric.
    """
    name = check_metric(metric)
    p = np.asarray(probe, dtype=np.float32)
    m = np.asarray(matrix, dtype=np.float32)
    if p.ndim != 1 or m.ndim != 2 or m.shape[1] != p.shape[0]:
        raise EmbeddingError(f"cannot compare a probe of shape {p.shape} with a matrix of shape {m.shape}")
    dots = np.einsum("ij,j->i", m, p)  # not BLAS: see _dot_rows
    pp = np.float32(np.dot(p, p))
    mm = np.einsum("ij,ij->i", m, m, dtype=np.float32)
    if name == "euclidean":
        out: FloatArray = np.sqrt(np.maximum(mm + pp - np.float32(2.0) * dots, np.float32(0.0)))
        return out.astype(np.float32, copy=False)
    cos = dots / np.maximum(np.sqrt(mm) * np.sqrt(pp), EPS)
    return cos_to_distance(cos.astype(np.float32, copy=False), name)


def distance(a: NDArray[np.floating], b: NDArray[np.floating], metric: str = "cosine") -> float:
    """1:1 distance between two vectors ``(D,)`` (computed in float64 for an exact verify)."""
    name = check_metric(metric)
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise EmbeddingError(f"cannot compare embeddings of shapes {x.shape} and {y.shape}")
    if name == "euclidean":
        return float(np.linalg.norm(x - y))
    denom = float(np.linalg.norm(x) * np.linalg.norm(y))
    cos = float(np.dot(x, y)) / denom if denom > 0 else 0.0
    cos = min(1.0, max(-1.0, cos))
    if name == "cosine":
        return 1.0 - cos
    if name == "euclidean_l2":
        return math.sqrt(max(0.0, 2.0 - 2.0 * cos))
    return math.acos(cos) / math.pi


__all__ = ["EPS", "check_metric", "cos_to_distance", "distance", "distances", "l2_normalize"]
