"""Remote enrolment: screening the photos and vectors of a ``gallery/enroll`` command and storing the
acceptable ones in one gallery transaction.

Split from :mod:`facegate.remote.commands` (which checks, dispatches and answers commands) because the
screening is its own concern: image decoding under the process's pixel cap, one confirmed human face
per photo, the live quality gates, vector checks against this device's model. Every item gets a report;
nothing is stored unless at least one item is acceptable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from facegate.config.models import GatesConfig
from facegate.engine import FaceResult
from facegate.enrollment import choose_face
from facegate.errors import ConfigError, FacegateError, GalleryError, ImageError, NoFaceError
from facegate.face_confirm import confirm_human_face, release_second_detectors
from facegate.gallery.records import EnrollItem, EnrollReport
from facegate.gallery.store import SqliteGallery
from facegate.images import decode_base64, decode_bytes, sniff_format
from facegate.remote.schemas import (
    CommandRejected,
    EmbeddingInput,
    EnrollOutcome,
    GalleryEnrollCommand,
    ItemReport,
    PhotoInput,
)
from facegate.types import Embedding, ImageBGR


class _Dimensioned(Protocol):
    @property
    def dim(self) -> int: ...


class PhotoEmbedder(Protocol):
    """Detection + alignment + embedding of a photo (:class:`~facegate.engine.FaceEngine`)."""

    @property
    def model_id(self) -> str: ...

    @property
    def embedder(self) -> _Dimensioned: ...

    def represent(self, image: ImageBGR, *, enforce_detection: bool = True) -> list[FaceResult]: ...


@dataclass(frozen=True, slots=True)
class EnrollPolicy:
    """Screening of photos sent for enrolment; the quality gates come from the live config and the
    pixel cap is the process's one (:func:`facegate.images.set_max_pixels`)."""

    formats: tuple[str, ...] = ("jpeg", "png")


class _Abort(Exception):
    """Rolls back an enrolment transaction that stored nothing."""

    def __init__(self, report: EnrollReport) -> None:
        super().__init__("nothing stored")
        self.report = report


