"""TLS to the broker (verification on, wrong CA refused, plain text refused) and the example Mosquitto
configuration with its per-device ACL, exercised by a real device and a controller."""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from facegate.config import ConfigValidationError, parse_yaml_config
from facegate.engine import FaceEngine
from facegate.events.mqtt import MqttPublisher, MqttSettings, TlsSettings
from facegate.events.topics import Topics
from facegate.remote.signing import sign_command
from tests.conftest import REPO_ROOT
from tests.fixtures.mosquitto import MosquittoBroker, TlsMaterial, free_port, generate_tls_material, tls_broker
from tests.fixtures.remote_device import SECRET, start_device, write_device_config
from tests.fixtures.waiting import wait_until

EXAMPLE_CONF = REPO_ROOT / "config" / "mosquitto" / "mosquitto.example.conf"
EXAMPLE_ACL = REPO_ROOT / "config" / "mosquitto" / "acl.example"
PASSWORDS = {"controller": "ctl-pass-1", "homeassistant": "ha-pass-2", "door1": "door1-pass-3",
             "door2": "door2-pass-4"}


def _publisher(port: int, tls: TlsSettings | None, publishers: list[MqttPublisher]) -> MqttPublisher:
    settings = MqttSettings(host="127.0.0.1", port=port, tls=tls, keepalive=5, reconnect_min_s=1,
                            reconnect_max_s=1)
    publisher = MqttPublisher(Topics(f"tls{uuid.uuid4().hex[:8]}", prefix="t"), settings)
    publishers.append(publisher)
    publisher.start()
    return publisher


@pytest.fixture
def publishers() -> Iterator[list[MqttPublisher]]:
    made: list[MqttPublisher] = []
    yield made
    for publisher in made:
        publisher.stop(timeout=1.0)


def test_tls_with_verification_succeeds_and_wrong_ca_or_plain_text_fail(
    tmp_path: Path, publishers: list[MqttPublisher]
) -> None:
    broker, material = tls_broker(tmp_path / "tls")
    try:
        good = _publisher(broker.port, TlsSettings(ca_file=material.ca_cert), publishers)
        assert good.wait_connected(10)
        other = generate_tls_material(tmp_path / "other-ca")
        wrong = _publisher(broker.port, TlsSettings(ca_file=other.ca_cert), publishers)
        plain = _publisher(broker.port, None, publishers)
        # a refused attempt is recorded as the last failure; until then "not connected" would prove nothing
        # several attempts of each, all refused by the broker: a wrong CA alert, plain text on a TLS port
        wait_until(lambda: broker.log_text().count("alert unknown ca") >= 2
                   and broker.log_text().count("wrong version number") >= 2, 15, "refused connection retries")
        assert not wrong.is_connected and wrong.last_failure is not None
        assert not plain.is_connected
        # the host name is verified too: the server certificate names 127.0.0.1 and localhost only
        context = ssl.create_default_context(cafile=str(material.ca_cert))
        with pytest.raises(ssl.SSLCertVerificationError):  # noqa: SIM117
            with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw:
                context.wrap_socket(raw, server_hostname="broker.example.org")
    finally:
        broker.stop()


def test_require_tls_refuses_a_plain_text_configuration() -> None:
    with pytest.raises(ConfigValidationError, match="require_tls"):
        parse_yaml_config("mqtt:\n  require_tls: true\n")
    config = parse_yaml_config("mqtt:\n  require_tls: true\n  tls:\n    enabled: true\n")
    assert config.mqtt.effective_port == 8883


# --- the example broker configuration ------------------------------------------------------------------


@dataclass
class ExampleBroker:
    broker: MosquittoBroker
    material: TlsMaterial
    clients: list[Client] = field(default_factory=list)

    def client(self, user: str | None, password: str | None = None, *, tls: bool = True,
               ca: Path | None = None) -> Client:
        made = Client(self, user, PASSWORDS.get(user or "", "") if password is None else password, tls=tls, ca=ca)
        self.clients.append(made)
        return made


