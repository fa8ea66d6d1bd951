"""PicameraSource: lazy import and a clear error everywhere; the real camera only on a Pi (hardware marker)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import cv2
import numpy as np
import pytest

from facegate.capture import build_source
from facegate.capture.picamera import PicameraSource, rgb888_to_bgr, yuv420_to_bgr
from facegate.errors import CaptureError, CaptureFatal, ConfigError
from facegate.types import Frame, ImageBGR


def test_importing_facegate_capture_does_not_import_picamera2() -> None:
    code = (
        "import sys\n"
        "import facegate.capture, facegate.capture.picamera\n"
        "from facegate.capture import build_source\n"
        "source = build_source('pi', type='picamera2', lores_size=(320, 240))\n"
        "assert type(source).__name__ == 'PicameraSource'\n"
        "print(sorted(m for m in sys.modules if m.startswith(('picamera2', 'libcamera'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_missing_picamera2_is_fatal_with_install_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # what a machine without the package looks like
    source = PicameraSource("pi")
    with pytest.raises(CaptureFatal) as info:
        source.open()
    message = str(info.value)
    assert "sudo apt install python3-picamera2" in message
    assert "--system-site-packages" in message
    source.close()  # nothing was opened; must not raise


def _padded_i420(i420: np.ndarray, width: int, height: int, stride: int) -> np.ndarray:
    """Lay out an I420 image the way libcamera does with a row stride larger than the width."""
    y = i420[:height].reshape(height, width)
    chroma = i420[height:].reshape(-1)
    u = chroma[: (height // 2) * (width // 2)].reshape(height // 2, width // 2)
    v = chroma[(height // 2) * (width // 2) :].reshape(height // 2, width // 2)
    y_pad = np.zeros((height, stride), np.uint8)
    y_pad[:, :width] = y
    u_pad = np.zeros((height // 2, stride // 2), np.uint8)
    u_pad[:, : width // 2] = u
    v_pad = np.zeros((height // 2, stride // 2), np.uint8)
    v_pad[:, : width // 2] = v
    flat = np.concatenate([y_pad.ravel(), u_pad.ravel(), v_pad.ravel()])
    return flat.reshape(height * 3 // 2, stride)


@pytest.mark.parametrize("stride", [320, 384])
def test_lores_yuv420_with_stride_padding_converts_exactly(astronaut_bgr: ImageBGR, stride: int) -> None:
    width, height = 320, 180
    bgr = cv2.resize(astronaut_bgr[:288, :512], (width, height), interpolation=cv2.INTER_AREA)
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    expected = cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
    converted = yuv420_to_bgr(_padded_i420(i420, width, height, stride), (width, height))
    assert converted.shape == (height, width, 3) and converted.flags.c_contiguous
    assert np.array_equal(converted, expected)
    # And it is the picture in BGR order (YUV round trip is close to the original).
    assert np.abs(converted.astype(np.int16) - bgr).mean() < 3.0


def test_yuv420_of_the_wrong_size_is_a_capture_error() -> None:
    with pytest.raises(CaptureError):
        yuv420_to_bgr(np.zeros((100, 320), np.uint8), (320, 180))


def test_rgb888_is_bgr_in_memory_and_copied_out_of_the_buffer() -> None:
    buffer = np.zeros((4, 8, 3), np.uint8)
    buffer[..., 0] = 200  # byte 0 of each pixel: blue in picamera2's "RGB888"
    image = rgb888_to_bgr(buffer, (6, 4))
    assert image.shape == (4, 6, 3) and image[0, 0].tolist() == [200, 0, 0]
    buffer[:] = 0  # the camera reuses its buffer ...
    assert image[0, 0, 0] == 200  # ... the frame keeps its own pixels


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        PicameraSource("pi", lores_size=(641, 360))
    with pytest.raises(ConfigError):
        PicameraSource("pi", lores_size=(640, 360), main_size=(320, 240))
    with pytest.raises(ConfigError):
        build_source("pi", type="picamera2", resolution=(640, 480))


def _camera_present() -> bool:
    if importlib.util.find_spec("picamera2") is None:
        return False
    from picamera2 import Picamera2

    return len(Picamera2.global_camera_info()) > 0


@pytest.mark.hardware
@pytest.mark.skipif(not _camera_present(), reason="needs a Raspberry Pi with a libcamera camera and picamera2")
def test_real_pi_camera_delivers_lores_frames_and_snapshots() -> None:
    import threading

    source = PicameraSource("pi", lores_size=(640, 360), main_size=(1920, 1080), fps=15.0)
    source.open()
    try:
        frames: list[Frame] = []
        while len(frames) < 20:
            frame = source.read(2.0)
            if frame is not None:
                frames.append(frame)
        assert all(f.image.shape == (360, 640, 3) and f.image.dtype == np.uint8 for f in frames)
        assert [f.index for f in frames] == list(range(20))
        assert float(np.std(frames[-1].image)) > 1.0  # a picture, not a blank buffer
        result: list[ImageBGR | None] = []
        waiter = threading.Thread(target=lambda: result.append(source.snapshot(timeout=3.0)))
        waiter.start()
        while waiter.is_alive():
            source.read(0.5)
        assert result and result[0] is not None and result[0].shape == (1080, 1920, 3)
        # Timeouts must not leak buffers: many short reads, then frames still flow.
        for _ in range(50):
            source.read(0.001)
        assert any(source.read(2.0) is not None for _ in range(5))
    finally:
        source.close()
