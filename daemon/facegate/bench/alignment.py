"""Landmark and chip latency per provider (median ms per face) at 1 and 2 threads.

Rows: each landmark provider on the BlazeFace detection of a 640x480 frame, the dlib chip
(``get_face_chip_details`` + ``extract_image_chip``) for a small and a large face (the large one goes
through the pyramid), and the plain ArcFace-style template warp.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from facegate.align import Aligner
from facegate.bench.stages import sample_frame
from facegate.bench.timing import median_ms
from facegate.detectors.registry import build_detector
from facegate.errors import ModelNotInstalledError
from facegate.inference.manifest import AlignmentSpec, default_zoo
from facegate.landmarks.registry import LANDMARKERS, build_landmarker
from facegate.types import FaceDetection, ImageBGR

logger = logging.getLogger(__name__)

#: a plain 5-point template (ArcFace 112x112) for timing the plain method; real ones come from manifests
_PLAIN = AlignmentSpec(
    size=112,
    points=("right_eye", "left_eye", "nose"),
    template=((0.3419, 0.4616), (0.6565, 0.4598), (0.5002, 0.6405)),
    method="plain",
)


@dataclass(frozen=True, slots=True)
class AlignmentRow:
    stage: str
    method: str
    frame: str
    threads: int
    median_ms: float


def _largest(detections: list[FaceDetection]) -> FaceDetection:
    return max(detections, key=lambda d: d.box.area)


def bench_alignment(threads: tuple[int, ...] = (1, 2), repeat: int = 30) -> list[AlignmentRow]:
    frames: dict[str, ImageBGR] = {"640x480": sample_frame(), "1920x1080": sample_frame(1920, 1080)}
    spec = default_zoo().family("embedder", "Dlib").alignment
    rows: list[AlignmentRow] = []
    for n in threads:
        detector = build_detector("mediapipe", num_threads=n)
        faces = {k: _largest(detector.detect(v)) for k, v in frames.items()}
        for name in LANDMARKERS.names():
            try:
                landmarker = build_landmarker(name, num_threads=n)
            except ModelNotInstalledError as err:  # FaceMesh is built on demand in an installed facegate
                logger.info("skipping landmarks %s: %s", name, err)
                continue
            for key, frame in frames.items():
                ms = median_ms(partial(landmarker.landmarks, frame, faces[key]), repeat=repeat)
                rows.append(AlignmentRow("landmarks", name, key, n, ms))
        if spec is not None:
            landmarker = build_landmarker("auto", num_threads=n)
            aligner = Aligner(spec, None)
            for key, frame in frames.items():
                enriched = landmarker.landmarks(frame, faces[key])
                ms = median_ms(partial(aligner.align, frame, enriched), repeat=repeat)
                rows.append(AlignmentRow("chip 150", "dlib", key, n, ms))
        plain = Aligner(_PLAIN, None)
        for key, frame in frames.items():
            ms = median_ms(partial(plain.align, frame, faces[key]), repeat=repeat)
            rows.append(AlignmentRow("chip 112", "plain", key, n, ms))
    return rows


def chip_agreement_with_dlib(image: ImageBGR) -> tuple[float, float]:
    """Mean abs pixel difference and max difference between ``dlib.get_face_chip`` and ours on dlib's
    own points (build/test time: needs dlib)."""
    import dlib

    from facegate.convert.shape_predictor import SOURCE, dlib_rect
    from facegate.convert.sources import fetch
    from facegate.landmarks.base import DLIB5_NAMES
    from facegate.types import Box

    spec = default_zoo().family("embedder", "Dlib").alignment
    if spec is None:
        return float("nan"), float("nan")
    rect = dlib_rect(image)
    if rect is None:
        return float("nan"), float("nan")
    rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    shape = dlib.shape_predictor(str(fetch(SOURCE)))(rgb, dlib.rectangle(*rect))
    ref = np.asarray(dlib.get_face_chip(rgb, shape, spec.size, spec.padding))[:, :, ::-1]
    pts = np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()], dtype=np.float32)
    det = FaceDetection(Box(*rect), 1.0, pts, DLIB5_NAMES)
    ours = Aligner(spec, None).align(image, det).image
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    return float(diff.mean()), float(diff.max())


__all__ = ["AlignmentRow", "bench_alignment", "chip_agreement_with_dlib"]
