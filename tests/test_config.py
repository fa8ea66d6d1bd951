"""Configuration: models, the YAML loader (line-numbered errors, ${ENV}, credentials), the example
file, the JSON Schema, secrets redaction and ``facegate check-config``."""

from __future__ import annotations

import json
import logging
import re
import textwrap
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from facegate.cli import main
from facegate.config import (
    ConfigValidationError,
    FacegateConfig,
    load_config,
    load_yaml_config,
    parse_yaml_config,
    redacted_dump,
    runtime_settable_keys,
)
from facegate.config.loader import interpolate, parse_document
from facegate.config.models import SOURCE_TYPES, CameraConfig, OpencvSource, ReplaySource, model_class
from facegate.config.schema import render_schema
from facegate.config.secrets import command_secret, redact_text
from facegate.detectors.options import DetectorOptions
from facegate.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "facegate.example.yaml"
SCHEMA = REPO / "config" / "facegate.schema.json"
SECRET = "s3cr3t-Pa55w0rd-do-not-leak"


def parse(text: str, **kwargs: Any) -> FacegateConfig:
    kwargs.setdefault("environ", {})
    return parse_yaml_config(textwrap.dedent(text), filename="facegate.yaml", **kwargs)


def errors_of(text: str, **kwargs: Any) -> list[Any]:
    with pytest.raises(ConfigValidationError) as info:
        parse(text, **kwargs)
    return list(info.value.errors)


def all_models() -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []

    def walk(cls: type[BaseModel]) -> None:
        if cls in seen:
            return
        seen.append(cls)
        for info in cls.model_fields.values():
            sub = model_class(info.annotation)
            if sub is not None:
                walk(sub)
        if cls is CameraConfig:
            for source in SOURCE_TYPES.values():
                walk(source)

    walk(FacegateConfig)
    return seen


# ------------------------------------------------------------------------------------------ models


def test_every_field_is_described_and_every_section_forbids_extras_and_is_frozen() -> None:
    models = all_models()
    assert len(models) >= 20
    for cls in models:
        assert cls.model_config.get("extra") == "forbid", cls
        assert cls.model_config.get("frozen") is True, cls
        for name, info in cls.model_fields.items():
            assert info.description and len(info.description) > 8, f"{cls.__name__}.{name}"


def test_defaults_make_a_valid_config() -> None:
    config = FacegateConfig()
    assert config.detector.backend == "mediapipe"
    assert config.recognition.model_name == "Dlib"
    assert config.mqtt.prefix == "facegate" and config.mqtt.qos == 1
    assert config.security.allow_unsigned is False and config.security.max_skew_s == 30
    assert config.gallery.store_face_images is False
    with pytest.raises(ValueError, match="frozen"):
        config.device.device_id = "x"


def test_runtime_whitelist() -> None:
    keys = {k.path: k.effect for k in runtime_settable_keys()}
    assert keys["recognition.threshold"] == "live"
    assert keys["decision.votes_required"] == "live"
    assert keys["logging.level"] == "live"
    assert keys["stats.interval_s"] == "live"
    assert keys["detector.backend"] == "rebuild:detector"
    assert keys["recognition.model_name"] == "rebuild:embedder"
    assert keys["analysis.actions"] == "rebuild:analysis"
    assert keys["liveness.mode"] == "rebuild:liveness"
    assert keys["cameras.<id>.enabled"] == "rebuild:camera"
    assert keys["cameras.<id>.source[opencv].url"] == "rebuild:camera"
    assert all(v == "live" or v.startswith("rebuild:") for v in keys.values())
    # never remotely: broker, secrets, signing policy, identity, paths, pipelines
    for prefix in ("mqtt", "security", "device", "gallery", "homeassistant", "state_dir"):
        assert not any(k.startswith(prefix) for k in keys), prefix
    assert not any(k.endswith((".path", ".pipeline", ".api")) for k in keys)


