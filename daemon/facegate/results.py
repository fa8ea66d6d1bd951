"""Dictionary access for the API's result dataclasses, so code written for DeepFace's dicts runs unchanged.

``result["verified"]``, ``result.get("distance")``, ``"facial_area" in result``, ``result.keys()``,
``dict(result)`` and ``{**result}`` all read :meth:`to_dict` (DeepFace's keys and nested dicts); the
typed attributes stay the primary interface. Results stay frozen: there is no item assignment.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any


class DeepFaceDict:
    """Mixin for frozen (slotted) result dataclasses that define ``to_dict()``."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        data = self.to_dict()
        try:
            return data[key]
        except KeyError:
            raise KeyError(f"{type(self).__name__} has no key {key!r}; keys: {', '.join(data)}") from None

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def keys(self) -> KeysView[str]:
        return self.to_dict().keys()

    def values(self) -> ValuesView[Any]:
        return self.to_dict().values()

    def items(self) -> ItemsView[str, Any]:
        return self.to_dict().items()

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


__all__ = ["DeepFaceDict"]
