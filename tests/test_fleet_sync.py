"""Fleet gallery sync over a real Mosquitto broker: two `facegate run` daemons converge, including one
that was offline; deletions propagate as tombstones; forged, foreign and stale records are handled."""

from __future__ import annotations

import base64
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from facegate.engine import FaceEngine
from facegate.errors import CommandError
from facegate.events.mqtt import InboundMessage
from facegate.gallery.records import EmbeddingRecord, PersonRecord
from facegate.images import load_image
from facegate.remote.commands import command_topic
from facegate.remote.fleet import FleetSync
from facegate.remote.schemas import FleetMessage
from facegate.remote.signing import SigningKey, sign, sign_command, verify_event
from tests.conftest import REPO_ROOT
from tests.fixtures.mosquitto import MosquittoBroker, MqttCollector, retained_value
from tests.fixtures.remote_device import (
    SECRET,
    Device,
    encode_photo,
    start_device,
    write_device_config,
)
from tests.fixtures.waiting import wait_until

jsonschema = pytest.importorskip("jsonschema")
FLEET_SCHEMA = json.loads((REPO_ROOT / "config" / "commands" / "fleet_record.schema.json").read_text())


class Controller:
    """The operator's side: signs commands, publishes them and waits for the results."""

    def __init__(self, collector: MqttCollector, prefix: str) -> None:
        self.collector = collector
        self.prefix = prefix

    def send(self, device_id: str, kind: Any, body: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
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


def _frames(samples_dir: Path, out: Path) -> Path:
    """A looping 4 s "door camera" sequence at 8 fps: obama2 on the left (0.5 s), nobody (1.5 s), biden
    (mirrored) on the right (0.5 s), nobody (1.5 s). Every appearance is a new track (the gaps exceed
    track_max_age_s) with 4 frames: enough votes for a recognition (3), too few for "unknown" (6).
    """
    import skimage.data

    def place(image: Any, left: bool) -> Any:
        canvas = np.full((360, 640, 3), 90, np.uint8)
        if image is None:
            return canvas
        h, w = image.shape[:2]
        scale = min(320 / w, 360 / h)
        small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        x = (320 - small.shape[1]) // 2 + (0 if left else 320)
        y = (360 - small.shape[0]) // 2
        canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
        return canvas

    obama = place(load_image(samples_dir / "obama2.jpg"), left=True)
    # biden.jpg is a tall portrait: crop around the face so it is not tiny in a 640x360 frame
    biden = place(cv2.flip(load_image(samples_dir / "biden.jpg")[50:750, 250:950], 1), left=False)
    coffee = np.ascontiguousarray(skimage.data.coffee()[:, :, ::-1])  # type: ignore[no-untyped-call]
    empty = cv2.resize(coffee, (640, 360), interpolation=cv2.INTER_AREA)
    out.mkdir(parents=True)
    for i, frame in enumerate([obama] * 4 + [empty] * 12 + [biden] * 4 + [empty] * 12):
        cv2.imwrite(str(out / f"{i:03d}.jpg"), frame)
    return out


class Daemon:
    """``facegate run`` in a child process."""

    def __init__(self, directory: Path, device_id: str, port: int, prefix: str, frames: Path,
                 event_key: str | None = None) -> None:
        camera = f"""\
cameras:
  - id: door
    source: {{type: replay, path: {frames}, fps: 8, loop: true}}
decision:
  cooldown_s: 0
  track_max_age_s: 0.5
"""
        security = ""
        if event_key is not None:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "event_key").write_text(event_key)
            (directory / "event_key").chmod(0o600)
            security = "  sign_events: true\n  event_key_credential: null\n  event_key_file: ./event_key\n"
        self.config = write_device_config(directory, device_id=device_id, port=port, prefix=prefix, extra=camera,
                                          security_extra=security)
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.directory / "daemon.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "facegate", "-v", "run", "-c", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=log, cwd=self.directory)
        log.close()

    def stop(self) -> int:
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise

    def log(self) -> str:
        return (self.directory / "daemon.log").read_text(errors="replace")[-4000:]


