"""Per-stage latency of the recognition chain (median ms) at 1 and 2 threads, per model variant."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from facegate.align import build_aligner
from facegate.bench.timing import median_ms
from facegate.detectors.registry import build_detector
from facegate.embedders.registry import build_embedder
from facegate.images import load_image
from facegate.inference.manifest import default_zoo
from facegate.matcher import distance
from facegate.types import ImageBGR

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@dataclass(frozen=True, slots=True)
class StageRow:
    stage: str
    model: str
    threads: int
    median_ms: float


def sample_frame(width: int = 640, height: int = 480, name: str = "obama.jpg") -> ImageBGR:
    """A sample photo letterboxed to ``width`` x ``height`` (the benchmark's input frame)."""
    image = load_image(SAMPLES / name)
    scale = min(width / image.shape[1], height / image.shape[0])
    resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    y, x = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
    canvas[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    return canvas


def bench_stages(threads: tuple[int, ...] = (1, 2), repeat: int = 30) -> list[StageRow]:
    frame = sample_frame()
    zoo = default_zoo()
    rows: list[StageRow] = []
    for n in threads:
        for manifest in zoo.all():
            if manifest.kind == "detector" and manifest.family.startswith("mediapipe"):
                det = build_detector(manifest.family, num_threads=n, variant=manifest.variant)
                rows.append(StageRow("detect 640x480", manifest.name, n, median_ms(partial(det.detect, frame),
                                                                                     repeat=repeat)))
        detector = build_detector("mediapipe", num_threads=n)
        faces = detector.detect(frame)
        if not faces:
            continue
        for manifest in zoo.all():
            if manifest.kind != "embedder":
                continue
            embedder = build_embedder(manifest.family, variant=manifest.variant, num_threads=n)
            aligner = build_aligner(embedder.alignment, num_threads=n)
            if manifest.default:
                rows.append(StageRow("landmarks+align", "default", n,
                                     median_ms(partial(aligner.align, frame, faces[0]), repeat=repeat)))
            chip = aligner.align(frame, faces[0]).image
            rows.append(StageRow("embed 1 face", manifest.name, n,
                                 median_ms(partial(embedder.embed, [chip]), repeat=repeat)))
        vec_a = np.random.default_rng(0).normal(size=128).astype(np.float32)
        vec_b = np.random.default_rng(1).normal(size=128).astype(np.float32)
        rows.append(StageRow("1:1 distance", "euclidean", n,
                             median_ms(partial(distance, vec_a, vec_b, "euclidean"), repeat=200)))
    return rows


def bench_verify(threads: int = 1, repeat: int = 10) -> float:
    """End-to-end ``verify`` of two 640x480 photos (decode excluded), median ms."""
    from facegate.api import verify

    a = sample_frame(name="obama.jpg")
    b = sample_frame(name="obama2.jpg")
    verify(a, b, num_threads=threads)
    return median_ms(lambda: verify(a, b, num_threads=threads), repeat=repeat, warmup=1)
