"""An embedder for any TFLite face-embedding model, configured entirely by its manifest."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from facegate.embedders.manifest_embedder import ManifestEmbedder
from facegate.errors import ModelError
from facegate.inference.manifest import ModelManifest, verify_file
from facegate.inference.tflite import TfliteModel
from facegate.types import FloatArray, ImageBGR

logger = logging.getLogger(__name__)

#: chips per interpreter call; bounds the activation memory of large galleries at enrolment
MAX_BATCH = 16


class TfliteEmbedder(ManifestEmbedder):
    """Runs ``manifest``'s TFLite model on aligned BGR chips.

    Input size, colour order, layout, normalisation (unless folded into the graph) and the
    embedding output come from the manifest; the interpreter is resized to the batch.
    """

    file_format = "tflite"

    def __init__(self, manifest: ModelManifest, *, num_threads: int = 1, name: str | None = None) -> None:
        super().__init__(manifest, name=name)
        self._model = TfliteModel(verify_file(manifest), num_threads=num_threads)
        self._output = self._model.output_index(manifest.output("embedding").tensor)
        self._check_model_shapes()
        logger.debug("embedder %s ready (%s, model id %s)", self.name, manifest.name, self.model_id)

    def _check_model_shapes(self) -> None:
        spec = self._input
        shape = self._model.inputs[0].shape
        want = (
            (spec.height, spec.width, spec.channels)
            if spec.layout == "NHWC"
            else (spec.channels, spec.height, spec.width)
        )
        if tuple(shape[1:]) != want:
            raise ModelError(f"{self.manifest.file}: input shape {shape} does not match its manifest {want}")
        out = self._model.outputs[self._output].shape
        if out[-1] != self.dim:
            raise ModelError(f"{self.manifest.file}: output shape {out} does not match embedding_dim {self.dim}")

    def _run(self, chips: Sequence[ImageBGR]) -> FloatArray:
        rows: list[FloatArray] = []
        for start in range(0, len(chips), MAX_BATCH):
            batch = np.stack([self.preprocess(c) for c in chips[start : start + MAX_BATCH]])
            out = self._model.run([batch])[self._output]
            rows.append(out.reshape(out.shape[0], -1).astype(np.float32))
        return np.concatenate(rows)


__all__ = ["MAX_BATCH", "TfliteEmbedder"]
