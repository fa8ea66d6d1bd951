"""A tiny typed registry: one instance per plugin kind (detectors, embedders, capture sources...).

Entries are factories registered by name; lookups are case-insensitive and an unknown name raises
:class:`ConfigError` listing the valid ones. Modules register lazily (the registry imports the module
that implements a name only when that name is asked for) so importing facegate loads no model code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from facegate.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel

T = TypeVar("T")
M = TypeVar("M", bound="BaseModel")


@dataclass(frozen=True, slots=True)
class _LazyEntry:
    module: str
    attribute: str


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | _LazyEntry] = {}
        self._display: dict[str, str] = {}

    def register(self, name: str, value: T) -> None:
        self._add(name, value)

    def register_lazy(self, name: str, target: str) -> None:
        """``target`` is ``"package.module:attribute"``, imported on first use."""
        module, _, attribute = target.partition(":")
        self._add(name, _LazyEntry(module, attribute))

    def _add(self, name: str, value: T | _LazyEntry) -> None:
        key = name.casefold()
        if key in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is registered twice")
        self._entries[key] = value
        self._display[key] = name

    def names(self) -> list[str]:
        return [self._display[k] for k in self._entries]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.casefold() in self._entries

    def get(self, name: str) -> T:
        key = name.casefold()
        try:
            entry = self._entries[key]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}"
            ) from None
        if isinstance(entry, _LazyEntry):
            module = importlib.import_module(entry.module)
            value: T = getattr(module, entry.attribute)
            self._entries[key] = value
            return value
        return entry

    def canonical(self, name: str) -> str:
        """The registered spelling of ``name`` (``"dlib"`` -> ``"Dlib"``)."""
        self.get(name)
        return self._display[name.casefold()]


Factory = Callable[..., T]


def validate_options(model: type[M], values: Mapping[str, object], *, key: str, key_field: str, context: str) -> M:
    """``values`` validated by plugin ``key``'s options model ``model`` (whose ``key_field`` names it).

    Raises :class:`ConfigError` starting with ``context`` and naming each unknown or mistyped option."""
    from pydantic import ValidationError  # the registry itself loads no pydantic

    try:
        return model.model_validate(values)
    except ValidationError as err:
        problems = []
        for item in err.errors(include_url=False, include_context=False):
            option = ".".join(str(part) for part in item["loc"]) or "options"
            if item["type"] == "extra_forbidden":
                known = ", ".join(n for n in model.model_fields if n != key_field)
                problems.append(f"{option!r} is not an option of {key!r} (its options: {known})")
            else:
                problems.append(f"{option!r}: {str(item['msg']).removeprefix('Value error, ')}")
        raise ConfigError(f"{context}: invalid options: {'; '.join(problems)}") from None

__all__ = ["Factory", "Registry", "validate_options"]
