"""Raspberry Pi cameras through picamera2 (libcamera).

Two streams from one sensor readout: ``lores`` (small, e.g. 640x360) feeds inference on every frame;
``main`` (full resolution, same field of view) is only copied when a snapshot is asked for, so the
per-frame cost stays that of the small stream. A box found on a lores frame maps onto the main
image by multiplying by ``main_size / lores_size``.

Formats: the lores stream is ``YUV420`` (I420) by default because the Pi 4's ISP (VC4) offers
nothing else for lores; it is converted with ``cv2.COLOR_YUV2BGR_I420`` after trimming the stride
padding. picamera2's ``"RGB888"`` (used for ``main``) is BGR byte order in memory, i.e. already
OpenCV's order; ``"XRGB8888"`` is B, G, R, X (the fourth byte is dropped). On a Pi 5
``lores_format: RGB888`` skips the conversion.

Buffers: each request is held only while the arrays are copied out and is always released
(``try/finally``). Waiting uses picamera2's job API with a timeout; a capture that times out stays
pending and is collected by the next ``read`` instead of being queued again, so timeouts cannot
leak camera buffers (``captured_request(wait=<seconds>)`` would leave the timed-out job holding one).

picamera2 is imported lazily in :meth:`PicameraSource.open`, never at module import. It is not
pip-installable on most systems: on Raspberry Pi OS ``sudo apt install python3-picamera2`` and
create the venv with ``python3 -m venv --system-site-packages``.
"""

from __future__ import annotations

import importlib
import logging
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from facegate.capture.base import FrameSource
from facegate.errors import CaptureError, CaptureFatal, ConfigError
from facegate.types import Frame, ImageBGR

if TYPE_CHECKING:
    from facegate.capture.options import PicameraOptions

logger = logging.getLogger(__name__)

LoresFormat = Literal["YUV420", "RGB888", "XRGB8888"]
MainFormat = Literal["RGB888", "XRGB8888"]

INSTALL_HINT = (
    "picamera2 is not importable. It comes with Raspberry Pi OS: `sudo apt install python3-picamera2`, "
    "then create facegate's venv with `python3 -m venv --system-site-packages` so the venv sees it "
    "(pip install picamera2 does not provide the libcamera bindings)"
)


def import_picamera2() -> ModuleType:
    """Import picamera2 or raise :class:`CaptureFatal` with installation instructions."""
    try:
        return importlib.import_module("picamera2")
    except ImportError as err:
        raise CaptureFatal(f"{INSTALL_HINT} ({err})") from err


def yuv420_to_bgr(array: NDArray[np.uint8], size: tuple[int, int]) -> ImageBGR:
    """Convert picamera2's YUV420 (I420) array to BGR uint8 ``(H, W, 3)``.

    ``array`` is what ``request.make_array`` returns: ``(H * 3 // 2, stride)`` uint8 with
    ``stride >= W`` (row padding). Converting the padded image and cropping afterwards is exact:
    the U and V planes of a padded I420 buffer have rows of ``stride // 2``, which is what the
    converter assumes for an image ``stride`` pixels wide.
    """
    width, height = size
    if array.ndim != 2 or array.shape[0] != height * 3 // 2 or array.shape[1] < width:
        raise CaptureError(f"YUV420 buffer of shape {array.shape} does not fit {width}x{height}")
    bgr = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_YUV2BGR_I420)
    return np.ascontiguousarray(bgr[:, :width])


def rgb888_to_bgr(array: NDArray[np.uint8], size: tuple[int, int]) -> ImageBGR:
    """picamera2 "RGB888" ``(H, W, 3)`` / "XRGB8888" ``(H, W, 4)`` arrays are B, G, R(, X) in memory.

    Returns an owned BGR copy, so the camera buffer can be released.
    """
    width, height = size
    if array.ndim != 3 or array.shape[2] < 3 or array.shape[0] != height or array.shape[1] < width:
        raise CaptureError(f"RGB888 buffer of shape {array.shape} does not fit {width}x{height}")
    return np.ascontiguousarray(array[:, :width, :3])


