"""What every manifest-driven embedder shares: reading the manifest, turning chips into model input,
checking the output. Subclasses only load their runtime and run a batch."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.embedders.base import Embedder
from facegate.errors import EmbeddingError, ImageError, ModelError
from facegate.inference.manifest import AlignmentSpec, InputSpec, ModelManifest
from facegate.types import FloatArray, ImageBGR


class ManifestEmbedder(Embedder):
    """Input size, colour order, layout, normalisation (unless folded into the graph), thresholds and
    confidence slopes all come from ``manifest``; ``file_format`` is the format the subclass runs."""

    file_format: str = ""

    def __init__(self, manifest: ModelManifest, *, name: str | None = None) -> None:
        if manifest.kind != "embedder":
            raise ModelError(f"manifest {manifest.name} describes a {manifest.kind}, not an embedder")
        if manifest.format != self.file_format:
            raise ModelError(f"manifest {manifest.name}: format {manifest.format} is not {self.file_format}")
        if manifest.input is None or manifest.alignment is None or manifest.embedding_dim is None:
            raise ModelError(f"manifest {manifest.name} lacks the input, alignment or embedding_dim an embedder needs")
        self.manifest = manifest
        self.name = name or manifest.family
        self.model_id = manifest.model_id or manifest.name
        self.dim = manifest.embedding_dim
        self.alignment: AlignmentSpec = manifest.alignment
        self.thresholds = dict(manifest.thresholds)
        self.confidence_slopes = dict(manifest.confidence_slopes)
        self._input: InputSpec = manifest.input
        norm = self._input.normalisation
        channels = self._input.channels
        self._mean: NDArray[np.float32] | None = None
        self._scale: NDArray[np.float32] | None = None
        if not norm.in_graph:
            self._mean = np.broadcast_to(np.asarray(norm.mean, dtype=np.float32), (channels,)).copy()
            self._scale = (1.0 / np.broadcast_to(np.asarray(norm.std, dtype=np.float32), (channels,))).astype(
                np.float32
            )

    def preprocess(self, chip: ImageBGR) -> NDArray[np.float32]:
        """One BGR uint8 chip -> the model's float32 input ``(H, W, C)`` or ``(C, H, W)``."""
        spec = self._input
        if chip.ndim != 3 or chip.shape[2] != 3 or chip.dtype != np.uint8:
            raise ImageError(f"an aligned chip must be (H, W, 3) uint8 BGR, got {chip.shape} {chip.dtype}")
        if chip.shape[:2] != (spec.height, spec.width):
            # chips from our aligner already have the right size; this serves callers' own crops
            chip = np.asarray(cv2.resize(chip, (spec.width, spec.height), interpolation=cv2.INTER_AREA), np.uint8)
        if spec.colour == "RGB":
            image = cv2.cvtColor(chip, cv2.COLOR_BGR2RGB)
        elif spec.colour == "GRAY":
            image = cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY)[:, :, None]
        else:
            image = chip
        x = image.astype(np.float32)
        if self._mean is not None and self._scale is not None:
            x = (x - self._mean) * self._scale
        if spec.layout == "NCHW":
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x)

    @abstractmethod
    def _run(self, chips: Sequence[ImageBGR]) -> FloatArray:
        """Raw model output ``(N, D)`` for ``N >= 1`` chips."""

    def embed(self, chips: Sequence[ImageBGR]) -> FloatArray:
        """Embeddings ``(N, D)`` float32 of ``N`` aligned BGR uint8 chips (``(0, D)`` for none)."""
        if len(chips) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        result = self._run(chips)
        if result.shape != (len(chips), self.dim):
            raise EmbeddingError(f"{self.manifest.file} produced {result.shape}, expected ({len(chips)}, {self.dim})")
        if not np.all(np.isfinite(result)):
            raise EmbeddingError(f"{self.manifest.file} produced non-finite embeddings")
        return result


__all__ = ["ManifestEmbedder"]
