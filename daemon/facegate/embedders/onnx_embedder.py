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

from facegate.embedders.manifest_embedder import ManifestEmbedder
from facegate.errors import ModelError
from facegate.inference.manifest import ModelManifest, verify_file
from facegate.types import FloatArray, ImageBGR

logger = logging.getLogger(__name__)


class OnnxDnnEmbedder(ManifestEmbedder):
    """Runs ``manifest``'s ONNX model through ``cv2.dnn`` on aligned BGR chips, one batch per call."""

    file_format = "onnx"

    def __init__(self, manifest: ModelManifest, *, num_threads: int = 1, name: str | None = None) -> None:
        super().__init__(manifest, name=name)
        try:
            self._net: Any = cv2.dnn.readNetFromONNX(str(verify_file(manifest)))
        except cv2.error as err:
            raise ModelError(f"OpenCV cannot load {manifest.file}: {err}") from err
        self._output = str(manifest.output("embedding").tensor)
        # cv2.dnn.Net is not thread-safe; OpenCV's own thread pool serves num_threads
        self._lock = threading.Lock()
        del num_threads

    def _run(self, chips: Sequence[ImageBGR]) -> FloatArray:
        rows: list[FloatArray] = []
        with self._lock:
            for chip in chips:  # one at a time: ONNX exports often fix the batch at 1
                self._net.setInput(self.preprocess(chip)[None])
                out = np.asarray(self._net.forward(self._output), dtype=np.float32)
                rows.append(out.reshape(-1))
        return np.stack(rows)


__all__ = ["OnnxDnnEmbedder"]
