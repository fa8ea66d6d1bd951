"""The typed results of the DeepFace-style library (:mod:`facegate.api`): frozen dataclasses whose
``to_dict()`` returns DeepFace's dictionaries and which read like them
(:class:`~facegate.results.DeepFaceDict`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.errors import ConfigError
from facegate.facial_area import FacialArea
from facegate.results import DeepFaceDict


@dataclass(frozen=True, slots=True)
class ExtractedFace(DeepFaceDict):
    """One face of :func:`extract_faces`: ``face`` is the chip (RGB float in [0, 1] by default)."""

    face: NDArray[Any]
    facial_area: FacialArea
    confidence: float
    is_real: bool | None = None
    antispoof_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"face": self.face, "facial_area": self.facial_area.to_dict(),
                               "confidence": self.confidence}
        if self.is_real is not None:
            out["is_real"] = self.is_real
            out["antispoof_score"] = self.antispoof_score
        return out


@dataclass(frozen=True, slots=True)
class Representation(DeepFaceDict):
    embedding: tuple[float, ...]
    facial_area: FacialArea
    face_confidence: float
    model_id: str

    def vector(self) -> NDArray[np.float32]:
        return np.asarray(self.embedding, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"embedding": list(self.embedding), "facial_area": self.facial_area.to_dict(),
                "face_confidence": self.face_confidence}


@dataclass(frozen=True, slots=True)
class VerifyResult(DeepFaceDict):
    verified: bool
    distance: float
    threshold: float
    confidence: float
    model: str
    detector_backend: str
    distance_metric: str
    facial_areas: dict[str, FacialArea | None]
    time: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "distance": self.distance,
            "threshold": self.threshold,
            "confidence": self.confidence,
            "model": self.model,
            "detector_backend": self.detector_backend,
            "distance_metric": self.distance_metric,
            # DeepFace's name for the same field
            "similarity_metric": self.distance_metric,
            "facial_areas": {k: (v.to_dict() if v else None) for k, v in self.facial_areas.items()},
            "time": self.time,
        }


@dataclass(frozen=True, slots=True)
class FindMatch(DeepFaceDict):
    """One ranked gallery candidate (a person) for one probe face."""

    identity: str
    person_id: str
    distance: float
    threshold: float
    confidence: float
    verified: bool

    def to_dict(self) -> dict[str, Any]:
        return {"identity": self.identity, "person_id": self.person_id, "distance": self.distance,
                "threshold": self.threshold, "confidence": self.confidence, "verified": self.verified}


@dataclass(frozen=True, slots=True)
class FindRow(DeepFaceDict):
    """One gallery *image* within the threshold of a probe face: a row of DeepFace's ``find`` DataFrame.

    ``identity`` is the matched image's path in folder mode (DeepFace's meaning), else the person's
    name; ``target_*`` (the face box in that gallery image) are None because the gallery stores
    embeddings, not boxes; ``hash`` is the image's sha256 when known.
    """

    identity: str
    person_id: str
    name: str
    hash: str | None
    source: FacialArea
    threshold: float
    distance: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return {"identity": self.identity, "hash": self.hash, "target_x": None, "target_y": None,
                "target_w": None, "target_h": None, "source_x": self.source.x, "source_y": self.source.y,
                "source_w": self.source.w, "source_h": self.source.h, "threshold": self.threshold,
                "distance": self.distance, "person_id": self.person_id, "name": self.name,
                "confidence": self.confidence}


#: DeepFace's ``find`` DataFrame columns, in its order (facegate adds person_id, name and confidence)
FIND_COLUMNS = ("identity", "hash", "target_x", "target_y", "target_w", "target_h", "source_x", "source_y",
                "source_w", "source_h", "threshold", "distance", "person_id", "name", "confidence")


@dataclass(frozen=True, slots=True)
class FindResult(DeepFaceDict):
    """Candidates for one face of the probe image, best first; ``identity`` is ``None`` for unknown."""

    facial_area: FacialArea
    identity: str | None
    person_id: str | None
    margin: float
    candidates: tuple[FindMatch, ...] = field(default_factory=tuple)
    #: every gallery image within the threshold, nearest first (DeepFace's DataFrame rows)
    rows: tuple[FindRow, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"facial_area": self.facial_area.to_dict(), "identity": self.identity,
                "person_id": self.person_id, "margin": self.margin,
                "candidates": [c.to_dict() for c in self.candidates]}

    def to_records(self) -> list[dict[str, Any]]:
        """DeepFace's ``find(..., batched=True)`` dicts for this face (the DataFrame's rows)."""
        return [r.to_dict() for r in self.rows]

    def to_pandas(self) -> Any:
        """DeepFace's ``find`` DataFrame for this face: one row per gallery image within the threshold,
        nearest first, with DeepFace's columns (:data:`FIND_COLUMNS`). Needs pandas (not a dependency)."""
        import importlib

        try:
            pd = importlib.import_module("pandas")
        except ImportError as err:
            raise ConfigError("to_pandas() / return_type='dataframe' needs pandas, which facegate does not "
                              "install: pip install pandas (or facegate[dataframe])") from err
        return pd.DataFrame(self.to_records(), columns=list(FIND_COLUMNS))


__all__ = ["FIND_COLUMNS", "ExtractedFace", "FindMatch", "FindResult", "FindRow", "Representation", "VerifyResult"]
