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
        return 0.0 if self.take(key, 1) else self.wait(key)

    def take(self, key: str, wanted: int) -> int:
        """Take up to ``wanted`` whole tokens; return how many were taken."""
        now = self._clock()
        tokens = self._tokens(key, now)
        taken = min(wanted, int(tokens))
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            self._evict_full(now)
        self._buckets[key] = (tokens - taken, now)
        return taken

    def wait(self, key: str) -> float:
        """The seconds until ``key`` has a token (0.0 if it has one now)."""
        return max(0.0, (1.0 - self._tokens(key, self._clock())) / self.rate)

    def _tokens(self, key: str, now: float) -> float:
        """The tokens ``key`` has at ``now``, refilled since its last take."""
        tokens, last = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate)

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
