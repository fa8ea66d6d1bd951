"""Detector comparison on a face-count CSV (``file,faces,notes[,source]``), e.g. ``../shared/data/detection.csv``.

Per backend: exact-count accuracy over the images with faces, faces found vs expected (found is
capped per image at the expected count, so extra boxes do not hide misses), false positives on the
images tagged ``negative`` (expected 0), recall on the images tagged ``rotated``, ``small`` (or
``lowres``) and ``partial``, and the median time of one ``detect`` call on a 640x480 frame (one
thread). Tags come from the ``notes`` column (``tags=group,partial; ...``). Counts far above a
hundred (the crowd photo, "239, approximate") are excluded from exact-count accuracy.

``facegate evaluate --detection CSV [--detectors a,b|all] [--json]`` prints the table.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegate.detectors.base import FaceDetector
from facegate.errors import ConfigError, FacegateError, ModelNotInstalledError
from facegate.images import load_image
from facegate.types import ImageBGR

logger = logging.getLogger(__name__)

#: images with more faces than this are approximate counts: excluded from exact-count accuracy
EXACT_COUNT_LIMIT = 100
#: tag groups reported as recall columns (a column counts an image carrying any of its tags)
RECALL_TAGS: dict[str, tuple[str, ...]] = {"rotated": ("rotated",), "small": ("small", "lowres"),
                                           "partial": ("partial",)}
_TAGS = re.compile(r"tags=([\w,\-]+)")


@dataclass(frozen=True, slots=True)
class DetectionCase:
    file: str
    faces: int
    tags: frozenset[str]


@dataclass(frozen=True, slots=True)
class DetectorScore:
    """One backend's results over the CSV; rates are fractions (0..1)."""

    detector: str
    images: int
    exact_count: float  # share of face images (<= EXACT_COUNT_LIMIT faces) with exactly the expected count
    faces_found: int  # sum over images of min(found, expected)
    faces_expected: int
    false_positives: int  # faces reported on negative images
    negatives: int
    recall_rotated: float
    recall_small: float
    recall_partial: float
    median_ms_640x480: float
    failed: int  # images the detector raised on


