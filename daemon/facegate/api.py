"""The public, DeepFace-style API: ``extract_faces``, ``represent``, ``verify``, ``find``, ``analyze``
(the last implemented in :mod:`facegate.analysis.api`).

Names, parameters and result fields follow DeepFace so code written for it ports by changing the import;
results are typed frozen dataclasses with ``to_dict()`` returning DeepFace's dictionaries. Defaults differ
where facegate ships different models: ``model_name="Dlib"`` and ``detector_backend="mediapipe"``.

Images may be a path (``str`` / ``pathlib.Path``), a BGR numpy array, encoded bytes or a base64 string.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.analysis.api import AnalysisResult, analyze
from facegate.confidence import calibrated_confidence
from facegate.engine import FaceEngine, FaceResult, get_engine
from facegate.errors import ConfigError, EmbeddingError, NoFaceError
from facegate.facial_area import FacialArea
from facegate.images import ImageInput, load_image
from facegate.matcher import distance as metric_distance
from facegate.types import METRICS, Embedding, FaceDetection, Metric

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "Dlib"
DEFAULT_DETECTOR = "mediapipe"


# --------------------------------------------------------------------------- result types


@dataclass(frozen=True, slots=True)
class ExtractedFace:
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
class Representation:
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
class VerifyResult:
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
class FindMatch:
    """One ranked gallery candidate for one probe face."""

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
class FindResult:
    """Candidates for one face of the probe image, best first; ``identity`` is ``None`` for unknown."""

    facial_area: FacialArea
    identity: str | None
    person_id: str | None
    margin: float
    candidates: tuple[FindMatch, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"facial_area": self.facial_area.to_dict(), "identity": self.identity,
                "person_id": self.person_id, "margin": self.margin,
                "candidates": [c.to_dict() for c in self.candidates]}


# --------------------------------------------------------------------------- helpers


def _check_metric(distance_metric: str) -> Metric:
    for metric in METRICS:
        if metric == distance_metric:
            return metric
    raise ConfigError(f"unknown distance_metric {distance_metric!r}; valid: {', '.join(METRICS)}")


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
            facial_area=FacialArea.from_detection(r.detection),
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
    max_faces: int | None = None,
    l2_normalize: bool = False,
    num_threads: int = 1,
) -> list[Representation] | list[list[Representation]]:
    """Embeddings of the faces in an image, largest first; a list of images gives a list of lists.

    ``detector_backend="skip"`` takes the whole image as the face (it must already be a face crop).
    ``align=False`` is accepted for DeepFace compatibility; the Dlib model always needs its chip, so
    facegate still aligns and logs that once.
    """
    if isinstance(img_path, (list, tuple)) or (isinstance(img_path, np.ndarray) and img_path.ndim == 4):
        return [
            _represent_one(item, model_name, enforce_detection, detector_backend, align, max_faces, l2_normalize,
                           num_threads, f"image[{i}]")
            for i, item in enumerate(img_path)
        ]
    single: ImageInput = img_path  # type: ignore[assignment]  # not a sequence: checked above
    return _represent_one(single, model_name, enforce_detection, detector_backend, align,
                          max_faces, l2_normalize, num_threads, _label(img_path, "image"))


_ALIGN_WARNED: set[str] = set()


def _represent_one(img: ImageInput, model_name: str, enforce_detection: bool, detector_backend: str, align: bool,
                   max_faces: int | None, l2_normalize: bool, num_threads: int, label: str) -> list[Representation]:
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
            facial_area=FacialArea.from_detection(r.detection),
            face_confidence=confidence_override if confidence_override is not None else round(r.detection.score, 4),
            model_id=r.embedding.model_id,
        ))
    return out


def verify(
    img1_path: ImageInput | Sequence[float],
    img2_path: ImageInput | Sequence[float],
    model_name: str = DEFAULT_MODEL,
    detector_backend: str = DEFAULT_DETECTOR,
    distance_metric: str = "euclidean",
    enforce_detection: bool = True,
    align: bool = True,
    threshold: float | None = None,
    num_threads: int = 1,
) -> VerifyResult:
    """Are two images (or precomputed embeddings) the same person?

    With several faces in an image, every pair is compared and the closest pair decides, as DeepFace does.
    ``confidence`` is 51..100 when verified and 0..49 when not.
    """
    start = time.perf_counter()
    metric = _check_metric(distance_metric)
    engine = _engine(model_name, detector_backend, num_threads)
    thr = threshold_for(engine, metric) if threshold is None else float(threshold)

    def side(img: Any, name: str) -> list[tuple[Embedding, FacialArea | None]]:
        if _is_embedding(img):
            return [(_as_embedding(img, engine, name), None)]
        image, results = _faces(engine, img, label=_label(img, name), enforce_detection=enforce_detection)
        if not results:  # enforce_detection=False: the whole image, decoded once
            results = engine.represent(image, skip_detection=True, source=name)
        return [(r.embedding, FacialArea.from_detection(r.detection)) for r in results if r.embedding is not None]

    left = side(img1_path, "img1")
    right = side(img2_path, "img2")
    best: tuple[float, FacialArea | None, FacialArea | None] | None = None
    for e1, a1 in left:
        for e2, a2 in right:
            d = metric_distance(e1.vector, e2.vector, metric)
            if best is None or d < best[0]:
                best = (d, a1, a2)
    if best is None:  # pragma: no cover - side() never returns empty
        raise NoFaceError("no face to compare")
    dist, area1, area2 = best
    verified = dist <= thr
    return VerifyResult(
        verified=bool(verified),
        distance=float(dist),
        threshold=thr,
        confidence=round(calibrated_confidence(float(dist), thr, engine.embedder.confidence_slopes.get(metric)), 2),
        model=engine.model_name,
        detector_backend=engine.detector_backend,
        distance_metric=metric,
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


def find(
    img_path: ImageInput,
    gallery: str | Path | Any | None = None,
    model_name: str = DEFAULT_MODEL,
    distance_metric: str = "euclidean",
    enforce_detection: bool = True,
    detector_backend: str = DEFAULT_DETECTOR,
    align: bool = True,
    threshold: float | None = None,
    k: int = 5,
    margin: float = 0.0,
    db_path: str | Path | None = None,
    num_threads: int = 1,
) -> list[FindResult]:
    """Identify every face of ``img_path`` against a gallery (1:N), one :class:`FindResult` per face.

    ``gallery`` (or DeepFace's ``db_path``) is a gallery database, or a folder with one sub-folder of
    photos per person which is enrolled transparently and re-synced on each call when files change.
    ``identity`` is ``None`` (unknown) when the best person is beyond ``threshold`` or closer than
    ``margin`` to the second-best person.
    """
    from facegate.matcher import Matcher

    metric = _check_metric(distance_metric)
    engine = _engine(model_name, detector_backend, num_threads)
    thr = threshold_for(engine, metric) if threshold is None else float(threshold)
    store = open_gallery(gallery if gallery is not None else db_path, engine)
    matcher = Matcher(store, engine.model_id, metric=metric, threshold=thr, margin=margin, k=k)
    label = _label(img_path, "image")
    image = load_image(img_path, name=label)
    results = engine.represent(image, enforce_detection=enforce_detection, source=label)
    if not results:
        results = engine.represent(image, skip_detection=True, source=label)
    out: list[FindResult] = []
    slope = engine.embedder.confidence_slopes.get(metric)
    for r in results:
        assert r.embedding is not None
        match = matcher.match(r.embedding)
        candidates = tuple(
            FindMatch(
                identity=c.name,
                person_id=c.person_id,
                distance=c.distance,
                threshold=thr,
                confidence=round(calibrated_confidence(c.distance, thr, slope), 2),
                verified=c.distance <= thr,
            )
            for c in match.candidates
        )
        out.append(FindResult(
            facial_area=FacialArea.from_detection(r.detection),
            identity=match.name,
            person_id=match.person_id,
            margin=match.margin,
            candidates=candidates,
        ))
    return out


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
    "AnalysisResult",
    "ExtractedFace",
    "FacialArea",
    "FindMatch",
    "FindResult",
    "Representation",
    "VerifyResult",
    "analyze",
    "build_model",
    "default_gallery_path",
    "enroll",
    "extract_faces",
    "find",
    "open_gallery",
    "represent",
    "threshold_for",
    "verify",
]
