"""rtclient against a Socket.IO cluster nobody here wrote: two Node.js socket.io 4.8 nodes
on @socket.io/redis-streams-adapter, one redis-server, connection state recovery on.

First the cluster itself: clients on different nodes hear each other, and a client that
comes back to its node is recovered from what the adapter keeps in Redis. See
cluster-node.js for the nodes and docs/interop.md for what a user should expect.

Every broadcast in these tests comes from one publisher on node A that waits to hear its
own broadcast before the next: the adapter has then added it to the stream, so the
stream's order is the order sent, and "while the client is away" means in the stream
before the client is let back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rtclient import Client, ConnectionState, Event, Gap
from rtclient.testing import wait_until
from rtclient.testing.programs import ProgramMissing, in_ci
from rtclient.testing.redis_server import RedisServer

from .conftest import FAST
from .node_cluster import NodeCluster, node_cluster

pytestmark = pytest.mark.cluster

TIMEOUT = 10.0
ROOM = "feed"


@pytest.fixture
async def cluster(node_ready: None) -> AsyncIterator[NodeCluster]:
    """Nodes "A" and "B" on one redis-server, each behind its own FaultProxy."""
    try:
        redis_server = RedisServer()
    except ProgramMissing as exc:
        if in_ci():
            pytest.fail(f"CI=true and the cluster interop tests cannot run: {exc}", pytrace=False)
        pytest.skip(f"Node.js cluster interop tests skipped: {exc}")
    async with redis_server, node_cluster(redis_server) as nodes:
        await asyncio.gather(nodes.start_node("A"), nodes.start_node("B"))
        yield nodes


def generic(url: str | list[str], **options: Any) -> Client:
    options.setdefault("transport", "socketio")
    options.setdefault("token", "good")
    options.setdefault("backoff", FAST)
    options.setdefault("ack_timeout", 2.0)
    return Client(url, protocol="generic", **options)


class Listener:
    """A client that registers as ``name``, joins ``rooms`` on every connect, records
    the ``said`` broadcasts it hears, its gaps and each register reply."""

    def __init__(self, client: Client, name: str, *rooms: str) -> None:
        self.client = client
        self.heard: list[dict[str, Any]] = []
        self.gaps: list[Gap] = []
        self.registered: list[dict[str, Any]] = []  # {sid, pid, recovered, node} per connect
        client.on("said", self._said)
        client.on("gap", self.gaps.append)

        async def hook(client: Client) -> None:
            reply = await client.call("register", {"name": name}, timeout=TIMEOUT)
            for room in rooms:
                assert room in (await client.call("join", room, timeout=TIMEOUT))["rooms"]
            self.registered.append(reply)

        client.on_connect(hook)

    def _said(self, event: Event) -> None:
        self.heard.append(event.data)

    def seqs(self, sender: str | None = None) -> list[int]:
        return [d["seq"] for d in self.heard if sender is None or d["from"] == sender]

    async def heard_seq(self, seq: int) -> None:
        await wait_until(lambda: seq in self.seqs(), timeout=TIMEOUT, message=f"heard {seq}")


class Publisher(Listener):
    """Says numbered messages to a room it is in, one at a time."""

    def __init__(self, client: Client, name: str, room: str) -> None:
        super().__init__(client, name, room)
        self.room = room
        self.said = 0

    async def say(self, count: int) -> range:
        """Say the next ``count`` messages; each is in the stream when this returns."""
        first = self.said + 1
        for seq in range(first, first + count):
            body = {"room": self.room, "text": f"m{seq}", "seq": seq}
            assert await self.client.call("say", body, timeout=TIMEOUT) == {"ok": True}
            await self.heard_seq(seq)  # delivered locally only after the adapter's XADD
            self.said = seq
        return range(first, first + count)


async def test_clients_on_different_nodes_hear_each_other_once_in_order(
    cluster: NodeCluster,
) -> None:
    a, b = cluster["A"], cluster["B"]
    alice = Publisher(generic(a.proxy_url), "alice", "lobby")
    bob = Publisher(generic(b.proxy_url), "bob", "lobby")
    async with alice.client, bob.client:
        await alice.say(10)
        bob.said = 100
        await bob.say(10)
        await alice.say(5)
        await wait_until(lambda: len(alice.heard) == 25 and len(bob.heard) == 25, timeout=TIMEOUT)

    for listener in (alice, bob):
        assert listener.seqs("alice") == [*range(1, 16)]
        assert listener.seqs("bob") == [*range(101, 111)]
        assert {d["from"]: d["node"] for d in listener.heard} == {"alice": "A", "bob": "B"}
    assert [r["node"] for r in alice.registered] == ["A"]
    assert [r["node"] for r in bob.registered] == ["B"]


async def test_a_client_cut_from_its_node_is_recovered_there_from_redis(
    cluster: NodeCluster,
) -> None:
    """Recovery on the same node, through the adapter: session and missed packets come
    back from Redis (the session key and the stream), not from the node's memory."""
    a, b = cluster["A"], cluster["B"]
    publisher = Publisher(generic(a.url), "pub", ROOM)
    dave = Listener(generic(b.proxy_url), "dave", ROOM)
    async with publisher.client, dave.client:
        live = await publisher.say(10)
        await dave.heard_seq(live[-1])
        (first,) = dave.registered
        assert first["node"] == "B" and first["recovered"] is False
        # A TCP reset: node B sees the disconnect at once and persists the session.
        await b.proxy.down(reset=True)
        await wait_until(lambda: cluster.session_stored(first["pid"]), timeout=TIMEOUT)
        away = await publisher.say(10)  # the proxy refuses connects: dave is surely away
        await b.proxy.up()
        await wait_until(lambda: len(dave.registered) == 2, timeout=TIMEOUT)
        after = await publisher.say(10)
        await dave.heard_seq(after[-1])
        recovered = dave.client.recovered
        stats = dave.client.stats()
        stored_after = await cluster.session_stored(first["pid"])

    assert dave.seqs() == [*live, *away, *after]  # 30 broadcasts, each once, in order
    assert recovered is True and dave.gaps == []
    assert stats["reconnects"] == 1
    second = dave.registered[1]
    assert (second["node"], second["sid"], second["pid"]) == ("B", first["sid"], first["pid"])
    assert second["recovered"] is True
    assert stored_after is False  # restoreSession took it (GETDEL)
    state = await b.state()
    assert [c["recovered"] for c in state["connections"]] == [False, True]
    assert state["disconnects"][0]["reason"] == "transport close"  # recoverable