def read_cases(path: Path) -> list[DetectionCase]:
    """Rows of a detection CSV; raises :class:`ConfigError` naming the row on bad input."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err}") from err
    cases: list[DetectionCase] = []
    for i, row in enumerate(rows, start=2):
        try:
            faces = int(row["faces"])
            file = row["file"].strip()
        except (KeyError, ValueError, AttributeError) as err:
            raise ConfigError(f"{path}:{i}: need columns file,faces[,notes]: {err}") from err
        match = _TAGS.search(row.get("notes") or "")
        tags = frozenset(t.strip() for t in match.group(1).split(",")) if match else frozenset()
        cases.append(DetectionCase(file, faces, tags))
    return cases


def _recall(found: dict[str, int], cases: Sequence[DetectionCase], tags: tuple[str, ...]) -> float:
    chosen = [c for c in cases if c.tags & set(tags) and c.faces > 0 and c.file in found]
    expected = sum(c.faces for c in chosen)
    if expected == 0:
        return float("nan")
    return sum(min(found[c.file], c.faces) for c in chosen) / expected


def score_counts(detector: str, cases: Sequence[DetectionCase], found: dict[str, int], median_ms: float,
                 failed: int = 0) -> DetectorScore:
    """Aggregate per-image face counts ``found`` (file -> count) into a :class:`DetectorScore`."""
    seen = [c for c in cases if c.file in found]
    exact_pool = [c for c in seen if 0 < c.faces <= EXACT_COUNT_LIMIT]
    negatives = [c for c in seen if c.faces == 0]
    return DetectorScore(
        detector=detector,
        images=len(seen),
        exact_count=sum(found[c.file] == c.faces for c in exact_pool) / len(exact_pool) if exact_pool else math.nan,
        faces_found=sum(min(found[c.file], c.faces) for c in seen if c.faces > 0),
        faces_expected=sum(c.faces for c in seen if c.faces > 0),
        false_positives=sum(found[c.file] for c in negatives),
        negatives=len(negatives),
        recall_rotated=_recall(found, seen, RECALL_TAGS["rotated"]),
        recall_small=_recall(found, seen, RECALL_TAGS["small"]),
        recall_partial=_recall(found, seen, RECALL_TAGS["partial"]),
        median_ms_640x480=median_ms,
        failed=failed,
    )


def median_detect_ms(detector: FaceDetector, frame: ImageBGR, *, runs: int = 10, warmup: int = 2) -> float:
    """Median wall time of ``detector.detect(frame)`` in milliseconds."""
    for _ in range(warmup):
        detector.detect(frame)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        detector.detect(frame)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def evaluate_detector(
    name: str,
    detector: FaceDetector,
    cases: Sequence[DetectionCase],
    root: Path,
    *,
    frame: ImageBGR,
    prepare: Callable[[ImageBGR], ImageBGR] | None = None,
    runs: int = 10,
) -> DetectorScore:
    """Run ``detector`` on every case image (after ``prepare``, e.g. the engine's downscaling)."""
    found: dict[str, int] = {}
    failed = 0
    for case in cases:
        try:
            image = load_image(root / case.file)
            found[case.file] = len(detector.detect(prepare(image) if prepare else image))
        except FacegateError as err:
            logger.warning("%s on %s: %s", name, case.file, err)
            failed += 1
    return score_counts(name, cases, found, median_detect_ms(detector, frame, runs=runs), failed)


def _engine_scale(image: ImageBGR) -> ImageBGR:
    """The :class:`~facegate.engine.FaceEngine`'s downscaling of large images, so the evaluation sees
    what the API's detection sees."""
    import cv2

    from facegate.engine import DETECTION_MAX_SIDE

    h, w = image.shape[:2]
    if max(h, w) <= DETECTION_MAX_SIDE:
        return image
    factor = max(h, w) / DETECTION_MAX_SIDE
    return np.ascontiguousarray(cv2.resize(image, (round(w / factor), round(h / factor)),
                                           interpolation=cv2.INTER_AREA), dtype=np.uint8)


def installed_detectors() -> list[str]:
    """Registry names whose models are installed (``skip`` excluded: it finds one face everywhere)."""
    from facegate.detectors.registry import DETECTORS, build_detector

    names: list[str] = []
    for name in DETECTORS.names():
        if name == "skip":
            continue
        try:
            build_detector(name)
        except ModelNotInstalledError:
            continue
        names.append(name)
    return names


def compare_detectors(csv_path: Path, names: Sequence[str], *, root: Path | None = None, threads: int = 1,
                      runs: int = 10) -> list[DetectorScore]:
    """:class:`DetectorScore` rows for ``names`` on ``csv_path``'s images (paths relative to ``root``,
    default the CSV's folder, then its ``detection/`` subfolder)."""
    from facegate.bench.detectors import bench_frame
    from facegate.detectors.registry import build_detector

    cases = read_cases(csv_path)
    base = root or csv_path.parent
    if cases and not (base / cases[0].file).exists() and (base / "detection" / cases[0].file).exists():
        base = base / "detection"
    frame = bench_frame()
    rows = []
    for name in names:
        detector = build_detector(name, num_threads=threads)
        logger.info("evaluating detector %s on %d images", name, len(cases))
        rows.append(evaluate_detector(name, detector, cases, base, frame=frame, prepare=_engine_scale, runs=runs))
    return rows


HEADERS = ["detector", "exact count", "faces found", "FP on negatives", "recall rotated", "recall small",
           "recall partial", "ms 640x480"]


def table_rows(scores: Sequence[DetectorScore]) -> list[list[Any]]:
    def pct(v: float) -> str:
        return "-" if math.isnan(v) else f"{100 * v:.0f}%"

    return [[s.detector, pct(s.exact_count), f"{s.faces_found}/{s.faces_expected}",
             f"{s.false_positives} ({s.negatives} images)", pct(s.recall_rotated), pct(s.recall_small),
             pct(s.recall_partial), f"{s.median_ms_640x480:.1f}"] for s in scores]


def run_detection_command(args: argparse.Namespace) -> int:
    """``facegate evaluate --detection CSV``: ``args.detection``, ``.detectors`` ("all" or a comma
    list), ``.json``, ``.threads``, ``.root``."""
    from facegate.output import emit_json, emit_table, emit_text

    csv_path = Path(args.detection)
    if not csv_path.is_file():
        raise ConfigError(f"{csv_path}: no such file")
    wanted = str(getattr(args, "detectors", "all") or "all")
    names = installed_detectors() if wanted == "all" else [n.strip() for n in wanted.split(",") if n.strip()]
    root = Path(args.root) if getattr(args, "root", None) else None
    scores = compare_detectors(csv_path, names, root=root, threads=max(1, int(getattr(args, "threads", 1) or 1)))
    if args.json:
        emit_json({"csv": str(csv_path), "exact_count_limit": EXACT_COUNT_LIMIT,
                   "results": [asdict(s) for s in scores]})
        return 0
    emit_text(f"{csv_path}: {len(read_cases(csv_path))} images; exact count over images with 1..{EXACT_COUNT_LIMIT} "
              "faces; faces found capped per image at the expected count; time = median detect() on a 640x480 "
              "frame, 1 thread")
    emit_table(HEADERS, table_rows(scores))
    return 0


__all__ = [
    "EXACT_COUNT_LIMIT",
    "HEADERS",
    "DetectionCase",
    "DetectorScore",
    "compare_detectors",
    "evaluate_detector",
    "installed_detectors",
    "median_detect_ms",
    "read_cases",
    "run_detection_command",
    "score_counts",
    "table_rows",
]
