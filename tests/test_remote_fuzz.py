"""Property-based fuzzing of the command handler, in-process: random bytes, random JSON, mutated valid
signed commands and validly signed garbage. Every input must produce one of the documented results
(never ``internal``, never an exception), and a rejected input must change nothing."""

from __future__ import annotations

import base64
import contextlib
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facegate.engine import FaceEngine
from facegate.events.topics import Topics
from facegate.images import load_image
from facegate.remote.commands import command_topic, result_topic
from facegate.remote.schemas import COMMAND_KINDS, ERROR_CODES, RESULT_MODELS, CommandKind
from facegate.remote.signing import new_nonce, sign_command
from tests.fixtures.remote_device import SECRET
from tests.test_remote_commands import Rig, make_rig

TOPICS = Topics("door1", prefix="t")
EXAMPLES = 2400
MINIMUM = 2000

#: field names of the protocol and the config, so generated objects often hit real code paths
VOCABULARY = [
    "request_id", "ts", "nonce", "sig", "patch", "dry_run", "person_id", "name", "photos", "image", "label",
    "embeddings", "model_id", "vector", "metadata", "replace", "include_deleted", "recognition", "threshold",
    "margin", "distance_metric", "decision", "votes_required", "cameras", "door", "enabled", "source", "type",
    "url", "path", "pipeline", "security", "allow_unsigned", "mqtt", "stats", "interval_s", "logging", "level",
    "gates", "min_face_px", "liveness", "mode", "analysis", "actions", "dlib_resnet_v1", "obama", "__proto__",
]

json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.sampled_from(VOCABULARY)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(VOCABULARY) | st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)
json_objects = st.dictionaries(st.sampled_from(VOCABULARY) | st.text(max_size=8), json_values, max_size=8)
kinds = st.sampled_from(COMMAND_KINDS)


@pytest.fixture(scope="module")
def fuzz_rig(tmp_path_factory: pytest.TempPathFactory, engine: FaceEngine) -> Iterator[Rig]:
    # nonces in memory only: persistence (an fsync per accepted signature) is tested in test_signing
    rig = make_rig(tmp_path_factory.mktemp("fuzz"), engine, persist_nonces=False)
    yield rig
    rig.gallery.close()


@pytest.fixture(scope="module")
def small_face(samples_dir: Path) -> str:
    """A small real face photo (JPEG, base64), so valid enrolments stay cheap."""
    image = load_image(samples_dir / "obama.jpg")[60:460, 250:750]
    small = cv2.resize(image, (250, 200), interpolation=cv2.INTER_AREA)
    return base64.b64encode(cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()).decode()


def valid_body(kind: CommandKind, photo: str, rnd: random.Random) -> dict[str, Any]:
    person = rnd.choice(["obama", "alice", "bob"])
    bodies: dict[str, dict[str, Any]] = {
        "config/set": {"patch": rnd.choice([{"recognition": {"threshold": 0.5}}, {"stats": {"interval_s": 12}},
                                            {"cameras": {"door": {"enabled": False}}}, {"decision": None}])},
        "config/get": {},
        "gallery/enroll": {"person_id": person, "name": person.title(), "photos": [{"image": photo, "label": "p"}]},
        "gallery/remove": {"person_id": person},
        "gallery/rename": {"person_id": person, "name": "Renamed"},
        "gallery/list": {"include_deleted": rnd.random() < 0.5},
    }
    return dict(bodies[kind])


def mutate_structure(value: Any, rnd: random.Random, junk: Any) -> Any:
    """Replace, delete or add one member somewhere in a JSON value."""
    if isinstance(value, dict) and value:
        key = rnd.choice(list(value))
        choice = rnd.random()
        out = dict(value)
        if choice < 0.3:
            del out[key]
        elif choice < 0.55:
            out[rnd.choice(VOCABULARY)] = junk
        elif choice < 0.8:
            out[key] = junk
        else:
            out[key] = mutate_structure(out[key], rnd, junk)
        return out
    if isinstance(value, list) and value:
        out_list = list(value)
        i = rnd.randrange(len(out_list))
        out_list[i] = mutate_structure(out_list[i], rnd, junk) if rnd.random() < 0.5 else junk
        return out_list
    return junk


