"""Turning whatever the caller passes into a BGR uint8 image, with clear errors.

Accepted: a path (``str`` or ``pathlib.Path``), a numpy array (BGR, BGRA, gray; uint8 or uint16 or
float in [0, 1]), raw encoded bytes, a base64 string (optionally a ``data:image/...;base64,`` URI).
The format is recognised from the content, not the file name, so a WebP file named ``.jpg`` loads
(with a warning). Enormous images are decoded at a reduced size so memory stays bounded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.errors import ImageError
from facegate.types import ImageBGR

logger = logging.getLogger(__name__)

ImageInput = str | Path | bytes | bytearray | memoryview | NDArray[Any]

#: Library default of the pixel cap (``security.max_image_pixels`` in the daemon's config): an image
#: whose header announces more pixels is refused before anything is allocated, except a JPEG, which
#: libjpeg decodes at 1/2, 1/4 or 1/8 size in the DCT domain (memory of the reduced image only) when
#: that brings it under the cap. 40 MP is a 48 MP phone JPEG at 1/2, and 120 MB of BGR at most.
DEFAULT_MAX_PIXELS = 40_000_000
#: Kept for callers of the old name.
MAX_DECODE_PIXELS = DEFAULT_MAX_PIXELS
#: Encoded inputs above this size are refused before decoding.
MAX_ENCODED_BYTES = 64 * 1024 * 1024
#: JPEG reductions libjpeg can apply while decoding (scale denominator, OpenCV flag). EXIF orientation
#: is ignored as ``IMREAD_UNCHANGED`` (the full-size decode) ignores it, so both give the same picture.
JPEG_REDUCTIONS: tuple[tuple[int, int], ...] = (
    (1, cv2.IMREAD_UNCHANGED),
    (2, cv2.IMREAD_REDUCED_COLOR_2 | cv2.IMREAD_IGNORE_ORIENTATION),
    (4, cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION),
    (8, cv2.IMREAD_REDUCED_COLOR_8 | cv2.IMREAD_IGNORE_ORIENTATION),
)



@dataclass(slots=True)
class _ProcessCap:
    """This process's pixel cap; one mutable holder rather than a rebound global."""

    pixels: int = DEFAULT_MAX_PIXELS


_CAP = _ProcessCap()

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


def set_max_pixels(pixels: int) -> None:
    """Set this process's pixel cap (the daemon applies ``security.max_image_pixels`` at start)."""
    if pixels < 1:
        raise ValueError(f"the pixel cap must be positive, not {pixels}")
    _CAP.pixels = int(pixels)


def max_pixels() -> int:
    """This process's pixel cap: :data:`DEFAULT_MAX_PIXELS` unless :func:`set_max_pixels` changed it."""
    return _CAP.pixels


