"""Identity-disjoint k-fold cross-validation of verification thresholds and 1:N open-set policies.

Protocol (``facegate evaluate --cv K DATA``, ``DATA/identities/<person>/*.jpg``), per chain:

* People (not photos) are split into ``K`` folds: sorted by crc32 of the folder name, dealt round-robin,
  so each fold has the same number of people and the split never depends on the results.
* Pairs: every pair of photos (same person = genuine, different people = impostor). For fold ``k``
  the thresholds are fitted on the pairs whose two people are both outside ``k`` and scored on the
  pairs whose two people are both inside ``k``; pairs across the split are used by neither.
* Operating points fitted on the training folds: *secure* (:func:`secure_point`), the highest TAR
  whose false-accept rate on training impostor pairs is <= ``target_far``, placed in the middle of the
  interval of thresholds that give it (between the largest genuine distance accepted and the first
  impostor distance beyond the FAR budget, not at its lower edge, which would sit on the training
  folds' largest genuine distance and reject the next person's slightly larger one); *balanced*, the
  one maximising balanced accuracy (mean of TAR and TNR). Also scored: the chain's *fixed* threshold
  (the manifest's; dlib's 0.6 for the reference).
* 1:N open set: everybody is enrolled with their first ``n`` photos (``n`` = 1 or 3, never all of a
  person's photos). Genuine probes are the other photos of fold ``k``'s people (accepted = named
  correctly); impostor probes are all photos of fold ``k``'s people against the gallery without them
  (false accept = named as anybody). People are ranked by their nearest sample (``min``) or the mean of
  their samples' distances (``mean``); a name needs ``distance <= threshold`` and, with a margin, the
  second-best person at least ``margin`` further. The margin is fitted on the training folds only
  (nested: each training fold plays the held-out one in turn): the largest on the grid whose genuine
  accept there stays >= ``margin_min_accept``.

Nothing is fitted on the fold it is scored on; figures are reported per fold, as the mean, and as the
worst fold.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from facegate.evaluation.metrics import roc

Policy = Literal["min", "mean"]
POLICIES: tuple[Policy, ...] = ("min", "mean")

#: default target false-accept rate of the secure operating point (one impostor pair in a thousand)
TARGET_FAR = 1e-3
#: margins tried by the nested fit (euclidean distance units)
MARGIN_GRID: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(0, 31))
#: the fitted margin keeps at least this genuine accept on the training folds
MARGIN_MIN_ACCEPT = 0.97


def assign_folds(people: Sequence[str], folds: int) -> dict[str, int]:
    """People sorted by crc32 of their name, dealt round-robin into ``folds`` folds."""
    order = sorted(people, key=lambda p: (zlib.crc32(p.encode()), p))
    return {person: i % folds for i, person in enumerate(order)}


def distance_matrix(vectors: NDArray[np.float32], metric: str = "euclidean") -> NDArray[np.float64]:
    """All pairwise distances, by the formulas of :func:`facegate.matcher.distance` (float64)."""
    v = vectors.astype(np.float64)
    sq = np.sum(v * v, axis=1)
    if metric == "euclidean":
        return np.asarray(np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * v @ v.T, 0.0)), dtype=np.float64)
    unit = v / np.maximum(np.sqrt(sq), 1e-12)[:, None]
    cos = np.clip(unit @ unit.T, -1.0, 1.0)
    if metric == "cosine":
        return np.asarray(1.0 - cos, dtype=np.float64)
    if metric == "euclidean_l2":
        return np.asarray(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * cos)), dtype=np.float64)
    if metric == "angular":
        return np.asarray(np.arccos(cos) / np.pi, dtype=np.float64)
    raise ValueError(f"unknown metric {metric!r}")


def secure_threshold(impostor: NDArray[np.float64], target_far: float) -> float:
    """Largest threshold with at most ``floor(target_far * n)`` impostor distances at or below it."""
    d = np.sort(impostor)
    allowed = int(np.floor(target_far * d.size + 1e-9))
    if allowed >= d.size:
        return float(d[-1])
    below = d[allowed - 1] if allowed > 0 else d[0] - 0.02
    return float((below + d[allowed]) / 2.0)


def secure_point(genuine: NDArray[np.float64], impostor: NDArray[np.float64], target_far: float) -> float:
    """The security-first threshold: every threshold below the first impostor distance beyond the FAR
    budget (``floor(target_far * n)`` impostors accepted) keeps FAR <= ``target_far``; among them those
    at or above the largest genuine distance below that impostor give the highest TAR, and the middle of
    that interval is taken (the largest margin to both kinds of training pair). Without such a genuine
    distance it is :func:`secure_threshold`."""
    d = np.sort(impostor)
    allowed = int(np.floor(target_far * d.size + 1e-9))
    if allowed >= d.size:
        return secure_threshold(impostor, target_far)
    upper = float(d[allowed])
    accepted = genuine[genuine < upper]
    if accepted.size == 0:
        return secure_threshold(impostor, target_far)
    return (float(accepted.max()) + upper) / 2.0


def balanced_threshold(genuine: NDArray[np.float64], impostor: NDArray[np.float64]) -> float:
    """The threshold maximising (TAR + TNR) / 2, midway between neighbouring distances; ties to the smaller."""
    cand = np.unique(np.concatenate([genuine, impostor]))
    mids = np.concatenate([[cand[0] - 1e-6], (cand[:-1] + cand[1:]) / 2.0])
    g, i = np.sort(genuine), np.sort(impostor)
    tar = np.searchsorted(g, mids, side="right") / max(1, g.size)
    tnr = 1.0 - np.searchsorted(i, mids, side="right") / max(1, i.size)
    return float(mids[int(np.argmax(tar + tnr))])


@dataclass(frozen=True, slots=True)
class PairScore:
    threshold: float
    tar: float
    far: float
    false_accepts: int
    impostors: int
    genuine: int

    @property
    def balanced_accuracy(self) -> float:
        return (self.tar + 1.0 - self.far) / 2.0


def score_pairs(genuine: NDArray[np.float64], impostor: NDArray[np.float64], threshold: float) -> PairScore:
    fa = int(np.sum(impostor <= threshold))
    return PairScore(threshold, float(np.mean(genuine <= threshold)) if genuine.size else float("nan"),
                     fa / max(1, impostor.size), fa, int(impostor.size), int(genuine.size))


def _split_pairs(dist: NDArray[np.float64], persons: NDArray[np.str_], inside: NDArray[np.bool_]
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Genuine and impostor distances of the pairs (i < j) whose two photos are both ``inside``."""
    idx = np.flatnonzero(inside)
    sub = dist[np.ix_(idx, idx)]
    same = persons[idx][:, None] == persons[idx][None, :]
    upper = np.triu(np.ones_like(same, dtype=bool), k=1)
    return sub[upper & same], sub[upper & ~same]


