"""Turning photos into gallery enrolments, with a per-photo outcome; the usable photos are written in one transaction.

Used by ``facegate enroll``, the library's ``facegate.enroll`` and folder mode, so every path applies the
same rules: one clear face per photo, confirmed as a human face by a second detector
(:mod:`facegate.face_confirm`), a minimum quality, outlier screening by the gallery, and one transaction
per call: the usable photos are stored together or (when the write fails) not at all; refused photos
are reported and do not stop the others.

Several faces in a photo: the largest is taken when the next one is less than half its area, or when it
is also clearly the most central (news photos: the subject in the middle, people behind); otherwise the
photo is refused as ambiguous and ``face_index`` (``--face N``) picks one by the numbers that
``facegate detect --draw`` shows (largest first).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from facegate.engine import FaceEngine, FaceResult
from facegate.errors import ConfigError, EnrollmentError, FacegateError, NoFaceError
from facegate.face_confirm import confirm_human_face
from facegate.gallery.records import EnrollItem, EnrollReport
from facegate.gallery.store import SqliteGallery
from facegate.images import ImageInput, load_image
from facegate.types import Embedding, ImageBGR

logger = logging.getLogger(__name__)

PhotoStatus = Literal["ok", "no_face", "several_faces", "low_quality", "bad_image", "outlier", "duplicate"]

#: A second face at least this fraction of the largest face's area makes a photo ambiguous (unless the
#: largest is also clearly the most central, see below).
AMBIGUOUS_AREA_RATIO = 0.5
#: The largest face is "central" when its centre's offset from the image centre is at most this fraction of
#: every other similar-sized face's offset...
CENTRAL_OFFSET_RATIO = 0.5
#: and at most this fraction of the image diagonal
CENTRAL_MAX_OFFSET = 0.15
#: a second face this large (fraction of the largest's area) is never overruled by centrality
SIMILAR_AREA_RATIO = 0.8
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
    #: e.g. "lands within the same-person threshold of another enrolled person" (see look_alike_warnings)
    warnings: tuple[str, ...] = ()

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
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True, slots=True)
class FaceChoice:
    """The face taken from an enrolment photo and, when the photo had several, which one and why."""

    face: FaceResult
    note: str = ""


def _offset(result: FaceResult, width: int, height: int) -> float:
    """Distance of the face's centre from the image centre, as a fraction of the image diagonal."""
    cx, cy = result.detection.box.center
    return float(np.hypot(cx - width / 2.0, cy - height / 2.0) / max(1.0, np.hypot(width, height)))


def choose_face(results: Sequence[FaceResult], label: str, image_size: tuple[int, int],
                face_index: int | None = None) -> FaceChoice:
    """The subject of an enrolment photo (``image_size`` is ``(width, height)``).

    ``results`` are ordered largest first (as :meth:`FaceEngine.represent` and ``facegate detect`` give
    them). Raises :class:`NoFaceError`, :class:`AmbiguousPhotoError` or (bad ``face_index``)
    :class:`ConfigError`.
    """
    if not results:
        raise NoFaceError(f"{label}: no face detected")
    ordered = sorted(results, key=lambda r: r.detection.box.area, reverse=True)
    n = len(ordered)
    if face_index is not None:
        if not 0 <= face_index < n:
            raise ConfigError(f"{label}: face_index {face_index} out of range: {n} face(s) found (0..{n - 1})")
        return FaceChoice(ordered[face_index], f"face {face_index} of {n}, as asked")
    if n == 1:
        return FaceChoice(ordered[0])
    top = ordered[0].detection.box.area
    ratio = ordered[1].detection.box.area / top
    if ratio < AMBIGUOUS_AREA_RATIO:
        return FaceChoice(ordered[0], f"face 0 of {n}: the largest (the next is {100 * ratio:.0f}% of its area)")
    width, height = image_size
    offsets = [_offset(r, width, height) for r in ordered]
    rivals = [off for r, off in zip(ordered[1:], offsets[1:], strict=True)
              if r.detection.box.area >= AMBIGUOUS_AREA_RATIO * top]
    central = offsets[0] <= CENTRAL_MAX_OFFSET and all(offsets[0] <= CENTRAL_OFFSET_RATIO * o for o in rivals)
    if central and ratio < SIMILAR_AREA_RATIO:
        return FaceChoice(ordered[0], f"face 0 of {n}: the largest and the most central "
                                      f"(the next is {100 * ratio:.0f}% of its area)")
    raise AmbiguousPhotoError(
        f"{label}: {n} faces of similar size and none clearly the subject; use a photo of one person or "
        f"choose one with face_index= / --face N (0 = largest; numbers as `facegate detect --draw` shows)")


class AmbiguousPhotoError(FacegateError):
    """An enrolment photo shows several faces of similar size."""


def subject_face(engine: FaceEngine, image: ImageBGR, label: str, face_index: int | None = None) -> FaceChoice:
    """The chosen face of an enrolment photo, confirmed as human (else :class:`NoFaceError`)."""
    results = engine.represent(image, enforce_detection=False, source=label)
    choice = choose_face(results, label, (image.shape[1], image.shape[0]), face_index)
    check = confirm_human_face(image, choice.face.detection)
    if not check.confirmed:
        raise NoFaceError(f"{label}: {check.detail}")
    return choice


