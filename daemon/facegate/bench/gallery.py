"""Gallery benchmarks: 1:N search time over synthetic galleries, and per-person aggregation quality.

:func:`bench_gallery` returns rows for ``facegate bench`` to print (this module never prints). Search
time is measured through the real :class:`~facegate.matcher.Matcher` (matrix product, aggregation,
top-k), one probe at a time, after a warm-up; the gallery snapshot is prepared once and not timed.

Threads: the matcher's own ``num_threads`` (row blocks on worker threads; the product never goes
through OpenBLAS's own thread pool, see :func:`facegate.matcher._dot_rows`).

Synthetic vectors are fine here: search time does not depend on what the vectors mean.

Measured on the 2-core x86 development box while other jobs kept both cores busy (load 3-6),
``bench_gallery()`` defaults (128-d, 4 embeddings per person, cosine, mean aggregation), median ms per
search, 1 thread, wall / CPU: 10k 0.51 / 0.52; 100k 4.77 / 4.78 (target 5); 1M 43.9 / 43.8 (target 50).
float16 storage: 10k 4.5, 100k 34.5, 1M 380 ms CPU (7-9x slower: the up-cast dominates). A second
thread gave nothing measurable there because no core was free; OpenBLAS's two threads had halved the
1M product (49 -> 24 ms) when one was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from facegate.matcher import Aggregate, ArrayGallery, GallerySnapshot, Matcher, Storage
from facegate.types import Embedding, FloatArray, Metric

logger = logging.getLogger(__name__)

#: targets of the gallery issue: embeddings -> median milliseconds per 1:N search
TARGETS_MS: dict[int, float] = {100_000: 5.0, 1_000_000: 50.0}

@dataclass(frozen=True, slots=True)
class SearchTimeRow:
    """Median time of one 1:N search."""

    embeddings: int
    people: int
    dim: int
    threads: int
    storage: str
    aggregate: str
    metric: str
    median_ms: float
    p90_ms: float
    cpu_ms: float  # median process CPU time per search (all threads)
    matrix_mb: float  # the matcher's matrix in memory
    target_ms: float | None
    meets_target: bool | None  # None when the size has no target


class _OneShotSource:
    """Hands its snapshot to the matcher once and forgets it, so the raw matrix is not kept twice."""

    def __init__(self, snapshot: GallerySnapshot) -> None:
        self._snapshot: GallerySnapshot | None = snapshot
        self._revision = snapshot.revision

    @property
    def revision(self) -> int:
        return self._revision

    def snapshot(self, model_id: str) -> GallerySnapshot:
        snap = self._snapshot
        if snap is None:
            raise RuntimeError("benchmark snapshot already consumed")
        self._snapshot = None
        return snap


def synthetic_snapshot(n: int, *, dim: int = 128, per_person: int = 4, seed: int = 0) -> GallerySnapshot:
    """``n`` float32 vectors: ``n // per_person`` people, each a random centre plus small noise."""
    rng = np.random.default_rng(seed)
    people = max(1, n // per_person)
    centres = rng.standard_normal((people, dim), dtype=np.float32)
    row_person = np.minimum(np.arange(n, dtype=np.int64) // per_person, people - 1)
    matrix = np.empty((n, dim), dtype=np.float32)
    block = 65_536
    for start in range(0, n, block):  # chunked, so the noise never needs a second full-size array
        stop = min(n, start + block)
        matrix[start:stop] = centres[row_person[start:stop]]
        matrix[start:stop] += 0.3 * rng.standard_normal((stop - start, dim), dtype=np.float32)
    ids = tuple(f"p{i:07d}" for i in range(people))
    return GallerySnapshot(1, "synthetic", dim, ids, ids, row_person, matrix)


def _time_matcher(matcher: Matcher, probes: Sequence[Embedding], repeats: int) -> tuple[float, float, float]:
    """Median and p90 wall milliseconds per search, and median process CPU milliseconds (all threads).

    On a shared machine the CPU time shows what a search costs when it is not waiting for a core.
    """
    matcher.match(probes[0])  # warm-up: prepares the snapshot, pages in the matrix
    wall: list[float] = []
    cpu: list[float] = []
    for i in range(repeats):
        probe = probes[i % len(probes)]
        c0, w0 = time.process_time(), time.perf_counter()
        matcher.match(probe)
        wall.append((time.perf_counter() - w0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    return float(np.median(wall)), float(np.percentile(wall, 90)), float(np.median(cpu))


def bench_gallery(
    sizes: Sequence[int] = (10_000, 100_000, 1_000_000),
    threads: Sequence[int] = (1, 2),
    storages: Sequence[Storage] = ("float32", "float16"),
    *,
    dim: int = 128,
    per_person: int = 4,
    metric: Metric = "cosine",
    aggregate: Aggregate = "mean",
    repeats: int = 31,
    slow_repeats: int = 5,
    seed: int = 0,
) -> list[SearchTimeRow]:
    """Median 1:N search time per (gallery size, threads, storage).

    ``slow_repeats`` is used for float16 at >= 1M rows (hundreds of ms per search). Memory: a 1M x 128
    gallery needs ~1 GB while the matcher prepares it (raw + normalised float32).
    """
    rows: list[SearchTimeRow] = []
    rng = np.random.default_rng(seed + 1)
    for n in sizes:
        for storage in storages:
            snapshot = synthetic_snapshot(n, dim=dim, per_person=per_person, seed=seed)
            probes = [
                Embedding(snapshot.matrix[int(i)] + 0.3 * rng.standard_normal(dim, dtype=np.float32), "synthetic")
                for i in rng.integers(0, n, size=8)
            ]
            people = len(snapshot.person_ids)
            matcher = Matcher(
                _OneShotSource(snapshot), "synthetic", metric=metric, threshold=1.0, aggregate=aggregate,
                storage=storage,
            )
            del snapshot
            matcher.refresh()
            itemsize = 2 if storage == "float16" else 4
            for t in threads:
                matcher.num_threads = t  # the pool is sized for max(threads); t of them get work
                reps = slow_repeats if storage == "float16" and n >= 1_000_000 else repeats
                median, p90, cpu = _time_matcher(matcher, probes, reps)
                rows.append(
                    SearchTimeRow(
                        embeddings=n, people=people, dim=dim, threads=t, storage=storage,
                        aggregate=aggregate, metric=metric, median_ms=median, p90_ms=p90, cpu_ms=cpu,
                        matrix_mb=n * dim * itemsize / 1e6, target_ms=TARGETS_MS.get(n),
                        meets_target=None if n not in TARGETS_MS else median <= TARGETS_MS[n],
                    )
                )
                logger.debug("gallery bench %s", rows[-1])
            matcher.close()
            del matcher
    return rows


# -- aggregation quality on real embeddings -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AggregationRow:
    """Open-set identification quality of one per-person aggregation over random splits."""

    aggregate: str
    metric: str
    threshold: float
    rank1: float  # enrolled people's probes whose best candidate is right
    eer: float  # equal error rate, genuine best-distance vs impostor best-distance
    tar_at_far_1pct: float
    frr_at_threshold: float
    far_at_threshold: float  # impostor probes (people not enrolled) accepted at ``threshold``
    genuine: int
    impostor: int


def compare_aggregations(
    vectors: NDArray[np.floating],
    labels: Sequence[str],
    *,
    metric: Metric,
    threshold: float,
    aggregates: Sequence[Aggregate] = ("min", "mean"),
    splits: int = 100,
    holdout: float = 0.3,
    seed: int = 1,
) -> list[AggregationRow]:
    """Compare aggregations on labelled real embeddings ``(N, D)``.

    Each split leaves ``holdout`` of the people out (their photos are impostor probes) and enrols the
    first half (at least one) of every other person's shuffled photos; the rest are genuine probes.
    """
    matrix: FloatArray = np.asarray(vectors, dtype=np.float32)
    by_person: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_person.setdefault(label, []).append(i)
    out: list[AggregationRow] = []
    for aggregate in aggregates:
        rng = np.random.default_rng(seed)
        genuine: list[float] = []
        impostor: list[float] = []
        hits = 0
        for _ in range(splits):
            people = sorted(by_person)
            rng.shuffle(people)
            left_out = set(people[: int(holdout * len(people))])
            enrolled: list[int] = []
            probes: list[int] = []
            for person, members in sorted(by_person.items()):
                idx = list(members)
                rng.shuffle(idx)
                if person in left_out:
                    probes += idx
                    continue
                keep = max(1, (len(idx) + 1) // 2) if len(idx) > 1 else 1
                enrolled += idx[:keep]
                probes += idx[keep:]
            snap = GallerySnapshot.from_rows([labels[i] for i in enrolled], matrix[enrolled], model_id="study")
            matcher = Matcher(ArrayGallery(snap), "study", metric=metric, threshold=threshold, aggregate=aggregate)
            for i in probes:
                result = matcher.match(Embedding(matrix[i], "study"))
                if labels[i] in left_out:
                    impostor.append(result.distance)
                else:
                    right = result.candidates[0].person_id == labels[i]
                    hits += right
                    genuine.append(result.distance if right else float("inf"))
        g = np.asarray(genuine)
        imp = np.sort(np.asarray(impostor))
        out.append(
            AggregationRow(
                aggregate=aggregate,
                metric=metric,
                threshold=threshold,
                rank1=hits / max(1, len(g)),
                eer=_eer(g, imp),
                tar_at_far_1pct=float(np.mean(g < imp[int(0.01 * len(imp))])) if len(imp) else float("nan"),
                frr_at_threshold=float(np.mean(g > threshold)),
                far_at_threshold=float(np.mean(imp <= threshold)) if len(imp) else float("nan"),
                genuine=len(g),
                impostor=len(imp),
            )
        )
    return out


def _eer(genuine: NDArray[np.float64], impostor: NDArray[np.float64]) -> float:
    """Equal error rate of 'accept when distance <= t' over every candidate threshold."""
    if not len(genuine) or not len(impostor):
        return float("nan")
    finite = genuine[np.isfinite(genuine)]
    candidates = np.unique(np.concatenate([finite, impostor]))
    frr = np.array([np.mean(genuine > t) for t in candidates])
    far = np.array([np.mean(impostor <= t) for t in candidates])
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2.0)


__all__ = [
    "TARGETS_MS",
    "AggregationRow",
    "SearchTimeRow",
    "bench_gallery",
    "compare_aggregations",
    "synthetic_snapshot",
]
