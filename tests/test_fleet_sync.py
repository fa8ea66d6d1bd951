"""Fleet gallery sync over a real Mosquitto broker: two device processes converge, including a device
that was offline; deletions propagate as tombstones; forged, foreign and stale records are handled."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from facegate.engine import FaceEngine, get_engine
from facegate.errors import ModelNotInstalledError
from facegate.events.mqtt import InboundMessage
from facegate.gallery.records import EmbeddingRecord, PersonRecord
from facegate.images import load_image
from facegate.remote.commands import command_topic
from facegate.remote.fleet import FleetSync
from facegate.remote.schemas import FleetMessage
from facegate.remote.signing import SigningKey, sign, sign_command
from tests.conftest import REPO_ROOT
from tests.fixtures.mosquitto import MosquittoBroker, MqttCollector, retained_value
from tests.fixtures.remote_device import (
    SECRET,
    Device,
    DeviceProcess,
    encode_photo,
    start_device,
    write_device_config,
)

jsonschema = pytest.importorskip("jsonschema")
FLEET_SCHEMA = json.loads((REPO_ROOT / "config" / "commands" / "fleet_record.schema.json").read_text())


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    try:
        return get_engine()
    except ModelNotInstalledError as err:
        pytest.skip(f"face models not installed: {err}")


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


class Controller:
    """The operator's side: signs commands, publishes them and waits for the results."""

    def __init__(self, collector: MqttCollector, prefix: str) -> None:
        self.collector = collector
        self.prefix = prefix

    def send(self, device_id: str, kind: Any, body: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        from facegate.events.topics import Topics

        topics = Topics(device_id, prefix=self.prefix)
        signed = sign_command(body, SECRET, topic=command_topic(topics, kind))
        info = self.collector.client.publish(command_topic(topics, kind), json.dumps(signed), qos=1)
        info.wait_for_publish(10)

        def mine(m: Any) -> bool:
            return bool(m.topic.endswith("/result") and json.loads(m.payload).get("request_id") == signed["request_id"])

        msgs = self.collector.wait_for(lambda ms: any(mine(m) for m in ms), timeout)
        result: dict[str, Any] = json.loads(next(m for m in msgs if mine(m)).payload)
        return result


def _signed_message(record: PersonRecord, *, origin: str, topic: str, secret: str = SECRET) -> bytes:
    body = FleetMessage(origin=origin, record=record).model_dump(mode="json", exclude={"sig"})
    return json.dumps(sign(body, SigningKey(secret), topic=topic, context="fleet")).encode()


def _publish(broker: MosquittoBroker, topic: str, payload: bytes, retain: bool = True) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"forger-{time.monotonic_ns()}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def device_a(tmp_path: Path, mosquitto: MosquittoBroker, topic_prefix: str, engine: FaceEngine) -> Iterator[Device]:
    config = write_device_config(tmp_path / "a", device_id="door1", port=mosquitto.port, prefix=topic_prefix)
    device = start_device(config)
    assert device.publisher.wait_connected(10)
    yield device
    device.stop()


def test_records_are_signed_retained_and_order_by_version_then_device(
    device_a: Device, mosquitto: MosquittoBroker, topic_prefix: str, samples_dir: Path,
    caplog: pytest.LogCaptureFixture, engine: FaceEngine,
) -> None:
    caplog.set_level(logging.INFO)
    fleet = device_a.remote.fleet
    assert isinstance(fleet, FleetSync)
    handler = device_a.remote.handler
    assert handler is not None
    topics = device_a.topics
    enrol = sign_command({"person_id": "obama", "name": "Barack Obama",
                          "photos": [{"image": encode_photo(samples_dir / "obama.jpg")}]},
                         SECRET, topic=topics.gallery_enroll)
    assert handler.handle("gallery/enroll", json.dumps(enrol).encode()).ok
    obama_topic = topics.fleet_gallery("hq", "obama")

    def retained() -> dict[str, Any] | None:
        raw = retained_value(mosquitto, obama_topic, timeout=1.0)
        return None if not raw else json.loads(raw)

    wait_until(lambda: (r := retained()) is not None and r["record"]["version"] == 1, what="record retained")
    message = retained()
    assert message is not None
    jsonschema.validate(message, FLEET_SCHEMA)
    assert message["origin"] == "door1" and len(message["record"]["embeddings"]) == 1
    # the device's own record comes back as an echo and changes nothing
    raw = json.dumps(message).encode()
    assert fleet.handle_message(InboundMessage(obama_topic, raw, 1, True)).action == "echo"

    # forged, unsigned and mismatched records are ignored
    record = device_a.gallery.record("obama")
    takeover = record.model_copy(update={"name": "Mallory", "version": 99, "updated_by": "door9"})
    revision = device_a.gallery.revision
    forged = _signed_message(takeover, origin="door9", topic=obama_topic, secret="attacker-secret-0123456789")
    unsigned = json.dumps(FleetMessage(origin="door9", record=takeover).model_dump(
        mode="json", exclude={"sig"})).encode()
    elsewhere = _signed_message(takeover, origin="door9", topic=topics.fleet_gallery("hq", "someone"))
    for payload, topic in ((forged, obama_topic), (unsigned, obama_topic),
                           (elsewhere, topics.fleet_gallery("hq", "someone")), (b"{", obama_topic)):
        assert fleet.handle_message(InboundMessage(topic, payload, 1, False)).action == "ignored"
    assert device_a.gallery.revision == revision and device_a.gallery.person("obama").name == "Barack Obama"

    # an older record retained by someone (e.g. a device that was offline) is corrected at once
    older = record.model_copy(update={"version": 0, "updated_by": "zzz", "name": "Old Name"})
    _publish(mosquitto, obama_topic, _signed_message(older, origin="door7", topic=obama_topic))
    wait_until(lambda: (r := retained()) is not None and r["record"]["version"] == 1 and r["origin"] == "door1",
               what="stale record republished")
    assert device_a.gallery.person("obama").name == "Barack Obama"

    # a newer record wins; equal versions are ordered by device id
    newer = record.model_copy(update={"version": 2, "updated_by": "door0", "name": "Obama (door0)"})
    _publish(mosquitto, obama_topic, _signed_message(newer, origin="door0", topic=obama_topic))
    wait_until(lambda: device_a.gallery.person("obama").name == "Obama (door0)", what="newer record applied")
    tie = record.model_copy(update={"version": 2, "updated_by": "door2", "name": "Obama (door2)"})
    _publish(mosquitto, obama_topic, _signed_message(tie, origin="door2", topic=obama_topic))
    wait_until(lambda: device_a.gallery.person("obama").name == "Obama (door2)", what="tie broken by device id")
    assert device_a.gallery.person("obama").embedding_count == 1

    # a record of another embedding model: applied without its embeddings, with a warning
    vector = base64.b64encode(np.full(512, 0.1, dtype="<f4").tobytes()).decode()
    carol = PersonRecord(person_id="carol", name="Carol", version=3, updated_at=time.time(), updated_by="door5",
                         embeddings=[EmbeddingRecord(model_id="facenet512", dim=512, vector=vector)])
    carol_topic = topics.fleet_gallery("hq", "carol")
    _publish(mosquitto, carol_topic, _signed_message(carol, origin="door5", topic=carol_topic))
    wait_until(lambda: any(p.person_id == "carol" for p in device_a.gallery.people()), what="carol applied")
    person = device_a.gallery.person("carol")
    assert person.version == 3 and person.embedding_count == 0
    assert "facenet512" in caplog.text and "ignoring them" in caplog.text

    # a cleared retained record is published again
    _publish(mosquitto, obama_topic, b"")
    wait_until(lambda: (r := retained()) is not None and r["record"]["name"] == "Obama (door2)",
               what="cleared record restored")


def enrol(person_id: str, name: str, photo: Path) -> dict[str, Any]:
    return {"person_id": person_id, "name": name, "photos": [{"image": encode_photo(photo)}]}


def _flipped(path: Path, out: Path) -> Path:
    cv2.imwrite(str(out), cv2.flip(load_image(path), 1))
    return out


@pytest.mark.slow
def test_two_device_processes_converge_including_offline_device_and_tombstones(
    tmp_path: Path, mosquitto_private: MosquittoBroker, topic_prefix: str,
    mqtt_collector: Callable[..., MqttCollector], samples_dir: Path, engine: FaceEngine,
) -> None:
    broker = mosquitto_private
    a = DeviceProcess(write_device_config(tmp_path / "a", device_id="door1", port=broker.port, prefix=topic_prefix),
                      tmp_path / "a.log")
    b = DeviceProcess(write_device_config(tmp_path / "b", device_id="door2", port=broker.port, prefix=topic_prefix),
                      tmp_path / "b.log")
    controller = Controller(mqtt_collector(broker, [f"{topic_prefix}/+/gallery/+/result"]), topic_prefix)
    biden_probe = _flipped(samples_dir / "biden.jpg", tmp_path / "biden_mirror.jpg")
    timings: dict[str, float] = {}
    try:
        a.start()
        b.start()
        assert a.ask("connected 10") == "connected" and b.ask("connected 10") == "connected"
        assert b.ask(f"who {samples_dir / 'obama2.jpg'}") == "unknown"

        # enrolment on A is recognised by B (a different photo of the person)
        result = controller.send("door1", "gallery/enroll", enrol("obama", "Barack Obama", samples_dir / "obama.jpg"))
        assert result["ok"] is True, result
        timings["online enrol -> recognised on B"] = b.wait_for(f"who {samples_dir / 'obama2.jpg'}", "obama", 20)

        # B is offline while A enrols biden and deletes obama
        b.stop()
        assert controller.send("door1", "gallery/enroll", enrol("biden", "Joe Biden", samples_dir / "biden.jpg"))["ok"]
        assert controller.send("door1", "gallery/remove", {"person_id": "obama"})["ok"]
        assert a.ask(f"who {samples_dir / 'obama2.jpg'}") == "unknown"
        started = time.monotonic()
        b.start()
        timings["restart of B -> biden recognised"] = b.wait_for(f"who {biden_probe}", "biden", 30) + (
            time.monotonic() - started)
        b.wait_for(f"who {samples_dir / 'obama2.jpg'}", "unknown", 10)  # the tombstone reached B too
        assert json.loads(b.ask("people")) == ["biden"]

        # a deletion while both are online; and an enrolment on B reaches A
        again = enrol("obama", "Barack Obama", samples_dir / "obama3.jpg")
        assert controller.send("door2", "gallery/enroll", again)["ok"]
        timings["enrol on B -> recognised on A"] = a.wait_for(f"who {samples_dir / 'obama2.jpg'}", "obama", 20)
        assert controller.send("door1", "gallery/remove", {"person_id": "biden"})["ok"]
        timings["delete on A -> gone on B"] = b.wait_for("people", json.dumps(["obama"]), 20)
        print("fleet propagation:", {k: round(v, 2) for k, v in timings.items()})  # noqa: T201
    finally:
        a.stop()
        b.stop()
