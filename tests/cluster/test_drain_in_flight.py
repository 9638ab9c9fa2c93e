"""A drain on a Redis node closes each connection behind the requests it is carrying out.

With Redis a request runs on its connection's lane and waits for Redis; a close queued
at once would go out before those requests' acks, which would then be dropped: carried
out but never acknowledged (the client sends them again elsewhere and the shared dedupe
saves the day, but the drain's promise, "a request the server carried out is
acknowledged before the close", would not hold).
"""

from __future__ import annotations

import asyncio
import json

from fake_server import FakeServer
from rtclient.testing import FaultProxy
from rtclient.testing.redis_server import RedisServer

from ..server.conftest import Connect
from ..server.helpers import WAIT
from .conftest import MakeNode

SENDS = 20


async def test_every_request_carried_out_before_a_drain_is_acknowledged_before_its_close(
    redis: RedisServer, make_node: MakeNode, connect: Connect
) -> None:
    async with FaultProxy(upstream=("127.0.0.1", redis.port)) as proxy:
        node: FakeServer = await make_node(redis_url=f"redis://127.0.0.1:{proxy.port}/0")
        alice = await connect(node, "alice")
        await alice.join("lobby")
        with proxy.latency(20):  # each request waits ~40 ms for Redis: a queue on the lane
            for i in range(SENDS):
                await alice.send(
                    {
                        "type": "chat:send",
                        "id": f"m{i}",
                        "payload": {"roomId": "lobby", "text": f"{i}"},
                    }
                )
            await alice.expect_ack("m0")  # the others wait on the lane now
            drain = asyncio.create_task(node.drain(timeout=WAIT, retry_after=0.5))
            code, _ = await alice.closed()
            assert await drain is True
        assert code == 1012
        acked = {"m0"}
        acked |= {f["id"] for f in alice.backlog if f["type"] == "ack" and f["payload"]["success"]}
        # What the node carried out: the room's log, read on another node.
        bob = await connect(await make_node(), "bob")
        joined = await bob.join("lobby")
        stored = joined["lastEventId"]
        # Every request waiting on the lane when the drain began was carried out and
        # acknowledged before the close; nothing carried out went unacknowledged.
        assert acked == {f"m{i}" for i in range(SENDS)}, sorted(acked)
        assert stored == SENDS, json.dumps(joined)


async def test_a_client_that_leaves_during_the_drain_does_not_hold_it(
    redis: RedisServer, make_node: MakeNode, connect: Connect
) -> None:
    """Its lane (and the close queued on it) is dropped when it goes: the drain must not
    wait for that close until its timeout (a minute here)."""
    async with FaultProxy(upstream=("127.0.0.1", redis.port)) as proxy:
        node: FakeServer = await make_node(redis_url=f"redis://127.0.0.1:{proxy.port}/0")
        alice = await connect(node, "alice")
        await alice.join("lobby")
        with proxy.latency(20):
            for i in range(SENDS):
                payload = {"roomId": "lobby", "text": f"{i}"}
                await alice.send({"type": "chat:send", "id": f"m{i}", "payload": payload})
            await alice.expect_ack("m0")
            drain = asyncio.create_task(node.drain(timeout=60.0, retry_after=0.5))
            await alice.expect("server:draining")
            alice.ws.transport.abort()  # gone, requests still on its lane
            async with asyncio.timeout(WAIT):
                assert await drain is True
