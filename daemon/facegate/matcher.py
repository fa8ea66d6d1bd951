"""1:N search of a gallery: one matrix-vector product over precomputed unit rows and norms.

The metrics are in :mod:`facegate.metrics` and the snapshot types in :mod:`facegate.gallery_snapshot`
(both re-exported here); ``euclidean`` is expanded as ``||a||^2 + ||b||^2 - 2 a.b`` with the norms
precomputed per snapshot.

Storage choice (measured with ``facegate.bench.gallery``, see its docstring): the :class:`Matcher`
keeps the gallery as **float32**. numpy has no float16 BLAS, so a float16 matrix must be up-cast chunk
by chunk before the product, which measured ~8x slower than float32 on this machine (and float16 loses
about 1e-3 in cosine, the size of the dlib cosine threshold's fine structure). float16 only halves
memory (1M x 128: 256 MB instead of 512 MB); it stays selectable with ``storage="float16"`` for
memory-starved devices with huge galleries.

Aggregation per person (``aggregate``): ``"mean"`` (the default) ranks people by the mean of the
distances to their embeddings, ``"min"`` by the closest one. Measured with
:func:`facegate.bench.gallery.compare_aggregations` on dlib ResNet embeddings (dlib's own pipeline) of
the internal identities set (28 people, 133 photos; 100 random splits, half of each person's photos
enrolled, 30% of the people left out as impostors): both give rank-1 = 100%, but "mean" separates
genuine from impostor probes better (equal error rate 0.3% vs 1.0% with euclidean, 0.0% vs 0.6% with
cosine) and halves the open-set false-accept rate at the default thresholds (euclidean 0.6: 1.7% vs
3.5%; cosine 0.07: 0.6% vs 1.7%) with no false rejects in either. A single close photo of a
look-alike decides "min"; "mean" needs the person's photos to agree, and enrolment already screens
out photos that disagree (:mod:`facegate.gallery.outliers`). "min" remains the better choice when a
person is deliberately enrolled with very different looks (with and without a beard, say).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from facegate.errors import ConfigError, EmbeddingError
from facegate.gallery_snapshot import ArrayGallery, GallerySnapshot, GallerySource, IntArray
from facegate.metrics import EPS, check_metric, cos_to_distance, distance, distances, l2_normalize
from facegate.types import Candidate, Embedding, FloatArray, MatchResult, Metric

logger = logging.getLogger(__name__)

Storage = Literal["float32", "float16"]
Aggregate = Literal["min", "mean"]

#: rows per up-cast block when the matrix is stored as float16 (a 2 MB float32 temporary at D=128)
_F16_BLOCK = 4096
#: below this many rows one thread is faster than handing work to others
_PARALLEL_MIN_ROWS = 50_000


@dataclass(frozen=True, slots=True)
class _Prepared:
    """Derived arrays of one snapshot, immutable so matching threads can share them without locks."""

    snapshot_revision: int
    model_id: str
    dim: int
    person_ids: tuple[str, ...]
    names: tuple[str, ...]
    row_person: IntArray
    starts: IntArray  # first row of each person
    counts: NDArray[np.float32]  # rows per person
    max_rows: int  # most rows any person has
    unit: NDArray[np.float32] | NDArray[np.float16]  # (N, D) L2-normalised rows
    norms: FloatArray  # (N,) row norms of the raw vectors
    sq_norms: FloatArray  # (N,)

    @property
    def size(self) -> int:
        return int(self.unit.shape[0])


def _prepare(snapshot: GallerySnapshot, storage: Storage) -> _Prepared:
    m = snapshot.matrix
    n = int(m.shape[0])
    norms = np.sqrt(np.einsum("ij,ij->i", m, m, dtype=np.float32)) if n else np.zeros(0, np.float32)
    unit = m / np.maximum(norms, EPS)[:, None] if n else m
    rp = snapshot.row_person
    if n and np.any(np.diff(rp) < 0):
        raise EmbeddingError("gallery snapshot rows are not grouped by person")
    starts = np.flatnonzero(np.r_[True, rp[1:] != rp[:-1]]).astype(np.int64) if n else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, n]).astype(np.float32)
    return _Prepared(
        snapshot_revision=snapshot.revision,
        model_id=snapshot.model_id,
        dim=snapshot.dim,
        person_ids=snapshot.person_ids,
        names=snapshot.names,
        row_person=rp,
        starts=starts,
        counts=counts,
        max_rows=int(counts.max()) if n else 0,
        unit=unit.astype(np.float16) if storage == "float16" else np.ascontiguousarray(unit, dtype=np.float32),
        norms=norms.astype(np.float32),
        sq_norms=(norms * norms).astype(np.float32),
    )


def _dot_rows(unit: NDArray[np.float32] | NDArray[np.float16], probe: FloatArray, out: FloatArray,
              start: int, stop: int) -> None:
    """``out[start:stop] = unit[start:stop] @ probe`` in float32.

    ``einsum`` rather than BLAS: OpenBLAS spreads a large matrix-vector product over all cores on its
    own, and on a busy 2-core device its spinning workers turned a 0.15 ms search into 24 ms; einsum
    stays on the calling thread (SIMD, GIL released), so ``num_threads`` is the only parallelism.
    """
    if unit.dtype == np.float32:
        np.einsum("ij,j->i", unit[start:stop], probe, out=out[start:stop])
        return
    for a in range(start, stop, _F16_BLOCK):
        b = min(stop, a + _F16_BLOCK)
        np.einsum("ij,j->i", unit[a:b].astype(np.float32), probe, out=out[a:b])


class Matcher:
    """1:N search of one model's embeddings in a gallery, refreshed when the gallery's revision changes.

    ``threshold`` is either one float (for the default ``metric``) or a mapping metric -> threshold
    (an embedder's ``thresholds``). A probe is *unknown* when the best person's distance exceeds the
    threshold, when the margin (second-best person's distance minus the best's) is below ``margin``,
    or when the two best people tie. Safe to call from several threads.
    """

    def __init__(
        self,
        source: GallerySource,
        model_id: str,
        *,
        metric: str = "cosine",
        threshold: float | Mapping[str, float],
        margin: float = 0.0,
        k: int = 5,
        aggregate: Aggregate = "mean",
        storage: Storage = "float32",
        num_threads: int = 1,
    ) -> None:
        if aggregate not in ("min", "mean"):
            raise ConfigError(f"unknown aggregate {aggregate!r}; valid: min, mean")
        if storage not in ("float32", "float16"):
            raise ConfigError(f"unknown matrix storage {storage!r}; valid: float32, float16")
        self.source = source
        self.model_id = model_id
        self.metric: Metric
        self.thresholds: dict[Metric, float]
        self.margin: float
        self.k: int
        self.update_config(metric=metric, threshold=threshold, margin=margin, k=k)
        self.aggregate: Aggregate = aggregate
        self.storage: Storage = storage
        if num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
        self.num_threads = num_threads
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._prepared: _Prepared | None = None

    def update_config(self, *, metric: str, threshold: float | Mapping[str, float], margin: float, k: int) -> None:
        """New decision settings for the next probe; the loaded gallery snapshot is kept."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if margin < 0:
            raise ConfigError(f"margin must be >= 0, got {margin}")
        name = check_metric(metric)
        if isinstance(threshold, Mapping):
            thresholds = {check_metric(m): float(value) for m, value in threshold.items()}
        else:
            thresholds = {name: float(threshold)}
        self.metric, self.thresholds, self.margin, self.k = name, thresholds, float(margin), k

    # -- snapshot management -------------------------------------------------------------------
    def refresh(self, *, force: bool = False) -> None:
        """Reload the snapshot if the gallery's revision moved (or always with ``force``)."""
        self._current(force=force)

    def _current(self, *, force: bool = False) -> _Prepared:
        prepared = self._prepared
        revision = self.source.revision
        if prepared is not None and not force and prepared.snapshot_revision == revision:
            return prepared
        with self._lock:
            prepared = self._prepared
            if prepared is None or force or prepared.snapshot_revision != revision:
                snapshot = self.source.snapshot(self.model_id)
                prepared = _prepare(snapshot, self.storage)
                self._prepared = prepared
                logger.debug(
                    "matcher %s: loaded %d embeddings of %d people at revision %d",
                    self.model_id, prepared.size, len(prepared.person_ids), prepared.snapshot_revision,
                )
            return prepared

    @property
    def size(self) -> int:
        """Embeddings in the current snapshot."""
        return self._current().size

    def threshold_for(self, metric: str) -> float:
        name = check_metric(metric)
        try:
            return self.thresholds[name]
        except KeyError:
            raise ConfigError(
                f"no threshold for metric {name!r} (model {self.model_id}); known: {', '.join(self.thresholds)}"
            ) from None

    # -- search --------------------------------------------------------------------------------
    def match(
        self,
        embedding: Embedding,
        *,
        metric: str | None = None,
        threshold: float | None = None,
        margin: float | None = None,
        k: int | None = None,
    ) -> MatchResult:
        """Rank gallery people against ``embedding``; ``person_id`` is ``None`` for unknown.

        ``candidates`` holds the ``k`` best people (also for unknown). ``margin`` is ``inf`` when the
        gallery holds a single person, ``distance`` is ``inf`` for an empty gallery.
        """
        name = check_metric(metric) if metric is not None else self.metric
        limit = self.threshold_for(name) if threshold is None else float(threshold)
        need_margin = self.margin if margin is None else float(margin)
        top = self.k if k is None else int(k)
        if top < 1:
            raise ConfigError(f"k must be >= 1, got {top}")
        prepared = self._current()
        probe = self._check_probe(embedding, prepared)
        if prepared.size == 0:
            return MatchResult(None, None, math.inf, limit, math.inf, name, ())
        order, dist = self._rank(prepared, probe, name, max(top, 2))
        candidates = tuple(
            Candidate(prepared.person_ids[i], prepared.names[i], float(d)) for i, d in zip(order, dist, strict=True)
        )
        best = candidates[0]
        gap = candidates[1].distance - best.distance if len(candidates) > 1 else math.inf
        known = best.distance <= limit and gap >= need_margin and gap > 0.0
        return MatchResult(
            person_id=best.person_id if known else None,
            name=best.name if known else None,
            distance=best.distance,
            threshold=limit,
            margin=gap,
            metric=name,
            candidates=candidates[:top],
        )

    def _check_probe(self, embedding: Embedding, prepared: _Prepared) -> FloatArray:
        if embedding.model_id != self.model_id:
            raise EmbeddingError(
                f"embedding of model {embedding.model_id!r} cannot be matched against the {self.model_id!r} gallery"
            )
        vector = np.asarray(embedding.vector, dtype=np.float32)
        if vector.ndim != 1 or (prepared.dim and vector.shape[0] != prepared.dim):
            raise EmbeddingError(
                f"embedding has shape {vector.shape}, the {self.model_id!r} gallery holds {prepared.dim}-d vectors"
            )
        if not np.all(np.isfinite(vector)):
            raise EmbeddingError(f"embedding of model {embedding.model_id!r} contains NaN or infinity")
        return vector

    def _dots(self, prepared: _Prepared, unit_probe: FloatArray) -> FloatArray:
        """Cosines ``(N,)`` of every row with the probe: the one matrix-vector product.

        Rows are split over ``num_threads`` worker threads (numpy releases the GIL in the product)
        when the gallery is large enough for that to pay.
        """
        n = prepared.size
        out = np.empty(n, dtype=np.float32)
        parts = self.num_threads if n >= _PARALLEL_MIN_ROWS else 1
        if parts == 1:
            _dot_rows(prepared.unit, unit_probe, out, 0, n)
            return out
        bounds = np.linspace(0, n, parts + 1).astype(int).tolist()
        pool = self._executor()
        futures = [pool.submit(_dot_rows, prepared.unit, unit_probe, out, a, b) for a, b in itertools.pairwise(bounds)]
        for future in futures:
            future.result()
        return out

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.num_threads, thread_name_prefix="facegate-matcher")
            return self._pool

    def close(self) -> None:
        """Stop the worker threads (only started when ``num_threads > 1``)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _rank(
        self, prepared: _Prepared, probe: FloatArray, metric: Metric, need: int
    ) -> tuple[list[int], list[float]]:
        """Person indices and distances of the ``need`` best people, best first.

        Ties are broken by person index (person id order), so results are reproducible.
        """
        p_norm = np.float32(np.sqrt(np.dot(probe, probe)))
        if p_norm <= 0:
            raise EmbeddingError(f"embedding of model {self.model_id!r} is the zero vector")
        cos = self._dots(prepared, probe / p_norm)
        if metric == "euclidean":
            # ||m||^2 + ||p||^2 - 2 m.p with m.p = |m| |p| cos; clipped because of float cancellation
            row_score = prepared.sq_norms + p_norm * p_norm - (np.float32(2.0) * p_norm) * prepared.norms * cos
            np.maximum(row_score, np.float32(0.0), out=row_score)
        else:
            row_score = -cos  # every normalised metric is a decreasing function of the cosine
        n_people = len(prepared.person_ids)
        need = min(need, n_people)
        if self.aggregate == "mean" and prepared.max_rows > 1:
            # mean of the person's distances; for cosine, 1 - mean(cos) is the same number, cheaper
            per_row = cos if metric == "cosine" else self._to_distance(row_score, metric)
            sums = np.bincount(prepared.row_person, weights=per_row, minlength=n_people)
            per_person = (sums / prepared.counts).astype(np.float32)
            if metric == "cosine":
                per_person = np.float32(1.0) - per_person
            people = self._smallest(per_person, need)
            return people.tolist(), per_person[people].tolist()
        # best-of-person: the `need * max_rows` best rows always contain `need` distinct people
        rows = self._smallest(row_score, min(prepared.size, need * prepared.max_rows))
        seen: dict[int, float] = {}
        for row in rows.tolist():
            person = int(prepared.row_person[row])
            if person not in seen:
                seen[person] = float(row_score[row])
                if len(seen) == need:
                    break
        ranked = sorted(seen.items(), key=lambda item: (item[1], item[0]))
        scores = np.asarray([s for _, s in ranked], dtype=np.float32)
        return [p for p, _ in ranked], self._to_distance(scores, metric).tolist()

    @staticmethod
    def _smallest(values: FloatArray, count: int) -> IntArray:
        """Indices of the ``count`` smallest values, ascending, ties by index."""
        if count < values.shape[0]:
            part = np.argpartition(values, count - 1)[:count]
            # argpartition may drop an equal value at a lower index: widen to everything <= the cut
            cut = values[part].max()
            part = np.flatnonzero(values <= cut)
        else:
            part = np.arange(values.shape[0])
        order = np.lexsort((part, values[part]))
        result: IntArray = part[order][: max(count, 0)].astype(np.int64)
        return result

    @staticmethod
    def _to_distance(score: FloatArray, metric: Metric) -> FloatArray:
        if metric == "euclidean":
            out: FloatArray = np.sqrt(np.maximum(score, np.float32(0.0))).astype(np.float32)
            return out
        return cos_to_distance(-score, metric)


__all__ = [
    "ArrayGallery",
    "GallerySnapshot",
    "GallerySource",
    "Matcher",
    "Storage",
    "check_metric",
    "distance",
    "distances",
    "l2_normalize",
]
