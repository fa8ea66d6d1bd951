"""Strict JSON parsing of untrusted payloads and the canonical JSON form that signatures cover.

Canonical form: RFC 8785 (JSON Canonicalization Scheme, "JCS"): object keys sorted by their UTF-16
code units, no whitespace, strings escaped like ECMAScript's ``JSON.stringify`` (only ``"``, ``\\``
and control characters; everything else raw UTF-8), numbers in ECMAScript's shortest round-trip
notation (``1.0`` -> ``1``, ``1e-7`` -> ``1e-7``, ``1e21`` -> ``1e+21``). Any JCS library (JavaScript,
Go, Java, Rust, ...) therefore produces the same bytes, so a controller written in another language
can sign and verify. Integers must lie within +-2**53 (I-JSON); larger ones cannot be represented
identically everywhere and are refused.

Parsing (:func:`parse_json_object`) refuses what would make a signature ambiguous or the parser
expensive: invalid UTF-8, duplicate keys, ``NaN``/``Infinity``, nesting deeper than
:data:`MAX_DEPTH`, and anything but an object at the top level. Nothing is ever ``eval``'d.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

#: deepest nesting accepted in a payload (a command needs 5 levels; a config patch a few more)
MAX_DEPTH = 32
#: integers beyond this magnitude are not exactly representable as an IEEE double (I-JSON)
MAX_SAFE_INTEGER = 2**53


class JsonRejected(ValueError):
    """A payload that is not acceptable JSON for signing (see the module docstring)."""


def _no_duplicates(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonRejected(f"duplicate key {key[:40]!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise JsonRejected(f"{name} is not valid JSON")


def _check_depth(value: Any) -> None:
    # Iterative: a recursive walk could itself exhaust the stack on hostile input.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise JsonRejected(f"nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse untrusted bytes into a JSON object (``dict``); :class:`JsonRejected` otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise JsonRejected(f"not UTF-8 text (byte {err.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except JsonRejected:
        raise
    except json.JSONDecodeError as err:
        raise JsonRejected(f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise JsonRejected(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as err:  # e.g. an integer literal with more digits than Python converts
        raise JsonRejected(f"not acceptable JSON: {str(err)[:80]}") from None
    if not isinstance(value, dict):
        raise JsonRejected(f"the payload must be a JSON object, not {type(value).__name__}")
    _check_depth(value)
    return value


def es_number(value: float) -> str:
    """ECMAScript ``Number.prototype.toString`` of a finite double (RFC 8785 section 3.2.2.3)."""
    if not math.isfinite(value):
        raise JsonRejected("NaN and infinity have no JSON representation")
    if value == 0:
        return "0"  # also -0
    if value < 0:
        return "-" + es_number(-value)
    # repr() is the shortest string that round-trips, the digits ECMAScript requires too.
    _sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exp = int(exponent) + (len(digit_tuple) - len(digits))
    k = len(digits)
    n = exp + k  # value = 0.digits * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _encode(value: Any, out: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise JsonRejected(f"nested deeper than {MAX_DEPTH} levels")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise JsonRejected("integers beyond +-2**53 cannot be canonicalised (I-JSON)")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(es_number(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value, key=_str_key)):
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _encode(value[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    else:
        raise JsonRejected(f"{type(value).__name__} is not a JSON value")


def _str_key(key: object) -> bytes:
    if not isinstance(key, str):
        raise JsonRejected("object keys must be strings")
    return _utf16_key(key)


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON value (dicts, lists, str, int, float, bool, None)."""
    out: list[str] = []
    _encode(value, out, 1)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as err:
        raise JsonRejected("strings must not contain lone surrogates") from err


__all__ = ["MAX_DEPTH", "MAX_SAFE_INTEGER", "JsonRejected", "canonical_json", "es_number", "parse_json_object"]
