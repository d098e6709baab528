"""Per-principal token-bucket rate limiter (in memory, one per proxy process)."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """Token bucket per key: ``rate`` requests per second, bursts up to ``burst``.

    The state is per process; with N proxy replicas behind a load balancer a
    caller gets at most N times the rate, which is the usual trade-off for a
    stateless proxy (DynamoDB's own throttling stays the hard limit).
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)

    def acquire(self, key: str) -> float:
        """Take one token; return 0.0 if allowed, else the seconds until one is available."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            self._evict_full(now)
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0

    def _evict_full(self, now: float) -> None:
        # Buckets that have refilled completely carry no state: drop them.
        full = [
            key
            for key, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self._max_keys:
            # Still too many active callers: forget the oldest half rather than grow forever.
            for key in list(self._buckets)[: self._max_keys // 2]:
                del self._buckets[key]
