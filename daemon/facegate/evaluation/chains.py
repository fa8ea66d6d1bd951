"""Embedding every photo of an identity folder once per recognition chain, with an on-disk cache.

Chains compared by ``facegate evaluate --cv``:

* ``default``: BlazeFace short range + 5-point shape predictor + dlib chip + int8 Dlib (the library's
  and daemon's default), on the photo's *subject*: the largest face that a second detector confirms as
  human (:mod:`facegate.face_confirm`, as enrolment does; a large false positive on a background
  emblem would otherwise be "the largest face");
* ``mmod``: the same with ``detector_backend="dlib"`` (dlib's MMOD CNN boxes), largest face;
* ``reference``: face_recognition's chain entirely in dlib (HOG detector upsampled once + dlib's
  5-point predictor + ``get_face_chip`` + dlib's own fp32 ResNet), when the ``dlib`` module (dlib-bin,
  build/test time only) is importable.

A photo where a chain finds no face is embedded whole (the dlib "johns" are pre-cut chips).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.engine import FaceEngine, FaceResult
from facegate.errors import ConfigError, FacegateError
from facegate.face_confirm import confirm_human_face
from facegate.images import load_image
from facegate.types import ImageBGR

logger = logging.getLogger(__name__)

CHAINS: tuple[str, ...] = ("default", "mmod", "reference")
Vectors = dict[str, NDArray[np.float32]]


def dlib_available() -> bool:
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
    except ImportError:
        return False
    return True


def subject(results: Sequence[FaceResult], image: ImageBGR) -> FaceResult | None:
    """The largest face confirmed as human, else the largest face (None when there is none)."""
    ordered = sorted(results, key=lambda r: r.detection.box.area, reverse=True)
    for result in ordered[:3]:
        if confirm_human_face(image, result.detection).confirmed:
            return result
    return ordered[0] if ordered else None


def _engine_embedder(engine: FaceEngine, confirm: bool) -> Callable[[ImageBGR, str], NDArray[np.float32]]:
    def embed(image: ImageBGR, label: str) -> NDArray[np.float32]:
        results = engine.represent(image, enforce_detection=False, source=label)
        best = subject(results, image) if confirm else max(results, key=lambda r: r.detection.box.area,
                                                            default=None)
        if best is None:
            best = engine.represent(image, skip_detection=True, source=label)[0]
        assert best.embedding is not None
        return best.embedding.vector.astype(np.float32)

    return embed


def chain_embedder(chain: str, *, num_threads: int = 1) -> Callable[[ImageBGR, str], NDArray[np.float32]]:
    """``embed(image, label) -> vector`` for one of :data:`CHAINS`."""
    from facegate.engine import get_engine

    if chain == "default":
        return _engine_embedder(get_engine("mediapipe", num_threads=num_threads), confirm=True)
    if chain == "mmod":
        return _engine_embedder(get_engine("dlib", num_threads=num_threads), confirm=False)
    if chain == "reference":
        if not dlib_available():
            raise ConfigError("the reference chain needs dlib (pip install dlib-bin, build/test time only)")
        from facegate.evaluation.landmark_choice import dlib_native_embedder

        return dlib_native_embedder()
    raise ConfigError(f"unknown chain {chain!r}; valid: {', '.join(CHAINS)}")


def _cache_key(chain: str, rel: str, data: bytes) -> str:
    return f"{chain}|{rel}|{hashlib.sha256(data).hexdigest()[:16]}"


def embed_chain(chain: str, root: Path, images: Sequence[str], *, cache: Path | None = None,
                num_threads: int = 1, progress: Callable[[str, int, int], None] | None = None) -> Vectors:
    """Vectors of ``images`` (paths relative to ``root``) by ``chain``; ``cache`` (``.npz``) is read and
    updated so a second run embeds nothing (keys include the file's sha256, so edits invalidate them)."""
    stored: dict[str, NDArray[np.float32]] = {}
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as npz:
            stored = {k: npz[k] for k in npz.files}
    embed: Callable[[ImageBGR, str], NDArray[np.float32]] | None = None
    out: Vectors = {}
    changed = False
    for i, rel in enumerate(images):
        if progress is not None:
            progress(chain, i, len(images))
        path = root / rel
        key = _cache_key(chain, rel, path.read_bytes())
        if key in stored:
            out[rel] = stored[key]
            continue
        if embed is None:
            embed = chain_embedder(chain, num_threads=num_threads)
        try:
            out[rel] = stored[key] = embed(load_image(path), rel)
            changed = True
        except FacegateError as err:
            logger.warning("%s: %s: %s", chain, rel, err)
    if cache is not None and changed:
        tmp = cache.with_suffix(".tmp.npz")
        arrays: dict[str, Any] = dict(stored)
        np.savez(tmp, **arrays)
        tmp.replace(cache)
    return out


__all__ = ["CHAINS", "Vectors", "chain_embedder", "dlib_available", "embed_chain", "subject"]
