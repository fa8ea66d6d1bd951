"""Cameras OpenCV can open: V4L2/USB devices, network streams (RTSP/HTTP via FFmpeg), GStreamer pipelines.

The target is ``device`` (or, as the YAML spells it, one of ``path``, ``url``, ``pipeline``; ``api``
is an alias of ``backend``) and selects the backend:

* ``0`` / ``"0"`` / ``"/dev/video0"``: a V4L2 device (USB webcam, HDMI grabber, Pi camera through
  the libcamera V4L2 compatibility layer). ``width``/``height``/``fps``/``fourcc`` are requested
  from the driver; ``fourcc: MJPG`` lets USB 2 webcams deliver 720p at full rate.
* ``rtsp://user:pass@host:554/stream``, ``http://host/video.mjpg``, ``rtmp://``, ``srt://``...: FFmpeg,
  with ``open_timeout``/``read_timeout`` passed as ``CAP_PROP_OPEN_TIMEOUT_MSEC`` /
  ``CAP_PROP_READ_TIMEOUT_MSEC`` so an unreachable or stalled server can never block the capture
  thread forever. FFmpeg demuxer options (e.g. RTSP over TCP) come from the environment variable
  ``OPENCV_FFMPEG_CAPTURE_OPTIONS="rtsp_transport;tcp"`` (set it in the systemd unit).
* a string containing ``" ! "``: a GStreamer pipeline ending in ``appsink``. The
  ``opencv-python-headless`` wheels are built without GStreamer; use a system OpenCV built with it
  (on Jetson: JetPack's, in a venv created with ``--system-site-packages``). Jetson CSI example::

      nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1 !
      nvvidconv ! video/x-raw,width=640,height=360,format=BGRx ! videoconvert !
      video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false

``read(timeout)`` cannot interrupt a blocking driver call: it returns when the backend delivers a
frame or gives up (FFmpeg: ``read_timeout``; V4L2: ``read_timeout`` where the build honours it,
else the driver's 10 s select timeout). A failed read raises :class:`~facegate.errors.CaptureError`
and the runner reconnects with backoff.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import urllib.parse
from typing import TYPE_CHECKING, Literal

import cv2

from facegate.capture.base import FrameSource, redact_url
from facegate.errors import CaptureError, CaptureFatal, ConfigError
from facegate.images import to_bgr
from facegate.types import Frame

if TYPE_CHECKING:
    from facegate.capture.options import OpenCvOptions

logger = logging.getLogger(__name__)

Backend = Literal["auto", "v4l2", "ffmpeg", "gstreamer"]

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_API: dict[str, int] = {"v4l2": cv2.CAP_V4L2, "ffmpeg": cv2.CAP_FFMPEG, "gstreamer": cv2.CAP_GSTREAMER}


def classify(device: int | str) -> Literal["v4l2", "ffmpeg", "gstreamer"]:
    """The backend ``device`` needs: an index or ``/dev/...`` -> v4l2, a pipeline -> gstreamer, else ffmpeg."""
    if isinstance(device, int) or device.strip().isdigit() or device.startswith("/dev/"):
        return "v4l2"
    if " ! " in device:
        return "gstreamer"
    return "ffmpeg"


#: how long a reachability probe may wait for a TCP connection
_PROBE_TIMEOUT_S = 0.3
_DEFAULT_PORTS: dict[str, int] = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935}


def _tcp_address(url: str) -> tuple[str, int] | None:
    """``(host, port)`` of a stream URL, or None when it has no TCP endpoint we can tell (udp://, file:)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname or (port is None and scheme not in _DEFAULT_PORTS):
        return None
    return parts.hostname, port if port is not None else _DEFAULT_PORTS[scheme]


@functools.cache
def opencv_has(backend: str) -> bool:
    """Whether this OpenCV build includes a video I/O backend ("GStreamer", "FFMPEG", "v4l/v4l2")."""
    info = cv2.getBuildInformation()
    match = re.search(rf"^\s*{re.escape(backend)}:\s*(\S+)", info, flags=re.MULTILINE)
    return match is not None and match.group(1).upper() != "NO"


class OpenCvSource(FrameSource):
    """A live camera or stream read through ``cv2.VideoCapture``; frames are BGR uint8."""

    kind = "opencv"

    def __init__(
        self,
        camera: str = "opencv",
        *,
        device: int | str | None = None,
        path: str | os.PathLike[str] | None = None,
        url: str | None = None,
        pipeline: str | None = None,
        backend: Backend = "auto",
        api: Backend | None = None,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        fourcc: str | None = None,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        buffer_size: int | None = 1,
    ) -> None:
        super().__init__(camera)
        targets = [t for t in (device, path, url, pipeline) if t is not None]
        if len(targets) > 1:
            raise ConfigError(f"opencv camera {camera!r}: give only one of device, path, url, pipeline")
        first = targets[0] if targets else 0
        target: int | str = first if isinstance(first, int) else os.fspath(first)
        backend = api if api is not None else backend
        if backend not in ("auto", "v4l2", "ffmpeg", "gstreamer"):
            raise ConfigError(f"opencv camera {camera!r}: unknown backend {backend!r}")
        if fourcc is not None and len(fourcc) != 4:
            raise ConfigError(f"opencv camera {camera!r}: fourcc must be 4 characters, not {fourcc!r}")
        if open_timeout <= 0 or read_timeout <= 0:
            raise ConfigError(f"opencv camera {camera!r}: timeouts must be positive")
        self.device: int | str = int(target) if isinstance(target, str) and target.strip().isdigit() else target
        self.backend: Literal["v4l2", "ffmpeg", "gstreamer"] = classify(target) if backend == "auto" else backend
        self.width = width
        self.height = height
        self.fps = fps
        self.fourcc = fourcc
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.buffer_size = buffer_size
        self._cap: cv2.VideoCapture | None = None
        self._reported_fps: float | None = None
        self.resolution: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        device = redact_url(self.device) if isinstance(self.device, str) else str(self.device)
        if self.backend == "gstreamer":
            device = device.split(" ! ", 1)[0] + " ! ..."
        return f"opencv:{self.camera}({self.backend} {device})"

    @property
    def nominal_fps(self) -> float | None:
        return self._reported_fps or self.fps

    def probe(self) -> bool:
        """A device node or file must exist; a network stream's TCP port must accept a connection."""
        device = self.device
        if isinstance(device, int) or self.backend == "gstreamer":
            return True
        if self.backend == "v4l2" or not _URL.match(device):
            return os.path.exists(device) if device.startswith("/") else True
        address = _tcp_address(device)
        if address is None:
            return True
        try:
            with socket.create_connection(address, timeout=_PROBE_TIMEOUT_S):
                return True
        except OSError:
            return False

    def open(self) -> None:
        if self._cap is not None:
            return
        if self.backend == "gstreamer" and not opencv_has("GStreamer"):
            raise CaptureFatal(
                f"{self.name}: this OpenCV build has no GStreamer support (the opencv-python-headless "
                "wheels never do); install an OpenCV built with GStreamer (Jetson: JetPack's python3-opencv) "
                "and create the venv with --system-site-packages"
            )
        if isinstance(self.device, str) and self.device.startswith("/dev/"):
            if not os.path.exists(self.device):
                raise CaptureError(f"{self.name}: {self.device} does not exist (camera unplugged?)")
            if not os.access(self.device, os.R_OK | os.W_OK):
                raise CaptureError(
                    f"{self.name}: no permission to open {self.device}; add the service user to the 'video' group"
                )
        params: list[int] = []
        if self.backend == "ffmpeg":
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(self.open_timeout * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(self.read_timeout * 1000),
            ]
        try:
            cap = cv2.VideoCapture(self.device, _API[self.backend], params)
        except cv2.error as err:
            raise CaptureError(f"{self.name}: OpenCV could not open the source ({err})") from err
        if not cap.isOpened():
            cap.release()
            raise CaptureError(f"{self.name}: cannot open (unreachable, refused, busy or wrong address)")
        if self.backend == "v4l2":
            self._configure_v4l2(cap)
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        self._reported_fps = fps if 0.5 <= fps <= 1000.0 else None
        self._cap = cap
        logger.info("%s opened (%s fps reported)", self.name, self._reported_fps)

    def _configure_v4l2(self, cap: cv2.VideoCapture) -> None:
        # FOURCC first: the driver picks the sizes and rates available for that pixel format.
        if self.fourcc is not None:
            cap.set(cv2.CAP_PROP_FOURCC, float(cv2.VideoWriter.fourcc(*self.fourcc)))
        if self.width is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, float(self.width))
        if self.height is not None:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, float(self.height))
        if self.fps is not None:
            cap.set(cv2.CAP_PROP_FPS, float(self.fps))
        if self.buffer_size is not None:
            # Few driver buffers: a frame read late is old; the hand-off already keeps only the newest.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, float(self.buffer_size))
        cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, float(round(self.read_timeout * 1000)))
        got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        wanted = (self.width or got[0], self.height or got[1])
        if got != wanted:
            logger.warning("%s: asked for %dx%d, the driver gives %dx%d", self.name, *wanted, *got)

    def read(self, timeout: float) -> Frame | None:
        cap = self._cap
        if cap is None:
            raise CaptureError(f"{self.name} is not open")
        try:
            ok, image = cap.read()
        except cv2.error as err:
            raise CaptureError(f"{self.name}: read failed ({err})") from err
        if not ok or image is None:
            raise CaptureError(f"{self.name}: no frame (stream ended, dropped or timed out)")
        frame = self._make_frame(to_bgr(image, name=self.name))
        self.resolution = (frame.width, frame.height)
        return frame

    def close(self) -> None:
        if self._cap is not None:
            try:
                self._cap.release()
            finally:
                self._cap = None


def build(camera: str, options: OpenCvOptions) -> OpenCvSource:
    """The registry's factory: the OpenCV source of ``camera`` from its validated options."""
    return OpenCvSource(camera, device=options.device, path=options.path, url=options.url, pipeline=options.pipeline,
                        backend=options.api, width=options.width, height=options.height, fps=options.fps,
                        fourcc=options.fourcc, open_timeout=options.open_timeout,
                        read_timeout=options.read_timeout, buffer_size=options.buffer_size)


__all__ = ["Backend", "OpenCvSource", "build", "classify", "opencv_has"]
