"""rtclient against a Socket.IO cluster nobody here wrote: two Node.js socket.io 4.8 nodes
on @socket.io/redis-streams-adapter, one redis-server, connection state recovery on.

First the cluster itself: clients on different nodes hear each other, and a client that
comes back to its node is recovered from what the adapter keeps in Redis. See
cluster-node.js for the nodes and docs/socketio-cluster.md for what a user should
expect.

Then failover, with ``Client([B, A])``: the client's link to B ends (reset while B
refuses new connections, SIGTERM, SIGKILL) and it moves to A, which recovers the session
B persisted in Redis, or, when B died without persisting it, starts a new one: a gap.

Every broadcast in these tests comes from one publisher on node A that waits to hear its
own broadcast before the next: the adapter has then added it to the stream, so the
stream's order is the order sent, and "while the client is away" means in the stream
before the client is let back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from rtclient import Client, ConnectionState, Event, Gap, StateChanged
from rtclient.testing import wait_until
from rtclient.testing.programs import ProgramMissing, in_ci
from rtclient.testing.redis_server import RedisServer

from .conftest import FAST
from .node_cluster import ClusterNode, NodeCluster, node_cluster

pytestmark = pytest.mark.cluster

TIMEOUT = 10.0
ROOM = "feed"


@pytest.fixture
async def cluster(node_ready: None) -> AsyncIterator[NodeCluster]:
    """Nodes "A" and "B" on one redis-server, each behind its own FaultProxy."""
    try:
        redis_server = RedisServer()
    except ProgramMissing as exc:
        missing = str(exc)
    else:
        missing = None
    if missing is not None:
        if in_ci():
            why = f"CI=true and the cluster interop tests cannot run: {missing}"
            pytest.fail(why, pytrace=False)
        pytest.skip(f"Node.js cluster interop tests skipped: {missing}")
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
        with b.unreachable():  # and every reconnect is reset: dave is surely away
            await wait_until(lambda: cluster.session_stored(first["pid"]), timeout=TIMEOUT)
            away = await publisher.say(10)
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


@dataclass
class Failover:
    """What a client that started on node B heard around its move to node A."""

    live: range  # broadcast while it was on B
    away: range  # broadcast after B was done with it, before A was reachable
    after: range  # broadcast once it was on A
    first: dict[str, Any]  # its register reply on B: {sid, pid, recovered, node}
    second: dict[str, Any]  # … and on A
    stored_while_away: bool  # whether B's session was in Redis before A was reachable
    seqs: list[int]  # every broadcast it heard, in order
    gaps: list[Gap]
    recovered: bool
    reconnects: int
    urls: tuple[str, str]  # B's, then A's
    failovers: int  # moves from one URL to another, counted by the client
    connected_to: list[str | None]  # the endpoint of each CONNECTED state change
    a_connections: list[dict[str, Any]]


EndNode = Callable[[ClusterNode, dict[str, Any]], Awaitable[None]]


async def fail_over(cluster: NodeCluster, end_b: EndNode, *, count: int = 20) -> Failover:
    """A client on B (URLs [B, A]); ``end_b`` ends its time on B; it moves to A.

    A is unreachable (every connection to it reset) from before ``end_b`` until
    ``count`` broadcasts went by after it: the client cannot reach A before B is done
    with it (a client that reached A before B wrote the session would get a gap, rightly;
    see docs/socketio-cluster.md).
    """
    a, b = cluster["A"], cluster["B"]
    publisher = Publisher(generic(a.url), "pub", ROOM)
    # B first, then A: "given" order (the default shuffles the list once per client).
    listener = Listener(generic([b.proxy_url, a.proxy_url], url_order="given"), "erin", ROOM)
    client = listener.client
    connected_to: list[str | None] = []

    def on_state(change: StateChanged) -> None:
        if change.new is ConnectionState.CONNECTED:
            connected_to.append(change.endpoint)

    client.on("state", on_state)
    async with publisher.client, client:
        live = await publisher.say(count)
        await listener.heard_seq(live[-1])
        (first,) = listener.registered
        assert first["node"] == "B" and first["recovered"] is False
        with a.unreachable():
            await end_b(b, first)
            await wait_until(lambda: client.state is not ConnectionState.CONNECTED, timeout=TIMEOUT)
            away = await publisher.say(count)
            stored = await cluster.session_stored(first["pid"])
        await wait_until(lambda: len(listener.registered) == 2, timeout=TIMEOUT)
        after = await publisher.say(count)
        await listener.heard_seq(after[-1])
        recovered = client.recovered
        stats = client.stats()
    run = Failover(
        live=live,
        away=away,
        after=after,
        first=first,
        second=listener.registered[1],
        stored_while_away=stored,
        seqs=listener.seqs(),
        gaps=listener.gaps,
        recovered=recovered,
        reconnects=stats["reconnects"],
        urls=(b.proxy_url, a.proxy_url),
        failovers=stats["failovers"],
        connected_to=connected_to,
        a_connections=(await a.state())["connections"],
    )
    print(run)  # shown if the test fails
    return run


async def test_failover_to_another_node_recovers_every_broadcast_once(
    cluster: NodeCluster,
) -> None:
    """B's link is reset while B refuses new connections: the client moves to A, and A
    restores the session B persisted: every broadcast once, in order, no gap."""
    b = cluster["B"]

    async def end_b(b: ClusterNode, first: dict[str, Any]) -> None:
        await b.refuse()  # HTTP 503 to every new Socket.IO request
        await b.cut()  # RST to both ends: B sees the disconnect at once
        await wait_until(lambda: cluster.session_stored(first["pid"]), timeout=TIMEOUT)
        await wait_until(b.has_refused, timeout=TIMEOUT)  # the client tried B: 503

    run = await fail_over(cluster, end_b)

    assert run.seqs == [*run.live, *run.away, *run.after]  # 60, each once, in order
    assert run.recovered is True and run.gaps == []
    assert run.reconnects == 1
    assert run.connected_to == list(run.urls) and run.failovers >= 1
    assert run.stored_while_away is True
    assert (run.second["node"], run.second["sid"], run.second["pid"]) == (
        "A",
        run.first["sid"],
        run.first["pid"],
    )
    assert run.second["recovered"] is True
    assert [c["recovered"] for c in run.a_connections] == [False, True]  # publisher, client
    assert (await b.state())["disconnects"][0]["reason"] == "transport close"


async def test_failover_after_a_node_is_killed_is_reported_as_a_gap(
    cluster: NodeCluster,
) -> None:
    """B is SIGKILLed: it persists nothing, so A has no session to restore. The client
    says so with one gap, joins again and hears what comes next; what was broadcast
    while it was away is lost (socket.io #5413, redis-streams-adapter #27)."""

    async def end_b(b: ClusterNode, first: dict[str, Any]) -> None:
        await b.kill()

    run = await fail_over(cluster, end_b)

    assert run.seqs == [*run.live, *run.after]  # 40 heard once, in order; 20 lost
    assert not set(run.away) & set(run.seqs)
    assert run.stored_while_away is False
    assert run.recovered is False
    assert [g.reason for g in run.gaps] == ["session"]
    assert run.reconnects == 1
    assert run.connected_to == list(run.urls) and run.failovers >= 1
    assert run.second["node"] == "A" and run.second["recovered"] is False
    assert run.second["pid"] != run.first["pid"]
    assert [c["recovered"] for c in run.a_connections] == [False, False]


async def test_failover_after_a_graceful_stop_recovers(cluster: NodeCluster) -> None:
    """B is stopped with SIGTERM: io.close() disconnects its clients as "server shutting
    down", a recoverable reason, and the node exits once Redis has the sessions."""

    async def end_b(b: ClusterNode, first: dict[str, Any]) -> None:
        await b.stop()
        assert b.process.returncode == 0

    run = await fail_over(cluster, end_b)

    assert run.seqs == [*run.live, *run.away, *run.after]  # 60, each once, in order
    assert run.stored_while_away is True
    assert run.recovered is True and run.gaps == []
    assert run.reconnects == 1
    assert run.connected_to == list(run.urls) and run.failovers >= 1
    assert (run.second["node"], run.second["sid"]) == ("A", run.first["sid"])
    assert [c["recovered"] for c in run.a_connections] == [False, True]
