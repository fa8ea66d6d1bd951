"""The photo path: ``facegate.represent(path)`` on real photo files, old vs new mode and face_recognition.

Modes, alternated photo by photo in one run so machine load hits them alike:

``always-pad``
    the library as it first was: the edge-padded second detector pass on every detector run, and every
    orientation of the photo read in full;
``four-pass``
    the padded pass only when a face touches the border or none was found, every orientation read in
    full (the photo turned by 90, 270 and 180 degrees, downscaled again and detected on);
``screened``
    the default now: an upright face BlazeFace is sure of ends the search; otherwise the turned
    orientations are screened on a small copy of the detection image the upright reading made and read
    in full only when their score comes near the best face (:mod:`facegate.orientation`);
``face_recognition``
    ``face_recognition.face_encodings(load_image_file(path))`` (HOG, one upsampling, 5 points, dlib
    ResNet), or the same calls made on dlib directly when only dlib and the model files are installed.

Default photos: the packaged samples (face_recognition 1.3.0's test photos) and scikit-image's
astronaut written as JPEG at several sizes (when scikit-image is installed); any folder can be given.
"""

from __future__ import annotations

import importlib
import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facegate.detectors.edge_pad import EdgePaddedDetector
from facegate.images import encoded_size, load_image

logger = logging.getLogger(__name__)

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
#: long sides of the astronaut JPEGs: 0.26, 1.0, 2.3 and 4 MP
ASTRONAUT_SIDES = (512, 1000, 1500, 2000)
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass(frozen=True, slots=True)
class PhotoRow:
    mode: str
    photos: int
    mean_ms: float
    median_ms: float
    padded_passes: int | str
    vs_default: float  # this mode's total time / the default (screened) mode's total time


#: the library's default mode, which the other modes are compared with
DEFAULT_MODE = "screened"


@dataclass(frozen=True, slots=True)
class PhotoAgreement:
    """An earlier mode vs the default on the same photos: faces found and embeddings."""

    modes: str
    photos: int
    same_face_count: int
    identical_embeddings: int  # photos whose every embedding is bit for bit the default's
    min_cosine: float
    median_cosine: float


@contextmanager
def default_photos() -> Iterator[list[Path]]:
    """The packaged samples plus (if scikit-image is installed) the astronaut at several sizes."""
    photos = sorted(SAMPLES.glob("*.jpg"))
    with tempfile.TemporaryDirectory(prefix="facegate-photos-") as tmp:
        try:
            from skimage import data as skdata
        except ImportError:
            logger.info("scikit-image is not installed: benchmarking the packaged samples only")
        else:
            astronaut = np.ascontiguousarray(skdata.astronaut()[:, :, ::-1])  # type: ignore[no-untyped-call]
            for side in ASTRONAUT_SIDES:
                path = Path(tmp) / f"astronaut_{side}.jpg"
                resized = cv2.resize(astronaut, (side, side), interpolation=cv2.INTER_CUBIC)
                cv2.imwrite(str(path), resized, [cv2.IMWRITE_JPEG_QUALITY, 92])
                photos.append(path)
        yield photos


def photos_in(folder: Path, *, min_pixels: int = 0, max_pixels: int | None = None) -> list[Path]:
    """Image files under ``folder`` (recursively) whose header size is within the bounds."""
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in PHOTO_SUFFIXES:
            continue
        size = encoded_size(path.read_bytes()[:65536])
        if size is None:
            continue
        pixels = size[0] * size[1]
        if pixels >= min_pixels and (max_pixels is None or pixels <= max_pixels):
            found.append(path)
    return found


def face_recognition_encoder() -> tuple[str, Callable[[Path], int]] | None:
    """``(label, encode(path) -> faces)`` for face_recognition, else dlib directly, else ``None``."""
    try:
        face_recognition = importlib.import_module("face_recognition")  # untyped, optional

        def encode(path: Path) -> int:
            return len(face_recognition.face_encodings(face_recognition.load_image_file(str(path))))

        return "face_recognition", encode
    except ImportError:
        pass
    try:
        import dlib
        import face_recognition_models as frm
    except ImportError:
        return None
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    resnet = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def encode_dlib(path: Path) -> int:
        rgb = np.ascontiguousarray(load_image(path)[:, :, ::-1])
        boxes = detector(rgb, 1)
        return len([resnet.compute_face_descriptor(rgb, predictor(rgb, box), 1) for box in boxes])

    return "dlib (face_recognition's calls)", encode_dlib


