"""facegate: on-device face recognition for door locks and smart-home hubs.

The public, DeepFace-style API (``verify``, ``find``, ``represent``, ``extract_faces``, ``analyze``)
is re-exported lazily so that ``import facegate`` stays cheap and loads no model.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API_NAMES = frozenset(
    {"verify", "find", "represent", "extract_faces", "analyze", "build_model", "enroll"}
)


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        from facegate import api

        return getattr(api, name)
    raise AttributeError(f"module 'facegate' has no attribute {name!r}")


__all__ = ["__version__", "analyze", "build_model", "enroll", "extract_faces", "find", "represent", "verify"]
