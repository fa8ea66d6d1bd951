"""Configuration: ``facegate.yaml`` (validated, line-numbered errors, ``${ENV}`` and systemd
credentials) plus the runtime overlay that remote commands write (the YAML is never rewritten).

``load_config(path)`` is what the library and CLI need; the daemon holds a :class:`RuntimeConfig`
(``RuntimeConfig.open(path)``) to apply remote patches and reload on SIGHUP.

The names below are imported on first use: the plugin options models (``facegate.detectors.options``)
build on :mod:`facegate.config.base`, and importing that must not load the YAML loader and the
runtime overlay into a library process that never reads a config file.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from facegate.config.loader import load_yaml_config, parse_yaml_config, redacted_dump
    from facegate.config.models import FacegateConfig, RuntimeKey, runtime_settable_keys
    from facegate.config.runtime import PatchResult, RuntimeConfig
    from facegate.config.validation import ConfigValidationError, FieldError

_LAZY = {
    "load_yaml_config": "facegate.config.loader",
    "parse_yaml_config": "facegate.config.loader",
    "redacted_dump": "facegate.config.loader",
    "FacegateConfig": "facegate.config.models",
    "RuntimeKey": "facegate.config.models",
    "runtime_settable_keys": "facegate.config.models",
    "PatchResult": "facegate.config.runtime",
    "RuntimeConfig": "facegate.config.runtime",
    "ConfigValidationError": "facegate.config.validation",
    "FieldError": "facegate.config.validation",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def load_config(
    path: str | os.PathLike[str],
    *,
    overlay: bool = True,
    environ: Mapping[str, str] | None = None,
    resolve_secrets: bool = True,
) -> FacegateConfig:
    """The effective configuration: the YAML file plus, unless ``overlay`` is false, the stored runtime
    overrides (parts that no longer apply are skipped and logged; nothing is written)."""
    from facegate.config.loader import load_yaml_config
    from facegate.config.runtime import RuntimeConfig

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
