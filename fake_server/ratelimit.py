"""Token buckets per user.  Pure: time comes in as ``now`` (monotonic seconds)."""

from __future__ import annotations

__all__ = ["RateLimiter", "TokenBucket"]


class TokenBucket:
    """A bucket of ``burst`` tokens refilled at ``rate`` tokens per second."""

    __slots__ = ("_burst", "_rate", "_tokens", "_updated")

    def __init__(self, *, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated = now

    def take(self, now: float) -> float:
        """Take one token.  Return 0.0 on success, else the seconds until one is free."""
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled to ``burst`` by ``now`` (same as a new one)."""
        elapsed = max(0.0, now - self._updated)
        return self._tokens + elapsed * self._rate >= self._burst


_SWEEP_MIN = 1024
"""Buckets the limiter holds before it first looks for full ones to forget."""


class RateLimiter:
    """One :class:`TokenBucket` per key (user id).

    A full bucket behaves like no bucket, so the limiter forgets full ones whenever it
    has doubled in size since the last look: memory follows the users active within
    ``burst / rate`` seconds, not every user the server ever saw (amortised O(1)).
    """

    __slots__ = ("_buckets", "_burst", "_rate", "_sweep_at")

    def __init__(self, *, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, TokenBucket] = {}
        self._sweep_at = _SWEEP_MIN

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float) -> float:
        """Take a token for ``key``; 0.0 when allowed, else the ``retryAfter`` seconds."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._sweep_at:
                self._sweep(now)
            bucket = self._buckets[key] = TokenBucket(rate=self._rate, burst=self._burst, now=now)
        return bucket.take(now)

    def _sweep(self, now: float) -> None:
        self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now)}
        self._sweep_at = max(_SWEEP_MIN, 2 * len(self._buckets))
