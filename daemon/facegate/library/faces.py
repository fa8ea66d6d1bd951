"""One image in, its faces out: :func:`extract_faces` (chips, areas, detector confidences) and
:func:`represent` (embeddings), DeepFace's names and parameters."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.engine import FaceResult
from facegate.errors import ConfigError
from facegate.images import ImageInput, load_image
from facegate.library.options import (
    DEFAULT_DETECTOR,
    DEFAULT_MODEL,
    check_deepface_options,
    engine_for,
    expanded_area,
    image_label,
)
from facegate.library.results import ExtractedFace, Representation
from facegate.types import FaceDetection

logger = logging.getLogger(__name__)

def _unaligned_chip(image: NDArray[np.uint8], det: FaceDetection, expand_percentage: int) -> NDArray[np.uint8]:
    x, y, w, h = det.box.to_xywh()
    if expand_percentage > 0:
        dw, dh = int(w * expand_percentage / 100 / 2), int(h * expand_percentage / 100 / 2)
        x, y, w, h = x - dw, y - dh, w + 2 * dw, h + 2 * dh
    x1, y1 = max(0, x), max(0, y)
    x2, y2 = min(image.shape[1], x + w), min(image.shape[0], y + h)
    return np.ascontiguousarray(image[y1:y2, x1:x2])


def extract_faces(
    img_path: ImageInput,
    detector_backend: str = DEFAULT_DETECTOR,
    enforce_detection: bool = True,
    align: bool = True,
    expand_percentage: int = 0,
    grayscale: bool = False,
    color_face: str = "rgb",
    normalize_face: bool = True,
    anti_spoofing: bool = False,
    max_faces: int | None = None,
    model_name: str = DEFAULT_MODEL,
) -> list[ExtractedFace]:
    """Detect faces and return their chips, facial areas and detector confidences, largest first.

    With ``align=True`` the chip is the aligned chip of ``model_name`` (dlib's 150x150 chip for "Dlib");
    otherwise the detected box (grown by ``expand_percentage``). ``color_face`` is "rgb", "bgr" or
    "gray"; ``normalize_face`` scales to float [0, 1].
    """
    if color_face not in ("rgb", "bgr", "gray"):
        raise ConfigError(f"color_face must be rgb, bgr or gray, not {color_face!r}")
    engine = engine_for(model_name, detector_backend)
    label = image_label(img_path, "image")
    image = load_image(img_path, name=label)
    results = engine.faces(image, enforce_detection=enforce_detection, max_faces=max_faces, source=label)
    if not results and not enforce_detection:
        results = [engine.whole_image_face(image)]
        results = [FaceResult(r.detection, r.aligned) for r in results]
        low_confidence = True
    else:
        low_confidence = False
    liveness = None
    if anti_spoofing:
        from facegate.analysis.antispoof import static_antispoof

        liveness = static_antispoof
    out: list[ExtractedFace] = []
    for r in results:
        chip = r.aligned.image if align else _unaligned_chip(image, r.detection, expand_percentage)
        if grayscale or color_face == "gray":
            face: NDArray[Any] = cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY)
        elif color_face == "rgb":
            face = chip[:, :, ::-1]
        else:
            face = chip
        face = face.astype(np.float32) / 255.0 if normalize_face else np.ascontiguousarray(face)
        is_real = score = None
        if liveness is not None:
            is_real, score = liveness(image, r)
        out.append(ExtractedFace(
            face=np.ascontiguousarray(face),
            facial_area=expanded_area(r.detection, image.shape, expand_percentage),
            confidence=0.0 if low_confidence else round(float(r.detection.score), 4),
            is_real=is_real,
            antispoof_score=score,
        ))
    return out


def represent(
    img_path: ImageInput | Sequence[ImageInput],
    model_name: str = DEFAULT_MODEL,
    enforce_detection: bool = True,
    detector_backend: str = DEFAULT_DETECTOR,
    align: bool = True,
    expand_percentage: int = 0,
    normalization: str = "base",
    anti_spoofing: bool = False,
    max_faces: int | None = None,
    l2_normalize: bool = False,
    num_threads: int = 1,
    silent: bool = False,
) -> list[Representation] | list[list[Representation]]:
    """Embeddings of the faces in an image, largest first; a list of images gives a list of lists.

    Positional parameters follow DeepFace's order. ``detector_backend="skip"`` takes the whole image as
    the face (it must already be a face crop). ``align=False`` is accepted for DeepFace compatibility;
    the Dlib model always needs its chip, so facegate still aligns and logs that once.
    ``expand_percentage`` grows the reported ``facial_area`` as DeepFace does (the chip is placed by
    landmarks, so the embedding is the same); ``normalization`` must be "base" (the model's own);
    ``anti_spoofing=True`` raises (no single-image anti-spoofing model exists offline); ``silent`` is
    accepted (facegate prints no progress).
    """
    del silent
    check_deepface_options(normalization, anti_spoofing, expand_percentage)
    if isinstance(img_path, (list, tuple)) or (isinstance(img_path, np.ndarray) and img_path.ndim == 4):
        return [
            _represent_one(item, model_name, enforce_detection, detector_backend, align, max_faces, l2_normalize,
                           num_threads, f"image[{i}]", expand_percentage)
            for i, item in enumerate(img_path)
        ]
    single: ImageInput = img_path  # type: ignore[assignment]  # not a sequence: checked above
    return _represent_one(single, model_name, enforce_detection, detector_backend, align,
                          max_faces, l2_normalize, num_threads, image_label(img_path, "image"), expand_percentage)


_ALIGN_WARNED: set[str] = set()


def _represent_one(img: ImageInput, model_name: str, enforce_detection: bool, detector_backend: str, align: bool,
                   max_faces: int | None, l2_normalize: bool, num_threads: int, label: str,
                   expand_percentage: int = 0) -> list[Representation]:
    engine = engine_for(model_name, detector_backend, num_threads)
    if not align and model_name not in _ALIGN_WARNED:
        _ALIGN_WARNED.add(model_name)
        logger.info("align=False ignored: model %s is only accurate on its aligned chip", model_name)
    image = load_image(img, name=label)
    results = engine.represent(image, enforce_detection=enforce_detection, max_faces=max_faces, source=label)
    if not results:
        # DeepFace: without enforce_detection the whole image is represented
        results = engine.represent(image, skip_detection=True, source=label)
        confidence_override: float | None = 0.0
    else:
        confidence_override = None
    out: list[Representation] = []
    for r in results:
        assert r.embedding is not None  # represent() always embeds
        vector = r.embedding.vector
        if l2_normalize:
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        out.append(Representation(
            embedding=tuple(float(v) for v in vector),
            facial_area=expanded_area(r.detection, image.shape, expand_percentage),
            face_confidence=confidence_override if confidence_override is not None else round(r.detection.score, 4),
            model_id=r.embedding.model_id,
        ))
    return out


__all__ = ["extract_faces", "represent"]
