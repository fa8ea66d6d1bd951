"""Latency of each face detector (and model variant) on a 640x480 frame, at 1 and 2 threads.

The time is one whole :meth:`~facegate.detectors.base.FaceDetector.detect` call (letterbox,
inference, decoding, NMS), which is what the pipeline pays per frame. Nothing is printed: the
``bench`` command formats the rows. ``facegate bench`` uses the rows to pick the faster variant of a
detector on the device at hand (on x86 the fp16 BlazeFace files are faster than int8; on ARM
XNNPACK's int8 kernels usually win).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facegate.detectors.registry import create_detector, detector_options
from facegate.errors import ModelNotInstalledError
from facegate.images import load_image
from facegate.inference.manifest import ModelZoo, default_zoo
from facegate.types import ImageBGR

logger = logging.getLogger(__name__)

#: registry names benchmarked by default (every installed variant of each); names whose model is not
#: installed (the user-importable ssd, retinaface, yunet) are skipped
DEFAULT_DETECTORS: tuple[str, ...] = ("mediapipe", "mediapipe_full", "opencv", "mtcnn", "dlib", "ssd", "retinaface",
                                      "yunet")


@dataclass(frozen=True, slots=True)
class DetectorBenchRow:
    detector: str
    variant: str
    threads: int
    runs: int
    faces: int  # faces found in the bench frame (a sanity check that the variant works)
    median_ms: float
    p90_ms: float

    HEADERS = ("detector", "variant", "threads", "runs", "faces", "median ms", "p90 ms")

    def cells(self) -> list[object]:
        return [self.detector, self.variant, self.threads, self.runs, self.faces, self.median_ms, self.p90_ms]


def bench_frame(width: int = 640, height: int = 480) -> ImageBGR:
    """A ``width x height`` BGR frame with one face: the packaged obama sample, cropped to the frame's
    aspect ratio around its top and resized."""
    image = load_image(Path(__file__).resolve().parent.parent / "samples" / "obama.jpg")
    h, w = image.shape[:2]
    target = width / height
    if w / h > target:
        cw = round(h * target)
        image = image[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        image = image[: round(w / target)]
    return np.ascontiguousarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))


def variants(name: str, zoo: ModelZoo | None = None) -> list[str | None]:
    """The installed model variants of detector ``name`` (``[None]`` when it has no manifests)."""
    found = sorted({m.variant for m in (zoo or default_zoo()).all() if m.kind == "detector" and m.family == name})
    return list(found) or [None]


def bench_detectors(
    names: Sequence[str] = DEFAULT_DETECTORS,
    *,
    image: ImageBGR | None = None,
    threads: Sequence[int] = (1, 2),
    runs: int = 50,
    warmup: int = 5,
) -> list[DetectorBenchRow]:
    """One row per detector name x installed variant x thread count: median and p90 of ``runs``
    ``detect`` calls after ``warmup`` calls. Detectors that are not installed are skipped (logged)."""
    frame = image if image is not None else bench_frame()
    rows: list[DetectorBenchRow] = []
    for name in names:
        for variant in variants(name):
            options = {} if variant is None else {"variant": variant}
            for count in threads:
                try:
                    detector = create_detector(detector_options(name, options), num_threads=count)
                except ModelNotInstalledError as err:
                    logger.info("skipping detector %s: %s", name, err)
                    break
                faces = 0
                for _ in range(warmup):
                    faces = len(detector.detect(frame))
                times = np.empty(runs, dtype=np.float64)
                for i in range(runs):
                    start = time.perf_counter()
                    detector.detect(frame)
                    times[i] = time.perf_counter() - start
                median, p90 = np.percentile(times * 1e3, [50.0, 90.0])
                rows.append(DetectorBenchRow(name, variant or "-", count, runs, faces, float(median), float(p90)))
    return rows


__all__ = ["DEFAULT_DETECTORS", "DetectorBenchRow", "bench_detectors", "bench_frame", "variants"]
