"""The detector plugins: one typed options model per detector, the one list of them.

Each model is the YAML ``detector:`` section for its backend, the keyword options of
:func:`facegate.detectors.registry.build_detector`, and what its factory receives: it carries its key
(``backend``) and its ``implementation`` (``module:factory``, imported on first use). The config union
(:data:`DetectorSection`), the registry and the factory table are built from :data:`DETECTOR_TYPES`, so
a new detector is one options model here plus its implementation module, and no other table.

This module imports pydantic only (the config loads it; the implementations pull in OpenCV and TFLite).
Unset options mean the model's own default (the manifest's ``min_score``, no size filter).
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, BeforeValidator, Field

from facegate.config.base import _DETECTOR, _Section

DEFAULT_DETECTOR = "mediapipe"


def _key(name: str) -> Any:
    """The ``backend`` field of the detector registered as ``name`` (its discriminator)."""
    return Field(default=name, description="detector registry name", json_schema_extra=_DETECTOR)


class DetectorOptions(_Section):
    """Options every detector accepts (``skip`` accepts and ignores them, so one section fits all). A
    member never narrows them: switching ``backend`` at run time carries their values over as they are."""

    #: the factory, ``module:attribute``: ``factory(options, *, num_threads=1, zoo=None) -> FaceDetector``
    implementation: ClassVar[str]

    backend: str = Field(
        description="detector registry name: mediapipe (BlazeFace short range), mediapipe_full, opencv, "
        "mtcnn, dlib, skip, ssd, retinaface, yunet",
        json_schema_extra=_DETECTOR,
    )
    variant: str | None = Field(
        default=None,
        max_length=64,
        description="model variant such as int8 or fp16; null = the manifest's default",
        json_schema_extra=_DETECTOR,
    )
    score_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="minimum detection score; null = the model manifest's own threshold",
        json_schema_extra=_DETECTOR,
    )
    min_face_px: float = Field(
        default=0.0,
        ge=0.0,
        le=4096.0,
        # the library's keyword since the first detectors; the YAML's name is min_face_px
        validation_alias=AliasChoices("min_face_px", "min_face_size"),
        description="drop detections whose box is narrower or shorter than this, source pixels; 0 = keep all",
        json_schema_extra=_DETECTOR,
    )
    max_faces: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="keep at most this many faces per image, best first; null = all",
        json_schema_extra=_DETECTOR,
    )
    num_threads: int = Field(
        default=2,
        ge=1,
        le=8,
        description="interpreter threads of the daemon's detector (the library passes its own count)",
        json_schema_extra=_DETECTOR,
    )


class _BlazeFace(DetectorOptions):
    implementation: ClassVar[str] = "facegate.detectors.blazeface:build_blazeface"


class BlazeFaceOptions(_BlazeFace):
    """BlazeFace short range ("mediapipe"): faces filling a good part of the frame."""

    backend: Literal["mediapipe"] = _key("mediapipe")


class BlazeFaceFullOptions(_BlazeFace):
    """BlazeFace full range ("mediapipe_full"): small faces in large frames."""

    backend: Literal["mediapipe_full"] = _key("mediapipe_full")


class HaarOptions(DetectorOptions):
    """OpenCV Haar cascades ("opencv"); its score is the logistic of the cascade's final stage weight (an
    unset ``score_threshold`` keeps every face the cascade finds)."""

    implementation: ClassVar[str] = "facegate.detectors.haar:build"

    backend: Literal["opencv"] = _key("opencv")
    min_neighbors: int | None = Field(
        default=None, ge=0, le=100, description="override the manifest's detectMultiScale minNeighbors",
        json_schema_extra=_DETECTOR,
    )
    detect_eyes: bool = Field(
        default=True, description="run the eye cascade (else box-geometry eyes only)", json_schema_extra=_DETECTOR
    )


class MtcnnOptions(DetectorOptions):
    """MTCNN ("mtcnn"): the P-/R-/O-Net cascade; ``score_threshold`` overrides the O-Net threshold."""

    implementation: ClassVar[str] = "facegate.detectors.mtcnn:build"

    backend: Literal["mtcnn"] = _key("mtcnn")
    pyramid_min_face: float | None = Field(
        default=None, gt=0.0, le=4096.0,
        description="override the image pyramid's smallest face, pixels; null = the manifest's",
        json_schema_extra=_DETECTOR,
    )


class MmodOptions(DetectorOptions):
    """dlib's CNN face detector ("dlib"); an unset ``score_threshold`` means 0.5."""

    implementation: ClassVar[str] = "facegate.detectors.mmod:build"

    backend: Literal["dlib"] = _key("dlib")


class SsdOptions(DetectorOptions):
    """OpenCV's ResNet-10 SSD ("ssd"), imported with ``facegate models import``."""

    implementation: ClassVar[str] = "facegate.detectors.onnx_dnn:build_ssd"

    backend: Literal["ssd"] = _key("ssd")


class RetinaFaceOptions(DetectorOptions):
    """RetinaFace ("retinaface"), imported with ``facegate models import``."""

    implementation: ClassVar[str] = "facegate.detectors.onnx_dnn:build_retinaface"

    backend: Literal["retinaface"] = _key("retinaface")


class YunetOptions(DetectorOptions):
    """YuNet ("yunet"), imported with ``facegate models import``."""

    implementation: ClassVar[str] = "facegate.detectors.onnx_dnn:build_yunet"

    backend: Literal["yunet"] = _key("yunet")


class SkipOptions(DetectorOptions):
    """"skip": the whole image is one face; the common options are accepted and ignored."""

    implementation: ClassVar[str] = "facegate.detectors.skip:build"

    backend: Literal["skip"] = _key("skip")


_Members = (
    BlazeFaceOptions | BlazeFaceFullOptions | HaarOptions | MtcnnOptions | MmodOptions | SkipOptions | SsdOptions
    | RetinaFaceOptions | YunetOptions
)
#: registry key -> options model, in registry order (the default first)
DETECTOR_TYPES: dict[str, type[DetectorOptions]] = {
    typing.get_args(model.model_fields["backend"].annotation)[0]: model for model in typing.get_args(_Members)
}


def canonical_backend(name: str) -> str:
    """The registered spelling of a detector name (names are case-insensitive); ``name`` when unknown."""
    return next((key for key in DETECTOR_TYPES if key == name.casefold()), name)


def _with_backend(value: Any) -> Any:
    # ``backend`` may be omitted (the default detector) and is case-insensitive, like every registry name
    if isinstance(value, dict):
        backend = value.get("backend", DEFAULT_DETECTOR)
        return {**value, "backend": canonical_backend(backend) if isinstance(backend, str) else backend}
    return value


#: The ``detector:`` section: the options model of the detector its ``backend`` names.
DetectorSection = Annotated[_Members, Field(discriminator="backend"), BeforeValidator(_with_backend)]

__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTOR_TYPES",
    "BlazeFaceFullOptions",
    "BlazeFaceOptions",
    "DetectorOptions",
    "DetectorSection",
    "HaarOptions",
    "MmodOptions",
    "MtcnnOptions",
    "RetinaFaceOptions",
    "SkipOptions",
    "SsdOptions",
    "YunetOptions",
    "canonical_backend",
]
