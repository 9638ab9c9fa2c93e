"""Failover in generic Socket.IO mode: a plain python-socketio server behind two proxies.

The Node.js reference server with connection state recovery is in tests/interop
(recovery kept across URLs); here the server knows nothing of rtclient.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rtclient import Client, ConnectionState
from rtclient.endpoints import endpoint_label
from rtclient.testing import FaultProxy, wait_until

from .conftest import FAST
from .test_generic_mode import PlainServer

WAIT = 10.0


@pytest.fixture
async def plain() -> AsyncIterator[PlainServer]:
    server = PlainServer()
    await server.start()
    yield server
    await server.stop()


async def test_generic_mode_moves_to_the_other_url_and_every_emit_is_acked(
    plain: PlainServer,
) -> None:
    upstream = ("127.0.0.1", plain.port)
    async with FaultProxy(upstream=upstream) as a, FaultProxy(upstream=upstream) as b:
        urls = (a.url("http"), b.url("http"))  # a tuple works as well as a list
        client = Client(
            urls,
            url_order="given",
            transport="socketio",
            protocol="generic",
            token="good",
            backoff=FAST,
            ack_timeout=2.0,
        )
        subscribed: list[str] = []

        async def resubscribe(c: Client) -> None:
            await c.call("subscribe", "sports")
            subscribed.append(c.endpoint)

        client.on_connect(resubscribe)
        async with client:
            first = [await client.emit("echo", {"n": i}) for i in range(10)]
            rest = [asyncio.create_task(client.emit("echo", {"n": i})) for i in range(10, 30)]
            await a.down()
            replies = first + await asyncio.wait_for(asyncio.gather(*rest), WAIT)
            await client.wait_for(ConnectionState.CONNECTED)
            assert client.endpoint == endpoint_label(urls[1])
            assert client.stats()["endpoint"] == 1
            await wait_until(lambda: len(subscribed) == 2, timeout=WAIT)
    assert [r["n"] for r in replies] == list(range(30))
    assert subscribed == [endpoint_label(urls[0]), endpoint_label(urls[1])]
    # Every emit reached the server (resent ones with their original message id).
    assert {r["messageId"] for r in replies} <= set(plain.seen_ids)
