"""Topic construction and id validation."""

from __future__ import annotations

import pytest

from facegate.errors import ConfigError
from facegate.events.topics import Topics, is_valid_id, topic_is_concrete, validate_id


def test_layout() -> None:
    t = Topics("door1")
    assert t.base == "facegate/door1"
    assert t.status == "facegate/door1/status"
    assert t.event == "facegate/door1/event"
    assert t.stats == "facegate/door1/stats"
    assert t.presence("alice") == "facegate/door1/presence/alice"
    assert t.last_recognized("front") == "facegate/door1/camera/front/last_recognized"
    assert t.snapshot("front") == "facegate/door1/camera/front/snapshot"
    assert (t.config_set, t.config_result, t.config_state, t.config_get) == (
        "facegate/door1/config/set",
        "facegate/door1/config/result",
        "facegate/door1/config/state",
        "facegate/door1/config/get",
    )
    assert t.gallery_enroll == "facegate/door1/gallery/enroll"
    assert t.gallery_enroll_result == "facegate/door1/gallery/enroll/result"
    assert t.gallery_remove_result == "facegate/door1/gallery/remove/result"
    assert t.gallery_rename == "facegate/door1/gallery/rename"
    assert t.gallery_list_result == "facegate/door1/gallery/list/result"
    assert t.fleet_gallery("hq", "alice") == "facegate/fleet/hq/gallery/alice"
    assert t.fleet_gallery_filter("hq") == "facegate/fleet/hq/gallery/+"
    assert t.ha_device_config == "homeassistant/device/facegate_door1/config"
    assert t.ha_status == "homeassistant/status"
    assert Topics.frigate_tracked_object_update() == "frigate/tracked_object_update"


def test_custom_prefixes() -> None:
    t = Topics("lock-7", prefix="home/facegate", discovery_prefix="ha")
    assert t.event == "home/facegate/lock-7/event"
    assert t.ha_device_config == "ha/device/facegate_lock-7/config"


def test_every_built_topic_is_concrete() -> None:
    t = Topics("d")
    built = [t.status, t.event, t.stats, t.presence("p"), t.last_recognized("c"), t.snapshot("c"), t.config_set,
             t.config_result, t.config_state, t.config_get, t.fleet_gallery("f", "p"), t.ha_device_config, t.ha_status]
    built += [t.gallery_command(op) for op in ("enroll", "remove", "rename", "list")]
    built += [t.gallery_result(op) for op in ("enroll", "remove", "rename", "list")]
    assert all(topic_is_concrete(x) for x in built)
    assert len(set(built)) == len(built)
    assert not topic_is_concrete(t.fleet_gallery_filter("f"))


@pytest.mark.parametrize(
    "bad", ["", "a/b", "+", "#", "a+b", "x#", "nul\x00", " lead", "trail ", "with space", "_lead", "-lead",
            "é", "a" * 65, "a.b", None, 5]
)
def test_invalid_ids_rejected(bad: object) -> None:
    assert not is_valid_id(bad)
    with pytest.raises(ConfigError):
        validate_id(bad)
    if isinstance(bad, str):
        with pytest.raises(ConfigError):
            Topics("door").presence(bad)
        with pytest.raises(ConfigError):
            Topics("door").last_recognized(bad)
        with pytest.raises(ConfigError):
            Topics(bad)


@pytest.mark.parametrize("good", ["a", "A1", "lin_manuel_miranda", "door-1", "0", "a" * 64])
def test_valid_ids(good: str) -> None:
    assert validate_id(good) == good
    assert Topics(good).presence(good).endswith("/" + good)


@pytest.mark.parametrize("prefix", ["", "a//b", "/a", "a/", "a/+", "a/#"])
def test_invalid_prefix(prefix: str) -> None:
    with pytest.raises(ConfigError):
        Topics("door", prefix=prefix)
    with pytest.raises(ConfigError):
        Topics("door", discovery_prefix=prefix)


def test_unknown_gallery_operation() -> None:
    with pytest.raises(ConfigError):
        Topics("d").gallery_command("drop")
