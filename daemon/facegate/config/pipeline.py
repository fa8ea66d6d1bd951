"""Pipeline sections: detector, recognition (embedder and matching), quality gates, decision
(tracking and voting) and the gallery file.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
)

from facegate.config.base import (
    _EMBEDDER,
    _LIVE,
    GALLERY_FILE,
    ConfigPath,
    _known_name,
    _Section,
)
from facegate.detectors.options import DetectorSection
from facegate.operating_point import OPEN_SET_MARGIN

#: The ``detector:`` section: a union of the detector plugins' options models, selected by ``backend``
#: (:mod:`facegate.detectors.options`: each plugin's key, options and factory, listed once).
DetectorConfig = DetectorSection


class RecognitionConfig(_Section):
    model_name: str = Field(
        default="Dlib",
        min_length=1,
        max_length=64,
        description="embedder registry name (DeepFace's model_name), e.g. Dlib",
        json_schema_extra=_EMBEDDER,
    )
    variant: str | None = Field(
        default=None,
        max_length=64,
        description="embedder variant such as int8 or fp32; null = the manifest's default",
        json_schema_extra=_EMBEDDER,
    )
    num_threads: int = Field(
        default=2, ge=1, le=8, description="TFLite interpreter threads", json_schema_extra=_EMBEDDER
    )
    distance_metric: Literal["cosine", "euclidean", "euclidean_l2", "angular"] = Field(
        default="euclidean", description="distance between embeddings", json_schema_extra=_LIVE
    )
    threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=4.0,
        description="a match needs distance <= threshold; null = the model manifest's value for the metric",
        json_schema_extra=_LIVE,
    )
    margin: float = Field(
        # the library's find uses the same constant (facegate.operating_point, README Accuracy)
        default=OPEN_SET_MARGIN,
        ge=0.0,
        le=2.0,
        description="the best person must beat the second best by this distance, else no name",
        json_schema_extra=_LIVE,
    )
    top_k: int = Field(default=3, ge=1, le=50, description="candidates reported per match", json_schema_extra=_LIVE)

    @field_validator("model_name")
    @classmethod
    def _registered(cls, value: str) -> str:
        return _known_name("facegate.embedders.registry", "EMBEDDERS", value)


class GatesConfig(_Section):
    """Quality gates between alignment and embedding: faces failing one are not embedded."""

    min_face_px: float = Field(
        default=20.0,
        ge=0.0,
        le=2000.0,
        description="minimum inter-ocular distance, source pixels",
        json_schema_extra=_LIVE,
    )
    min_sharpness: float = Field(
        default=5.0,
        ge=0.0,
        le=1e6,
        description="minimum variance of the Laplacian on the aligned chip",
        json_schema_extra=_LIVE,
    )
    max_yaw: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="maximum |yaw| estimate, 0 = frontal, 1 = profile",
        json_schema_extra=_LIVE,
    )


class DecisionConfig(_Section):
    """Tracking and voting: one event per appearance, never one per frame."""

    votes_required: int = Field(
        default=3,
        ge=1,
        le=100,
        description="agreeing frames needed to announce a recognized person",
        json_schema_extra=_LIVE,
    )
    window_s: float = Field(
        default=2.0,
        gt=0.0,
        le=60.0,
        description="votes older than this are forgotten, seconds (longer at a low frame rate, to hold the votes)",
        json_schema_extra=_LIVE,
    )
    unknown_votes: int = Field(
        default=6, ge=1, le=100, description="frames without a match before announcing unknown", json_schema_extra=_LIVE
    )
    cooldown_s: float = Field(
        default=30.0,
        ge=0.0,
        le=86400.0,
        description="no second event for the same person within this time, seconds",
        json_schema_extra=_LIVE,
    )
    track_iou: float = Field(
        default=0.3, gt=0.0, lt=1.0, description="minimum box IoU to continue a track", json_schema_extra=_LIVE
    )
    track_max_age_s: float = Field(
        default=1.0,
        gt=0.0,
        le=60.0,
        # 0.5 s separates people who follow each other closer, but breaks tracks when a slow device drops frames
        description="a track unseen for this long ends, seconds",
        json_schema_extra=_LIVE
    )


class GalleryConfig(_Section):
    path: ConfigPath | None = Field(default=None, description=f"SQLite gallery file; null = <state_dir>/{GALLERY_FILE}")
    store_face_images: bool = Field(
        default=False, description="keep the enrolment face crops in the gallery (biometric data: off by default)"
    )