def _padded(engine: Any) -> EdgePaddedDetector | None:
    return engine.detector if isinstance(engine.detector, EdgePaddedDetector) else None


def bench_photo(photos: Sequence[Path], *, rounds: int = 3,
                with_reference: bool = True) -> tuple[list[PhotoRow], list[PhotoAgreement]]:
    """Time ``represent(path)`` per mode, alternating photo by photo; compare each earlier mode's results
    with the default's."""
    import facegate
    from facegate.library.options import DEFAULT_DETECTOR, DEFAULT_MODEL, engine_for

    engine = engine_for(DEFAULT_MODEL, DEFAULT_DETECTOR)
    padded = _padded(engine)
    if padded is None:
        raise RuntimeError("the library engine has no edge-padded detector to compare")
    saved = padded.always, engine.full_orientation_search

    def represent(always: bool, full_search: bool) -> Callable[[Path], Any]:
        def run(path: Path) -> Any:
            padded.always, engine.full_orientation_search = always, full_search
            return facegate.represent(path, enforce_detection=False)
        return run

    modes: dict[str, Callable[[Path], Any]] = {"always-pad": represent(True, True),
                                               "four-pass": represent(False, True),
                                               DEFAULT_MODE: represent(False, False)}
    own = tuple(modes)
    reference = face_recognition_encoder() if with_reference else None
    if reference is not None:
        modes[reference[0]] = reference[1]
    times: dict[str, list[float]] = {m: [] for m in modes}
    passes: dict[str, int] = dict.fromkeys(modes, 0)
    try:
        for fn in modes.values():  # warm-up: models loaded, caches filled
            fn(photos[0])
        for _ in range(rounds):
            for path in photos:
                for mode, fn in modes.items():
                    before = padded.padded_passes
                    t0 = time.perf_counter()
                    fn(path)
                    times[mode].append((time.perf_counter() - t0) * 1000.0)
                    passes[mode] += padded.padded_passes - before
        agreements = [_agreement(f"{m} vs {DEFAULT_MODE}", photos, modes[m], modes[DEFAULT_MODE])
                      for m in own if m != DEFAULT_MODE]
    finally:
        padded.always, engine.full_orientation_search = saved
    base = sum(times[DEFAULT_MODE])
    rows = [PhotoRow(mode=m, photos=len(photos), mean_ms=round(statistics.fmean(t), 1),
                     median_ms=round(statistics.median(t), 1),
                     padded_passes=passes[m] if m in own else "-",
                     vs_default=round(sum(t) / base, 2))
            for m, t in times.items()]
    return rows, agreements


def _agreement(modes: str, photos: Sequence[Path], old: Callable[[Path], Any],
               new: Callable[[Path], Any]) -> PhotoAgreement:
    same = identical = 0
    cosines: list[float] = []
    for path in photos:
        a, b = old(path), new(path)
        same += len(a) == len(b)
        identical += len(a) == len(b) and all(x.embedding == y.embedding for x, y in zip(a, b, strict=True))
        for x, y in zip(a, b, strict=False):
            u, v = np.asarray(x.embedding), np.asarray(y.embedding)
            cosines.append(float(u @ v / max(float(np.linalg.norm(u) * np.linalg.norm(v)), 1e-12)))
    return PhotoAgreement(modes=modes, photos=len(photos), same_face_count=same, identical_embeddings=identical,
                          min_cosine=round(min(cosines, default=1.0), 6),
                          median_cosine=round(statistics.median(cosines) if cosines else 1.0, 6))


__all__ = ["DEFAULT_MODE", "PhotoAgreement", "PhotoRow", "bench_photo", "default_photos", "face_recognition_encoder",
           "photos_in"]
