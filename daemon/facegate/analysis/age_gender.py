"""Apparent age and gender: dlib's networks by Cydral (CC0), on dlib face chips.

Age: the expectation over 81 one-year bins (bin values from the manifest's decoder, ``0.25, 1, ...,
80``). Gender: ``[female, male]`` probabilities, reported with DeepFace's labels Woman / Man. Each
network takes its own dlib chip (64 px and 32 px, padding 0.2), cut from the same five points.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from facegate.analysis.head import TfliteHead, load_manifest_for
from facegate.analysis.views import FaceView
from facegate.errors import ModelError
from facegate.inference.manifest import ModelManifest

#: DeepFace's gender labels, in the order of :meth:`GenderModel.probabilities`' columns
GENDER_LABELS: tuple[str, str] = ("Woman", "Man")
#: the models' own labels, mapped onto DeepFace's
_MODEL_GENDER: dict[str, str] = {"female": "Woman", "male": "Man", "woman": "Woman", "man": "Man"}
DEFAULT_FAMILY = "dlib"


class AgeModel:
    """``years(views) -> (N,)`` float64 apparent ages."""

    def __init__(self, manifest: ModelManifest | None = None, *, num_threads: int = 1) -> None:
        manifest = manifest if manifest is not None else load_manifest_for("age", DEFAULT_FAMILY)
        self.head = TfliteHead(manifest, num_threads=num_threads)
        try:
            bins = np.asarray(manifest.decoder["bin_values"], dtype=np.float64).reshape(-1)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{manifest.name}: decoder needs bin_values: {err}") from err
        if bins.shape[0] != self.head.classes:
            raise ModelError(f"{manifest.name}: {bins.shape[0]} bin values for {self.head.classes} outputs")
        self.bin_values = bins

    def years(self, views: Sequence[FaceView]) -> NDArray[np.float64]:
        probabilities = self.head.predict_views(views).astype(np.float64)
        out: NDArray[np.float64] = probabilities @ self.bin_values
        return out


class GenderModel:
    """``probabilities(views) -> (N, 2)`` float32 columns ``[Woman, Man]``."""

    def __init__(self, manifest: ModelManifest | None = None, *, num_threads: int = 1) -> None:
        manifest = manifest if manifest is not None else load_manifest_for("gender", DEFAULT_FAMILY)
        self.head = TfliteHead(manifest, num_threads=num_threads)
        try:
            names = [_MODEL_GENDER[label.casefold()] for label in manifest.labels]
        except KeyError as err:
            raise ModelError(f"{manifest.name}: unknown gender label {err}") from err
        if sorted(names) != sorted(GENDER_LABELS) or self.head.classes != 2:
            raise ModelError(f"{manifest.name}: labels {list(manifest.labels)} are not one woman and one man")
        self._order = [names.index(label) for label in GENDER_LABELS]

    def probabilities(self, views: Sequence[FaceView]) -> NDArray[np.float32]:
        out: NDArray[np.float32] = self.head.predict_views(views)[:, self._order]
        return out


__all__ = ["GENDER_LABELS", "AgeModel", "GenderModel"]
