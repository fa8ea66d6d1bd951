"""Converter: MTCNN's P-Net, R-Net and O-Net (MIT weights of facenet-pytorch 2.6.0) to TFLite.

The three ``.pt`` state dicts are read with :mod:`facegate.convert.torch_state` (no PyTorch, no
code execution), rebuilt as TensorFlow functions and converted; the cascade around them (pyramid,
proposal decoding, NMS, box regression, landmarks) is numpy in :mod:`facegate.detectors.mtcnn`.

Facts the rebuild must honour:

* the input normalisation ``(rgb - 127.5) / 128`` is folded into each net's first convolution,
  which has no padding, so the fold is exact: the models take float32 RGB 0..255;
* PyTorch's ``MaxPool2d(ceil_mode=True)`` keeps a last, partial window; for every pooling of these
  nets at their input sizes that equals TensorFlow's SAME pooling (padding only at the end, padded
  cells ignored) or VALID pooling (no partial window exists) -- chosen per layer from the shapes;
* R-Net and O-Net flatten their NCHW maps after ``permute(0, 3, 2, 1)``, i.e. in (W, H, C) order;
* P-Net is fully convolutional: it is converted at 12x12 and its input resized per pyramid level at
  run time (LiteRT re-plans the graph; nothing in it depends on the size).

The networks are tiny (P-Net 6.6k parameters) and the detector's cost is mostly the numpy cascade,
so they stay float: the float32 files are the references (left out of the wheel), the shipped
default is the same graph with float16 weights (half the size, float32 arithmetic; checked against
the float64 reference and, as a detector, against the float32 files on the fit photos).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.convert.context import BuildContext
from facegate.convert.sources import SourceFile, fetch
from facegate.convert.tf_import import import_tensorflow
from facegate.convert.torch_state import load_state_dict
from facegate.errors import ModelError

logger = logging.getLogger(__name__)

PACKAGE = "facenet-pytorch"
VERSION = "2.6.0"
LICENCE = "MIT"
SOURCES: dict[str, tuple[SourceFile, str]] = {
    "pnet": (SourceFile(PACKAGE, VERSION, "facenet_pytorch/data/pnet.pt", LICENCE),
             "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f"),
    "rnet": (SourceFile(PACKAGE, VERSION, "facenet_pytorch/data/rnet.pt", LICENCE),
             "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86"),
    "onet": (SourceFile(PACKAGE, VERSION, "facenet_pytorch/data/onet.pt", LICENCE),
             "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d"),
}
INPUT_SIZES: dict[str, int | None] = {"pnet": None, "rnet": 24, "onet": 48}
PNET_MIN = 12
MEAN = 127.5
SCALE = 0.0078125  # 1 / 128
#: facenet-pytorch's keypoint order (image left to right) in the subject's perspective
KEYPOINT_NAMES: tuple[str, ...] = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")

Array = NDArray[np.float32]


def load_weights(net: str) -> dict[str, Array]:
    source, sha = SOURCES[net]
    state = load_state_dict(fetch(source, sha256=sha))
    return {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}


# -- TensorFlow rebuild --------------------------------------------------------------------------


def _tf() -> Any:
    return import_tensorflow("the MTCNN converter")


def _conv_kernel(w: Array, *, fold_input: bool) -> tuple[Array, Array | None]:
    """Torch ``(F, C, kh, kw)`` -> TF HWIO, optionally with the input normalisation folded in
    (returns the bias correction then)."""
    w64 = w.astype(np.float64)
    correction = None
    if fold_input:
        correction = (-MEAN * SCALE * w64.sum(axis=(1, 2, 3))).astype(np.float32)
        w64 = w64 * SCALE
    return np.ascontiguousarray(w64.transpose(2, 3, 1, 0)).astype(np.float32), correction


@dataclass(frozen=True, slots=True)
class _Pool:
    size: int
    stride: int


def ceil_pool_padding(length: int, size: int, stride: int) -> str:
    """The TensorFlow padding that reproduces PyTorch's ceil-mode max pooling of ``length`` cells."""
    ceil_out = math.ceil((length - size) / stride) + 1
    if (ceil_out - 1) * stride >= length:  # PyTorch drops a window starting past the input
        ceil_out -= 1
    valid_out = (length - size) // stride + 1
    same_out = math.ceil(length / stride)
    same_before = max((same_out - 1) * stride + size - length, 0) // 2
    if ceil_out == valid_out:
        return "VALID"
    if ceil_out == same_out and same_before == 0:
        return "SAME"
    raise ModelError(f"no TensorFlow padding reproduces ceil-mode pooling {size}/{stride} of {length}")