# -- 1:N ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenSetScore:
    genuine_probes: int
    genuine_accepted: int
    impostor_probes: int
    false_accepts: int

    @property
    def genuine_accept(self) -> float:
        return self.genuine_accepted / max(1, self.genuine_probes)

    @property
    def false_accept(self) -> float:
        return self.false_accepts / max(1, self.impostor_probes)

    def __add__(self, other: OpenSetScore) -> OpenSetScore:
        return OpenSetScore(self.genuine_probes + other.genuine_probes, self.genuine_accepted + other.genuine_accepted,
                            self.impostor_probes + other.impostor_probes, self.false_accepts + other.false_accepts)


def enrolment_split(persons: Sequence[str], n_enrol: int) -> NDArray[np.bool_]:
    """Per photo: enrolled (the person's first ``n_enrol`` photos, at least one left as a probe when the
    person has two or more)."""
    out = np.zeros(len(persons), dtype=bool)
    seen: dict[str, list[int]] = {}
    for i, p in enumerate(persons):
        seen.setdefault(p, []).append(i)
    for rows in seen.values():
        take = 1 if len(rows) == 1 else min(n_enrol, len(rows) - 1)
        out[rows[:take]] = True
    return out


def _decide(dist: NDArray[np.float64], persons: NDArray[np.str_], gallery: NDArray[np.bool_],
            probes: NDArray[np.int64], policy: Policy, threshold: float, margin: float) -> list[str | None]:
    """The name given to each probe (None = unknown) against the gallery rows."""
    rows = np.flatnonzero(gallery)
    if rows.size == 0:
        return [None] * probes.size
    names, owner = np.unique(persons[rows], return_inverse=True)
    out: list[str | None] = []
    counts = np.bincount(owner, minlength=names.size)
    for p in probes:
        d = dist[p, rows]
        if policy == "min":
            per = np.full(names.size, np.inf)
            np.minimum.at(per, owner, d)
        else:
            per = np.bincount(owner, weights=d, minlength=names.size) / counts
        order = np.argsort(per, kind="stable")
        best = per[order[0]]
        gap = per[order[1]] - best if names.size > 1 else np.inf
        out.append(str(names[order[0]]) if best <= threshold and gap >= margin and gap > 0 else None)
    return out


