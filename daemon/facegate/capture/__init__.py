"""Frame sources (cameras, streams, replays) and the capture side of the daemon.

Importing this package loads no camera backend: ``build_source`` imports the implementation of
the requested ``type`` on first use, and picamera2 is imported only when a Pi camera is opened.
"""

from __future__ import annotations

from facegate.capture.base import EndOfStream, FrameSource
from facegate.capture.handoff import FrameHandoff, HandoffCounters
from facegate.capture.registry import SOURCES, build_source
from facegate.capture.runner import BackoffPolicy, CaptureHealth, CaptureRunner, CaptureState

__all__ = [
    "SOURCES",
    "BackoffPolicy",
    "CaptureHealth",
    "CaptureRunner",
    "CaptureState",
    "EndOfStream",
    "FrameHandoff",
    "FrameSource",
    "HandoffCounters",
    "build_source",
]
