"""``facegate sign``: sign a remote command (and optionally publish it and wait for the result).

Examples::

    facegate sign --new-secret /etc/facegate/credentials/command_secret
    facegate sign --secret-file secret --topic facegate/door1/config/set \\
        '{"request_id": "r1", "patch": {"recognition": {"threshold": 0.55}}}'
    facegate sign --secret-file secret --topic facegate/door1/gallery/enroll \\
        --photo alice.jpg '{"person_id": "alice", "name": "Alice"}' --publish --host broker --wait 10

The signed JSON is printed on stdout (one line), ready for ``mosquitto_pub -t TOPIC -m "$(...)"``.
Exit codes: 0 ok (or the awaited result is ok), 1 the device rejected the command, 2 usage or
configuration error, 4 bad input, 5 broker unreachable or no result in time.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import ssl
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from facegate.commands.output import emit_text
from facegate.errors import ConfigError, ImageError, MqttError

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_BAD_INPUT = 4
EXIT_RUNTIME = 5

_CONFIG_COMMAND = re.compile(r"^(?P<base>.+)/config/(set|get)$")
_GALLERY_COMMAND = re.compile(r"^.+/gallery/(enroll|remove|rename|list)$")


def result_topic_for(topic: str) -> str | None:
    """The topic a device answers a command on ``topic`` with, or None if ``topic`` is no command topic."""
    match = _CONFIG_COMMAND.match(topic)
    if match:
        return f"{match.group('base')}/config/result"
    if _GALLERY_COMMAND.match(topic):
        return f"{topic}/result"
    return None


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sign",
        help="sign a remote command (HMAC-SHA256 with the fleet secret); optionally publish it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("payload", nargs="?", default=None,
                   help="the command as JSON; '-' or omitted reads stdin (request_id is added if missing)")
    p.add_argument("--secret-file", type=Path, help="file holding the fleet secret (chmod 600)")
    p.add_argument("--topic", help="full command topic, e.g. facegate/door1/config/set (the signature binds it)")
    p.add_argument("--photo", type=Path, action="append", default=[],
                   help="add a local JPEG/PNG to photos[] (gallery/enroll); repeatable")
    p.add_argument("--ts", type=float, default=None, help="timestamp to sign (default: now)")
    p.add_argument("--nonce", default=None, help="nonce to use (default: 128 random bits)")
    p.add_argument("--new-secret", type=Path, metavar="FILE",
                   help="write a new random fleet secret (256 bits, hex) to FILE with mode 600 and exit")
    pub = p.add_argument_group("publishing")
    pub.add_argument("--publish", action="store_true", help="publish the signed command (QoS 1)")
    pub.add_argument("--host", default="localhost", help="broker host (default localhost)")
    pub.add_argument("--port", type=int, default=None, help="broker port (default 1883, 8883 with TLS)")
    pub.add_argument("--username", default=None, help="broker user name")
    pub.add_argument("--password-file", type=Path, default=None, help="file holding the broker password")
    pub.add_argument("--cafile", type=Path, default=None, help="CA certificate: connect with TLS, verifying")
    pub.add_argument("--cert", type=Path, default=None, help="client certificate (TLS)")
    pub.add_argument("--key", type=Path, default=None, help="client key (TLS)")
    pub.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="wait up to SECONDS for the device's result and print it")
    p.set_defaults(handler=run)


def _write_new_secret(path: Path) -> int:
    if path.exists():
        raise ConfigError(f"{path} exists; refusing to overwrite a secret")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    emit_text(f"wrote a new fleet secret to {path}")
    return EXIT_OK


def _read_payload(text: str | None) -> dict[str, Any]:
    if text is None or text == "-":
        text = sys.stdin.read()
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"payload is not valid JSON: {err}") from err
    if not isinstance(payload, dict):
        raise ConfigError("payload must be a JSON object")
    return payload


def _add_photos(payload: dict[str, Any], photos: list[Path]) -> None:
    if not photos:
        return
    entries = payload.setdefault("photos", [])
    if not isinstance(entries, list):
        raise ConfigError("payload 'photos' must be a list")
    for path in photos:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ImageError(f"{path}: cannot read ({err.strerror})") from err
        entries.append({"image": base64.b64encode(data).decode("ascii"), "label": path.name})


def run(args: argparse.Namespace) -> int:
    from facegate.remote.signing import SigningKey, sign_command

    if args.new_secret is not None:
        return _write_new_secret(args.new_secret)
    if args.secret_file is None or not args.topic:
        raise ConfigError("--secret-file and --topic are required (or --new-secret FILE)")
    key = SigningKey.from_file(args.secret_file)
    payload = _read_payload(args.payload)
    _add_photos(payload, args.photo)
    signed = sign_command(payload, key, topic=args.topic, now=args.ts, nonce=args.nonce)
    text = json.dumps(signed, separators=(",", ":"), ensure_ascii=False)
    if not args.publish:
        emit_text(text)
        return EXIT_OK
    return _publish(args, text.encode("utf-8"), str(signed["request_id"]))


def _publish(args: argparse.Namespace, payload: bytes, request_id: str) -> int:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

    tls = args.cafile is not None or args.cert is not None
    port = args.port or (8883 if tls else 1883)
    answer_topic = result_topic_for(args.topic) if args.wait > 0 else None
    if args.wait > 0 and answer_topic is None:
        raise ConfigError(f"--wait: {args.topic} is not a command topic (.../config/set|get, .../gallery/<op>)")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"facegate-sign-{uuid.uuid4().hex[:8]}")
    if args.username is not None:
        password = None
        if args.password_file is not None:
            from facegate.config.secrets import read_secret_file

            password = read_secret_file(args.password_file)
        client.username_pw_set(args.username, password)
    if tls:
        context = ssl.create_default_context(cafile=str(args.cafile) if args.cafile else None)
        if args.cert is not None:
            context.load_cert_chain(str(args.cert), str(args.key) if args.key else None)
        client.tls_set_context(context)
    connected = threading.Event()
    subscribed = threading.Event()
    answered = threading.Event()
    answer: list[bytes] = []

    def on_connect(c: paho.Client, userdata: object, flags: object, rc: Any, props: object) -> None:
        if rc.is_failure:
            return
        connected.set()
        if answer_topic is not None:
            c.subscribe(answer_topic, qos=1)
        else:
            subscribed.set()

    def on_subscribe(c: paho.Client, userdata: object, mid: int, rcs: object, props: object) -> None:
        subscribed.set()

    def on_message(c: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
        except (ValueError, UnicodeDecodeError):
            return
        if isinstance(data, dict) and data.get("request_id") == request_id:
            answer.append(bytes(msg.payload))
            answered.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(args.host, port, keepalive=30)
    except (OSError, ssl.SSLError) as err:
        raise MqttError(f"cannot connect to {args.host}:{port}: {err}") from err
    client.loop_start()
    try:
        if not connected.wait(10) or not subscribed.wait(10):
            raise MqttError(f"broker {args.host}:{port} refused the connection or subscription")
        info = client.publish(args.topic, payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(f"publish failed: {paho.error_string(info.rc)}")
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise MqttError("the broker did not acknowledge the command")
        emit_text(payload.decode("utf-8"))
        if answer_topic is None:
            return EXIT_OK
        if not answered.wait(args.wait):
            sys.stderr.write(f"facegate sign: no result on {answer_topic} within {args.wait:g} s\n")
            return EXIT_RUNTIME
        result = json.loads(answer[0])
        emit_text(json.dumps(result, indent=2, ensure_ascii=False))
        return EXIT_OK if result.get("ok") is True else EXIT_REJECTED
    finally:
        client.disconnect()
        client.loop_stop()
