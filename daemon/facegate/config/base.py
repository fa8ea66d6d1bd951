"""Building blocks of every config section: the common pydantic base, the runtime markers, the
shared field types and constants, and the defaults read by the hot-path stages.

This is a trust boundary: every section forbids unknown keys, is frozen, bounds every number and
describes every field (the descriptions feed the committed JSON Schema and the example YAML).

Runtime-settable keys carry ``json_schema_extra={"runtime": EFFECT}`` where EFFECT is ``"live"``
(applied without rebuilding anything) or ``"rebuild:<component>"`` (that pipeline component is rebuilt).
A marker on a field whitelists the whole value below it. Keys without a marker are only read from the
YAML.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

LIVE = "live"
REBUILD_CAMERA = "rebuild:camera"
REBUILD_DETECTOR = "rebuild:detector"
REBUILD_EMBEDDER = "rebuild:embedder"
REBUILD_ANALYSIS = "rebuild:analysis"
REBUILD_LIVENESS = "rebuild:liveness"

_LIVE: dict[str, Any] = {"runtime": LIVE}
_CAMERA: dict[str, Any] = {"runtime": REBUILD_CAMERA}
_DETECTOR: dict[str, Any] = {"runtime": REBUILD_DETECTOR}
_EMBEDDER: dict[str, Any] = {"runtime": REBUILD_EMBEDDER}
_ANALYSIS: dict[str, Any] = {"runtime": REBUILD_ANALYSIS}
_LIVENESS: dict[str, Any] = {"runtime": REBUILD_LIVENESS}

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
TOPIC_PATTERN = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"
CREDENTIAL_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
URL_SCHEMES = ("rtsp", "rtsps", "http", "https")
ANALYSIS_ACTIONS = ("emotion", "age", "gender")
#: default pacing of a replayed image folder (a video file replays at its own frame rate)
REPLAY_IMAGE_FPS = 5.0

GALLERY_FILE = "gallery.sqlite3"
SPOOL_FILE = "spool.sqlite3"
OVERLAY_FILE = "runtime-overrides.json"


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``), else ``$XDG_DATA_HOME/facegate``,
    else ``~/.local/share/facegate``."""
    env = os.environ if environ is None else environ
    state = env.get("STATE_DIRECTORY")
    if state:
        # systemd joins several StateDirectory= entries with ':'; ours is the first
        return Path(state.split(":", 1)[0])
    xdg = env.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg) / "facegate"
    home = env.get("HOME")
    base = Path(home) if home else Path.home()
    return base / ".local" / "share" / "facegate"


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the YAML file's directory (the loader passes it as context)."""
    path = value.expanduser()
    if not path.is_absolute() and isinstance(info.context, dict):
        base = info.context.get("base_dir")
        if isinstance(base, Path):
            path = Path(os.path.normpath(base / path))
    return path


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]
CredentialName = Annotated[str, Field(pattern=CREDENTIAL_PATTERN)]
Size = tuple[Annotated[int, Field(ge=16, le=8192)], Annotated[int, Field(ge=16, le=8192)]]


class _Section(BaseModel):
    # coerce_numbers_to_str: YAML reads `name: 1234` as an int. defer_build: a section's own validator
    # is built when first used on its own (a runtime patch); loading a file builds only FacegateConfig's,
    # which holds every section (the daemon keeps ~2 MB less of validators it never calls).
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, validate_default=True, coerce_numbers_to_str=True,
        defer_build=True,
    )


def section_default(section: type[BaseModel], name: str) -> Any:
    """The default of setting ``name`` of a config section: the one place a stage's defaults come from
    (``facegate.decision``, ``facegate.gates``, ``facegate.tracker`` and the liveness checker read theirs
    here, so a library user and a daemon user get the same behaviour from the same names)."""
    return section.model_fields[name].get_default(call_default_factory=True)


def _known_name(module: str, attribute: str, name: str) -> str:
    """Canonical spelling of ``name`` in the registry ``module.attribute``; ``name`` unchanged when
    that registry module is not part of this build."""
    try:
        registry = getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError as err:
        if err.name is not None and module.startswith(err.name):
            return name
        raise
    except AttributeError:
        return name
    canonical: str = registry.canonical(name)  # raises ConfigError listing the valid names
    return canonical


class ReconnectConfig(_Section):
    """Capped exponential backoff between attempts to reopen a failed source."""

    initial_s: float = Field(default=1.0, gt=0, le=60, description="first delay before reopening, seconds")
    max_s: float = Field(
        default=5.0, gt=0, le=3600,
        description="the delay doubles up to this cap, seconds (an unreachable camera is also probed "
        "every 0.5 s and reopened as soon as it answers)",
    )

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be >= initial_s")
        return self
