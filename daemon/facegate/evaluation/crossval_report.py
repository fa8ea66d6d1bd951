"""``facegate evaluate --identities DIR --cv K``: several chains cross-validated in one run, as tables."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegate.evaluation.chains import dlib_available, embed_chain
from facegate.evaluation.crossval import ChainReport, cross_validate
from facegate.evaluation.identification import photos_by_person

logger = logging.getLogger(__name__)

#: face_recognition's default tolerance: the reference chain's fixed threshold
REFERENCE_THRESHOLD = 0.6


def _fixed_threshold(chain: str) -> float:
    if chain == "reference":
        return REFERENCE_THRESHOLD
    from facegate.embedders.registry import build_embedder

    return float(build_embedder("Dlib").thresholds["euclidean"])


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


@dataclass
class CrossValidationSummary:
    root: Path
    folds: int
    target_far: float
    photos: int
    people: int
    reports: dict[str, ChainReport]
    skipped: dict[str, str]

    def header(self) -> str:
        return (f"{self.root}: {self.photos} photos of {self.people} people, {self.folds} identity-disjoint folds; "
                f"secure point = FAR <= {self.target_far:g} on the training folds' impostor pairs")

    def pair_table(self) -> tuple[list[str], list[list[Any]]]:
        rows = []
        for chain, rep in self.reports.items():
            for point in ("secure", "balanced", "fixed"):
                f = rep.pair_figures(point)
                per_fold = " ".join(f"{100 * x.pairs[point].balanced_accuracy:.2f}" for x in rep.folds)
                label = point if point != "fixed" or chain == "reference" else "manifest*"
                rows.append([chain, label, f"{f['threshold_mean']:.4f}", _pct(f["balanced_accuracy_mean"]),
                             _pct(f["balanced_accuracy_worst"]), _pct(f["tar_mean"]),
                             f"{f['false_accepts']}/{f['impostor_pairs']}", per_fold])
        return (["chain", "threshold", "thr (mean)", "pair bal. acc. mean", "worst fold", "TAR mean",
                 "false accepts", "per fold"], rows)

    def open_set_rows(self) -> list[tuple[str, str, str, Any]]:
        """``(chain, enrolment, rule, score)`` for the table and the JSON."""
        out = []
        for chain, rep in self.reports.items():
            keys = sorted(rep.folds[0].open_set)
            for key in keys:
                n, policy, point, margin = key.split("/")
                if chain == "reference" and point != "fixed" and not (point == "secure" and margin == "margin"):
                    continue
                if chain != "reference" and point == "fixed":
                    continue
                rule = f"{point} threshold, {'nearest sample' if policy == 'min' else 'mean distance'}"
                if margin == "margin":
                    fitted = [f.margins[f"{n}/{policy}/{point}"] for f in rep.folds]
                    rule += f", margin {np.mean(fitted):.2f}"
                out.append((chain, n[1:], rule, rep.open_set_total(key)))
        return out

    def open_set_table(self) -> tuple[list[str], list[list[Any]]]:
        rows = [[chain, n, rule, f"{s.genuine_accepted}/{s.genuine_probes} = {100 * s.genuine_accept:.1f}%",
                 f"{s.false_accepts}/{s.impostor_probes} = {100 * s.false_accept:.1f}%"]
                for chain, n, rule, s in self.open_set_rows()]
        return ["chain", "photos enrolled", "1:N rule", "genuine accept", "open-set false accept"], rows

    def notes(self) -> list[str]:
        lines = [f"skipped chain {c}: {why}" for c, why in self.skipped.items()]
        lines.append("manifest* = the shipped threshold, fitted on all of facegate's evaluation photos: not a "
                     "cross-validated figure when DATA is that set (the reference's fixed 0.6 is dlib's own)")
        any_rep = next(iter(self.reports.values()), None)
        if any_rep is not None:
            imp = sum(f.pairs["secure"].impostors for f in any_rep.folds)
            lines.append(f"{imp} held-out impostor pairs in all (FAR resolution {1 / max(1, imp):.1e}); per fold about "
                         f"{imp // max(1, len(any_rep.folds))}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root), "folds": self.folds, "target_far": self.target_far, "photos": self.photos,
            "people": self.people, "skipped": self.skipped,
            "pairs": {c: {p: r.pair_figures(p) for p in ("secure", "balanced", "fixed")} | {
                "per_fold": [{k: v.balanced_accuracy for k, v in f.pairs.items()} for f in r.folds]}
                for c, r in self.reports.items()},
            "open_set": [{"chain": c, "enrolled": int(n), "rule": rule, "genuine_probes": s.genuine_probes,
                          "genuine_accept": s.genuine_accept, "impostor_probes": s.impostor_probes,
                          "false_accepts": s.false_accepts, "false_accept": s.false_accept}
                         for c, n, rule, s in self.open_set_rows()],
        }


def run_cross_validation(root: Path, chains: Sequence[str], *, folds: int, target_far: float,
                         cache: Path | None = None, num_threads: int = 1) -> CrossValidationSummary:
    people = photos_by_person(root)
    photos = [str(p.relative_to(root)) for ps in people.values() for p in ps]
    interactive = sys.stderr.isatty()

    def progress(chain: str, i: int, n: int) -> None:
        if interactive:
            sys.stderr.write(f"\r{chain}: {i}/{n} photos\033[K")
            sys.stderr.flush()

    reports: dict[str, ChainReport] = {}
    skipped: dict[str, str] = {}
    for chain in chains:
        if chain == "reference" and not dlib_available():
            skipped[chain] = "dlib is not installed (pip install dlib-bin, build/test time only)"
            continue
        vectors = embed_chain(chain, root, photos, cache=cache, num_threads=num_threads, progress=progress)
        kept = [p for p in photos if p in vectors]
        matrix = np.stack([vectors[p] for p in kept])
        persons = [Path(p).parts[0] for p in kept]
        reports[chain] = cross_validate(matrix, persons, folds=folds, target_far=target_far,
                                        fixed_threshold=_fixed_threshold(chain), chain=chain)
    if interactive:
        sys.stderr.write("\r\033[K")
    return CrossValidationSummary(root, folds, target_far, len(photos), len(people), reports, skipped)


__all__ = ["REFERENCE_THRESHOLD", "CrossValidationSummary", "run_cross_validation"]
