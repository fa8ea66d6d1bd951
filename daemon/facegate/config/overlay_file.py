"""The runtime overlay file ``<state_dir>/runtime-overrides.json``: versioned JSON, size-capped on read,
written atomically (temp file in the same directory, fsync, rename, fsync of the directory)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from facegate.atomic_file import atomic_write
from facegate.errors import ConfigError

OVERLAY_VERSION = 1
MAX_OVERLAY_BYTES = 1024 * 1024


def read_overlay(path: Path) -> dict[str, Any]:
    """The overrides stored at ``path``; ``{}`` when the file does not exist."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_OVERLAY_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):  # no state directory (yet): no overrides either
        return {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read runtime overrides: {err.strerror}") from err
    if len(raw) > MAX_OVERLAY_BYTES:
        raise ConfigError(f"{path}: runtime overrides larger than {MAX_OVERLAY_BYTES} bytes")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: runtime overrides are not valid JSON") from err
    if not isinstance(document, dict) or document.get("version") != OVERLAY_VERSION:
        raise ConfigError(f"{path}: not a version {OVERLAY_VERSION} runtime-overrides file")
    overrides = document.get("overrides")
    if not isinstance(overrides, dict):
        raise ConfigError(f"{path}: 'overrides' must be an object")
    return overrides


def write_overlay(path: Path, overrides: Mapping[str, Any]) -> None:
    text = json.dumps({"version": OVERLAY_VERSION, "overrides": overrides}, indent=2, sort_keys=True, allow_nan=False)
    try:
        atomic_write(path, (text + "\n").encode("utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot write runtime overrides: {err.strerror}") from err


__all__ = ["MAX_OVERLAY_BYTES", "OVERLAY_VERSION", "atomic_write", "read_overlay", "write_overlay"]
