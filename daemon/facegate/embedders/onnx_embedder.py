"""An embedder for a user-imported ``.onnx`` face-embedding model, run by OpenCV's DNN module.

OpenCV is a runtime dependency anyway, so ONNX files need no extra runtime. The manifest written by
``facegate models import`` gives the input size, colour order and normalisation (NCHW blobs).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.embedders.base import Embedder
from facegate.errors import EmbeddingError, ImageError, ModelError
from facegate.inference.manifest import AlignmentSpec, InputSpec, ModelManifest, verify_file
from facegate.types import FloatArray, ImageBGR

logger = logging.getLogger(__name__)


class OnnxDnnEmbedder(Embedder):
    """Runs ``manifest``'s ONNX model through ``cv2.dnn`` on aligned BGR chips, one batch per call."""

    def __init__(self, manifest: ModelManifest, *, num_threads: int = 1, name: str | None = None) -> None:
        if manifest.kind != "embedder" or manifest.format != "onnx":
            raise ModelError(f"manifest {manifest.name} is not an ONNX embedder")
        if manifest.input is None or manifest.alignment is None or manifest.embedding_dim is None:
            raise ModelError(f"manifest {manifest.name} lacks the input, alignment or embedding_dim an embedder needs")
        self.manifest = manifest
        self.name = name or manifest.family
        self.model_id = manifest.model_id or manifest.name
        self.dim = manifest.embedding_dim
        self.alignment: AlignmentSpec = manifest.alignment
        self.thresholds = dict(manifest.thresholds)
        self._input: InputSpec = manifest.input
        norm = self._input.normalisation
        self._mean = np.broadcast_to(np.asarray(norm.mean, dtype=np.float32), (3,)).copy()
        self._scale = (1.0 / np.broadcast_to(np.asarray(norm.std, dtype=np.float32), (3,))).astype(np.float32)
        if norm.in_graph:
            self._mean[:] = 0.0
            self._scale[:] = 1.0
        try:
            self._net: Any = cv2.dnn.readNetFromONNX(str(verify_file(manifest)))
        except cv2.error as err:
            raise ModelError(f"OpenCV cannot load {manifest.file}: {err}") from err
        self._output = str(manifest.output("embedding").tensor)
        # cv2.dnn.Net is not thread-safe; OpenCV's own thread pool serves num_threads
        self._lock = threading.Lock()
        del num_threads

    def preprocess(self, chip: ImageBGR) -> NDArray[np.float32]:
        """One BGR uint8 chip -> ``(3, H, W)`` float32 in the model's colour order and scale."""
        spec = self._input
        if chip.ndim != 3 or chip.shape[2] != 3 or chip.dtype != np.uint8:
            raise ImageError(f"an aligned chip must be (H, W, 3) uint8 BGR, got {chip.shape} {chip.dtype}")
        if chip.shape[:2] != (spec.height, spec.width):
            chip = np.asarray(cv2.resize(chip, (spec.width, spec.height), interpolation=cv2.INTER_AREA), np.uint8)
        image = cv2.cvtColor(chip, cv2.COLOR_BGR2RGB) if spec.colour == "RGB" else chip
        x = (image.astype(np.float32) - self._mean) * self._scale
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def embed(self, chips: Sequence[ImageBGR]) -> FloatArray:
        """Embeddings ``(N, D)`` float32 of ``N`` aligned BGR uint8 chips."""
        if len(chips) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows: list[FloatArray] = []
        with self._lock:
            for chip in chips:  # one at a time: ONNX exports often fix the batch at 1
                self._net.setInput(self.preprocess(chip)[None])
                out = np.asarray(self._net.forward(self._output), dtype=np.float32)
                rows.append(out.reshape(-1))
        result = np.stack(rows)
        if result.shape != (len(chips), self.dim):
            raise EmbeddingError(f"{self.manifest.file} produced {result.shape}, expected ({len(chips)}, {self.dim})")
        if not np.all(np.isfinite(result)):
            raise EmbeddingError(f"{self.manifest.file} produced non-finite embeddings")
        return result


__all__ = ["OnnxDnnEmbedder"]