def _layers(weights: dict[str, Array], tf: Any, module: Any) -> tuple[Any, Any, Any]:
    def conv(x: Any, name: str, first: bool = False) -> Any:
        kernel, correction = _conv_kernel(weights[f"{name}.weight"], fold_input=first)
        bias = weights[f"{name}.bias"] + (correction if correction is not None else 0.0)
        y = tf.nn.conv2d(x, tf.constant(kernel), strides=1, padding="VALID")
        return tf.nn.bias_add(y, tf.constant(bias.astype(np.float32)))

    def prelu(x: Any, name: str) -> Any:
        # Keras's form with the slope in a variable: the only one the converter fuses into PRELU
        # (with a constant slope it emits NEG/RELU/MUL/RELU/SUB, 5x slower on P-Net)
        # per-channel slope shaped for broadcasting: (1, 1, C) after convolutions, (1, C) after dense
        alpha = module.slopes[(name, len(x.shape))]
        return tf.nn.relu(x) + (-alpha) * tf.nn.relu(-x)

    def dense(x: Any, name: str) -> Any:
        w = tf.constant(np.ascontiguousarray(weights[f"{name}.weight"].T))
        return tf.matmul(x, w) + tf.constant(weights[f"{name}.bias"])

    return conv, prelu, dense


def _pool(tf: Any, x: Any, size: int, stride: int) -> Any:
    shape = x.shape.as_list()
    if shape[1] == PNET_MIN - 2:  # P-Net, resized at run time: 2x2/2 ceil mode is SAME for every length
        return tf.nn.max_pool2d(x, size, stride, "SAME")
    pads = {ceil_pool_padding(shape[1], size, stride), ceil_pool_padding(shape[2], size, stride)}
    if len(pads) != 1:
        raise ModelError(f"pooling of a {shape[1]}x{shape[2]} map needs different paddings per axis")
    return tf.nn.max_pool2d(x, size, stride, pads.pop())


