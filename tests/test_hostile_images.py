"""Hostile images: dimensions come from the header, and the pixel cap is applied before decoding.

The hostile files are written here by hand (a PNG IHDR announcing 20000x20000 with a tiny IDAT, a JPEG
whose SOF is forged, WebP/BMP/TIFF headers announcing more than the cap), so nothing large is stored.
"""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

import facegate
from facegate.capture.replay import ReplaySource
from facegate.config.models import SecurityConfig
from facegate.engine import get_engine
from facegate.enrollment import engine_embed_image
from facegate.errors import ImageError
from facegate.gallery.folder_sync import FolderSync
from facegate.images import (
    DEFAULT_MAX_PIXELS,
    decode_bytes,
    encoded_size,
    jpeg_reduction,
    load_image,
    max_pixels,
    set_max_pixels,
    to_bgr,
)

REPO = Path(__file__).resolve().parent.parent


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def hostile_png(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG signature and IHDR for ``width x height`` RGB, and an IDAT of a few zero rows."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * width) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def forged_jpeg(width: int, height: int) -> bytes:
    """A real 64x48 JPEG whose SOF frame header claims ``width x height``."""
    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    i = 2
    while not (data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2)):
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def forged_webp(kind: bytes, width: int, height: int) -> bytes:
    if kind == b"VP8X":
        body = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    elif kind == b"VP8L":
        body = b"\x2f" + struct.pack("<I", (width - 1) | ((height - 1) << 14))
    else:
        body = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height)
    chunk = kind + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def forged_bmp(width: int, height: int) -> bytes:
    ok, buf = cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    data[18:26] = struct.pack("<ii", width, -height)
    return bytes(data)


def forged_tiff(width: int, height: int) -> bytes:
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (277, 3, 1, 3)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\x00" * 4
    return b"II*\x00" + struct.pack("<I", 8) + ifd


@pytest.fixture
def cap() -> Iterator[int]:
    """Restores this process's pixel cap after a test that changes it."""
    before = max_pixels()
    yield before
    set_max_pixels(before)


def test_sizes_are_read_from_every_supported_header() -> None:
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    for ext, params in ((".jpg", []), (".png", []), (".bmp", []), (".tiff", []),
                        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])):
        ok, buf = cv2.imencode(ext, image, params)
        assert ok
        assert encoded_size(buf.tobytes()) == (53, 37), ext
    progressive = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert encoded_size(progressive) == (53, 37)
    assert encoded_size(forged_webp(b"VP8X", 16000, 9000)) == (16000, 9000)
    assert encoded_size(forged_webp(b"VP8L", 16000, 9000)) == (16000, 9000)
    assert encoded_size(forged_webp(b"VP8 ", 16000, 9000)) == (16000, 9000)
    assert encoded_size(forged_bmp(30000, 20000)) == (30000, 20000)
    assert encoded_size(forged_tiff(30000, 20000)) == (30000, 20000)
    assert encoded_size(b"\x89PNG\r\n\x1a\n\x00\x00") is None  # cut short


@pytest.mark.parametrize("name, data, dims", [
    ("bomb.png", hostile_png(), "20000x20000"),
    ("bomb.webp", forged_webp(b"VP8X", 16000, 16000), "16000x16000"),
    ("bomb_lossless.webp", forged_webp(b"VP8L", 16000, 16000), "16000x16000"),
    ("bomb_lossy.webp", forged_webp(b"VP8 ", 16000, 16000), "16000x16000"),
    ("bomb.bmp", forged_bmp(30000, 20000), "30000x20000"),
    ("bomb.tif", forged_tiff(30000, 20000), "30000x20000"),
    ("bomb.jpg", forged_jpeg(65000, 65000), "65000x65000"),  # 66 MP even at 1/8
])
def test_hostile_headers_are_refused_naming_the_file_and_dimensions(tmp_path: Path, name: str, data: bytes,
                                                                    dims: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageError, match=rf"{name}: {dims} image .* exceeds the 40 MP pixel cap"):
        load_image(path)
    with pytest.raises(ImageError, match=dims):
        facegate.represent(path)


def test_header_without_a_size_is_refused_not_decoded_blind() -> None:
    with pytest.raises(ImageError, match=r"upload\.png: PNG header is corrupted or truncated"):
        decode_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, name="upload.png")
    sos_first = b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 64 + b"\xff\xd9"
    with pytest.raises(ImageError, match="JPEG header"):
        decode_bytes(sos_first, name="x.jpg")