@pytest.mark.slow
def test_two_facegate_run_processes_converge_including_offline_device_and_tombstones(
    tmp_path: Path, mosquitto_private: MosquittoBroker, topic_prefix: str,
    mqtt_collector: Callable[..., MqttCollector], samples_dir: Path, engine: FaceEngine,
) -> None:
    broker = mosquitto_private
    frames = _frames(samples_dir, tmp_path / "frames")
    event_key = "door1-event-key-0123456789abcdef"
    a = Daemon(tmp_path / "a", "door1", broker.port, topic_prefix, frames, event_key=event_key)
    b = Daemon(tmp_path / "b", "door2", broker.port, topic_prefix, frames)
    collector = mqtt_collector(broker, [f"{topic_prefix}/+/event", f"{topic_prefix}/+/status",
                                        f"{topic_prefix}/+/config/state", f"{topic_prefix}/+/gallery/+/result",
                                        f"{topic_prefix}/+/config/result"])
    controller = Controller(collector, topic_prefix)
    timings: dict[str, float] = {}

    def recognized(device: str, person: str, since: float) -> Callable[[list[Any]], bool]:
        def check(messages: list[Any]) -> bool:
            return any(m.topic == f"{topic_prefix}/{device}/event" and m.received >= since
                       and json.loads(m.payload)["type"] == "recognized"
                       and json.loads(m.payload)["person_id"] == person for m in messages)
        return check

    def status(device: str, value: bytes, since: float) -> Callable[[list[Any]], bool]:
        return lambda ms: any(m.topic == f"{topic_prefix}/{device}/status" and m.payload == value
                              and m.received >= since for m in ms)

    def ready(device: str, since: float) -> Callable[[list[Any]], bool]:
        # config/state is published after the command subscriptions on the same connection, so once it
        # arrives the device cannot miss a command ("online" is published before subscribing)
        return lambda ms: any(m.topic == f"{topic_prefix}/{device}/config/state" and m.received >= since
                              for m in ms)

    def people(device: str) -> list[str]:
        listed = controller.send(device, "gallery/list", {})
        return [p["person_id"] for p in listed["result"]["people"]]

    try:
        t0 = time.monotonic()
        a.start()
        b.start()
        collector.wait_for(ready("door1", t0), 60)
        collector.wait_for(ready("door2", t0), 60)
        assert people("door2") == []

        # enrolment on A (one photo) is recognised by B's camera (another photo of the person)
        first = enrol("obama", "Barack Obama", samples_dir / "obama.jpg")
        assert controller.send("door1", "gallery/enroll", first)["ok"]
        t1 = time.monotonic()
        collector.wait_for(recognized("door2", "obama", t1), 30)
        timings["enrol on A -> B recognizes"] = time.monotonic() - t1

        # B is offline while A enrols biden and deletes obama; B catches up when it comes back
        t2 = time.monotonic()
        assert b.stop() == 0
        collector.wait_for(status("door2", b"stopped", t2), 10)
        biden = enrol("biden", "Joe Biden", samples_dir / "biden.jpg")
        assert controller.send("door1", "gallery/enroll", biden)["ok"]
        assert controller.send("door1", "gallery/remove", {"person_id": "obama"})["ok"]
        t3 = time.monotonic()
        b.start()
        collector.wait_for(ready("door2", t3), 60)
        collector.wait_for(recognized("door2", "biden", t3), 30)
        t_biden = time.monotonic()
        timings["B restarted (incl. model load) -> B recognizes biden"] = t_biden - t3
        assert people("door2") == ["biden"]
        # biden recognized once more: B's camera went through a full loop, which shows obama too
        collector.wait_for(recognized("door2", "biden", t_biden), 30)
        assert not recognized("door2", "obama", t3)(collector.messages()), "the tombstone did not reach B"

        # an enrolment on B reaches A; a deletion on A reaches B while both are online
        again = enrol("obama", "Barack Obama", samples_dir / "obama3.jpg")
        assert controller.send("door2", "gallery/enroll", again)["ok"]
        t4 = time.monotonic()
        collector.wait_for(recognized("door1", "obama", t4), 30)
        timings["enrol on B -> A recognizes"] = time.monotonic() - t4
        # door1 signs its events; a lock controller verifies origin and freshness
        event = next(m for m in collector.messages() if m.topic == f"{topic_prefix}/door1/event")
        verified = verify_event(event.payload, event_key, topic=event.topic, max_age_s=120)
        assert verified["device_id"] == "door1" and len(verified["sig"]) == 64
        with pytest.raises(CommandError):
            verify_event(event.payload, "another-device-key-0123456789", topic=event.topic, max_age_s=120)
        assert all(json.loads(m.payload)["sig"] is None for m in collector.messages()
                   if m.topic == f"{topic_prefix}/door2/event")
        assert controller.send("door1", "gallery/remove", {"person_id": "biden"})["ok"]
        t5 = time.monotonic()
        wait_until(lambda: people("door2") == ["obama"], 20, "biden's tombstone on B")
        timings["delete on A -> gone on B"] = time.monotonic() - t5

        # a live config change goes through the frame loop: a strict threshold stops the recognitions
        strict = controller.send("door1", "config/set", {"patch": {"recognition": {"threshold": 0.2}}})
        assert strict["ok"] and strict["result"]["changed"] == ["recognition.threshold"], strict
        # the patch is applied between two frames (the frame loop drains its queue at least every 0.5 s)
        t6 = time.monotonic() + 1.0
        # B (same frames, same pace, threshold unchanged) recognizes obama on two loops of the camera:
        # A's camera has shown obama at least once meanwhile
        collector.wait_for(recognized("door2", "obama", t6), 30)
        t_b = time.monotonic()
        collector.wait_for(recognized("door2", "obama", t_b), 30)
        assert not recognized("door1", "obama", t6)(collector.messages()), "threshold 0.2 not applied live"
        reset = controller.send("door1", "config/set", {"patch": {"recognition": {"threshold": None}}})
        assert reset["ok"], reset
        collector.wait_for(recognized("door1", "obama", time.monotonic()), 15)
        print("fleet propagation:", {k: round(v, 2) for k, v in timings.items()})  # noqa: T201
    except BaseException:
        print("A:", a.log(), "\nB:", b.log())  # noqa: T201
        raise
    finally:
        codes = (a.stop(), b.stop())
    assert codes == (0, 0)