class Client:
    """A paho client that records messages and the CONNACK outcome."""

    def __init__(self, example: ExampleBroker, user: str | None, password: str, *, tls: bool, ca: Path | None) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.refused = threading.Event()
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{uuid.uuid4().hex[:6]}")
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set_context(ssl.create_default_context(cafile=str(ca or example.material.ca_cert)))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(example.broker.host, example.broker.port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        (self.refused if getattr(rc, "is_failure", False) else self.connected).set()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def subscribe(self, *topics: str) -> None:
        self.subscribed.clear()
        self.client.subscribe([(t, 1) for t in topics])
        assert self.subscribed.wait(5)

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _ in self.messages]

    def wait_for(self, topic: str, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for t, p in self.messages:
                    if t == topic:
                        return p
            time.sleep(0.02)
        raise AssertionError(f"nothing on {topic}; got {self.topics()}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_example_broker(tmp_path: Path, *, drop_lines: tuple[str, ...] = ()) -> ExampleBroker:
    """mosquitto.example.conf and acl.example as shipped (minus ``drop_lines``), paths and port made local."""
    material = generate_tls_material(tmp_path / "pki")
    port = free_port()
    broker = MosquittoBroker(tmp_path / "broker", port=port, users=PASSWORDS)
    text = EXAMPLE_CONF.read_text()
    for line in drop_lines:
        assert f"\n{line}\n" in text, f"{line} no longer in the example config"
        text = text.replace(f"\n{line}\n", "\n")
    replacements = {
        "listener 8883": f"listener {port} 127.0.0.1",
        "/etc/mosquitto/certs/ca.crt": str(material.ca_cert),
        "/etc/mosquitto/certs/server.crt": str(material.server_cert),
        "/etc/mosquitto/certs/server.key": str(material.server_key),
        "/etc/mosquitto/passwd": str(broker.workdir / "passwords"),
        "/etc/mosquitto/facegate.acl": str(EXAMPLE_ACL),
        "/var/lib/mosquitto/": f"{broker.workdir}/",
    }
    for old, new in replacements.items():
        assert old in text, f"{old} no longer in the example config"
        text = text.replace(old, new)
    text += "\nlog_type all\nlog_dest file " + str(broker.log_path) + "\n"
    if os.geteuid() == 0:
        text += "user root\n"
    broker.conf_path.write_text(text)
    broker.start()
    return ExampleBroker(broker, material)


@pytest.fixture
def example_broker(tmp_path: Path) -> Iterator[ExampleBroker]:
    example = start_example_broker(tmp_path)
    try:
        yield example
    finally:
        for c in example.clients:
            c.close()
        example.broker.stop()


def test_example_broker_refuses_plain_text_anonymous_and_bad_passwords(example_broker: ExampleBroker) -> None:
    ok = example_broker.client("door1")
    assert ok.connected.wait(10)
    plain = example_broker.client("door1", tls=False)
    anonymous = example_broker.client(None)
    bad = example_broker.client("door1", "wrong-password")
    assert anonymous.refused.wait(10) and bad.refused.wait(10)
    assert not plain.connected.wait(2)


def _sentinel(sender: Client, receiver: Client, topic: str) -> None:
    """Publish an allowed message after the ones under test: once it arrives, anything sent earlier on
    the same connection that was going to be delivered has been."""
    marker = uuid.uuid4().hex.encode()
    sender.publish(topic, marker)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (topic, marker) in receiver.messages:
            return
        time.sleep(0.02)
    raise AssertionError(f"sentinel on {topic} not delivered")


def test_example_acl_isolates_devices_and_reserves_commands_to_the_controller(example_broker: ExampleBroker) -> None:
    controller = example_broker.client("controller")
    door1 = example_broker.client("door1")
    door2 = example_broker.client("door2")
    ha = example_broker.client("homeassistant")
    for c in (controller, door1, door2, ha):
        assert c.connected.wait(10)
    controller.subscribe("facegate/#")
    door1.subscribe("facegate/door1/config/set", "facegate/door2/config/set", "facegate/fleet/+/gallery/+")
    door2.subscribe("facegate/door2/config/set", "facegate/door1/config/set", "facegate/fleet/+/gallery/+")

    # a device publishes only its own topics
    door1.publish("facegate/door1/event", b"own")
    door1.publish("facegate/door2/event", b"impersonation")
    door1.publish("facegate/door2/status", b"offline")
    _sentinel(door1, controller, "facegate/door1/status")
    seen = controller.topics()
    assert "facegate/door1/event" in seen
    assert "facegate/door2/event" not in seen and "facegate/door2/status" not in seen

    # only the controller sends commands, and a device reads only its own
    door1.publish("facegate/door2/config/set", b"from door1")
    door1.publish("facegate/door1/config/set", b"door1 to itself")
    ha.publish("facegate/door2/config/set", b"from home assistant")
    controller.publish("facegate/door2/config/set", b"from controller")
    controller.publish("facegate/door1/config/set", b"for door1")
    assert door2.wait_for("facegate/door2/config/set") == b"from controller"
    assert door1.wait_for("facegate/door1/config/set") == b"for door1"
    _sentinel(controller, door2, "facegate/door2/config/set")
    received = [p for t, p in door2.messages if t == "facegate/door2/config/set"]
    assert received[:-1] == [b"from controller"]  # then the sentinel; nothing from door1 or Home Assistant
    assert not any(t == "facegate/door1/config/set" for t, _ in door2.messages)  # cannot read door1's
    assert b"door1 to itself" not in [p for _, p in door1.messages]

    # the fleet gallery is shared
    door1.publish("facegate/fleet/hq/gallery/alice", b"record", retain=True)
    assert door2.wait_for("facegate/fleet/hq/gallery/alice") == b"record"
    denied = example_broker.broker.log_text()
    assert "Denied PUBLISH from door1" in denied


def test_device_runs_through_the_example_acl_with_tls(
    example_broker: ExampleBroker, tmp_path: Path, engine: FaceEngine
) -> None:
    """Everything a device does (status and last will, config/state, command results, fleet records)
    is allowed by the example ACL; the device connects with TLS, verification and require_tls on."""
    material = example_broker.material
    directory = tmp_path / "door1"
    directory.mkdir()
    (directory / "mqtt_password").write_text(PASSWORDS["door1"])
    (directory / "mqtt_password").chmod(0o600)
    config_path = write_device_config(directory, device_id="door1", port=example_broker.broker.port,
                                      prefix="facegate")
    tls = (f"  username: door1\n  password: !secret_file mqtt_password\n  require_tls: true\n"
           f"  tls:\n    enabled: true\n    ca_file: {material.ca_cert}\n  keepalive: 5\n")
    config_path.write_text(config_path.read_text().replace("  keepalive: 5\n", tls))
    controller = example_broker.client("controller")
    assert controller.connected.wait(10)
    controller.subscribe("facegate/#")
    device = start_device(config_path)
    try:
        assert device.publisher.wait_connected(10)
        assert controller.wait_for("facegate/door1/status") == b"online"
        assert json.loads(controller.wait_for("facegate/door1/config/state"))["device_id"] == "door1"
        enrol = {"person_id": "bob", "name": "Bob",
                 "embeddings": [{"model_id": engine.model_id, "vector": [0.1] * engine.embedder.dim}]}
        signed = sign_command(enrol, SECRET, topic="facegate/door1/gallery/enroll")
        controller.publish("facegate/door1/gallery/enroll", json.dumps(signed))
        result = json.loads(controller.wait_for("facegate/door1/gallery/enroll/result"))
        assert result["ok"] is True, result
        record = json.loads(controller.wait_for("facegate/fleet/hq/gallery/bob"))
        assert record["origin"] == "door1" and record["record"]["version"] == 1
    finally:
        device.stop()
    deadline = time.monotonic() + 10
    while (("facegate/door1/status", b"stopped") not in controller.messages) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("facegate/door1/status", b"stopped") in controller.messages
    log = example_broker.broker.log_text()
    assert "Denied PUBLISH from door1" not in log, [line for line in log.splitlines() if "Denied" in line]


class PersistentSubscriber:
    """Home Assistant as a persistent QoS 1 subscriber (fixed client id, clean_session false): the broker
    queues events for it while it is away."""

    def __init__(self, example: ExampleBroker, topic: str) -> None:
        self.example = example
        self.topic = topic
        self.payloads: list[bytes] = []
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="ha-persistent", clean_session=False)
        self.client.username_pw_set("homeassistant", PASSWORDS["homeassistant"])
        self.client.tls_set_context(ssl.create_default_context(cafile=str(example.material.ca_cert)))
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.payloads.append(bytes(msg.payload))

    def connect(self) -> None:
        self.subscribed.clear()
        self.client.connect(self.example.broker.host, self.example.broker.port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def received(self) -> list[bytes]:
        with self._lock:
            return list(self.payloads)


@pytest.mark.slow
@pytest.mark.parametrize("autosave", [True, False], ids=["shipped", "without_autosave_interval"])
def test_example_broker_keeps_queued_events_across_sigkill(tmp_path: Path, autosave: bool) -> None:
    """Events queued (QoS 1) for a disconnected persistent subscriber survive a broker SIGKILL with the
    shipped config; without its ``autosave_interval 1`` they are lost, which is why it is there."""
    example = start_example_broker(tmp_path, drop_lines=() if autosave else ("autosave_interval 1",))
    topic = "facegate/door1/event"
    subscriber = PersistentSubscriber(example, topic)
    try:
        subscriber.connect()
        subscriber.disconnect()  # away: the broker now queues for it
        door1 = example.client("door1")
        assert door1.connected.wait(10)
        sent = [json.dumps({"event_id": f"e{i:02d}", "type": "recognized"}).encode() for i in range(23)]
        for payload in sent:
            door1.publish(topic, payload)  # waits for the PUBACK: the broker holds it
        door1.close()
        time.sleep(2.5)  # longer than autosave_interval 1: the period under test
        example.broker.kill()
        example.broker.start()
        subscriber.connect()
        deadline = time.monotonic() + (10 if autosave else 3)
        while len(subscriber.received()) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        got = subscriber.received()
    finally:
        subscriber.disconnect()
        for c in example.clients:
            c.close()
        example.broker.stop()
    if autosave:
        assert got == sent, f"{len(sent) - len(set(got) & set(sent))} of {len(sent)} queued events lost"
    else:
        assert len(got) < len(sent), "without autosave a SIGKILL should lose queued events (control)"
