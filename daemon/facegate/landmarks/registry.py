"""Landmark providers by name.

``"auto"`` resolves to :data:`DEFAULT_LANDMARKER`, the provider with the best measured verification
accuracy of the default chain (BlazeFace short-range + landmarks + dlib chip + Dlib int8 embedder) on
the internal pair list; ``python -m facegate.evaluation.landmark_choice`` reproduces the measurement.
"""

from __future__ import annotations

from collections.abc import Callable

from facegate.landmarks.base import Landmarker
from facegate.registry import Registry

LandmarkerFactory = Callable[..., Landmarker]

LANDMARKERS: Registry[LandmarkerFactory] = Registry("landmarker")
LANDMARKERS.register_lazy("shape_predictor", "facegate.landmarks.shape_predictor:ShapePredictorLandmarker")
LANDMARKERS.register_lazy("facemesh", "facegate.landmarks.facemesh:FaceMeshLandmarker")

#: chosen by measured verification accuracy (see the module docstring). Measured (Dlib int8, BlazeFace
#: short-range fp16): shape_predictor and facemesh both 99.62% on the 523 peer pairs and 99.50% on all
#: 1,000 pairs at euclidean 0.6; all-pairs AUC 0.99970 vs 0.99860 decides (dlib-native: 99.43% / 99.70%).
#: The shape predictor also stays closer to dlib's own chain (median embedding distance 0.064 vs 0.099).
DEFAULT_LANDMARKER = "shape_predictor"


def build_landmarker(name: str = "auto", *, num_threads: int = 1) -> Landmarker:
    """The landmark provider ``name`` (``"auto"`` = :data:`DEFAULT_LANDMARKER`), model loaded."""
    key = DEFAULT_LANDMARKER if name.casefold() == "auto" else name
    factory = LANDMARKERS.get(key)
    return factory(num_threads=num_threads)


__all__ = ["DEFAULT_LANDMARKER", "LANDMARKERS", "build_landmarker"]
