"""Reproducible calibration of an embedder's default thresholds, confidence slopes and 1:N margin.

Method (documented in the README; nothing is hand-tuned, and the figures reported for it are the
cross-validated ones of :mod:`facegate.evaluation.crossval`, never the fit below):

1. Embed every photo of ``DATA/<person>/*`` once with the default chain
   (:mod:`facegate.evaluation.chains`); every pair of photos is labelled genuine or impostor.
2. Per metric, the *secure* threshold (the shipped default) gives the highest TAR whose false-accept
   rate on all impostor pairs is <= the target FAR (default 1e-3), in the middle of the interval of
   thresholds that give it (:func:`facegate.evaluation.crossval.secure_point`); the *balanced* one (the
   threshold maximising (TAR + TNR) / 2) is kept as the documented alternative.
3. The confidence slope ``a`` of ``P(same | d) = sigmoid(a * (threshold - d))`` is fitted by maximum
   likelihood with genuine and impostor pairs weighted equally, so ``confidence = 100 * P`` is 50 at the
   secure threshold; the API keeps it in DeepFace's bands (51..100 only when verified).
4. The recommended 1:N margin is fitted as in the cross-validation (largest margin keeping genuine
   accept >= 97% with one enrolment photo), on every person.
5. The euclidean operating point's cross-validated TAR/FAR (K folds of people) are stored beside it.

``python -m facegate.evaluation.calibrate ../shared/data/identities [--write]`` prints the result and,
with ``--write``, stores it in ``facegate/convert/calibration.json``; ``python -m
facegate.convert.manifest_writer --apply-calibration`` then rewrites the manifests' ``thresholds``,
``confidence_slopes`` and ``operating_point`` fields without TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.evaluation.crossval import (
    TARGET_FAR,
    _split_pairs,
    cross_validate,
    distance_matrix,
    fit_open_set_margin,
    fit_operating_points,
    score_pairs,
)
from facegate.types import METRICS

logger = logging.getLogger(__name__)

CALIBRATION_FILE = Path(__file__).resolve().parent.parent / "convert" / "calibration.json"


def fit_slope(distances: NDArray[np.float64], same: NDArray[np.bool_], threshold: float,
              weights: NDArray[np.float64] | None = None) -> float:
    """Maximum-likelihood ``a`` of ``sigmoid(a * (threshold - d))`` (Newton's method on one variable)."""
    x = threshold - distances
    y = same.astype(np.float64)
    w = np.ones_like(x) if weights is None else weights
    a = 1.0 / max(float(np.std(x)), 1e-6)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(a * x, -50, 50)))
        grad = float(np.sum(w * (y - p) * x))
        hess = -float(np.sum(w * p * (1 - p) * x * x)) - 1e-9
        step = grad / hess
        a -= step
        a = max(a, 1e-3)
        if abs(step) < 1e-8 * max(1.0, abs(a)):
            break
    return float(a)


def calibrate_vectors(vectors: NDArray[np.float32], persons: list[str], *, target_far: float = TARGET_FAR,
                      folds: int = 5) -> dict[str, Any]:
    """The ``calibration.json`` entry (``metrics`` per metric plus the 1:N margin) for one chain's vectors."""
    names = np.asarray(persons)
    metrics: dict[str, Any] = {}
    everyone = np.ones(len(persons), dtype=bool)
    for metric in METRICS:
        points = fit_operating_points(vectors, persons, target_far, metric)
        genuine, impostor = _split_pairs(distance_matrix(vectors, metric), names, everyone)
        d = np.concatenate([genuine, impostor])
        same = np.r_[np.ones(genuine.size, bool), np.zeros(impostor.size, bool)]
        weights = np.where(same, 0.5 / genuine.size, 0.5 / impostor.size)
        secure, balanced = points["secure"], points["balanced"]
        fit = score_pairs(genuine, impostor, secure)
        metrics[metric] = {
            "metric": metric,
            "threshold": round(secure, 4),
            "balanced_threshold": round(balanced, 4),
            "confidence_slope": round(fit_slope(d, same, secure, weights), 3),
            "target_far": target_far,
            "genuine_pairs": int(genuine.size),
            "impostor_pairs": int(impostor.size),
            "fit_tar": fit.tar,
            "fit_false_accepts": fit.false_accepts,
        }
    euclid = metrics["euclidean"]
    report = cross_validate(vectors, persons, folds=folds, target_far=target_far, enrol_counts=(1,),
                            fit_margins=False)
    cv = report.pair_figures("secure")
    euclid.update({"cv_folds": folds, "cv_tar_mean": cv["tar_mean"], "cv_tar_worst": cv["tar_worst"],
                   "cv_false_accepts": cv["false_accepts"], "cv_impostor_pairs": cv["impostor_pairs"]})
    margin = fit_open_set_margin(vectors, persons, euclid["threshold"], folds=folds)
    return {"metrics": metrics, "open_set_margin": {"euclidean": margin}}


def main(argv: list[str] | None = None) -> int:
    from facegate.evaluation.chains import embed_chain
    from facegate.evaluation.identification import photos_by_person

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("identities", help="folder of <person>/<photo> (e.g. ../shared/data/identities)")
    parser.add_argument("--target-far", type=float, default=TARGET_FAR)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cache", help="embedding cache (.npz)")
    parser.add_argument("--write", action="store_true", help=f"store the result in {CALIBRATION_FILE.name}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    root = Path(args.identities)
    people = photos_by_person(root)
    photos = [str(p.relative_to(root)) for ps in people.values() for p in ps]
    vectors = embed_chain("default", root, photos, cache=Path(args.cache) if args.cache else None)
    kept = [p for p in photos if p in vectors]
    entry = calibrate_vectors(np.stack([vectors[p] for p in kept]), [Path(p).parts[0] for p in kept],
                              target_far=args.target_far, folds=args.folds)
    for m in entry["metrics"].values():
        sys.stdout.write(f"{m['metric']:13s} secure {m['threshold']:.4f} (balanced {m['balanced_threshold']:.4f}) "
                         f"slope {m['confidence_slope']:8.2f}  fit: TAR {100 * m['fit_tar']:.1f}% with "
                         f"{m['fit_false_accepts']}/{m['impostor_pairs']} impostor pairs accepted\n")
    sys.stdout.write(f"1:N margin {entry['open_set_margin']['euclidean']:.2f}\n")
    if args.write:
        from facegate.engine import get_engine

        data = json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.exists() else {}
        data[get_engine().model_id] = {
            "method": (f"facegate.evaluation.calibrate on {len(kept)} photos of {len(people)} people "
                       f"({root.name}), all pairs: secure threshold = FAR <= {args.target_far:g} on impostor "
                       "pairs (highest TAR there, middle of its interval), slope by class-balanced maximum "
                       "likelihood; "
                       f"cv_* = identity-disjoint {args.folds}-fold cross-validation"),
            "detector": "mediapipe",
            **entry,
        }
        tmp = CALIBRATION_FILE.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(CALIBRATION_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
