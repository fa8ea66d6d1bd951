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
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from facegate.config.loader import load_yaml_config
from facegate.config.models import (
    LIVE,
    UNION_SECTIONS,
    CameraConfig,
    FacegateConfig,
    UnionSection,
    model_class,
    runtime_marker,
)
from facegate.config.validation import ConfigValidationError, FieldError, Loc, Located, dotted, from_pydantic
from facegate.errors import ConfigError

logger = logging.getLogger(__name__)

_DETECTOR = UNION_SECTIONS[(FacegateConfig, "detector")]

OVERLAY_VERSION = 1
MAX_OVERLAY_BYTES = 1024 * 1024
REJECTED_SUFFIX = ".rejected.json"
_RESTART_KEYS = frozenset({"device", "state_dir", "version"})
_SECRET_NAMES = frozenset({"password"})


@dataclass(frozen=True, slots=True)
class Change:
    """One key whose effective value changed; ``component`` is None for live keys."""

    key: str
    component: str | None


@dataclass(frozen=True, slots=True)
class PatchResult:
    """Outcome of a patch, a reset or a reload: the new effective config, what changed, what to rebuild."""

    config: FacegateConfig
    changes: tuple[Change, ...]

    @property
    def changed(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.changes)

    @property
    def rebuild(self) -> frozenset[str]:
        return frozenset(c.component for c in self.changes if c.component is not None)


# ------------------------------------------------------------------------------------ whitelisting


def check_patch(patch: Any, current: FacegateConfig) -> list[FieldError]:
    """Field errors for every key of ``patch`` that is unknown, not runtime-settable, or whose JSON value
    has the wrong type.

    The configuration models validate in pydantic's lax mode, which the YAML needs (``port: ${PORT}``
    interpolates to a string). A patch is JSON with real types, so each settable leaf is checked against
    its field's type in strict JSON mode in the same walk: ``"0.5"`` is not a number, ``1`` is not a
    boolean. ``null`` is always allowed (it resets a key to its default)."""
    keys, types = _patch_errors(patch, current)
    return keys + types


def _patch_errors(patch: Any, current: FacegateConfig) -> tuple[list[FieldError], list[FieldError]]:
    """(unknown or not settable keys, wrong JSON types) of ``patch``."""
    if not isinstance(patch, dict):
        return [FieldError("", "a config patch must be a JSON object", "type_error")], []
    errors: list[FieldError] = []
    types: list[FieldError] = []
    _check_model(FacegateConfig, patch, (), errors, current=current, camera=None, types=types)
    return errors, types


def _not_settable(path: Loc) -> FieldError:
    return FieldError(dotted(path), "not settable at run time (set it in the YAML file)", "not_runtime_settable")


def _check_model(
    cls: type[BaseModel],
    patch: dict[str, Any],
    path: Loc,
    errors: list[FieldError],
    *,
    current: FacegateConfig,
    camera: CameraConfig | None,
    types: list[FieldError],
    member_of: str | None = None,
) -> None:
    """``member_of`` names the plugin whose options ``cls`` is (``detector 'mtcnn'``), for the messages."""
    owner = current if cls is FacegateConfig else camera if cls is CameraConfig else None
    unknown = "unknown key" if member_of is None else f"unknown key: not an option of {member_of}"
    for key, value in patch.items():
        here: Loc = (*path, key)
        info = cls.model_fields.get(key) if isinstance(key, str) else None
        if info is None:
            errors.append(FieldError(dotted(here), unknown, "extra_forbidden"))
        elif runtime_marker(info) is not None:
            _check_types(cls, key, value, here, types)
        elif cls is FacegateConfig and key == "cameras":
            _check_cameras(value, errors, current, types)
        elif (union := UNION_SECTIONS.get((cls, key))) is not None and owner is not None and isinstance(value, dict):
            # a plugin's options (camera source, detector): the member the patch names, else the current one
            kind = value.get(union.key, getattr(getattr(owner, key), union.key))
            kind = union.default if kind is None else kind  # null resets it to the built-in default
            member = union.member(kind)
            if member is None:
                errors.append(FieldError(
                    dotted((*here, union.key)), f"unknown {union.key}; expected one of {', '.join(union.members)}"
                ))
            else:
                name = f"{key} {member.model_fields[union.key].default!r}"
                _check_model(member, value, here, errors, current=current, camera=camera, types=types, member_of=name)
        elif (sub := model_class(info.annotation)) is not None and isinstance(value, dict):
            _check_model(sub, value, here, errors, current=current, camera=camera, types=types)
        else:
            errors.append(_not_settable(here))