# ----------------------------------------------------------------------------------- example, schema


def test_example_is_valid_and_runnable_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FACEGATE_DEVICE_ID", "FACEGATE_MQTT_HOST", "FACEGATE_MQTT_USERNAME", "FACEGATE_MQTT_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    config = load_config(EXAMPLE, overlay=False)
    enabled = [c for c in config.cameras if c.enabled]
    assert [c.id for c in enabled] == ["demo"]
    source = enabled[0].source
    assert isinstance(source, ReplaySource)
    assert source.path == REPO / "daemon" / "facegate" / "samples" and source.path.is_dir()
    assert {c.source.type for c in config.cameras} == set(SOURCE_TYPES)
    assert config.mqtt.password is None and config.mqtt.username is None
    assert config.device.device_id == "front-door"
    assert config.liveness.mode == "off"


def _keys(data: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else key
            out.add(path)
            out |= _keys(value, path)
    elif isinstance(data, list):
        for value in data:
            out |= _keys(value, f"{prefix}[]")
    return out


def test_example_documents_every_key() -> None:
    document = parse_document(EXAMPLE.read_text(), filename=EXAMPLE.name, base_dir=EXAMPLE.parent, environ={})
    present = _keys(document.data)

    def expected(cls: type[BaseModel], prefix: str) -> set[str]:
        out: set[str] = set()
        for name, info in cls.model_fields.items():
            path = f"{prefix}.{name}" if prefix else name
            out.add(path)
            if cls is CameraConfig and name == "source":
                for source in SOURCE_TYPES.values():
                    out |= expected(source, path)
            elif cls is FacegateConfig and name == "detector":
                out |= expected(DetectorOptions, path)  # the options every backend has
            elif (sub := model_class(info.annotation)) is not None:
                child = f"{path}[]" if typing.get_origin(info.annotation) is tuple else path
                out |= expected(sub, child)
        return out

    missing = expected(FacegateConfig, "") - present
    assert not missing, f"keys not in the example: {sorted(missing)}"

    lines = EXAMPLE.read_text().splitlines()
    undocumented = []
    for mark in document.key_marks.values():
        line = lines[mark.line - 1]
        above = next((p.strip() for p in reversed(lines[: mark.line - 1]) if p.strip()), "")
        # a comment on the line above, or (list items) above the '- ' line
        if not (above.startswith("#") or "#" in line.split(":", 1)[-1]):
            undocumented.append(f"{mark.line}: {line.strip()}")
    assert not undocumented, "keys without a comment:\n" + "\n".join(undocumented)


def test_committed_schema_is_generated_from_the_models() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == render_schema(), (
        "regenerate: python -m facegate.config.schema config/facegate.schema.json"
    )


def test_example_validates_against_the_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    document = parse_document(EXAMPLE.read_text(), filename=EXAMPLE.name, base_dir=EXAMPLE.parent, environ={})
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(document.data, schema)
    bad = dict(document.data, detector={"backend": "mediapipe", "bogus": 1})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


# ------------------------------------------------------------------------------ line-numbered errors


def test_unknown_key_reports_its_line_and_column() -> None:
    (error,) = errors_of(
        """\
        device:
          device_id: door
        cameras:
          - id: front
            sorce:
              type: replay
        """
    )
    assert (error.line, error.column) == (5, 5)
    assert str(error) == "facegate.yaml:5:5: cameras[0].sorce: unknown key"


def test_wrong_type_reports_its_line() -> None:
    errors = errors_of(
        """\
        detector:
          backend: mediapipe

          score_threshold: high
        decision:
          votes_required: 2.5
        """
    )
    by_loc = {e.loc: e for e in errors}
    assert by_loc["detector.score_threshold"].line == 4
    assert "valid number" in by_loc["detector.score_threshold"].msg
    assert "'high'" in by_loc["detector.score_threshold"].msg  # a literal value may be echoed
    assert by_loc["decision.votes_required"].line == 6
    assert str(by_loc["decision.votes_required"]).startswith("facegate.yaml:6:3: decision.votes_required: ")


def test_nested_source_errors_point_into_the_camera() -> None:
    errors = errors_of(
        """\
        cameras:
          - id: ok
            source: {type: replay, path: /tmp}
          - id: bad
            source:
              type: replay
              fps: -3
          - id: worse
            source:
              type: webcam
        """
    )
    by_loc = {e.loc: e for e in errors}
    assert by_loc["cameras[1].source.path"].line == 5  # missing: points at the 'source:' key
    assert by_loc["cameras[1].source.path"].msg == "required key is missing"
    assert by_loc["cameras[1].source.fps"].line == 7
    assert by_loc["cameras[2].source.type"].line == 10
    assert "webcam" in by_loc["cameras[2].source.type"].msg and "picamera2" in by_loc["cameras[2].source.type"].msg


def test_cross_field_rules() -> None:
    errors = errors_of(
        """\
        cameras:
          - id: a
            source: {type: opencv, device: 0, url: "rtsp://cam/1"}
        mqtt:
          require_tls: true
        """
    )
    assert [(e.loc, e.line) for e in errors] == [("cameras[0].source", 3), ("mqtt", 4)]
    assert "set only one of device, path, url, pipeline (got device, url)" in errors[0].msg
    assert errors[1].msg == "require_tls is set but tls.enabled is false"
    (dup,) = errors_of("cameras:\n  - id: a\n  - id: b\n  - id: a\n")
    assert (dup.loc, dup.line, dup.msg) == ("cameras", 1, "duplicate camera id 'a'")
    assert errors_of("cameras: [{source: {type: opencv, url: 'file:///etc/passwd'}}]")[0].loc == "cameras[0].source.url"
    assert "whitespace" in errors_of("cameras: [{source: {type: opencv, url: 'rtsp://h/x ! filesink'}}]")[0].msg


def test_duplicate_keys_and_syntax_errors_have_lines() -> None:
    (dup,) = errors_of("detector:\n  backend: mediapipe\n  backend: dlib\n")
    assert dup.line == 3 and "duplicate key" in dup.msg and "line 2" in dup.msg
    (syntax,) = errors_of("detector:\n  backend: [mediapipe\nrecognition: {}\n")
    assert syntax.line is not None and syntax.msg.startswith("YAML syntax")
    (top,) = errors_of("- just\n- a list\n")
    assert "top level" in top.msg
    (tag,) = errors_of("device: !!python/object:os.system {}\n")
    assert tag.line == 1


def test_yaml_conveniences() -> None:
    config = parse(
        """\
        device: {name: 1234}
        liveness: {mode: off}
        logging: {level: debug}
        analysis: {actions: [age, gender]}
        """
    )
    assert config.device.name == "1234"
    assert config.liveness.mode == "off"  # YAML 1.1 'off' is false
    assert config.logging.level == "DEBUG"
    assert config.analysis.actions == ("age", "gender")
    shorthand = parse("analysis: [emotion, age]\nliveness: blink+motion\n")
    assert shorthand.analysis.actions == ("emotion", "age") and shorthand.liveness.mode == "blink+motion"
    assert parse("liveness: off\n").liveness.mode == "off"
    (bad_mode,) = errors_of("analysis: []\nliveness: sometimes\n")
    assert (bad_mode.loc, bad_mode.line) == ("liveness", 2)
    (race,) = errors_of("analysis: {actions: [age, race]}")
    assert "race" in race.msg and "no redistributable" in race.msg


def test_relative_paths_resolve_against_the_yaml_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    file = tmp_path / "conf" / "facegate.yaml"
    file.write_text("state_dir: ../state\ncameras: [{id: a, source: {type: replay, path: clips/a.mp4}}]\n")
    config = load_yaml_config(file, environ={})
    assert config.state_dir == tmp_path / "state"
    source = config.cameras[0].source
    assert isinstance(source, ReplaySource) and source.path == tmp_path / "conf" / "clips" / "a.mp4"
    assert config.paths.gallery == tmp_path / "state" / "gallery.sqlite3"
    assert config.paths.overlay == tmp_path / "state" / "runtime-overrides.json"


def test_state_dir_defaults_to_systemd_state_directory() -> None:
    config = parse("{}", environ={"STATE_DIRECTORY": "/var/lib/facegate:/var/lib/other"})
    assert config.state_dir == Path("/var/lib/facegate")
    assert config.paths.spool == Path("/var/lib/facegate/spool.sqlite3")
    home = parse("{}", environ={"HOME": "/home/pi"})
    assert home.state_dir == Path("/home/pi/.local/share/facegate")


def test_registered_detector_names_are_checked() -> None:
    registry = pytest.importorskip("facegate.detectors.registry")
    (error,) = errors_of("detector:\n  backend: nosuchdetector\n")
    assert error.line == 2 and "nosuchdetector" in error.msg
    assert all(name in error.msg for name in registry.DETECTORS.names())


# ------------------------------------------------------------------------------------ interpolation


def test_env_interpolation() -> None:
    env = {"HOST": "broker.lan", "PORT": "8883", "EMPTY": "", "PREFIX": "site"}
    config = parse(
        """\
        mqtt:
          host: ${HOST}
          port: ${PORT}
          username: ${MQTT_USER:-}
          client_id: ${CLIENT:-door-1}
          prefix: "${PREFIX}/facegate"
        device:
          name: "cost $$5 ${EMPTY:-default}"
        """,
        environ=env,
    )
    assert config.mqtt.host == "broker.lan"
    assert config.mqtt.port == 8883
    assert config.mqtt.username is None
    assert config.mqtt.client_id == "door-1"
    assert config.mqtt.prefix == "site/facegate"
    assert config.device.name == "cost $5 default"
    assert interpolate("a${X:-b}c", {}) == "abc"
    assert interpolate("${X:-b}", {"X": "set"}) == "set"


def test_unset_variable_is_an_error_with_its_line() -> None:
    (error,) = errors_of("mqtt:\n  host: ${NOT_SET_ANYWHERE}\n")
    assert (error.line, error.loc) == (2, "mqtt.host")
    assert "NOT_SET_ANYWHERE is not set" in error.msg
    (bad,) = errors_of("mqtt:\n  host: ${1x}\n")
    assert "invalid" in bad.msg
    (nested,) = errors_of("mqtt:\n  host: ${A:-${B}}\n")
    assert "nested" in nested.msg


def test_values_from_the_environment_are_not_echoed_in_errors() -> None:
    errors = errors_of("mqtt:\n  port: ${PORT}\n", environ={"PORT": SECRET})
    assert errors[0].loc == "mqtt.port" and errors[0].line == 2
    assert SECRET not in str(ConfigValidationError(errors))


# -------------------------------------------------------------------------------------------- secrets


@pytest.fixture
def credentials(tmp_path: Path) -> dict[str, str]:
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / "mqtt_password").write_text(SECRET + "\n")
    (directory / "command_secret").write_text("fleet-hmac-key")
    return {"CREDENTIALS_DIRECTORY": str(directory)}


