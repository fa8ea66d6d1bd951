"""The remote command handler: configuration, enrolment, gallery management and every rejection path,
in-process and over a real Mosquitto broker."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facegate.cli import main as cli_main
from facegate.config import RuntimeConfig
from facegate.config.runtime import PatchResult
from facegate.engine import FaceEngine
from facegate.events.topics import Topics
from facegate.gallery import OutlierPolicy, SqliteGallery
from facegate.images import load_image
from facegate.remote.commands import CommandHandler, CommandResult, GalleryChange, command_topic
from facegate.remote.rate_limit import TokenBucket
from facegate.remote.replay_guard import ReplayGuard
from facegate.remote.schemas import COMMAND_KINDS, CommandKind, render_schemas, schema_slug
from facegate.remote.signing import CommandVerifier, SigningKey, sign_command
from facegate.types import ImageBGR
from tests.conftest import REPO_ROOT
from tests.fixtures.mosquitto import MosquittoBroker, MqttCollector, retained_value
from tests.fixtures.remote_device import (
    SECRET,
    encode_photo,
    root_logging_restored,
    start_device,
    write_device_config,
)

jsonschema = pytest.importorskip("jsonschema")

SCHEMA_DIR = REPO_ROOT / "config" / "commands"
MQTT_PASSWORD = "hunter2-mqtt-password-xyz"
CAMERA_PASSWORD = "camPass99secret"
CAMERA_EXTRA = f"""\
cameras:
  - id: door
    source: {{type: opencv, url: "rtsp://admin:{CAMERA_PASSWORD}@10.0.0.5/stream"}}
