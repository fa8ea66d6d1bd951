"""The public, DeepFace-style API: ``extract_faces``, ``represent``, ``verify``, ``find``, ``analyze``
(the last implemented in :mod:`facegate.analysis.api`).

Names, parameters and result fields follow DeepFace so code written for it ports by changing the import;
results are typed frozen dataclasses with ``to_dict()`` returning DeepFace's dictionaries, and they can be
read like those dictionaries (``result["verified"]``, ``.get``, ``.keys()``: :class:`~facegate.results.DeepFaceDict`).
Defaults differ where facegate ships different models: ``model_name="Dlib"``, ``detector_backend="mediapipe"``
and ``distance_metric="euclidean"`` (dlib's metric); the README's DeepFace table lists every parameter.

Images may be a path (``str`` / ``pathlib.Path``), a BGR numpy array, encoded bytes or a base64 string.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.analysis.api import AnalysisResult, analyze
from facegate.confidence import calibrated_confidence
from facegate.engine import FaceEngine, FaceResult, get_engine
from facegate.errors import ConfigError, EmbeddingError, GalleryError, NoFaceError
from facegate.facial_area import FacialArea
from facegate.images import ImageInput, load_image
from facegate.matcher import GallerySnapshot
from facegate.matcher import distance as metric_distance
from facegate.operating_point import OPEN_SET_MARGIN
from facegate.results import DeepFaceDict
from facegate.types import METRICS, Box, Embedding, FaceDetection, Metric

#: DeepFace's ``distance_metric`` may also be a function of two vectors (smaller = more alike)
DistanceFunction = Callable[[Any, Any], float]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "Dlib"
DEFAULT_DETECTOR = "mediapipe"


# --------------------------------------------------------------------------- result types


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


# --------------------------------------------------------------------------- helpers


def _check_metric(distance_metric: str) -> Metric:
    for metric in METRICS:
        if metric == distance_metric:
            return metric
    raise ConfigError(f"unknown distance_metric {distance_metric!r}; valid: {', '.join(METRICS)} or a function")


def _metric_or_function(distance_metric: str | DistanceFunction, threshold: float | None
                        ) -> tuple[Metric | None, DistanceFunction | None, str]:
    """A named metric, or DeepFace's callable one (which needs an explicit threshold)."""
    if callable(distance_metric):
        if threshold is None:
            name = getattr(distance_metric, "__name__", "the distance function")
            raise ConfigError(f"distance_metric={name} is a function: pass threshold=... (no calibrated default)")
        return None, distance_metric, str(getattr(distance_metric, "__name__", "custom"))
    metric = _check_metric(distance_metric)
    return metric, None, metric