def open_set(dist: NDArray[np.float64], persons: NDArray[np.str_], held_out: NDArray[np.bool_],
             enrolled: NDArray[np.bool_], policy: Policy, threshold: float, margin: float,
             population: NDArray[np.bool_] | None = None) -> OpenSetScore:
    """Genuine accept of ``held_out`` people's probes (gallery: everybody in ``population``) and false accept
    of all their photos against the gallery without them."""
    pop = np.ones(len(persons), dtype=bool) if population is None else population
    genuine = np.flatnonzero(held_out & ~enrolled & pop)
    named = _decide(dist, persons, enrolled & pop, genuine, policy, threshold, margin)
    accepted = sum(n == persons[i] for n, i in zip(named, genuine, strict=True))
    impostors = np.flatnonzero(held_out & pop)
    wrong = _decide(dist, persons, enrolled & pop & ~held_out, impostors, policy, threshold, margin)
    return OpenSetScore(int(genuine.size), int(accepted), int(impostors.size), sum(n is not None for n in wrong))


# -- per chain ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FoldResult:
    fold: int
    people: int
    pairs: dict[str, PairScore]  # operating point name -> score on the held-out fold
    auc: float
    open_set: dict[str, OpenSetScore]  # "n{1,3}/{policy}/{margin|nomargin}" -> score
    margins: dict[str, float]  # fitted margin per "n/policy"


@dataclass
class ChainReport:
    chain: str
    folds: list[FoldResult] = field(default_factory=list)

    def pair_figures(self, point: str) -> dict[str, float]:
        acc = [f.pairs[point].balanced_accuracy for f in self.folds]
        tar = [f.pairs[point].tar for f in self.folds]
        fa = sum(f.pairs[point].false_accepts for f in self.folds)
        imp = sum(f.pairs[point].impostors for f in self.folds)
        return {"balanced_accuracy_mean": float(np.mean(acc)), "balanced_accuracy_worst": float(np.min(acc)),
                "tar_mean": float(np.mean(tar)), "tar_worst": float(np.min(tar)),
                "far_pooled": fa / max(1, imp), "false_accepts": fa, "impostor_pairs": imp,
                "threshold_mean": float(np.mean([f.pairs[point].threshold for f in self.folds]))}

    def open_set_total(self, key: str) -> OpenSetScore:
        total = OpenSetScore(0, 0, 0, 0)
        for f in self.folds:
            total = total + f.open_set[key]
        return total


def _fit_margin(dist: NDArray[np.float64], persons: NDArray[np.str_], fold_of: NDArray[np.int64],
                train_folds: Sequence[int], enrolled: NDArray[np.bool_], policy: Policy, threshold: float,
                min_accept: float) -> float:
    """Largest margin on :data:`MARGIN_GRID` whose genuine accept over the training folds (each held out
    in turn, gallery = training people only) stays >= ``min_accept``."""
    population = np.isin(fold_of, list(train_folds))
    best = 0.0
    for margin in MARGIN_GRID:
        total = OpenSetScore(0, 0, 0, 0)
        for j in train_folds:
            total = total + open_set(dist, persons, fold_of == j, enrolled, policy, threshold, margin, population)
        if total.genuine_accept >= min_accept:
            best = margin
    return best


