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
import struct
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.errors import ImageError
from facegate.types import ImageBGR

logger = logging.getLogger(__name__)

ImageInput = str | Path | bytes | bytearray | memoryview | NDArray[Any]

#: Images with more pixels than this are decoded at 1/2, 1/4 or 1/8 size (JPEG/PNG/WebP).
MAX_DECODE_PIXELS = 40_000_000
#: Encoded inputs above this size are refused before decoding.
MAX_ENCODED_BYTES = 64 * 1024 * 1024

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


def sniff_format(data: bytes) -> str | None:
    """The image format from magic bytes, or ``None``."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    n = len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        i += 2 + length
    return None


def encoded_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` read from the header without decoding, when the format allows it."""
    fmt = sniff_format(data)
    if fmt == "png" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if fmt == "jpeg":
        return _jpeg_size(data)
    return None


def _reduce_flag(width: int, height: int) -> tuple[int, int]:
    pixels = width * height
    for factor, flag in ((1, cv2.IMREAD_UNCHANGED), (2, cv2.IMREAD_REDUCED_COLOR_2),
                         (4, cv2.IMREAD_REDUCED_COLOR_4), (8, cv2.IMREAD_REDUCED_COLOR_8)):
        if pixels / (factor * factor) <= MAX_DECODE_PIXELS:
            return factor, flag
    return 8, cv2.IMREAD_REDUCED_COLOR_8


def decode_bytes(data: bytes, *, name: str = "image bytes") -> ImageBGR:
    """Decode an encoded image (JPEG, PNG, WebP, BMP, TIFF) to BGR uint8."""
    if not data:
        raise ImageError(f"{name}: empty input")
    if len(data) > MAX_ENCODED_BYTES:
        raise ImageError(f"{name}: {len(data)} bytes is larger than the {MAX_ENCODED_BYTES} byte limit")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(f"{name}: not a supported image (JPEG, PNG, WebP, BMP or TIFF)")
    if isinstance(name, str) and name.lower().endswith((".jpg", ".jpeg")) and fmt != "jpeg":
        logger.warning("%s is %s data despite its .jpg name; decoding by content", name, fmt.upper())
    flag = cv2.IMREAD_UNCHANGED
    size = encoded_size(data)
    if size is not None:
        factor, reduced = _reduce_flag(*size)
        if factor > 1:
            logger.warning("%s is %dx%d; decoding at 1/%d size", name, size[0], size[1], factor)
            flag = reduced
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, flag)
    if image is None:
        raise ImageError(f"{name}: {fmt.upper()} data is corrupted or truncated and cannot be decoded")
    if fmt == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
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
        image = (image.astype(np.uint32) // 257).astype(np.uint8)
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
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        image = (image[:, :, :3].astype(np.float32) * alpha).astype(np.uint8)
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


def load_image(source: ImageInput, *, name: str | None = None) -> ImageBGR:
    """Load any accepted input as BGR uint8; raises :class:`ImageError` naming the input."""
    if isinstance(source, np.ndarray):
        return to_bgr(source, name=name or "image array")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(source), name=name or "image bytes")
    if isinstance(source, str) and _looks_like_base64(source):
        return decode_bytes(decode_base64(source), name=name or "base64 image")
    if isinstance(source, (str, Path)):
        path = Path(source)
        label = name or str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImageError(f"{label}: file not found") from None
        except IsADirectoryError:
            raise ImageError(f"{label}: is a directory, not an image") from None
        except OSError as err:
            raise ImageError(f"{label}: cannot read ({err.strerror})") from err
        return decode_bytes(data, name=label)
    raise ImageError(f"unsupported image input of type {type(source).__name__}")


def decode_base64(text: str) -> bytes:
    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ImageError(f"base64 image: invalid base64 ({err})") from err


def image_sha256(image: ImageBGR) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


__all__ = [
    "MAX_DECODE_PIXELS",
    "ImageInput",
    "decode_base64",
    "decode_bytes",
    "encoded_size",
    "image_sha256",
    "load_image",
    "sniff_format",
    "to_bgr",
]
