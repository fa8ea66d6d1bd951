"""Whitelist and JSON type check of a runtime config patch, in one walk over the configuration models.

A patch may only name keys the models mark runtime-settable (:func:`facegate.config.models.runtime_marker`),
cameras already in the YAML, and plugin options (camera source, detector) of the member it names or the
current one; each settable leaf is checked against its field's type in strict JSON mode.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from facegate.config.models import UNION_SECTIONS, CameraConfig, FacegateConfig, model_class, runtime_marker
from facegate.config.validation import FieldError, Loc, dotted


def check_patch(patch: Any, current: FacegateConfig) -> list[FieldError]:
    """Field errors for every key of ``patch`` that is unknown, not runtime-settable, or whose JSON value
    has the wrong type.

    The configuration models validate in pydantic's lax mode, which the YAML needs (``port: ${PORT}``
    interpolates to a string). A patch is JSON with real types, so each settable leaf is checked against
    its field's type in strict JSON mode in the same walk: ``"0.5"`` is not a number, ``1`` is not a
    boolean. ``null`` is always allowed (it resets a key to its default)."""
    keys, types = patch_errors(patch, current)
    return keys + types



def patch_errors(patch: Any, current: FacegateConfig) -> tuple[list[FieldError], list[FieldError]]:
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


__all__ = ["check_patch", "patch_errors"]
