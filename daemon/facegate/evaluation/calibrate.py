"""Reproducible calibration of per-metric thresholds and confidence slopes of an embedder.

Method (documented in the README, never hand-tuned on the reported data):

1. Embed every image of a labelled pairs file once with the default chain (largest face).
2. Split the pairs by identity: a pair belongs to the *dev* split when the person of ``img_a`` falls in
   fold 0 of :func:`facegate.evaluation.pairs.identity_fold` (crc32 of the person's folder name).
3. Per metric, the threshold is the accuracy-maximising one on the dev split; ties are broken towards
   the *smaller* distance (the safer side for a door lock).
4. The confidence slope ``a`` of ``P(same | d) = sigmoid(a * (threshold - d))`` is fitted on the dev split
   by maximum likelihood (1-D Newton), so ``confidence = 100 * P`` is 50 at the threshold; the API then
   keeps it in DeepFace's bands (51..100 when verified, 0..49 when not).
5. The held-out split (fold 1) and all pairs are scored at the calibrated threshold and reported.

``python -m facegate.evaluation.calibrate ../shared/data/pairs.csv [--write]`` prints the table and,
with ``--write``, stores the result in ``facegate/convert/calibration.json``, from which the converter
writes the manifests' ``thresholds`` and ``confidence`` blocks.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from facegate.evaluation.metrics import accuracy_at, best_threshold
from facegate.evaluation.pairs import EmbeddingCache, Pair, identity_fold, pair_distances, read_pairs
from facegate.types import METRICS

logger = logging.getLogger(__name__)

CALIBRATION_FILE = Path(__file__).resolve().parent.parent / "convert" / "calibration.json"


@dataclass(frozen=True, slots=True)
class MetricCalibration:
    metric: str
    threshold: float
    confidence_slope: float
    dev_pairs: int
    dev_accuracy: float
    heldout_pairs: int
    heldout_accuracy: float
    all_accuracy: float
    peer_accuracy: float


def fit_slope(distances: NDArray[np.float64], same: NDArray[np.bool_], threshold: float) -> float:
    """Maximum-likelihood ``a`` of ``sigmoid(a * (threshold - d))`` (Newton's method on one variable)."""
    x = threshold - distances
    y = same.astype(np.float64)
    a = 1.0 / max(float(np.std(x)), 1e-6)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(a * x, -50, 50)))
        grad = float(np.sum((y - p) * x))
        hess = -float(np.sum(p * (1 - p) * x * x)) - 1e-9
        step = grad / hess
        a -= step
        a = max(a, 1e-3)
        if abs(step) < 1e-8 * max(1.0, abs(a)):
            break
    return float(a)


def calibrate(pairs: list[Pair], cache: EmbeddingCache) -> list[MetricCalibration]:
    out: list[MetricCalibration] = []
    for metric in METRICS:
        kept, dist = pair_distances(pairs, cache, metric)
        same = np.array([p.same for p in kept], dtype=bool)
        dev = np.array([identity_fold(p.img_a) == 0 for p in kept], dtype=bool)
        peer = np.array([p.peer for p in kept], dtype=bool)
        threshold, dev_acc = best_threshold(dist[dev], same[dev])
        slope = fit_slope(dist[dev], same[dev], threshold)
        out.append(MetricCalibration(
            metric=metric,
            threshold=round(threshold, 4),
            confidence_slope=round(slope, 3),
            dev_pairs=int(dev.sum()),
            dev_accuracy=dev_acc,
            heldout_pairs=int((~dev).sum()),
            heldout_accuracy=accuracy_at(dist[~dev], same[~dev], threshold),
            all_accuracy=accuracy_at(dist, same, threshold),
            peer_accuracy=accuracy_at(dist[peer], same[peer], threshold),
        ))
    return out


def main(argv: list[str] | None = None) -> int:
    from facegate.engine import get_engine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", help="pairs CSV (img_a,img_b,same,source)")
    parser.add_argument("-m", "--model-name", default="Dlib")
    parser.add_argument("--variant", default=None)
    parser.add_argument("--write", action="store_true", help=f"store the result in {CALIBRATION_FILE.name}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    csv_path = Path(args.pairs)
    engine = get_engine("mediapipe", args.model_name, model_variant=args.variant)
    cache = EmbeddingCache(engine, csv_path.parent)
    rows = calibrate(read_pairs(csv_path), cache)
    for r in rows:
        sys.stdout.write(
            f"{r.metric:13s} threshold {r.threshold:.4f} slope {r.confidence_slope:8.2f}  dev {r.dev_pairs} pairs "
            f"{100 * r.dev_accuracy:.2f}%  held-out {r.heldout_pairs} pairs {100 * r.heldout_accuracy:.2f}%  "
            f"all {100 * r.all_accuracy:.2f}%  peer {100 * r.peer_accuracy:.2f}%\n")
    if args.write:
        data = json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.exists() else {}
        data[engine.model_id] = {
            "method": "facegate.evaluation.calibrate: accuracy-maximising threshold on identity fold 0 of "
                      f"{csv_path.name}; confidence slope by maximum likelihood on the same split",
            "detector": "mediapipe",
            "metrics": {r.metric: asdict(r) for r in rows},
        }
        CALIBRATION_FILE.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
