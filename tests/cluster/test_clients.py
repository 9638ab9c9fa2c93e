"""Socket.IO on every node, and rtclient's Client against a pair of nodes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fake_server import FakeServer
from rtclient import Backoff, Client, Gap
from rtclient.testing import wait_until
from rtclient.testing.redis_server import RedisServer

from ..server.conftest import Connect
from ..server.sio_helpers import OpenSio, sio_users
from .conftest import MakeNode

pytestmark = pytest.mark.cluster

FAST = Backoff(base=0.01, cap=0.2, first_delay=0.01, stable_after=0.3)


@pytest.fixture
async def sio() -> AsyncIterator[OpenSio]:
    async with sio_users() as open_user:
        yield open_user


async def test_socketio_members_on_two_nodes_talk_through_the_cluster(
    make_node: MakeNode, sio: OpenSio, connect: Connect
) -> None:
    one, two = await make_node(), await make_node()
    alice, bob = await sio(one, "alice"), await sio(two, "bob")
    carol = await connect(two, "carol")  # raw WebSocket on the same node
    await alice.join("lobby")
    await bob.join("lobby")
    await carol.join("lobby")
    acks = [await alice.say("lobby", f"t{n}", message_id=f"m{n}") for n in range(5)]
    assert [a["eventId"] for a in acks] == [1, 2, 3, 4, 5]
    got = [await bob.expect("chat:message") for _ in range(5)]
    assert [(e["eventId"], e["text"]) for e in got] == [(n + 1, f"t{n}") for n in range(5)]
    assert [(await carol.expect("chat:message"))["eventId"] for _ in range(5)] == [1, 2, 3, 4, 5]
    # The resend after a failover, over Socket.IO on the other node: the original ack.
    alice_on_two = await sio(two, "alice")
    again = await alice_on_two.ok("chat:send", {"roomId": "lobby", "text": "t0", "messageId": "m0"})
    assert (again["eventId"], again["duplicate"]) == (1, True)
    # The seed's multi-room sync, answered by node two from the shared log.
    page = await bob.ok("sync:messages", {"rooms": ["lobby"], "lastEventId": 3})
    assert [e["eventId"] for e in page["rooms"]["lobby"]["events"]] == [4, 5]


async def _client(node: FakeServer, user: str, transport: str, **options: Any) -> Client:
    url = node.sio_url if transport == "socketio" else node.ws_url
    client = Client(url, token=node.issue_token(user), transport=transport, backoff=FAST, **options)
    await client.connect()
    return client


@pytest.mark.parametrize("transports", [("websocket", "socketio"), ("socketio", "websocket")])
async def test_rtclient_clients_on_two_nodes_lose_nothing(
    make_node: MakeNode, transports: tuple[str, str]
) -> None:
    one = await make_node(rate_per_second=1e6, rate_burst=10**6)
    two = await make_node(rate_per_second=1e6, rate_burst=10**6)
    alice = await _client(one, "alice", transports[0])
    bob = await _client(two, "bob", transports[1])
    try:
        await alice.join("lobby")
        await bob.join("lobby")
        received: dict[str, list[tuple[int, str]]] = {"alice": [], "bob": []}

        async def collect(name: str, client: Client) -> None:
            async for event in client.events():
                if event.name == "chat:message" and event.event_id is not None:
                    received[name].append((event.event_id, str(event.text)))

        readers = [
            asyncio.create_task(collect("alice", alice)),
            asyncio.create_task(collect("bob", bob)),
        ]
        n = 100
        sends = [alice.send("lobby", f"a{i}") for i in range(n)]
        sends += [bob.send("lobby", f"b{i}") for i in range(n)]
        acks = await asyncio.gather(*sends)
        ids = sorted(a.event_id for a in acks if a.event_id is not None)
        assert ids == list(range(1, 2 * n + 1)) and not any(a.duplicate for a in acks)
        await wait_until(lambda: all(len(r) == 2 * n for r in received.values()), timeout=10.0)
        assert received["alice"] == received["bob"]
        assert [event_id for event_id, _ in received["alice"]] == ids
        for reader in readers:
            reader.cancel()
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.parametrize("transport", ["websocket", "socketio"])
async def test_a_lost_redis_data_set_is_a_gap_for_the_client(
    make_node: MakeNode, redis: RedisServer, transport: str
) -> None:
    one, two = await make_node(), await make_node()
    alice = await _client(one, "alice", transport)
    bob = await _client(two, "bob", "websocket")
    gaps: list[Gap] = []
    alice.on("gap", gaps.append)
    seen: list[int] = []

    async def collect() -> None:
        async for event in alice.events():
            if event.event_id is not None:
                seen.append(event.event_id)

    reader = asyncio.create_task(collect())
    try:
        await alice.join("lobby")
        await bob.join("lobby")
        for i in range(3):
            await bob.send("lobby", f"m{i}")
        await wait_until(lambda: seen == [1, 2, 3])
        old = one.epoch
        await redis.restart(keep_data=False)
        await wait_until(lambda: bool(gaps), timeout=5.0)
        assert gaps[0].room == "lobby" and gaps[0].reason == "epoch"
        assert one.epoch != old
        ack = await bob.send("lobby", "after")
        assert ack.epoch == one.epoch and ack.event_id == 1
        await wait_until(lambda: seen[-1:] == [1])
    finally:
        reader.cancel()
        await alice.close()
        await bob.close()
