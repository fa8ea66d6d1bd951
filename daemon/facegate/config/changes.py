"""What a runtime change did: the keys whose effective value changed and the component each needs
rebuilt (``camera:<id>``, ``detector``, ...; none for live keys, ``restart`` for device identity)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from facegate.config.models import LIVE, CameraConfig, FacegateConfig, runtime_marker
from facegate.config.validation import Loc, dotted

_RESTART_KEYS = frozenset({"device", "state_dir", "version"})


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


__all__ = ["Change", "PatchResult", "diff"]
