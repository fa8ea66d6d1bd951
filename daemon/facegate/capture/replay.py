"""Replaying recorded frames as if they came from a camera: a video file, an image folder, or frames in memory.

Pacing ``"realtime"`` delivers frames at the file's frame rate (or ``fps``) using monotonic deadlines,
like a live camera would; when the reader falls behind it does not burst to catch up. Pacing
``"fast"`` delivers frames as fast as they decode (benchmarks, tests).

End of stream raises :class:`~facegate.capture.base.EndOfStream` unless ``loop`` is set.

Failures: a path that does not exist or cannot be decoded when the source is opened for the first
time is a configuration mistake (:class:`~facegate.errors.CaptureFatal`). Once the source has
worked, the file or folder vanishing (or becoming unreadable) is a
:class:`~facegate.errors.CaptureError`: the runner retries with backoff and the replay resumes at
the position it had reached when the path is back.

Image folders: files are taken in sorted name order; files whose suffix is not an image type are
ignored, and images that cannot be decoded are skipped with one warning each.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from facegate.capture.base import EndOfStream, FrameSource
from facegate.capture.options import Pacing, ReplayOptions
from facegate.errors import CaptureError, CaptureFatal, ConfigError, ImageError
from facegate.images import load_image, to_bgr
from facegate.types import Frame, ImageBGR

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

#: frame rate of image folders and in-memory frames when none is given (as documented in the config)
DEFAULT_IMAGE_FPS = 5.0

#: the config's spelling of ``pacing="fast"`` in the ``fps`` key
AS_FAST_AS_POSSIBLE = "as_fast_as_possible"


class _Reader:
    """One pass over the frames; ``next_image`` returns ``None`` at the end of the pass."""

    def open(self, position: int) -> None:
        raise NotImplementedError

    def next_image(self) -> ImageBGR | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources; idempotent."""

    @property
    def fps(self) -> float | None:
        return None


def open_video_file(path: str | Path) -> cv2.VideoCapture:
    """``path`` opened for replay with ffmpeg on one decoder thread (check ``isOpened()``).

    ffmpeg's default, one thread per core each with its own frame buffers, costs 1.4 MB more on 640x360
    and buys nothing while replay paces frames at the file's rate for one inference thread. OpenCV before
    4.6 has no such property (then ffmpeg's default).
    """
    threads = getattr(cv2, "CAP_PROP_N_THREADS", None)
    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [threads, 1] if threads is not None else [])


