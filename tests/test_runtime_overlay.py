"""Runtime overrides: whitelisted JSON merge patches over the YAML, validated, stored atomically,
replayed at start-up and on reload, with the components each change needs rebuilt."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facegate.config import ConfigValidationError, RuntimeConfig, load_config
from facegate.config.models import OpencvSource, Picamera2Source
from facegate.config.runtime import apply_overrides, compose, diff, merge_patch
from facegate.errors import ConfigError

YAML = """\
state_dir: state
device: {device_id: door}
cameras:
  - id: front
    source: {type: replay, path: clips}
  - id: porch
    source: {type: opencv, url: "rtsp://viewer:pw@192.0.2.10/s1"}
recognition:
  threshold: 0.55
mqtt:
  host: broker.lan
"""


@pytest.fixture
def yaml_file(tmp_path: Path) -> Path:
    file = tmp_path / "facegate.yaml"
    file.write_text(YAML)
    return file


@pytest.fixture
def runtime(yaml_file: Path) -> RuntimeConfig:
    return RuntimeConfig.open(yaml_file, environ={})


def stored(runtime: RuntimeConfig) -> dict[str, Any]:
    document = json.loads(runtime.overlay_path.read_text())
    assert document["version"] == 1
    overrides: dict[str, Any] = document["overrides"]
    return overrides


def errors(excinfo: pytest.ExceptionInfo[ConfigValidationError]) -> dict[str, str]:
    return {e.loc: e.msg for e in excinfo.value.errors}


def test_valid_patch_is_applied_persisted_and_reports_rebuilds(runtime: RuntimeConfig, yaml_file: Path) -> None:
    yaml_before = yaml_file.read_bytes()
    result = runtime.apply(
        {
            "recognition": {"threshold": 0.5, "margin": 0.1},
            "decision": {"votes_required": 5},
            "detector": {"score_threshold": 0.7},
            "cameras": {"porch": {"enabled": False}},
            "logging": {"level": "debug"},
        }
    )
    config = runtime.config
    assert config is result.config
    assert config.recognition.threshold == 0.5 and config.recognition.margin == 0.1
    assert config.decision.votes_required == 5 and config.detector.score_threshold == 0.7
    assert config.camera("porch") is not None and not config.camera("porch").enabled  # type: ignore[union-attr]
    assert config.logging.level == "DEBUG"
    assert set(result.changed) == {
        "recognition.threshold",
        "recognition.margin",
        "decision.votes_required",
        "detector.score_threshold",
        "cameras.porch.enabled",
        "logging.level",
    }
    assert result.rebuild == {"detector", "camera:porch"}  # thresholds, votes and log level are live
    assert stored(runtime)["recognition"] == {"threshold": 0.5, "margin": 0.1}
    assert stat.S_IMODE(runtime.overlay_path.stat().st_mode) == 0o600
    assert yaml_file.read_bytes() == yaml_before  # the user's YAML is never rewritten
    assert runtime.base.recognition.threshold == 0.55

    # a second patch composes with the first; an unchanged value is no change
    again = runtime.apply({"recognition": {"threshold": 0.5}, "analysis": {"actions": ["age"]}})
    assert again.changed == ("analysis.actions",) and again.rebuild == {"analysis"}
    assert stored(runtime)["recognition"] == {"threshold": 0.5, "margin": 0.1}


def test_invalid_patch_is_rejected_with_field_errors_and_nothing_changes(runtime: RuntimeConfig) -> None:
    runtime.apply({"recognition": {"margin": 0.2}})
    file_before = runtime.overlay_path.read_bytes()
    config_before = runtime.config
    with pytest.raises(ConfigValidationError) as info:
        runtime.apply(
            {
                "recognition": {"threshold": "close", "margin": -1, "distance_metric": "manhattan"},
                "decision": {"votes_required": 0},
                "cameras": {"porch": {"source": {"url": "ftp://x:pw@h/"}}},
            }
        )
    found = errors(info)
    assert set(found) == {
        "recognition.threshold",
        "recognition.margin",
        "recognition.distance_metric",
        "decision.votes_required",
        "cameras.porch.source.url",
    }
    assert "greater than or equal to 0" in found["recognition.margin"]
    assert "'cosine'" in found["recognition.distance_metric"]
    assert "pw" not in found["cameras.porch.source.url"]  # URL passwords are not echoed
    assert all(e.line is None for e in info.value.errors)
    assert runtime.overlay_path.read_bytes() == file_before
    assert runtime.config is config_before
    with pytest.raises(ConfigValidationError):
        runtime.preview({"decision": {"window_s": float("nan")}})
    with pytest.raises(ConfigValidationError):
        runtime.apply(["not", "an", "object"])
    deep: dict[str, Any] = {}
    for _ in range(100_000):
        deep = {"analysis": deep}
    with pytest.raises(ConfigValidationError):
        runtime.apply(deep)
    assert runtime.overlay_path.read_bytes() == file_before


@pytest.mark.parametrize(
    ("patch", "loc"),
    [
        ({"security": {"allow_unsigned": True}}, "security.allow_unsigned"),
        ({"mqtt": {"host": "evil.example"}}, "mqtt.host"),
        ({"mqtt": {"password": "x"}}, "mqtt.password"),
        ({"gallery": {"path": "/tmp/g.sqlite3"}}, "gallery.path"),
        ({"state_dir": "/tmp"}, "state_dir"),
        ({"device": {"device_id": "other"}}, "device.device_id"),
        ({"cameras": {"front": {"source": {"path": "/etc/shadow"}}}}, "cameras.front.source.path"),
        ({"cameras": {"porch": {"source": {"pipeline": "filesrc ! appsink"}}}}, "cameras.porch.source.pipeline"),
        ({"cameras": {"porch": {"source": {"type": "opencv", "path": "/dev/sda"}}}}, "cameras.porch.source.path"),
        ({"cameras": {"porch": {"source": None}}}, "cameras.porch.source"),
        ({"cameras": {"porch": {"id": "renamed"}}}, "cameras.porch.id"),
        ({"recognition": None}, "recognition"),
    ],
)
def test_non_whitelisted_keys_are_rejected_by_name(runtime: RuntimeConfig, patch: dict[str, Any], loc: str) -> None:
    with pytest.raises(ConfigValidationError) as info:
        runtime.apply(patch)
    assert errors(info) == {loc: "not settable at run time (set it in the YAML file)"}
    assert not runtime.overlay_path.exists()


def test_unknown_keys_and_cameras(runtime: RuntimeConfig) -> None:
    with pytest.raises(ConfigValidationError) as info:
        runtime.apply({"recognition": {"treshold": 0.4}, "nosuch": 1, "cameras": {"garage": {"enabled": True}}})
    assert errors(info) == {
        "recognition.treshold": "unknown key",
        "nosuch": "unknown key",
        "cameras.garage": "no such camera (cameras are added in the YAML file)",
    }
    with pytest.raises(ConfigValidationError) as listed:
        runtime.apply({"cameras": [{"id": "front", "enabled": False}]})
    assert "address cameras by id" in errors(listed)["cameras"]


def test_overlay_is_replayed_by_a_new_load(runtime: RuntimeConfig, yaml_file: Path) -> None:
    runtime.apply({"recognition": {"threshold": 0.42}, "cameras": {"front": {"source": {"fps": 3, "loop": True}}}})
    reopened = RuntimeConfig.open(yaml_file, environ={})
    assert reopened.config == runtime.config
    assert reopened.config.recognition.threshold == 0.42
    assert reopened.overrides == runtime.overrides
    assert load_config(yaml_file, environ={}).recognition.threshold == 0.42
    assert load_config(yaml_file, overlay=False, environ={}).recognition.threshold == 0.55


def test_null_resets_to_the_default_and_reset_drops_everything(runtime: RuntimeConfig) -> None:
    result = runtime.apply({"recognition": {"threshold": None}})
    assert runtime.config.recognition.threshold is None  # the built-in default (manifest value)
    assert result.changed == ("recognition.threshold",)
    assert stored(runtime) == {"recognition": {"threshold": None}}
    runtime.apply({"recognition": {"threshold": 0.3}})
    assert runtime.config.recognition.threshold == 0.3
    back = runtime.reset()
    assert runtime.config == runtime.base and back.changed == ("recognition.threshold",)
    assert stored(runtime) == {}


def test_source_replacement_and_merge(runtime: RuntimeConfig) -> None:
    merged = runtime.apply({"cameras": {"porch": {"source": {"width": 640, "height": 360}}}})
    porch = runtime.config.camera("porch")
    assert porch is not None and isinstance(porch.source, OpencvSource)
    assert porch.source.url == "rtsp://viewer:pw@192.0.2.10/s1" and porch.source.width == 640
    assert merged.rebuild == {"camera:porch"}
    # 'type' present: the source is replaced (the old url does not linger)
    runtime.apply({"cameras": {"porch": {"source": {"type": "opencv", "device": 1}}}})
    porch = runtime.config.camera("porch")
    assert porch is not None and isinstance(porch.source, OpencvSource)
    assert (porch.source.device, porch.source.url, porch.source.width) == (1, None, None)
    switched = runtime.apply({"cameras": {"porch": {"source": {"type": "picamera2", "lores_size": [320, 240]}}}})
    porch = runtime.config.camera("porch")
    assert porch is not None and isinstance(porch.source, Picamera2Source)
    assert porch.source.lores_size == (320, 240)
    assert "cameras.porch.source" in switched.changed
    with pytest.raises(ConfigValidationError) as info:
        runtime.apply({"cameras": {"front": {"source": {"type": "replay"}}}})
    assert "cameras.front.source.path" in errors(info)  # replay needs a path, which only the YAML gives


def test_atomic_write_leaves_no_temp_files(runtime: RuntimeConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    for votes in range(2, 7):
        runtime.apply({"decision": {"votes_required": votes}})
    directory = runtime.overlay_path.parent
    assert sorted(os.listdir(directory)) == ["runtime-overrides.json"]
    before = runtime.overlay_path.read_bytes()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(ConfigError, match="No space left"):
        runtime.apply({"decision": {"votes_required": 9}})
    monkeypatch.undo()
    assert sorted(os.listdir(directory)) == ["runtime-overrides.json"]
    assert runtime.overlay_path.read_bytes() == before
    assert runtime.config.decision.votes_required == 6


def test_stale_overlay_is_trimmed_at_start(
    runtime: RuntimeConfig, yaml_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runtime.apply({"recognition": {"threshold": 0.4}, "cameras": {"porch": {"enabled": False}}})
    yaml_file.write_text(
        YAML.replace('  - id: porch\n    source: {type: opencv, url: "rtsp://viewer:pw@192.0.2.10/s1"}\n', "")
    )
    with caplog.at_level(logging.ERROR):
        trimmed = RuntimeConfig.open(yaml_file, environ={}, repair=False)
    assert trimmed.config.recognition.threshold == 0.4  # the rest still applies
    assert [e.loc for e in trimmed.dropped] == ["cameras.porch"]
    assert "cameras.porch" in caplog.text
    assert "porch" in json.dumps(stored(runtime))  # repair=False writes nothing
    repaired = RuntimeConfig.open(yaml_file, environ={})
    assert repaired.overrides == {"recognition": {"threshold": 0.4}}
    assert stored(repaired) == {"recognition": {"threshold": 0.4}}
    rejected = repaired.overlay_path.with_name("runtime-overrides.rejected.json")
    assert "porch" in rejected.read_text()


def test_corrupt_overlay_is_set_aside(yaml_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    overlay = yaml_file.parent / "state" / "runtime-overrides.json"
    overlay.parent.mkdir()
    overlay.write_text('{"version": 1, "overrides": {"security": {"allow_unsigned": true}}}')
    with caplog.at_level(logging.ERROR):
        runtime = RuntimeConfig.open(yaml_file, environ={})
    assert runtime.config.security.allow_unsigned is False  # a hand-edited overlay cannot bypass the whitelist
    assert runtime.overrides == {} and "security.allow_unsigned" in caplog.text
    overlay.write_text("{not json")
    runtime = RuntimeConfig.open(yaml_file, environ={})
    assert runtime.config == runtime.base and not overlay.exists()
    assert (overlay.parent / "runtime-overrides.rejected.json").read_text() == "{not json"


def test_reload_rereads_the_yaml_and_keeps_overrides(runtime: RuntimeConfig, yaml_file: Path) -> None:
    runtime.apply({"decision": {"cooldown_s": 5}})
    yaml_file.write_text(YAML.replace("broker.lan", "broker2.lan").replace("device_id: door", "device_id: door2"))
    result = runtime.reload()
    assert runtime.config.mqtt.host == "broker2.lan" and runtime.config.decision.cooldown_s == 5
    assert {c.key: c.component for c in result.changes} == {"mqtt.host": "mqtt", "device.device_id": "restart"}
    yaml_file.write_text("cameras: [{id: x, bogus: 1}]\n")
    before = runtime.config
    with pytest.raises(ConfigValidationError, match=r"facegate.yaml:1:\d+: cameras\[0\].bogus: unknown key"):
        runtime.reload()
    assert runtime.config is before


def test_listeners_hear_every_stored_change_at_the_source(
    runtime: RuntimeConfig, yaml_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What publishes the configuration subscribes here (one hop): a patch or reset that changed
    something and every reload reach the listeners; a preview, a no-op or a refused patch do not."""
    heard: list[tuple[str, ...]] = []

    def broken(_result: Any) -> None:
        raise RuntimeError("listener bug")

    runtime.subscribe(broken)
    runtime.subscribe(lambda result: heard.append(result.changed))
    runtime.preview({"decision": {"cooldown_s": 7}})
    with pytest.raises(ConfigValidationError):
        runtime.apply({"decision": {"cooldown_s": -1}})
    assert heard == []
    with caplog.at_level(logging.ERROR, logger="facegate.config.runtime"):
        runtime.apply({"decision": {"cooldown_s": 7}})
    assert heard == [("decision.cooldown_s",)] and runtime.config.decision.cooldown_s == 7
    assert "runtime config listener failed" in caplog.text
    runtime.apply({"decision": {"cooldown_s": 7}})  # no change: nothing to announce
    assert len(heard) == 1
    yaml_file.write_text(YAML.replace("broker.lan", "broker2.lan"))
    runtime.reload()
    runtime.reload()  # unchanged, still announced: the overrides may have been trimmed
    runtime.reset()
    assert heard[1:] == [("mqtt.host",), (), ("decision.cooldown_s",)]


