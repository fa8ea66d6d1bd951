"""Every MQTT topic facegate publishes or subscribes to is built here, and only here.

Layout (``<base>`` is ``<prefix>/<device_id>``)::

    <base>/status                          retained  online | degraded (no camera) | offline (will) | stopped
    <base>/event                           QoS 1, never retained; live decisions only
    <base>/history                         QoS 1, never retained; late and re-sent events
    <base>/stats                           periodic
    <base>/presence/<person_id>            retained
    <base>/camera/<camera>/last_recognized retained
    <base>/camera/<camera>/snapshot        JPEG, not retained
    <base>/camera/<camera>/health          retained  starting | ok | stalled | down | ended, with last error
    <base>/camera/<camera>/availability    retained  online (delivering frames) | offline
    <base>/config/{set,get}                commands;  <base>/config/{result,state}
    <base>/gallery/<op>                    commands;  <base>/gallery/<op>/result   (op: enroll, remove, rename, list)
    <prefix>/fleet/<fleet_id>/gallery/<person_id>   retained fleet records
    <discovery_prefix>/device/<node_id>/config      Home Assistant device discovery
    <discovery_prefix>/status                       Home Assistant birth / will

Ids used as topic levels (device, person, camera, fleet) are slugs: ``[A-Za-z0-9_-]``, 1..64
characters, starting with a letter or digit. That excludes the MQTT wildcards ``+``/``#``, the level
separator ``/``, NUL and whitespace, and it is the character class Home Assistant requires for
discovery object ids. Display names never appear in topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from facegate.errors import ConfigError

_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
GALLERY_OPERATIONS: tuple[str, ...] = ("enroll", "remove", "rename", "list")


def is_valid_id(value: object) -> bool:
    """True if ``value`` may be used as one topic level (see the module docstring)."""
    return isinstance(value, str) and _SLUG.fullmatch(value) is not None


def validate_id(value: object, kind: str = "id") -> str:
    """Return ``value`` if it is a valid topic-level id, else raise :class:`ConfigError`."""
    if isinstance(value, str) and _SLUG.fullmatch(value) is not None:
        return value
    raise ConfigError(
        f"invalid {kind} {value!r}: use 1-64 characters from [A-Za-z0-9_-], starting with a letter or digit"
    )


def validate_prefix(value: object, kind: str = "topic prefix") -> str:
    """A prefix is one or more valid levels joined by ``/`` (e.g. ``home/facegate``)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"invalid {kind} {value!r}: must be a non-empty string")
    for level in value.split("/"):
        validate_id(level, f"{kind} level")
    return value


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic builder for one device. Construction validates every level; methods validate their ids."""

    device_id: str
    prefix: str = "facegate"
    discovery_prefix: str = "homeassistant"

    def __post_init__(self) -> None:
        validate_id(self.device_id, "device_id")
        validate_prefix(self.prefix)
        validate_prefix(self.discovery_prefix, "discovery prefix")

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    # --- state and telemetry -------------------------------------------------------------------
    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def history(self) -> str:
        """Late and re-sent events (older than ``max_event_age_s`` or replayed from the spool)."""
        return f"{self.base}/history"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    def presence(self, person_id: str) -> str:
        return f"{self.base}/presence/{validate_id(person_id, 'person_id')}"

    @property
    def presence_filter(self) -> str:
        """Subscription filter matching every presence topic of this device."""
        return f"{self.base}/presence/+"

    def last_recognized(self, camera: str) -> str:
        return f"{self.base}/camera/{validate_id(camera, 'camera')}/last_recognized"

    def snapshot(self, camera: str) -> str:
        return f"{self.base}/camera/{validate_id(camera, 'camera')}/snapshot"

    def camera_health(self, camera: str) -> str:
        return f"{self.base}/camera/{validate_id(camera, 'camera')}/health"

    def camera_availability(self, camera: str) -> str:
        return f"{self.base}/camera/{validate_id(camera, 'camera')}/availability"

    # --- remote configuration -------------------------------------------------------------------
    @property
    def config_set(self) -> str:
        return f"{self.base}/config/set"

    @property
    def config_result(self) -> str:
        return f"{self.base}/config/result"

    @property
    def config_state(self) -> str:
        return f"{self.base}/config/state"

    @property
    def config_get(self) -> str:
        return f"{self.base}/config/get"

    # --- remote gallery management --------------------------------------------------------------
    def gallery_command(self, operation: str) -> str:
        if operation not in GALLERY_OPERATIONS:
            raise ConfigError(f"unknown gallery operation {operation!r}; valid: {', '.join(GALLERY_OPERATIONS)}")
        return f"{self.base}/gallery/{operation}"

    def gallery_result(self, operation: str) -> str:
        return f"{self.gallery_command(operation)}/result"

    @property
    def gallery_enroll(self) -> str:
        return self.gallery_command("enroll")

    @property
    def gallery_enroll_result(self) -> str:
        return self.gallery_result("enroll")

    @property
    def gallery_remove(self) -> str:
        return self.gallery_command("remove")

    @property
    def gallery_remove_result(self) -> str:
        return self.gallery_result("remove")

    @property
    def gallery_rename(self) -> str:
        return self.gallery_command("rename")

    @property
    def gallery_rename_result(self) -> str:
        return self.gallery_result("rename")

    @property
    def gallery_list(self) -> str:
        return self.gallery_command("list")

    @property
    def gallery_list_result(self) -> str:
        return self.gallery_result("list")

    # --- fleet gallery sync (shared by every device of a fleet, hence not under <base>) ---------
    def fleet_gallery(self, fleet_id: str, person_id: str) -> str:
        return f"{self.fleet_gallery_base(fleet_id)}/{validate_id(person_id, 'person_id')}"

    def fleet_gallery_filter(self, fleet_id: str) -> str:
        """Subscription filter matching every person record of the fleet."""
        return f"{self.fleet_gallery_base(fleet_id)}/+"

    def fleet_gallery_base(self, fleet_id: str) -> str:
        return f"{self.prefix}/fleet/{validate_id(fleet_id, 'fleet_id')}/gallery"

    # --- Home Assistant -------------------------------------------------------------------------
    @property
    def ha_node_id(self) -> str:
        """Discovery object id of this device; prefixed so it cannot collide with other integrations."""
        return f"facegate_{self.device_id}"

    @property
    def ha_device_config(self) -> str:
        return f"{self.discovery_prefix}/device/{self.ha_node_id}/config"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth/will topic (``online`` when HA (re)starts)."""
        return f"{self.discovery_prefix}/status"

    # --- Frigate compatibility ------------------------------------------------------------------
    @staticmethod
    def frigate_tracked_object_update(frigate_prefix: str = "frigate") -> str:
        return f"{validate_prefix(frigate_prefix, 'frigate prefix')}/tracked_object_update"


def topic_is_concrete(topic: str) -> bool:
    """True for a publishable topic: non-empty, no wildcards, no NUL, no empty level."""
    return bool(topic) and not any(c in topic for c in "+#\x00") and "" not in topic.split("/")


__all__ = [
    "GALLERY_OPERATIONS",
    "Topics",
    "is_valid_id",
    "topic_is_concrete",
    "validate_id",
    "validate_prefix",
]