def tf_function(net: str, weights: dict[str, Array]) -> Any:
    """A ``tf.Module`` whose ``forward`` runs one net: float32 RGB 0..255 NHWC in, a dict of named
    outputs; the PReLU slopes are its variables."""
    tf = _tf()
    module = tf.Module()
    module.slopes = {(k.split(".")[0], rank): tf.Variable(v.reshape((1,) * (rank - 2) + (-1,)), trainable=False)
                     for k, v in sorted(weights.items()) if k.startswith("prelu") for rank in (2, 4)}
    conv, prelu, dense = _layers(weights, tf, module)
    size = INPUT_SIZES[net]

    def flatten(x: Any) -> Any:
        x = tf.transpose(x, [0, 2, 1, 3])  # NHWC -> N, W, H, C as torch's permute(0, 3, 2, 1)
        shape = x.shape.as_list()
        return tf.reshape(x, [-1, shape[1] * shape[2] * shape[3]])

    def face_probability(logits: Any) -> Any:
        return tf.nn.softmax(logits, axis=-1)[..., 1:2]

    def pnet(x: Any) -> dict[str, Any]:
        x = _pool(tf, prelu(conv(x, "conv1", True), "prelu1"), 2, 2)
        x = prelu(conv(x, "conv2"), "prelu2")
        x = prelu(conv(x, "conv3"), "prelu3")
        return {"scores": face_probability(conv(x, "conv4_1")), "regressors": conv(x, "conv4_2")}

    def rnet(x: Any) -> dict[str, Any]:
        x = _pool(tf, prelu(conv(x, "conv1", True), "prelu1"), 3, 2)
        x = _pool(tf, prelu(conv(x, "conv2"), "prelu2"), 3, 2)
        x = prelu(conv(x, "conv3"), "prelu3")
        x = prelu(dense(flatten(x), "dense4"), "prelu4")
        return {"scores": face_probability(dense(x, "dense5_1")), "regressors": dense(x, "dense5_2")}

    def onet(x: Any) -> dict[str, Any]:
        x = _pool(tf, prelu(conv(x, "conv1", True), "prelu1"), 3, 2)
        x = _pool(tf, prelu(conv(x, "conv2"), "prelu2"), 3, 2)
        x = _pool(tf, prelu(conv(x, "conv3"), "prelu3"), 2, 2)
        x = prelu(conv(x, "conv4"), "prelu4")
        x = prelu(dense(flatten(x), "dense5"), "prelu5")
        return {"scores": face_probability(dense(x, "dense6_1")), "regressors": dense(x, "dense6_2"),
                "landmarks": dense(x, "dense6_3")}

    body = {"pnet": pnet, "rnet": rnet, "onet": onet}[net]
    # P-Net is converted at its smallest input (12x12, batch 1) and resized per pyramid level at run
    # time: a file converted with dynamic height/width stores 1x1, which cannot be allocated.
    spec = (tf.TensorSpec([1, PNET_MIN, PNET_MIN, 3], tf.float32, name="rgb") if size is None
            else tf.TensorSpec([None, size, size, 3], tf.float32, name="rgb"))
    module.forward = tf.function(body, input_signature=[spec])
    return module


def convert(net: str, weights: dict[str, Array], *, fp16: bool = False) -> bytes:
    """The net as a float32 TFLite file, or with float16 weights (dequantized once at load)."""
    tf = _tf()
    module = tf_function(net, weights)
    concrete = module.forward.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    if fp16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    data: bytes = converter.convert()
    return data


# -- numpy reference (checks the rebuild without PyTorch) ------------------------------------------


def _np_conv(x: NDArray[np.float64], w: Array, b: Array) -> NDArray[np.float64]:
    """VALID cross-correlation, NHWC x, torch (F, C, kh, kw) weights."""
    f, _c, kh, kw = w.shape
    n, h, width, _ = x.shape
    out = np.zeros((n, h - kh + 1, width - kw + 1, f))
    for i in range(kh):
        for j in range(kw):
            out += x[:, i : i + h - kh + 1, j : j + width - kw + 1, :] @ w[:, :, i, j].T.astype(np.float64)
    result: NDArray[np.float64] = out + b.astype(np.float64)
    return result


def _np_prelu(x: NDArray[np.float64], a: Array) -> NDArray[np.float64]:
    result: NDArray[np.float64] = np.where(x > 0, x, x * a.astype(np.float64))
    return result


def _np_pool(x: NDArray[np.float64], size: int, stride: int) -> NDArray[np.float64]:
    n, h, w, c = x.shape
    oh = math.ceil((h - size) / stride) + 1
    ow = math.ceil((w - size) / stride) + 1
    out = np.full((n, oh, ow, c), -np.inf)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = x[:, i * stride : i * stride + size, j * stride : j * stride + size].max(axis=(1, 2))
    return out


