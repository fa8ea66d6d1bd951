"""Detector names -> factories, built from the options models of :mod:`facegate.detectors.options`.

Names equal the YAML ``detector.backend`` values and the API's ``detector_backend`` strings.
Implementations are imported only when their name is built.

"opencv", "mtcnn" and "dlib" ship with facegate; "ssd", "retinaface" and "yunet" ship without
weights (see :data:`facegate.model_import.NOT_SHIPPED`): building one before
``facegate models import FILE --as NAME`` raises :class:`~facegate.errors.ModelNotInstalledError`
explaining that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from facegate.detectors.base import FaceDetector
from facegate.detectors.options import DEFAULT_DETECTOR, DETECTOR_TYPES, DetectorOptions
from facegate.errors import ConfigError
from facegate.registry import Registry, validate_options

if TYPE_CHECKING:
    from facegate.inference.manifest import ModelZoo


class DetectorFactory(Protocol):
    """What a detector plugin's ``implementation`` names: its validated options in, a ready detector out."""

    def __call__(
        self, options: DetectorOptions, /, *, num_threads: int = 1, zoo: ModelZoo | None = None
    ) -> FaceDetector: ...


DETECTORS: Registry[DetectorFactory] = Registry("detector")
for _key, _options in DETECTOR_TYPES.items():
    DETECTORS.register_lazy(_key, _options.implementation)


def detector_options(name: str = DEFAULT_DETECTOR, options: Mapping[str, object] | None = None) -> DetectorOptions:
    """The validated options model of detector ``name`` from plain ``options``.

    Raises :class:`~facegate.errors.ConfigError` for an unknown name, and for an unknown or mistyped
    option, naming the detector and the option."""
    key = DETECTORS.canonical(name)
    model = DETECTOR_TYPES[key]
    values = dict(options or {})
    if "backend" in values:
        raise ConfigError(f"detector {key!r}: invalid options: 'backend' is the detector's name, not an option")
    return validate_options(model, {**values, "backend": key}, key=key, key_field="backend",
                            context=f"detector {key!r}")


def create_detector(
    options: DetectorOptions, *, num_threads: int = 1, zoo: ModelZoo | None = None
) -> FaceDetector:
    """The detector its validated options name (the YAML section or :func:`detector_options`'s result)."""
    return DETECTORS.get(options.backend)(options, num_threads=num_threads, zoo=zoo)


def build_detector(
    name: str = DEFAULT_DETECTOR, *, num_threads: int = 1, zoo: ModelZoo | None = None, **options: object
) -> FaceDetector:
    """A ready detector for ``name`` (case-insensitive) with keyword ``options`` of its options model
    (:mod:`facegate.detectors.options`; e.g. ``variant``, ``score_threshold``, ``max_faces``,
    ``min_face_px``). Raises :class:`~facegate.errors.ConfigError` for an unknown name or an unknown or
    mistyped option and :class:`~facegate.errors.ModelNotInstalledError` when the model is not installed.
    """
    return create_detector(detector_options(name, options), num_threads=num_threads, zoo=zoo)


__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTORS",
    "DetectorFactory",
    "build_detector",
    "create_detector",
    "detector_options",
]
