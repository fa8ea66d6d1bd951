"""stdlib logging set-up: no timestamps under journald (it adds its own)."""

from __future__ import annotations

import logging
import os
import sys


def under_journald() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM")) and not sys.stderr.isatty()


def setup_logging(level: str | int = "INFO") -> None:
    fmt = "%(levelname)s %(name)s: %(message)s" if under_journald() else (
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
