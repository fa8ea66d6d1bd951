"""The face detector interface."""

from __future__ import annotations

from abc import ABC, abstractmethod

from facegate.types import FaceDetection, ImageBGR


class FaceDetector(ABC):
    """Finds faces in a BGR image.

    Implementations load their model once in ``__init__`` and keep ``detect`` free of I/O.
    """

    #: registry key, equal to the ``detector_backend`` string of the API
    name: str = ""
    #: ``(width, height)`` of the input every image is letterboxed into, when the result depends on
    #: nothing else (scores of :func:`~facegate.detectors.letterbox.prereduced` copies then match); None
    #: for detectors that read images at their own size
    input_size: tuple[int, int] | None = None

    @abstractmethod
    def detect(self, image: ImageBGR) -> list[FaceDetection]:
        """Faces in ``image`` (BGR uint8, HxWx3), best score first; boxes and landmarks in its pixels."""