def refusal_message(outcome: EnrollOutcome) -> str:
    """``nothing enrolled for NAME: photo: reason; ...`` listing every photo."""
    reasons = "; ".join(f"{p.label}: {p.status} ({p.detail})" if p.detail else f"{p.label}: {p.status}"
                        for p in outcome.photos)
    return f"nothing enrolled for {outcome.name!r} ({outcome.person_id}): {reasons or 'no photos given'}"


def raise_if_nothing_stored(outcome: EnrollOutcome) -> EnrollOutcome:
    """``outcome`` when something was stored (or every photo was already enrolled: re-running an enrolment
    is not an error), else :class:`EnrollmentError` naming each photo's reason."""
    already = bool(outcome.photos) and all(p.status == "duplicate" for p in outcome.photos)
    if not outcome.ok and not already:
        raise EnrollmentError(refusal_message(outcome), outcome)
    return outcome


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
    face_index: int | None = None,
) -> EnrollOutcome:
    """Enrol ``photos`` (``(label, image)``) and precomputed ``embeddings`` for one person.

    ``progress(done, total, label)`` is called before each photo (the CLI draws a progress bar with it).
    ``face_index`` picks the face of every photo by its number (0 = largest) instead of the automatic choice.

    Every photo gets an outcome; the usable ones are written in ONE transaction (nothing is written if
    none is usable, or if the write fails).
    """
    outcomes: list[PhotoOutcome | None] = []
    items: list[EnrollItem] = []
    item_slot: list[int] = []
    notes: list[str] = []  # per item: which face of the photo was taken, and why
    for done, (label, source) in enumerate(photos):
        if progress is not None:
            progress(done, len(photos), label)
        try:
            image = load_image(source, name=label)
            choice = subject_face(engine, image, label, face_index)
        except (NoFaceError, ConfigError) as err:
            outcomes.append(PhotoOutcome(label, "no_face", str(err)))
            continue
        except AmbiguousPhotoError as err:
            outcomes.append(PhotoOutcome(label, "several_faces", str(err)))
            continue
        except FacegateError as err:
            outcomes.append(PhotoOutcome(label, "bad_image", str(err)))
            continue
        face = choice.face
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
        notes.append(choice.note)
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
        notes.append("")
        items.append(EnrollItem(embedding=emb, label=f"embedding[{i}]"))
    if not items:
        return EnrollOutcome(person_id, name, tuple(o for o in outcomes if o is not None), None)
    warnings = look_alike_warnings(gallery, engine, person_id, items)
    report = gallery.enroll(person_id, name, items, metadata, replace)
    rejected = {r.index: r for r in report.rejected}
    for k, slot in enumerate(item_slot):
        item = items[k]
        if k in rejected:
            r = rejected[k]
            status: PhotoStatus = "duplicate" if r.reason == "duplicate" else "outlier"
            outcomes[slot] = PhotoOutcome(item.label, status, r.detail, item.quality)
        else:
            outcomes[slot] = PhotoOutcome(item.label, "ok", notes[k], item.quality)
    final = tuple(o for o in outcomes if o is not None)
    return EnrollOutcome(person_id, name, final, report, warnings if report.stored else ())


def look_alike_warnings(gallery: SqliteGallery, engine: FaceEngine, person_id: str,
                        items: Sequence[EnrollItem]) -> tuple[str, ...]:
    """Warnings for new embeddings within the model's same-person threshold of *another* person.

    Such a pair will be confused at the door: twins, close relatives, or faces the model separates
    poorly (the dlib ResNet is known to be weakest on East Asian faces). Nothing is refused; the user
    is told, so they can add photos, raise the margin, or not rely on face recognition for that pair.
    """
    from facegate.matcher import Matcher

    threshold = float(engine.embedder.thresholds.get("euclidean", 0.0))
    if threshold <= 0.0 or not items:
        return ()
    matcher = Matcher(gallery, engine.model_id, metric="euclidean", threshold=threshold, k=3)
    closest: dict[str, float] = {}
    for item in items:
        for cand in matcher.match(item.embedding).candidates:
            if cand.person_id != person_id and cand.distance <= threshold:
                closest[cand.person_id] = min(cand.distance, closest.get(cand.person_id, cand.distance))
    out = tuple(
        f"close to {other!r} (distance {d:.3f} <= same-person threshold {threshold:.3f}): the two may be confused "
        "(twins, relatives, or faces the Dlib model separates poorly, e.g. East Asian faces); add more photos of "
        "both, or raise recognition.margin" for other, d in sorted(closest.items(), key=lambda kv: kv[1]))
    for line in out:
        logger.warning("enrolling %s: %s", person_id, line)
    return out


def engine_embed_image(engine: FaceEngine) -> Any:
    """``embed_image(path)`` for :mod:`facegate.gallery.folder_sync` (largest clear face first)."""

    def embed(path: Path) -> list[tuple[Embedding, float]]:
        label = str(path)
        image = load_image(path)
        face = subject_face(engine, image, label).face
        assert face.embedding is not None
        return [(face.embedding, face.aligned.quality.score)]

    return embed


__all__ = [
    "AmbiguousPhotoError",
    "EnrollOutcome",
    "FaceChoice",
    "PhotoOutcome",
    "choose_face",
    "engine_embed_image",
    "enroll_photos",
    "iter_photo_paths",
    "look_alike_warnings",
    "raise_if_nothing_stored",
    "refusal_message",
    "subject_face",
]
