"""Reconnect timing: when to try again, computed from time passed in (no sleeping here).

The schedule is built on tenacity's strategies: ``wait_exponential`` gives the
exponential ceiling and ``stop_after_attempt`` / ``stop_after_delay`` say when to give
up; the jitter is drawn from the schedule's own random generator, so a seeded
schedule is reproducible.

How the client uses it:

- A failed attempt: ``delay = schedule.failure(now)``, sleep ``delay``; ``None`` means
  give up (``max_attempts`` / ``max_elapsed`` reached).
- A connection that stayed up ``stable_after`` seconds and then dropped: the next
  attempt goes out after only ``uniform(0, first_delay)`` (tens of milliseconds,
  spread so the clients of a restarted server do not all arrive at once), and the
  exponential series starts again from ``base``.
- A connection that dropped before it was stable does *not* reset anything: a server
  that accepts and then closes at once sees delays that keep growing.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

import tenacity

__all__ = ["Backoff", "BackoffSchedule"]

_SHARED_RNG = random.Random()

Jitter = Literal["full", "equal", "none"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect policy. Defaults follow the seed guide: base 1 s, cap 30 s, full jitter.

    :param base: the ceiling of the first retry window, in seconds.
    :param cap: the largest delay.
    :param jitter: ``"full"`` (uniform in ``[0, ceiling]``, the default), ``"equal"``
        (uniform in ``[ceiling/2, ceiling]``) or ``"none"``.
    :param first_delay: after a stable connection drops, the first attempt waits
        ``uniform(0, first_delay)``.
    :param stable_after: a connection that stayed up this long resets the series (the
        client also wants at least ``base / 10``: see :mod:`rtclient.reconnect`).
    :param max_attempts: give up after this many consecutive failed attempts.
    :param max_elapsed: give up when failures have gone on this long.
    :param seed: seed of the jitter's random generator (for tests).
    """

    base: float = 1.0
    cap: float = 30.0
    jitter: Jitter = "full"
    first_delay: float = 0.05
    stable_after: float = 10.0
    max_attempts: int | None = None
    max_elapsed: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.base) and math.isfinite(self.cap) and 0 < self.base <= self.cap):
            raise ValueError("Backoff needs finite 0 < base <= cap")
        if self.jitter not in ("full", "equal", "none"):
            raise ValueError(f"jitter must be 'full', 'equal' or 'none', not {self.jitter!r}")
        if not (self.first_delay >= 0 and self.stable_after >= 0):
            raise ValueError("first_delay and stable_after must not be negative")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_elapsed is not None and not self.max_elapsed >= 0:
            raise ValueError("max_elapsed must not be negative")

    def schedule(self) -> BackoffSchedule:
        """Return a fresh schedule following this policy."""
        return BackoffSchedule(self)


@dataclass(slots=True)
class BackoffSchedule:
    """The mutable side of a :class:`Backoff`: counts failures, remembers when they began."""

    policy: Backoff
    failures: int = 0
    first_failure_at: float | None = None
    connected_at: float | None = None
    _rng: random.Random = field(init=False, repr=False)
    _wait: tenacity.wait.wait_exponential = field(init=False, repr=False)
    _stop: tenacity.stop.stop_base = field(init=False, repr=False)

    def __post_init__(self) -> None:
        p = self.policy
        # One generator for every unseeded schedule: its state is 2.5 KB per client.
        self._rng = random.Random(p.seed) if p.seed is not None else _SHARED_RNG
        self._wait = tenacity.wait_exponential(multiplier=p.base, max=p.cap)
        stop: tenacity.stop.stop_base = tenacity.stop_never
        if p.max_attempts is not None:
            stop = stop | tenacity.stop_after_attempt(p.max_attempts)
        if p.max_elapsed is not None:
            stop = stop | tenacity.stop_after_delay(p.max_elapsed)
        self._stop = stop

    def connected(self, now: float) -> None:
        """Record that a connection is up (it counts as stable only after a while)."""
        self.connected_at = now

    def disconnected(self, now: float) -> float | None:
        """Record that a live connection dropped; return the delay before the next attempt.

        A connection that had been stable resets the series and gets a short random
        delay. One that had not counts as one more failure.
        """
        up_since, self.connected_at = self.connected_at, None
        if up_since is not None and now - up_since >= self.policy.stable_after:
            self.failures = 0
            self.first_failure_at = None
            return self._rng.uniform(0.0, self.policy.first_delay)
        return self.failure(now)

    def failure(self, now: float) -> float | None:
        """Record a failed attempt; return the delay before the next one, or None to stop.

        A server's ``Retry-After`` is not this schedule's business: the reconnect policy
        (:mod:`rtclient.reconnect`) caps it and takes the longer of the two.
        """
        self.connected_at = None
        self.failures += 1
        if self.first_failure_at is None:
            self.first_failure_at = now
        state = self._retry_state(now)
        if self._stop(state):
            return None
        ceiling = self._wait(state)
        match self.policy.jitter:
            case "full":
                delay = self._rng.uniform(0.0, ceiling)
            case "equal":
                delay = self._rng.uniform(ceiling / 2, ceiling)
            case _:
                delay = ceiling
        if self.policy.max_elapsed is not None:
            # The last attempt goes out when the budget ends, not a whole delay after it.
            left = self.first_failure_at + self.policy.max_elapsed - now
            delay = min(delay, max(left, 0.0))
        return delay

    def _retry_state(self, now: float) -> tenacity.RetryCallState:
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = self.failures
        state.start_time = self.first_failure_at if self.first_failure_at is not None else now
        state.outcome_timestamp = now
        return state