class PicameraSource(FrameSource):
    """A libcamera camera; frames are the lores stream as BGR uint8 ``lores_size`` ``(W, H)``."""

    kind = "picamera2"

    def __init__(
        self,
        camera: str = "picamera",
        *,
        camera_num: int = 0,
        lores_size: tuple[int, int] = (640, 360),
        lores_format: LoresFormat = "YUV420",
        main_size: tuple[int, int] | None = (1280, 720),
        main_format: MainFormat = "RGB888",
        fps: float | None = None,
        snapshot_from_main: bool = True,
        buffer_count: int = 4,
        hflip: bool = False,
        vflip: bool = False,
        controls: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(camera)
        if lores_format not in ("YUV420", "RGB888", "XRGB8888"):
            raise ConfigError(f"picamera2 camera {camera!r}: lores_format must be YUV420, RGB888 or XRGB8888")
        if main_format not in ("RGB888", "XRGB8888"):
            raise ConfigError(f"picamera2 camera {camera!r}: main_format must be RGB888 or XRGB8888")
        if lores_size[0] % 2 or lores_size[1] % 2:
            raise ConfigError(f"picamera2 camera {camera!r}: lores_size must have even width and height")
        if main_size is not None and (main_size[0] < lores_size[0] or main_size[1] < lores_size[1]):
            raise ConfigError(f"picamera2 camera {camera!r}: main_size must not be smaller than lores_size")
        if fps is not None and not 0.5 <= fps <= 240.0:
            raise ConfigError(f"picamera2 camera {camera!r}: fps {fps} is out of range")
        self.camera_num = camera_num
        self.lores_size = (int(lores_size[0]), int(lores_size[1]))
        self.lores_format: LoresFormat = lores_format
        self.main_size = (int(main_size[0]), int(main_size[1])) if main_size is not None else None
        self.main_format: MainFormat = main_format
        self.fps = fps
        self.snapshot_from_main = snapshot_from_main
        self.buffer_count = buffer_count
        self.hflip = hflip
        self.vflip = vflip
        self.controls = dict(controls or {})
        self._picam2: Any = None
        self._pending: Any = None  # a capture job that timed out; its request is collected next time
        self._snapshot_wanted = threading.Event()
        self._snapshot_ready = threading.Event()
        self._snapshot: ImageBGR | None = None
        self._snapshot_lock = threading.Lock()

    @property
    def nominal_fps(self) -> float | None:
        return self.fps

    def open(self) -> None:
        if self._picam2 is not None:
            return
        module = import_picamera2()
        try:
            cameras = module.Picamera2.global_camera_info()
        except Exception as err:  # libcamera raises plain RuntimeError/OSError
            raise CaptureError(f"picamera2 camera {self.camera!r}: cannot list cameras ({err})") from err
        if self.camera_num >= len(cameras):
            raise CaptureFatal(
                f"picamera2 camera {self.camera!r}: camera_num {self.camera_num} not found, libcamera sees "
                f"{len(cameras)} camera(s); check the ribbon cable and `rpicam-hello --list-cameras`"
            )
        picam2 = None
        try:
            picam2 = module.Picamera2(self.camera_num)
            picam2.configure(self._configuration(picam2))
            picam2.start()
        except Exception as err:
            if picam2 is not None:
                _quietly_close(picam2)
            # Busy (another process holds the camera) or a transient libcamera failure.
            raise CaptureError(f"picamera2 camera {self.camera!r}: cannot start ({err})") from err
        self._picam2 = picam2
        lores = picam2.camera_config["lores"]
        logger.info("%s started: lores %s %s stride %s, main %s", self.name, lores["format"], lores["size"],
                    lores.get("stride"), picam2.camera_config["main"]["size"])

    def _configuration(self, picam2: Any) -> Any:
        main: dict[str, Any] = {"format": self.main_format}
        if self.main_size is not None:
            main["size"] = self.main_size
        controls: dict[str, Any] = {}
        if self.fps is not None:
            frame_us = round(1_000_000 / self.fps)
            controls["FrameDurationLimits"] = (frame_us, frame_us)
        controls.update(self.controls)
        kwargs: dict[str, Any] = {
            "main": main,
            "lores": {"size": self.lores_size, "format": self.lores_format},
            "buffer_count": self.buffer_count,
            "controls": controls,
            # No preview/display stream: this is a headless service.
            "display": None,
        }
        if self.hflip or self.vflip:
            libcamera = importlib.import_module("libcamera")
            kwargs["transform"] = libcamera.Transform(hflip=int(self.hflip), vflip=int(self.vflip))
        return picam2.create_video_configuration(**kwargs)

    def read(self, timeout: float) -> Frame | None:
        picam2 = self._picam2
        if picam2 is None:
            raise CaptureError(f"{self.name} is not open")
        try:
            if self._pending is None:
                self._pending = picam2.capture_request(wait=False)
            request = picam2.wait(self._pending, timeout=max(timeout, 0.001))
        except FutureTimeout:
            return None
        except Exception as err:
            self._pending = None
            raise CaptureError(f"{self.name}: capture failed ({err})") from err
        self._pending = None
        try:
            config = picam2.camera_config
            lores = request.make_array("lores")
            size = tuple(config["lores"]["size"])
            image = yuv420_to_bgr(lores, size) if config["lores"]["format"] == "YUV420" else rgb888_to_bgr(lores, size)
            if self._snapshot_wanted.is_set():
                main = request.make_array("main")
                with self._snapshot_lock:
                    self._snapshot = rgb888_to_bgr(main, tuple(config["main"]["size"]))
                self._snapshot_wanted.clear()
                self._snapshot_ready.set()
        finally:
            request.release()
        return self._make_frame(image)

    def snapshot(self, timeout: float = 1.0) -> ImageBGR | None:
        """A full-resolution BGR copy of the next ``main`` frame (any thread), or ``None`` on timeout.

        ``None`` at once when ``snapshot_from_main`` is off: crop snapshots from the lores frame then.
        """
        if not self.snapshot_from_main:
            return None
        self._snapshot_ready.clear()
        self._snapshot_wanted.set()
        if not self._snapshot_ready.wait(timeout):
            return None
        with self._snapshot_lock:
            image, self._snapshot = self._snapshot, None
        return image

    def close(self) -> None:
        picam2, self._picam2 = self._picam2, None
        if picam2 is None:
            return
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                # The job completes with a request that would otherwise never be released.
                picam2.wait(pending, timeout=1.0).release()
            except Exception:
                logger.debug("%s: pending capture abandoned on close", self.name, exc_info=True)
        _quietly_close(picam2)


def _quietly_close(picam2: Any) -> None:
    for method in ("stop", "close"):
        try:
            getattr(picam2, method)()
        except Exception:
            logger.debug("picamera2 %s failed during close", method, exc_info=True)


def build(camera: str, options: PicameraOptions) -> PicameraSource:
    """The registry's factory: the Pi camera source of ``camera`` from its validated options."""
    return PicameraSource(camera, camera_num=options.camera_num, lores_size=options.lores_size,
                          lores_format=options.lores_format, main_size=options.main_size,
                          main_format=options.main_format, fps=options.fps,
                          snapshot_from_main=options.snapshot_from_main, buffer_count=options.buffer_count,
                          hflip=options.hflip, vflip=options.vflip, controls=options.controls)


__all__ = [
    "INSTALL_HINT",
    "LoresFormat",
    "MainFormat",
    "PicameraSource",
    "build",
    "import_picamera2",
    "rgb888_to_bgr",
    "yuv420_to_bgr",
]
