"""The embedder interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from facegate.inference.manifest import AlignmentSpec
from facegate.types import FloatArray, ImageBGR


class Embedder(ABC):
    """Maps aligned face chips to embeddings."""

    #: registry key / DeepFace ``model_name``, e.g. "Dlib"
    name: str = ""
    #: identifies the vector space: embeddings of different model ids are never compared
    model_id: str = ""
    dim: int = 0
    alignment: AlignmentSpec
    thresholds: dict[str, float]
    #: per metric, slope of the calibrated confidence (see facegate.confidence.calibrated_confidence)
    confidence_slopes: dict[str, float] = {}  # noqa: RUF012 - class-level default, replaced per instance

    @abstractmethod
    def embed(self, chips: Sequence[ImageBGR]) -> FloatArray:
        """Embeddings ``(N, D)`` float32 for ``N`` BGR chips of the size in ``alignment``."""
