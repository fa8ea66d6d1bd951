"""1:N: :func:`find` against a gallery database or a folder of photos per person (DeepFace's
``db_path``), :func:`open_gallery`, :func:`enroll` and the default gallery location."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import NDArray

from facegate.confidence import calibrated_confidence
from facegate.engine import FaceEngine
from facegate.errors import ConfigError, GalleryError
from facegate.facial_area import FacialArea
from facegate.gallery_snapshot import GallerySnapshot
from facegate.images import ImageInput, load_image
from facegate.library.options import (
    DEFAULT_DETECTOR,
    DEFAULT_MODEL,
    DistanceFunction,
    call_distance,
    check_deepface_options,
    engine_for,
    expanded_area,
    image_label,
    metric_or_function,
    threshold_for,
)
from facegate.library.results import FindMatch, FindResult, FindRow
from facegate.operating_point import OPEN_SET_MARGIN
from facegate.types import Embedding, Metric

logger = logging.getLogger(__name__)

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
    check_deepface_options(normalization, anti_spoofing, expand_percentage)
    metric, function, _ = metric_or_function(distance_metric, threshold)
    engine = engine_for(model_name, detector_backend, num_threads)
    thr = float(threshold) if threshold is not None else threshold_for(engine, metric or "euclidean")
    source = gallery if gallery is not None else db_path
    store = open_gallery(source, engine, sync=refresh_database)
    _check_gallery_model(store, engine)
    folder = Path(source) if isinstance(source, (str, Path)) and Path(source).is_dir() else None
    label = image_label(img_path, "image")
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
        values = [call_distance(function, vector, row) for row in snapshot.matrix]
    else:
        from facegate.metrics import distances

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

    engine = engine_for(model_name, detector_backend, num_threads)
    if isinstance(gallery, SqliteGallery):
        store = gallery
    else:
        path = default_gallery_path() if gallery is None else Path(gallery)
        path.parent.mkdir(parents=True, exist_ok=True)
        store = engine.open_gallery(path)
    photos = [(image_label(img, f"image[{i}]"), img) for i, img in enumerate(images)]
    return raise_if_nothing_stored(enroll_photos(store, engine, person_id, name, photos, replace=replace,
                                                 face_index=face_index))


__all__ = ["FindReturn", "default_gallery_path", "enroll", "find", "open_gallery"]
