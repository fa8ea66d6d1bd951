"""Field-level configuration errors: one type for YAML files (with line and column) and for remote
patches (without), so the CLI prints ``facegate.yaml:12:5: cameras[0].source.type: ...`` and a
``config/result`` ack lists ``{"loc": "cameras.door.enabled", "msg": ...}``.

Error messages never contain secret values: the caller decides per location whether the rejected
input may be echoed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from facegate.config.capture import SOURCE_TYPES
from facegate.config.redaction import redact_text
from facegate.errors import ConfigError

Loc = tuple[str | int, ...]

_TAG_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})
_ECHO_MAX = 40


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem at one key. ``loc`` is display text; ``line``/``column`` are 1-based."""

    loc: str
    msg: str
    type: str = "value_error"
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        return f"{where}{self.loc}: {self.msg}" if self.loc else f"{where}{self.msg}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``config/result`` acks and ``check-config --json``."""
        out: dict[str, Any] = {"loc": self.loc, "msg": self.msg, "type": self.type}
        if self.file is not None:
            out["file"] = self.file
        if self.line is not None:
            out["line"] = self.line
            out["column"] = self.column
        return out


class ConfigValidationError(ConfigError):
    """Invalid configuration or runtime patch; ``errors`` holds every field-level problem."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors) or "invalid configuration")


def dotted(path: Iterable[str | int], *, brackets: bool = True) -> str:
    """``("cameras", 0, "source")`` -> ``cameras[0].source`` (or ``cameras.0.source``)."""
    out = ""
    for part in path:
        if isinstance(part, int) and brackets:
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True, slots=True)
class Located:
    """Where a pydantic error location points in the input: the cleaned key path (union tags removed),
    its line/column if known, and whether the rejected input may be shown."""

    path: Loc
    line: int | None = None
    column: int | None = None
    echo: bool = False


def clean_path(data: Any, loc: Loc, *, missing: bool = False) -> Loc:
    """Follow ``loc`` through the input ``data``; drops pydantic's union-member tags and anything
    below a scalar (union member names). With ``missing`` the last element is a key absent from the
    input and is kept."""
    return _follow(data, loc, missing=missing)[0]


def _follow(data: Any, loc: Loc, *, missing: bool) -> tuple[Loc, tuple[str, str] | None]:
    """:func:`clean_path`, and the last union member the location went through as ``(field, tag)``
    (``("detector", "mtcnn")``), so a message can name the detector or source whose option it is."""
    path: list[str | int] = []
    member: tuple[str, str] | None = None
    node = data
    for i, elem in enumerate(loc):
        if isinstance(node, dict) and isinstance(elem, str):
            if elem in node:
                path.append(elem)
                node = node[elem]
            elif missing and i == len(loc) - 1:
                path.append(elem)
                break
            elif path and isinstance(path[-1], str):
                member = (path[-1], elem)  # a discriminated-union tag such as "replay"
        elif isinstance(node, (list, tuple)) and isinstance(elem, int) and 0 <= elem < len(node):
            path.append(elem)
            node = node[elem]
        else:
            break
    return tuple(path), member


def from_pydantic(
    err: ValidationError,
    data: Any,
    locate: Callable[[Loc], Located],
    *,
    file: str | None = None,
) -> list[FieldError]:
    """Translate a pydantic error into field errors. ``locate`` maps a cleaned path to its position and
    echo permission. Errors at one path (one per union member) are merged into one message."""
    merged: dict[Loc, tuple[Located, list[str], str, str | None]] = {}
    for item in err.errors(include_url=False):
        kind = str(item["type"])
        path, member = _follow(data, tuple(item["loc"]), missing=kind == "missing")
        msg = str(item["msg"])
        if kind in _TAG_ERRORS:
            ctx = item.get("ctx") or {}
            field = str(ctx.get("discriminator", "'type'")).strip("'")
            expected = ctx.get("expected_tags") or ", ".join(repr(t) for t in SOURCE_TYPES)
            path = (*path, field)
            tag = item.get("input")
            msg = (
                f"missing {field!r}"
                if kind == "union_tag_not_found"
                else f"unknown {field} {tag.get(field)!r}"
                if isinstance(tag, dict)
                else msg
            ) + f"; expected one of {expected}"
        elif kind == "extra_forbidden" and member is not None:
            msg = f"unknown key: not an option of {member[0]} {member[1]!r}"
        elif kind == "extra_forbidden":
            msg = "unknown key"
        elif kind == "missing":
            msg = "required key is missing"
        else:
            msg = msg.removeprefix("Value error, ")
            if member is not None:
                msg = f"{member[0]} {member[1]!r}: {msg}"
        if path in merged:
            messages = merged[path][1]
            if msg not in messages:
                messages.append(msg)
            continue
        located = locate(path)
        shown = None
        if located.echo and kind not in ("missing", "extra_forbidden") and kind not in _TAG_ERRORS:
            shown = _echo(item.get("input"))
        merged[path] = (located, [msg], kind, shown)
    return [
        FieldError(
            loc=dotted(located.path),
            msg=" or ".join(messages) + (f" (got {shown})" if shown is not None else ""),
            type=kind,
            file=file,
            line=located.line,
            column=located.column,
        )
        for located, messages, kind, shown in merged.values()
    ]


def _echo(value: Any) -> str | None:
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        text = redact_text(value)
        text = text if len(text) <= _ECHO_MAX else text[: _ECHO_MAX - 3] + "..."
        return repr(text)
    return None


__all__ = ["ConfigValidationError", "FieldError", "Loc", "Located", "clean_path", "dotted", "from_pydantic"]
