"""sd_notify over a real AF_UNIX datagram socket, as systemd provides it."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from facegate import sdnotify


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, {"NOTIFY_SOCKET": str(path)}
    sock.close()


def receive(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_messages_reach_the_socket(notify_socket: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = notify_socket
    assert sdnotify.ready("models loaded, broker connected", environ=env)
    assert receive(sock) == ["READY=1", "STATUS=models loaded, broker connected"]
    assert sdnotify.watchdog(environ=env)
    assert receive(sock) == ["WATCHDOG=1"]
    assert sdnotify.status("2 cameras\nsecond line", environ=env)
    assert receive(sock) == ["STATUS=2 cameras"]
    assert sdnotify.stopping(environ=env)
    assert receive(sock) == ["STOPPING=1"]
    assert sdnotify.extend_timeout(2.5, environ=env)
    assert receive(sock) == ["EXTEND_TIMEOUT_USEC=2500000"]


def test_reloading_carries_the_monotonic_clock(notify_socket: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = notify_socket
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading(environ=env)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, usec = receive(sock)
    assert reloading == "RELOADING=1"
    assert usec.startswith("MONOTONIC_USEC=") and before <= int(usec.split("=")[1]) <= after


def test_abstract_namespace_socket() -> None:
    name = f"facegate-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert sdnotify.ready(environ={"NOTIFY_SOCKET": "@" + name})
        assert receive(sock) == ["READY=1"]


def test_no_op_outside_systemd(tmp_path: Path) -> None:
    assert sdnotify.ready(environ={}) is False
    assert sdnotify.watchdog(environ={"NOTIFY_SOCKET": ""}) is False
    assert sdnotify.ready(environ={"NOTIFY_SOCKET": "vsock:2:1234"}) is False
    # a socket that went away is reported, not raised
    assert sdnotify.ready(environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


def test_watchdog_interval() -> None:
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert sdnotify.watchdog_interval({}) is None


def test_watchdog_pings_at_most_every_half_interval(notify_socket: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = notify_socket
    now = [100.0]
    dog = sdnotify.Watchdog(environ={**env, "WATCHDOG_USEC": "30000000"}, clock=lambda: now[0])
    assert dog.enabled and dog.period == 15.0
    sent = []
    for t in (100.0, 101.0, 114.9, 115.0, 120.0, 130.0):
        now[0] = t
        sent.append(dog.ping())
    assert sent == [True, False, False, True, False, True]
    assert [receive(sock) for _ in range(3)] == [["WATCHDOG=1"]] * 3
    assert not sdnotify.Watchdog(environ=env).enabled
    assert sdnotify.Watchdog(environ=env).ping() is False
