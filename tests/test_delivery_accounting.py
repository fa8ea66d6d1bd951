"""What the daemon claims about delivery is true: an event is printed only once it is in the on-disk spool,
``mqtt.dropped`` counts only lost events, and a command flood is counted and answered ``busy``. Real spool
files, a real Mosquitto broker, the real daemon and device."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from facegate.capture.synthetic import demo_frames, write_image_folder
from facegate.config.models import FacegateConfig
from facegate.events.mqtt import InboundMessage, MqttPublisher, MqttSettings
from facegate.events.spool import Spool
from facegate.events.topics import Topics
from facegate.remote.signing import sign_command
from facegate.service import Service
from tests.fixtures.mjpeg import closed_port
from tests.fixtures.mosquitto import MosquittoBroker, MqttCollector
from tests.fixtures.remote_device import SECRET, start_device, write_device_config


class SpoolWitness(io.StringIO):
    """stdout of the daemon that looks into the spool file at the moment each event line is written."""

    def __init__(self, spool: Path) -> None:
        super().__init__()
        self.spool = spool
        self.printed: list[tuple[str, bool]] = []  # (event_id, already in the spool when printed)

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.startswith("{"):
                event_id = json.loads(line)["event_id"]
                with sqlite3.connect(f"file:{self.spool}?mode=ro", uri=True) as db:
                    row = db.execute("SELECT 1 FROM outbox WHERE event_id = ?", (event_id,)).fetchone()
                self.printed.append((event_id, row is not None))
        return super().write(text)


def test_an_event_is_printed_only_after_it_is_in_the_spool(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    write_image_folder(demo_frames(("obama2.jpg", "biden.jpg")).frames, frames)
    config = FacegateConfig.model_validate({
        "state_dir": str(tmp_path / "state"),
        "cameras": [{"id": "hall", "source": {"type": "replay", "path": str(frames), "fps": "as_fast_as_possible"}}],
        # the broker is unreachable, so every event stays in the spool where the witness can see it
        "mqtt": {"host": "127.0.0.1", "port": closed_port()},
        "homeassistant": {"enabled": False},
    })
    witness = SpoolWitness(config.paths.spool)
    service = Service(config, stdout=witness, lossless=True)
    service.ready_timeout_s = 0.0
    assert service.run() == 0
    assert len(witness.printed) >= 2, "the replay shows two strangers"
    assert all(in_spool for _, in_spool in witness.printed), witness.printed


def test_dropped_counts_only_events(tmp_path: Path, topic_prefix: str) -> None:
    topics = Topics("door1", prefix=topic_prefix)
    spool = Spool(tmp_path / "spool.db", max_messages=2, drop_policy="drop_oldest")
    publisher = MqttPublisher(topics, MqttSettings(host="127.0.0.1", port=closed_port()), spool=spool, own_spool=True)
    publisher.start()
    try:
        for i in range(3):  # one more than the spool holds: one event lost
            publisher.publish_event({"event_id": f"e{i}", "type": "unknown"})
        for _ in range(2):  # stats while offline: not sent, but no event was lost by it
            assert publisher.publish_message(topics.stats, {"fps": 1.0}) is False
        for i in range(1001):  # one state update more than the offline backlog keeps
            publisher.publish_state(topics.presence("alice"), {"present": i % 2 == 0})
        counters = publisher.counters()
    finally:
        publisher.stop(timeout=0.2)
    assert (counters.dropped, counters.messages_dropped, counters.states_dropped) == (1, 2, 1)
    stats = counters.to_payload()
    assert (stats.dropped, stats.messages_dropped, stats.states_dropped) == (1, 2, 1)


def test_flooded_command_queue_answers_busy_and_counts(
    tmp_path: Path, mosquitto: MosquittoBroker, topic_prefix: str
) -> None:
    """The dispatcher is held up (as by a slow enrolment) while 80 commands arrive: 64 wait in the queue,
    every other one is answered ``busy`` with its request id, counted, and nothing else happens to it."""
    config_path = write_device_config(tmp_path / "door1", device_id="door1", port=mosquitto.port, prefix=topic_prefix)
    device = start_device(config_path)
    release = threading.Event()
    topic = device.topics.gallery_list

    def hold(_message: InboundMessage) -> None:  # runs after the real handler and holds the dispatcher
        release.wait(30)

    device.publisher.subscribe(topic, hold)
    collector = MqttCollector(mosquitto, [f"{topic}/result", f"{device.topics.config_state}"])
    sender = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{uuid.uuid4().hex[:8]}")
    sender.connect(mosquitto.host, mosquitto.port)
    sender.loop_start()
    sent = [f"req-{i:03d}" for i in range(80)]
    try:
        # config/state follows the command subscriptions on the same connection: after it none is missed
        collector.wait_for_count(device.topics.config_state, 1, timeout=10)
        for request_id in sent:
            signed = sign_command({"request_id": request_id}, SECRET, topic=topic)
            sender.publish(topic, json.dumps(signed), qos=1).wait_for_publish(5)
        # every command has reached the device once the count of those turned away stops moving (the
        # dispatcher may or may not have taken the first one off the queue: 14 to 16)
        deadline = time.monotonic() + 10
        dropped, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now_dropped = device.publisher.counters().commands_dropped
            if now_dropped != dropped:
                dropped, stable_since = now_dropped, time.monotonic()
            elif dropped >= len(sent) - 66 and time.monotonic() - stable_since > 0.5:
                break
            time.sleep(0.02)
        busy = collector.wait_for(lambda ms: sum(b'"busy"' in m.payload for m in ms) >= dropped, timeout=10)
        time.sleep(0.2)  # an extra answer, had there been one, would be here by now
        busy = collector.messages(f"{topic}/result")
    finally:
        release.set()
        sender.disconnect()
        sender.loop_stop()
        device.stop()
    answered = [json.loads(m.payload) for m in busy if b'"busy"' in m.payload]
    assert 80 - 66 <= dropped <= 80 - 64 and len(answered) == dropped
    # the last arrivals were turned away, each told so with its own request id
    assert [a["request_id"] for a in answered] == sent[-dropped:]
    assert all(a["ok"] is False and a["error"]["retry_after_s"] == 1.0 for a in answered)


@pytest.mark.parametrize("payload", [b"\xff" * 10, b'{"request_id": "x y"}', b'{"request_id": "ok-1"'])
def test_busy_reads_only_a_well_formed_request_id(payload: bytes) -> None:
    from facegate.remote.commands import CommandHandler
    from facegate.remote.signing import CommandVerifier, SigningKey

    handler = CommandHandler(topics=Topics("door1"), verifier=CommandVerifier(SigningKey(SECRET)))
    result = handler.busy("gallery/list", payload)
    assert result.code == "busy" and result.topic == Topics("door1").gallery_list_result
    assert result.request_id == ("ok-1" if payload.endswith(b'"ok-1"') else None)
