"""Merging runtime overrides: RFC 7396 merge patches with the camera and plugin-member rules, composing
stored overrides with a new patch, and applying overrides to the YAML configuration with validation."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from facegate.config.models import UNION_SECTIONS, FacegateConfig, UnionSection
from facegate.config.validation import ConfigValidationError, FieldError, Loc, Located, from_pydantic

_DETECTOR = UNION_SECTIONS[(FacegateConfig, "detector")]
_SECRET_NAMES = frozenset({"password"})


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


__all__ = ["apply_overrides", "compose", "merge_patch", "merged_data"]
