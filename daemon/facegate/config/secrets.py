"""Secrets: systemd credentials, secret files, and redaction.

A systemd credential is a file ``$CREDENTIALS_DIRECTORY/<name>`` that systemd provides to the service
(``LoadCredential=<name>:/etc/facegate/credentials/<name>``); it is readable only by the service and
never part of the environment. Secret values are returned as :class:`pydantic.SecretStr` (or plain str
to the loader, which wraps them) and are never logged: log messages name the credential, not its value.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from facegate.config.models import CREDENTIAL_PATTERN, SecurityConfig
from facegate.config.redaction import redact_text
from facegate.errors import ConfigError

logger = logging.getLogger(__name__)

MAX_SECRET_BYTES = 64 * 1024
REDACTED = "**********"

_CREDENTIAL_NAME = re.compile(CREDENTIAL_PATTERN)


def redact(value: Any) -> Any:
    """Deep copy of a JSON-like value with SecretStr values masked and URL passwords removed."""
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def _read(path: Path, what: str) -> str:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SECRET_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{what}: {path} does not exist") from None
    except OSError as err:
        raise ConfigError(f"{what}: cannot read {path}: {err.strerror}") from err
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigError(f"{what}: {path} is larger than {MAX_SECRET_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what}: {path} is not UTF-8 text") from err
    # `echo secret > file` leaves a newline that is not part of the secret
    text = text.rstrip("\r\n")
    if not text:
        raise ConfigError(f"{what}: {path} is empty")
    return text


def credential_path(name: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/<name>`` or None when not running with systemd credentials."""
    if not _CREDENTIAL_NAME.match(name) or name in (".", ".."):
        raise ConfigError(f"invalid credential name {name!r}")
    env = os.environ if environ is None else environ
    directory = env.get("CREDENTIALS_DIRECTORY")
    return Path(directory) / name if directory else None


def read_credential(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of systemd credential ``name``; ConfigError when it is not provided."""
    path = credential_path(name, environ)
    if path is None:
        raise ConfigError(
            f"credential {name!r}: $CREDENTIALS_DIRECTORY is not set "
            f"(run under systemd with LoadCredential={name}:/etc/facegate/credentials/{name})"
        )
    if not path.is_file():
        raise ConfigError(f"credential {name!r} is not provided (no LoadCredential={name}:... in the unit?)")
    return _read(path, f"credential {name!r}")


def read_secret_file(path: Path) -> str:
    """The content of a secret file, minus a trailing newline; warns when others can read it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = 0
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("secret file %s is accessible to group/others (mode %o); use chmod 600", path, mode & 0o777)
    return _read(path, "secret file")


def load_secret(
    *, credential: str | None, file: Path | None, environ: Mapping[str, str] | None = None
) -> SecretStr | None:
    """The credential when systemd provides it, else the file, else None (no secret configured)."""
    if credential is not None:
        path = credential_path(credential, environ)
        if path is not None and path.is_file():
            return SecretStr(_read(path, f"credential {credential!r}"))
    if file is not None:
        return SecretStr(read_secret_file(file))
    return None


def command_secret(security: SecurityConfig, environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """The per-fleet HMAC secret for remote commands, or None when none is configured."""
    return load_secret(
        credential=security.command_secret_credential, file=security.command_secret_file, environ=environ
    )


def event_key(security: SecurityConfig, environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """The device's event-signing key, or None when none is configured."""
    return load_secret(credential=security.event_key_credential, file=security.event_key_file, environ=environ)


__all__ = [
    "REDACTED",
    "command_secret",
    "credential_path",
    "event_key",
    "load_secret",
    "read_credential",
    "read_secret_file",
    "redact",
    "redact_text",
]
