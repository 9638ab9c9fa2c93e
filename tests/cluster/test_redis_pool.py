"""A busy node queues for Redis: load is never taken for an outage."""

from __future__ import annotations

import asyncio

import pytest

from fake_server.redis_store import RedisStore
from fake_server.store import StoreBusy
from rtclient.testing.redis_server import RedisServer

from ..server.conftest import Connect
from .conftest import MakeNode

pytestmark = pytest.mark.cluster

CLIENTS = 40
SENDS = 3


async def test_many_requests_on_a_small_pool_are_all_answered_without_an_outage(
    make_node: MakeNode, connect: Connect, redis: RedisServer
) -> None:
    node = await make_node(redis_max_connections=2, redis_timeout=2.0)
    clients = [await connect(node, f"u{n}") for n in range(CLIENTS)]
    for n, client in enumerate(clients):
        await client.join(f"r{n}")

    async def sends(n: int) -> list[dict[str, object]]:
        client = clients[n]
        for k in range(SENDS):
            await client.send(
                {"type": "chat:send", "id": f"m{k}", "payload": {"roomId": f"r{n}", "text": "x"}}
            )
        return [await client.expect_ack(f"m{k}") for k in range(SENDS)]

    acks = [a for got in await asyncio.gather(*(sends(n) for n in range(CLIENTS))) for a in got]
    assert len(acks) == CLIENTS * SENDS
    refused = [a["error"] for a in acks if not a["success"]]
    # Waiting for a turn is load: a STORE_BUSY retry reply at worst, never an outage.
    assert all(e["reason"] == "STORE_BUSY" and e["retryAfter"] <= 0.5 for e in refused)
    assert node.counters["redis_outages"] == 0
    assert node.counters["store_unavailable"] == 0
    assert node.counters["store_busy"] == len(refused)


async def test_a_request_that_waits_too_long_for_its_turn_is_busy_not_an_outage(
    make_node: MakeNode,
) -> None:
    node = await make_node(redis_max_connections=1)
    store = node.hub.storage
    assert isinstance(store, RedisStore)
    link = store.link
    await link.turns.acquire()  # every turn taken (a command that is still running)
    with pytest.raises(StoreBusy) as caught:
        async with link.calling():
            pass
    assert 0.1 <= caught.value.retry_after <= 0.5
    link.turns.release()
    async with link.calling():  # the turn is free again
        pass
    assert node.counters["redis_outages"] == 0 and link.down_since is None
