"""MqttPublisher against a real Mosquitto broker: availability, QoS/retain, outages, restarts, TLS."""

from __future__ import annotations

import dataclasses
import io
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from facegate.errors import ConfigError
from facegate.events.mqtt import InboundMessage, JsonLinesSink, MqttPublisher, MqttSettings, TlsSettings
from facegate.events.payloads import EventPayload, event_payload
from facegate.events.spool import Spool
from facegate.events.topics import Topics
from tests.fixtures.mosquitto import (
    MosquittoBroker,
    MqttCollector,
    ReceivedMessage,
    free_port,
    generate_tls_material,
    retained_value,
    tls_broker,
)
from tests.fixtures.publisher_child import make_event
from tests.fixtures.waiting import wait_until

CHILD = Path(__file__).resolve().parent / "fixtures" / "publisher_child.py"
Collect = Callable[..., MqttCollector]


def settings(port: int, **kw: Any) -> MqttSettings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port, "keepalive": 5, "reconnect_min_s": 1,
                              "reconnect_max_s": 2}
    values.update(kw)
    return MqttSettings(**values)


@pytest.fixture
def publishers() -> Iterator[list[MqttPublisher]]:
    made: list[MqttPublisher] = []
    yield made
    for p in made:
        p.stop(timeout=0.5)


class Child:
    """publisher_child.py in a subprocess, driven over stdin/stdout."""

    def __init__(self, port: int, prefix: str, device_id: str, spool: Path | None = None) -> None:
        cmd = [sys.executable, str(CHILD), "--port", str(port), "--prefix", prefix, "--device-id", device_id]
        if spool is not None:
            cmd += ["--spool", str(spool)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.reply(timeout=20) == "started"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())

    def reply(self, timeout: float = 15) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"child did not answer; stderr: {self.stderr()}") from None

    def ask(self, command: str, timeout: float = 15) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.reply(timeout)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    made: list[Child] = []
    yield made
    for c in made:
        c.close()


def event_ids(messages: list[ReceivedMessage]) -> list[str]:
    return [json.loads(m.payload)["event_id"] for m in messages]


def test_online_then_stopped_on_clean_stop(
    mosquitto: MosquittoBroker, topic_prefix: str, mqtt_collector: Collect
) -> None:
    topics = Topics("door1", prefix=topic_prefix)
    collector = mqtt_collector(mosquitto, [topics.status])
    publisher = MqttPublisher(topics, settings(mosquitto.port))
    publisher.start()
    collector.wait_for_payload(topics.status, "online")
    assert retained_value(mosquitto, topics.status) == b"online"
    publisher.stop()
    collector.wait_for_payload(topics.status, "stopped")
    assert [m.text for m in collector.messages(topics.status)] == ["online", "stopped"]  # no "offline" will
    assert retained_value(mosquitto, topics.status) == b"stopped"


def test_last_will_offline_when_process_is_killed(
    mosquitto: MosquittoBroker, topic_prefix: str, mqtt_collector: Collect, children: list[Child]
) -> None:
    topics = Topics("door2", prefix=topic_prefix)
    collector = mqtt_collector(mosquitto, [topics.status])
    child = Child(mosquitto.port, topic_prefix, "door2")
    children.append(child)
    assert child.ask("connected 10") == "connected"
    collector.wait_for_payload(topics.status, "online")
    child.kill()
    collector.wait_for_payload(topics.status, "offline", timeout=15)
    assert retained_value(mosquitto, topics.status) == b"offline"


def test_events_are_qos1_and_never_retained(
    mosquitto: MosquittoBroker, topic_prefix: str, mqtt_collector: Collect, publishers: list[MqttPublisher]
) -> None:
    topics = Topics("door3", prefix=topic_prefix)
    collector = mqtt_collector(mosquitto, [topics.event], qos=1)
    publisher = MqttPublisher(topics, settings(mosquitto.port))
    publishers.append(publisher)
    publisher.start()
    for i in range(3):
        assert publisher.publish_face_event(make_event(f"ev-{i}", i)) is not None
    messages = collector.wait_for_count(topics.event, 3)
    assert event_ids(messages) == ["ev-0", "ev-1", "ev-2"]
    for m in messages:
        assert m.qos == 1 and m.retain is False
        payload = EventPayload.model_validate_json(m.payload)
        assert payload.device_id == "door3" and payload.type == "unknown"
    assert publisher.flush(5)
    assert retained_value(mosquitto, topics.event, timeout=1.0) is None
    c = publisher.counters()
    assert (c.published, c.spooled, c.spool_depth, c.dropped) == (3, 3, 0, 0)