def reference_forward(net: str, weights: dict[str, Array], rgb: NDArray[np.float32]) -> dict[str, NDArray[np.float64]]:
    """The nets as facenet-pytorch defines them, in float64 numpy (NHWC RGB 0..255 input)."""
    x = (rgb.astype(np.float64) - MEAN) * SCALE

    def conv(v: NDArray[np.float64], name: str) -> NDArray[np.float64]:
        return _np_conv(v, weights[f"{name}.weight"], weights[f"{name}.bias"])

    def prelu(v: NDArray[np.float64], name: str) -> NDArray[np.float64]:
        return _np_prelu(v, weights[f"{name}.weight"])

    def dense(v: NDArray[np.float64], name: str) -> NDArray[np.float64]:
        result: NDArray[np.float64] = v @ weights[f"{name}.weight"].T.astype(np.float64) + weights[f"{name}.bias"]
        return result

    def prob(logits: NDArray[np.float64]) -> NDArray[np.float64]:
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        out: NDArray[np.float64] = (e / e.sum(axis=-1, keepdims=True))[..., 1:2]
        return out

    def flat(v: NDArray[np.float64]) -> NDArray[np.float64]:
        result: NDArray[np.float64] = v.transpose(0, 2, 1, 3).reshape(v.shape[0], -1)
        return result

    if net == "pnet":
        x = _np_pool(prelu(conv(x, "conv1"), "prelu1"), 2, 2)
        x = prelu(conv(prelu(conv(x, "conv2"), "prelu2"), "conv3"), "prelu3")
        return {"scores": prob(conv(x, "conv4_1")), "regressors": conv(x, "conv4_2")}
    x = _np_pool(prelu(conv(x, "conv1"), "prelu1"), 3, 2)
    x = _np_pool(prelu(conv(x, "conv2"), "prelu2"), 3, 2)
    if net == "rnet":
        x = prelu(dense(flat(prelu(conv(x, "conv3"), "prelu3")), "dense4"), "prelu4")
        return {"scores": prob(dense(x, "dense5_1")), "regressors": dense(x, "dense5_2")}
    x = _np_pool(prelu(conv(x, "conv3"), "prelu3"), 2, 2)
    x = prelu(dense(flat(prelu(conv(x, "conv4"), "prelu4")), "dense5"), "prelu5")
    return {"scores": prob(dense(x, "dense6_1")), "regressors": dense(x, "dense6_2"),
            "landmarks": dense(x, "dense6_3")}


def output_roles(path: Path) -> dict[str, str]:
    """Role -> output tensor name of a converted net, recognised by the last dimension."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    by_width = {1: "scores", 4: "regressors", 10: "landmarks"}
    roles: dict[str, str] = {}
    for detail in interpreter.get_output_details():
        role = by_width.get(int(detail["shape"][-1]))
        if role is None or role in roles:
            raise ModelError(f"{path.name}: cannot tell what output {detail['name']} {detail['shape']} is")
        roles[role] = str(detail["name"])
    return roles


def run_tflite(path: Path, rgb: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
    """Outputs by role of a converted net on ``(N, H, W, 3)`` float32 RGB 0..255."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    inp = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(inp, list(rgb.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp, rgb.astype(np.float32))
    interpreter.invoke()
    names = {v: k for k, v in output_roles(path).items()}
    return {names[str(d["name"])]: np.array(interpreter.get_tensor(d["index"]))
            for d in interpreter.get_output_details()}


def fidelity_inputs(ctx: BuildContext) -> dict[str, NDArray[np.float32]]:
    """Real-image inputs per net: a P-Net pyramid level of the astronaut, face crops (jittered) for
    R-Net and O-Net."""
    import cv2

    from facegate.convert.dlib_resnet import load_sample_rgb

    rgb = load_sample_rgb("skimage:astronaut").astype(np.float32)
    rng = ctx.rng("mtcnn:fidelity")
    crops: dict[int, list[NDArray[np.float32]]] = {24: [], 48: []}
    for _ in range(8):
        x0, y0 = 178 + rng.integers(-20, 20), 70 + rng.integers(-20, 20)
        side = int(95 + rng.integers(-20, 20))
        crop = rgb[y0 : y0 + side, x0 : x0 + side]
        for size, out in crops.items():
            out.append(np.asarray(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), dtype=np.float32))
    pyramid = np.asarray(cv2.resize(rgb, (154, 154), interpolation=cv2.INTER_AREA), dtype=np.float32)[None]
    return {"pnet": pyramid, "rnet": np.stack(crops[24]), "onet": np.stack(crops[48])}


# -- build -----------------------------------------------------------------------------------------

