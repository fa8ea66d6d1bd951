"""Reading dlib's binary serialization format (``dlib::serialize``) from bytes.

Build-time only: the dlib converters (face-recognition ResNet, 5-point shape predictor, MMOD
detector) parse the original ``.dat`` files with this reader instead of depending on dlib.

The format, as dlib's ``serialize.h`` defines it:

* integers (signed and unsigned, any width) are *packed*: a control byte whose low nibble is the
  number of value bytes that follow (0..8) and whose bit ``0x80`` flags a negative value, then the
  magnitude in little-endian order. dlib writes at least one value byte (zero is ``01 00``) but
  a control byte of ``00`` also reads as zero.
* ``bool`` is one ASCII character, ``'1'`` or ``'0'``; ``char``/``unsigned char`` one raw byte.
* ``float``/``double`` are a ``float_details``: packed int64 mantissa then packed int16 exponent,
  value ``mantissa * 2**exponent``; exponents 32000/32001/32002 mean +inf/-inf/nan. (dlib also
  reads an older ASCII form, recognised by bits ``0x70`` in the first byte; no model we convert
  uses it, so it is rejected.)
* ``std::string`` and ``std::vector<char/unsigned char>``: packed length, then the raw bytes;
  other ``std::vector<T>``: packed length, then each element; ``std::pair``: first, second.
* ``dlib::matrix`` and ``array2d``: packed ``-nr``, ``-nc`` (negative marks the current format;
  positive dimensions are the old one, same element layout), then row-major elements.
* ``dlib::vector<T, 2>``: x, y. ``rectangle``: left, top, right, bottom (packed longs).
* DNN ``tensor``: packed version (2), num_samples, k, nr, nc, then raw float32 little-endian
  values in NCHW order (not the packed float form).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import numpy as np
from numpy.typing import NDArray

from facegate.errors import ModelError

T = TypeVar("T")

_FLOAT_INF = 32000
_FLOAT_NINF = 32001
_FLOAT_NAN = 32002
_TENSOR_VERSION = 2


class DlibFormatError(ModelError):
    """The bytes are not what the dlib serialization format says they should be."""


@dataclass(frozen=True, slots=True)
class DlibRectangle:
    """A ``dlib::rectangle``: inclusive integer corners, as dlib stores them."""

    left: int
    top: int
    right: int
    bottom: int


class DlibReader:
    """A cursor over a dlib-serialized byte string.

    Every read advances :attr:`pos`; a read past the end or of a malformed value raises
    :class:`DlibFormatError` naming ``source`` and the byte offset.
    """

    def __init__(self, data: bytes, *, source: str = "<bytes>") -> None:
        self._data = memoryview(data)
        self.pos = 0
        self.source = source

    # -- bookkeeping -------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self._data)

    @property
    def remaining(self) -> int:
        return len(self._data) - self.pos

    def at_end(self) -> bool:
        return self.pos == len(self._data)

    def expect_end(self) -> None:
        """Raise unless every byte has been consumed."""
        if not self.at_end():
            self.fail(f"{self.remaining} bytes left over after the last object")

    def fail(self, message: str, *, at: int | None = None) -> NoReturn:
        offset = self.pos if at is None else at
        raise DlibFormatError(f"{self.source}: {message} (at byte {offset})")

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self._data):
            self.fail(f"truncated: wanted {n} bytes, {self.remaining} left")
        chunk = self._data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def peek_byte(self) -> int:
        if self.pos >= len(self._data):
            self.fail("truncated: wanted 1 byte, 0 left")
        return int(self._data[self.pos])

    # -- scalars -----------------------------------------------------------------------------

    def raw(self, n: int) -> bytes:
        """``n`` raw bytes."""
        return bytes(self._take(n))

    def byte(self) -> int:
        """A ``char`` / ``unsigned char``: one raw byte, 0..255."""
        return int(self._take(1)[0])

    def int_(self, *, max_bytes: int = 8) -> int:
        """A packed signed integer (``int``, ``long``, ``int64`` ...)."""
        start = self.pos
        control = self.byte()
        n = control & 0x0F
        if n > max_bytes:
            self.fail(f"packed integer of {n} bytes exceeds {max_bytes}", at=start)
        value = int.from_bytes(self._take(n), "little") if n else 0
        return -value if control & 0x80 else value

    def uint(self, *, max_bytes: int = 8) -> int:
        """A packed unsigned integer (``unsigned long``, ``size_t`` ...)."""
        start = self.pos
        control = self.byte()
        # dlib keeps the sign bit when checking the size, so a "negative" unsigned is an error
        n = control & 0x8F
        if n > max_bytes:
            self.fail(f"bad control byte 0x{control:02x} for an unsigned integer", at=start)
        return int.from_bytes(self._take(n), "little") if n else 0

    def bool_(self) -> bool:
        start = self.pos
        ch = self.byte()
        if ch == ord("1"):
            return True
        if ch == ord("0"):
            return False
        self.fail(f"bool must be '0' or '1', got 0x{ch:02x}", at=start)

    def float_(self) -> float:
        """A ``float`` or ``double`` in dlib's ``float_details`` form (exact as a Python float)."""
        start = self.pos
        if self.peek_byte() & 0x70:
            self.fail("old ASCII floating point format is not supported", at=start)
        mantissa = self.int_(max_bytes=8)
        exponent = self.int_(max_bytes=2)
        if exponent == _FLOAT_INF:
            return math.inf
        if exponent == _FLOAT_NINF:
            return -math.inf
        if exponent == _FLOAT_NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def string(self) -> str:
        """A ``std::string`` (bytes decoded as latin-1 so any byte round-trips)."""
        n = self.uint()
        return bytes(self._take(n)).decode("latin-1")

    def expect_string(self, *expected: str) -> str:
        """Read a string and fail unless it is one of ``expected`` (layer/object names)."""
        start = self.pos
        value = self.string()
        if value not in expected:
            self.fail(f"expected {' or '.join(repr(e) for e in expected)}, got {value!r}", at=start)
        return value

    def expect_int(self, *expected: int, what: str = "version") -> int:
        start = self.pos
        value = self.int_()
        if value not in expected:
            self.fail(f"unexpected {what} {value}; this reader knows {list(expected)}", at=start)
        return value

    # -- containers --------------------------------------------------------------------------

    def vector(self, element: Callable[[DlibReader], T]) -> list[T]:
        """A ``std::vector<T>``: packed length then each element read by ``element(reader)``."""
        n = self.uint()
        return [element(self) for _ in range(n)]

    def byte_vector(self) -> bytes:
        """A ``std::vector<char>`` / ``std::vector<unsigned char>``."""
        n = self.uint()
        return bytes(self._take(n))

    def matrix_shape(self) -> tuple[int, int]:
        nr = self.int_()
        nc = self.int_()
        if (nr < 0) != (nc < 0) and nr != 0 and nc != 0:
            self.fail(f"inconsistent matrix dimensions {nr} x {nc}")
        return abs(nr), abs(nc)

    def float_matrix(self) -> NDArray[np.float64]:
        """A ``dlib::matrix<float|double>``: ``(nr, nc)`` float64 (exact for both)."""
        nr, nc = self.matrix_shape()
        values = [self.float_() for _ in range(nr * nc)]
        return np.asarray(values, dtype=np.float64).reshape(nr, nc)

    def int_matrix(self) -> NDArray[np.int64]:
        """A ``dlib::matrix`` of a signed integral type: ``(nr, nc)`` int64."""
        nr, nc = self.matrix_shape()
        values = [self.int_() for _ in range(nr * nc)]
        return np.asarray(values, dtype=np.int64).reshape(nr, nc)

    def point2(self) -> tuple[float, float]:
        """A ``dlib::vector<float|double, 2>`` (``dpoint``/``vector<float,2>``): ``(x, y)``."""
        return self.float_(), self.float_()

    def ipoint2(self) -> tuple[int, int]:
        """A ``dlib::point`` (``vector<long, 2>``): ``(x, y)``."""
        return self.int_(), self.int_()

    def rectangle(self) -> DlibRectangle:
        return DlibRectangle(self.int_(), self.int_(), self.int_(), self.int_())

    def tensor(self) -> NDArray[np.float32]:
        """A DNN ``tensor``: ``(num_samples, k, nr, nc)`` float32 (NCHW, a copy)."""
        self.expect_int(_TENSOR_VERSION, what="tensor serialization version")
        dims = tuple(self.int_() for _ in range(4))
        if any(d < 0 for d in dims):
            self.fail(f"negative tensor dimensions {dims}")
        count = int(np.prod(dims, dtype=np.int64))
        data = self._take(4 * count)
        return np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(dims)


__all__ = ["DlibFormatError", "DlibReader", "DlibRectangle"]
