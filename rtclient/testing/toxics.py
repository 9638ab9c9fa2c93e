"""Toxics: what a :class:`~rtclient.testing.FaultProxy` can do to the bytes it forwards.

Each toxic is a frozen description; ``proxy.add(toxic)`` (or a shortcut such as
``proxy.latency(...)``) puts it in force. The semantics follow Shopify's Toxiproxy:

============  =================================================================
Latency       delay every chunk by ``latency`` ± ``jitter`` ms; order is kept
Bandwidth     at most ``rate`` KB/s (1 KB = 1000 bytes), a token bucket
Blackhole     Toxiproxy's ``timeout`` with 0: bytes are read and **dropped**, the
              sockets stay open (a half-open link); a close that arrives while
              it is active is held back until it is removed
ResetPeer     close with RST (``SO_LINGER`` 0) ``after`` ms; ``direction`` names
              who receives the RST: the client (downstream), the server
              (upstream) or both; the other peer gets a plain close
SlowClose     a close (FIN) travelling in this direction arrives ``delay`` ms late
LimitData     once ``n_bytes`` have passed in this direction (counted from the
              moment the toxic meets the connection), close the connection
Slicer        cut each write into pieces of ``average_size`` ± ``size_variation``
              bytes, ``delay`` ms apart
============  =================================================================

Conventions shared by all toxics:

* All durations are in **milliseconds**, as in Toxiproxy (``latency(200, jitter=50)``).
* ``direction`` is ``"upstream"`` (client → server), ``"downstream"`` (server → client)
  or ``"both"``.
* ``toxicity`` is the probability that a given connection is affected, drawn once per
  connection and toxic from the proxy's seeded ``random.Random`` (0 and 1 draw nothing).

The helpers at the bottom (:func:`latency_delay`, :func:`slice_sizes`,
:class:`TokenBucket`) are pure: time and randomness come in as arguments.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal, get_args

__all__ = [
    "Bandwidth",
    "Blackhole",
    "Direction",
    "Latency",
    "LimitData",
    "ResetPeer",
    "Slicer",
    "SlowClose",
    "Stream",
    "TokenBucket",
    "Toxic",
    "latency_delay",
    "slice_sizes",
]

Direction = Literal["upstream", "downstream", "both"]
"""Which flow a toxic acts on."""

Stream = Literal["upstream", "downstream"]
"""One flow of a connection: upstream is client → server, downstream is server → client."""

_DIRECTIONS: tuple[str, ...] = get_args(Direction)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _finite_non_negative(value: float, name: str) -> None:
    _check(math.isfinite(value) and value >= 0, f"{name} must be a finite number >= 0")


@dataclass(frozen=True)
class Toxic:
    """Base of all toxics: where it acts and how likely a connection is to be affected."""

    direction: Direction = field(default="both", kw_only=True)
    toxicity: float = field(default=1.0, kw_only=True)

    def __post_init__(self) -> None:
        _check(self.direction in _DIRECTIONS, f"direction must be one of {_DIRECTIONS}")
        _check(
            math.isfinite(self.toxicity) and 0.0 <= self.toxicity <= 1.0,
            "toxicity must be between 0 and 1",
        )
        self._validate()

    def _validate(self) -> None:
        """Subclasses check their own fields here (raise ValueError)."""

    def acts_on(self, stream: Stream) -> bool:
        """Whether this toxic touches the bytes flowing in ``stream``."""
        return self.direction in ("both", stream)


@dataclass(frozen=True)
class Latency(Toxic):
    """Delay each chunk by ``latency`` ± ``jitter`` ms (never below 0; never reorders)."""

    latency: float
    jitter: float = 0.0

    def _validate(self) -> None:
        _finite_non_negative(self.latency, "latency")
        _finite_non_negative(self.jitter, "jitter")


@dataclass(frozen=True)
class Bandwidth(Toxic):
    """Limit throughput to ``rate`` KB/s (1 KB = 1000 bytes, Toxiproxy's unit)."""

    rate: float

    def _validate(self) -> None:
        _check(math.isfinite(self.rate) and self.rate > 0, "rate must be a finite number > 0")

    @property
    def bytes_per_second(self) -> float:
        """The rate in bytes per second."""
        return self.rate * 1000.0


@dataclass(frozen=True)
class Blackhole(Toxic):
    """Swallow every byte (dropped, not delayed); keep the sockets open."""


@dataclass(frozen=True)
class ResetPeer(Toxic):
    """Close with RST ``after`` ms: existing connections when added, new ones on arrival."""

    after: float = 0.0

    def _validate(self) -> None:
        _finite_non_negative(self.after, "after")


@dataclass(frozen=True)
class SlowClose(Toxic):
    """Deliver a close (FIN) travelling in this direction ``delay`` ms late."""

    delay: float

    def _validate(self) -> None:
        _finite_non_negative(self.delay, "delay")


@dataclass(frozen=True)
class LimitData(Toxic):
    """Close the connection once ``n_bytes`` have passed in this direction."""

    n_bytes: int

    def _validate(self) -> None:
        _check(self.n_bytes >= 0, "n_bytes must be >= 0")


@dataclass(frozen=True)
class Slicer(Toxic):
    """Split each write into pieces of ``average_size`` ± ``size_variation`` bytes."""

    average_size: int
    size_variation: int = 0
    delay: float = 0.0

    def _validate(self) -> None:
        _check(self.average_size >= 1, "average_size must be >= 1")
        _check(
            0 <= self.size_variation < self.average_size,
            "size_variation must be >= 0 and smaller than average_size",
        )
        _finite_non_negative(self.delay, "delay")


def latency_delay(toxic: Latency, rng: random.Random) -> float:
    """The delay, in seconds, for one chunk: ``latency`` ± ``jitter`` ms, never negative."""
    jitter = rng.uniform(-toxic.jitter, toxic.jitter) if toxic.jitter else 0.0
    return max(0.0, toxic.latency + jitter) / 1000.0


def slice_sizes(total: int, toxic: Slicer, rng: random.Random) -> list[int]:
    """Piece sizes (each >= 1) that add up to ``total``."""
    sizes: list[int] = []
    left = total
    while left > 0:
        spread = toxic.size_variation
        size = toxic.average_size + (rng.randint(-spread, spread) if spread else 0)
        size = min(left, size)
        sizes.append(size)
        left -= size
    return sizes


class TokenBucket:
    """A token bucket in bytes that starts empty and may go into debt.

    ``reserve(n, now)`` takes ``n`` tokens and returns how long (seconds) the caller must
    wait before sending them. Starting empty means ``N`` bytes never leave sooner than
    ``N / rate`` seconds after the first reservation; ``burst`` caps the credit an idle
    bucket collects.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, now: float, *, burst: float | None = None) -> None:
        _check(math.isfinite(rate) and rate > 0, "rate must be a finite number > 0")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 50.0)
        self._tokens = 0.0
        self._last = now

    def reserve(self, n: int, now: float) -> float:
        """Take ``n`` tokens at time ``now``; return the wait (>= 0) before using them."""
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        self._tokens -= n
        return max(0.0, -self._tokens / self.rate)

    @property
    def piece_size(self) -> int:
        """How many bytes to send at a time so the flow stays smooth (>= 1)."""
        return max(1, int(self.burst))
