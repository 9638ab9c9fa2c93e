"""Counters and heartbeat round-trip statistics for ``/health`` and tests."""

from __future__ import annotations

import math
from collections import deque

__all__ = ["COUNTER_NAMES", "Counters", "LatencyStats"]

COUNTER_NAMES = (
    "handshakes",
    "handshakes_rejected",
    "handshakes_abandoned",
    "auth_failures",
    "connections_opened",
    "connections_closed",
    "heartbeat_timeouts",
    "messages_committed",
    "duplicates",
    "bad_requests",
    "rate_limited",
    "acks_lost",
    "events_duplicated",
    "syncs",
    "batches",
    "errors",
    "slow_consumers",
    "limited",
    "connections_refused",
)


class Counters(dict[str, int]):
    """A dict of int counters, every name of :data:`COUNTER_NAMES` present from 0."""

    def __init__(self) -> None:
        super().__init__(dict.fromkeys(COUNTER_NAMES, 0))

    def bump(self, name: str, by: int = 1) -> None:
        self[name] = self.get(name, 0) + by


class LatencyStats:
    """The last ``window`` round-trip samples (seconds in, milliseconds out)."""

    __slots__ = ("_samples", "total")

    def __init__(self, window: int = 1000) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self.total = 0

    def add(self, rtt: float) -> None:
        self._samples.append(rtt * 1000.0)
        self.total += 1

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile ``q`` (0-100) in ms, or ``None`` without samples."""
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        rank = max(1, math.ceil(q / 100.0 * len(ordered)))
        return round(ordered[rank - 1], 3)

    def summary(self) -> dict[str, float | int | None]:
        return {"p50": self.percentile(50), "p95": self.percentile(95), "samples": self.total}
