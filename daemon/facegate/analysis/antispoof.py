"""``extract_faces(anti_spoofing=True)`` / ``analyze(anti_spoofing=True)``: why facegate refuses.

DeepFace answers ``is_real`` and ``antispoof_score`` from one image with MiniFASNet (Silent-Face),
a CNN trained on print and replay attacks that DeepFace downloads at run time. No anti-spoofing model
with redistributable weights can be installed offline, and a hand-written single-frame heuristic
(sharpness, colour saturation, moire, screen borders) would be a guess: cheap to fool with a good
print and wrong on real faces under poor light. A door lock must not act on a guess, and answering
``is_real=True`` for every image would be worse than no answer. So the single-image check raises
:class:`~facegate.errors.ModelNotInstalledError` with that explanation.

Liveness needs time: the daemon's checker (:mod:`facegate.analysis.liveness`) watches a face over
its track's frames (blinks, 3-D parallax between landmarks) and refuses prints and screens shown to
the camera; :func:`facegate.analysis.liveness.check_frames` runs the same check on a burst of frames
from the library.
"""

from __future__ import annotations

from typing import Any

from facegate.errors import ModelNotInstalledError
from facegate.types import ImageBGR

MESSAGE = (
    "anti_spoofing=True needs a single-image anti-spoofing model (DeepFace downloads MiniFASNet at run time); "
    "no such model with redistributable weights is available offline and facegate never downloads weights. "
    "Liveness from one photo would be a guess: use the daemon's liveness check (liveness: blink | motion | "
    "blink+motion) or facegate.analysis.liveness.check_frames() on a sequence of frames of the face"
)


def static_antispoof_unavailable() -> ModelNotInstalledError:
    """The error every single-image anti-spoofing request raises."""
    return ModelNotInstalledError(MESSAGE)


def static_antispoof(image: ImageBGR, face_result: Any) -> tuple[bool, float]:
    """DeepFace's per-face ``(is_real, antispoof_score)`` for one image: always raises
    :class:`ModelNotInstalledError` (see the module docstring for why)."""
    raise static_antispoof_unavailable()


__all__ = ["MESSAGE", "static_antispoof", "static_antispoof_unavailable"]
