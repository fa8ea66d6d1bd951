"""The gallery as the :class:`~facegate.matcher.Matcher` consumes it: an immutable snapshot of one
model's embeddings at one revision, the protocol of a source of snapshots, and an in-memory source.

Split from :mod:`facegate.matcher` (which re-exports these) so that the gallery store, which produces
snapshots, does not depend on the search that consumes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from facegate.errors import EmbeddingError
from facegate.types import FloatArray

IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class GallerySnapshot:
    """The embeddings of one model at one gallery revision, as the :class:`Matcher` consumes them.

    ``matrix`` is ``(N, D)`` float32 with rows grouped by person; ``row_person`` ``(N,)`` int64 indexes
    ``person_ids``/``names`` and is non-decreasing. ``dim`` is 0 for an empty snapshot.
    """

    revision: int
    model_id: str
    dim: int
    person_ids: tuple[str, ...]
    names: tuple[str, ...]
    row_person: IntArray
    matrix: FloatArray

    @property
    def size(self) -> int:
        return int(self.matrix.shape[0])

    @classmethod
    def from_rows(
        cls,
        row_person_ids: Sequence[str],
        matrix: NDArray[np.floating],
        *,
        model_id: str,
        names: Mapping[str, str] | None = None,
        revision: int = 0,
    ) -> GallerySnapshot:
        """Build from one person id per row (any order; rows are regrouped stably by person id)."""
        m = np.asarray(matrix, dtype=np.float32)
        if m.ndim != 2 or m.shape[0] != len(row_person_ids):
            raise EmbeddingError(f"matrix of shape {m.shape} does not match {len(row_person_ids)} person ids")
        if m.shape[0] == 0:
            return cls.empty(model_id, revision=revision, dim=int(m.shape[1]))
        ids = np.asarray(row_person_ids, dtype=object)
        order = np.argsort(ids, kind="stable")
        uniq, row_person = np.unique(ids[order], return_inverse=True)
        person_ids = tuple(str(u) for u in uniq)
        name_map = names or {}
        return cls(
            revision=revision,
            model_id=model_id,
            dim=int(m.shape[1]),
            person_ids=person_ids,
            names=tuple(name_map.get(p, p) for p in person_ids),
            row_person=row_person.astype(np.int64),
            matrix=np.ascontiguousarray(m[order]),
        )

    @classmethod
    def empty(cls, model_id: str, *, revision: int = 0, dim: int = 0) -> GallerySnapshot:
        return cls(
            revision=revision,
            model_id=model_id,
            dim=dim,
            person_ids=(),
            names=(),
            row_person=np.zeros(0, dtype=np.int64),
            matrix=np.zeros((0, dim), dtype=np.float32),
        )


class GallerySource(Protocol):
    """Anything the :class:`Matcher` can search: a monotonically increasing revision and snapshots."""

    @property
    def revision(self) -> int: ...

    def snapshot(self, model_id: str) -> GallerySnapshot: ...


class ArrayGallery:
    """An in-memory, immutable :class:`GallerySource` (tests, benchmarks, ad-hoc lists of embeddings)."""

    def __init__(self, snapshot: GallerySnapshot) -> None:
        self._snapshot = snapshot

    @property
    def revision(self) -> int:
        return self._snapshot.revision

    def snapshot(self, model_id: str) -> GallerySnapshot:
        if model_id != self._snapshot.model_id:
            return GallerySnapshot.empty(model_id, revision=self._snapshot.revision)
        return self._snapshot


__all__ = ["ArrayGallery", "GallerySnapshot", "GallerySource", "IntArray"]
