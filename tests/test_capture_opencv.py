"""OpenCvSource against real network streams on loopback (fresh machine, no camera needed)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from facegate.capture import build_source
from facegate.capture.opencv import OpenCvSource, classify, opencv_has
from facegate.capture.synthetic import demo_frames
from facegate.errors import CaptureError, CaptureFatal, ConfigError
from tests.fixtures.mjpeg import MjpegServer, SilentServer, closed_port


@pytest.fixture(scope="module")
def pictures() -> tuple[np.ndarray, ...]:
    return demo_frames(person_frames=3, empty_frames=2).frames


def test_device_strings_pick_the_backend() -> None:
    assert classify(0) == "v4l2"
    assert classify("2") == "v4l2"
    assert classify("/dev/video0") == "v4l2"
    assert classify("rtsp://cam.local:554/stream1") == "ffmpeg"
    assert classify("http://cam.local/video.mjpg") == "ffmpeg"
    assert classify("nvarguscamerasrc ! video/x-raw(memory:NVMM) ! nvvidconv ! appsink") == "gstreamer"
    source = OpenCvSource("door", device="3")
    assert source.device == 3 and source.backend == "v4l2"


def test_credentials_never_appear_in_the_name() -> None:
    source = OpenCvSource("door", device="rtsp://admin:hunter2@10.0.0.5:554/h264")
    assert "hunter2" not in source.name and "admin" not in source.name
    assert "10.0.0.5:554/h264" in source.name


def test_refused_rtsp_fails_fast_with_capture_error() -> None:
    source = OpenCvSource("door", device=f"rtsp://127.0.0.1:{closed_port()}/stream", open_timeout=2.0)
    start = time.monotonic()
    with pytest.raises(CaptureError, match="cannot open"):
        source.open()
    assert time.monotonic() - start < 5.0


def test_silent_rtsp_server_is_bounded_by_the_open_timeout() -> None:
    with SilentServer() as server:
        source = OpenCvSource("door", device=f"rtsp://127.0.0.1:{server.port}/stream", open_timeout=1.0)
        start = time.monotonic()
        with pytest.raises(CaptureError):
            source.open()
        elapsed = time.monotonic() - start
    # Without CAP_PROP_OPEN_TIMEOUT_MSEC FFmpeg waits 30 s (or forever on some builds).
    assert 0.5 <= elapsed < 10.0


def test_mjpeg_stream_delivers_bgr_frames(pictures: tuple[np.ndarray, ...]) -> None:
    with MjpegServer(pictures, fps=50.0) as server:
        source = build_source("gate", type="opencv", device=server.url, open_timeout=3.0, read_timeout=2.0)
        source.open()
        try:
            frames = [source.read(1.0) for _ in range(8)]
        finally:
            source.close()
    assert all(f is not None for f in frames)
    assert [f.index for f in frames if f is not None] == list(range(8))
    first = frames[0]
    assert first is not None and first.image.shape == (360, 640, 3) and first.camera == "gate"
    # Frames are real pictures in BGR order: the first is the first picture (JPEG-close).
    assert np.abs(first.image.astype(np.int16) - pictures[0]).mean() < 6.0


def test_stalled_stream_raises_after_the_read_timeout(pictures: tuple[np.ndarray, ...]) -> None:
    with MjpegServer(pictures, fps=50.0) as server:
        source = OpenCvSource("gate", device=server.url, open_timeout=3.0, read_timeout=1.0)
        source.open()
        assert source.read(1.0) is not None
        server.stall.set()
        start = time.monotonic()
        with pytest.raises(CaptureError, match="no frame"):
            for _ in range(100):  # a frame or two may already be buffered
                source.read(1.0)
        assert time.monotonic() - start < 10.0
        source.close()
        # The camera comes back: a fresh open works again.
        server.stall.clear()
        source.open()
        assert source.read(1.0) is not None
        source.close()


def test_read_after_close_is_a_capture_error() -> None:
    source = OpenCvSource("door", device="rtsp://127.0.0.1:1/x")
    with pytest.raises(CaptureError, match="not open"):
        source.read(0.1)
    source.close()  # idempotent, never raises


@pytest.mark.skipif(opencv_has("GStreamer"), reason="this OpenCV has GStreamer")
def test_gstreamer_pipeline_without_gstreamer_is_fatal_with_a_hint() -> None:
    source = OpenCvSource("csi", device="videotestsrc ! videoconvert ! appsink")
    with pytest.raises(CaptureFatal, match="no GStreamer support"):
        source.open()


def test_missing_v4l2_device_is_transient() -> None:
    source = OpenCvSource("usb", device="/dev/video-facegate-test-absent")
    with pytest.raises(CaptureError, match="does not exist"):
        source.open()


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        OpenCvSource("x", device=0, fourcc="MJPEG")
    with pytest.raises(ConfigError):
        OpenCvSource("x", device=0, read_timeout=0)
    with pytest.raises(ConfigError):
        build_source("x", type="opencv", uri="rtsp://a")
    with pytest.raises(ConfigError, match="only one"):
        OpenCvSource("x", device=0, url="rtsp://a")