"""


def _validator(name: str) -> Any:
    schema = json.loads((SCHEMA_DIR / name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def assert_schema_valid(result: CommandResult) -> None:
    data = json.loads(result.to_json())
    _validator(f"{schema_slug(result.kind)}.result.schema.json").validate(data)


def _jpeg(image: np.ndarray[Any, Any]) -> str:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return base64.b64encode(data.tobytes()).decode("ascii")


@dataclass
class Rig:
    """A handler over a real RuntimeConfig and SqliteGallery, collecting callbacks."""

    handler: CommandHandler
    runtime: RuntimeConfig
    gallery: SqliteGallery
    topics: Topics
    config_changes: list[PatchResult] = field(default_factory=list)
    gallery_changes: list[GalleryChange] = field(default_factory=list)

    def sign(self, kind: CommandKind, payload: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return sign_command(payload, SECRET, topic=command_topic(self.topics, kind), **kwargs)

    def send(self, kind: CommandKind, payload: dict[str, Any] | bytes, *, signed: bool = True,
             **kwargs: Any) -> CommandResult:
        if isinstance(payload, bytes):
            raw = payload
        else:
            raw = json.dumps(self.sign(kind, payload, **kwargs) if signed else payload).encode()
        result = self.handler.handle(kind, raw)
        assert_schema_valid(result)
        return result

    def state(self) -> tuple[Any, ...]:
        """Everything a command could change."""
        overlay = self.runtime.overlay_path
        return (
            self.gallery.revision,
            self.runtime.config,
            json.dumps(self.runtime.overrides, sort_keys=True),
            overlay.read_bytes() if overlay.exists() else None,
            [p.to_dict() for p in self.gallery.people(include_deleted=True)],
        )


def make_rig(tmp_path: Path, engine: FaceEngine, *, rate_limiter: TokenBucket | None = None,
             max_payload_bytes: int = 4 * 1024 * 1024, persist_nonces: bool = True) -> Rig:
    config_path = write_device_config(tmp_path / "dev", device_id="door1", port=1883, prefix="t",
                                      extra=CAMERA_EXTRA)
    runtime = RuntimeConfig.open(config_path)
    config = runtime.config
    config.paths.state_dir.mkdir(parents=True, exist_ok=True)
    outliers = OutlierPolicy.for_model(engine.embedder.thresholds, metric=config.recognition.distance_metric)
    gallery = SqliteGallery(config.paths.gallery, model_id=engine.model_id, device_id="door1", outliers=outliers)
    topics = Topics("door1", prefix="t")
    guard = ReplayGuard(30.0, path=config.paths.state_dir / "command-nonces.json" if persist_nonces else None)
    guard.not_before = None  # a fresh test device: no earlier process could have accepted anything
    verifier = CommandVerifier(SigningKey(SECRET), replay_guard=guard)
    rig = Rig(CommandHandler(topics=topics, verifier=verifier), runtime, gallery, topics)
    rig.handler = CommandHandler(
        topics=topics, verifier=verifier, config=runtime, gallery=gallery, embedder=lambda: engine,
        rate_limiter=rate_limiter, max_payload_bytes=max_payload_bytes,
        on_config_change=rig.config_changes.append, on_gallery_change=rig.gallery_changes.append,
    )
    return rig


@pytest.fixture
def rig(tmp_path: Path, engine: FaceEngine) -> Iterator[Rig]:
    r = make_rig(tmp_path, engine)
    yield r
    r.gallery.close()


# --- schemas ---------------------------------------------------------------------------------------


def test_committed_schemas_are_generated() -> None:
    expected = render_schemas()
    committed = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert committed == expected, (
        "config/commands is stale: regenerate with facegate.remote.schemas.write_schemas('config/commands')"
    )
    for kind in COMMAND_KINDS:
        _validator(f"{schema_slug(kind)}.schema.json")


def test_signed_commands_validate_against_command_schemas() -> None:
    topics = Topics("door1", prefix="t")
    examples: dict[CommandKind, dict[str, Any]] = {
        "config/set": {"patch": {"recognition": {"threshold": 0.5}}},
        "config/get": {},
        "gallery/enroll": {"person_id": "alice", "name": "Alice", "photos": [{"image": "aGVsbG8=", "label": "a"}]},
        "gallery/remove": {"person_id": "alice"},
        "gallery/rename": {"person_id": "alice", "name": "Alice B."},
        "gallery/list": {"include_deleted": True},
    }
    for kind, body in examples.items():
        signed = sign_command(body, SECRET, topic=command_topic(topics, kind))
        _validator(f"{schema_slug(kind)}.schema.json").validate(signed)
        bad = {**signed, "unexpected": 1}
        assert list(_validator(f"{schema_slug(kind)}.schema.json").iter_errors(bad))


# --- configuration ---------------------------------------------------------------------------------


def test_signed_config_patch_is_applied_live_and_acked(rig: Rig) -> None:
    before = rig.runtime.config
    result = rig.send("config/set", {"request_id": "cfg-1", "patch": {
        "recognition": {"threshold": 0.5}, "decision": {"votes_required": 5}}})
    assert result.ok, result.payload
    assert result.request_id == "cfg-1" and result.topic == "t/door1/config/result"
    outcome = json.loads(result.to_json())["result"]
    assert set(outcome["changed"]) == {"recognition.threshold", "decision.votes_required"}
    assert outcome["rebuild"] == [] and outcome["dry_run"] is False
    assert rig.runtime.config.recognition.threshold == 0.5
    assert rig.runtime.config.decision.votes_required == 5
    assert before.recognition.threshold is None
    stored = json.loads(rig.runtime.overlay_path.read_text())
    assert stored["overrides"]["recognition"]["threshold"] == 0.5
    assert len(rig.config_changes) == 1

    result = rig.send("config/set", {"request_id": "cfg-2", "patch": {"cameras": {"door": {"enabled": False}}}})
    assert result.ok
    assert json.loads(result.to_json())["result"]["rebuild"] == ["camera:door"]
    camera = rig.runtime.config.camera("door")
    assert camera is not None and camera.enabled is False

    state = rig.state()
    dry = rig.send("config/set", {"request_id": "cfg-3", "dry_run": True, "patch": {"stats": {"interval_s": 5}}})
    assert dry.ok and json.loads(dry.to_json())["result"]["changed"] == ["stats.interval_s"]
    assert rig.state() == state and len(rig.config_changes) == 2


@pytest.mark.parametrize(
    ("patch", "loc", "kind"),
    [
        ({"recognition": {"threshold": 9}}, "patch.recognition.threshold", "less_than_equal"),
        ({"recognition": {"threshold": "0.5"}}, "patch.recognition.threshold", "float_type"),
        ({"decision": {"votes_required": True}}, "patch.decision.votes_required", "int_type"),
        ({"cameras": {"door": {"enabled": "false"}}}, "patch.cameras.door.enabled", "bool_type"),
        ({"security": {"allow_unsigned": True}}, "patch.security.allow_unsigned", "not_runtime_settable"),
        ({"mqtt": {"host": "evil.example"}}, "patch.mqtt.host", "not_runtime_settable"),
        ({"cameras": {"door": {"source": {"url": "file:///etc/passwd"}}}}, "patch.cameras.door.source.url", None),
        ({"cameras": {"door": {"source": {"path": "/etc/shadow"}}}}, "patch.cameras.door.source.path",
         "not_runtime_settable"),
        ({"cameras": {"garage": {"enabled": True}}}, "patch.cameras.garage", None),
        ({"no_such_section": 1}, "patch.no_such_section", "extra_forbidden"),
        ({"decision": {"votes_required": 0, "cooldown_s": -1}}, "patch.decision.votes_required", None),
    ],
)
def test_invalid_patch_is_rejected_with_field_errors_and_changes_nothing(
    rig: Rig, patch: dict[str, Any], loc: str, kind: str | None
) -> None:
    rig.send("config/set", {"request_id": "warm", "patch": {"stats": {"interval_s": 10}}})
    before = rig.state()
    result = rig.send("config/set", {"request_id": "bad-1", "patch": patch})
    assert not result.ok and result.code == "invalid"
    fields = json.loads(result.to_json())["error"]["fields"]
    assert loc in {f["loc"] for f in fields}, fields
    if kind is not None:
        assert kind in {f["type"] for f in fields}
    assert rig.state() == before
    assert len(rig.config_changes) == 1


def test_config_get_redacts_secrets(rig: Rig) -> None:
    result = rig.send("config/get", {"request_id": "get-1"})
    assert result.ok
    text = result.to_json().decode()
    data = json.loads(text)["result"]
    assert data["config"]["device"]["device_id"] == "door1"
    assert "recognition.threshold" in {k["key"] for k in data["runtime_keys"]}
    assert CAMERA_PASSWORD not in text and SECRET not in text
    assert "admin:***@" in data["config"]["cameras"][0]["source"]["url"]


# --- rejections ------------------------------------------------------------------------------------


def _forged(rig: Rig, kind: CommandKind, body: dict[str, Any]) -> bytes:
    signed = sign_command(body, "some-other-secret-0123456789", topic=command_topic(rig.topics, kind))
    return json.dumps(signed).encode()


REJECTIONS: dict[str, tuple[str, CommandKind, Callable[[Rig], bytes]]] = {
    "wrong secret": ("bad_signature", "config/set",
                     lambda r: _forged(r, "config/set", {"request_id": "x", "patch": {"stats": {"interval_s": 1}}})),
    "altered after signing": ("bad_signature", "config/set", lambda r: json.dumps(
        {**r.sign("config/set", {"request_id": "x", "patch": {"stats": {"interval_s": 1}}}),
         "patch": {"stats": {"interval_s": 2}}}).encode()),
    "signed for another device": ("bad_signature", "gallery/remove", lambda r: json.dumps(sign_command(
        {"request_id": "x", "person_id": "obama"}, SECRET, topic="t/door2/gallery/remove")).encode()),
    "signed for another command": ("bad_signature", "gallery/remove", lambda r: json.dumps(
        r.sign("gallery/rename", {"request_id": "x", "person_id": "obama"})).encode()),
    "stale timestamp": ("stale", "gallery/remove", lambda r: json.dumps(
        r.sign("gallery/remove", {"request_id": "x", "person_id": "obama"}, now=time.time() - 120)).encode()),
    "timestamp in the future": ("stale", "gallery/remove", lambda r: json.dumps(
        r.sign("gallery/remove", {"request_id": "x", "person_id": "obama"}, now=time.time() + 120)).encode()),
    "unsigned": ("unsigned", "gallery/remove",
                 lambda r: json.dumps({"request_id": "x", "person_id": "obama"}).encode()),
    "oversize": ("too_large", "gallery/enroll", lambda r: b"{" + b" " * (4 * 1024 * 1024) + b"}"),
    "malformed JSON": ("malformed", "gallery/remove", lambda r: b'{"request_id": "x", "person_id": '),
    "not an object": ("malformed", "gallery/remove", lambda r: b'["obama"]'),
    "not UTF-8": ("malformed", "gallery/remove", lambda r: b'{"request_id": "\xff"}'),
    "duplicate keys": ("malformed", "gallery/remove",
                       lambda r: b'{"person_id": "someone", "person_id": "obama", "request_id": "x"}'),
    "wrong types": ("invalid", "gallery/list", lambda r: json.dumps(
        r.sign("gallery/list", {"request_id": "x", "include_deleted": "yes"})).encode()),
    "wrong type of patch": ("invalid", "config/set", lambda r: json.dumps(
        r.sign("config/set", {"request_id": "x", "patch": "recognition.threshold=0"})).encode()),
    "unknown keys": ("invalid", "gallery/remove", lambda r: json.dumps(
        r.sign("gallery/remove", {"request_id": "x", "person_id": "obama", "cascade": True})).encode()),
    "path instead of photo": ("nothing_enrolled", "gallery/enroll", lambda r: json.dumps(
        r.sign("gallery/enroll", {"request_id": "x", "person_id": "mallory", "name": "M",
                                  "photos": [{"image": "/etc/passwd"}]})).encode()),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_rejections_change_nothing_and_the_handler_stays_alive(
    rig: Rig, case: str, samples_dir: Path
) -> None:
    enrolled = rig.send("gallery/enroll", {"request_id": "setup", "person_id": "obama", "name": "Barack Obama",
                                           "photos": [{"image": encode_photo(samples_dir / "obama.jpg")}]})
    assert enrolled.ok
    before = rig.state()
    code, kind, make = REJECTIONS[case]
    result = rig.send(kind, make(rig))
    assert not result.ok and result.code == code, result.payload
    assert rig.state() == before
    # still alive and acting on valid commands
    ok = rig.send("gallery/rename", {"request_id": "after", "person_id": "obama", "name": "Obama"})
    assert ok.ok and rig.gallery.person("obama").name == "Obama"


def test_replayed_command_is_rejected(rig: Rig) -> None:
    raw = json.dumps(rig.sign("config/set", {"request_id": "once", "patch": {"stats": {"interval_s": 7}}})).encode()
    assert rig.handler.handle("config/set", raw).ok
    before = rig.state()
    again = rig.handler.handle("config/set", raw)
    assert again.code == "replayed" and again.request_id == "once"
    assert rig.state() == before


def test_rate_limit(tmp_path: Path, engine: FaceEngine) -> None:
    clock_now = [0.0]
    rig = make_rig(tmp_path, engine, rate_limiter=TokenBucket(1 / 60, 2, clock=lambda: clock_now[0]))
    try:
        assert rig.send("gallery/list", {"request_id": "a"}).ok
        assert rig.send("gallery/list", {"request_id": "b"}).ok
        limited = rig.send("gallery/list", {"request_id": "c"})
        assert limited.code == "rate_limited"
        assert 55 <= json.loads(limited.to_json())["error"]["retry_after_s"] <= 61
        clock_now[0] += 60
        assert rig.send("gallery/list", {"request_id": "d"}).ok
    finally:
        rig.gallery.close()


def test_unavailable_collaborators(tmp_path: Path) -> None:
    topics = Topics("door1", prefix="t")
    guard = ReplayGuard(30.0, path=tmp_path / "n.json")
    handler = CommandHandler(topics=topics, verifier=CommandVerifier(SigningKey(SECRET), replay_guard=guard))
    for kind, body in (("config/get", {}), ("gallery/list", {}),
                       ("gallery/enroll", {"person_id": "a", "name": "A", "photos": [{"image": "aGVsbG8="}]})):
        signed = sign_command(body, SECRET, topic=command_topic(topics, kind))  # type: ignore[arg-type]
        assert handler.handle(kind, json.dumps(signed).encode()).code == "unavailable"  # type: ignore[arg-type]


# --- enrolment -------------------------------------------------------------------------------------


def test_enroll_reports_each_photo(rig: Rig, samples_dir: Path, coffee_bgr: ImageBGR) -> None:
    obama = load_image(samples_dir / "obama.jpg")
    biden = load_image(samples_dir / "biden.jpg")
    h = obama.shape[0]
    two = np.hstack([obama, cv2.resize(biden, (round(biden.shape[1] * h / biden.shape[0]), h))])
    bmp = base64.b64encode(cv2.imencode(".bmp", obama[:64, :64])[1].tobytes()).decode()
    photos = [
        {"image": encode_photo(samples_dir / "obama.jpg"), "label": "obama.jpg"},
        {"image": "data:image/jpeg;base64," + encode_photo(samples_dir / "obama2.jpg"), "label": "obama2.jpg"},
        {"image": _jpeg(two), "label": "group"},
        {"image": _jpeg(coffee_bgr), "label": "coffee"},
        {"image": _jpeg(cv2.GaussianBlur(obama, (61, 61), 0)), "label": "blurred"},
        {"image": base64.b64encode(b"\xff\xd8\xff" + bytes(range(256)) * 4).decode(), "label": "broken"},
        {"image": bmp, "label": "bitmap"},
        {"image": "not base64 !!", "label": "garbage"},
    ]
    result = rig.send("gallery/enroll", {"request_id": "enr-1", "person_id": "obama", "name": "Barack Obama",
                                         "photos": photos, "metadata": {"door": "front"}})
    assert result.ok, result.payload
    outcome = json.loads(result.to_json())["result"]
    got = {p["label"]: p["outcome"] for p in outcome["photos"]}
    assert got == {
        "obama.jpg": "ok", "obama2.jpg": "ok", "group": "several_faces", "coffee": "no_face",
        "blurred": "low_quality", "broken": "bad_image", "bitmap": "bad_image", "garbage": "bad_image",
    }
    assert outcome["stored"] == 2 and outcome["created"] is True and outcome["version"] == 1
    person = rig.gallery.person("obama")
    assert person.embedding_count == 2 and person.metadata == {"door": "front"}
    assert [c.operation for c in rig.gallery_changes] == ["enroll"]

    # a photo of someone else is an outlier; nothing is stored, the person is unchanged
    before = rig.state()
    wrong = rig.send("gallery/enroll", {"request_id": "enr-2", "person_id": "obama", "name": "Barack Obama",
                                        "photos": [{"image": encode_photo(samples_dir / "biden.jpg"), "label": "b"}]})
    assert wrong.code == "nothing_enrolled"
    report = json.loads(wrong.to_json())["result"]
    assert report["photos"][0]["outcome"] == "outlier" and report["photos"][0]["distance"] > 0.6
    assert rig.state() == before
    # the same photo again is a duplicate
    dup = rig.send("gallery/enroll", {"request_id": "enr-3", "person_id": "obama", "name": "Barack Obama",
                                      "photos": [{"image": encode_photo(samples_dir / "obama.jpg")}]})
    assert dup.code == "nothing_enrolled"
    assert json.loads(dup.to_json())["result"]["photos"][0]["outcome"] == "duplicate"
    assert rig.state() == before
    # a new person whose only photo has no face is not created
    none = rig.send("gallery/enroll", {"request_id": "enr-4", "person_id": "nobody", "name": "Nobody",
                                       "photos": [{"image": _jpeg(coffee_bgr)}]})
    assert none.code == "nothing_enrolled" and rig.state() == before


def test_enroll_refuses_a_hostile_png_from_its_header(rig: Rig) -> None:
    from tests.test_hostile_images import hostile_png

    bomb = base64.b64encode(hostile_png()).decode()
    result = rig.send("gallery/enroll", {"request_id": "enr-bomb", "person_id": "bomb", "name": "Bomb",
                                         "photos": [{"image": bomb, "label": "bomb.png"}]})
    assert result.code == "nothing_enrolled"
    (photo,) = json.loads(result.to_json())["result"]["photos"]
    assert photo["outcome"] == "bad_image"
    assert "20000x20000 image (400 MP) exceeds the 40 MP pixel cap" in photo["detail"]


def test_enroll_precomputed_embeddings(rig: Rig, engine: FaceEngine, samples_dir: Path) -> None:
    faces = engine.represent(load_image(samples_dir / "biden.jpg"))
    assert faces[0].embedding is not None
    vector = faces[0].embedding.vector
    b64 = base64.b64encode(vector.astype("<f4").tobytes()).decode()
    result = rig.send("gallery/enroll", {"request_id": "emb-1", "person_id": "biden", "name": "Joe Biden",
                                         "embeddings": [
                                             {"model_id": engine.model_id, "vector": [float(x) for x in vector],
                                              "label": "list"},
                                             {"model_id": "facenet512", "vector": [0.1] * 512, "label": "other"},
                                             {"model_id": engine.model_id, "vector": [0.0] * 128, "label": "zero"},
                                             {"model_id": engine.model_id, "vector": "@@@@", "label": "bad64"},
                                             {"model_id": engine.model_id, "vector": [0.5] * 127, "label": "short"},
                                         ]})
    assert result.ok, result.payload
    got = {e["label"]: e["outcome"] for e in json.loads(result.to_json())["result"]["embeddings"]}
    assert got == {"list": "ok", "other": "model_mismatch", "zero": "invalid", "bad64": "invalid", "short": "invalid"}
    assert rig.gallery.person("biden").embedding_count == 1
    again = rig.send("gallery/enroll", {"request_id": "emb-2", "person_id": "biden", "name": "Joe Biden",
                                        "embeddings": [{"model_id": engine.model_id, "vector": b64}]})
    assert again.ok and rig.gallery.person("biden").embedding_count == 2


def test_remove_rename_list(rig: Rig, samples_dir: Path) -> None:
    rig.send("gallery/enroll", {"request_id": "e", "person_id": "obama", "name": "Barack Obama",
                                "photos": [{"image": encode_photo(samples_dir / "obama.jpg")}]})
    renamed = rig.send("gallery/rename", {"request_id": "r", "person_id": "obama", "name": "President Obama"})
    assert renamed.ok and json.loads(renamed.to_json())["result"]["version"] == 2
    listed = json.loads(rig.send("gallery/list", {"request_id": "l"}).to_json())["result"]
    assert [(p["person_id"], p["name"], p["embeddings"]) for p in listed["people"]] == [
        ("obama", "President Obama", 1)]
    removed = rig.send("gallery/remove", {"request_id": "d", "person_id": "obama"})
    assert removed.ok and json.loads(removed.to_json())["result"]["version"] == 3
    before = rig.state()
    missing = rig.send("gallery/remove", {"request_id": "d2", "person_id": "obama"})
    assert missing.code == "not_found" and rig.state() == before
    assert rig.send("gallery/rename", {"request_id": "r2", "person_id": "ghost", "name": "G"}).code == "not_found"
    assert json.loads(rig.send("gallery/list", {"request_id": "l2"}).to_json())["result"]["people"] == []
    tomb = json.loads(rig.send("gallery/list", {"request_id": "l3", "include_deleted": True}).to_json())
    assert tomb["result"]["people"][0]["deleted"] is True
    assert [c.operation for c in rig.gallery_changes] == ["enroll", "rename", "remove"]


# --- over a real broker ----------------------------------------------------------------------------


def test_a_reload_republishes_config_state_through_the_subscription(
    tmp_path: Path, mosquitto: MosquittoBroker, topic_prefix: str, mqtt_collector: Callable[..., MqttCollector],
    engine: FaceEngine,
) -> None:
    """config/state follows the configuration at its source (RuntimeConfig.subscribe): a SIGHUP reload
    republishes it with no call from the reload path, and the command handler's hop is not involved."""
    config_path = write_device_config(tmp_path / "door7", device_id="door7", port=mosquitto.port,
                                      prefix=topic_prefix)
    state_topic = f"{topic_prefix}/door7/config/state"
    collector = mqtt_collector(mosquitto, [state_topic])
    changes: list[Any] = []
    device = start_device(config_path, on_config_change=changes.append)
    try:
        assert device.publisher.wait_connected(10)
        first = json.loads(collector.wait_for_count(state_topic, 1)[0].payload)
        assert first["config"]["stats"]["interval_s"] != 7
        config_path.write_text(config_path.read_text() + "stats:\n  interval_s: 7\n")
        device.runtime.reload()
        collector.wait_for(lambda ms: any(json.loads(m.payload)["config"]["stats"]["interval_s"] == 7 for m in ms))
        assert changes == []
    finally:
        device.stop()


