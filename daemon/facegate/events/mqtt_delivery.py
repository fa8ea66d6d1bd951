"""Delivery bookkeeping of the publisher's sender thread: spooled events handed to paho in order, at
most ``max_inflight`` unacknowledged, deleted from the spool on PUBACK; queued states sent; counters.

Split from :mod:`facegate.events.mqtt` (which owns the connection and the threads). Everything here
but :meth:`SpoolDelivery.ack` and the counters runs on the sender thread only, so the outstanding
table needs no lock. Each event is stamped and routed (live or history topic, signed) by
:class:`~facegate.events.freshness.EventFreshness` when it is handed over, not when it was spooled.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from facegate.events.freshness import EventFreshness
from facegate.events.mqtt_states import RetainedStates
from facegate.events.spool import Spool

#: log records keep the publisher's logger name (journal filters written before the split still match)
logger = logging.getLogger("facegate.events.mqtt")


@dataclass(frozen=True, slots=True)
class _Pending:
    kind: Literal["event", "state"]
    seq: int  # spool seq for events, 0 for states
    topic: str


class SpoolDelivery:
    """What the sender thread sends and what the broker acknowledged."""

    def __init__(self, spool: Spool, freshness: EventFreshness, *, max_inflight: int, start_wall: float) -> None:
        self.spool = spool
        self.freshness = freshness
        self.max_inflight = max_inflight
        #: rows spooled before this publisher existed come from an earlier process: replays
        self._start_wall = start_wall
        #: spool seqs handed to a connection and not acknowledged yet
        self._handed: set[int] = set()
        self._outstanding: dict[int, _Pending] = {}
        self._last_seq = 0
        self._acks: queue.SimpleQueue[tuple[int, bool, str]] = queue.SimpleQueue()
        self._lock = threading.Lock()  # the counters below are read by other threads
        self._published = 0
        self._rejected = 0
        self._states_published = 0

    # --- any thread ---------------------------------------------------------------------------------
    def ack(self, mid: int, failed: bool, reason: str) -> None:
        """A PUBACK (or a refusal) arrived (paho's network thread)."""
        self._acks.put((mid, failed, reason))

    @property
    def counts(self) -> tuple[int, int, int]:
        """``(published, rejected, states_published)``."""
        with self._lock:
            return self._published, self._rejected, self._states_published

    # --- sender thread ------------------------------------------------------------------------------
    @property
    def outstanding(self) -> bool:
        return bool(self._outstanding)

    def new_connection(self) -> None:
        """paho dropped its copies in on_connect, so nothing is in flight; events start again from the
        oldest spooled row (re-sends are routed as replays)."""
        self._outstanding.clear()
        self._last_seq = 0

    def process_acks(self) -> None:
        while True:
            try:
                mid, failed, reason = self._acks.get_nowait()
            except queue.Empty:
                return
            pending = self._outstanding.pop(mid, None)
            if pending is None:
                continue  # QoS 0, status, or a message we stopped tracking
            if pending.kind == "state":
                if failed:
                    logger.error("MQTT broker rejected state on %s: %s", pending.topic, reason)
                else:
                    with self._lock:
                        self._states_published += 1
                continue
            self.spool.ack(pending.seq)
            self._handed.discard(pending.seq)
            with self._lock:
                if failed:
                    self._rejected += 1
                else:
                    self._published += 1
            if failed:
                # Not authorised / quota: retrying cannot succeed, and blocking would stop every event.
                logger.error("MQTT broker rejected event (spool seq %d): %s; dropped", pending.seq, reason)

    def send_states(self, client: paho.Client, states: RetainedStates) -> None:
        while True:
            message = states.pop()
            if message is None:
                return
            info = client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and message.qos):
                # NO_CONN with QoS>0: paho keeps the message and sends it after reconnecting.
                if message.qos:
                    self._outstanding[info.mid] = _Pending("state", 0, message.topic)
                else:
                    with self._lock:
                        self._states_published += 1
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return
            else:
                logger.warning("MQTT state on %s not sent: %s", message.topic, paho.error_string(info.rc))
                states.push_front(message)
                return

    def send_events(self, client: paho.Client) -> None:
        in_flight = sum(1 for p in self._outstanding.values() if p.kind == "event")
        room = self.max_inflight - in_flight
        if room <= 0:
            return
        for message in self.spool.peek_batch(room, after_seq=self._last_seq):
            replayed = message.seq in self._handed or message.created < self._start_wall
            routed = self.freshness.route(message.payload, created=message.created, replayed=replayed,
                                          now=time.time())
            info = client.publish(routed.topic, routed.payload, qos=message.qos, retain=message.retain)
            if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                # NO_CONN: the connection dropped just now; the next connect drops paho's copy and the
                # row is sent again from the spool, as a replay.
                self._outstanding[info.mid] = _Pending("event", message.seq, routed.topic)
                self._handed.add(message.seq)
                self._last_seq = message.seq
                if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                    break
            else:
                logger.warning("MQTT event (spool seq %d) not sent: %s", message.seq, paho.error_string(info.rc))
                break


__all__ = ["SpoolDelivery"]