def sniff_format(data: bytes) -> str | None:
    """The image format from magic bytes, or ``None``."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The size in the first SOF marker (any of the baseline/progressive/lossless/arithmetic kinds)."""
    i = 2
    n = len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01, 0xFF) or 0xD0 <= marker <= 0xD7:
            i += 1 if marker == 0xFF else 2  # fill bytes, standalone markers
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        if marker == 0xDA:  # start of scan before any frame header: not a decodable JPEG
            return None
        i += 2 + length
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return int(w & 0x3FFF), int(h & 0x3FFF)
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return int(bits & 0x3FFF) + 1, int((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    return None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        w, h = struct.unpack("<HH", data[18:22])
        return int(w), int(h)
    w, h = struct.unpack("<ii", data[18:26])
    return abs(int(w)), abs(int(h))  # a negative height means top-down rows


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """ImageWidth (256) and ImageLength (257) of the first IFD."""
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        return None
    (offset,) = struct.unpack(order + "I", data[4:8])
    if offset + 2 > len(data):
        return None
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    found: dict[int, int] = {}
    for k in range(count):
        entry = offset + 2 + 12 * k
        if entry + 12 > len(data):
            return None
        tag, kind = struct.unpack(order + "HH", data[entry : entry + 4])
        if tag in (256, 257):
            short = kind == 3  # SHORT values sit in the first two bytes of the value field
            (value,) = struct.unpack(order + ("H" if short else "I"), data[entry + 8 : entry + (10 if short else 12)])
            found[tag] = int(value)
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


_SIZE_READERS = {"jpeg": _jpeg_size, "png": _png_size, "webp": _webp_size, "bmp": _bmp_size, "tiff": _tiff_size}


def encoded_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` read from the header without decoding (JPEG, PNG, WebP, BMP, TIFF)."""
    fmt = sniff_format(data)
    reader = _SIZE_READERS.get(fmt or "")
    if reader is None:
        return None
    try:
        return reader(data)
    except struct.error:  # a header cut short
        return None


def jpeg_reduction(width: int, height: int, *, pixels: int) -> int | None:
    """The smallest libjpeg reduction (1, 2, 4 or 8) that brings ``width x height`` to at most
    ``pixels``, or ``None`` when even 1/8 does not."""
    for factor, _flag in JPEG_REDUCTIONS:
        if math.ceil(width / factor) * math.ceil(height / factor) <= pixels:
            return factor
    return None


def _reduced_flag(factor: int) -> int:
    return next(flag for f, flag in JPEG_REDUCTIONS if f == factor)


def decode_plan(data: bytes, *, name: str, max_pixels: int | None = None) -> tuple[str, tuple[int, int], int]:
    """Check an encoded image before decoding it: ``(format, (width, height), reduction)``.

    Raises :class:`ImageError` naming ``name`` and the header's dimensions when the image exceeds the
    pixel cap (``max_pixels``, else this process's cap) and cannot be reduced under it while
    decoding, or when the header gives no size (nothing is decoded blind).
    """
    cap = max_pixels if max_pixels is not None else _CAP.pixels
    if not data:
        raise ImageError(f"{name}: empty input")
    if len(data) > MAX_ENCODED_BYTES:
        raise ImageError(f"{name}: {len(data)} bytes is larger than the {MAX_ENCODED_BYTES} byte limit")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(f"{name}: not a supported image (JPEG, PNG, WebP, BMP or TIFF)")
    size = encoded_size(data)
    if size is None:
        raise ImageError(f"{name}: {fmt.upper()} header is corrupted or truncated (no image size)")
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"{name}: {fmt.upper()} header gives an empty {width}x{height} image")
    if width * height <= cap:
        return fmt, size, 1
    factor = jpeg_reduction(width, height, pixels=cap) if fmt == "jpeg" else None
    if factor is None:
        how = "even at 1/8 size" if fmt == "jpeg" else f"({fmt.upper()} cannot be decoded at reduced size)"
        raise ImageError(f"{name}: {width}x{height} image ({width * height / 1e6:.0f} MP) exceeds the "
                         f"{cap / 1e6:g} MP pixel cap {how}; refused before decoding")
    logger.warning("%s is %dx%d; decoding at 1/%d size (pixel cap %g MP)", name, width, height, factor, cap / 1e6)
    return fmt, size, factor


def decode_bytes(data: bytes, *, name: str = "image bytes", max_pixels: int | None = None,
                 reduction: int = 1) -> ImageBGR:
    """Decode an encoded image (JPEG, PNG, WebP, BMP, TIFF) to BGR uint8, within the pixel cap.

    ``reduction`` (1, 2, 4, 8) asks libjpeg for a smaller JPEG when the caller needs no more (other
    formats ignore it); the cap may reduce further.
    """
    fmt, _size, factor = decode_plan(data, name=name, max_pixels=max_pixels)
    if name.lower().endswith((".jpg", ".jpeg")) and fmt != "jpeg":
        logger.warning("%s is %s data despite its .jpg name; decoding by content", name, fmt.upper())
    flag = _reduced_flag(max(factor, reduction)) if fmt == "jpeg" else cv2.IMREAD_UNCHANGED
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, flag)
    if image is None:
        raise ImageError(f"{name}: {fmt.upper()} data is corrupted or truncated and cannot be decoded")
    if fmt == "jpeg" and not data[-4096:].rstrip(b"\x00").endswith(b"\xff\xd9"):  # the tail only: no copy
        raise ImageError(f"{name}: JPEG data is truncated (no end-of-image marker)")
    return to_bgr(image, name=name)


def to_bgr(array: NDArray[Any], *, name: str = "image array") -> ImageBGR:
    """Normalise an array to contiguous BGR uint8 ``(H, W, 3)``.

    Gray ``(H, W)`` / ``(H, W, 1)`` is replicated, BGRA is composited on black, uint16 is scaled by
    1/257, floats are taken as [0, 1].
    """
    if not isinstance(array, np.ndarray):
        raise ImageError(f"{name}: expected a numpy array, got {type(array).__name__}")
    image = array
    if image.size == 0:
        raise ImageError(f"{name}: empty array")
    if image.dtype == np.uint16:
        # uint16 // 257 fits in uint16: no uint32 copies (a 16-bit RGBA PNG is 8 bytes per pixel already)
        image = (image // np.uint16(257)).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise ImageError(f"{name}: float image contains NaN or infinity")
        scale = 255.0 if float(image.max(initial=0.0)) <= 1.0 else 1.0
        image = np.clip(image * scale, 0, 255).astype(np.uint8)
    elif image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        raise ImageError(f"{name}: unsupported dtype {image.dtype}")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        # colour * alpha / 255 in OpenCV's uint8 arithmetic (rounded): 3 bytes per pixel of temporaries
        # where float32 compositing took 28
        alpha = np.ascontiguousarray(image[:, :, 3])
        image = cv2.multiply(np.ascontiguousarray(image[:, :, :3]), cv2.merge([alpha, alpha, alpha]),
                             scale=1.0 / 255.0, dtype=cv2.CV_8U)
    elif not (image.ndim == 3 and image.shape[2] == 3):
        raise ImageError(f"{name}: unsupported shape {tuple(array.shape)}; want HxW, HxWx1, HxWx3 or HxWx4")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ImageError(f"{name}: image of {image.shape[1]}x{image.shape[0]} pixels is too small")
    return np.ascontiguousarray(image)


_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n\r")


def _looks_like_base64(text: str) -> bool:
    """A data URI, or a long string of base64 characters that is not an existing file."""
    if text.startswith("data:"):
        return True
    if len(text) < 128 or not _BASE64_CHARS.issuperset(text[:4096]):
        return False
    try:
        return not Path(text).exists()
    except OSError:  # e.g. a name longer than the file system allows
        return True


def read_encoded(source: ImageInput, *, name: str | None = None) -> tuple[bytes, str] | None:
    """The encoded bytes and their label for a path, bytes or base64 input; ``None`` for an array.

    A file larger than :data:`MAX_ENCODED_BYTES` is refused from its size, without reading it.
    """
    if isinstance(source, np.ndarray):
        return None
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "image bytes"
    if isinstance(source, str) and _looks_like_base64(source):
        return decode_base64(source), name or "base64 image"
    if isinstance(source, (str, Path)):
        path = Path(source)
        label = name or str(path)
        try:
            size = path.stat().st_size
            if size > MAX_ENCODED_BYTES and path.is_file():
                raise ImageError(f"{label}: {size} bytes is larger than the {MAX_ENCODED_BYTES} byte limit")
            return path.read_bytes(), label
        except FileNotFoundError:
            raise ImageError(f"{label}: file not found") from None
        except IsADirectoryError:
            raise ImageError(f"{label}: is a directory, not an image") from None
        except OSError as err:
            raise ImageError(f"{label}: cannot read ({err.strerror})") from err
    raise ImageError(f"unsupported image input of type {type(source).__name__}")


def load_image(source: ImageInput, *, name: str | None = None, max_pixels: int | None = None) -> ImageBGR:
    """Load any accepted input as BGR uint8; raises :class:`ImageError` naming the input.

    Encoded inputs are checked against the pixel cap from their header before decoding (see
    :func:`decode_plan`); arrays are already in memory and only normalised.
    """
    encoded = read_encoded(source, name=name)
    if encoded is None:
        assert isinstance(source, np.ndarray)  # read_encoded returns None only for arrays
        return to_bgr(source, name=name or "image array")
    data, label = encoded
    return decode_bytes(data, name=label, max_pixels=max_pixels)


def decode_base64(text: str) -> bytes:
    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ImageError(f"base64 image: invalid base64 ({err})") from err


def image_sha256(image: ImageBGR) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "JPEG_REDUCTIONS",
    "MAX_DECODE_PIXELS",
    "ImageInput",
    "decode_base64",
    "decode_bytes",
    "decode_plan",
    "encoded_size",
    "image_sha256",
    "jpeg_reduction",
    "load_image",
    "max_pixels",
    "read_encoded",
    "set_max_pixels",
    "sniff_format",
    "to_bgr",
]
