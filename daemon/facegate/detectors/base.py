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
    #: False for detectors whose eye points are estimated from the box (MMOD, Haar): such points look
    #: upright in every rotation, and the score alone picked a sideways reading of an upright photo for
    #: 31 of 137 photos with MMOD, so photos' orientation is read with landmarks that can tell
    tells_orientation: bool = True

    @abstractmethod
    def detect(self, image: ImageBGR) -> list[FaceDetection]:
        """Faces in ``image`` (BGR uint8, HxWx3), best score first; boxes and landmarks in its pixels."""