def cross_validate(vectors: NDArray[np.float32], persons: Sequence[str], *, folds: int = 5,
                   target_far: float = TARGET_FAR, fixed_threshold: float | None = None,
                   enrol_counts: Sequence[int] = (1, 3), fit_margins: bool = True,
                   margin_min_accept: float = MARGIN_MIN_ACCEPT, chain: str = "") -> ChainReport:
    """Identity-disjoint k-fold figures of one chain's vectors (one row per photo)."""
    if folds < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    names = np.asarray(persons)
    fold_map = assign_folds(sorted(set(persons)), folds)
    fold_of = np.array([fold_map[p] for p in persons], dtype=np.int64)
    dist = distance_matrix(vectors)
    report = ChainReport(chain)
    for k in range(folds):
        test = fold_of == k
        g_train, i_train = _split_pairs(dist, names, ~test)
        g_test, i_test = _split_pairs(dist, names, test)
        balanced = balanced_threshold(g_train, i_train)
        points = {"secure": secure_point(g_train, i_train, target_far), "balanced": balanced}
        if fixed_threshold is not None:
            points["fixed"] = fixed_threshold
        pairs = {name: score_pairs(g_test, i_test, t) for name, t in points.items()}
        both = np.concatenate([g_test, i_test])
        auc = roc(both, np.r_[np.ones(g_test.size, bool), np.zeros(i_test.size, bool)]).auc if g_test.size else 1.0
        open_scores: dict[str, OpenSetScore] = {}
        margins: dict[str, float] = {}
        train_folds = [j for j in range(folds) if j != k]
        for n in enrol_counts:
            enrolled = enrolment_split(persons, n)
            for policy in POLICIES:
                for point, threshold in points.items():
                    key = f"n{n}/{policy}/{point}"
                    open_scores[key + "/nomargin"] = open_set(dist, names, test, enrolled, policy, threshold, 0.0)
                    if fit_margins and point != "fixed":
                        m = _fit_margin(dist, names, fold_of, train_folds, enrolled, policy, threshold,
                                        margin_min_accept)
                        margins[key] = m
                        open_scores[key + "/margin"] = open_set(dist, names, test, enrolled, policy, threshold, m)
        report.folds.append(FoldResult(k, len(set(names[test])), pairs, auc, open_scores, margins))
    return report


def fit_open_set_margin(vectors: NDArray[np.float32], persons: Sequence[str], threshold: float, *, folds: int = 5,
                        n_enrol: int = 1, policy: Policy = "mean",
                        min_accept: float = MARGIN_MIN_ACCEPT) -> float:
    """The margin fitted on every person (each fold held out in turn), as :func:`cross_validate` fits it."""
    fold_map = assign_folds(sorted(set(persons)), folds)
    fold_of = np.array([fold_map[p] for p in persons], dtype=np.int64)
    return _fit_margin(distance_matrix(vectors), np.asarray(persons), fold_of, list(range(folds)),
                       enrolment_split(persons, n_enrol), policy, threshold, min_accept)


def fit_operating_points(vectors: NDArray[np.float32], persons: Sequence[str], target_far: float = TARGET_FAR,
                         metric: str = "euclidean") -> Mapping[str, float]:
    """The secure and balanced thresholds fitted on every pair (what a manifest ships)."""
    names = np.asarray(persons)
    g, i = _split_pairs(distance_matrix(vectors, metric), names, np.ones(len(persons), dtype=bool))
    balanced = balanced_threshold(g, i)
    return {"secure": secure_point(g, i, target_far), "balanced": balanced,
            "genuine_pairs": float(g.size), "impostor_pairs": float(i.size)}


__all__ = [
    "POLICIES",
    "TARGET_FAR",
    "ChainReport",
    "FoldResult",
    "OpenSetScore",
    "PairScore",
    "assign_folds",
    "balanced_threshold",
    "cross_validate",
    "distance_matrix",
    "enrolment_split",
    "fit_open_set_margin",
    "fit_operating_points",
    "open_set",
    "score_pairs",
    "secure_point",
    "secure_threshold",
]
