"""Every discovery payload facegate publishes, checked by Home Assistant's own MQTT discovery validators,
and every value template rendered by Home Assistant's template engine against real facegate payloads.

Home Assistant needs a newer Python than the project's venv, so the payloads are generated here
(facegate's code, this venv) and validated by tests/fixtures/ha_validate.py in a separate venv with
the ``homeassistant`` package: ``$FACEGATE_HA_PYTHON`` or ``<repo>/.venv-ha/bin/python`` (``.ci/run``
creates it). Without that venv the test is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from facegate.events.freshness import EventFreshness
from facegate.events.homeassistant import HaDeviceInfo, HomeAssistantDiscovery, discovery_payload
from facegate.events.payloads import (
    CameraHealthPayload,
    CameraStatusPayload,
    StatsPayload,
    dumps,
    event_payload,
    last_recognized_payload,
    presence_payload,
)
from facegate.events.topics import Topics
from facegate.types import Box, FaceEvent

REPO = Path(__file__).resolve().parent.parent
CHECKER = REPO / "tests" / "fixtures" / "ha_validate.py"


def ha_python() -> Path:
    configured = os.environ.get("FACEGATE_HA_PYTHON")
    path = Path(configured) if configured else REPO / ".venv-ha" / "bin" / "python"
    if not path.exists():
        pytest.skip(f"no Home Assistant venv at {path} (set FACEGATE_HA_PYTHON, or let .ci/run create .venv-ha)")
    return path


class RecordingPublisher:
    """Records what discovery publishes (the broker flow is tested in test_homeassistant.py)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish_state(self, topic: str, payload: Any, *, retain: bool = True, qos: int = 1) -> None:
        self.published.append((topic, dumps(payload)))

    def clear_state(self, topic: str) -> None:
        self.published.append((topic, b""))

    def subscribe(self, topic_filter: str, handler: Any, *, qos: int = 1) -> None:
        pass


def recognized(person_id: str = "alice", name: str | None = "Alice", camera: str = "front-door") -> FaceEvent:
    return FaceEvent(event_id=f"ev-{person_id}", type="recognized", camera=camera, track_id=1, wall=1.7e9,
                     box=Box(0, 0, 10, 10), frames_voted=3, person_id=person_id, name=name, confidence=91.23,
                     model_id="Facenet512")


def stats(camera_state: str | None, last_error: str | None = None) -> str:
    cameras = {} if camera_state is None else {"front-door": CameraHealthPayload(
        state=camera_state, fps=4.5, frames=10, dropped_frames=0, errors=1 if last_error else 0,  # type: ignore[arg-type]
        last_error=last_error)}
    return StatsPayload(time="2026-01-01T00:00:00.000Z", uptime_s=12.6, fps=4.51, frames=10, dropped_frames=0,
                        latency_ms={}, gallery_size=2, cameras=cameras, mqtt=None).model_dump_json()


def health(state: str, last_error: str | None = None) -> str:
    return CameraStatusPayload(camera="front-door", state=state, problem=state in ("stalled", "down"),  # type: ignore[arg-type]
                               last_error=last_error, since="2026-01-01T00:00:00.000Z").model_dump_json()


