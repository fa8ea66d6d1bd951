"""The daemon's output side: MQTT topics, payloads, the spooling publisher, Home Assistant discovery."""

from __future__ import annotations