class RotatingTransport:
    """PROTOTYPE until Client takes a URL list: the next URL after each failed attempt."""

    def __init__(self, urls: list[str]) -> None:
        from rtclient.transports import SocketIOTransport

        self.inner = SocketIOTransport(welcome="synthesize", app_ping=False)
        self.urls = urls
        self.index = 0
        self.attempts: list[str] = []

    async def connect(self, url: str, *, token: str | None, open_timeout: float) -> Any:
        target = self.urls[self.index % len(self.urls)]
        self.attempts.append(target)
        try:
            return await self.inner.connect(target, token=token, open_timeout=open_timeout)
        except Exception:
            self.index += 1
            raise


def failover_client(urls: list[str]) -> Client:
    return generic(urls[0], transport=RotatingTransport(urls))


async def test_failover_to_another_node_recovers_every_broadcast_once(
    cluster: NodeCluster,
) -> None:
    """B's link is reset while B refuses new connections: the client moves to A, and A
    restores the session B persisted: every broadcast once, in order, no gap."""
    a, b = cluster["A"], cluster["B"]
    publisher = Publisher(generic(a.url), "pub", ROOM)
    erin = Listener(failover_client([b.proxy_url, a.proxy_url]), "erin", ROOM)
    async with publisher.client, erin.client:
        live = await publisher.say(20)
        await erin.heard_seq(live[-1])
        (first,) = erin.registered
        assert first["node"] == "B"
        # A is out of reach until B has persisted the session: a client that reached A
        # first would find no session there (a gap, and rightly so; see docs/interop.md).
        await a.proxy.down()
        await b.refuse()
        await b.proxy.down(reset=True)  # RST to both ends: B sees the disconnect at once
        await b.proxy.up()  # new connections reach B again, which answers 503
        await wait_until(lambda: cluster.session_stored(first["pid"]), timeout=TIMEOUT)
        away = await publisher.say(20)
        await wait_until(b.has_refused, timeout=TIMEOUT)  # erin tried B, and B said 503
        await a.proxy.up()
        await wait_until(lambda: len(erin.registered) == 2, timeout=TIMEOUT)
        after = await publisher.say(20)
        await erin.heard_seq(after[-1])
        recovered = erin.client.recovered
        stats = erin.client.stats()

    assert erin.seqs() == [*live, *away, *after]  # 60 broadcasts, each once, in order
    assert recovered is True and erin.gaps == []
    assert stats["reconnects"] == 1
    second = erin.registered[1]
    assert (second["node"], second["sid"], second["pid"]) == ("A", first["sid"], first["pid"])
    assert second["recovered"] is True
    assert [c["recovered"] for c in (await a.state())["connections"]] == [False, True]


async def test_failover_after_a_node_is_killed_is_reported_as_a_gap(
    cluster: NodeCluster,
) -> None:
    """B is SIGKILLed: it persists nothing, so A has no session to restore. The client
    says so with one gap, joins again and hears what comes next; what was broadcast
    while it was away is lost (socket.io #5413, redis-streams-adapter #27)."""
    a, b = cluster["A"], cluster["B"]
    publisher = Publisher(generic(a.url), "pub", ROOM)
    frank = Listener(failover_client([b.proxy_url, a.proxy_url]), "frank", ROOM)
    async with publisher.client, frank.client:
        live = await publisher.say(20)
        await frank.heard_seq(live[-1])
        (first,) = frank.registered
        assert first["node"] == "B"
        await a.proxy.down()  # frank cannot reach A before the lost broadcasts are sent
        await b.kill()
        await frank.client.wait_for(ConnectionState.RECONNECTING, timeout=TIMEOUT)
        lost = await publisher.say(20)
        assert not await cluster.session_stored(first["pid"])
        await a.proxy.up()
        await wait_until(lambda: len(frank.registered) == 2, timeout=TIMEOUT)
        after = await publisher.say(20)
        await frank.heard_seq(after[-1])
        recovered = frank.client.recovered
        stats = frank.client.stats()

    assert frank.seqs() == [*live, *after]  # 40 heard once, in order; the 20 away are lost
    assert not set(lost) & set(frank.seqs())
    assert recovered is False
    assert [g.reason for g in frank.gaps] == ["session"]
    assert stats["reconnects"] == 1
    second = frank.registered[1]
    assert second["node"] == "A" and second["recovered"] is False
    assert second["pid"] != first["pid"]
    assert [c["recovered"] for c in (await a.state())["connections"]] == [False, False]
