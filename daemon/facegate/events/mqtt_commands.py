"""Inbound messages of the publisher: the subscription table, the bounded command queue filled by
paho's network thread, and the dispatcher thread that runs the handlers.

Split from :mod:`facegate.events.mqtt` (which delivers outgoing messages). A slow handler (an
enrolment) runs here, never on the network thread, so keep-alives and acknowledgements never stall;
a message that finds the queue full is counted, logged (rate-limited) and answered by the topic's
overflow handler on the network thread.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading

import paho.mqtt.client as paho

from facegate.events.mqtt_settings import InboundMessage, MessageHandler

#: log records keep the publisher's logger name (journal filters written before the split still match)
logger = logging.getLogger("facegate.events.mqtt")


class CommandDispatcher:
    """Subscriptions and their handlers; thread-safe.

    ``connected()``/``disconnected()`` are called from paho's callbacks so that "register a filter" and
    "is it subscribed at the broker yet" are answered under one lock: :meth:`subscribe` says whether
    the caller must send SUBSCRIBE now, :meth:`connected` returns every filter to renew."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._connected = False
        self._subscriptions: dict[str, tuple[int, list[MessageHandler]]] = {}
        self._overflow: dict[str, list[MessageHandler]] = {}
        self._received = 0
        self._dropped = 0
        self._queue: queue.Queue[InboundMessage | None] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- subscription table -------------------------------------------------------------------------
    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int,
                  on_overflow: MessageHandler | None) -> bool:
        """Register ``handler``; True when connected (the caller subscribes at the broker now)."""
        with self._lock:
            if on_overflow is not None:
                self._overflow.setdefault(topic_filter, []).append(on_overflow)
            existing = self._subscriptions.get(topic_filter)
            handlers = [*existing[1], handler] if existing else [handler]
            self._subscriptions[topic_filter] = (max(qos, existing[0]) if existing else qos, handlers)
            return self._connected

    def unsubscribe(self, topic_filter: str) -> bool:
        """Forget ``topic_filter``; True when connected (the caller unsubscribes at the broker now)."""
        with self._lock:
            self._subscriptions.pop(topic_filter, None)
            self._overflow.pop(topic_filter, None)
            return self._connected

    def connected(self) -> list[tuple[str, int]]:
        """A connection is up: every ``(filter, qos)`` to subscribe on it."""
        with self._lock:
            self._connected = True
            return [(f, q) for f, (q, _) in self._subscriptions.items()]

    def disconnected(self) -> None:
        with self._lock:
            self._connected = False

    # --- network thread -----------------------------------------------------------------------------
    def receive(self, inbound: InboundMessage) -> None:
        """Queue a message for the dispatcher thread; when the queue is full, count it and answer it
        with the overflow handlers (on the calling thread)."""
        try:
            self._queue.put_nowait(inbound)
        except queue.Full:
            with self._lock:
                self._dropped += 1
                dropped = self._dropped
                overflow = [h for f, hs in self._overflow.items() if paho.topic_matches_sub(f, inbound.topic)
                            for h in hs]
            if dropped == 1 or dropped % 100 == 0:  # a flood must not flood the journal too
                logger.warning("MQTT command queue full (%d slots); dropped message on %s (%d dropped so far)",
                               self.queue_size, inbound.topic, dropped)
            for answer in overflow:
                try:
                    answer(inbound)
                except Exception:
                    logger.exception("MQTT overflow handler for %s failed", inbound.topic)
            return
        with self._lock:
            self._received += 1

    @property
    def counts(self) -> tuple[int, int]:
        """``(received, dropped)`` messages so far."""
        with self._lock:
            return self._received, self._dropped

    # --- dispatcher thread --------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="mqtt-commands", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is None:
                return
            with self._lock:
                handlers = [h for f, (_, hs) in self._subscriptions.items() if paho.topic_matches_sub(f, item.topic)
                            for h in hs]
            for handler in handlers:
                try:
                    handler(item)
                except Exception:
                    # A faulty command must never take the publisher down.
                    logger.exception("MQTT handler for %s failed", item.topic)


__all__ = ["CommandDispatcher"]
