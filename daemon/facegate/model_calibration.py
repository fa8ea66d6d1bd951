"""Fitting an imported embedder's thresholds: ``facegate evaluate --calibrate DIR -m NAME [--write]``.

``facegate models import`` gives a file DeepFace's published thresholds for its name, which were tuned
on DeepFace's own weights and preprocessing; another export of "ArcFace" (other normalisation, other
training) can sit on a different distance scale, so its defaults are a starting point, not a
calibration. This module embeds every photo of ``DIR/<person>/*`` with the imported model and fits
thresholds, confidence slopes and the 1:N margin exactly as the shipped Dlib model's were fitted
(:func:`facegate.evaluation.calibrate.calibrate_vectors`: per metric the highest TAR with FAR <= 1e-3
on all impostor pairs, in the middle of the interval of thresholds giving it). ``--write`` stores them in the
imported model's own manifest (atomically; the bundled models are calibrated by the converter instead).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from facegate.errors import ConfigError, FacegateError
from facegate.inference.manifest import ModelManifest, default_zoo, load_manifest
from facegate.types import METRICS

logger = logging.getLogger(__name__)

USER_LICENCE = "LicenseRef-user-supplied"
#: ``operating_point.thresholds`` of a manifest whose thresholds are DeepFace's, not fitted to the file
DEEPFACE_DEFAULTS = "deepface-defaults"


def calibrate_model(data: Path, model_name: str, *, detector_backend: str = "mediapipe", target_far: float = 1e-3,
                    folds: int = 5, num_threads: int = 1,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The calibration entry (per metric threshold, balanced threshold, slope; the 1:N margin) of
    ``model_name`` on the identity folder ``data``; photos without a face are left out."""
    from facegate.engine import get_engine
    from facegate.evaluation.calibrate import calibrate_vectors
    from facegate.evaluation.identification import photos_by_person
    from facegate.images import load_image

    if not data.is_dir():
        raise ConfigError(f"{data}: not a folder of <person>/<photo> identities")
    engine = get_engine(detector_backend, model_name, num_threads=num_threads)
    people = photos_by_person(data)
    photos = [(person, path) for person, paths in people.items() for path in paths]
    vectors: list[np.ndarray] = []
    persons: list[str] = []
    for i, (person, path) in enumerate(photos):
        if progress is not None:
            progress(i, len(photos))
        try:
            found = engine.represent(load_image(path), enforce_detection=False, source=str(path))
        except FacegateError as err:
            logger.warning("%s left out: %s", path, err)
            continue
        if found and found[0].embedding is not None:
            vectors.append(found[0].embedding.vector)
            persons.append(person)
    if len(set(persons)) < 2 or len(persons) < 4:
        raise ConfigError(f"{data}: calibration needs photos of at least 2 people with faces, found "
                          f"{len(persons)} photos of {len(set(persons))}")
    entry = calibrate_vectors(np.stack(vectors), persons, target_far=target_far, folds=folds)
    entry.update({"model_id": engine.model_id, "model": engine.model_name, "photos": len(persons),
                  "people": len(set(persons)), "data": str(data), "defaults": dict(engine.embedder.thresholds)})
    return entry


def imported_manifest(model_name: str) -> ModelManifest:
    """The user-imported embedder manifest of ``model_name``; the bundled models are refused."""
    manifest = default_zoo().family("embedder", model_name, None)
    if manifest.licence != USER_LICENCE or manifest.path is None:
        raise ConfigError(f"{model_name} is a bundled model: its thresholds are calibrated when it is built "
                          "(python -m facegate.evaluation.calibrate); --write only updates imported models")
    return manifest


def write_calibration(model_name: str, entry: dict[str, Any]) -> Path:
    """Store ``entry``'s thresholds, slopes and operating point in the imported model's manifest."""
    manifest = imported_manifest(model_name)
    assert manifest.path is not None
    if manifest.model_id != entry["model_id"]:
        raise ConfigError(f"the calibration is of {entry['model_id']}, the installed {model_name} is "
                          f"{manifest.model_id}: calibrate again")
    data = yaml.safe_load(manifest.path.read_text(encoding="utf-8"))
    metrics = entry["metrics"]
    data["thresholds"] = {m: float(metrics[m]["threshold"]) for m in METRICS}
    data["confidence_slopes"] = {m: float(metrics[m]["confidence_slope"]) for m in METRICS}
    data["operating_point"] = {
        "thresholds": f"fitted by facegate evaluate --calibrate on {entry['photos']} photos of {entry['people']} "
                      f"people ({Path(entry['data']).name})",
        "target_far": float(metrics["euclidean"]["target_far"]),
        "balanced_thresholds": {m: float(metrics[m]["balanced_threshold"]) for m in METRICS},
        "open_set_margin": float(entry["open_set_margin"]["euclidean"]),
        "deepface_thresholds": {k: float(v) for k, v in entry["defaults"].items()},
    }
    ModelManifest.model_validate({**data, "path": manifest.path})  # never write a manifest the runtime rejects
    tmp = manifest.path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    tmp.replace(manifest.path)
    load_manifest(manifest.path)
    default_zoo.cache_clear()
    from facegate import engine

    engine._ENGINES.clear()  # engines built before hold the old thresholds
    return manifest.path


__all__ = ["DEEPFACE_DEFAULTS", "calibrate_model", "imported_manifest", "write_calibration"]
