"""Whether the daemon can use its state directory (gallery, spool, overrides, nonces), checked up front.

``check-config`` reports the problem as a configuration error and ``facegate run`` refuses to start with
one line (exit 2) instead of failing deep inside SQLite with a traceback.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from facegate.errors import ConfigError


def state_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot serve as the state directory, or None when it can (or can be created).

    An existing directory is tested by creating (and removing) a temporary file in it, which also catches
    read-only file systems and access rules ``os.access`` does not see; a missing one needs its nearest
    existing ancestor to be a writable directory. Nothing is created.
    """
    if path.exists():
        if not path.is_dir():
            return f"state_dir {path} is not a directory"
        try:
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as err:
            return f"state_dir {path} is not writable by uid {os.geteuid()}: {err.strerror or err}"
        return None
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"state_dir {path} cannot be created: {ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"state_dir {path} cannot be created: {ancestor} is not writable by uid {os.geteuid()}"
    return None


def require_state_dir(path: Path) -> None:
    """Create ``path`` if needed; :class:`ConfigError` (one line) when it is unusable."""
    problem = state_dir_problem(path)
    if problem is None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            problem = f"state_dir {path} cannot be created: {err.strerror or err}"
    if problem is not None:
        raise ConfigError(f"{problem} (set state_dir in the configuration, or StateDirectory= under systemd)")


__all__ = ["require_state_dir", "state_dir_problem"]
