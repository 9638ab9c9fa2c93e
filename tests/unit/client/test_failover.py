"""Failover across URLs, a Client over MemoryTransport in the loop's virtual time.

Every URL reaches the same hub (shared state); a URL in ``dead`` is refused like a
node that is down. The attempt times are exact: the jitter is off.
"""

from __future__ import annotations

import itertools

import pytest

from rtclient import Backoff, ConnectionState
from rtclient.errors import TransportError
from rtclient.transports.memory import MemoryConnection

from .harness import RecordingTransport, gaps, harness, let_time_pass, now

pytestmark = pytest.mark.looptime

NODES = ["memory://a", "memory://b", "memory://c"]
STEADY = Backoff(base=1.0, cap=30.0, jitter="none", first_delay=0.05, stable_after=10.0)


class Nodes(RecordingTransport):
    """Records which URL every attempt went to; refuses the URLs in ``dead``."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.dead: set[str] = set()

    async def connect(
        self, url: str, *, token: str | None, open_timeout: float
    ) -> MemoryConnection:
        self.urls.append(url)
        if url in self.dead:
            self.attempt_times.append(now())
            raise TransportError(f"connection refused ({url})")
        return await super().connect(url, token=token, open_timeout=open_timeout)


async def test_a_dead_cluster_is_tried_round_after_round_under_the_backoff() -> None:
    nodes = Nodes()
    nodes.dead = set(NODES)
    async with harness(nodes) as h:
        client = h.client(NODES, url_order="given")
        await client.connect(wait=False)
        try:
            await let_time_pass(120)
        finally:
            await client.close()
    rounds = [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    expected = list(itertools.chain.from_iterable((0.0, 0.0, r) for r in rounds))
    assert gaps(nodes.attempt_times)[: len(expected)] == expected
    # 120 s of a dead 3-node cluster: 8 rounds of 3 attempts, not a loop.
    assert len(nodes.attempt_times) == 24
    assert nodes.urls[:6] == [*NODES, *NODES]


async def test_a_node_that_dies_costs_one_attempt() -> None:
    nodes = Nodes()
    async with (
        harness(nodes) as h,
        h.client(NODES, url_order="given", backoff=STEADY, ping_interval=None) as c,
    ):
        await let_time_pass(60)  # stable on a
        died = now()
        nodes.dead.add("memory://a")
        h.hub.link.abort()
        await h.hub.wait_welcomed(2, timeout=60)
        assert nodes.urls == ["memory://a", "memory://a", "memory://b"]
        assert nodes.attempt_times[-1] - died <= 0.05  # a's retry, then b at once
        assert c.url == "memory://b" and c.stats()["failovers"] == 1
        await c.wait_for(ConnectionState.CONNECTED, timeout=60)


async def test_a_drain_moves_on_at_the_same_instant() -> None:
    nodes = Nodes()
    async with (
        harness(nodes) as h,
        h.client(NODES, url_order="given", backoff=STEADY, ping_interval=None) as c,
    ):
        await let_time_pass(60)
        drained = now()
        await h.hub.link.close(1012, "retryAfter=30")
        await h.hub.wait_welcomed(2, timeout=60)
        assert nodes.urls == ["memory://a", "memory://b"]
        assert nodes.attempt_times[-1] == drained  # no wait at all, not even the hint
        assert c.stats()["drains"] == 1 and c.stats()["failovers"] == 1
