"""One detector + aligner + embedder combination, loaded once per process and shared.

The library API, the CLI, the folder-of-images gallery sync and the daemon all go through
:class:`FaceEngine`, so a photo enrolled from the CLI and a face seen by the daemon produce vectors of
the same model, detector and alignment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facegate.align import Aligner, box_chip, build_aligner
from facegate.detectors.base import FaceDetector
from facegate.detectors.edge_pad import BORDER_MARGIN, EdgePaddedDetector
from facegate.detectors.letterbox import prereduced
from facegate.detectors.options import DEFAULT_DETECTOR, DetectorOptions
from facegate.detectors.registry import create_detector, detector_options
from facegate.detectors.skip import whole_image_detection
from facegate.embedders.base import Embedder
from facegate.embedders.registry import build_embedder
from facegate.errors import ConfigError, ImageError, NoFaceError
from facegate.gallery.outliers import OutlierPolicy
from facegate.gallery.store import SqliteGallery
from facegate.orientation import CONFIDENT_UPRIGHT, detect_any_orientation, faces_at_rotation, rotate_image
from facegate.types import AlignedFace, Box, Embedding, FaceDetection, FloatArray, ImageBGR

logger = logging.getLogger(__name__)

#: Frames larger than this (longest side) are downscaled for detection; boxes are mapped back.
DETECTION_MAX_SIDE = 1280


@dataclass(frozen=True, slots=True)
class EngineKey:
    detector_backend: str
    model_name: str
    model_variant: str | None
    detector_variant: str | None
    landmarks: str
    num_threads: int
    edge_pad: float


@dataclass(frozen=True, slots=True)
class FaceResult:
    """A detected face, its aligned chip and (when computed) its embedding."""

    detection: FaceDetection
    aligned: AlignedFace
    embedding: Embedding | None = None


def _scaled_detection(det: FaceDetection, factor: float) -> FaceDetection:
    if factor == 1.0:
        return det
    box = det.box
    return FaceDetection(
        box=Box(box.x1 * factor, box.y1 * factor, box.x2 * factor, box.y2 * factor),
        score=det.score,
        landmarks=(det.landmarks * np.float32(factor)).astype(np.float32),
        landmark_names=det.landmark_names,
        detector=det.detector,
    )


def detection_copy(image: ImageBGR) -> tuple[ImageBGR, float]:
    """What the detector is given for ``image``: itself, or a copy downscaled to
    :data:`DETECTION_MAX_SIDE` (bounded memory and time), and the factor back to source pixels."""
    h, w = image.shape[:2]
    if max(h, w) <= DETECTION_MAX_SIDE:
        return image, 1.0
    factor = max(h, w) / DETECTION_MAX_SIDE
    work = np.ascontiguousarray(
        cv2.resize(image, (round(w / factor), round(h / factor)), interpolation=cv2.INTER_AREA), dtype=np.uint8
    )
    return work, factor


class FaceEngine:
    """Detection, alignment and embedding for one configuration.

    ``detect`` downscales very large images before detection (bounded memory and time) and maps the
    results back to source pixels; alignment always samples the full-resolution source.
    """

    def __init__(
        self,
        detector_backend: str | DetectorOptions = DEFAULT_DETECTOR,
        model_name: str = "Dlib",
        *,
        model_variant: str | None = None,
        detector_variant: str | None = None,
        landmarks: str = "auto",
        num_threads: int = 1,
        edge_pad: float = 0.0,
    ) -> None:
        """``detector_backend`` is a detector name (with ``detector_variant``) or a detector's validated
        options (the daemon's ``detector:`` section, :func:`~facegate.detectors.registry.detector_options`)."""
        if isinstance(detector_backend, str):
            variant = {} if detector_variant is None else {"variant": detector_variant}
            detector_backend = detector_options(detector_backend, variant)
        elif detector_variant is not None:
            raise ConfigError("detector_variant goes with a detector name; set 'variant' in its options instead")
        detector = create_detector(detector_backend, num_threads=num_threads)
        if edge_pad > 0 and detector_backend.backend != "skip":
            detector = EdgePaddedDetector(detector, edge_pad)
        self.detector: FaceDetector = detector
        self.embedder: Embedder = build_embedder(model_name, variant=model_variant, num_threads=num_threads)
        self.aligner: Aligner = build_aligner(self.embedder.alignment, landmarks=landmarks, num_threads=num_threads)
        self.detector_backend: str = detector_backend.backend
        self.model_name = model_name
        #: True reads every orientation of a photo in full, unscreened (the behaviour before the
        #: screen; benchmarks compare the two)
        self.full_orientation_search = False
        self._orientation_detector: FaceDetector | None = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def outlier_policy(self) -> OutlierPolicy:
        """Enrolment screening with this model's own euclidean same-person threshold."""
        return OutlierPolicy.for_model(self.embedder.thresholds, "euclidean")

    def open_gallery(self, path: str | Path, **options: Any) -> SqliteGallery:
        """A gallery bound to this engine's model, screening enrolments with :meth:`outlier_policy`."""
        return SqliteGallery(path, model_id=self.model_id, outliers=self.outlier_policy(), **options)

    def detect(self, image: ImageBGR) -> list[FaceDetection]:
        work, factor = detection_copy(image)
        return [_scaled_detection(d, factor) for d in self.detector.detect(work)]

    def _search_orientations(self, image: ImageBGR) -> tuple[list[tuple[FaceDetection, AlignedFace]], int]:
        """:func:`detect_any_orientation` with the turned readings screened on the detection copy.

        Turning a multi-megapixel photo and downscaling it again costs more than the detector itself;
        the copy made for the upright reading (or a smaller one, see :meth:`_screen`), turned, gives the
        same scores within 0.0073 (measured).
        """
        if not self.detector.tells_orientation:
            degrees = self._orientation_by_landmarks(image)
            found = faces_at_rotation(self.detect, self.align, image, degrees)
            return found, degrees if found else 0
        if self.full_orientation_search:
            return detect_any_orientation(self.detect, self.align, image)
        work, factor = detection_copy(image)
        upright = [_scaled_detection(d, factor) for d in self.detector.detect(work)]
        return detect_any_orientation(self.detect, self.align, image, upright=upright, screen=self._screen(work),
                                      confident=CONFIDENT_UPRIGHT.get(self.detector.name))

    def _orientation_by_landmarks(self, image: ImageBGR) -> int:
        """The rotation at which the default detector, whose landmarks show which way a face is up,
        finds ``image``'s most confident upright face; 0 when it finds none in any orientation.

        For box-only detectors, whose own readings cannot tell (:attr:`FaceDetector.tells_orientation`).
        The detector is loaded on first use and kept with the engine."""
        with self._lock:
            if self._orientation_detector is None:
                self._orientation_detector = create_detector(detector_options(DEFAULT_DETECTOR, {}))
            oracle = self._orientation_detector

        def detect(picture: ImageBGR) -> list[FaceDetection]:
            work, factor = detection_copy(picture)
            return [_scaled_detection(d, factor) for d in oracle.detect(work)]

        _, degrees = detect_any_orientation(detect, self.align, image, confident=CONFIDENT_UPRIGHT.get(oracle.name))
        return degrees

    def _screen(self, work: ImageBGR) -> Callable[[int], float]:
        """Best detector score of ``work`` turned by some degrees, for screening turned readings.

        A detector that letterboxes into a fixed input (BlazeFace) reads a :func:`prereduced` copy of a
        few hundred pixels into the same input, so that copy is turned instead of ``work`` (within
        0.0073 of the full reading's score over the 133 identity photos turned four ways). The
        edge-padded pass reads a padded small copy differently (weak border faces were missed), so a
        reading that would need it, or comes near needing it, is screened on ``work`` itself (9% of the
        screens on the 54 photos of ``bench --photo``).
        """
        padded = self.detector if isinstance(self.detector, EdgePaddedDetector) else None
        plain = padded.inner if padded is not None else self.detector
        small = prereduced(work, *plain.input_size) if plain.input_size is not None else None

        def best(found: list[FaceDetection]) -> float:
            return max((d.score for d in found), default=-1.0)

        def screen(degrees: int) -> float:
            if small is not None:
                turned = rotate_image(small, degrees)
                found = plain.detect(turned)
                if padded is None or not padded.needs_padded_pass(found, turned.shape, 2 * BORDER_MARGIN):
                    return best(found)
            return best(self.detector.detect(rotate_image(work, degrees)))

        return screen

    def align(self, image: ImageBGR, detection: FaceDetection) -> AlignedFace:
        return self.aligner.align(image, detection)

    def whole_image_face(self, image: ImageBGR) -> FaceResult:
        """``detector_backend="skip"`` semantics: the image itself is the face chip (no landmarks)."""
        det = whole_image_detection(image)
        return FaceResult(det, box_chip(image, det, self.embedder.alignment.size))

    def faces(
        self,
        image: ImageBGR,
        *,
        enforce_detection: bool = True,
        max_faces: int | None = None,
        skip_detection: bool = False,
        source: str = "image",
    ) -> list[FaceResult]:
        """Detected and aligned faces, largest first (DeepFace orders by area when ``max_faces`` is set).

        Photos are searched in every orientation: when no upright face is found, the image turned by
        90, 270 and 180 degrees is tried, and upside-down detections are never aligned
        (:func:`facegate.orientation.detect_any_orientation`).
        """
        if skip_detection or self.detector_backend.casefold() == "skip":
            return [self.whole_image_face(image)]
        found, degrees = self._search_orientations(image)
        if degrees:
            logger.info("%s: no upright face; found %d turned by %d degrees", source, len(found), degrees)
        if not found:
            if enforce_detection:
                raise NoFaceError(
                    f"{source}: no face detected; check the image or pass enforce_detection=False"
                )
            return []
        found.sort(key=lambda item: item[0].box.area, reverse=True)
        if max_faces is not None:
            found = found[: max(0, max_faces)]
        return [FaceResult(d, face) for d, face in found]

    def embed_chips(self, chips: Sequence[ImageBGR]) -> FloatArray:
        if not chips:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return self.embedder.embed(chips)

    def represent(
        self,
        image: ImageBGR,
        *,
        enforce_detection: bool = True,
        max_faces: int | None = None,
        skip_detection: bool = False,
        source: str = "image",
    ) -> list[FaceResult]:
        found = self.faces(
            image,
            enforce_detection=enforce_detection,
            max_faces=max_faces,
            skip_detection=skip_detection,
            source=source,
        )
        if not found:
            return []
        vectors = self.embed_chips([f.aligned.image for f in found])
        return [
            FaceResult(f.detection, f.aligned, Embedding(vectors[i].copy(), self.model_id))
            for i, f in enumerate(found)
        ]


_ENGINES: dict[EngineKey, FaceEngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(
    detector_backend: str = "mediapipe",
    model_name: str = "Dlib",
    *,
    model_variant: str | None = None,
    detector_variant: str | None = None,
    landmarks: str = "auto",
    num_threads: int = 1,
    edge_pad: float = 0.2,
) -> FaceEngine:
    """The process-wide engine for a configuration (models load once per process).

    Photos given to the library get the edge-padding pass by default (faces cut by the picture's edge);
    the daemon builds its own engine without it, for frame rate.
    """
    key = EngineKey(detector_backend.casefold(), model_name.casefold(), model_variant, detector_variant,
                    landmarks, num_threads, edge_pad)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = FaceEngine(
                detector_backend,
                model_name,
                model_variant=model_variant,
                detector_variant=detector_variant,
                landmarks=landmarks,
                num_threads=num_threads,
                edge_pad=edge_pad,
            )
            _ENGINES[key] = engine
        return engine


def largest(results: list[FaceResult], *, source: str) -> FaceResult:
    if not results:
        raise NoFaceError(f"{source}: no face detected")
    return max(results, key=lambda r: r.detection.box.area)


def check_image(image: ImageBGR, *, source: str) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(f"{source}: internal error, expected a BGR uint8 image")


__all__ = ["FaceEngine", "FaceResult", "get_engine", "largest"]
