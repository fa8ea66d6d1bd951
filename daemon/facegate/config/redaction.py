"""Removing passwords from text that may reach logs, reprs or ``config/state``."""

from __future__ import annotations

import re

# scheme://user:password@host -> scheme://user:***@host (RTSP cameras carry passwords in URLs)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s/]*@")


def redact_text(text: str) -> str:
    """``text`` with passwords inside URLs replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


__all__ = ["redact_text"]