#: max abs difference allowed between TFLite and the float64 reference, per output, by variant
#: (probabilities, box and landmark offsets are all of order 1; float16 weights measured ~1e-3)
MAX_ABS_ERROR = {"fp32": 1e-4, "fp16": 1e-2}
#: the variant the wheel ships (the fp32 files are references, built on demand)
DEFAULT_VARIANT = "fp16"


def _manifest_fields(net: str, variant: str, file: str, roles: dict[str, str], err: float,
                     default_decoder: bool) -> dict[str, Any]:
    source, sha = SOURCES[net]
    size = INPUT_SIZES[net]
    fields: dict[str, Any] = {
        "name": f"mtcnn_{net}_{variant}",
        "kind": "detector",
        "family": "mtcnn" if default_decoder else f"mtcnn_{net}",
        "variant": variant,
        "file": file,
        "format": "tflite",
        "licence": LICENCE,
        "source": {"package": source.package, "version": source.version, "path": source.path, "sha256": sha,
                   "licence": LICENCE,
                   "notes": "MTCNN (Zhang et al. 2016) weights as converted by facenet-pytorch (Tim Esler, MIT)"},
        "converter": {"tool": "facegate.convert.mtcnn", "quantization": "fp16" if variant == "fp16" else "none",
                      "tolerances": {"max_abs_vs_float64_reference": float(f"{err:.3g}")}},
        "input": {"width": size or PNET_MIN, "height": size or PNET_MIN, "channels": 3, "layout": "NHWC",
                  "dtype": "float32", "colour": "RGB",
                  "normalisation": {"mean": (MEAN,), "std": (1.0 / SCALE,), "in_graph": True}},
        "outputs": tuple({"role": role, "tensor": name} for role, name in sorted(roles.items())),
        "default": variant == DEFAULT_VARIANT,
    }
    if default_decoder:
        fields["decoder"] = {
            "rnet": f"mtcnn_rnet_{variant}",
            "onet": f"mtcnn_onet_{variant}",
            "min_face_size": 20,
            "scale_factor": 0.709,
            "thresholds": (0.6, 0.7, 0.7),
            "nms": {"pnet_scale": 0.5, "pnet": 0.7, "rnet": 0.7, "onet": 0.7},
            "keypoint_names": KEYPOINT_NAMES,
        }
        fields["notes"] = ("MTCNN P-Net, converted at 12x12 and resized per pyramid level at run time (fully "
                           "convolutional). "
                           "Decoder = facenet-pytorch's detect_face defaults.")
    else:
        fields["notes"] = f"MTCNN {net.upper()} ({size}x{size} crops), used by the 'mtcnn' detector's cascade."
    return fields


def build(ctx: BuildContext) -> list[Path]:
    """Write ``mtcnn_{pnet,rnet,onet}_{fp16,fp32}`` (``.tflite`` + ``.yaml``) into ``ctx.out_dir``."""
    from facegate.convert.manifest_writer import write_manifest

    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    inputs = fidelity_inputs(ctx)
    written: list[Path] = []
    for variant in ("fp32", "fp16"):
        for net in ("rnet", "onet", "pnet"):
            weights = load_weights(net)
            path = ctx.out_dir / f"mtcnn_{net}_{variant}.tflite"
            path.write_bytes(convert(net, weights, fp16=variant == "fp16"))
            got = run_tflite(path, inputs[net])
            want = reference_forward(net, weights, inputs[net])
            err = max(float(np.abs(got[k] - want[k]).max()) for k in want)
            logger.info("mtcnn %s %s: %d bytes, max abs error %.3g", net, variant, path.stat().st_size, err)
            if err > MAX_ABS_ERROR[variant]:
                raise ModelError(f"MTCNN {net} {variant} differs from the reference by {err:.3g} > "
                                 f"{MAX_ABS_ERROR[variant]}")
            fields = _manifest_fields(net, variant, path.name, output_roles(path), err, net == "pnet")
            written.append(write_manifest(fields, path))
    return written


__all__ = ["KEYPOINT_NAMES", "SOURCES", "build", "ceil_pool_padding", "convert", "load_weights", "reference_forward",
           "run_tflite", "tf_function"]
