"""A classification head driven by its manifest: chip geometry, colour, normalisation, labels.

Every attribute model (emotion, age, gender) is a :class:`TfliteHead`: it cuts its own chip from a
:class:`~facegate.analysis.views.FaceView` with the manifest's alignment block, converts the BGR chip
to the manifest's colour order, normalises it unless the graph does, and returns the output tensor
with the role ``probabilities``. No constant of any model lives in code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.align import Aligner
from facegate.analysis.views import FaceView
from facegate.errors import ModelError
from facegate.inference.manifest import AlignmentSpec, InputSpec, ModelKind, ModelManifest, default_zoo, verify_file
from facegate.inference.tflite import TfliteModel
from facegate.types import ImageBGR

logger = logging.getLogger(__name__)


def load_manifest_for(kind: ModelKind, family: str, variant: str | None = None) -> ModelManifest:
    """The installed manifest of ``kind``/``family`` (the default variant unless ``variant``)."""
    return default_zoo().family(kind, family, variant)


class TfliteHead:
    """One attribute network. ``predict`` returns ``(N, K)`` float32 probabilities for BGR chips."""

    def __init__(self, manifest: ModelManifest, *, num_threads: int = 1) -> None:
        if manifest.input is None or manifest.alignment is None:
            raise ModelError(f"{manifest.name}: an attribute model needs input and alignment blocks")
        self.manifest = manifest
        self.input: InputSpec = manifest.input
        self.alignment: AlignmentSpec = manifest.alignment
        if self.input.layout != "NHWC" or self.input.width != self.alignment.size \
                or self.input.height != self.alignment.size:
            raise ModelError(f"{manifest.name}: input {self.input.width}x{self.input.height} {self.input.layout} "
                             f"does not take its {self.alignment.size}px chip")
        self.model = TfliteModel(verify_file(manifest), num_threads=num_threads)
        output = manifest.output("probabilities")
        self._output = self.model.output_index(output.tensor)
        self.classes = int(output.shape[-1]) if output.shape else len(manifest.labels)
        self._aligner = Aligner(self.alignment)
        norm = self.input.normalisation
        channels = self.input.channels
        self._mean = np.asarray(norm.mean if len(norm.mean) == channels else norm.mean * channels,
                                dtype=np.float32)[:channels]
        self._std = np.asarray(norm.std if len(norm.std) == channels else norm.std * channels,
                               dtype=np.float32)[:channels]

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def size(self) -> int:
        return self.alignment.size

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    def chip(self, view: FaceView) -> ImageBGR:
        """The head's BGR ``(size, size, 3)`` chip: aligned on its template, or the resized whole image."""
        if view.whole_image or view.detection is None:
            interpolation = cv2.INTER_AREA if min(view.image.shape[:2]) > self.size else cv2.INTER_LINEAR
            resized = cv2.resize(view.image, (self.size, self.size), interpolation=interpolation)
            return np.ascontiguousarray(resized, dtype=np.uint8)
        return self._aligner.align(view.image, view.detection).image

    def prepare(self, chip: ImageBGR) -> NDArray[np.float32]:
        """``(1, H, W, C)`` float32 model input of one BGR chip."""
        colour = self.input.colour
        if colour == "GRAY":
            pixels = cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY)[:, :, None]
        elif colour == "RGB":
            pixels = chip[:, :, ::-1]
        else:
            pixels = chip
        x = pixels.astype(np.float32)
        if not self.input.normalisation.in_graph:
            x = (x - self._mean) / self._std
        out: NDArray[np.float32] = np.ascontiguousarray(x[None])
        return out

    def predict(self, chips: Sequence[ImageBGR]) -> NDArray[np.float32]:
        """``(N, K)`` outputs of BGR chips, one inference each (fer's file has a fixed batch of 1)."""
        rows = [self.model.run([self.prepare(c)])[self._output].reshape(-1) for c in chips]
        if not rows:
            return np.zeros((0, self.classes), dtype=np.float32)
        return np.stack(rows).astype(np.float32)

    def predict_views(self, views: Sequence[FaceView]) -> NDArray[np.float32]:
        return self.predict([self.chip(v) for v in views])


__all__ = ["TfliteHead", "load_manifest_for"]
