"""Turning photos into gallery enrolments, with a per-photo outcome and all-or-nothing writes.

Used by ``facegate enroll``, the library's folder mode, and remote enrolment over MQTT, so every path
applies the same rules: one clear face per photo (a photo with two similar-sized faces is refused as
ambiguous), a minimum quality, outlier screening by the gallery, and one transaction per call.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2

from facegate.engine import FaceEngine, FaceResult
from facegate.errors import FacegateError, NoFaceError
from facegate.gallery.records import EnrollItem, EnrollReport
from facegate.gallery.store import SqliteGallery
from facegate.images import ImageInput, load_image
from facegate.types import Embedding

logger = logging.getLogger(__name__)

PhotoStatus = Literal["ok", "no_face", "several_faces", "low_quality", "bad_image", "outlier", "duplicate"]

#: A second face at least this fraction of the largest face's area makes a photo ambiguous.
AMBIGUOUS_AREA_RATIO = 0.5
#: Photos whose quality score (0..1, see FaceQuality.score) is below this are refused.
MIN_QUALITY = 0.25

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True, slots=True)
class PhotoOutcome:
    label: str
    status: PhotoStatus
    detail: str = ""
    quality: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"photo": self.label, "status": self.status, "detail": self.detail, "quality": self.quality}


@dataclass(frozen=True, slots=True)
class EnrollOutcome:
    person_id: str
    name: str
    photos: tuple[PhotoOutcome, ...]
    report: EnrollReport | None  # None when no photo was usable (nothing written)

    @property
    def stored(self) -> int:
        return len(self.report.stored) if self.report else 0

    @property
    def ok(self) -> bool:
        return self.stored > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "name": self.name,
            "stored": self.stored,
            "version": self.report.version if self.report else None,
            "photos": [p.to_dict() for p in self.photos],
        }


def pick_face(results: Sequence[FaceResult], label: str) -> FaceResult:
    """The single clear face of an enrolment photo, or :class:`NoFaceError` / ambiguity error."""
    if not results:
        raise NoFaceError(f"{label}: no face detected")
    ordered = sorted(results, key=lambda r: r.detection.box.area, reverse=True)
    if len(ordered) > 1 and ordered[1].detection.box.area >= AMBIGUOUS_AREA_RATIO * ordered[0].detection.box.area:
        raise AmbiguousPhotoError(f"{label}: {len(ordered)} faces of similar size; use a photo of one person")
    return ordered[0]


class AmbiguousPhotoError(FacegateError):
    """An enrolment photo shows several faces of similar size."""


def iter_photo_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Expand folders (recursively, sorted) into image files; files are kept as given."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                              and not any(part.startswith(".") for part in p.relative_to(path).parts)))
        else:
            out.append(path)
    return out


def enroll_photos(
    gallery: SqliteGallery,
    engine: FaceEngine,
    person_id: str,
    name: str,
    photos: Sequence[tuple[str, ImageInput]],
    *,
    metadata: Mapping[str, Any] | None = None,
    replace: bool = False,
    embeddings: Sequence[Embedding] = (),
    keep_face_images: bool = False,
    min_quality: float = MIN_QUALITY,
    progress: Callable[[int, int, str], None] | None = None,
) -> EnrollOutcome:
    """Enrol ``photos`` (``(label, image)``) and precomputed ``embeddings`` for one person.

    ``progress(done, total, label)`` is called before each photo (the CLI draws a progress bar with it).

    Every photo gets an outcome; the usable ones are written in ONE transaction (nothing is written if
    none is usable, or if the write fails).
    """
    outcomes: list[PhotoOutcome | None] = []
    items: list[EnrollItem] = []
    item_slot: list[int] = []
    for done, (label, source) in enumerate(photos):
        if progress is not None:
            progress(done, len(photos), label)
        try:
            image = load_image(source, name=label)
            face = pick_face(engine.represent(image, enforce_detection=False, source=label), label)
        except NoFaceError as err:
            outcomes.append(PhotoOutcome(label, "no_face", str(err)))
            continue
        except AmbiguousPhotoError as err:
            outcomes.append(PhotoOutcome(label, "several_faces", str(err)))
            continue
        except FacegateError as err:
            outcomes.append(PhotoOutcome(label, "bad_image", str(err)))
            continue
        quality = face.aligned.quality.score
        if quality < min_quality:
            outcomes.append(PhotoOutcome(label, "low_quality",
                                         f"quality {quality:.2f} below {min_quality:.2f} (small, blurred or turned)",
                                         quality))
            continue
        assert face.embedding is not None
        digest = hashlib.sha256(image.tobytes()).hexdigest()
        face_jpeg = None
        if keep_face_images:
            ok, buf = cv2.imencode(".jpg", face.aligned.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            face_jpeg = buf.tobytes() if ok else None
        item_slot.append(len(outcomes))
        outcomes.append(None)
        items.append(EnrollItem(
            embedding=face.embedding,
            detector=engine.detector_backend,
            alignment=face.aligned.template,
            quality=quality,
            source_sha256=digest,
            label=label,
            face_image=face_jpeg,
        ))
    for i, emb in enumerate(embeddings):
        item_slot.append(len(outcomes))
        outcomes.append(None)
        items.append(EnrollItem(embedding=emb, label=f"embedding[{i}]"))
    if not items:
        return EnrollOutcome(person_id, name, tuple(o for o in outcomes if o is not None), None)
    report = gallery.enroll(person_id, name, items, metadata, replace)
    rejected = {r.index: r for r in report.rejected}
    for k, slot in enumerate(item_slot):
        item = items[k]
        if k in rejected:
            r = rejected[k]
            status: PhotoStatus = "duplicate" if r.reason == "duplicate" else "outlier"
            outcomes[slot] = PhotoOutcome(item.label, status, r.detail, item.quality)
        else:
            outcomes[slot] = PhotoOutcome(item.label, "ok", "", item.quality)
    final = tuple(o for o in outcomes if o is not None)
    return EnrollOutcome(person_id, name, final, report)


def engine_embed_image(engine: FaceEngine) -> Any:
    """``embed_image(path)`` for :mod:`facegate.gallery.folder_sync` (largest clear face first)."""

    def embed(path: Path) -> list[tuple[Embedding, float]]:
        label = str(path)
        image = load_image(path)
        face = pick_face(engine.represent(image, enforce_detection=False, source=label), label)
        assert face.embedding is not None
        return [(face.embedding, face.aligned.quality.score)]

    return embed


__all__ = [
    "AmbiguousPhotoError",
    "EnrollOutcome",
    "PhotoOutcome",
    "engine_embed_image",
    "enroll_photos",
    "iter_photo_paths",
    "pick_face",
]
