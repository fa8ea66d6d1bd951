"""facegate: on-device face recognition for door locks and smart-home hubs.

The public, DeepFace-style API (``verify``, ``find``, ``represent``, ``extract_faces``, ``analyze``, ...)
and its result types are re-exported lazily so that ``import facegate`` stays cheap and loads no model;
``dir(facegate)`` and ``__all__`` list them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API_NAMES = frozenset(
    {
        "verify", "find", "represent", "extract_faces", "analyze", "build_model", "enroll", "open_gallery",
        "default_gallery_path", "threshold_for", "AnalysisResult", "ExtractedFace", "FacialArea", "FindMatch",
        "FindResult", "FindRow", "Representation", "VerifyResult",
    }
)


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        from facegate import api

        return getattr(api, name)
    raise AttributeError(f"module 'facegate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API_NAMES})


__all__ = [
    "AnalysisResult",
    "ExtractedFace",
    "FacialArea",
    "FindMatch",
    "FindResult",
    "FindRow",
    "Representation",
    "VerifyResult",
    "__version__",
    "analyze",
    "build_model",
    "default_gallery_path",
    "enroll",
    "extract_faces",
    "find",
    "open_gallery",
    "represent",
    "threshold_for",
    "verify",
]
