"""sd_notify(3) over ``$NOTIFY_SOCKET`` with the standard library (no libsystemd dependency).

Every function is a no-op returning False when the process is not run by systemd with
``Type=notify`` (no ``NOTIFY_SOCKET``), so the daemon calls them unconditionally.

The daemon's protocol: ``READY=1`` once models are loaded, the spool is open and a camera delivered a
frame, or after a timeout with ``STATUS=degraded: ...`` (see :mod:`facegate.service`); ``WATCHDOG=1``
from the frame loop (through :class:`Watchdog`, so a hung pipeline stops the pings and systemd restarts
the service after ``WatchdogSec=``); ``RELOADING=1`` then ``READY=1`` around a SIGHUP reload;
``STOPPING=1`` on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)


def _address(environ: Mapping[str, str]) -> str | None:
    path = environ.get("NOTIFY_SOCKET")
    if not path:
        return None
    if path.startswith("@"):
        return "\0" + path[1:]  # abstract namespace
    if path.startswith("/"):
        return path
    logger.debug("unsupported NOTIFY_SOCKET %r (only AF_UNIX paths are)", path)
    return None


def notify(*assignments: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``KEY=VALUE`` assignments in one datagram; True when sent."""
    address = _address(os.environ if environ is None else environ)
    if address is None or not assignments:
        return False
    message = "\n".join(assignments).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError as err:
        logger.warning("sd_notify failed: %s", err)
        return False
    return True


def ready(status: str | None = None, *, environ: Mapping[str, str] | None = None) -> bool:
    return notify("READY=1", *([f"STATUS={status}"] if status else []), environ=environ)


def status(text: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Free-form status shown by ``systemctl status`` (one line)."""
    return notify(f"STATUS={text.splitlines()[0] if text else ''}", environ=environ)


def watchdog(*, environ: Mapping[str, str] | None = None) -> bool:
    return notify("WATCHDOG=1", environ=environ)


def stopping(status: str | None = None, *, environ: Mapping[str, str] | None = None) -> bool:
    return notify("STOPPING=1", *([f"STATUS={status}"] if status else []), environ=environ)


def reloading(*, environ: Mapping[str, str] | None = None) -> bool:
    """``RELOADING=1``; send :func:`ready` when the reload is done. MONOTONIC_USEC is what
    ``Type=notify-reload`` (systemd >= 253) requires; older systemd ignores it."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}", environ=environ)


def extend_timeout(seconds: float, *, environ: Mapping[str, str] | None = None) -> bool:
    """Ask for more start-up/shutdown time (e.g. while a slow SD card loads models)."""
    return notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1e6))}", environ=environ)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """``WatchdogSec=`` in seconds when the watchdog is enabled for this process, else None."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid is not None:
        try:
            if int(pid) != os.getpid():
                return None  # meant for a parent or child process
        except ValueError:
            return None
    return usec / 1e6


class Watchdog:
    """Rate-limited ``WATCHDOG=1``: call :meth:`ping` as often as you like (every frame); a ping goes
    out at most every half interval, as sd_watchdog_enabled(3) recommends."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._environ = environ
        self._clock = clock
        interval = watchdog_interval(environ)
        self.period: float | None = None if interval is None else interval / 2.0
        self._last: float | None = None

    @property
    def enabled(self) -> bool:
        return self.period is not None

    def ping(self) -> bool:
        """True when a ping was sent now."""
        if self.period is None:
            return False
        now = self._clock()
        if self._last is not None and now - self._last < self.period:
            return False
        self._last = now
        return watchdog(environ=self._environ)


__all__ = [
    "Watchdog",
    "extend_timeout",
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog",
    "watchdog_interval",
]
