"""Strict JSON types for remote config patches.

The configuration models validate in pydantic's lax mode, which the YAML needs (``port: ${PORT}``
interpolates to a string). A remote patch is JSON with real types, so before the patch reaches
:class:`~facegate.config.RuntimeConfig` every leaf is checked against its field's type in strict JSON
mode: ``"0.5"`` is not a number, ``1`` is not a boolean, ``"true"`` is not ``true``. ``null`` is
always allowed (it resets a key to its default). Keys that do not exist are left to the runtime
whitelist check, which reports them.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from facegate.config.models import SOURCE_TYPES, CameraConfig, FacegateConfig, model_class
from facegate.remote.schemas import FieldErrorPayload


@functools.lru_cache(maxsize=512)
def _adapter(owner: type[BaseModel], name: str) -> TypeAdapter[Any]:
    annotation = owner.model_fields[name].annotation
    return TypeAdapter(Any if annotation is None else annotation)


def _leaf(owner: type[BaseModel], name: str, value: Any, loc: str, errors: list[FieldErrorPayload]) -> None:
    try:
        _adapter(owner, name).validate_json(json.dumps(value, allow_nan=False), strict=True)
    except ValidationError as err:
        first = err.errors(include_url=False, include_context=False)[0]
        errors.append(FieldErrorPayload(loc=loc[:512], msg=f"wrong type: {first['msg']}"[:1024],
                                        type=str(first["type"])[:64]))
    except ValueError:
        errors.append(FieldErrorPayload(loc=loc[:512], msg="not a JSON value", type="type_error"))


def _walk(cls: type[BaseModel], patch: dict[str, Any], loc: str, errors: list[FieldErrorPayload],
          config: FacegateConfig, camera: CameraConfig | None) -> None:
    for key, value in patch.items():
        here = f"{loc}.{key}"
        info = cls.model_fields.get(key)
        if info is None or value is None:
            continue
        if cls is FacegateConfig and key == "cameras":
            if isinstance(value, dict):
                for camera_id, camera_patch in value.items():
                    current = config.camera(camera_id)
                    if current is not None and isinstance(camera_patch, dict):
                        _walk(CameraConfig, camera_patch, f"{here}.{camera_id}", errors, config, current)
            continue
        if cls is CameraConfig and key == "source" and isinstance(value, dict) and camera is not None:
            kind = value.get("type", camera.source.type)
            source_cls = SOURCE_TYPES.get(kind) if isinstance(kind, str) else None
            if source_cls is not None:
                _walk(source_cls, value, here, errors, config, camera)
            continue
        sub = model_class(info.annotation)
        if sub is not None and isinstance(value, dict):
            _walk(sub, value, here, errors, config, camera)
        else:
            _leaf(cls, key, value, here, errors)


def strict_type_errors(patch: dict[str, Any], config: FacegateConfig, *, prefix: str = "patch"
                       ) -> list[FieldErrorPayload]:
    """Field errors for every leaf of ``patch`` whose JSON type does not match its field."""
    errors: list[FieldErrorPayload] = []
    _walk(FacegateConfig, patch, prefix, errors, config, None)
    return errors


__all__ = ["strict_type_errors"]
