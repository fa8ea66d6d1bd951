"""A dead camera never looks healthy: the real daemon (in-process, real models) on a real MJPEG-over-HTTP
camera that disappears and comes back on the same port, a real Mosquitto broker, and a real systemd notify
socket. Measured (printed, see ``pytest -s``): camera-down-to-problem-entity and camera-back-to-frames."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facegate.capture.synthetic import demo_frames
from facegate.config.models import FacegateConfig
from facegate.service import Service
from tests.fixtures.mjpeg import MjpegServer, closed_port
from tests.fixtures.mosquitto import MosquittoBroker, MqttCollector, retained_value


class NotifySocket:
    """The datagram socket systemd listens on for ``Type=notify`` services."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def wait_for(self, key: str, timeout: float) -> tuple[float, dict[str, str]]:
        deadline = time.monotonic() + timeout
        while True:
            for stamp, fields in self.messages:
                if key in fields:
                    return stamp, fields
            if time.monotonic() > deadline:
                raise AssertionError(f"no {key} within {timeout} s; got {self.messages}")
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock.path))
    yield sock
    sock.close()


@pytest.fixture(scope="module")
def pictures() -> tuple[np.ndarray, ...]:
    return demo_frames(person_frames=2, empty_frames=2).frames


def service_for(tmp_path: Path, url: str, broker: MosquittoBroker, prefix: str) -> Service:
    config = FacegateConfig.model_validate({
        "state_dir": str(tmp_path / "state"),
        "device": {"device_id": "door1"},
        "cameras": [{"id": "porch", "source": {"type": "opencv", "url": url}}],
        "mqtt": {"host": broker.host, "port": broker.port, "prefix": prefix, "reconnect": {"initial_s": 1, "max_s": 1}},
        "homeassistant": {"enabled": True, "discovery_prefix": f"{prefix}-ha"},
        "stats": {"interval_s": 1},
    })
    return Service(config)


def health_messages(collector: MqttCollector, topic: str) -> list[tuple[float, dict[str, object]]]:
    return [(m.received, json.loads(m.payload)) for m in collector.messages(topic) if m.payload]


def wait_health(collector: MqttCollector, topic: str, *, problem: bool, after: float,
                timeout: float) -> tuple[float, dict[str, object]]:
    collector.wait_for(lambda ms: any(t >= after and h["problem"] is problem
                                      for t, h in health_messages(collector, topic)), timeout)
    return next((t, h) for t, h in health_messages(collector, topic) if t >= after and h["problem"] is problem)


def test_camera_that_disappears_and_returns_is_a_problem_then_healthy(
    tmp_path: Path, pictures: tuple[np.ndarray, ...], mosquitto: MosquittoBroker, topic_prefix: str,
    notify: NotifySocket,
) -> None:
    base = f"{topic_prefix}/door1"
    health_topic = f"{base}/camera/porch/health"
    collector = MqttCollector(mosquitto, [f"{base}/#", f"{topic_prefix}-ha/#"])
    server = MjpegServer(pictures, fps=15.0).__enter__()
    port = int(server.url.split(":")[2].split("/")[0])
    service = service_for(tmp_path, server.url, mosquitto, topic_prefix)
    thread = threading.Thread(target=service.run, name="service", daemon=True)
    thread.start()
    try:
        _, ready = notify.wait_for("READY", timeout=60)
        assert ready["STATUS"].startswith("running: 1 of 1"), ready
        assert service.runner is not None and service.runner.health_of("porch").frames > 0, "READY before a frame"
        collector.wait_for_payload(f"{base}/status", "online", timeout=10)
        wait_health(collector, health_topic, problem=False, after=0.0, timeout=10)

        server.__exit__(None, None, None)  # the camera disappears: connection closed, port refused
        gone = time.monotonic()
        noticed, down = wait_health(collector, health_topic, problem=True, after=gone, timeout=15)
        collector.wait_for(lambda ms: any(m.topic == f"{base}/status" and m.payload == b"degraded"
                                          and m.received >= gone for m in ms), timeout=5)
        assert down["state"] in ("stalled", "down") and down["last_error"]
        assert retained_value(mosquitto, f"{base}/camera/porch/availability") == b"offline"
        time.sleep(12)  # a long enough outage for the backoff to reach its cap (1, 2, 4, 5, 5 s)
        assert service.runner.health_of("porch").failures >= 4

        frames_before = service.runner.health_of("porch").frames
        server = MjpegServer(pictures, fps=15.0, port=port).__enter__()  # the same camera is back
        back = time.monotonic()
        while service.runner.health_of("porch").frames <= frames_before:
            assert time.monotonic() - back < 15, "frames did not resume"
            time.sleep(0.01)
        resumed = time.monotonic()
        healthy, ok = wait_health(collector, health_topic, problem=False, after=back, timeout=10)
        collector.wait_for(lambda ms: any(m.topic == f"{base}/status" and m.payload == b"online"
                                          and m.received >= back for m in ms), timeout=5)
        assert ok["state"] == "ok" and ok["last_error"] is None
    finally:
        service.stop_event.set()
        thread.join(30)
        server.__exit__(None, None, None)
    down_s, back_s, entity_back_s = noticed - gone, resumed - back, healthy - back
    sys.stdout.write(f"\ncamera-down-to-problem-entity {down_s:.2f} s, camera-back-to-frames {back_s:.2f} s, "
                     f"camera-back-to-entity-ok {entity_back_s:.2f} s\n")
    # Behaviour, not speed: the bounds are the read timeout and the probe interval plus an open, with slack
    # for a loaded machine; the uncapped backoff had grown to 16 s and more here.
    assert down_s < 1.0 + 4.0
    assert back_s < 4.0
    config = json.loads(retained_value(mosquitto, f"{topic_prefix}-ha/device/facegate_door1/config") or b"{}")
    problem = config["cmps"]["camera_problem_porch"]
    assert problem["device_class"] == "problem" and problem["state_topic"] == health_topic


def test_ready_after_a_timeout_says_degraded_when_no_camera_delivers(
    tmp_path: Path, mosquitto: MosquittoBroker, topic_prefix: str, notify: NotifySocket
) -> None:
    base = f"{topic_prefix}/door1"
    collector = MqttCollector(mosquitto, [f"{base}/#"])
    service = service_for(tmp_path, f"http://127.0.0.1:{closed_port()}/stream.mjpg", mosquitto, topic_prefix)
    service.ready_timeout_s = 2.0
    thread = threading.Thread(target=service.run, name="service", daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        stamp, ready = notify.wait_for("READY", timeout=30)
        collector.wait_for_payload(f"{base}/status", "degraded", timeout=10)
        down = wait_health(collector, f"{base}/camera/porch/health", problem=True, after=0.0, timeout=10)[1]
    finally:
        service.stop_event.set()
        thread.join(30)
    assert stamp - started >= 2.0, "READY must wait for a frame or the timeout"
    assert ready["STATUS"].startswith("degraded: no camera delivers frames: porch down"), ready
    assert down["state"] == "down" and "cannot open" in str(down["last_error"])
    assert not any(m.payload == b"online" for m in collector.messages(f"{base}/status"))
