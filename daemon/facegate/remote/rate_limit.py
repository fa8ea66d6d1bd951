"""Token-bucket rate limiting of remote commands.

A bucket holds up to ``burst`` tokens and gains ``rate_per_s`` tokens per second; a command costs one
token and is refused (with a ``retry_after_s`` hint) when the bucket is empty. The daemon keeps one
bucket per device for the commands it accepts (``security.commands_per_minute``) and a second one
bounding how many *rejections* it answers, so a flood of garbage cannot turn the device into a
result-message amplifier. :class:`KeyedRateLimiter` gives one bucket per key (e.g. per device id on a
controller) with a bounded number of keys.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from facegate.errors import ConfigError


class TokenBucket:
    """Thread-safe token bucket on a monotonic clock."""

    def __init__(self, rate_per_s: float, burst: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not (math.isfinite(rate_per_s) and rate_per_s > 0):
            raise ConfigError(f"rate must be > 0 per second, got {rate_per_s}")
        if not (math.isfinite(burst) and burst >= 1):
            raise ConfigError(f"burst must be >= 1, got {burst}")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()

    @classmethod
    def per_minute(cls, count: int, *, burst: float | None = None, clock: Callable[[], float] = time.monotonic
                   ) -> TokenBucket:
        """``count`` per minute on average, bursts of ``burst`` (default: a sixth of a minute's
        allowance, at least 10 and at most ``count``)."""
        if count < 1:
            raise ConfigError(f"rate limit must be >= 1 per minute, got {count}")
        if burst is None:
            burst = float(min(count, max(10, count // 6)))
        return cls(count / 60.0, burst, clock=clock)

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_s)

    def try_acquire(self, cost: float = 1.0) -> float | None:
        """Take ``cost`` tokens: ``None`` on success, else the seconds until they would be available."""
        with self._lock:
            self._refill()
            if self._tokens >= cost:
                self._tokens -= cost
                return None
            return (cost - self._tokens) / self.rate_per_s

    @property
    def tokens(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens


class KeyedRateLimiter:
    """One :class:`TokenBucket` per key; the least recently used keys are forgotten beyond ``max_keys``
    (a forgotten key starts again with a full bucket)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        *,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys < 1:
            raise ConfigError("max_keys must be >= 1")
        TokenBucket(rate_per_s, burst)  # validates the parameters
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def try_acquire(self, key: str, cost: float = 1.0) -> float | None:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = TokenBucket(self.rate_per_s, self.burst, clock=self._clock)
                self._buckets[key] = bucket
                while len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
        return bucket.try_acquire(cost)


__all__ = ["KeyedRateLimiter", "TokenBucket"]
