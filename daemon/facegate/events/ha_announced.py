"""What discovery announced, persisted in ``<state_dir>/homeassistant.json`` (atomically), so components
that disappeared while the daemon was stopped are removed on the next announcement."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from facegate.atomic_file import atomic_write
from facegate.errors import ConfigError

# the discovery's log name, as before this part moved out of facegate.events.homeassistant
logger = logging.getLogger("facegate.events.homeassistant")


def owned_state_topics(cid: str, component: Mapping[str, Any]) -> list[str]:
    """Retained topics facegate owns for a component (cleared when the component goes away)."""
    topic = component.get("state_topic")
    if cid.startswith(("presence_", "last_recognized_")) and isinstance(topic, str):
        return [topic]
    if cid.startswith("camera_problem_") and isinstance(topic, str):
        # the health topic and its sibling availability topic (…/camera/<id>/health -> …/availability)
        return [topic, topic.rsplit("/", 1)[0] + "/availability"]
    return []


def load_announced(path: Path | None) -> dict[str, dict[str, Any]]:
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        components = data["components"]
        if not isinstance(components, dict):
            raise TypeError("components is not an object")
        return {str(k): dict(v) for k, v in components.items() if isinstance(v, dict) and "p" in v}
    except (OSError, ValueError, KeyError, TypeError) as err:
        # losing this file only means old entities are not removed automatically: warn, carry on
        logger.warning("Home Assistant: %s is unreadable (%s); not removing entities announced earlier", path, err)
        return {}


def save_announced(path: Path, components: Mapping[str, Mapping[str, Any]]) -> None:
    """Written with :func:`facegate.atomic_file.atomic_write`; an unwritable path is a ConfigError."""
    text = json.dumps({"version": 1, "components": components}, indent=1, sort_keys=True)
    try:
        atomic_write(path, text.encode("utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot write {path}: {err}") from err


__all__ = ["load_announced", "owned_state_topics", "save_announced"]
