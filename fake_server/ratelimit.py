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


class RateLimiter:
    """One :class:`TokenBucket` per key (user id)."""

    __slots__ = ("_buckets", "_burst", "_rate")

    def __init__(self, *, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, now: float) -> float:
        """Take a token for ``key``; 0.0 when allowed, else the ``retryAfter`` seconds."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate=self._rate, burst=self._burst, now=now)
        return bucket.take(now)
