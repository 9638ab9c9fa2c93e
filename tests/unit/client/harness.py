"""A Client over MemoryTransport, served by fake_server's hub, in the loop's time.

Tests here run with ``pytest.mark.looptime``: the event loop's clock is virtual and
jumps to the next timer whenever every task waits, so minutes of backoff, heartbeats
and token lifetimes pass in milliseconds. The Client's session clock is the loop's
clock (its default) and its wall clock is :attr:`Harness.wall_clock`, which moves with
the loop; the hub reads the same wall clock for token ``exp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import looptime

from rtclient import Backoff, Client
from rtclient.transports.memory import MemoryConnection, MemoryTransport

from .memory_hub import MemoryHub

__all__ = [
    "WALL_EPOCH",
    "Harness",
    "Issuer",
    "RecordingTransport",
    "gaps",
    "harness",
    "let_time_pass",
    "now",
]

URL = "memory://hub"
WALL_EPOCH = 1_700_000_000.0
"""The wall-clock time when the loop's clock reads 0 (in the past: PyJWT checks ``iat``)."""


def gaps(times: list[float]) -> list[float]:
    """The intervals between successive times (rounded to the millisecond)."""
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


def now() -> float:
    """The loop's (virtual) time."""
    return asyncio.get_running_loop().time()


class RecordingTransport(MemoryTransport):
    """A MemoryTransport that records the loop time of every connection attempt."""

    def __init__(self) -> None:
        super().__init__()
        self.attempt_times: list[float] = []
        self._attempted = asyncio.Condition()

    async def connect(
        self, url: str, *, token: str | None, open_timeout: float
    ) -> MemoryConnection:
        self.attempt_times.append(now())
        async with self._attempted:
            self._attempted.notify_all()
        return await super().connect(url, token=token, open_timeout=open_timeout)

    async def wait_attempts(self, count: int, timeout: float) -> None:
        """Wait until ``count`` attempts were made in all (``timeout``: virtual seconds)."""
        async with asyncio.timeout(timeout), self._attempted:
            await self._attempted.wait_for(lambda: len(self.attempt_times) >= count)


class Issuer:
    """A TokenProvider that asks the hub for a token of ``ttl`` s; records every call.

    ``reuse=True``: hands out the same token again until it has expired (a caching
    provider), so an in-band refresh finds nothing fresher.
    """

    def __init__(self, harness: Harness, user: str, ttl: float, *, reuse: bool = False) -> None:
        self._harness, self.user, self.ttl, self.reuse = harness, user, ttl, reuse
        self.calls: list[tuple[float, bool]] = []
        """``(loop time, force)`` of every call."""
        self._token: str | None = None
        self._expires = 0.0

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.calls]

    async def get(self, *, force: bool = False) -> str | None:
        self.calls.append((now(), force))
        if not self.reuse or self._harness.wall_clock() >= self._expires:
            self._token = self._harness.hub.issue_token(self.user, ttl=self.ttl)
            self._expires = self._harness.wall_clock() + self.ttl
        return self._token


class Harness:
    def __init__(self, hub: MemoryHub, transport: RecordingTransport) -> None:
        self.hub = hub
        self.transport = transport

    @staticmethod
    def wall_clock() -> float:
        return WALL_EPOCH + now()

    def provider(self, user: str = "alice", ttl: float = 3600.0, *, reuse: bool = False) -> Issuer:
        """A token provider that issues tokens of ``ttl`` s (see :class:`Issuer`)."""
        return Issuer(self, user, ttl, reuse=reuse)

    def client(self, url: str | list[str] = URL, **kwargs: Any) -> Client:
        """A Client on this hub; a fresh token per call and no jitter unless given."""
        kwargs.setdefault("token", self.provider())
        kwargs.setdefault("backoff", Backoff(base=1.0, cap=30.0, jitter="none"))
        return Client(url, transport=self.transport, wall_clock=self.wall_clock, **kwargs)


@contextlib.asynccontextmanager
async def harness(
    transport: RecordingTransport | None = None, **config: Any
) -> AsyncIterator[Harness]:
    """Run a hub (``config``: ServerConfig fields) for the clients of the test."""
    transport = transport or RecordingTransport()
    hub = MemoryHub(transport, wall_clock=Harness.wall_clock, **config)
    async with hub.running():
        yield Harness(hub, transport)


async def let_time_pass(seconds: float) -> None:
    """Let ``seconds`` of virtual time pass (the loop jumps them when every task idles).

    Only with looptime on: outside it this would be a real sleep used as
    synchronisation, so it fails instead.
    """
    loop = asyncio.get_running_loop()
    if not (isinstance(loop, looptime.LoopTimeEventLoop) and loop.looptime_on):
        raise RuntimeError("let_time_pass() needs virtual time: mark the test looptime")
    await asyncio.sleep(seconds)
