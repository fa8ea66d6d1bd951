"""Retained state of the publisher: what is waiting to be sent, and the latest retained value of each
topic, republished after every reconnect.

Split from :mod:`facegate.events.mqtt`. States marked ``before_online`` (presence) are not queued
while disconnected: the next connect publishes their latest value before ``online``, so a consumer
never sees a stale ``present`` from an earlier run once it sees ``online``. A long offline backlog is
bounded; a retained value squeezed out still comes back with the reconnect snapshot.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StateMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    before_online: bool = False


class RetainedStates:
    """The state queue and the retained snapshot; thread-safe. ``connected()``/``disconnected()`` are
    called from paho's callbacks, so "queue it or leave it to the next connect" is decided under the
    same lock as the connect's snapshot."""

    def __init__(self, max_pending: int = 1000) -> None:
        self._lock = threading.Lock()
        self._connected = False
        self._retained: dict[str, StateMessage] = {}
        self._pending: collections.deque[StateMessage] = collections.deque()
        self._max_pending = max_pending
        self._dropped = 0

    def put(self, message: StateMessage) -> None:
        with self._lock:
            if message.retain:
                self._retained[message.topic] = message
            if message.before_online and not self._connected:
                # the next connect publishes it before "online"; queueing it too would send it twice
                return
            self._pending.append(message)
            while len(self._pending) > self._max_pending:
                # Retained values come back with the reconnect snapshot; only older intents are lost.
                self._pending.popleft()
                self._dropped += 1

    def forget(self, topic: str) -> None:
        """Stop republishing ``topic`` on reconnect."""
        with self._lock:
            self._retained.pop(topic, None)

    def connected(self) -> list[StateMessage]:
        """A connection is up: the retained states to publish before ``online``."""
        with self._lock:
            self._connected = True
            return [m for m in self._retained.values() if m.before_online]

    def disconnected(self) -> None:
        with self._lock:
            self._connected = False

    def requeue_retained(self) -> None:
        """Queue every retained value for the new connection, each topic once (what is still queued
        is already its latest value); ``before_online`` ones went out in :meth:`connected`."""
        with self._lock:
            queued = {m.topic for m in self._pending}
            self._pending.extend(m for t, m in self._retained.items() if t not in queued and not m.before_online)

    def pop(self) -> StateMessage | None:
        """The next state to send, or None when nothing is queued or there is no connection."""
        with self._lock:
            if not self._pending or not self._connected:
                return None
            return self._pending.popleft()

    def push_front(self, message: StateMessage) -> None:
        """Put back a state that could not be sent (it goes first next time)."""
        with self._lock:
            self._pending.appendleft(message)

    @property
    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped


__all__ = ["RetainedStates", "StateMessage"]
