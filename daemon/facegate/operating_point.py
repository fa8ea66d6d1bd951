"""The shipped 1:N decision default shared by the library (``facegate.find``, ``facegate find``) and the
daemon (``recognition.margin``): one value in one place, so both name the same people.

It is the Dlib manifests' ``operating_point.open_set_margin`` (fitted on training folds of people by
``python -m facegate.evaluation.calibrate``; cross-validated in the README's *Accuracy* section: 1:N
open-set false accept per probe photo 2.3 % -> 0 % at 97 % genuine accept, one enrolment photo). A test
checks the manifests and this constant agree.
"""

from __future__ import annotations

from typing import Final

#: the best person must beat the second-best by this euclidean distance, else nobody is named
OPEN_SET_MARGIN: Final[float] = 0.16

__all__ = ["OPEN_SET_MARGIN"]
