"""Verification accuracy over a labelled pairs file (``img_a,img_b,same[,source]``).

Each distinct image is embedded once with its subject (the largest face a second detector confirms as
human, :func:`facegate.evaluation.chains.subject`; ``verify`` compares every face pair, so a large false
detection on a background does not decide it either); an image in which no face is found is
embedded whole (the dlib "johns" are already 150x150 face chips) and counted in ``undetected``.
Pairs whose ``source`` starts with ``derived:`` were labelled from identity folders; the others are
asserted by another project's own test suite ("peer" pairs).
"""

from __future__ import annotations

import csv
import logging
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from facegate.engine import FaceEngine
from facegate.errors import FacegateError
from facegate.evaluation.chains import subject
from facegate.evaluation.metrics import accuracy_at, best_threshold, roc
from facegate.images import load_image
from facegate.matcher import distance as metric_distance
from facegate.types import Metric

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pair:
    img_a: str
    img_b: str
    same: bool
    source: str

    @property
    def peer(self) -> bool:
        return not self.source.startswith("derived:")


@dataclass(frozen=True, slots=True)
class PairReport:
    subset: str
    pairs: int
    same: int
    threshold: float
    accuracy: float
    best_threshold: float
    best_accuracy: float
    auc: float
    tar_at_far_1e2: float
    tar_at_far_1e3: float


def read_pairs(path: Path) -> list[Pair]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    pairs = []
    for i, row in enumerate(rows, start=2):
        try:
            pairs.append(Pair(row["img_a"], row["img_b"], row["same"].strip() in ("1", "true", "True"),
                              row.get("source") or ""))
        except KeyError as err:
            raise FacegateError(f"{path}:{i}: missing column {err}") from None
    return pairs


def person_of(image: str) -> str:
    parts = Path(image).parts
    return parts[-2] if len(parts) >= 2 else Path(image).stem


def identity_fold(image: str, folds: int = 2) -> int:
    """Deterministic identity-disjoint fold of an image (crc32 of the person's folder name)."""
    return zlib.crc32(person_of(image).encode()) % folds


class EmbeddingCache:
    """Embeds each image once (largest face, whole image when no face is found)."""

    def __init__(self, engine: FaceEngine, root: Path) -> None:
        self.engine = engine
        self.root = root
        self.vectors: dict[str, NDArray[np.float32]] = {}
        self.undetected: list[str] = []
        self.failed: dict[str, str] = {}

    def get(self, rel: str) -> NDArray[np.float32] | None:
        if rel in self.vectors:
            return self.vectors[rel]
        if rel in self.failed:
            return None
        try:
            image = load_image(self.root / rel)
            results = self.engine.represent(image, enforce_detection=False, source=rel)
            if not results:
                self.undetected.append(rel)
                results = self.engine.represent(image, skip_detection=True, source=rel)
            best = subject(results, image)  # the largest face confirmed human, as enrolment takes it
            assert best is not None and best.embedding is not None
            self.vectors[rel] = best.embedding.vector
        except FacegateError as err:
            logger.warning("%s: %s", rel, err)
            self.failed[rel] = str(err)
            return None
        return self.vectors[rel]


def pair_distances(pairs: Iterable[Pair], cache: EmbeddingCache, metric: Metric,
                   progress: Callable[[int], None] | None = None) -> tuple[list[Pair], NDArray[np.float64]]:
    kept: list[Pair] = []
    dists: list[float] = []
    for i, p in enumerate(pairs):
        a, b = cache.get(p.img_a), cache.get(p.img_b)
        if progress:
            progress(i)
        if a is None or b is None:
            continue
        kept.append(p)
        dists.append(metric_distance(a, b, metric))
    return kept, np.asarray(dists, dtype=np.float64)


def report(subset: str, pairs: list[Pair], distances: NDArray[np.float64], threshold: float) -> PairReport:
    same = np.array([p.same for p in pairs], dtype=bool)
    bt, bacc = best_threshold(distances, same)
    curve = roc(distances, same)
    return PairReport(
        subset=subset,
        pairs=len(pairs),
        same=int(same.sum()),
        threshold=threshold,
        accuracy=accuracy_at(distances, same, threshold),
        best_threshold=bt,
        best_accuracy=bacc,
        auc=curve.auc,
        tar_at_far_1e2=curve.tar_at_far(1e-2),
        tar_at_far_1e3=curve.tar_at_far(1e-3),
    )


def cross_validated_accuracy(pairs: list[Pair], distances: NDArray[np.float64], folds: int = 2) -> float:
    """Accuracy when each identity fold is scored at the threshold fitted on the other folds.

    Pairs whose two images belong to different folds are scored in the fold of ``img_a``; the threshold
    never sees the identities it is scored on through ``img_a``.
    """
    same = np.array([p.same for p in pairs], dtype=bool)
    fold = np.array([identity_fold(p.img_a, folds) for p in pairs])
    correct = 0
    for k in range(folds):
        train, test = fold != k, fold == k
        if not train.any() or not test.any():
            continue
        t, _ = best_threshold(distances[train], same[train])
        correct += int(((distances[test] <= t) == same[test]).sum())
    return correct / max(1, len(pairs))


__all__ = [
    "EmbeddingCache",
    "Pair",
    "PairReport",
    "cross_validated_accuracy",
    "identity_fold",
    "pair_distances",
    "read_pairs",
    "report",
]
