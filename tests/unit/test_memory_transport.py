"""Unit tests for rtclient.transports.memory: MemoryTransport / MemoryConnection."""

from __future__ import annotations

import asyncio

import pytest

from rtclient.errors import ConnectionLost, HandshakeRejected, TransportError
from rtclient.transports.memory import MemoryConnection, MemoryTransport

URL = "memory://test"


async def pair(
    transport: MemoryTransport | None = None, token: str | None = "tok"
) -> tuple[MemoryConnection, MemoryConnection]:
    transport = transport or MemoryTransport()
    client = await transport.connect(URL, token=token, open_timeout=1.0)
    server = await transport.accept()
    return client, server


async def test_frames_travel_both_ways_in_order() -> None:
    client, server = await pair()
    await client.send("one")
    await client.send(b"\x00two")
    await server.send("three")
    assert await server.recv() == "one"
    assert await server.recv() == b"\x00two"
    assert await client.recv() == "three"


async def test_recv_waits_for_a_frame() -> None:
    client, server = await pair()
    task = asyncio.create_task(server.recv())
    await client.send("late")
    assert await task == "late"


@pytest.mark.parametrize(("code", "reason"), [(4001, "bad token"), (1012, ""), (1000, "bye")])
async def test_server_close_makes_client_recv_raise_with_code(code: int, reason: str) -> None:
    client, server = await pair()
    waiting = asyncio.create_task(client.recv())
    await server.close(code, reason)
    with pytest.raises(ConnectionLost) as info:
        await waiting
    assert (info.value.code, info.value.reason) == (code, reason)
    with pytest.raises(ConnectionLost) as again:  # and keeps raising
        await client.recv()
    assert again.value.code == code
    with pytest.raises(ConnectionLost) as sending:
        await client.send("too late")
    assert sending.value.code == code


async def test_client_close_defaults_to_1000() -> None:
    client, server = await pair()
    await client.close()
    with pytest.raises(ConnectionLost) as info:
        await server.recv()
    assert info.value.code == 1000
    with pytest.raises(ConnectionLost):
        await client.recv()  # the closing end is closed too
    with pytest.raises(ConnectionLost):
        await server.send("x")


async def test_frames_sent_before_close_are_delivered_first() -> None:
    client, server = await pair()
    await server.send("a")
    await server.send("b")
    await server.close(1001)
    assert await client.recv() == "a"
    assert await client.recv() == "b"
    with pytest.raises(ConnectionLost) as info:
        await client.recv()
    assert info.value.code == 1001


async def test_close_is_idempotent_and_first_code_wins() -> None:
    client, server = await pair()
    await server.close(4003, "forbidden")
    await server.close(1000)
    await client.close(1011)
    with pytest.raises(ConnectionLost) as info:
        await client.recv()
    assert info.value.code == 4003


@pytest.mark.parametrize("side", ["client", "server"])
async def test_abort_gives_no_close_code(side: str) -> None:
    client, server = await pair()
    (client if side == "client" else server).abort()
    other = server if side == "client" else client
    with pytest.raises(ConnectionLost) as info:
        await other.recv()
    assert info.value.code is None
    with pytest.raises(ConnectionLost) as sending:
        await other.send("x")
    assert sending.value.code is None


async def test_ping() -> None:
    client, server = await pair()
    assert await client.ping() == 0.0
    server.abort()
    with pytest.raises(ConnectionLost):
        await client.ping()


@pytest.mark.looptime
async def test_a_stalled_link_loses_frames_and_pongs_until_it_is_dropped() -> None:
    client, server = await pair()
    server.stall()
    await client.send("lost upstream")
    await server.send("lost downstream")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(60):  # virtual time: no pong ever comes
            await client.ping()
    pinging = asyncio.create_task(client.ping())
    reading = asyncio.create_task(server.recv())
    client.abort()  # what the heartbeat does
    with pytest.raises(ConnectionLost) as info:
        await pinging
    assert info.value.code is None
    with pytest.raises(ConnectionLost):
        await reading  # nothing was delivered before the drop
    with pytest.raises(ConnectionLost):
        await client.recv()


async def test_refuse_next_makes_connect_raise_once() -> None:
    transport = MemoryTransport()
    transport.refuse_next()
    with pytest.raises(TransportError):
        await transport.connect(URL, token=None, open_timeout=1.0)
    assert transport.attempts == 1
    client, server = await pair(transport)
    assert transport.attempts == 2
    await client.send("ok")
    assert await server.recv() == "ok"


async def test_refusals_are_used_in_order_with_given_errors() -> None:
    transport = MemoryTransport()
    first, second = HandshakeRejected(503, retry_after=2.0), ConnectionLost(None)
    transport.refuse_next(first)
    transport.refuse_next(second)
    with pytest.raises(HandshakeRejected) as one:
        await transport.connect(URL, token=None, open_timeout=1.0)
    assert one.value is first
    with pytest.raises(ConnectionLost) as two:
        await transport.connect(URL, token=None, open_timeout=1.0)
    assert two.value is second
    await transport.connect(URL, token=None, open_timeout=1.0)
    assert transport.attempts == 3


async def test_tokens_are_recorded_per_attempt() -> None:
    transport = MemoryTransport()
    seen = []
    for token in ["t1", None, "t3"]:
        client, server = await pair(transport, token=token)
        assert client.token == token
        seen.append(server.token)
    assert seen == ["t1", None, "t3"]
    assert transport.attempts == 3


async def test_connections_are_independent() -> None:
    transport = MemoryTransport()
    c1, s1 = await pair(transport)
    c2, s2 = await pair(transport)
    await s1.close(4001)
    await c2.send("still up")
    assert await s2.recv() == "still up"
    with pytest.raises(ConnectionLost):
        await c1.recv()