@functools.lru_cache(maxsize=512)
def _adapter(owner: type[BaseModel], name: str) -> TypeAdapter[Any]:
    annotation = owner.model_fields[name].annotation
    return TypeAdapter(Any if annotation is None else annotation)


def _check_types(owner: type[BaseModel], key: str, value: Any, here: Loc, errors: list[FieldError]) -> None:
    """Strict JSON type check of a settable ``owner.key`` (its leaves, for a section given as an object)."""
    if value is None:
        return
    sub = model_class(owner.model_fields[key].annotation)
    if sub is not None and isinstance(value, dict):
        for name, item in value.items():
            if isinstance(name, str) and name in sub.model_fields:  # unknown keys: the model reports them
                _check_types(sub, name, item, (*here, name), errors)
        return
    try:
        _adapter(owner, key).validate_json(json.dumps(value, allow_nan=False), strict=True)
    except ValidationError as err:
        first = err.errors(include_url=False, include_context=False)[0]
        if first["type"] == "literal_error" and isinstance(value, str):
            return  # the right type; which strings are valid (``level: debug``) is the model's to say
        errors.append(FieldError(dotted(here), f"wrong type: {first['msg']}", str(first["type"])))
    except ValueError:
        errors.append(FieldError(dotted(here), "not a JSON value", "type_error"))


def _check_cameras(value: Any, errors: list[FieldError], current: FacegateConfig, types: list[FieldError]) -> None:
    if not isinstance(value, dict):
        errors.append(
            FieldError("cameras", 'address cameras by id: {"cameras": {"<id>": {"enabled": false}}}', "type_error")
        )
        return
    for camera_id, camera_patch in value.items():
        here: Loc = ("cameras", camera_id)
        camera = current.camera(camera_id)
        if camera is None:
            errors.append(FieldError(dotted(here), "no such camera (cameras are added in the YAML file)"))
        elif not isinstance(camera_patch, dict):
            errors.append(_not_settable(here))
        else:
            _check_model(CameraConfig, camera_patch, here, errors, current=current, camera=camera, types=types)


# ---------------------------------------------------------------------------------------- merging


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch of ``patch`` onto ``target`` (neither is modified)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _replaces_source(key: str, value: Any) -> bool:
    return key == "source" and isinstance(value, dict) and "type" in value


def _for_member(old: Any, patch: Any, union: UnionSection) -> Any:
    """``old`` section values a ``patch`` naming a plugin member keeps: those that member's options model
    declares (switching ``detector.backend`` keeps the thresholds and threads, drops the old backend's
    own options, which the new one would reject; ``null`` names the default member)."""
    if not isinstance(patch, dict) or union.key not in patch:
        return old
    member = union.member(union.default if patch[union.key] is None else patch[union.key])
    if member is None or not isinstance(old, dict):
        return old
    return {k: v for k, v in old.items() if k in member.model_fields}


