"""The frame source contract shared by every camera backend.

A :class:`FrameSource` is driven by exactly one thread (the capture runner's thread for that camera):

* ``open()`` acquires the device / file / stream. It raises :class:`~facegate.errors.CaptureError`
  when retrying may help (stream unreachable, device busy) and :class:`~facegate.errors.CaptureFatal`
  when it cannot (missing driver, impossible configuration).
* ``read(timeout)`` returns the next :class:`~facegate.types.Frame`, or ``None`` when no frame
  arrived within about ``timeout`` seconds (the caller then checks its stop flag and calls again).
  It raises ``CaptureError`` / ``CaptureFatal`` like ``open`` and :class:`EndOfStream` when a finite
  source (a replay without ``loop``) has delivered its last frame.
* ``close()`` releases everything; it is idempotent and never raises. After a ``CaptureError`` the
  runner calls ``close()`` and later ``open()`` again on the same object, so sources keep whatever
  position they need to resume.

Frames are BGR uint8 ``(H, W, 3)``, C-contiguous, owned by the frame (never a view of a driver
buffer that is reused), stamped with the camera id, a per-source index that increases by one per
delivered frame (across reconnects), ``time.monotonic()`` and ``time.time()`` at capture.
"""

from __future__ import annotations

import abc
import time
from types import TracebackType

import numpy as np

from facegate.errors import FacegateError
from facegate.types import Frame, ImageBGR


class EndOfStream(FacegateError):
    """A finite source has no more frames. Not a failure: the runner marks the camera ``ended``.

    Raised by :meth:`FrameSource.read` (never by ``open``); every later ``read`` raises it again.
    Deliberately *not* a :class:`~facegate.errors.CaptureError`, so nothing retries it.
    """


class FrameSource(abc.ABC):
    """One camera (or stand-in for one). See the module docstring for the contract."""

    #: registry name of the backend ("replay", "opencv", "picamera2")
    kind: str = ""

    def __init__(self, camera: str) -> None:
        if not camera:
            raise ValueError("camera id must be a non-empty string")
        self.camera = camera
        self._next_index = 0

    @property
    def name(self) -> str:
        """Human-readable description for logs and ``status`` (never contains credentials)."""
        return f"{self.kind}:{self.camera}"

    @property
    def nominal_fps(self) -> float | None:
        """The rate the source is configured or declared to deliver, when known."""
        return None

    @property
    def finite(self) -> bool:
        """True when the source ends by itself (a replay without loop)."""
        return False

    def probe(self) -> bool:
        """Cheap reachability check (no decoding, well under a second): False only when the source
        certainly cannot open now (device node or file missing, TCP port refused). The runner polls it
        while waiting to reconnect an unreachable source, so a camera that comes back is reopened at once
        instead of after the backoff delay. Default: True (cannot tell cheaply)."""
        return True

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def read(self, timeout: float) -> Frame | None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def _make_frame(self, image: ImageBGR, monotonic: float | None = None) -> Frame:
        """Stamp an owned, contiguous BGR image as the next frame of this source."""
        frame = Frame(
            image=np.ascontiguousarray(image),
            camera=self.camera,
            index=self._next_index,
            monotonic=time.monotonic() if monotonic is None else monotonic,
            wall=time.time(),
        )
        self._next_index += 1
        return frame

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def redact_url(url: str) -> str:
    """``rtsp://user:secret@host/x`` -> ``rtsp://***@host/x`` so logs never carry credentials."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}://{authority}{slash}{path}"


__all__ = ["EndOfStream", "FrameSource", "redact_url"]