def screen_photo(
    engine: PhotoEmbedder, index: int, photo: PhotoInput, *, store_image: bool, gates: GatesConfig,
    policy: EnrollPolicy,
) -> tuple[ItemReport, EnrollItem | None]:
    """The report for one photo and, when it is acceptable, the item to store."""
    label = photo.label

    def report(outcome: Any, detail: str, **extra: Any) -> tuple[ItemReport, None]:
        return ItemReport(index=index, label=label, outcome=outcome, detail=detail, **extra), None

    try:
        data = decode_base64(photo.image)
    except ImageError:
        return report("bad_image", "not valid base64")
    fmt = sniff_format(data)
    if fmt not in policy.formats:
        return report("bad_image", "not a JPEG or PNG image")
    try:  # the process's pixel cap (security.max_image_pixels), checked on the header first
        image = decode_bytes(data, name=f"photo {index}")
    except ImageError as err:
        return report("bad_image", str(err)[:200])
    try:
        faces = engine.represent(image, enforce_detection=False)
    except ImageError as err:
        return report("bad_image", str(err)[:200])
    except NoFaceError:
        faces = []
    if not faces:
        return report("no_face", "no face found", faces=0)
    note = ""
    if photo.face_index is not None:  # numbered as the library and `facegate detect --draw` number them
        try:
            choice = choose_face(faces, label or f"photo {index}", (image.shape[1], image.shape[0]),
                                 photo.face_index)
        except ConfigError as err:
            return report("invalid", str(err)[:200], faces=len(faces))
        face, note = choice.face, choice.note
    elif len(faces) > 1:
        return report("several_faces", f"{len(faces)} faces found; send a photo of one person or choose one "
                      "with face_index (0 = largest, as `facegate detect --draw` numbers them)", faces=len(faces))
    else:
        face = faces[0]
    check = confirm_human_face(image, face.detection)  # BlazeFace alone accepts dog and cat faces
    release_second_detectors()  # ~25 MB that the daemon would otherwise keep between enrolments
    if not check.confirmed:
        return report("no_face", check.detail, faces=len(faces))
    quality = face.aligned.quality
    problems = []
    if quality.face_size < gates.min_face_px:
        problems.append(f"face too small ({quality.face_size:.0f} px between the eyes < {gates.min_face_px:g})")
    if quality.sharpness < gates.min_sharpness:
        problems.append(f"too blurry (sharpness {quality.sharpness:.0f} < {gates.min_sharpness:g})")
    if abs(quality.yaw) > gates.max_yaw:
        problems.append(f"face turned away (yaw {quality.yaw:.2f} > {gates.max_yaw:g})")
    if problems or face.embedding is None:
        detail = "; ".join(problems) or "no embedding"
        return report("low_quality", detail, faces=len(faces), quality=round(quality.score, 3))
    chip: bytes | None = None
    if store_image:
        ok, encoded = cv2.imencode(".jpg", face.aligned.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        chip = encoded.tobytes() if ok else None
    item = EnrollItem(
        embedding=face.embedding,
        detector=face.detection.detector,
        alignment=face.aligned.template,
        quality=quality.score,
        source_sha256=hashlib.sha256(data).hexdigest(),
        label=label,
        face_image=chip,
    )
    return ItemReport(index=index, label=label, outcome="ok", detail=note, faces=len(faces),
                      quality=round(quality.score, 3)), item


def decode_vector(value: list[float] | str) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A command's vector (a JSON list or base64 little-endian float32) as float32."""
    if isinstance(value, str):
        raw = base64.b64decode(value, validate=True)
        if len(raw) % 4:
            raise ValueError("base64 vector length is not a multiple of 4 bytes")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    with np.errstate(over="ignore"):
        return np.asarray(value, dtype=np.float64).astype(np.float32)


def screen_embedding(
    index: int, emb: EmbeddingInput, *, expected_model: str | None, expected_dim: int | None
) -> tuple[ItemReport, EnrollItem | None]:
    """The report for one vector and, when it fits this device's model, the item to store."""
    if expected_model is not None and emb.model_id != expected_model:
        return ItemReport(index=index, label=emb.label, outcome="model_mismatch",
                          detail=f"this device uses model {expected_model!r}"), None
    try:
        vector = decode_vector(emb.vector)
    except (ValueError, binascii.Error):
        return ItemReport(index=index, label=emb.label, outcome="invalid", detail="not valid base64"), None
    if expected_dim is not None and vector.shape[0] != expected_dim:
        detail = f"{vector.shape[0]} values; model {expected_model} has {expected_dim}"
        return ItemReport(index=index, label=emb.label, outcome="invalid", detail=detail), None
    if not np.all(np.isfinite(vector)) or not np.any(vector):
        return ItemReport(index=index, label=emb.label, outcome="invalid",
                          detail="vector contains NaN/infinity or is all zeros"), None
    item = EnrollItem(embedding=Embedding(vector, emb.model_id), detector="remote", alignment="remote",
                      label=emb.label)
    return ItemReport(index=index, label=emb.label, outcome="ok"), item


def enroll(
    command: GalleryEnrollCommand, gallery: SqliteGallery, engine: PhotoEmbedder | None, *,
    gates: GatesConfig, policy: EnrollPolicy,
) -> tuple[EnrollOutcome, int]:
    """Screen every item, store the acceptable ones in one transaction; the outcome and the person's
    new version. Raises :class:`CommandRejected` (``nothing_enrolled`` carries the per-item reports)."""
    # The model (and its dimension) of this device; embeddings alone need it too, so that a wrong
    # vector length cannot become the first entry of an empty gallery.
    expected_model = engine.model_id if engine is not None else gallery.model_id
    expected_dim = engine.embedder.dim if engine is not None else None
    photo_reports: dict[int, ItemReport] = {}
    emb_reports: dict[int, ItemReport] = {}
    items: list[EnrollItem] = []
    origin: list[tuple[str, int]] = []  # per item: ("photo"|"embedding", index)
    for i, photo in enumerate(command.photos):
        if engine is None:  # pragma: no cover - the caller loads it whenever there are photos
            raise CommandRejected("unavailable", "no face model")
        try:
            rep, item = screen_photo(engine, i, photo, store_image=gallery.store_face_images, gates=gates,
                                     policy=policy)
        except CommandRejected:
            raise
        except FacegateError as err:  # e.g. the daemon's frame loop did not run the embedding
            raise CommandRejected("unavailable", f"photos cannot be processed now: {err}") from None
        photo_reports[i] = rep
        if item is not None:
            items.append(item)
            origin.append(("photo", i))
    for j, emb in enumerate(command.embeddings):
        emb_reports[j], item = screen_embedding(j, emb, expected_model=expected_model, expected_dim=expected_dim)
        if item is not None:
            items.append(item)
            origin.append(("embedding", j))

    report: EnrollReport | None = None
    if items:
        try:
            with gallery.transaction("remote enroll") as txn:
                report = txn.enroll(command.person_id, command.name, items, command.metadata, command.replace)
                if not report.stored:
                    raise _Abort(report)
        except _Abort as abort:
            report = abort.report
        except GalleryError as err:
            raise CommandRejected("invalid", str(err)[:500]) from None
        for rejected in report.rejected:
            kind, idx = origin[rejected.index]
            target = photo_reports if kind == "photo" else emb_reports
            old = target[idx]
            target[idx] = ItemReport(
                index=idx, label=old.label, outcome="outlier" if rejected.reason == "outlier" else "duplicate",
                detail=rejected.detail[:200], faces=old.faces, quality=old.quality,
                distance=None if rejected.distance is None or not math.isfinite(rejected.distance)
                else round(rejected.distance, 4),
            )
    stored = len(report.stored) if report is not None else 0
    outcome = EnrollOutcome(
        person_id=command.person_id,
        name=command.name,
        version=report.version if report is not None and stored else None,
        created=bool(report is not None and stored and report.created),
        stored=stored,
        photos=[photo_reports[i] for i in sorted(photo_reports)],
        embeddings=[emb_reports[j] for j in sorted(emb_reports)],
    )
    if report is None or not stored:
        raise CommandRejected("nothing_enrolled", "no photo or embedding was acceptable; nothing changed",
                              result=outcome)
    return outcome, report.version


__all__ = ["EnrollPolicy", "PhotoEmbedder", "decode_vector", "enroll", "screen_embedding", "screen_photo"]
