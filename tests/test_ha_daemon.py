"""The real daemon restarted against a real broker, seen as Home Assistant sees it: no stale trigger
message, no event id twice on the live (trigger) topic, removal entries for a person removed while
the daemon was stopped, no presence blip, presence cleared on a clean stop."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from facegate.capture.synthetic import sample_path
from facegate.config.models import FacegateConfig
from facegate.enrollment import enroll_photos
from facegate.service import Service
from tests.fixtures.mosquitto import MosquittoBroker, MqttCollector, ReceivedMessage, retained_value
from tests.test_daemon_e2e import demo_frames_dir, start_daemon, stdout_events, write_config

__all__ = ["demo_frames_dir"]  # the module fixture, shared with test_daemon_e2e

MAX_AGE = 5.0  # mqtt.max_event_age_s (the default)


def two_people(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    config = FacegateConfig.model_validate({"state_dir": str(state), "mqtt": {"enabled": False}})
    service = Service(config)
    for person_id, name, photo in (("barack_obama", "Barack Obama", "obama.jpg"), ("joe_biden", "Joe Biden",
                                                                                   "biden.jpg")):
        assert enroll_photos(service.gallery, service.engine, person_id, name, [(photo, sample_path(photo))]).ok
    service.gallery.close()
    return state


def remove_offline(state: Path, person_id: str) -> None:
    config = FacegateConfig.model_validate({"state_dir": str(state), "mqtt": {"enabled": False}})
    service = Service(config)
    assert service.gallery.remove(person_id) > 0
    service.gallery.close()


def payloads(messages: list[ReceivedMessage], topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in messages if m.topic == topic and m.payload]


@pytest.mark.slow
def test_restarts_never_replay_a_decision_to_home_assistant(
    tmp_path: Path, demo_frames_dir: Path, mosquitto_private: MosquittoBroker, topic_prefix: str
) -> None:
    broker = mosquitto_private
    state = two_people(tmp_path)
    config = write_config(tmp_path / "facegate.yaml", state=state, frames=demo_frames_dir, broker=broker,
                          prefix=topic_prefix, loop=True, fps=10.0)
    base = f"{topic_prefix}/door1"
    ha_config = f"{topic_prefix}-ha/device/facegate_door1/config"
    obama, biden = f"{base}/presence/barack_obama", f"{base}/presence/joe_biden"
    # Home Assistant's view: one persistent session, so nothing is missed across broker restarts
    collector = MqttCollector(broker, [f"{base}/#", f"{topic_prefix}-ha/#"], persistent=True,
                              client_id=f"ha-{topic_prefix}")

    # Run A: both recognised live, then SIGKILL (no clean stop: "present" stays retained).
    proc = start_daemon(config)
    try:
        collector.wait_for(lambda ms: {"barack_obama", "joe_biden"} <= {
            e["person_id"] for e in payloads(ms, f"{base}/event")}, timeout=120)
        collector.wait_for(lambda ms: any(p["present"] for p in payloads(ms, obama)), timeout=10)
        proc.kill()
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    collector.wait_for_payload(f"{base}/status", "offline", timeout=30)
    assert json.loads(retained_value(broker, obama) or b"{}")["present"] is True
    run_a = len(collector.messages())

    # While stopped: Biden is removed from the gallery, and the broker goes away.
    remove_offline(state, "joe_biden")
    broker.stop()

    # Run B starts without a broker: Obama is recognised and spooled; the broker returns > MAX_AGE later.
    proc = start_daemon(config)
    try:
        deadline = time.monotonic() + 120
        out = ""
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            out += line
            if any(e["type"] == "recognized" for e in stdout_events(line)):
                break
        spooled = [e for e in stdout_events(out) if e["type"] == "recognized"]
        assert spooled, "run B recognised nobody"
        time.sleep(MAX_AGE + 2)
        broker.start()
        collector.wait_for(lambda ms: any(m.topic == f"{base}/history" for m in ms[run_a:]), timeout=60)
        time.sleep(3)  # live sightings after the reconnect
        proc.send_signal(signal.SIGTERM)
        _rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    collector.wait_for_payload(f"{base}/status", "stopped", timeout=30)
    messages = collector.messages()
    # what run B published (the collector's re-subscription after the broker restart also replays
    # retained messages, flagged retain; those are run A's state, not run B's publications)
    run_b = [m for m in messages[run_a:] if not m.retain]

    # No stale trigger message: the spooled recognition is history (late, replayed), never live.
    live_b = payloads(run_b, f"{base}/event")
    history_b = payloads(run_b, f"{base}/history")
    spooled_ids = {e["event_id"] for e in spooled}
    assert spooled_ids <= {e["event_id"] for e in history_b}
    assert not spooled_ids & {e["event_id"] for e in live_b}
    assert all(e["late"] and e["age_s"] > MAX_AGE for e in history_b if e["event_id"] in spooled_ids)
    # No event id twice on the live topic over both runs, and nothing late there.
    live_all = payloads(messages, f"{base}/event")
    assert len({e["event_id"] for e in live_all}) == len(live_all)
    assert all(not e["late"] and e["age_s"] <= MAX_AGE for e in live_all)

    # Removal entries for the offline removal: tombstones, then a config without Biden; his presence cleared.
    configs = payloads(run_b, ha_config)
    assert any(c["cmps"].get("presence_joe_biden") == {"p": "binary_sensor"} and
               c["cmps"].get("recognized_joe_biden") == {"p": "device_automation"} for c in configs)
    assert "presence_joe_biden" not in configs[-1]["cmps"] and "recognized_barack_obama" in configs[-1]["cmps"]
    assert any(m.topic == biden and m.payload == b"" for m in run_b)
    assert retained_value(broker, biden, timeout=1.0) is None
    # One discovery config per connect (plus the tombstone): run B connected once.
    assert len(configs) == 2, [sorted(c["cmps"]) for c in configs]

    # No presence blip: when run B says "online", the latest presence Home Assistant has is "absent".
    online = next(i for i, m in enumerate(run_b) if m.topic == f"{base}/status" and m.payload == b"online")
    before = payloads(run_b[:online], obama)
    assert before and before[-1]["present"] is False
    # ... and the sighting spooled during the outage (older than MAX_AGE at reconnect) never turned it on
    first_on = next((p for p in payloads(run_b[online:], obama) if p["present"]), None)
    if first_on is not None:
        assert first_on["last_seen"] > spooled[0]["time"]
    # Clean stop: nobody left present, last_seen kept.
    final = json.loads(retained_value(broker, obama) or b"{}")
    assert final["present"] is False and final["last_seen"] is not None
