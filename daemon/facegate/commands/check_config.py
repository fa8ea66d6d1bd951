"""``facegate check-config FILE``: validate a configuration file.

Prints ``OK`` and a summary of the effective configuration (the YAML plus stored runtime overrides;
secrets redacted), or every error as ``FILE:LINE:COLUMN: key: problem``. Exit 0 when valid, 2 when not.
An unusable state directory (not a directory, not writable) or a model the configuration needs that is
not installed (the build-on-demand ``mtcnn``/``mediapipe_full`` detectors, liveness's FaceMesh) is an
error, a warning with --no-secrets (a file meant for another machine).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from facegate.commands.common import add_json_arg
from facegate.commands.output import emit_json, emit_text

if TYPE_CHECKING:
    from facegate.config.models import FacegateConfig

EXIT_OK = 0
EXIT_INVALID = 2


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "check-config",
        help="validate a configuration file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="facegate.yaml to check")
    p.add_argument("--no-overlay", dest="overlay", action="store_false", help="ignore the stored runtime overrides")
    p.add_argument(
        "--no-secrets",
        dest="secrets",
        action="store_false",
        help="do not read !credential / !secret_file values (check a file meant for another machine)",
    )
    p.add_argument("--runtime-keys", action="store_true", help="also list the remotely settable keys")
    add_json_arg(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from facegate.config import ConfigValidationError, FieldError, RuntimeConfig, load_yaml_config, redacted_dump
    from facegate.config.models import runtime_settable_keys
    from facegate.errors import ConfigError

    dropped: tuple[FieldError, ...] = ()
    try:
        if args.overlay:
            runtime = RuntimeConfig.open(args.file, resolve_secrets=args.secrets, repair=False)
            config, dropped, overlay_keys = runtime.config, runtime.dropped, _count_keys(runtime.overrides)
        else:
            config, overlay_keys = load_yaml_config(args.file, resolve_secrets=args.secrets), 0
    except ConfigValidationError as err:
        return _fail(args, [e.as_dict() for e in err.errors], [str(e) for e in err.errors])
    except ConfigError as err:
        return _fail(args, [{"loc": "", "msg": str(err), "type": "config_error"}], [str(err)])

    from facegate.config.state_dir import state_dir_problem

    state_problem = state_dir_problem(config.paths.state_dir)
    if state_problem is not None and args.secrets:
        return _fail(args, [{"loc": "state_dir", "msg": state_problem, "type": "state_dir"}],
                     [f"{args.file}: {state_problem}"])
    from facegate.model_check import missing_models

    # models are this machine's too: an error here, a warning for a file meant for another machine
    missing = missing_models(config)
    if missing and args.secrets:
        return _fail(args, [{"loc": m.loc, "msg": m.msg, "type": "model_not_installed"} for m in missing],
                     [f"{args.file}: {m}" for m in missing])
    warnings = [f"runtime override not applied: {e}" for e in dropped] + _warnings(config, args.secrets)
    if state_problem is not None:
        warnings.append(f"{state_problem} (on this machine)")
    warnings += [f"{m} (on this machine)" for m in missing]
    keys = [{"key": k.path, "effect": k.effect} for k in runtime_settable_keys()] if args.runtime_keys else None
    if args.json:
        out: dict[str, Any] = {"ok": True, "file": args.file, "warnings": warnings, "config": redacted_dump(config)}
        if keys is not None:
            out["runtime_keys"] = keys
        emit_json(out)
        return EXIT_OK
    emit_text(f"OK: {args.file}")
    emit_text("\n".join(_summary(config, overlay_keys)))
    for warning in warnings:
        emit_text(f"warning: {warning}")
    if keys is not None:
        emit_text("runtime-settable keys (live = applied without a rebuild):")
        emit_text("\n".join(f"  {k['key']}: {k['effect']}" for k in keys))
    return EXIT_OK


def _fail(args: argparse.Namespace, errors: list[dict[str, Any]], lines: list[str]) -> int:
    if args.json:
        emit_json({"ok": False, "file": args.file, "errors": errors})
    else:
        # diagnostics, like a compiler's, go to stderr
        sys.stderr.write("".join(f"{line}\n" for line in lines))
        sys.stderr.write(f"{args.file}: {len(lines)} error(s)\n")
        sys.stderr.flush()
    return EXIT_INVALID


def _count_keys(overrides: dict[str, Any]) -> int:
    def count(value: Any) -> int:
        if isinstance(value, dict) and value:
            return sum(count(v) for v in value.values())
        return 1

    return count(overrides) if overrides else 0


def _summary(config: FacegateConfig, overlay_keys: int) -> list[str]:
    from facegate.config.secrets import redact_text

    c = config
    paths = c.paths
    rows: list[tuple[str, str]] = [
        ("device", f"{c.device.device_id} ({c.device.name}), fleet {c.device.fleet_id}"),
        ("state", f"{paths.state_dir} (gallery {paths.gallery.name}, spool {paths.spool.name})"),
        ("overrides", f"{overlay_keys} key(s) from {paths.overlay}" if overlay_keys else "none"),
    ]
    for cam in c.cameras:
        src = cam.source
        if src.type == "replay":
            target = f"replay {src.path}"
        elif src.type == "opencv":
            target = f"opencv {redact_text(str(src.target))}"
        else:
            target = f"picamera2 #{src.camera_num} lores {src.lores_size[0]}x{src.lores_size[1]}"
        rows.append((f"camera {cam.id}", f"{target}{'' if cam.enabled else ' (disabled)'}"))
    if not c.cameras:
        rows.append(("cameras", "none"))
    d, r = c.detector, c.recognition
    rows += [
        ("detector", f"{d.backend} {d.variant or 'default'}, score >= {d.score_threshold}, {d.num_threads} thread(s)"),
        (
            "recognition",
            f"{r.model_name} {r.variant or 'default'}, {r.distance_metric} "
            f"threshold {'manifest' if r.threshold is None else r.threshold}, margin {r.margin}",
        ),
        (
            "decision",
            f"{c.decision.votes_required} votes in {c.decision.window_s} s, unknown after "
            f"{c.decision.unknown_votes}, cooldown {c.decision.cooldown_s} s",
        ),
    ]
    m = c.mqtt
    if m.enabled:
        scheme = "mqtts" if m.tls.enabled else "mqtt"
        auth = f"user {m.username}, password {'set' if m.password else 'none'}" if m.username else "anonymous"
        rows.append(("mqtt", f"{scheme}://{m.host}:{m.effective_port} {m.prefix}/{c.device.device_id}/, {auth}"))
    else:
        rows.append(("mqtt", "disabled"))
    rows += [
        ("homeassistant", c.homeassistant.discovery_prefix if c.homeassistant.enabled else "disabled"),
        ("analysis", ", ".join(c.analysis.actions) or "none"),
        ("liveness", c.liveness.mode),
        ("logging", c.logging.level),
    ]
    width = max(len(k) for k, _ in rows)
    return [f"  {k.ljust(width)}  {v}" for k, v in rows]


def _warnings(config: FacegateConfig, secrets: bool) -> list[str]:
    from facegate.config.secrets import command_secret
    from facegate.errors import ConfigError

    out: list[str] = []
    s = config.security
    if s.allow_unsigned:
        out.append("security.allow_unsigned is on: anyone on the broker can change this device")
    elif s.commands_enabled and secrets:
        try:
            present = command_secret(s) is not None
        except ConfigError as err:
            out.append(f"command secret: {err}")
        else:
            if not present:
                out.append("no command secret (credential or file): remote commands will be refused")
    local = config.mqtt.host in ("localhost", "127.0.0.1", "::1")
    if config.mqtt.enabled and not config.mqtt.tls.enabled and not local:
        out.append("MQTT without TLS to a remote broker: credentials and events travel in clear text")
    if config.mqtt.tls.insecure:
        out.append("mqtt.tls.insecure: the broker's host name is not verified")
    if not any(c.enabled for c in config.cameras):
        out.append("no enabled camera: `facegate run` will have nothing to watch")
    return out