def test_credential_from_credentials_directory(credentials: dict[str, str]) -> None:
    config = parse("mqtt:\n  username: door\n  password: !credential mqtt_password\n", environ=credentials)
    assert isinstance(config.mqtt.password, SecretStr)
    assert config.mqtt.password.get_secret_value() == SECRET  # the trailing newline is not part of it
    secret = command_secret(config.security, credentials)
    assert secret is not None and secret.get_secret_value() == "fleet-hmac-key"
    assert command_secret(config.security, {}) is None


def test_missing_credential_is_an_error_with_its_line(credentials: dict[str, str]) -> None:
    (error,) = errors_of("mqtt:\n  password: !credential nope\n", environ=credentials)
    assert (error.line, error.loc) == (2, "mqtt.password") and "'nope' is not provided" in error.msg
    (outside,) = errors_of("mqtt:\n  password: !credential mqtt_password\n", environ={})
    assert "CREDENTIALS_DIRECTORY is not set" in outside.msg
    (traversal,) = errors_of("mqtt:\n  password: !credential ../etc/shadow\n", environ=credentials)
    assert "invalid credential name" in traversal.msg
    unresolved = parse("mqtt:\n  password: !credential mqtt_password\n", resolve_secrets=False)
    assert unresolved.mqtt.password is not None


