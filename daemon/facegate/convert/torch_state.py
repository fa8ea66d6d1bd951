"""Reading a PyTorch ``state_dict`` file without PyTorch and without executing pickled code.

Two container formats exist: the legacy one (``torch.save`` before 1.6, and facenet-pytorch's
``pnet.pt``/``rnet.pt``/``onet.pt``) is a sequence of pickles -- magic number, protocol version,
system info, the object, the list of storage keys -- followed by each storage as an int64 element
count and raw little-endian data; the zip format (1.6+) holds ``*/data.pkl`` and one file per
storage under ``*/data/<key>``. In both, tensors are ``torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, ...)`` calls and storages are persistent ids
``("storage", <type>, key, location, numel)``.

The unpickler below resolves only those few globals (and ``collections.OrderedDict``); anything else
in the file is an error, so a crafted file cannot run code at build time.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facegate.errors import ModelError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ByteStorage": np.dtype("u1"),
}


@dataclass(frozen=True, slots=True)
class _StorageType:
    name: str


@dataclass(slots=True)
class _Storage:
    key: str
    dtype: np.dtype[Any]
    numel: int
    data: NDArray[Any] | None = None


@dataclass(frozen=True, slots=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                    *_rest: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh: io.BufferedIOBase | io.BytesIO, storages: dict[str, _Storage], source: str) -> None:
        super().__init__(fh)
        self._storages = storages
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise ModelError(f"{self._source}: refusing to unpickle {module}.{name} (not a plain state_dict)")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ModelError(f"{self._source}: unexpected persistent id {pid!r}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(kind, _StorageType):
            raise ModelError(f"{self._source}: unexpected storage type {kind!r}")
        if key not in self._storages:
            self._storages[key] = _Storage(key, _DTYPES[kind.name], numel)
        return self._storages[key]


def _materialise(obj: Any, source: str) -> Any:
    if isinstance(obj, _TensorRef):
        data = obj.storage.data
        if data is None:
            raise ModelError(f"{source}: storage {obj.storage.key} has no data")
        if not obj.size:
            return np.array(data[obj.offset], dtype=data.dtype)
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[obj.offset :], shape=obj.size, strides=tuple(s * itemsize for s in obj.stride), writeable=False
        )
        return np.array(view, copy=True)
    if isinstance(obj, dict):
        return {str(k): _materialise(v, source) for k, v in obj.items()}
    return obj


def _load_legacy(raw: bytes, source: str) -> Any:
    fh = io.BytesIO(raw)
    magic = pickle.load(fh)
    if magic != _LEGACY_MAGIC:
        raise ModelError(f"{source}: not a PyTorch file (magic {magic!r})")
    pickle.load(fh)
    pickle.load(fh)
    storages: dict[str, _Storage] = {}
    obj = _Unpickler(fh, storages, source).load()
    keys = _Unpickler(fh, storages, source).load()
    for key in keys:
        storage = storages[str(key)]
        (count,) = struct.unpack("<q", fh.read(8))
        nbytes = count * storage.dtype.itemsize
        chunk = fh.read(nbytes)
        if len(chunk) != nbytes or count != storage.numel:
            raise ModelError(f"{source}: storage {key} truncated or of unexpected size")
        storage.data = np.frombuffer(chunk, dtype=storage.dtype)
    if fh.read(1):
        raise ModelError(f"{source}: bytes left over after the last storage")
    return obj


def _load_zip(raw: bytes, source: str) -> Any:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl")]
        if len(pkl) != 1:
            raise ModelError(f"{source}: zip without a single data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        obj = _Unpickler(io.BytesIO(archive.read(pkl[0])), storages, source).load()
        for key, storage in storages.items():
            data = archive.read(f"{prefix}data/{key}")
            storage.data = np.frombuffer(data, dtype=storage.dtype)
    return obj


def load_state_dict(path: Path) -> dict[str, NDArray[Any]]:
    """``{parameter name: numpy array}`` of a ``torch.save``-d state dict (float32 stays float32)."""
    raw = path.read_bytes()
    obj = _load_zip(raw, path.name) if raw[:2] == b"PK" else _load_legacy(raw, path.name)
    state = _materialise(obj, path.name)
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise ModelError(f"{path.name}: not a state_dict of tensors")
    return state


__all__ = ["load_state_dict"]
