"""A storm over three URLs of one server: nodes cut and brought back while two bots chat.

Three FaultProxy instances in front of one FakeServer (shared state). While a sender
and a receiver, each given all three URLs, exchange messages, a seeded fault loop
takes the proxy each bot is on down (every connection through it cut, connects
refused), waits until both run again elsewhere, and brings it back; now and then the
server drains the link instead (close 1012 for everyone). At the end: every message
acknowledged once, delivered once, in the server's order, no gap.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState
from rtclient.testing import FaultProxy, wait_until

from .conftest import Recorder

pytestmark = pytest.mark.parametrize("transport_name", ["websocket", "aiohttp", "socketio"])

WAIT = 15.0
MESSAGES = 150
FAULTS = 8
FAST = Backoff(base=0.02, cap=0.2, first_delay=0.01, stable_after=0.1)


def url_of(proxy: FaultProxy, transport_name: str) -> str:
    return proxy.url("http") if transport_name == "socketio" else proxy.url("ws", "/ws")


@pytest.fixture
async def proxies(server: FakeServer) -> AsyncIterator[list[FaultProxy]]:
    upstream = (server.host, server.port)
    async with (
        FaultProxy(upstream=upstream) as a,
        FaultProxy(upstream=upstream) as b,
        FaultProxy(upstream=upstream) as c,
    ):
        yield [a, b, c]


async def test_nodes_cut_and_drained_under_traffic_lose_and_double_nothing(
    server: FakeServer, proxies: list[FaultProxy], transport_name: str
) -> None:
    urls = [url_of(p, transport_name) for p in proxies]

    def bot(user: str) -> Client:
        return Client(
            urls,
            token=server.issue_token(user),
            transport=transport_name,  # type: ignore[arg-type]
            backoff=FAST,
            ack_timeout=1.0,
            connect_timeout=2.0,
        )

    sender, receiver = bot("sender"), bot("receiver")
    got = Recorder(receiver)
    rng = random.Random(17)
    async with sender, receiver:
        await receiver.join("room")
        await sender.join("room")

        async def storm() -> int:
            faults = 0
            for _ in range(FAULTS):
                enough = faults * 10  # some traffic between faults
                await wait_until(lambda: sender.stats()["acked"] > enough, timeout=WAIT)  # noqa: B023
                victim = proxies[urls.index(rng.choice([sender, receiver]).url)]
                if rng.random() < 0.25:
                    await server.close_all(1012, "retryAfter=0.05")  # a drain, for everyone
                else:
                    await victim.down()
                for c in (sender, receiver):
                    await c.wait_for(ConnectionState.CONNECTED, timeout=WAIT)
                await victim.up()
                faults += 1
            return faults

        storming = asyncio.create_task(storm())
        sends: list[asyncio.Task[Any]] = []
        for i in range(MESSAGES):
            sends.append(asyncio.create_task(sender.send("room", f"m{i}")))
            if i % 5 == 4:
                await asyncio.gather(*sends[-5:])
        acks = await asyncio.wait_for(asyncio.gather(*sends), WAIT)
        faults = await asyncio.wait_for(storming, WAIT)
        await wait_until(lambda: len(got.texts("room")) >= MESSAGES, timeout=WAIT)
        moved = sender.stats()["failovers"] + receiver.stats()["failovers"]
    logged = [e["text"] for e in server.room_events("room")]
    assert logged == [f"m{i}" for i in range(MESSAGES)]  # once each, in send order
    assert len({a.event_id for a in acks}) == MESSAGES
    assert got.texts("room") == logged  # delivered once, in the server's order
    assert got.gaps == []
    assert faults == FAULTS and moved >= FAULTS // 2