def _call_distance(fn: DistanceFunction, a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    value = float(fn(a, b))
    if not np.isfinite(value):
        raise ConfigError(f"distance_metric function returned {value}")
    return value


#: DeepFace's input normalisations; facegate's models carry their own in their manifest
_NORMALIZATIONS = ("base", "raw", "Facenet", "Facenet2018", "VGGFace", "VGGFace2", "ArcFace")


def _check_deepface_options(normalization: str, anti_spoofing: bool, expand_percentage: int) -> None:
    """DeepFace options every recognition function accepts, checked the same way everywhere."""
    if normalization != "base":
        if normalization in _NORMALIZATIONS:
            raise ConfigError(
                f"normalization={normalization!r} is DeepFace's preprocessing for its own {normalization} weights; "
                "facegate's models apply the normalisation written in their manifest, so only 'base' (that) "
                "is accepted"
            )
        raise ConfigError(f"unknown normalization {normalization!r}; DeepFace knows {', '.join(_NORMALIZATIONS)}")
    if anti_spoofing:
        from facegate.analysis.antispoof import static_antispoof_unavailable

        raise static_antispoof_unavailable()
    if not (isinstance(expand_percentage, int) and 0 <= expand_percentage <= 1000):
        raise ConfigError(f"expand_percentage must be an integer 0..1000, got {expand_percentage!r}")


def expanded_area(det: FaceDetection, image_shape: tuple[int, ...], expand_percentage: int) -> FacialArea:
    """``facial_area`` with the box grown by ``expand_percentage`` as DeepFace grows it (clipped to the
    image). The embedding does not change: the aligned chip is placed by landmarks, not by the box."""
    if expand_percentage <= 0:
        return FacialArea.from_detection(det)
    x, y, w, h = det.box.to_xywh()
    height, width = int(image_shape[0]), int(image_shape[1])
    ew, eh = w + int(w * expand_percentage / 100), h + int(h * expand_percentage / 100)
    x, y = max(0, x - int((ew - w) / 2)), max(0, y - int((eh - h) / 2))
    w, h = min(width - x, ew), min(height - y, eh)
    grown = FaceDetection(Box(float(x), float(y), float(x + w), float(y + h)), det.score, det.landmarks,
                          det.landmark_names, det.detector)
    return FacialArea.from_detection(grown)


def _engine(model_name: str, detector_backend: str, num_threads: int = 1) -> FaceEngine:
    return get_engine(detector_backend, model_name, num_threads=num_threads)


def threshold_for(engine: FaceEngine, metric: Metric) -> float:
    thresholds = engine.embedder.thresholds
    if metric in thresholds:
        return float(thresholds[metric])
    raise ConfigError(
        f"model {engine.model_name} has no default threshold for {metric}; pass threshold=..."
    )


def _is_embedding(value: object) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and np.issubdtype(value.dtype, np.number)
    if isinstance(value, (list, tuple)) and value:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    return False


def _as_embedding(value: Any, engine: FaceEngine, label: str) -> Embedding:
    vector = np.asarray(value, dtype=np.float32).reshape(-1)
    if vector.shape[0] != engine.embedder.dim:
        raise EmbeddingError(
            f"{label}: embedding has {vector.shape[0]} dimensions but model {engine.model_name} "
            f"produces {engine.embedder.dim}"
        )
    if not np.all(np.isfinite(vector)):
        raise EmbeddingError(f"{label}: embedding contains NaN or infinity")
    return Embedding(vector, engine.model_id)


def _label(img: Any, default: str) -> str:
    return str(img) if isinstance(img, (str, Path)) and len(str(img)) < 512 else default


def _faces(engine: FaceEngine, img: ImageInput, *, label: str, enforce_detection: bool,
           max_faces: int | None = None) -> tuple[NDArray[np.uint8], list[FaceResult]]:
    image = load_image(img, name=label)
    return image, engine.represent(image, enforce_detection=enforce_detection, max_faces=max_faces, source=label)


def _unaligned_chip(image: NDArray[np.uint8], det: FaceDetection, expand_percentage: int) -> NDArray[np.uint8]:
    x, y, w, h = det.box.to_xywh()
    if expand_percentage > 0:
        dw, dh = int(w * expand_percentage / 100 / 2), int(h * expand_percentage / 100 / 2)
        x, y, w, h = x - dw, y - dh, w + 2 * dw, h + 2 * dh
    x1, y1 = max(0, x), max(0, y)
    x2, y2 = min(image.shape[1], x + w), min(image.shape[0], y + h)
    return np.ascontiguousarray(image[y1:y2, x1:x2])


# --------------------------------------------------------------------------- API


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
    engine = _engine(model_name, detector_backend)
    label = _label(img_path, "image")
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
    _check_deepface_options(normalization, anti_spoofing, expand_percentage)
    if isinstance(img_path, (list, tuple)) or (isinstance(img_path, np.ndarray) and img_path.ndim == 4):
        return [
            _represent_one(item, model_name, enforce_detection, detector_backend, align, max_faces, l2_normalize,
                           num_threads, f"image[{i}]", expand_percentage)
            for i, item in enumerate(img_path)
        ]
    single: ImageInput = img_path  # type: ignore[assignment]  # not a sequence: checked above
    return _represent_one(single, model_name, enforce_detection, detector_backend, align,
                          max_faces, l2_normalize, num_threads, _label(img_path, "image"), expand_percentage)


_ALIGN_WARNED: set[str] = set()


def _represent_one(img: ImageInput, model_name: str, enforce_detection: bool, detector_backend: str, align: bool,
                   max_faces: int | None, l2_normalize: bool, num_threads: int, label: str,
                   expand_percentage: int = 0) -> list[Representation]:
    engine = _engine(model_name, detector_backend, num_threads)
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


def verify(
    img1_path: ImageInput | Sequence[float],
    img2_path: ImageInput | Sequence[float],
    model_name: str = DEFAULT_MODEL,
    detector_backend: str = DEFAULT_DETECTOR,
    distance_metric: str | DistanceFunction = "euclidean",
    enforce_detection: bool = True,
    align: bool = True,
    expand_percentage: int = 0,
    normalization: str = "base",
    silent: bool = False,
    threshold: float | None = None,
    anti_spoofing: bool = False,
    num_threads: int = 1,
) -> VerifyResult:
    """Are two images (or precomputed embeddings) the same person?

    Positional parameters follow DeepFace's order. With several faces in an image, every pair is
    compared and the closest pair decides, as DeepFace does. ``confidence`` is 51..100 when verified and
    0..49 when not. ``distance_metric`` may be a function ``f(a, b) -> float`` of two embeddings
    (smaller = more alike), which needs an explicit ``threshold``; see :func:`represent` for
    ``expand_percentage``, ``normalization``, ``anti_spoofing`` and ``silent``.
    """
    del silent
    start = time.perf_counter()
    _check_deepface_options(normalization, anti_spoofing, expand_percentage)
    metric, function, metric_name = _metric_or_function(distance_metric, threshold)
    engine = _engine(model_name, detector_backend, num_threads)
    thr = float(threshold) if threshold is not None else threshold_for(engine, metric or "euclidean")

    def side(img: Any, name: str) -> list[tuple[Embedding, FacialArea | None]]:
        if _is_embedding(img):
            return [(_as_embedding(img, engine, name), None)]
        image, results = _faces(engine, img, label=_label(img, name), enforce_detection=enforce_detection)
        if not results:  # enforce_detection=False: the whole image, decoded once
            results = engine.represent(image, skip_detection=True, source=name)
        return [(r.embedding, expanded_area(r.detection, image.shape, expand_percentage))
                for r in results if r.embedding is not None]

    left = side(img1_path, "img1")
    right = side(img2_path, "img2")
    best: tuple[float, FacialArea | None, FacialArea | None] | None = None
    for e1, a1 in left:
        for e2, a2 in right:
            if function is not None:
                d = _call_distance(function, e1.vector, e2.vector)
            else:
                assert metric is not None
                d = metric_distance(e1.vector, e2.vector, metric)
            if best is None or d < best[0]:
                best = (d, a1, a2)
    if best is None:  # pragma: no cover - side() never returns empty
        raise NoFaceError("no face to compare")
    dist, area1, area2 = best
    verified = dist <= thr
    slope = engine.embedder.confidence_slopes.get(metric) if metric is not None else None
    return VerifyResult(
        verified=bool(verified),
        distance=float(dist),
        threshold=thr,
        confidence=round(calibrated_confidence(float(dist), thr, slope), 2),
        model=engine.model_name,
        detector_backend=engine.detector_backend,
        distance_metric=metric_name,
        facial_areas={"img1": area1, "img2": area2},
        time=round(time.perf_counter() - start, 3),
    )


def build_model(model_name: str, task: str = "facial_recognition", num_threads: int = 1) -> Any:
    """DeepFace's ``build_model``: the loaded embedder (``task="facial_recognition"``) or detector
    (``task="face_detector"``) for a name; raises for names whose weights are not installed."""
    if task == "facial_recognition":
        from facegate.embedders.registry import build_embedder

        return build_embedder(model_name, num_threads=num_threads)
    if task == "face_detector":
        from facegate.detectors.registry import build_detector

        return build_detector(model_name, num_threads=num_threads)
    raise ConfigError(f"unknown task {task!r}; valid: facial_recognition, face_detector")


# --------------------------------------------------------------------------- 1:N


def default_gallery_path() -> Path:
    """``$FACEGATE_GALLERY``, else ``gallery.sqlite`` in the state directory (systemd) or
    ``~/.local/share/facegate``."""
    import os

    env = os.environ.get("FACEGATE_GALLERY")
    if env:
        return Path(env)
    from facegate.config.models import default_state_dir

    return default_state_dir() / "gallery.sqlite"


def open_gallery(gallery: str | Path | Any | None, engine: FaceEngine, *, sync: bool = True) -> Any:
    """A :class:`SqliteGallery` for ``gallery``: an open gallery, a ``.sqlite`` file, or a folder of
    images with one sub-folder per person (DeepFace's ``db_path``), enrolled and kept in sync."""
    from facegate.gallery.folder_sync import FolderSync
    from facegate.gallery.store import SqliteGallery

    if isinstance(gallery, SqliteGallery):
        return gallery
    path = default_gallery_path() if gallery is None else Path(gallery)
    if path.is_dir():
        from facegate.enrollment import engine_embed_image

        syncer = FolderSync(path, engine_embed_image(engine), model_id=engine.model_id,
                            detector=engine.detector_backend, alignment=engine.embedder.alignment.method,
                            outliers=engine.outlier_policy())
        if sync:
            report = syncer.sync()
            logger.info("gallery folder %s: %s", path, report)
        return syncer.gallery
    if not path.exists():
        raise ConfigError(f"gallery {path} does not exist; enrol people first (facegate enroll)")
    return engine.open_gallery(path)


FindReturn = Literal["results", "dataframe"]


@overload
def find(
    img_path: ImageInput,
    gallery: str | Path | Any | None = ...,
    model_name: str = ...,
    distance_metric: str | DistanceFunction = ...,
    enforce_detection: bool = ...,
    detector_backend: str = ...,
    align: bool = ...,
    expand_percentage: int = ...,
    threshold: float | None = ...,
    normalization: str = ...,
    silent: bool = ...,
    refresh_database: bool = ...,
    anti_spoofing: bool = ...,
    batched: Literal[False] = ...,
    k: int = ...,
    margin: float = ...,
    db_path: str | Path | None = ...,
    num_threads: int = ...,
    return_type: Literal["results"] = ...,
) -> list[FindResult]: ...


@overload
def find(
    img_path: ImageInput,
    gallery: str | Path | Any | None = ...,
    model_name: str = ...,
    distance_metric: str | DistanceFunction = ...,
    enforce_detection: bool = ...,
    detector_backend: str = ...,
    align: bool = ...,
    expand_percentage: int = ...,
    threshold: float | None = ...,
    normalization: str = ...,
    silent: bool = ...,
    refresh_database: bool = ...,
    anti_spoofing: bool = ...,
    batched: bool = ...,
    k: int = ...,
    margin: float = ...,
    db_path: str | Path | None = ...,
    num_threads: int = ...,
    return_type: FindReturn = ...,
) -> list[Any]: ...


def find(
    img_path: ImageInput,
    gallery: str | Path | Any | None = None,
    model_name: str = DEFAULT_MODEL,
    distance_metric: str | DistanceFunction = "euclidean",
    enforce_detection: bool = True,
    detector_backend: str = DEFAULT_DETECTOR,
    align: bool = True,
    expand_percentage: int = 0,
    threshold: float | None = None,
    normalization: str = "base",
    silent: bool = False,
    refresh_database: bool = True,
    anti_spoofing: bool = False,
    batched: bool = False,
    k: int = 5,
    margin: float = OPEN_SET_MARGIN,
    db_path: str | Path | None = None,
    num_threads: int = 1,
    return_type: FindReturn = "results",
) -> list[FindResult] | list[Any]:
    """Identify every face of ``img_path`` against a gallery (1:N), one result per face.

    ``gallery`` (or DeepFace's ``db_path``) is a gallery database, or a folder with one sub-folder of
    photos per person which is enrolled transparently and re-synced on each call when files change
    (``refresh_database=False`` skips the re-sync). ``identity`` is ``None`` (unknown) when the best
    person is beyond ``threshold`` or closer than ``margin`` to the second-best person. ``margin``
    defaults to the daemon's ``recognition.margin`` (:data:`facegate.operating_point.OPEN_SET_MARGIN`,
    the cross-validated secure point; DeepFace has no margin, pass ``margin=0.0`` for its behaviour).
    Candidates and DeepFace's rows are listed whatever the margin.

    Result shapes: :class:`FindResult` per face (default); ``return_type="dataframe"`` DeepFace's
    DataFrame per face (:meth:`FindResult.to_pandas`, needs pandas); ``batched=True`` DeepFace's list of
    dicts per face with the same keys. A gallery holding only embeddings of other models raises
    :class:`~facegate.errors.GalleryError`. Positional parameters follow DeepFace's order.
    """
    from facegate.matcher import Matcher

    del silent
    if return_type not in ("results", "dataframe"):
        raise ConfigError(f"return_type must be 'results' or 'dataframe', not {return_type!r}")
    _check_deepface_options(normalization, anti_spoofing, expand_percentage)
    metric, function, _ = _metric_or_function(distance_metric, threshold)
    engine = _engine(model_name, detector_backend, num_threads)
    thr = float(threshold) if threshold is not None else threshold_for(engine, metric or "euclidean")
    source = gallery if gallery is not None else db_path
    store = open_gallery(source, engine, sync=refresh_database)
    _check_gallery_model(store, engine)
    folder = Path(source) if isinstance(source, (str, Path)) and Path(source).is_dir() else None
    label = _label(img_path, "image")
    image = load_image(img_path, name=label)
    results = engine.represent(image, enforce_detection=enforce_detection, source=label)
    if not results:
        results = engine.represent(image, skip_detection=True, source=label)
    slope = engine.embedder.confidence_slopes.get(metric) if metric is not None else None
    matcher = Matcher(store, engine.model_id, metric=metric, threshold=thr, margin=margin, k=k) if metric else None
    snapshot = store.snapshot(engine.model_id)
    out: list[FindResult] = []
    for r in results:
        assert r.embedding is not None
        area = expanded_area(r.detection, image.shape, expand_percentage)
        if matcher is not None:
            match = matcher.match(r.embedding)
            ranked = [(c.person_id, c.name, c.distance) for c in match.candidates]
            identity, person_id, gap = match.name, match.person_id, match.margin
        else:
            assert function is not None
            ranked, identity, person_id, gap = _rank_with_function(snapshot, r.embedding, function, thr, margin, k)
        candidates = tuple(
            FindMatch(identity=name, person_id=pid, distance=d, threshold=thr,
                      confidence=round(calibrated_confidence(d, thr, slope), 2), verified=d <= thr)
            for pid, name, d in ranked
        )
        rows = _find_rows(store, snapshot, r.embedding, metric, function, thr, slope, area, folder)
        out.append(FindResult(facial_area=area, identity=identity, person_id=person_id, margin=gap,
                              candidates=candidates, rows=rows))
    if batched:
        return [f.to_records() for f in out]
    if return_type == "dataframe":
        return [f.to_pandas() for f in out]
    return out


def _check_gallery_model(store: Any, engine: FaceEngine) -> None:
    """A gallery enrolled with other models only would match nothing: say so instead of "unknown"."""
    models = store.model_ids()
    if models and engine.model_id not in models:
        raise GalleryError(
            f"gallery {store.path} holds embeddings of {', '.join(models)}, not of {engine.model_id} "
            f"(model_name={engine.model_name!r}): pass the model it was built with, or enrol the people again "
            "with this model"
        )


def _row_distances(snapshot: GallerySnapshot, vector: NDArray[np.float32], metric: Metric | None,
                   function: DistanceFunction | None) -> list[tuple[int, float]]:
    """``(row, distance)`` for every embedding of the snapshot."""
    if snapshot.size == 0:
        return []
    if function is not None:
        values = [_call_distance(function, vector, row) for row in snapshot.matrix]
    else:
        from facegate.matcher import distances

        assert metric is not None
        values = [float(v) for v in distances(vector, snapshot.matrix, metric)]
    return list(enumerate(values))


def _rank_with_function(snapshot: GallerySnapshot, embedding: Embedding, function: DistanceFunction,
                        thr: float, margin: float, k: int
                        ) -> tuple[list[tuple[str, str, float]], str | None, str | None, float]:
    """The matcher's ranking with a user function: people by the mean distance to their embeddings (the
    :class:`~facegate.matcher.Matcher`'s default aggregation), the margin to the runner-up."""
    per_person: dict[int, list[float]] = {}
    for row, d in _row_distances(snapshot, embedding.vector, None, function):
        per_person.setdefault(int(snapshot.row_person[row]), []).append(d)
    best = {person: float(np.mean(ds)) for person, ds in per_person.items()}
    order = sorted(best, key=lambda person: (best[person], person))
    ranked = [(snapshot.person_ids[i], snapshot.names[i], best[i]) for i in order]
    if not ranked:
        return [], None, None, float("inf")
    gap = ranked[1][2] - ranked[0][2] if len(ranked) > 1 else float("inf")
    known = ranked[0][2] <= thr and gap >= margin and gap > 0.0
    return ranked[:k], ranked[0][1] if known else None, ranked[0][0] if known else None, gap


def _find_rows(store: Any, snapshot: GallerySnapshot, embedding: Embedding, metric: Metric | None,
               function: DistanceFunction | None, thr: float, slope: float | None, area: FacialArea,
               folder: Path | None) -> tuple[FindRow, ...]:
    """DeepFace's rows: every gallery image within ``thr``, nearest first."""
    hits = [(row, d) for row, d in _row_distances(snapshot, embedding.vector, metric, function) if d <= thr]
    if not hits:
        return ()
    stored: dict[str, list[Any]] = {}
    out = []
    for row, d in sorted(hits, key=lambda h: h[1]):
        person = int(snapshot.row_person[row])
        pid, name = snapshot.person_ids[person], snapshot.names[person]
        if pid not in stored:
            stored[pid] = store.embeddings(pid, snapshot.model_id)
        # the stored embedding (with its source path and hash) behind this snapshot row
        record = next((e for e in stored[pid] if np.array_equal(e.vector, snapshot.matrix[row])), None)
        path = getattr(record, "source_path", None)
        identity = str(folder / path) if folder is not None and path else (path or name)
        out.append(FindRow(identity=identity, person_id=pid, name=name, hash=getattr(record, "source_sha256", None),
                           source=area, threshold=thr, distance=float(d),
                           confidence=round(calibrated_confidence(float(d), thr, slope), 2)))
    return tuple(out)


def enroll(
    person_id: str,
    name: str,
    images: Sequence[ImageInput],
    gallery: str | Path | Any | None = None,
    model_name: str = DEFAULT_MODEL,
    detector_backend: str = DEFAULT_DETECTOR,
    replace: bool = False,
    num_threads: int = 1,
    face_index: int | None = None,
) -> Any:
    """Enrol photos of one person into a gallery database (created if missing).

    Returns an :class:`facegate.enrollment.EnrollOutcome` with one outcome per photo when at least one
    photo was stored (the usable ones in one transaction). Raises
    :class:`facegate.errors.EnrollmentError` listing every photo's reason when nothing was stored.
    ``face_index`` picks the face (0 = largest, as ``facegate detect --draw`` numbers them) in photos
    of several people.
    """
    from facegate.enrollment import enroll_photos, raise_if_nothing_stored
    from facegate.gallery.store import SqliteGallery

    engine = _engine(model_name, detector_backend, num_threads)
    if isinstance(gallery, SqliteGallery):
        store = gallery
    else:
        path = default_gallery_path() if gallery is None else Path(gallery)
        path.parent.mkdir(parents=True, exist_ok=True)
        store = engine.open_gallery(path)
    photos = [(_label(img, f"image[{i}]"), img) for i, img in enumerate(images)]
    return raise_if_nothing_stored(enroll_photos(store, engine, person_id, name, photos, replace=replace,
                                                 face_index=face_index))


__all__ = [
    "FIND_COLUMNS",
    "AnalysisResult",
    "DistanceFunction",
    "ExtractedFace",
    "FacialArea",
    "FindMatch",
    "FindResult",
    "FindRow",
    "Representation",
    "VerifyResult",
    "analyze",
    "build_model",
    "default_gallery_path",
    "enroll",
    "expanded_area",
    "extract_faces",
    "find",
    "open_gallery",
    "represent",
    "threshold_for",
    "verify",
]
