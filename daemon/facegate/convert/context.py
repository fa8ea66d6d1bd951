"""What every converter's ``build(ctx)`` receives."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, slots=True)
class BuildContext:
    """Where converters write and how they stay deterministic.

    ``out_dir`` receives ``<name>.tflite`` and ``<name>.yaml``; ``seed`` feeds every random choice
    (calibration jitter, sampling) through :meth:`rng`; ``num_threads`` bounds the threads a
    converter may use (TensorFlow, reference runs).
    """

    out_dir: Path
    seed: int = 0
    num_threads: int = 1

    def rng(self, purpose: str) -> np.random.Generator:
        """A generator seeded from ``seed`` and ``purpose``, so converters do not share streams and
        adding random draws in one place does not shift another's."""
        digest = hashlib.sha256(f"{self.seed}:{purpose}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))


__all__ = ["BuildContext"]
