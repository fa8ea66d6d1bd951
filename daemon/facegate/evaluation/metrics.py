"""Verification metrics over labelled distances: accuracy at a threshold, best threshold, ROC, AUC, TAR@FAR."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class RocCurve:
    """``far``/``tar`` for every distinct threshold (ascending), starting at (0, 0)."""

    thresholds: NDArray[np.float64]
    far: NDArray[np.float64]
    tar: NDArray[np.float64]

    @property
    def auc(self) -> float:
        # trapezoid rule, written out because numpy renamed trapz to trapezoid in 2.0
        return float(np.sum((self.far[1:] - self.far[:-1]) * (self.tar[1:] + self.tar[:-1]) / 2.0))

    def tar_at_far(self, far_target: float) -> float:
        """Highest true-accept rate among thresholds whose false-accept rate is <= ``far_target``."""
        ok = self.far <= far_target + 1e-12
        return float(self.tar[ok].max()) if ok.any() else 0.0


def accuracy_at(distances: NDArray[np.float64], same: NDArray[np.bool_], threshold: float) -> float:
    predicted = distances <= threshold
    return float(np.mean(predicted == same)) if distances.size else float("nan")


def best_threshold(distances: NDArray[np.float64], same: NDArray[np.bool_]) -> tuple[float, float]:
    """The threshold maximising accuracy (midpoint between neighbouring distances) and that accuracy."""
    if distances.size == 0:
        return float("nan"), float("nan")
    order = np.sort(np.unique(distances))
    candidates = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2.0, [order[-1] + 1e-6]])
    same_sorted = same[np.argsort(distances, kind="stable")]
    dist_sorted = np.sort(distances, kind="stable")
    # accuracy(t) = (#same with d <= t + #diff with d > t) / n, evaluated for all t at once
    n_same_le = np.searchsorted(dist_sorted, candidates, side="right")
    cum_same = np.concatenate([[0], np.cumsum(same_sorted)])
    same_le = cum_same[n_same_le]
    diff_le = n_same_le - same_le
    total_diff = int((~same).sum())
    acc = (same_le + (total_diff - diff_le)) / distances.size
    i = int(np.argmax(acc))
    return float(candidates[i]), float(acc[i])


def roc(distances: NDArray[np.float64], same: NDArray[np.bool_]) -> RocCurve:
    order = np.argsort(distances, kind="stable")
    d = distances[order]
    s = same[order]
    n_pos = max(1, int(s.sum()))
    n_neg = max(1, int((~s).sum()))
    tp = np.cumsum(s)
    fp = np.cumsum(~s)
    last = np.r_[d[1:] != d[:-1], True]  # one point per distinct threshold
    return RocCurve(
        thresholds=np.r_[-np.inf, d[last]].astype(np.float64),
        far=np.r_[0.0, fp[last] / n_neg].astype(np.float64),
        tar=np.r_[0.0, tp[last] / n_pos].astype(np.float64),
    )


__all__ = ["RocCurve", "accuracy_at", "best_threshold", "roc"]
