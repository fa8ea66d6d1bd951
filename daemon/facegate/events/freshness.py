"""The rule "an unlock automation only ever sees live decisions", applied when an event is published.

An event is spooled when it is decided and published when the broker can take it, which after an
outage or a restart can be seconds to hours later. At publish time (not at decision time) every event
is stamped with ``age_s`` (seconds since the decision), ``replayed_from_spool`` (it was handed to the
broker connection before, or it was spooled by an earlier process) and ``late``
(``replayed_from_spool`` or ``age_s > max_event_age_s``), then routed:

* not late -> the live topic ``<base>/event``, which feeds Home Assistant's event entity and device
  triggers;
* late -> the history topic ``<base>/history``, which nothing that opens a door listens to.

A replay goes to history even when it is young: its first copy may already have reached the broker
(a lost PUBACK), so putting it on the live topic again could fire an automation twice. The live topic
therefore carries each ``event_id`` at most once, the history topic at least once.

Signing (``security.sign_events``) happens here too, after the stamp, so the signature covers
``age_s``/``late`` and is bound to the topic the event is actually published on.
"""

from __future__ import annotations

import collections
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from facegate.errors import ConfigError
from facegate.events.payloads import dumps

logger = logging.getLogger(__name__)

#: Default ``mqtt.max_event_age_s``: a door decision older than this is history, not a reason to open.
DEFAULT_MAX_EVENT_AGE_S = 5.0

#: ``(payload, topic) -> signed payload``; the topic is the one the event is published on.
EventSigner = Callable[[Mapping[str, Any], str], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class RoutedEvent:
    """What to publish for one spooled event."""

    topic: str
    payload: bytes
    live: bool
    age_s: float
    event_id: str | None


def decision_time(payload: Mapping[str, Any], fallback: float) -> float:
    """UNIX time of the decision from the payload's ``time`` (ISO-8601 UTC), else ``fallback``."""
    stamp = payload.get("time")
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return fallback


def _checked_age(max_age_s: float) -> float:
    if not (math.isfinite(max_age_s) and max_age_s > 0):
        raise ConfigError(f"max_event_age_s must be a positive number of seconds, not {max_age_s!r}")
    return float(max_age_s)


class EventFreshness:
    """Stamps and routes events at publish time (see the module docstring). Not thread-safe: the
    publisher's sender thread is its only user."""

    def __init__(
        self,
        live_topic: str,
        history_topic: str,
        *,
        max_age_s: float = DEFAULT_MAX_EVENT_AGE_S,
        signer: EventSigner | None = None,
        remember: int = 4096,
    ) -> None:
        self.live_topic = live_topic
        self.history_topic = history_topic
        self.max_age_s = _checked_age(max_age_s)
        self.signer = signer
        # event ids already published live (bounded): the live topic never carries one twice
        self._live_ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._remember = remember
        self.live = 0
        self.late = 0

    def update_config(self, *, max_age_s: float) -> None:
        """A new ``max_event_age_s`` for the next event routed (spooled ones included); the memory of
        event ids already published live is kept, so none of them goes live twice."""
        self.max_age_s = _checked_age(max_age_s)

    def route(self, payload: bytes, *, created: float, replayed: bool, now: float) -> RoutedEvent:
        """Stamp ``payload`` (the spooled JSON) for publication at ``now`` and pick its topic."""
        try:
            data: dict[str, Any] = json.loads(payload)
        except ValueError:
            # not ours to judge (a foreign payload in the spool): never live, published as it is
            logger.warning("spooled event is not JSON; publishing it on the history topic unchanged")
            return RoutedEvent(self.history_topic, payload, False, math.nan, None)
        event_id = data.get("event_id")
        key = None if event_id is None else str(event_id)
        age = max(0.0, now - decision_time(data, created))
        duplicate = key is not None and key in self._live_ids
        late = replayed or duplicate or age > self.max_age_s
        data["age_s"] = round(age, 3)
        data["late"] = late
        data["replayed_from_spool"] = replayed or duplicate
        topic = self.history_topic if late else self.live_topic
        signed = self.signer(data, topic) if self.signer is not None else data
        if late:
            self.late += 1
            logger.info("event %s is %.1f s old%s: published on the history topic", key, age,
                        " and a replay" if replayed or duplicate else "")
        else:
            self.live += 1
            if key is not None:
                self._live_ids[key] = None
                while len(self._live_ids) > self._remember:
                    self._live_ids.popitem(last=False)
        return RoutedEvent(topic, dumps(signed), not late, age, key)


__all__ = ["DEFAULT_MAX_EVENT_AGE_S", "EventFreshness", "EventSigner", "RoutedEvent", "decision_time"]