def test_secret_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "pw").write_text(SECRET + "\n")
    (tmp_path / "pw").chmod(0o644)
    (tmp_path / "facegate.yaml").write_text("mqtt:\n  password: !secret_file pw\n")
    with caplog.at_level(logging.WARNING):
        config = load_yaml_config(tmp_path / "facegate.yaml", environ={})
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == SECRET
    assert "accessible to group/others" in caplog.text


def test_secrets_never_appear_in_dumps_reprs_errors_or_logs(
    credentials: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "facegate.yaml"
    file.write_text(
        "state_dir: state\n"
        "mqtt:\n  username: door\n  password: !credential mqtt_password\n"
        f"cameras:\n  - id: cam\n    source: {{type: opencv, url: 'rtsp://admin:{SECRET}@10.0.0.2/s1'}}\n"
    )
    caplog.set_level(logging.DEBUG)
    config = load_config(file, environ=credentials)
    dump = json.dumps(redacted_dump(config))
    assert SECRET not in dump
    assert "rtsp://admin:***@10.0.0.2/s1" in dump and '"password": "**********"' in dump
    assert SECRET not in repr(config) and SECRET not in str(config)
    # a wrong value next to a secret: the error names the key, never the value
    file.write_text(
        "mqtt:\n  password: !credential mqtt_password\n  port: !credential mqtt_password\n"
        f"cameras: [{{source: {{type: opencv, url: 'ftp://u:{SECRET}@h/'}}}}]\n"
    )
    with pytest.raises(ConfigValidationError) as info:
        load_config(file, environ=credentials)
    assert "mqtt.port" in str(info.value) and SECRET not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    logging.getLogger("facegate").error("config failed: %s", info.value)
    assert SECRET not in caplog.text
    assert redact_text(f"rtsp://u:{SECRET}@h:554/x and http://h/y") == "rtsp://u:***@h:554/x and http://h/y"


# ------------------------------------------------------------------------------------- check-config


def test_check_config_ok(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    assert main(["check-config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: {EXAMPLE}")
    assert "camera demo" in out and "rtsp://viewer:***@" in out and "changeme" not in out
    assert main(["check-config", "--json", "--runtime-keys", str(EXAMPLE)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["config"]["device"]["device_id"] == "front-door"
    assert {"key": "recognition.threshold", "effect": "live"} in report["runtime_keys"]


def test_check_config_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    file = tmp_path / "facegate.yaml"
    file.write_text("device:\n  device_id: Front Door\ncameras:\n  - id: a\n    colour: red\n")
    assert main(["check-config", str(file)]) == 2
    err = capsys.readouterr().err
    assert f"{file}:2:3: device.device_id: String should match pattern" in err
    assert f"{file}:5:5: cameras[0].colour: unknown key" in err
    assert "2 error(s)" in err
    assert main(["check-config", "--json", str(file)]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and {e["line"] for e in report["errors"]} == {2, 5}
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_config_error_is_a_facegate_config_error() -> None:
    assert issubclass(ConfigValidationError, ConfigError)
    assert isinstance(OpencvSource().target, int)
    assert re.match(r"^[a-z]", FacegateConfig().mqtt_client_id)