def test_large_jpeg_is_decoded_at_the_libjpeg_reduction_that_fits(caplog: pytest.LogCaptureFixture) -> None:
    image = np.random.default_rng(1).integers(0, 255, (600, 1000, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", image)[1].tobytes()
    assert decode_bytes(data, max_pixels=600_000).shape == (600, 1000, 3)
    with caplog.at_level(logging.WARNING, logger="facegate.images"):
        assert decode_bytes(data, name="big.jpg", max_pixels=200_000).shape == (300, 500, 3)
        assert decode_bytes(data, max_pixels=10_000).shape == (75, 125, 3)
    assert "big.jpg is 1000x600; decoding at 1/2 size" in caplog.text
    with pytest.raises(ImageError, match=r"1000x600 image .* exceeds the 0\.009 MP pixel cap even at 1/8 size"):
        decode_bytes(data, max_pixels=9_000)
    png = cv2.imencode(".png", image)[1].tobytes()
    with pytest.raises(ImageError, match=r"PNG cannot be decoded at reduced size"):
        decode_bytes(png, max_pixels=200_000)
    assert jpeg_reduction(4000, 3000, pixels=1_000_000) == 4
    assert jpeg_reduction(4001, 3000, pixels=150_000) is None  # 501x375 at 1/8 > 150k


def test_the_process_cap_is_one_setting_for_every_decoder(cap: int, tmp_path: Path) -> None:
    assert SecurityConfig().max_image_pixels == DEFAULT_MAX_PIXELS == cap
    png = tmp_path / "medium.png"
    cv2.imwrite(str(png), np.zeros((500, 500, 3), np.uint8))
    assert load_image(png).shape == (500, 500, 3)
    set_max_pixels(200_000)
    with pytest.raises(ImageError, match="500x500 image"):
        load_image(png)
    assert load_image(png, max_pixels=250_000).shape == (500, 500, 3)  # a per-call cap wins
    with pytest.raises(ValueError):
        set_max_pixels(0)


def test_cli_detect_refuses_the_hostile_png_with_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(hostile_png())
    env = {"PYTHONPATH": str(REPO / "daemon"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "facegate", "detect", str(path)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 4, done.stderr
    assert "bomb.png: 20000x20000 image (400 MP) exceeds the 40 MP pixel cap" in done.stderr


def test_replayed_image_folder_skips_the_hostile_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cv2.imwrite(str(tmp_path / "frame_001.jpg"), np.full((48, 64, 3), 90, np.uint8))
    (tmp_path / "frame_002.png").write_bytes(hostile_png())
    cv2.imwrite(str(tmp_path / "frame_003.jpg"), np.full((48, 64, 3), 90, np.uint8))
    source = ReplaySource("cam", path=tmp_path, pacing="fast", loop=False)
    source.open()
    with caplog.at_level(logging.WARNING, logger="facegate.capture.replay"):
        frames = [source.read(1.0) for _ in range(2)]
    assert all(f is not None and f.image.shape == (48, 64, 3) for f in frames)
    assert source.skipped_files == 1
    assert "frame_002.png: 20000x20000 image" in caplog.text


def test_folder_sync_reports_the_hostile_photo_and_enrols_the_rest(tmp_path: Path, samples_dir: Path) -> None:
    folder = tmp_path / "people"
    (folder / "Barack Obama").mkdir(parents=True)
    (folder / "Barack Obama" / "a.jpg").write_bytes((samples_dir / "obama.jpg").read_bytes())
    (folder / "Barack Obama" / "bomb.png").write_bytes(hostile_png())
    engine = get_engine()  # the library's default engine, as facegate.find(db_path=folder) uses
    report = FolderSync(folder, engine_embed_image(engine), model_id=engine.model_id).sync()
    issues = {i.path: i.detail for i in report.issues}
    assert "20000x20000 image" in issues["Barack Obama/bomb.png"]
    assert report.added == 1


def test_sixteen_bit_and_alpha_images_convert_without_float_copies() -> None:
    rng = np.random.default_rng(2)
    sixteen = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    assert np.array_equal(to_bgr(sixteen), (sixteen.astype(np.uint32) // 257).astype(np.uint8))
    rgba = np.dstack([rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), np.zeros((20, 30), np.uint8)])
    rgba[:10, :, 3] = 255
    rgba[10:15, :, 3] = 128
    out = to_bgr(rgba)
    assert np.array_equal(out[:10], rgba[:10, :, :3])  # opaque: unchanged
    assert not out[15:].any()  # transparent: composited on black
    half = np.abs(out[10:15].astype(int) - rgba[10:15, :, :3].astype(int) * 128 / 255)
    assert half.max() <= 0.5 + 1e-9  # rounded, not truncated