class _VideoReader(_Reader):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._cap: cv2.VideoCapture | None = None
        self._fps: float | None = None

    def open(self, position: int) -> None:
        self.close()
        cap = open_video_file(self.path)
        if not cap.isOpened():
            cap.release()
            raise CaptureError(f"{self.path}: cannot be opened as a video")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        self._fps = fps if math.isfinite(fps) and 0.5 <= fps <= 1000.0 else None
        if position > 0 and not cap.set(cv2.CAP_PROP_POS_FRAMES, float(position)):
            # Backends that cannot seek: decode and drop up to the position instead.
            for _ in range(position):
                if not cap.grab():
                    break
        self._cap = cap

    def next_image(self) -> ImageBGR | None:
        if self._cap is None:
            raise CaptureError(f"{self.path}: video is not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        return to_bgr(image, name=str(self.path))

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def fps(self) -> float | None:
        return self._fps


class _FolderReader(_Reader):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._files: list[Path] = []
        self._cursor = 0
        self._warned: set[str] = set()
        self.skipped = 0

    def open(self, position: int) -> None:
        try:
            entries = sorted(p for p in self.path.iterdir() if p.is_file() and not p.name.startswith("."))
        except OSError as err:
            raise CaptureError(f"{self.path}: cannot list the image folder ({err.strerror})") from err
        self._files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
        ignored = len(entries) - len(self._files)
        if ignored:
            logger.info("%s: ignoring %d file(s) without an image suffix", self.path, ignored)
        if not self._files:
            raise CaptureError(f"{self.path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self._cursor = min(position, len(self._files))

    def next_image(self) -> ImageBGR | None:
        while self._cursor < len(self._files):
            file = self._files[self._cursor]
            self._cursor += 1
            try:
                return load_image(file)
            except ImageError as err:
                self.skipped += 1
                if file.name not in self._warned:
                    self._warned.add(file.name)
                    logger.warning("replay: skipping %s", err)
        return None


class _MemoryReader(_Reader):
    def __init__(self, images: Sequence[ImageBGR]) -> None:
        self._images = [to_bgr(image, name=f"frame {i}") for i, image in enumerate(images)]
        self._cursor = 0

    def open(self, position: int) -> None:
        self._cursor = min(position, len(self._images))

    def next_image(self) -> ImageBGR | None:
        if self._cursor >= len(self._images):
            return None
        image = self._images[self._cursor]
        self._cursor += 1
        # A copy, so a consumer that draws on a frame never alters the next loop's frame.
        return np.array(image, dtype=np.uint8, copy=True)


class ReplaySource(FrameSource):
    """Frames from a video file, an image folder, or a list of BGR images, paced like a camera.

    Exactly one of ``path`` (video file or folder) and ``frames`` (BGR uint8 ``(H, W, 3)`` arrays)
    is given. ``width``/``height`` (both or neither) resize every frame. ``fps`` overrides the
    file's frame rate (and is the rate of folders and in-memory frames; default 5);
    ``fps="as_fast_as_possible"`` (the YAML spelling) means ``pacing="fast"``.
    """

    kind = "replay"

    def __init__(
        self,
        camera: str = "replay",
        *,
        path: str | os.PathLike[str] | None = None,
        frames: Sequence[ImageBGR] | None = None,
        pacing: Pacing = "realtime",
        fps: float | Literal["as_fast_as_possible"] | None = None,
        loop: bool = False,
        width: int | None = None,
        height: int | None = None,
    ) -> None:
        super().__init__(camera)
        if fps == AS_FAST_AS_POSSIBLE:
            pacing, fps = "fast", None
        elif isinstance(fps, str):
            raise ConfigError(f"replay camera {camera!r}: fps must be a number or {AS_FAST_AS_POSSIBLE!r}")
        if (path is None) == (frames is None):
            raise ConfigError(f"replay camera {camera!r}: give exactly one of 'path' and 'frames'")
        if pacing not in ("realtime", "fast"):
            raise ConfigError(f"replay camera {camera!r}: pacing must be 'realtime' or 'fast', not {pacing!r}")
        if fps is not None and not (0.0 < fps <= 1000.0):
            raise ConfigError(f"replay camera {camera!r}: fps must be in (0, 1000], not {fps}")
        if (width is None) != (height is None) or (width is not None and (width < 2 or height is None or height < 2)):
            raise ConfigError(f"replay camera {camera!r}: give both width and height (>= 2) or neither")
        self.path = Path(path) if path is not None else None
        self.pacing: Pacing = pacing
        self._media_origin: float | None = None
        self.loop = loop
        self._fps_override = fps
        self._size = (width, height) if width is not None and height is not None else None
        self._reader: _Reader
        if frames is not None:
            if len(frames) == 0:
                raise ConfigError(f"replay camera {camera!r}: 'frames' is empty")
            self._reader = _MemoryReader(frames)
        elif self.path is not None and self.path.is_dir():
            self._reader = _FolderReader(self.path)
        elif self.path is not None:
            self._reader = _VideoReader(self.path)
        self._opened = False
        self._ever_opened = False
        self._ended = False
        self._position = 0  # frames consumed in the current pass (where a reopen resumes)
        self._pass_frames = 0  # frames delivered in the current pass
        self._due: float | None = None
        self._pending: ImageBGR | None = None
        self.loops_completed = 0
        self.late_frames = 0

    # -- description ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        what = str(self.path) if self.path is not None else "memory"
        return f"replay:{self.camera}({what})"

    @property
    def nominal_fps(self) -> float | None:
        if self._fps_override is not None:
            return self._fps_override
        fps = self._reader.fps
        if fps is not None:
            return fps
        return None if isinstance(self._reader, _VideoReader) else DEFAULT_IMAGE_FPS

    def probe(self) -> bool:
        return self.path is None or self.path.exists()

    @property
    def finite(self) -> bool:
        return not self.loop

    @property
    def skipped_files(self) -> int:
        """Images in a folder that could not be decoded (counted on every pass)."""
        return self._reader.skipped if isinstance(self._reader, _FolderReader) else 0

    # -- lifecycle -----------------------------------------------------------------------------------
    def open(self) -> None:
        if self._opened:
            return
        if self.path is not None and not self.path.exists():
            self._fail(f"{self.path} does not exist")
        try:
            self._reader.open(self._position)
        except CaptureError as err:
            self._reader.close()
            self._fail(str(err), err)
        self._opened = True
        self._ever_opened = True
        self._due = None
        logger.debug("replay %s opened at frame %d (fps %s)", self.name, self._position, self.nominal_fps)

    def _fail(self, message: str, cause: BaseException | None = None) -> None:
        """Configuration error on the first open, transient once the source has worked."""
        if self._ever_opened:
            raise CaptureError(f"replay camera {self.camera!r}: {message}") from cause
        raise CaptureFatal(f"replay camera {self.camera!r}: {message}") from cause

    def close(self) -> None:
        self._reader.close()
        self._opened = False
        self._pending = None

    # -- frames --------------------------------------------------------------------------------------
    def read(self, timeout: float) -> Frame | None:
        if self._ended:
            raise EndOfStream(f"replay {self.name} has ended")
        if not self._opened:
            raise CaptureError(f"replay {self.name} is not open")
        if self._pending is None:
            self._check_path()
            self._pending = self._next_image()
        if self.pacing == "realtime":
            now = time.monotonic()
            if self._due is None:
                self._due = now
            wait = self._due - now
            if wait > timeout:
                time.sleep(max(0.0, timeout))
                return None
            if wait > 0:
                time.sleep(wait)
        image, self._pending = self._pending, None
        if self.pacing == "fast":
            # Media clock: a fast replay stamps frames at their position in the recording, so the
            # tracker and the votes see the recording's timing whatever the machine's speed.
            if self._media_origin is None:
                self._media_origin = time.monotonic()
            period = 1.0 / (self.nominal_fps or DEFAULT_IMAGE_FPS)
            frame = self._make_frame(image, self._media_origin + self._next_index * period)
        else:
            frame = self._make_frame(image)
        if self.pacing == "realtime" and self._due is not None:
            period = 1.0 / (self.nominal_fps or DEFAULT_IMAGE_FPS)
            self._due += period
            if frame.monotonic - self._due > period:
                # Decoding is slower than the frame rate: re-anchor instead of bursting to catch up.
                self.late_frames += 1
                self._due = frame.monotonic
        return frame

    def _check_path(self) -> None:
        if self.path is None:
            return
        try:
            os.stat(self.path)
        except OSError as err:
            self.close()
            raise CaptureError(f"replay camera {self.camera!r}: {self.path} vanished ({err.strerror})") from err

    def _next_image(self) -> ImageBGR:
        image = self._reader.next_image()
        if image is None:
            if self._pass_frames == 0:
                self.close()
                raise CaptureFatal(f"replay camera {self.camera!r}: {self.name} has no decodable frames")
            if not self.loop:
                self._ended = True
                self.close()
                raise EndOfStream(f"replay {self.name} has ended after {self._next_index} frames")
            self.loops_completed += 1
            self._position = 0
            self._pass_frames = 0
            self._reader.close()
            self._reader.open(0)
            image = self._reader.next_image()
            if image is None:
                self.close()
                raise CaptureError(f"replay camera {self.camera!r}: no frames after rewinding")
        self._position += 1
        self._pass_frames += 1
        if self._size is not None and (image.shape[1], image.shape[0]) != self._size:
            shrink = image.shape[1] > self._size[0]
            resized = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            image = np.asarray(resized, dtype=np.uint8)
        return np.ascontiguousarray(image)


def build(camera: str, options: ReplayOptions) -> ReplaySource:
    """The registry's factory: the replay source of ``camera`` from its validated options."""
    return ReplaySource(camera, path=options.path, frames=options.frames, pacing=options.pacing, fps=options.fps,
                        loop=options.loop, width=options.width, height=options.height)


__all__ = [
    "AS_FAST_AS_POSSIBLE",
    "DEFAULT_IMAGE_FPS",
    "IMAGE_SUFFIXES",
    "Pacing",
    "ReplaySource",
    "build",
    "open_video_file",
]
