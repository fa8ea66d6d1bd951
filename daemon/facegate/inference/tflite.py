"""The only module that imports a TFLite interpreter.

``ai_edge_litert`` (LiteRT, the maintained successor) is preferred; ``tflite_runtime`` is the legacy
fallback (numpy<2 only). Both expose the same ``Interpreter`` API.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.errors import ModelError

logger = logging.getLogger(__name__)

_RUNTIME_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


def _interpreter_module() -> Any:
    errors: list[str] = []
    for name in _RUNTIME_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError as err:
            errors.append(f"{name}: {err}")
    raise ModelError(
        "no TFLite runtime is installed; `pip install ai-edge-litert` (or the tflite-runtime extra). "
        + "; ".join(errors)
    )


#: what the TFLite runtime prints to fd 2 from native code when it applies its default CPU delegate
_DELEGATE_NOTICE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
_stderr_lock = threading.Lock()


@contextlib.contextmanager
def _native_notice_filtered() -> Iterator[None]:
    """Drop the runtime's XNNPACK notice unless facegate logs at INFO (``--verbose``).

    The line is printed by C++ code straight to file descriptor 2 (no environment variable or Python
    API of ai-edge-litert turns it off), so fd 2 is pointed at a temporary file while the interpreter
    is created and its tensors first allocated; afterwards everything else that was written there
    (warnings, errors) is copied back to the real stderr.
    """
    if logger.isEnabledFor(logging.INFO):
        yield
        return
    with _stderr_lock, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
        finally:
            os.close(saved)
        capture.seek(0)
        kept = [line for line in capture.read().splitlines(keepends=True) if line.strip() != _DELEGATE_NOTICE]
        if kept:
            os.write(2, b"".join(kept))


def runtime_name() -> str:
    """Name and version of the interpreter package in use."""
    module = _interpreter_module()
    package = str(module.__name__).split(".")[0]
    try:
        from importlib.metadata import version

        dist = "ai-edge-litert" if package == "ai_edge_litert" else "tflite-runtime"
        return f"{dist} {version(dist)}"
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return package


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output tensor: its name, shape, dtype and affine quantisation (scale 0 = float)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)


def quantize(x: NDArray[np.floating[Any]], spec: TensorSpec) -> NDArray[Any]:
    """Float -> integer tensor with round-half-to-even and clipping to the dtype's range."""
    info = np.iinfo(spec.dtype)
    q = np.rint(np.asarray(x, dtype=np.float32) / spec.scale) + spec.zero_point
    out: NDArray[Any] = np.clip(q, info.min, info.max).astype(spec.dtype)
    return out


def dequantize(q: NDArray[Any], spec: TensorSpec) -> NDArray[np.float32]:
    out: NDArray[np.float32] = (q.astype(np.float32) - np.float32(spec.zero_point)) * np.float32(spec.scale)
    return out.astype(np.float32)


def _spec(detail: dict[str, Any]) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorSpec(
        index=int(detail["index"]),
        name=str(detail["name"]),
        shape=tuple(int(s) for s in detail["shape"]),
        dtype=np.dtype(detail["dtype"]),
        scale=float(scale),
        zero_point=int(zero_point),
    )


class TfliteModel:
    """A loaded ``.tflite`` file.

    ``run`` takes float32 arrays (quantised here when the model is int8/uint8) and returns float32
    outputs (dequantised). The interpreter is not thread-safe, so ``run`` holds a lock: a model shared
    by several cameras serialises its calls, which on a 2-core Pi is what we want anyway.
    """

    def __init__(
        self,
        path: Path,
        *,
        num_threads: int = 1,
        delegate: Path | None = None,
    ) -> None:
        self.path = path
        module = _interpreter_module()
        delegates = []
        if delegate is not None:
            try:
                delegates.append(module.load_delegate(str(delegate)))
            except (ValueError, OSError) as err:
                raise ModelError(f"cannot load TFLite delegate {delegate}: {err}") from err
        try:
            with _native_notice_filtered():  # the notice is printed by the first allocate_tensors
                self._interpreter = module.Interpreter(
                    model_path=str(path),
                    num_threads=max(1, int(num_threads)),
                    experimental_delegates=delegates or None,
                )
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"cannot load TFLite model {path.name}: {err}") from err
        self._lock = threading.Lock()
        self._refresh_specs()

    def _refresh_specs(self) -> None:
        self.inputs: list[TensorSpec] = [_spec(d) for d in self._interpreter.get_input_details()]
        self.outputs: list[TensorSpec] = [_spec(d) for d in self._interpreter.get_output_details()]

    def input_index(self, name_or_position: str | int) -> int:
        return self._position(self.inputs, name_or_position)

    def output_index(self, name_or_position: str | int) -> int:
        return self._position(self.outputs, name_or_position)

    def _position(self, specs: list[TensorSpec], key: str | int) -> int:
        if isinstance(key, int):
            if 0 <= key < len(specs):
                return key
            raise ModelError(f"{self.path.name}: no tensor at position {key}")
        for i, spec in enumerate(specs):
            if spec.name == key:
                return i
        names = ", ".join(s.name for s in specs)
        raise ModelError(f"{self.path.name}: no tensor named {key!r} (have: {names})")

    def _ensure_batch(self, batch: int) -> None:
        spec = self.inputs[0]
        if spec.shape[0] == batch:
            return
        for s in self.inputs:
            self._interpreter.resize_tensor_input(s.index, [batch, *s.shape[1:]], strict=False)
        self._interpreter.allocate_tensors()
        self._refresh_specs()

    def resize_input(self, shape: Sequence[int], position: int = 0) -> None:
        """Give input ``position`` a new full shape (e.g. another image size for a fully convolutional
        model converted with dynamic height/width); a no-op when the shape is already that."""
        wanted = tuple(int(s) for s in shape)
        with self._lock:
            spec = self.inputs[position]
            if spec.shape == wanted:
                return
            try:
                self._interpreter.resize_tensor_input(spec.index, list(wanted), strict=False)
                self._interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as err:
                raise ModelError(f"{self.path.name}: cannot resize input {spec.name!r} to {wanted}: {err}") from err
            self._refresh_specs()

    def run(self, inputs: Sequence[NDArray[Any]]) -> list[NDArray[np.float32]]:
        """Run one inference. ``inputs`` are float32 arrays in the model's input order and shape
        (the batch dimension may differ from the file's: the interpreter is resized)."""
        if len(inputs) != len(self.inputs):
            raise ModelError(f"{self.path.name} takes {len(self.inputs)} inputs, got {len(inputs)}")
        with self._lock:
            self._ensure_batch(int(inputs[0].shape[0]))
            for spec, x in zip(self.inputs, inputs, strict=True):
                if tuple(x.shape) != spec.shape:
                    raise ModelError(
                        f"{self.path.name}: input {spec.name!r} wants shape {spec.shape}, got {tuple(x.shape)}"
                    )
                value = quantize(x, spec) if spec.quantized else np.asarray(x, dtype=spec.dtype)
                self._interpreter.set_tensor(spec.index, value)
            self._interpreter.invoke()
            out: list[NDArray[np.float32]] = []
            for spec in self.outputs:
                raw = self._interpreter.get_tensor(spec.index)
                out.append(dequantize(raw, spec) if spec.quantized else np.array(raw, dtype=np.float32))
            return out


__all__ = ["TensorSpec", "TfliteModel", "dequantize", "quantize", "runtime_name"]