@pytest.mark.slow
def test_broker_outage_loses_nothing_keeps_order_and_sends_late_events_to_history(
    mosquitto_private: MosquittoBroker,
    topic_prefix: str,
    mqtt_collector: Collect,
    publishers: list[MqttPublisher],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    broker = mosquitto_private
    topics = Topics("door4", prefix=topic_prefix)
    # Persistent session: the broker queues events for the collector while it reconnects after the restart.
    collector = mqtt_collector(broker, [topics.event, topics.history], persistent=True,
                               client_id=f"col-{topic_prefix}")
    publisher = MqttPublisher(topics, settings(broker.port), spool=Spool(tmp_path / "spool.db"), own_spool=True)
    publishers.append(publisher)
    publisher.start()
    assert publisher.wait_connected(10)

    produced: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            event_id = f"ev-{i:04d}"
            assert publisher.publish_face_event(make_event(event_id, i)) is not None
            produced.append(event_id)
            i += 1
            time.sleep(0.05)

    producer = threading.Thread(target=produce)
    producer.start()
    collector.wait_for(lambda ms: len(event_ids(ms)) >= 20, timeout=20)  # delivering before the outage
    broker.stop()
    outage_start = len(produced)
    wait_until(lambda: not publisher.is_connected and len(produced) - outage_start >= 120, 30,
               "120 events produced while the broker is down")
    during_outage = len(produced) - outage_start
    depth_at_restart = len(publisher.spool)
    broker.start()
    restart_mark = len(produced)
    # back online and delivering events produced after the restart, not only the spooled ones
    collector.wait_for(lambda ms: f"ev-{restart_mark + 20:04d}" in event_ids(ms), timeout=40)
    stop.set()
    producer.join()

    collector.wait_for(lambda ms: set(event_ids(ms)) >= set(produced), timeout=40)
    assert publisher.flush(10)
    everything = collector.messages()
    received = event_ids(everything)
    first_seen: list[str] = []
    for event_id in received:
        if event_id not in first_seen:
            first_seen.append(event_id)
    duplicates = len(received) - len(first_seen)
    counters = publisher.counters()
    record_property("produced", len(produced))
    record_property("produced_during_outage", during_outage)
    record_property("spool_depth_at_restart", depth_at_restart)
    record_property("delivered", len(received))
    record_property("duplicates", duplicates)
    sys.stdout.write(
        f"\noutage: produced={len(produced)} during_outage={during_outage} spool_at_restart={depth_at_restart}"
        f" delivered={len(received)} unique={len(first_seen)} duplicates={duplicates} counters={counters}\n"
    )
    assert during_outage >= 100
    assert depth_at_restart >= during_outage
    assert first_seen == produced  # nothing lost, first deliveries strictly in production order
    # A re-sent message is a duplicate of one of the last few already delivered, never an old one.
    for index, event_id in enumerate(received):
        if received.index(event_id) != index:
            assert index - received.index(event_id) <= publisher.settings.max_inflight + 1
    assert counters.reconnects >= 1 and counters.connected
    assert counters.published >= len(produced) and counters.spool_depth == 0 and counters.dropped == 0

    # "An unlock automation only ever sees live decisions": the live topic carries no event older than
    # max_event_age_s at publish time and no event id twice; everything else went to history, marked.
    max_age = publisher.settings.max_event_age_s
    live = [json.loads(m.payload) for m in everything if m.topic == topics.event]
    history = [json.loads(m.payload) for m in everything if m.topic == topics.history]
    for payload in (*live, *history):
        EventPayload.model_validate(payload)
    assert all(not e["late"] and not e["replayed_from_spool"] and e["age_s"] <= max_age for e in live)
    # Each live event id was published once: copies are byte-identical (a broker redelivering to the
    # restarted persistent session is MQTT QoS 1 at work, which consumers de-duplicate on event_id).
    live_bytes: dict[str, set[bytes]] = {}
    for m in everything:
        if m.topic == topics.event:
            live_bytes.setdefault(json.loads(m.payload)["event_id"], set()).add(m.payload)
    assert all(len(copies) == 1 for copies in live_bytes.values()), "a live event id was published twice"
    assert all(e["late"] and (e["replayed_from_spool"] or e["age_s"] > max_age) for e in history)
    outage_ids = set(produced[outage_start:outage_start + during_outage])
    live_ids = {e["event_id"] for e in live}
    # events decided more than max_age before the broker came back can only be history
    old_in_outage = {e["event_id"] for e in history if e["age_s"] > max_age} & outage_ids
    assert len(old_in_outage) >= during_outage - int(max_age / 0.05) - 5
    assert not old_in_outage & live_ids
    oldest_history = max((e["age_s"] for e in history), default=0.0)
    record_property("live", len(live))
    record_property("history", len(history))
    sys.stdout.write(f"live={len(live)} history={len(history)} oldest_history_age_s={oldest_history:.1f}\n")


def test_spool_survives_publisher_restart(
    tmp_path: Path, topic_prefix: str, mqtt_collector: Collect, publishers: list[MqttPublisher], children: list[Child]
) -> None:
    broker = MosquittoBroker(tmp_path / "broker")  # configured, not started: nobody listens on its port
    spool_path = tmp_path / "spool.db"
    topics = Topics("door5", prefix=topic_prefix)
    child = Child(broker.port, topic_prefix, "door5", spool=spool_path)
    children.append(child)
    ids = [f"ev-{i}" for i in range(10)]
    for event_id in ids:
        assert child.ask(f"event {event_id}").startswith("ok ")
    assert child.ask("connected 1") == "timeout"
    child.kill()  # SIGKILL: no chance to flush anything

    broker.start()
    try:
        collector = mqtt_collector(broker, [topics.event, topics.history])
        publisher = MqttPublisher(topics, settings(broker.port), spool=Spool(spool_path), own_spool=True)
        publishers.append(publisher)
        assert len(publisher.spool) == 10
        publisher.start()
        # spooled by the killed process: nothing is lost, but none of it is live any more
        messages = collector.wait_for_count(topics.history, 10)
        assert event_ids(messages) == ids
        assert all(json.loads(m.payload)["replayed_from_spool"] and json.loads(m.payload)["late"] for m in messages)
        assert not collector.messages(topics.event)
        assert publisher.flush(5)
        assert len(publisher.spool) == 0
    finally:
        broker.stop()


def test_commands_resubscribed_and_state_republished_after_reconnect(
    mosquitto_private: MosquittoBroker, topic_prefix: str, mqtt_collector: Collect, publishers: list[MqttPublisher]
) -> None:
    broker = mosquitto_private
    topics = Topics("door6", prefix=topic_prefix)
    collector = mqtt_collector(broker, [f"{topic_prefix}/#"], persistent=True, client_id=f"col-{topic_prefix}")
    publisher = MqttPublisher(topics, settings(broker.port))
    publishers.append(publisher)
    received: list[InboundMessage] = []
    hook_calls: list[float] = []
    publisher.subscribe(topics.config_set, received.append)
    publisher.add_on_connect(lambda: hook_calls.append(time.monotonic()))
    publisher.start()
    assert publisher.wait_connected(10)
    publisher.publish_state(topics.presence("alice"), {"present": True})
    collector.wait_for_count(topics.presence("alice"), 1)

    def send_command(payload: bytes) -> None:
        client = paho.Client(CallbackAPIVersion.VERSION2)
        client.connect(broker.host, broker.port)
        client.loop_start()
        client.publish(topics.config_set, payload, qos=1).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()

    send_command(b'{"n":1}')
    deadline = time.monotonic() + 10
    while len(received) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [m.payload for m in received] == [b'{"n":1}']

    broker.stop()
    deadline = time.monotonic() + 10
    while publisher.is_connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not publisher.is_connected
    broker.start()
    deadline = time.monotonic() + 15
    while publisher.counters().reconnects < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert publisher.wait_connected(10)
    # Live (non-retained) re-publication of the state after the reconnect, and the hook ran again.
    collector.wait_for(lambda ms: sum(m.topic == topics.presence("alice") and not m.retain for m in ms) >= 2)
    assert len(hook_calls) == 2
    # Subscriptions are renewed asynchronously; retry the command until it lands (at most a few seconds).
    deadline = time.monotonic() + 10
    while len(received) < 2 and time.monotonic() < deadline:
        send_command(b'{"n":2}')
        time.sleep(0.3)
    assert received[1].payload == b'{"n":2}' and received[1].topic == topics.config_set


def test_offline_behaviour_and_stop_keeps_spool(tmp_path: Path, topic_prefix: str) -> None:
    topics = Topics("door7", prefix=topic_prefix)
    spool_path = tmp_path / "spool.db"
    publisher = MqttPublisher(topics, settings(free_port()), spool=Spool(spool_path), own_spool=True)
    publisher.start()
    assert not publisher.wait_connected(0.5)
    assert publisher.publish_message(topics.stats, {"fps": 1}) is False
    for i in range(3):
        publisher.publish_face_event(make_event(f"ev-{i}", i))
    counters = publisher.counters()
    # the unsent stats message is not a dropped event
    assert (counters.spooled, counters.spool_depth, counters.dropped, counters.connected) == (3, 3, 0, False)
    assert counters.messages_dropped == 1
    assert publisher.last_failure is not None
    publisher.stop(timeout=0.5)
    with Spool(spool_path) as reopened:
        assert [m.event_id for m in reopened.peek_batch(10)] == ["ev-0", "ev-1", "ev-2"]


@pytest.mark.slow
def test_tls_with_verification(tmp_path: Path, topic_prefix: str, publishers: list[MqttPublisher]) -> None:
    broker, material = tls_broker(tmp_path / "tls")
    try:
        topics = Topics("door8", prefix=topic_prefix)
        good = MqttPublisher(topics, settings(broker.port, tls=TlsSettings(ca_file=material.ca_cert)))
        publishers.append(good)
        good.start()
        assert good.wait_connected(10)
        good.publish_face_event(make_event("ev-tls"))
        assert good.flush(5) and good.counters().published == 1

        other_ca = generate_tls_material(tmp_path / "other")
        bad = MqttPublisher(
            Topics("door9", prefix=topic_prefix), settings(broker.port, tls=TlsSettings(ca_file=other_ca.ca_cert))
        )
        publishers.append(bad)
        bad.start()
        assert not bad.wait_connected(3)
        assert bad.last_failure is not None

        plain = MqttPublisher(Topics("door10", prefix=topic_prefix), settings(broker.port))
        publishers.append(plain)
        plain.start()
        assert not plain.wait_connected(2)
    finally:
        broker.stop()


def test_credentials_are_used_and_never_logged(
    tmp_path: Path, topic_prefix: str, publishers: list[MqttPublisher], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-Pa55-word"
    broker = MosquittoBroker(tmp_path / "auth", users={"door": secret})
    broker.start()
    try:
        with caplog.at_level("DEBUG"):
            good = MqttPublisher(Topics("door11", prefix=topic_prefix),
                                 settings(broker.port, username="door", password=secret))
            publishers.append(good)
            good.start()
            assert good.wait_connected(10)
            wrong = MqttPublisher(Topics("door12", prefix=topic_prefix),
                                  settings(broker.port, username="door", password="Wr0ng-Pa55-xyz"))
            publishers.append(wrong)
            wrong.start()
            assert not wrong.wait_connected(2)
            assert wrong.last_failure is not None and "authorized" in wrong.last_failure.lower()
        assert "Not authorized" in caplog.text or "authorized" in caplog.text.lower()  # the failure is logged
        assert secret not in caplog.text and "Wr0ng-Pa55-xyz" not in caplog.text
        assert secret not in repr(good.settings)
    finally:
        broker.stop()


def test_mqtt5_protocol(mosquitto: MosquittoBroker, topic_prefix: str, mqtt_collector: Collect) -> None:
    topics = Topics("door13", prefix=topic_prefix)
    collector = mqtt_collector(mosquitto, [f"{topics.base}/#"])
    publisher = MqttPublisher(topics, settings(mosquitto.port, protocol="5"))
    publisher.start()
    try:
        publisher.publish_face_event(make_event("ev-v5"))
        (message,) = collector.wait_for_count(topics.event, 1)
        assert json.loads(message.payload)["event_id"] == "ev-v5"
        assert publisher.flush(5) and publisher.counters().published == 1
    finally:
        publisher.stop()
    collector.wait_for_payload(topics.status, "stopped")


def test_json_lines_sink() -> None:
    stream = io.StringIO()
    sink = JsonLinesSink(stream)
    sink.publish_face_event(make_event("a"), device_id="door1")
    sink.publish_event(event_payload(make_event("b")))
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == ["a", "b"]
    assert EventPayload.model_validate_json(lines[0]).device_id == "door1"



def _decided_ago(event_id: str, index: int, seconds: float) -> EventPayload:
    return EventPayload.model_validate(
        event_payload(dataclasses.replace(make_event(event_id, index), wall=time.time() - seconds))
    )


def test_update_config_applies_max_event_age_in_place_without_dropping_queued_events(
    mosquitto_private: MosquittoBroker, topic_prefix: str, mqtt_collector: Collect, publishers: list[MqttPublisher],
    tmp_path: Path,
) -> None:
    """A live patch of ``max_event_age_s`` judges the events already queued in the spool by the new
    value: nothing is dropped, re-sent or reconnected for it."""
    broker = mosquitto_private
    topics = Topics("door9", prefix=topic_prefix)
    collector = mqtt_collector(broker, [topics.event, topics.history], persistent=True,
                               client_id=f"col9-{topic_prefix}")
    start = settings(broker.port, max_event_age_s=30.0)
    publisher = MqttPublisher(topics, start, spool=Spool(tmp_path / "spool.db"), own_spool=True)
    publishers.append(publisher)
    publisher.start()
    assert publisher.wait_connected(10)
    for i in range(3):  # decided 3 s ago: live under a 30 s limit
        publisher.publish_event(_decided_ago(f"before-{i}", i, 3.0))
    collector.wait_for(lambda ms: len(ms) >= 3, timeout=20)
    # received is not yet acknowledged: the spool keeps an event until its PUBACK comes back
    assert publisher.flush(10) and len(publisher.spool) == 0

    broker.stop()
    wait_until(lambda: not publisher.is_connected, 20, "the publisher noticed the outage")
    queued = [f"queued-{i}" for i in range(10)]
    for i, event_id in enumerate(queued):
        assert publisher.publish_event(_decided_ago(event_id, i, 3.0)) is not None
    assert len(publisher.spool) == 10
    assert publisher.update_config(dataclasses.replace(start, max_event_age_s=1.0)) == frozenset()
    assert publisher.settings.max_event_age_s == 1.0 and len(publisher.spool) == 10
    broker.start()
    collector.wait_for(lambda ms: set(queued) <= set(event_ids(ms)), timeout=40)
    assert publisher.flush(10)

    reconnects = publisher.counters().reconnects
    assert publisher.update_config(dataclasses.replace(start, max_event_age_s=30.0)) == frozenset()
    publisher.publish_event(_decided_ago("after", 99, 3.0))
    collector.wait_for(lambda ms: "after" in event_ids(ms), timeout=20)
    assert publisher.flush(10)

    by_id = {json.loads(m.payload)["event_id"]: m.topic for m in collector.messages()}
    assert [by_id[f"before-{i}"] for i in range(3)] == [topics.event] * 3
    assert [by_id[e] for e in queued] == [topics.history] * 10, "queued events judged by the patched limit"
    assert by_id["after"] == topics.event
    counters = publisher.counters()
    assert counters.published == 14 and counters.dropped == 0 and counters.spool_depth == 0
    assert counters.reconnects == reconnects == 1, "only the broker restart reconnected"


def test_update_config_names_what_needs_a_reconnect_and_keeps_the_connection(
    mosquitto: MosquittoBroker, topic_prefix: str, publishers: list[MqttPublisher]
) -> None:
    topics = Topics("door10", prefix=topic_prefix)
    start = settings(mosquitto.port)
    publisher = MqttPublisher(topics, start)
    publishers.append(publisher)
    publisher.start()
    assert publisher.wait_connected(10)
    with pytest.raises(ConfigError, match="max_inflight"):
        publisher.update_config(dataclasses.replace(start, max_inflight=0, max_event_age_s=9.0))
    assert publisher.settings == start and publisher.freshness.max_age_s == start.max_event_age_s
    pending = publisher.update_config(dataclasses.replace(start, host="broker.invalid", keepalive=30,
                                                          max_inflight=3, reconnect_max_s=5))
    assert pending == {"host", "keepalive"}
    assert publisher.settings.host == "127.0.0.1" and publisher.settings.keepalive == start.keepalive
    assert publisher.settings.max_inflight == 3 and publisher.settings.reconnect_max_s == 5
    assert publisher.is_connected and publisher.counters().reconnects == 0
