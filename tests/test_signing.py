"""Signatures, canonical JSON, replay guard, rate limiting, event signing and the `facegate sign` CLI."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest

from facegate.cli import main as cli_main
from facegate.errors import CommandError, ConfigError
from facegate.events.payloads import EventPayload, event_payload
from facegate.remote.canonical import JsonRejected, canonical_json, es_number, parse_json_object
from facegate.remote.rate_limit import KeyedRateLimiter, TokenBucket
from facegate.remote.replay_guard import Freshness, ReplayGuard, ReplayGuardFull
from facegate.remote.schemas import CommandRejected
from facegate.remote.signing import (
    CommandVerifier,
    EventSigner,
    SigningKey,
    sign,
    sign_command,
    signature_valid,
    signing_input,
    verify_event,
)
from tests.fixtures.publisher_child import make_event
from tests.fixtures.remote_device import root_logging_restored

SECRET = "0123456789abcdef0123456789abcdef"
TOPIC = "facegate/door1/config/set"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- canonical JSON (RFC 8785) ----------------------------------------------------------------------


def test_rfc8785_example_is_reproduced_exactly() -> None:
    # RFC 8785 section 3.2.2 / appendix: input and canonical output
    raw = (
        b'{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],'
        b'"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/","literals":[null,true,false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    assert canonical_json(parse_json_object(raw)) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"), (-0.0, "0"), (1.0, "1"), (-1.5, "-1.5"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
        (1e-6, "0.000001"), (1e-7, "1e-7"), (123.456, "123.456"), (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"), (0.1, "0.1"), (9007199254740992.0, "9007199254740992"),
    ],
)
def test_numbers_follow_ecmascript(value: float, text: str) -> None:
    assert es_number(value) == text


def test_keys_sort_by_utf16_code_units() -> None:
    # U+1D11E is D834 DD1E in UTF-16, so it sorts before U+FB33: the opposite of code-point order.
    value = {"\ufb33": 1, "\U0001d11e": 2, "a": 3}
    assert canonical_json(value) == '{"a":3,"\U0001d11e":2,"\ufb33":1}'.encode()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1,"a":2}',  # duplicate key: which one was signed?
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b"[1,2]",
        b'"text"',
        b"\xff\xfe",
        b'{"a":' + b"[" * 40 + b"]" * 40 + b"}",
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"a":1' ,
        b'{"a": ' + b"9" * 5000 + b"}",
    ],
)
def test_parser_refuses_ambiguous_or_hostile_json(raw: bytes) -> None:
    with pytest.raises(JsonRejected):
        parse_json_object(raw)


def test_big_integers_and_surrogates_cannot_be_canonicalised() -> None:
    with pytest.raises(JsonRejected):
        canonical_json({"a": 2**60})
    with pytest.raises(JsonRejected):
        canonical_json({"a": "\ud800"})


# --- signing ------------------------------------------------------------------------------------------


def test_signature_is_hmac_over_documented_input() -> None:
    key = SigningKey(SECRET)
    signed = sign_command({"request_id": "r1", "patch": {}}, key, topic=TOPIC, now=1_800_000_000, nonce="n" * 22)
    body = {k: v for k, v in signed.items() if k != "sig"}
    message = json.dumps(
        {"context": "facegate.command.v1", "payload": body, "topic": TOPIC}, sort_keys=True, separators=(",", ":")
    ).encode()
    assert signing_input(signed, topic=TOPIC, context="command") == message
    assert signed["sig"] == hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    assert signed["ts"] == 1_800_000_000 and signed["nonce"] == "n" * 22 and signed["request_id"] == "r1"


def test_signature_binds_payload_topic_context_and_key() -> None:
    key = SigningKey(SECRET)
    signed = sign_command({"request_id": "r1", "patch": {"a": 1}}, key, topic=TOPIC)
    assert signature_valid(signed, key, topic=TOPIC, context="command")
    assert not signature_valid({**signed, "patch": {"a": 2}}, key, topic=TOPIC, context="command")
    assert not signature_valid(signed, key, topic="facegate/door2/config/set", context="command")
    assert not signature_valid(signed, key, topic=TOPIC, context="event")
    assert not signature_valid(signed, SigningKey(SECRET + "x"), topic=TOPIC, context="command")
    assert not signature_valid({**signed, "sig": signed["sig"].upper()}, key, topic=TOPIC, context="command")
    # key order and whitespace do not matter: the canonical form is signed
    reordered = json.loads(json.dumps(dict(reversed(list(signed.items()))), indent=3))
    assert signature_valid(reordered, key, topic=TOPIC, context="command")


def test_short_keys_are_refused_and_keys_never_shown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        SigningKey("too-short")
    key = SigningKey(SECRET)
    assert SECRET not in repr(key) and SECRET not in str(key)
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    assert SigningKey.from_file(path).same_as(key)


def _verifier(clock: Clock, *, allow_unsigned: bool = False, key: SigningKey | None = None,
              path: Path | None = None) -> CommandVerifier:
    guard = ReplayGuard(30.0, path=path, clock=clock)
    guard.not_before = None  # these tests are not about the restart barrier
    return CommandVerifier(key if key is not None else SigningKey(SECRET), max_skew_s=30.0, replay_guard=guard,
                           allow_unsigned=allow_unsigned, clock=clock)


def _code(verifier: CommandVerifier, payload: dict[str, Any], topic: str = TOPIC) -> str:
    with pytest.raises(CommandRejected) as info:
        verifier.verify(payload, topic=topic)
    return info.value.code


def test_verifier_accepts_once_and_rejects_every_failure_mode() -> None:
    clock = Clock()
    verifier = _verifier(clock)
    good = sign_command({"request_id": "r1"}, SECRET, topic=TOPIC, now=clock.now)
    assert verifier.verify(good, topic=TOPIC) is True
    assert _code(verifier, good) == "replayed"
    assert _code(verifier, {"request_id": "r2"}) == "unsigned"
    assert _code(verifier, {**sign_command({"request_id": "r3"}, SECRET, topic=TOPIC, now=clock.now),
                            "request_id": "r4"}) == "bad_signature"
    assert _code(verifier, sign_command({}, "another-secret-of-enough-length", topic=TOPIC, now=clock.now)) == (
        "bad_signature")
    assert _code(verifier, sign_command({}, SECRET, topic=TOPIC, now=clock.now - 31)) == "stale"
    assert _code(verifier, sign_command({}, SECRET, topic=TOPIC, now=clock.now + 31)) == "stale"
    verifier.verify(sign_command({}, SECRET, topic=TOPIC, now=clock.now - 29), topic=TOPIC)
    verifier.verify(sign_command({}, SECRET, topic=TOPIC, now=clock.now + 29), topic=TOPIC)
    # signed, but without ts/nonce: field-level errors
    bare = sign({"request_id": "r5"}, SigningKey(SECRET), topic=TOPIC, context="command")
    with pytest.raises(CommandRejected) as info:
        verifier.verify(bare, topic=TOPIC)
    assert info.value.code == "invalid" and {f.loc for f in info.value.fields} == {"ts", "nonce"}
    for bad_ts in (True, "1800000000", None):
        signed_bad = sign({"request_id": "r6", "ts": bad_ts, "nonce": "x" * 20}, SigningKey(SECRET), topic=TOPIC,
                          context="command")
        assert _code(verifier, signed_bad) == "invalid"
    short_nonce = sign({"request_id": "r7", "ts": clock.now, "nonce": "short"}, SigningKey(SECRET), topic=TOPIC,
                       context="command")
    assert _code(verifier, short_nonce) == "invalid"


def test_unsigned_only_in_development_mode_and_no_secret() -> None:
    clock = Clock()
    assert _verifier(clock, allow_unsigned=True).verify({"request_id": "r"}, topic=TOPIC) is False
    guard = ReplayGuard(30.0, clock=clock)
    nokey = CommandVerifier(None, replay_guard=guard, clock=clock)
    assert _code(nokey, sign_command({}, SECRET, topic=TOPIC, now=clock.now)) == "no_secret"
    assert _code(nokey, {"request_id": "r"}) == "unsigned"


# --- replay guard ---------------------------------------------------------------------------------------


def test_replay_guard_forgets_after_the_window_and_is_bounded() -> None:
    clock = Clock()
    guard = ReplayGuard(30.0, max_entries=3, clock=clock)
    guard.not_before = None
    for i in range(3):
        assert guard.check_and_remember(f"nonce-{i}", clock.now) is Freshness.FRESH
    with pytest.raises(ReplayGuardFull):
        guard.check_and_remember("nonce-3", clock.now)
    clock.now += 31
    assert guard.check_and_remember("nonce-3", clock.now) is Freshness.FRESH
    assert len(guard) == 1  # the expired ones were pruned


def test_restart_barrier_without_persistence() -> None:
    clock = Clock()
    guard = ReplayGuard(30.0, clock=clock)
    # a command the previous process may have accepted (even with a signer clock 29 s ahead)
    assert guard.check_and_remember("old", clock.now + 29) is Freshness.BEFORE_BARRIER
    clock.now += 40
    assert guard.check_and_remember("old", clock.now - 11 + 0) is Freshness.BEFORE_BARRIER
    assert guard.check_and_remember("new", clock.now) is Freshness.FRESH


def test_persisted_nonces_survive_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "nonces.json"
    first = ReplayGuard(30.0, path=path, clock=clock)
    assert first.not_before is None  # first start (no file): nothing to protect yet
    assert first.check_and_remember("abc", clock.now) is Freshness.FRESH
    clock.now += 5
    second = ReplayGuard(30.0, path=path, clock=clock)
    assert second.not_before is None
    assert second.check_and_remember("abc", clock.now - 5) is Freshness.REPLAYED
    assert second.check_and_remember("def", clock.now) is Freshness.FRESH
    # a wider window than the file was written with: barrier
    third = ReplayGuard(60.0, path=path, clock=clock)
    assert third.not_before == pytest.approx(clock.now + 60)
    # a corrupt file: barrier
    path.write_text("{not json")
    assert ReplayGuard(30.0, path=path, clock=clock).not_before is not None


def test_barrier_survives_a_crash_during_it(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "nonces.json"
    path.write_text("garbage")
    first = ReplayGuard(30.0, path=path, clock=clock)
    barrier = first.not_before
    assert barrier is not None
    clock.now += 2
    second = ReplayGuard(30.0, path=path, clock=clock)  # "crashed" and restarted within the barrier
    assert second.not_before == barrier
    assert second.check_and_remember("n", clock.now) is Freshness.BEFORE_BARRIER


def test_unpersistable_nonce_refuses_the_command(tmp_path: Path) -> None:
    clock = Clock()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    guard = ReplayGuard(30.0, path=blocker / "nonces.json", clock=clock)
    assert guard.not_before is not None  # unreadable: barrier
    clock.now = guard.not_before + 1
    verifier = CommandVerifier(SigningKey(SECRET), replay_guard=guard, clock=clock)
    signed = sign_command({"request_id": "r"}, SECRET, topic=TOPIC, now=clock.now)
    assert _code(verifier, signed) == "unavailable"
    assert len(guard) == 0


# --- rate limits ----------------------------------------------------------------------------------------


def test_token_bucket_refills_at_its_rate() -> None:
    clock = Clock(0.0)
    bucket = TokenBucket(rate_per_s=0.5, burst=3, clock=clock)
    assert [bucket.try_acquire() for _ in range(3)] == [None, None, None]
    wait = bucket.try_acquire()
    assert wait == pytest.approx(2.0)
    clock.now += 2.0
    assert bucket.try_acquire() is None
    assert bucket.try_acquire() is not None
    keyed = KeyedRateLimiter(1.0, 1, max_keys=2, clock=clock)
    assert keyed.try_acquire("a") is None and keyed.try_acquire("a") is not None
    assert keyed.try_acquire("b") is None


# --- events ---------------------------------------------------------------------------------------------


def test_signed_events_verify_and_stay_schema_valid() -> None:
    key = SigningKey("device-event-key-0123456789")
    topic = "facegate/door1/event"
    payload = event_payload(make_event("e" * 32), device_id="door1")
    assert payload["sig"] is None  # unsigned events still carry every key
    signed = EventSigner(key, topic).sign(payload)
    EventPayload.model_validate(signed)
    now = time.time()
    wire = json.dumps(signed).encode()
    assert verify_event(wire, key, topic=topic, now=now)["event_id"] == "e" * 32
    with pytest.raises(CommandError, match="signature"):
        verify_event({**signed, "person_id": "mallory"}, key, topic=topic, now=now)
    with pytest.raises(CommandError, match="signature"):
        verify_event(signed, key, topic="facegate/door2/event", now=now)
    with pytest.raises(CommandError, match="stale"):
        verify_event(signed, key, topic=topic, now=now + 120)
    guard = ReplayGuard(30.0)
    guard.not_before = None
    verify_event(signed, key, topic=topic, now=now, replay_guard=guard)
    with pytest.raises(CommandError, match="already seen"):
        verify_event(signed, key, topic=topic, now=now, replay_guard=guard)
    # a command signature never passes as an event signature
    with pytest.raises(CommandError):
        verify_event(sign(payload, key, topic=topic, context="command"), key, topic=topic, now=now)


# --- CLI ------------------------------------------------------------------------------------------------


def test_sign_cli_output_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with root_logging_restored():
        _sign_cli(tmp_path, capsys)


def _sign_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret"
    assert cli_main(["sign", "--new-secret", str(secret)]) == 0
    assert secret.stat().st_mode & 0o777 == 0o600
    assert cli_main(["sign", "--new-secret", str(secret)]) == 2  # never overwrites
    capsys.readouterr()
    photo = tmp_path / "face.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0fake")
    code = cli_main(["sign", "--secret-file", str(secret), "--topic", "facegate/door1/gallery/enroll",
                     "--photo", str(photo), '{"person_id": "alice", "name": "Alice"}'])
    assert code == 0
    out = capsys.readouterr().out.strip()
    signed = json.loads(out)
    assert signed["photos"] == [{"image": "/9j/4GZha2U=", "label": "face.jpg"}]
    key = SigningKey.from_file(secret)
    assert signature_valid(signed, key, topic="facegate/door1/gallery/enroll", context="command")
    clock = Clock(time.time())
    _verifier(clock, key=key).verify(signed, topic="facegate/door1/gallery/enroll")
    assert secret.read_text().strip() not in out
