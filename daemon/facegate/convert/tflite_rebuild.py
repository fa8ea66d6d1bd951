"""Rebuild a small float ``.tflite`` graph as a TensorFlow function, so TensorFlow's converter can
re-quantise it.

MediaPipe ships its detectors with fp16 weights behind ``DEQUANTIZE`` ops. LiteRT's own calibrator
leaves such graphs unfused (slower than float), so the route to a fused, XNNPACK-friendly int8 file
is: read the flatbuffer (ops, options, constant tensors), rebuild every op as the equivalent TF op
with fp32 constants, check the rebuilt function against the original file, and hand it to
``tf.lite.TFLiteConverter`` with a representative dataset.

Supported ops: the subset BlazeFace-style networks use (CONV_2D, DEPTHWISE_CONV_2D, ADD, MUL, RELU,
RELU6, PRELU, PAD, MAX_POOL_2D, AVERAGE_POOL_2D, RESHAPE, CONCATENATION, RESIZE_BILINEAR,
DEQUANTIZE of fp16 constants, LOGISTIC). Anything else raises :class:`ModelError`.

Build-time only (needs TensorFlow, the ``convert`` extra).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.convert.tf_import import import_tensorflow
from facegate.errors import ModelError

logger = logging.getLogger(__name__)

# TFLite TensorType enum values -> numpy dtypes (schema.fbs)
_TENSOR_TYPES: dict[int, Any] = {
    0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16, 9: np.int8,
}
_PADDING = {0: "SAME", 1: "VALID"}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor of the graph; ``data`` holds constants (as stored: fp16 stays fp16)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: Any
    data: NDArray[Any] | None


@dataclass(frozen=True, slots=True)
class OpInfo:
    """One operator: builtin name, tensor indices (-1 = optional input absent), builtin options."""

    opcode: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TfliteGraph:
    """The single subgraph of a ``.tflite`` file, in execution order."""

    tensors: tuple[TensorInfo, ...]
    ops: tuple[OpInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    description: str

    def tensor(self, index: int) -> TensorInfo:
        return self.tensors[index]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.opcode] = counts.get(op.opcode, 0) + 1
        return dict(sorted(counts.items()))


def _schema() -> Any:
    import_tensorflow("reading .tflite graphs")  # first, so the oneDNN switch precedes the import
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def read_graph(path: Path) -> TfliteGraph:
    """Parse ``path`` (a single-subgraph ``.tflite``) into plain Python data."""
    schema = _schema()
    raw = path.read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(raw, 0))
    if len(model.subgraphs) != 1:
        raise ModelError(f"{path.name}: {len(model.subgraphs)} subgraphs; only single-subgraph models are supported")
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    tensors: list[TensorInfo] = []
    for i, t in enumerate(graph.tensors):
        if t.type not in _TENSOR_TYPES:
            raise ModelError(f"{path.name}: tensor {t.name!r} has unsupported type {t.type}")
        dtype = _TENSOR_TYPES[t.type]
        shape = tuple(int(s) for s in (t.shape if t.shape is not None else []))
        buffer = model.buffers[t.buffer]
        data: NDArray[Any] | None = None
        if buffer.data is not None and len(buffer.data) > 0:
            data = np.frombuffer(np.asarray(buffer.data, dtype=np.uint8).tobytes(), dtype=dtype).reshape(shape)
        elif getattr(buffer, "offset", 0) > 1:  # large models keep buffers after the flatbuffer
            size = int(np.prod(shape)) * np.dtype(dtype).itemsize
            data = np.frombuffer(raw[buffer.offset : buffer.offset + size], dtype=dtype).reshape(shape)
        if t.sparsity is not None:
            raise ModelError(f"{path.name}: sparse tensor {t.name!r} is not supported (use the dense model)")
        tensors.append(TensorInfo(i, t.name.decode() if isinstance(t.name, bytes) else str(t.name), shape, dtype, data))
    ops: list[OpInfo] = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        options = dict(vars(op.builtinOptions)) if op.builtinOptions is not None else {}
        ops.append(OpInfo(names.get(builtin, str(builtin)), tuple(int(i) for i in op.inputs),
                          tuple(int(i) for i in op.outputs), options))
    description = model.description.decode() if isinstance(model.description, bytes) else str(model.description or "")
    return TfliteGraph(tuple(tensors), tuple(ops), tuple(int(i) for i in graph.inputs),
                       tuple(int(i) for i in graph.outputs), description)


def _activation(tf: Any, x: Any, code: int, where: str) -> Any:
    if code == 0:
        return x
    if code == 1:
        return tf.nn.relu(x)
    if code == 3:
        return tf.nn.relu6(x)
    if code == 2:
        return tf.clip_by_value(x, -1.0, 1.0)
    if code == 4:
        return tf.tanh(x)
    raise ModelError(f"{where}: unsupported fused activation {code}")


def _float_constants(graph: TfliteGraph) -> dict[int, NDArray[np.float32]]:
    """fp32 values of every constant, with DEQUANTIZE(fp16 constant) folded away."""
    values: dict[int, NDArray[np.float32]] = {}
    for t in graph.tensors:
        if t.data is not None and t.dtype in (np.float32, np.float16):
            values[t.index] = t.data.astype(np.float32)
    for op in graph.ops:
        if op.opcode == "DEQUANTIZE":
            source = graph.tensor(op.inputs[0])
            if source.data is None or source.dtype != np.float16:
                raise ModelError(f"DEQUANTIZE of {source.name!r}: only fp16 constants are supported")
            values[op.outputs[0]] = source.data.astype(np.float32)
    return values


def _head_ops(graph: TfliteGraph, output: int) -> set[int]:
    """Indices of the ops whose results reach ``output`` only through RESHAPE / CONCATENATION."""
    producer = {t: i for i, op in enumerate(graph.ops) for t in op.outputs}
    heads: set[int] = set()
    pending = [output]
    while pending:
        index = producer[pending.pop()]
        op = graph.ops[index]
        if op.opcode in ("RESHAPE", "CONCATENATION"):
            pending.extend(op.inputs[:1] if op.opcode == "RESHAPE" else op.inputs)
        else:
            heads.add(index)
    return heads


def build_tf_function(
    graph: TfliteGraph, *, output_clip: Mapping[int, float] | None = None
) -> Callable[[Any], list[Any]]:
    """A ``tf.function`` taking the graph's single float32 input and returning its outputs (in the
    file's output order), computing with fp32 copies of the constants.

    ``output_clip`` maps an output position to a bound ``c``: the ops producing that output (before
    reshapes and concatenations) get their results clipped to ``[-c, c]``. Quantisation calibrates
    ranges by min/max, so a few wild values on anchors nobody reads (BlazeFace's short-range head emits
    logits of -14,000 on background) would otherwise stretch an int8 step over dozens of logits.
    """
    tf = import_tensorflow("the TFLite graph rebuild")

    if len(graph.inputs) != 1:
        raise ModelError(f"only single-input graphs are supported, this one has {len(graph.inputs)}")
    consts = _float_constants(graph)
    int_consts = {t.index: t.data for t in graph.tensors if t.data is not None and t.dtype in (np.int32, np.int64)}
    input_spec = graph.tensor(graph.inputs[0])
    clip_after: dict[int, float] = {}
    for position, bound in (output_clip or {}).items():
        for index in _head_ops(graph, graph.outputs[position]):
            clip_after[index] = float(bound)

    def run(x: Any) -> list[Any]:
        env: dict[int, Any] = {graph.inputs[0]: x}

        def get(index: int) -> Any:
            if index in env:
                return env[index]
            if index in consts:
                return tf.constant(consts[index])
            raise ModelError(f"tensor {graph.tensor(index).name!r} is used before it is computed")

        for op_index, op in enumerate(graph.ops):
            o = op.options
            where = f"{op.opcode} -> {graph.tensor(op.outputs[0]).name}"
            if op.opcode == "DEQUANTIZE":
                continue
            if op.opcode == "CONV_2D":
                w = consts[op.inputs[1]].transpose(1, 2, 3, 0)  # OHWI -> HWIO
                y = tf.nn.conv2d(get(op.inputs[0]), tf.constant(w), strides=[1, o["strideH"], o["strideW"], 1],
                                 padding=_PADDING[o["padding"]],
                                 dilations=[1, o["dilationHFactor"], o["dilationWFactor"], 1])
                if len(op.inputs) > 2 and op.inputs[2] >= 0:
                    y = tf.nn.bias_add(y, get(op.inputs[2]))
                y = _activation(tf, y, o["fusedActivationFunction"], where)
            elif op.opcode == "DEPTHWISE_CONV_2D":
                w = consts[op.inputs[1]]  # (1, kh, kw, C * M)
                channels = int(graph.tensor(op.inputs[0]).shape[3])
                mult = int(o["depthMultiplier"]) or w.shape[3] // channels
                w = w.reshape(w.shape[1], w.shape[2], channels, mult)
                y = tf.nn.depthwise_conv2d(get(op.inputs[0]), tf.constant(w),
                                           strides=[1, o["strideH"], o["strideW"], 1],
                                           padding=_PADDING[o["padding"]],
                                           dilations=[o["dilationHFactor"], o["dilationWFactor"]])
                if len(op.inputs) > 2 and op.inputs[2] >= 0:
                    y = tf.nn.bias_add(y, get(op.inputs[2]))
                y = _activation(tf, y, o["fusedActivationFunction"], where)
            elif op.opcode in ("ADD", "MUL"):
                a, b = get(op.inputs[0]), get(op.inputs[1])
                y = a + b if op.opcode == "ADD" else a * b
                y = _activation(tf, y, o.get("fusedActivationFunction", 0), where)
            elif op.opcode == "RELU":
                y = tf.nn.relu(get(op.inputs[0]))
            elif op.opcode == "RELU6":
                y = tf.nn.relu6(get(op.inputs[0]))
            elif op.opcode == "LOGISTIC":
                y = tf.sigmoid(get(op.inputs[0]))
            elif op.opcode == "PRELU":
                x_in, alpha = get(op.inputs[0]), get(op.inputs[1])
                y = tf.nn.relu(x_in) - alpha * tf.nn.relu(-x_in)
            elif op.opcode == "PAD":
                y = tf.pad(get(op.inputs[0]), tf.constant(int_consts[op.inputs[1]]))
            elif op.opcode in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
                pool = tf.nn.max_pool2d if op.opcode == "MAX_POOL_2D" else tf.nn.avg_pool2d
                y = pool(get(op.inputs[0]), ksize=[1, o["filterHeight"], o["filterWidth"], 1],
                         strides=[1, o["strideH"], o["strideW"], 1], padding=_PADDING[o["padding"]])
                y = _activation(tf, y, o["fusedActivationFunction"], where)
            elif op.opcode == "RESHAPE":
                shape = graph.tensor(op.outputs[0]).shape
                y = tf.reshape(get(op.inputs[0]), list(shape))
            elif op.opcode == "CONCATENATION":
                y = tf.concat([get(i) for i in op.inputs], axis=int(o["axis"]))
                y = _activation(tf, y, o.get("fusedActivationFunction", 0), where)
            elif op.opcode == "RESIZE_BILINEAR":
                size = [int(v) for v in int_consts[op.inputs[1]]]
                y = tf.raw_ops.ResizeBilinear(images=get(op.inputs[0]), size=size,
                                              align_corners=bool(o["alignCorners"]),
                                              half_pixel_centers=bool(o["halfPixelCenters"]))
            else:
                raise ModelError(f"unsupported op {op.opcode} ({where})")
            if op_index in clip_after:
                y = tf.clip_by_value(y, -clip_after[op_index], clip_after[op_index])
            env[op.outputs[0]] = y
        return [env[i] for i in graph.outputs]

    signature = [tf.TensorSpec(list(input_spec.shape), tf.float32, name="input")]
    return tf.function(run, input_signature=signature, autograph=False)  # type: ignore[no-any-return]


def run_tflite(path: Path, inputs: Sequence[NDArray[np.float32]]) -> list[list[NDArray[np.float32]]]:
    """Outputs of ``path`` (in the file's output order) for each single input, one thread."""
    from facegate.inference.tflite import _interpreter_module

    interpreter = _interpreter_module().Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    order = [d["index"] for d in interpreter.get_output_details()]
    results: list[list[NDArray[np.float32]]] = []
    for x in inputs:
        interpreter.set_tensor(inp, x.astype(np.float32))
        interpreter.invoke()
        results.append([np.array(interpreter.get_tensor(i), dtype=np.float32) for i in order])
    return results


def relative_error(
    function: Callable[[Any], list[Any]], path: Path, inputs: Sequence[NDArray[np.float32]]
) -> float:
    """How far the rebuilt ``function`` is from the original file ``path`` on ``inputs``: the largest
    ``max|rebuilt - original| / max|original|`` over inputs and outputs.

    Relative to each output's peak because summation order differs between TensorFlow and the TFLite
    kernels and some outputs reach 10^4 (float32 spacing there is 10^-3). Outputs are matched by shape.
    """
    reference = run_tflite(path, inputs)
    worst = 0.0
    for x, ref in zip(inputs, reference, strict=True):
        for ours in (np.asarray(t) for t in function(x)):
            match = [r for r in ref if r.shape == ours.shape]
            if len(match) != 1:
                raise ModelError(f"rebuilt output {ours.shape} does not match exactly one output of {path.name}")
            peak = max(float(np.max(np.abs(match[0]))), 1e-6)
            worst = max(worst, float(np.max(np.abs(ours - match[0]))) / peak)
    return worst


def convert_int8(
    function: Callable[[Any], list[Any]], representative: Iterable[NDArray[np.float32]]
) -> bytes:
    """Full-integer TFLite flatbuffer with float32 input and outputs (TFLITE_BUILTINS_INT8)."""
    tf = import_tensorflow("the TFLite graph rebuild")

    samples = list(representative)

    def dataset() -> Iterable[list[NDArray[np.float32]]]:
        for x in samples:
            yield [x.astype(np.float32)]

    concrete = function.get_concrete_function()  # type: ignore[attr-defined]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.float32
    converter.inference_output_type = tf.float32
    with warnings.catch_warnings():
        # float input/output on purpose: the converter's hint about missing input statistics is moot
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        result: bytes = converter.convert()
    return result


def convert_fp16(function: Callable[[Any], list[Any]]) -> bytes:
    """TFLite flatbuffer with float16 weights (dequantized once at load) and float32 activations.

    Halves a float file; the results move by the weights' float16 rounding only (no activation ranges
    are calibrated, unlike :func:`convert_int8`).
    """
    tf = import_tensorflow("the TFLite graph rebuild")

    concrete = function.get_concrete_function()  # type: ignore[attr-defined]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    result: bytes = converter.convert()
    return result


__all__ = [
    "OpInfo",
    "TensorInfo",
    "TfliteGraph",
    "build_tf_function",
    "convert_fp16",
    "convert_int8",
    "read_graph",
    "relative_error",
    "run_tflite",
]
