"""Configuration: ``facegate.yaml`` (validated, line-numbered errors, ``${ENV}`` and systemd
credentials) plus the runtime overlay that remote commands write (the YAML is never rewritten).

``load_config(path)`` is what the library and CLI need; the daemon holds a :class:`RuntimeConfig`
(``RuntimeConfig.open(path)``) to apply remote patches and reload on SIGHUP.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from facegate.config.loader import load_yaml_config, parse_yaml_config, redacted_dump
from facegate.config.models import FacegateConfig, RuntimeKey, runtime_settable_keys
from facegate.config.runtime import PatchResult, RuntimeConfig
from facegate.config.validation import ConfigValidationError, FieldError


def load_config(
    path: str | os.PathLike[str],
    *,
    overlay: bool = True,
    environ: Mapping[str, str] | None = None,
    resolve_secrets: bool = True,
) -> FacegateConfig:
    """The effective configuration: the YAML file plus, unless ``overlay`` is false, the stored runtime
    overrides (parts that no longer apply are skipped and logged; nothing is written)."""
    if not overlay:
        return load_yaml_config(path, environ=environ, resolve_secrets=resolve_secrets)
    return RuntimeConfig.open(path, environ=environ, resolve_secrets=resolve_secrets, repair=False).config


__all__ = [
    "ConfigValidationError",
    "FacegateConfig",
    "FieldError",
    "PatchResult",
    "RuntimeConfig",
    "RuntimeKey",
    "load_config",
    "load_yaml_config",
    "parse_yaml_config",
    "redacted_dump",
    "runtime_settable_keys",
]