def test_every_discovery_payload_passes_home_assistants_validators(tmp_path: Path) -> None:
    python = ha_python()
    topics = Topics("door1", prefix="facegate", discovery_prefix="homeassistant")
    device = HaDeviceInfo(name="Front door", suggested_area="Hall")
    # The payloads the daemon sends: first announcement, a person removed while it was stopped
    # (tombstone, then the config without it), snapshots on and off, display names and ids.
    recorder = RecordingPublisher()
    state = tmp_path / "homeassistant.json"
    HomeAssistantDiscovery(recorder, topics, device, cameras={"front-door": "Front door", "yard": None},
                           people={"alice": "Alice", "bob": None}, snapshots=True, state_path=state).announce()
    HomeAssistantDiscovery(recorder, topics, device, cameras={"front-door": "Front door"},
                           people={"alice": "Alice"}, snapshots=True, state_path=state).announce()
    configs = [json.loads(p) for t, p in recorder.published if t == topics.ha_device_config and p]
    assert len(configs) == 3  # announce, tombstones, announce without bob and the yard
    configs.append(discovery_payload(topics, device, cameras=["front-door"], people={}, snapshots=False))
    discovery = [{"topic": topics.ha_device_config, "payload": c} for c in configs]

    freshness = EventFreshness(topics.event, topics.history, max_age_s=5.0)
    live = freshness.route(dumps(event_payload(recognized(), device_id="door1")), created=1.7e9, replayed=False,
                           now=1.7e9 + 0.2)
    late = freshness.route(dumps(event_payload(recognized("bob", None), device_id="door1")), created=1.7e9,
                           replayed=True, now=1.7e9 + 60)
    assert live.live and not late.live
    unknown = json.dumps(event_payload(FaceEvent(event_id="ev-u", type="unknown", camera="front-door", track_id=2,
                                                 wall=1.7e9, box=Box(0, 0, 5, 5), frames_voted=6, model_id="m")))
    present = json.dumps(presence_payload("alice", "Alice", present=True, camera="front-door", last_seen=1.7e9))
    absent = json.dumps(presence_payload("alice", "Alice", present=False, camera="front-door", last_seen=1.7e9))
    last = json.dumps(last_recognized_payload("front-door", recognized()))
    nobody = json.dumps(last_recognized_payload("front-door", None))
    final = "2"  # the config without bob and the yard
    renders: list[tuple[str, str, str]] = [
        ("0/recognized_alice", live.payload.decode(), "alice"),
        ("0/recognized_alice", unknown, ""),
        ("0/recognized_bob", late.payload.decode(), ""),  # a late event never fires a trigger
        ("0/presence_alice", present, "ON"),
        ("0/presence_alice", absent, "OFF"),
        ("0/last_recognized_front-door", last, "Alice"),
        ("0/last_recognized_front-door", nobody, "nobody"),
        (f"{final}/camera_problem_front-door", health("ok"), "OFF"),
        (f"{final}/camera_problem_front-door", health("down", "device /dev/video9 missing"), "ON"),
        (f"{final}/camera_problem_front-door", health("stalled"), "ON"),
        (f"{final}/camera_front-door_error", health("down", "connection refused"), "connection refused"),
        (f"{final}/camera_front-door_error", health("ok"), "none"),
        (f"{final}/fps", stats("running"), "4.51"),
        (f"{final}/uptime", stats("running"), "13"),
    ]
    request = {
        "discovery": discovery,
        "render": [{"component": c, "message": m, "status": s}
                   for c, m, _ in renders for s in ("online",)]
                  + [{"component": "0/presence_alice", "message": present, "status": s}
                     for s in ("online", "offline", "stopped", "degraded")]
                  + [{"component": f"{final}/camera_problem_front-door", "message": health("down"), "status": s}
                     for s in ("degraded", "offline")],
    }
    request["render"].append({"component": "0/recognition", "message": live.payload.decode()})
    path = tmp_path / "payloads.json"
    path.write_text(json.dumps(request))
    proc = subprocess.run([str(python), str(CHECKER), str(path)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.stdout, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["errors"] == [], result["errors"]
    assert proc.returncode == 0, proc.stderr[-3000:]

    validated = result["validated"]
    platforms = set(validated.values())
    assert {"event", "binary_sensor", "sensor", "image", "device_automation"} <= platforms
    assert validated["1/presence_bob"] == "binary_sensor (removal)"
    assert validated["1/recognized_bob"] == "device_automation (removal)"
    assert validated["1/snapshot_yard"] == "image (removal)"
    assert validated["1/camera_problem_yard"] == "binary_sensor (removal)"
    assert "2/presence_bob" not in validated and "3/snapshot_front-door" not in validated
    every_component = sum(len(c["cmps"]) for c in configs)
    assert len(validated) == every_component, "some component was not validated"

    rendered = result["rendered"]
    for (component, message, expected), got in zip(renders, rendered[: len(renders)], strict=True):
        assert (got["component"], str(got["value"])) == (component, expected), message
        # device triggers have no availability; every entity but the event follows the status topic
        assert got.get("availability") == (None if "/recognized_" in component else "online")

    assert [r["availability"] for r in rendered[len(renders):len(renders) + 6]] == [
        "online", "offline", "offline", "offline", "online", "offline"]
    event = rendered[-1]["value"]
    event = json.loads(event) if isinstance(event, str) else event
    assert event["event_type"] == "recognized" and event["event_id"] == "ev-alice"
    assert event["confidence"] == 91.2 and event["age_s"] == pytest.approx(0.2, abs=0.01)
    assert result["homeassistant"].startswith("20")


def test_the_validators_reject_what_home_assistant_would_reject(tmp_path: Path) -> None:
    python = ha_python()
    topics = Topics("door1")
    good = discovery_payload(topics, HaDeviceInfo(name="d"), cameras=["hall"], people={"alice": "Alice"},
                             snapshots=True)
    breakers: list[Callable[[dict[str, Any]], object]] = [
        lambda p: p.pop("o"),
        lambda p: p["cmps"]["recognition"].pop("event_types"),
        lambda p: p["cmps"]["presence_alice"].update(device_class="not-a-class"),
        lambda p: p["cmps"]["fps"].update(state_topic="a/+/#/b"),
        lambda p: p["cmps"]["recognized_alice"].pop("subtype"),
        lambda p: p["cmps"]["snapshot_hall"].update(colour="red"),  # a key HA would silently ignore
    ]
    broken: list[dict[str, Any]] = []
    for breaker in breakers:
        payload = json.loads(json.dumps(good))
        breaker(payload)
        broken.append({"topic": topics.ha_device_config, "payload": payload})
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"discovery": broken}))
    proc = subprocess.run([str(python), str(CHECKER), str(path)], capture_output=True, text=True, timeout=300,
                          check=False)
    errors = json.loads(proc.stdout)["errors"]
    assert proc.returncode == 1
    assert sorted({int(e.split(" ")[0]) for e in errors}) == list(range(len(breakers))), errors