def test_over_mqtt_patch_acked_state_redacted_no_secrets_logged(
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    topic_prefix: str,
    mqtt_collector: Callable[..., MqttCollector],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    engine: FaceEngine,
) -> None:
    caplog.set_level(logging.DEBUG)
    directory = tmp_path / "door1"
    directory.mkdir()
    (directory / "mqtt_password").write_text(MQTT_PASSWORD + "\n")
    (directory / "mqtt_password").chmod(0o600)
    config_path = write_device_config(directory, device_id="door1", port=mosquitto.port, prefix=topic_prefix,
                                      extra=CAMERA_EXTRA)
    credentials = "  keepalive: 5\n  username: door1\n  password: !secret_file mqtt_password\n"
    config_path.write_text(config_path.read_text().replace("  keepalive: 5\n", credentials))
    base = f"{topic_prefix}/door1"
    collector = mqtt_collector(mosquitto, [f"{base}/config/#"])
    device = start_device(config_path)
    try:
        assert device.publisher.wait_connected(10)
        state_msgs = collector.wait_for_count(f"{base}/config/state", 1)
        first_state = json.loads(state_msgs[0].payload)
        assert first_state["config"]["recognition"]["threshold"] is None
        assert first_state["config"]["mqtt"]["password"] == "**********"

        def command(kind: CommandKind, body: dict[str, Any], secret: str = SECRET) -> dict[str, Any]:
            signed = sign_command(body, secret, topic=command_topic(device.topics, kind))
            collector.client.publish(command_topic(device.topics, kind), json.dumps(signed), qos=1)
            msgs = collector.wait_for(lambda ms: any(m.topic.endswith("/result") and json.loads(m.payload).get(
                "request_id") == body["request_id"] for m in ms))
            return next(json.loads(m.payload) for m in msgs if m.topic.endswith("/result")
                        and json.loads(m.payload).get("request_id") == body["request_id"])

        ack = command("config/set", {"request_id": "mq-1", "patch": {"recognition": {"threshold": 0.45}}})
        assert ack["ok"] is True and ack["result"]["changed"] == ["recognition.threshold"]
        collector.wait_for(lambda ms: any(m.topic == f"{base}/config/state"
                                          and json.loads(m.payload)["config"]["recognition"]["threshold"] == 0.45
                                          for m in ms))
        assert device.runtime.config.recognition.threshold == 0.45

        bad = command("config/set", {"request_id": "mq-2", "patch": {"recognition": {"threshold": -1}}})
        assert bad["ok"] is False and bad["error"]["code"] == "invalid"
        assert bad["error"]["fields"][0]["loc"] == "patch.recognition.threshold"
        forged = command("config/set", {"request_id": "mq-3", "patch": {"recognition": {"threshold": 0.9}}},
                         secret="not-the-fleet-secret-at-all")
        assert forged["error"]["code"] == "bad_signature"
        assert device.runtime.config.recognition.threshold == 0.45

        retained = retained_value(mosquitto, f"{base}/config/state")
        assert retained is not None
        state = json.loads(retained)
        assert state["config"]["recognition"]["threshold"] == 0.45
        assert state["overrides"] == {"recognition": {"threshold": 0.45}}
        _validator("config_state.schema.json").validate(state)
        everything = b"".join(m.payload for m in collector.messages())
        for secret in (MQTT_PASSWORD, CAMERA_PASSWORD, SECRET):
            assert secret.encode() not in everything
            assert secret not in caplog.text

        # the operator's CLI: sign, publish, wait for the result
        secret_file = tmp_path / "operator-secret"
        secret_file.write_text(SECRET + "\n")
        secret_file.chmod(0o600)
        capsys.readouterr()
        with root_logging_restored():
            code = cli_main(["sign", "--secret-file", str(secret_file), "--topic", f"{base}/config/get",
                             "--publish", "--host", mosquitto.host, "--port", str(mosquitto.port), "--wait", "10",
                             '{"request_id": "cli-1"}'])
        out = capsys.readouterr().out
        assert code == 0, out
        answer = json.loads(out.split("\n", 1)[1])
        assert answer["ok"] is True and answer["request_id"] == "cli-1"
        assert answer["result"]["config"]["recognition"]["threshold"] == 0.45
        with root_logging_restored():
            code = cli_main(["sign", "--secret-file", str(secret_file), "--topic", f"{base}/gallery/remove",
                             "--publish", "--host", mosquitto.host, "--port", str(mosquitto.port), "--wait", "10",
                             '{"request_id": "cli-2", "person_id": "nobody"}'])
        out += capsys.readouterr().out
        assert code == 1 and '"not_found"' in out
        assert MQTT_PASSWORD not in out and CAMERA_PASSWORD not in out
    finally:
        device.stop()
    # the overlay survives a restart: replayed at start-up
    assert RuntimeConfig.open(config_path).config.recognition.threshold == 0.45
