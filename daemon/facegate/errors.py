"""The one error hierarchy of facegate.

Every error a caller can act on derives from :class:`FacegateError`. Errors that DeepFace raises as
``ValueError`` also derive from ``ValueError`` so that code written against DeepFace keeps working.
"""

from __future__ import annotations


class FacegateError(Exception):
    """Base class of every facegate error."""


class ConfigError(FacegateError, ValueError):
    """Invalid configuration, unknown registry name, or invalid runtime override."""


class ModelError(FacegateError):
    """A model file or manifest is missing, corrupted, or does not match its manifest."""


class ModelNotInstalledError(ModelError, ValueError):
    """A known model name whose weights are not installed (and are never downloaded)."""


class ImageError(FacegateError, ValueError):
    """An input image cannot be read or decoded."""


class NoFaceError(FacegateError, ValueError):
    """No face was found while ``enforce_detection`` was set."""


class EnrollmentError(FacegateError, ValueError):
    """Nothing was enrolled: every photo was refused. ``outcome`` holds the per-photo report."""

    def __init__(self, message: str, outcome: object = None) -> None:
        super().__init__(message)
        self.outcome = outcome


class EmbeddingError(FacegateError, ValueError):
    """An embedding has the wrong model, dimension or values."""


class CaptureError(FacegateError):
    """A transient capture failure: the source will be retried with backoff."""


class CaptureFatal(FacegateError):
    """A capture failure that retrying cannot fix (bad configuration, missing driver)."""


class GalleryError(FacegateError):
    """Gallery misuse: mixing model ids, unknown person, corrupt import."""


class MqttError(FacegateError):
    """MQTT connection or protocol failure."""


class CommandError(FacegateError):
    """A remote command was rejected (bad signature, stale, replayed, invalid)."""


__all__ = [
    "CaptureError",
    "CaptureFatal",
    "CommandError",
    "ConfigError",
    "EmbeddingError",
    "EnrollmentError",
    "FacegateError",
    "GalleryError",
    "ImageError",
    "ModelError",
    "ModelNotInstalledError",
    "MqttError",
    "NoFaceError",
]