def test_compose_equals_sequential_application(runtime: RuntimeConfig) -> None:
    base = runtime.base
    patches: list[dict[str, Any]] = [
        {"recognition": {"threshold": 0.3}, "cameras": {"porch": {"source": {"width": 320}}}},
        {"recognition": {"threshold": None, "margin": 0.2}, "cameras": {"porch": {"source": {"type": "opencv"}}}},
        {"cameras": {"porch": {"source": {"device": 2}, "reconnect": {"max_s": 99}}}, "liveness": {"mode": "blink"}},
    ]
    sequential = base
    overrides: dict[str, Any] = {}
    for patch in patches:
        sequential = apply_overrides(sequential, patch)
        overrides = compose(overrides, patch)
    assert apply_overrides(base, overrides) == sequential
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}
    assert diff(base, base) == ()


_json_leaf = (
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False) | st.text(max_size=12)
)
_keys = st.sampled_from(
    ["recognition", "threshold", "cameras", "front", "porch", "source", "type", "url", "opencv", "enabled",
     "security", "allow_unsigned", "decision", "votes_required", "analysis", "actions", "age", "logging", "level",
     "detector", "backend", "liveness", "mode", "device", "fps", "x"]
)  # fmt: skip
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4))


def _some(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


_number = st.none() | st.integers(-5, 200) | st.floats(-1.0, 5.0) | st.sampled_from(["0.4", "x"])
# near-valid patches, so that many apply and the accepted branch is exercised too
_plausible = _some(
    recognition=_some(
        threshold=_number, margin=_number, top_k=_number, distance_metric=st.sampled_from(["cosine", "l1"])
    ),
    decision=_some(votes_required=_number, window_s=_number, cooldown_s=_number),
    gates=_some(max_yaw=_number),
    cameras=_some(
        porch=_some(
            enabled=st.booleans() | st.none(),
            source=_some(type=st.sampled_from(["opencv", "picamera2", "replay"]), width=_number, fps=_number,
                         url=st.sampled_from(["rtsp://h/1", "http://u:p@h/x", "file:///etc/passwd", "rtsp://h/ ! x"])),
        ),
        front=_some(
            enabled=st.booleans(), source=_some(fps=_number | st.just("as_fast_as_possible"), loop=st.booleans())
        ),
    ),
    analysis=_some(actions=st.lists(st.sampled_from(["age", "gender", "emotion", "race"]), max_size=3)),
    liveness=_some(mode=st.sampled_from(["off", "blink", "motion", "blink+motion", "on"])),
    logging=_some(level=st.sampled_from(["debug", "INFO", "TRACE"])),
    security=_some(allow_unsigned=st.booleans()),
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patch=_json | _plausible)
def test_fuzzed_patches_either_apply_or_change_nothing(yaml_file: Path, patch: Any) -> None:
    runtime = RuntimeConfig.open(yaml_file, environ={})
    runtime.reset()
    before = runtime.config
    file_before = runtime.overlay_path.read_bytes()
    try:
        result = runtime.apply(patch)
    except ConfigValidationError as err:
        assert err.errors
        assert runtime.config is before
        assert runtime.overlay_path.read_bytes() == file_before
    else:
        assert result.config is runtime.config
        assert result.config.security == before.security and result.config.mqtt == before.mqtt
        assert RuntimeConfig.open(yaml_file, environ={}).config == runtime.config