def compose(overrides: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """One set of overrides equivalent to applying ``overrides`` then ``patch`` (nulls are kept: they
    reset the key when the overrides are applied to the YAML)."""

    def merge(old: Any, new: Any) -> Any:
        if isinstance(old, dict) and isinstance(new, dict):
            out = dict(old)
            for key, value in new.items():
                out[key] = merge(old.get(key), value)
            return out
        return copy.deepcopy(new)

    result = copy.deepcopy(dict(overrides))
    for key, value in patch.items():
        if key == "cameras" and isinstance(value, dict):
            cameras = result.setdefault("cameras", {})
            for camera_id, camera_patch in value.items():
                camera = dict(cameras.get(camera_id) or {})
                for ckey, cvalue in camera_patch.items():
                    replace = _replaces_source(ckey, cvalue)
                    camera[ckey] = copy.deepcopy(cvalue) if replace else merge(camera.get(ckey), cvalue)
                cameras[camera_id] = camera
        else:
            before = _for_member(result.get(key), value, _DETECTOR) if key == "detector" else result.get(key)
            result[key] = merge(before, value)
    return result


def merged_data(base: FacegateConfig, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration data of ``base`` with ``overrides`` applied (not yet validated)."""
    data: dict[str, Any] = base.model_dump()
    rest = {k: v for k, v in overrides.items() if k != "cameras"}
    if "detector" in rest:
        data["detector"] = _for_member(data["detector"], rest["detector"], _DETECTOR)
    data = merge_patch(data, rest)
    camera_patches = overrides.get("cameras") or {}
    if camera_patches:
        cameras = list(data["cameras"])
        ids = [c["id"] for c in cameras]
        for camera_id, camera_patch in camera_patches.items():
            if camera_id not in ids:
                raise ConfigValidationError([FieldError(f"cameras.{camera_id}", "no such camera in the YAML file")])
            index = ids.index(camera_id)
            camera = dict(cameras[index])
            for key, value in camera_patch.items():
                if _replaces_source(key, value):
                    camera[key] = merge_patch({}, value)
                elif value is None:
                    camera.pop(key, None)
                else:
                    camera[key] = merge_patch(camera.get(key), value)
            cameras[index] = camera
        data["cameras"] = cameras
    return data


def apply_overrides(base: FacegateConfig, overrides: Mapping[str, Any]) -> FacegateConfig:
    """``base`` with ``overrides`` applied and validated; ConfigValidationError with patch-style
    locations (``cameras.door.source.url``) otherwise."""
    data = merged_data(base, overrides)
    try:
        return FacegateConfig.model_validate(data)
    except ValidationError as err:

        def locate(path: Loc) -> Located:
            shown: list[str | int] = list(path)
            if len(path) > 1 and path[0] == "cameras" and isinstance(path[1], int):
                shown[1] = str(data["cameras"][path[1]].get("id", path[1]))
            secret = bool(path) and path[-1] in _SECRET_NAMES
            return Located(tuple(shown), echo=not secret)

        # `from None`: pydantic's message would print rejected inputs
        raise ConfigValidationError(from_pydantic(err, data, locate)) from None


# ---------------------------------------------------------------------------------------- diffing


def diff(old: FacegateConfig, new: FacegateConfig) -> tuple[Change, ...]:
    """Keys whose effective value differs, with the component each change needs rebuilt."""
    changes: list[Change] = []

    def component(path: Loc, marker: str | None) -> str | None:
        if path[0] == "cameras" and len(path) > 1:
            return f"camera:{path[1]}"
        if marker == LIVE:
            return None
        if marker is not None and marker.startswith("rebuild:"):
            return marker.removeprefix("rebuild:")
        return "restart" if path[0] in _RESTART_KEYS else str(path[0])

    def walk(a: BaseModel, b: BaseModel, path: Loc, marker: str | None) -> None:
        for name, info in type(b).model_fields.items():
            va, vb = getattr(a, name), getattr(b, name)
            if va == vb:
                continue
            here: Loc = (*path, name)
            mark = runtime_marker(info) or marker
            if isinstance(b, FacegateConfig) and name == "cameras":
                cameras(va, vb)
            elif isinstance(va, BaseModel) and isinstance(vb, BaseModel) and type(va) is type(vb):
                walk(va, vb, here, mark)
            else:
                changes.append(Change(dotted(here, brackets=False), component(here, mark)))

    def cameras(old_cams: tuple[CameraConfig, ...], new_cams: tuple[CameraConfig, ...]) -> None:
        before = {c.id: c for c in old_cams}
        after = {c.id: c for c in new_cams}
        for camera_id in [*before, *(i for i in after if i not in before)]:
            a, b = before.get(camera_id), after.get(camera_id)
            if a is None or b is None:
                changes.append(Change(f"cameras.{camera_id}", f"camera:{camera_id}"))
            elif a != b:
                walk(a, b, ("cameras", camera_id), None)

    walk(old, new, (), None)
    return tuple(changes)


# ------------------------------------------------------------------------------------------ files


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, never a mix:
    temp file in the same directory (mode 0600), fsync, rename, fsync of the directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
        errors, types = _patch_errors(patch, self._config)
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
        return PatchResult(config, diff(self._config, config)), overrides

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