def mutate_bytes(raw: bytes, rnd: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.random()
        i = rnd.randrange(len(data) + 1)
        if op < 0.4 and data:
            data[min(i, len(data) - 1)] = rnd.randrange(256)
        elif op < 0.7:
            data.insert(i, rnd.randrange(256))
        elif data:
            del data[min(i, len(data) - 1)]
    return bytes(data)


@st.composite
def payloads(draw: st.DrawFn, photo: str) -> tuple[CommandKind, bytes, str]:
    kind: CommandKind = draw(kinds)
    strategy = draw(st.sampled_from(["bytes", "json", "signed-mutated", "bytes-mutated", "resigned-mutated",
                                     "signed-garbage", "valid"]))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    topic = command_topic(TOPICS, kind)
    if strategy == "bytes":
        return kind, draw(st.binary(max_size=512)), strategy
    if strategy == "json":
        return kind, json.dumps(draw(json_objects)).encode(), strategy
    if strategy == "signed-garbage":
        body = draw(json_objects)
        body.pop("sig", None)
        body.setdefault("request_id", "fuzz")
        try:
            return kind, json.dumps(sign_command(body, SECRET, topic=topic, nonce=new_nonce())).encode(), strategy
        except ValueError:  # e.g. an integer beyond 2**53 cannot be signed
            return kind, json.dumps(body).encode(), strategy
    signed = sign_command(valid_body(kind, photo, rnd), SECRET, topic=topic)
    if strategy == "valid":
        return kind, json.dumps(signed).encode(), strategy
    if strategy == "bytes-mutated":
        return kind, mutate_bytes(json.dumps(signed).encode(), rnd), strategy
    junk = draw(json_values)
    mutated = mutate_structure(signed, rnd, junk)
    if strategy == "resigned-mutated" and isinstance(mutated, dict):
        mutated.pop("sig", None)
        mutated["nonce"] = new_nonce()
        with contextlib.suppress(ValueError):  # e.g. an integer beyond 2**53 cannot be signed
            mutated = sign_command(mutated, SECRET, topic=topic, nonce=mutated["nonce"])
    return kind, json.dumps(mutated).encode(), strategy


@pytest.mark.slow
def test_fuzzed_payloads_never_crash_and_rejections_change_nothing(fuzz_rig: Rig, small_face: str) -> None:
    seen: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(payloads(small_face))
    def check(sample: tuple[CommandKind, bytes, str]) -> None:
        kind, raw, strategy = sample
        before = fuzz_rig.state()
        result = fuzz_rig.handler.handle(kind, raw)
        # only the documented result type, and it round-trips through its schema model
        RESULT_MODELS[kind].model_validate_json(result.to_json())
        assert result.kind == kind and result.topic == result_topic(TOPICS, kind)
        if result.ok:
            outcomes["ok"] += 1
        else:
            assert result.code in ERROR_CODES and result.code != "internal", result.payload
            outcomes[str(result.code)] += 1
            assert fuzz_rig.state() == before, (strategy, result.code)
        seen[strategy] += 1

    check()
    total = sum(seen.values())
    print(f"fuzz: {total} payloads; strategies {dict(seen)}; outcomes {dict(outcomes)}")  # noqa: T201
    assert total >= MINIMUM
    assert outcomes["ok"] > 0 and outcomes["bad_signature"] > 0 and outcomes["malformed"] > 0
    assert outcomes["invalid"] > 0 and outcomes["unsigned"] > 0
    # still alive and correct afterwards
    final = fuzz_rig.send("gallery/list", {"request_id": "after-fuzz"})
    assert final.ok
