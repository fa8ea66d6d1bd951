"""Embedder registry: DeepFace's ``model_name`` strings -> embedders built from installed manifests.

facegate ships dlib's ResNet ("Dlib"). The other names DeepFace knows are registered too, so that
asking for one says exactly why it is unavailable and how to install a file the user has the right
to use, instead of "unknown model".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from facegate.embedders.base import Embedder
from facegate.errors import ModelError, ModelNotInstalledError
from facegate.inference.manifest import ModelZoo, default_zoo
from facegate.inference.reference_models import find_reference, how_to_get
from facegate.registry import Registry

logger = logging.getLogger(__name__)

#: imported manifests already warned about (once per process)
_WARNED: set[str] = set()


@dataclass(frozen=True, slots=True)
class ManifestEmbedderFactory:
    """Builds the embedder of one family from the model zoo (bundled and user-imported models)."""

    family: str
    bundled: bool = False

    def __call__(self, *, variant: str | None = None, num_threads: int = 1, zoo: ModelZoo | None = None) -> Embedder:
        """The family's embedder from the zoo; ``.onnx`` files (user-imported) run through OpenCV's DNN."""
        from facegate.embedders.tflite_embedder import TfliteEmbedder

        zoo = zoo if zoo is not None else default_zoo()
        try:
            manifest = zoo.family("embedder", self.family, variant)
        except ModelNotInstalledError as err:
            raise ModelNotInstalledError(self._not_installed(variant)) from err
        if manifest.operating_point.get("thresholds") == "deepface-defaults" and manifest.name not in _WARNED:
            _WARNED.add(manifest.name)
            logger.warning("%s: thresholds are DeepFace's defaults, not fitted to this imported file; fit them "
                           "with `facegate evaluate --calibrate IDENTITIES_DIR -m %s --write`", self.family,
                           self.family)
        if manifest.format == "onnx":
            from facegate.embedders.onnx_embedder import OnnxDnnEmbedder

            return OnnxDnnEmbedder(manifest, num_threads=num_threads, name=self.family)
        if manifest.format != "tflite":
            raise ModelError(f"{self.family}: model {manifest.name} is {manifest.format}; only TFLite and ONNX "
                             "embedders run")
        return TfliteEmbedder(manifest, num_threads=num_threads, name=self.family)

    def _not_installed(self, variant: str | None) -> str:
        what = f"{self.family}{f' ({variant})' if variant else ''}"
        ref = find_reference("embedder", self.family, variant)
        if ref is not None:
            return f"embedder {what} is not installed: {how_to_get(ref)}"
        if self.bundled:
            return (
                f"embedder {what} is not installed: its bundled model is missing from this installation "
                "(reinstall facegate, or rebuild the models with `facegate models build`); "
                "facegate never downloads weights"
            )
        from facegate.model_import import not_shipped_reason

        return (
            f"embedder {what} is not installed: {not_shipped_reason(self.family)}. Install a .tflite or .onnx file "
            f"you have the right to use with `facegate models import FILE --as {self.family}`"
        )


EMBEDDERS: Registry[ManifestEmbedderFactory] = Registry("embedder")
EMBEDDERS.register("Dlib", ManifestEmbedderFactory("Dlib", bundled=True))
for _name in ("VGG-Face", "Facenet", "Facenet512", "OpenFace", "DeepFace", "ArcFace", "SFace", "GhostFaceNet"):
    EMBEDDERS.register(_name, ManifestEmbedderFactory(_name))

DEFAULT_EMBEDDER = "Dlib"


def build_embedder(model_name: str = DEFAULT_EMBEDDER, *, variant: str | None = None, num_threads: int = 1) -> Embedder:
    """The embedder for a DeepFace ``model_name`` (case-insensitive).

    ``variant`` picks e.g. "fp32" or "int8"; without it the manifest marked ``default`` wins.
    Unknown names raise :class:`~facegate.errors.ConfigError`; known but absent models raise
    :class:`~facegate.errors.ModelNotInstalledError`.
    """
    factory = EMBEDDERS.get(model_name)
    return factory(variant=variant, num_threads=num_threads)


__all__ = ["DEFAULT_EMBEDDER", "EMBEDDERS", "ManifestEmbedderFactory", "build_embedder"]
