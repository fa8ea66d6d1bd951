"""Runtime overrides: remote configuration changes layered over the YAML, which is never rewritten.

A patch is a JSON merge patch (RFC 7396: objects merge, ``null`` resets a key to its built-in
default) restricted to the whitelisted keys of :mod:`facegate.config.models`, with two rules for
cameras, which the YAML lists:

* cameras are addressed by id: ``{"cameras": {"door": {"enabled": false}}}``; a camera that is not in
  the YAML cannot be added or removed remotely;
* a ``source`` object that contains ``type`` replaces the camera's source (switching kind); without
  ``type`` it merges into the current source.

The merged result is validated with the same models as the YAML, then the accumulated overrides are
written atomically to ``<state_dir>/runtime-overrides.json`` (temp file in the same directory, fsync,
rename, fsync of the directory) and replayed at every start and reload. Each applied patch reports
which keys changed and which components need a rebuild (``camera:<id>``, ``detector``, ``embedder``,
``analysis``, ``liveness``); live keys need none. A reload can also report YAML-only sections
(``mqtt``, ``homeassistant``, ``security``, ``gallery``) or ``restart`` (device identity, state_dir).

The parts live beside this module: :mod:`~facegate.config.patch_check` (whitelist and JSON types),
:mod:`~facegate.config.overlay_merge` (merging and validation), :mod:`~facegate.config.changes` (what
changed, what to rebuild) and :mod:`~facegate.config.overlay_file` (the file); their names are
re-exported here. This module keeps :class:`RuntimeConfig`, the thread-safe owner of the overlay.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from facegate.config.changes import Change, PatchResult, diff
from facegate.config.loader import load_yaml_config
from facegate.config.models import FacegateConfig
from facegate.config.overlay_file import MAX_OVERLAY_BYTES, OVERLAY_VERSION, atomic_write, read_overlay, write_overlay
from facegate.config.overlay_merge import apply_overrides, compose, merge_patch, merged_data
from facegate.config.patch_check import check_patch, patch_errors
from facegate.config.validation import ConfigValidationError, FieldError
from facegate.errors import ConfigError

logger = logging.getLogger(__name__)

REJECTED_SUFFIX = ".rejected.json"


def _as_json(patch: Any) -> Any:
    """A deep, JSON-only copy of ``patch`` (the caller's object is never kept or modified)."""
    try:
        return json.loads(json.dumps(patch, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as err:
        raise ConfigValidationError([FieldError("", "a config patch must be plain JSON", "type_error")]) from err


def _units(overrides: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Independent pieces of ``overrides``: each top-level section, each camera."""
    units: list[dict[str, Any]] = []
    for key, value in overrides.items():
        if key == "cameras" and isinstance(value, dict):
            units.extend({"cameras": {camera_id: patch}} for camera_id, patch in value.items())
        else:
            units.append({key: value})
    return units


# ------------------------------------------------------------------------------------- the manager


class RuntimeConfig:
    r"""The effective configuration of a running daemon: YAML plus runtime overrides.

    Thread-safe; :attr:`config` is swapped atomically after each successful change. Whoever publishes
    the configuration (the retained ``config/state``) :meth:`subscribe`\ s to the changes here, at
    their source, instead of wrapping every caller that makes one.
    """

    def __init__(
        self,
        base: FacegateConfig,
        *,
        overlay_path: Path | None = None,
        yaml_path: Path | None = None,
        environ: Mapping[str, str] | None = None,
        repair: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self._environ = environ
        self._yaml_path = yaml_path
        self._base = base
        self._overlay_path = overlay_path or base.paths.overlay
        self._overrides: dict[str, Any] = {}
        self._dropped: tuple[FieldError, ...] = ()
        self._config = base
        self._listeners: list[Callable[[PatchResult], None]] = []
        self._load_overlay(repair)

    @classmethod
    def open(
        cls,
        yaml_path: str | os.PathLike[str],
        *,
        environ: Mapping[str, str] | None = None,
        resolve_secrets: bool = True,
        repair: bool = True,
    ) -> RuntimeConfig:
        """Load the YAML and replay the overlay. With ``repair`` an overlay that no longer applies (the
        YAML changed under it) is trimmed to the parts that do, and the original kept as
        ``runtime-overrides.rejected.json``; without it nothing is written."""
        base = load_yaml_config(yaml_path, environ=environ, resolve_secrets=resolve_secrets)
        return cls(base, yaml_path=Path(yaml_path), environ=environ, repair=repair)

    @property
    def config(self) -> FacegateConfig:
        return self._config

    @property
    def base(self) -> FacegateConfig:
        """The YAML alone."""
        return self._base

    @property
    def overrides(self) -> dict[str, Any]:
        return copy.deepcopy(self._overrides)

    @property
    def overlay_path(self) -> Path:
        return self._overlay_path

    @property
    def dropped(self) -> tuple[FieldError, ...]:
        """Why parts of the stored overlay were not applied at start-up (empty when all applied)."""
        return self._dropped

    def _load_overlay(self, repair: bool) -> None:
        try:
            stored = read_overlay(self._overlay_path)
        except ConfigError as err:
            logger.error("ignoring runtime overrides: %s", err)
            self._dropped = (FieldError("", str(err)),)
            if repair:
                self._quarantine()
            return
        if not stored:
            return
        kept, dropped = self._salvage(self._base, stored)
        self._overrides = kept
        self._config = apply_overrides(self._base, kept)
        self._dropped = tuple(dropped)
        if dropped:
            for error in dropped:
                logger.error("runtime override not applied: %s", error)
            if repair:
                self._quarantine()
                try:
                    write_overlay(self._overlay_path, kept)
                except ConfigError as err:
                    # keep running on the YAML plus what still applies; the next change retries
                    logger.warning("%s", err)
        logger.info("replayed runtime overrides from %s (%d key(s))", self._overlay_path, len(self._keys(kept)))

    def _quarantine(self) -> None:
        rejected = self._overlay_path.with_name(self._overlay_path.stem + REJECTED_SUFFIX)
        try:
            os.replace(self._overlay_path, rejected)
        except FileNotFoundError:
            return
        except OSError as err:
            logger.warning("cannot set the runtime overrides aside as %s: %s", rejected, err.strerror)
            return
        logger.warning("kept the previous runtime overrides as %s", rejected)

    @staticmethod
    def _salvage(base: FacegateConfig, stored: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
        """The largest prefix-greedy subset of ``stored`` (whole sections/cameras) that still applies."""
        kept: dict[str, Any] = {}
        dropped: list[FieldError] = []
        for unit in _units(stored):
            candidate = compose(kept, unit)
            errors = check_patch(unit, base)
            if not errors:
                try:
                    apply_overrides(base, candidate)
                except ConfigValidationError as err:
                    errors = list(err.errors)
            if errors:
                dropped.extend(errors)
            else:
                kept = candidate
        return kept, dropped

    @staticmethod
    def _keys(overrides: Mapping[str, Any]) -> list[str]:
        keys: list[str] = []

        def walk(value: Any, path: str) -> None:
            if isinstance(value, dict) and value and not (path.endswith(".source") and "type" in value):
                for key, sub in value.items():
                    walk(sub, f"{path}.{key}" if path else str(key))
            else:
                keys.append(path)

        walk(overrides, "")
        return keys

    def subscribe(self, listener: Callable[[PatchResult], None]) -> None:
        """Call ``listener`` after every stored change (a patch or reset that changed something, and
        every reload), outside the lock, on the thread that made it. A failing listener is logged."""
        with self._lock:
            self._listeners.append(listener)

    def _notify(self, result: PatchResult) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(result)
            except Exception:
                logger.exception("runtime config listener failed")

    def preview(self, patch: Any) -> PatchResult:
        """Validate ``patch`` against the current config without applying or storing it."""
        patch = _as_json(patch)
        with self._lock:
            return self._evaluate(patch)[0]

    def _evaluate(self, patch: Any) -> tuple[PatchResult, dict[str, Any]]:
        errors, types = patch_errors(patch, self._config)
        if errors:
            raise ConfigValidationError(errors + types)
        overrides = compose(self._overrides, patch)
        try:
            config = apply_overrides(self._base, overrides)
        except ConfigValidationError as err:
            # every problem at once: a key of the wrong type, and the values the model refuses elsewhere
            wrong = {e.loc for e in types}
            raise ConfigValidationError(types + [e for e in err.errors if e.loc not in wrong]) from None
        if types:
            raise ConfigValidationError(types)
        result = PatchResult(config, diff(self._config, config))
        if {"detector", "liveness"} & result.rebuild:
            # refused here, before the overlay is written: the rebuild between frames could only fail
            from facegate.model_check import missing_models

            missing = missing_models(config)
            if missing:
                raise ConfigValidationError([FieldError(m.loc, m.msg, "model_not_installed") for m in missing])
        return result, overrides

    def apply(self, patch: Any) -> PatchResult:
        """Validate, store atomically, then switch to the patched config. On any error nothing changes."""
        patch = _as_json(patch)
        with self._lock:
            result, overrides = self._evaluate(patch)
            write_overlay(self._overlay_path, overrides)
            self._overrides = overrides
            self._config = result.config
        logger.info(
            "runtime config: changed %s; rebuild %s",
            ", ".join(result.changed) or "nothing",
            ", ".join(sorted(result.rebuild)) or "nothing",
        )
        if result.changes:
            self._notify(result)
        return result

    def reset(self) -> PatchResult:
        """Drop every runtime override (the YAML alone applies again)."""
        with self._lock:
            old = self._config
            write_overlay(self._overlay_path, {})
            self._overrides = {}
            self._config = self._base
            result = PatchResult(self._base, diff(old, self._base))
        if result.changes:
            self._notify(result)
        return result

    def reload(self) -> PatchResult:
        """Re-read the YAML (SIGHUP) and replay the overrides onto it; on an invalid YAML raise and keep
        running on the current config."""
        if self._yaml_path is None:
            raise ConfigError("no YAML file to reload")
        base = load_yaml_config(self._yaml_path, environ=self._environ)
        with self._lock:
            kept, dropped = self._salvage(base, self._overrides)
            if dropped:
                for error in dropped:
                    logger.error("runtime override not applied after reload: %s", error)
                self._quarantine()
                write_overlay(self._overlay_path, kept)
            config = apply_overrides(base, kept)
            result = PatchResult(config, diff(self._config, config))
            self._base, self._overrides, self._config, self._dropped = base, kept, config, tuple(dropped)
        self._notify(result)  # also unchanged: the overrides may have been trimmed
        return result


__all__ = [
    "MAX_OVERLAY_BYTES",
    "OVERLAY_VERSION",
    "Change",
    "PatchResult",
    "RuntimeConfig",
    "apply_overrides",
    "atomic_write",
    "check_patch",
    "compose",
    "diff",
    "merge_patch",
    "merged_data",
    "read_overlay",
    "write_overlay",
]
