"""Replay protection for signed commands: each nonce is accepted once while its timestamp is fresh.

A signed command is accepted only while ``|now - ts| <= window_s``, so a nonce needs remembering only
until ``ts + window_s``; after that the timestamp check refuses the replay by itself. Memory is
therefore bounded by the command rate times the window, and hard-capped at ``max_entries``: when the
cap is reached the guard refuses new commands (:class:`ReplayGuardFull`) rather than forget a nonce
that is still replayable. Only commands whose signature verified reach the guard, so only a holder of
the fleet secret can fill it.

Restarts: a nonce remembered only in memory would be forgotten by a restart, and a command captured
in the last ``window_s`` seconds could be replayed once to the new process. Two defences:

* with ``path`` (the daemon uses ``<state_dir>/command-nonces.json``) every accepted nonce is written
  atomically (temp file, fsync, rename) *before* the command acts, and reloaded at start-up. When the
  write fails the command is refused (:class:`ReplayGuardUnavailable`), so the file always lists every
  nonce that is still replayable. A missing file is a first start (or a wiped state directory, which
  also lost the gallery and the overlay) and needs nothing else;
* without ``path``, or when the file is unreadable, corrupt, or was written with a smaller window,
  the guard starts with a barrier: commands with ``ts < start + window_s`` are refused as stale. Any
  command the previous process can have accepted had ``ts <= previous now + window_s < start +
  window_s``, so none can be replayed, whatever the clock skew between signer and device; the price
  is that commands are refused for about ``window_s`` seconds after such a start. The barrier is
  persisted too, so a crash during it does not lift it.

Both rely on the device's wall clock not jumping backwards across the restart (set the time with
NTP/an RTC before starting the daemon; the timestamp window depends on it anyway).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from facegate.config.runtime import atomic_write
from facegate.errors import CommandError, ConfigError

logger = logging.getLogger(__name__)

FILE_VERSION = 1
DEFAULT_MAX_ENTRIES = 4096
_MAX_FILE_BYTES = 4 * 1024 * 1024


class ReplayGuardError(CommandError):
    """The guard cannot vouch for a command; it is refused (fail closed)."""


class ReplayGuardFull(ReplayGuardError):
    """Too many fresh nonces to remember."""


class ReplayGuardUnavailable(ReplayGuardError):
    """The nonce could not be persisted."""


class Freshness(Enum):
    """Outcome of :meth:`ReplayGuard.check_and_remember`."""

    FRESH = "fresh"
    REPLAYED = "replayed"
    BEFORE_BARRIER = "before_barrier"


class ReplayGuard:
    """Remembers nonces of accepted commands for ``window_s`` seconds. Thread-safe.

    ``clock`` returns UNIX seconds (the same clock the timestamp check uses).
    """

    def __init__(
        self,
        window_s: float = 30.0,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ConfigError(f"replay window must be > 0 seconds, got {window_s}")
        if max_entries < 1:
            raise ConfigError("replay guard max_entries must be >= 1")
        self.window_s = float(window_s)
        self.max_entries = int(max_entries)
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}  # nonce -> ts of the command that carried it
        self.not_before: float | None = None
        if path is None or not self._load(path):
            self.not_before = clock() + self.window_s
            logger.info(
                "replay guard: no persisted nonces; commands signed before the next %.0f s are refused", self.window_s
            )
        if self.not_before is not None:
            # Written at once so that the barrier itself survives a crash during it.
            # A failure is logged; every accepted command needs the write anyway.
            with self._lock, contextlib.suppress(ReplayGuardUnavailable):
                self._save()

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    # --- persistence -----------------------------------------------------------------------------
    def _load(self, path: Path) -> bool:
        """Read the persisted nonces (and barrier); False when a new barrier is needed instead."""
        try:
            with path.open("rb") as handle:
                raw = handle.read(_MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return True  # first start
        except OSError as err:
            logger.warning("replay guard: cannot read %s (%s); using the start-up barrier", path, err.strerror)
            return False
        try:
            document = json.loads(raw) if len(raw) <= _MAX_FILE_BYTES else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            document = None
        if (
            not isinstance(document, dict)
            or document.get("version") != FILE_VERSION
            or not isinstance(document.get("nonces"), dict)
            or not isinstance(document.get("window_s"), (int, float))
            or not isinstance(document.get("not_before"), (int, float, type(None)))
        ):
            logger.warning("replay guard: %s is not a valid nonce file; using the start-up barrier", path)
            return False
        if float(document["window_s"]) < self.window_s:
            # Nonces the old process already dropped may still be replayable under the wider window.
            logger.info("replay guard: window grew since %s was written; using the start-up barrier", path)
            return False
        now = self._clock()
        for nonce, ts in document["nonces"].items():
            fresh = isinstance(ts, (int, float)) and math.isfinite(ts) and now - float(ts) <= self.window_s
            if isinstance(nonce, str) and fresh:
                self._seen[nonce] = float(ts)
        barrier = document["not_before"]
        if barrier is not None and now - float(barrier) <= self.window_s:
            self.not_before = float(barrier)
        return True

    def _save(self) -> None:
        if self.path is None:
            return
        text = json.dumps(
            {"version": FILE_VERSION, "window_s": self.window_s, "not_before": self.not_before, "nonces": self._seen},
            separators=(",", ":"),
        )
        try:
            atomic_write(self.path, text.encode("utf-8"))
        except OSError as err:
            logger.error("replay guard: cannot write %s: %s", self.path, err.strerror)
            raise ReplayGuardUnavailable(f"cannot record the nonce ({err.strerror}); command refused") from err

    # --- the check ---------------------------------------------------------------------------------
    def _prune(self, now: float) -> None:
        expired = [n for n, ts in self._seen.items() if now - ts > self.window_s]
        for nonce in expired:
            del self._seen[nonce]

    def check_and_remember(self, nonce: str, ts: float) -> Freshness:
        """Record ``nonce`` (of a command with timestamp ``ts`` that passed the window check).

        Returns ``FRESH`` the first time, ``REPLAYED`` for a repeat, ``BEFORE_BARRIER`` for a command
        signed before the start-up barrier; raises :class:`ReplayGuardFull` when the cap is reached and
        :class:`ReplayGuardUnavailable` when the nonce cannot be persisted (it is then not remembered).
        """
        now = self._clock()
        with self._lock:
            # The barrier is never lifted: a command the previous process accepted with a timestamp in
            # the future could otherwise pass the window check again once the barrier time is over.
            # It becomes moot by itself once now > not_before + window_s.
            if self.not_before is not None and ts < self.not_before:
                return Freshness.BEFORE_BARRIER
            if nonce in self._seen:
                return Freshness.REPLAYED
            self._prune(now)
            if len(self._seen) >= self.max_entries:
                raise ReplayGuardFull(
                    f"more than {self.max_entries} commands within {self.window_s:.0f} s; try again later"
                )
            self._seen[nonce] = float(ts)
            try:
                self._save()
            except ReplayGuardUnavailable:
                del self._seen[nonce]
                raise
        return Freshness.FRESH


__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "Freshness",
    "ReplayGuard",
    "ReplayGuardError",
    "ReplayGuardFull",
    "ReplayGuardUnavailable",
]
