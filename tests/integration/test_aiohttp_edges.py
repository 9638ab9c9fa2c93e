"""The aiohttp transport's edges, checked by a review: compression over many messages and
windows, concurrent pings, every close code, close and abort in any order, connect
failures and cancellations that must release their session, sliced and cut frames."""

from __future__ import annotations

import asyncio
import contextlib
import random
import string
from typing import Any

import aiohttp
import pytest

from fake_server import FakeServer
from rtclient import (
    Client,
    ConnectionLost,
    HandshakeRejected,
    ProtocolError,
    RtClientError,
    TransportError,
)
from rtclient.testing import FaultProxy, wait_until
from rtclient.transports import AiohttpConnection, AiohttpTransport

from .conftest import FAST, Recorder


async def _open(url: str, token: str | None, **options: Any) -> AiohttpConnection:
    return await AiohttpTransport(**options).connect(url, token=token, open_timeout=2)


@pytest.mark.parametrize("window_bits", [9, 12, 15])
async def test_many_large_compressed_messages_inflate_on_the_server(
    roomy_server: FakeServer, window_bits: int
) -> None:
    """Fresh deflate context per message (sync and executor sizes), many in a row."""
    server = roomy_server
    client = Client(
        server.ws_url,
        token=server.issue_token("big"),
        transport=AiohttpTransport(compression_window_bits=window_bits),
        backoff=FAST,
    )
    await client.connect()
    try:
        await client.join("big")
        texts = [
            f"{i:03d}" + "".join(chr(33 + (i * j) % 90) for j in range(n))
            for i, n in enumerate([300, 4_000, 16_380, 16_390, 20_000, 59_000] * 5)
        ]
        acks = [asyncio.create_task(client.send("big", t)) for t in texts]
        await asyncio.gather(*acks)
        assert [e["text"] for e in server.room_events("big")] == texts
        assert client.stats()["malformed"] == 0
    finally:
        await client.close()


async def test_concurrent_pings_each_get_their_pong(server: FakeServer) -> None:
    conn = await _open(server.ws_url, server.issue_token("p"))
    try:
        await conn.recv()
        reader = asyncio.create_task(conn.recv())
        await server.set_latency(30)
        rtts = await asyncio.wait_for(asyncio.gather(*(conn.ping() for _ in range(10))), 5)
        assert all(rtt >= 0.03 for rtt in rtts) and not conn._pings
        # a ping given up on leaves nothing behind; the next still matches
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.001):
                await conn.ping()
        assert await asyncio.wait_for(conn.ping(), 5) >= 0.03
        await server.set_latency(0)
        # a waiting ping ends with ConnectionLost when the server closes
        pending = asyncio.create_task(conn.ping())
        await server.set_latency(500)
        await server.close_all(4003, "forbidden")
        with pytest.raises(ConnectionLost) as info:
            await asyncio.wait_for(reader, 5)
        assert info.value.code == 4003
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(pending, 5)
    finally:
        await server.set_latency(0)
        await conn.close()


@pytest.mark.parametrize("code", [1009, 1011, 1012, 1013, 4001, 4002, 4003])
async def test_server_close_codes_reach_recv(server: FakeServer, code: int) -> None:
    conn = await _open(server.ws_url, server.issue_token("c"))
    try:
        await conn.recv()
        await server.close_all(code, "why")
        with pytest.raises(ConnectionLost) as info:
            while True:
                await asyncio.wait_for(conn.recv(), 5)
        assert (info.value.code, info.value.reason) == (code, "why")
    finally:
        await conn.close()


@pytest.mark.parametrize("order", ["close-then-abort", "abort-then-close", "abort-during-close"])
async def test_close_and_abort_in_any_order_release_everything(
    server: FakeServer, order: str
) -> None:
    conn = await _open(server.ws_url, server.issue_token("x"))
    await conn.recv()
    reader = asyncio.create_task(conn.recv())
    await server.pause()  # the server will not answer the close frame
    try:
        if order == "close-then-abort":
            await conn.close()
            conn.abort()
        elif order == "abort-then-close":
            conn.abort()
            await conn.close()
        else:
            closing = asyncio.create_task(conn.close())
            await wait_until(lambda: conn._ws.closed)
            conn.abort()
            await asyncio.wait_for(closing, 2)  # not close_timeout (5 s)
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(reader, 2)
        await conn.close()  # idempotent
        assert conn._session.closed
    finally:
        await server.resume()


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[aiohttp.ClientSession]:
    made: list[aiohttp.ClientSession] = []
    real = aiohttp.ClientSession

    def tracking(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        session = real(*args, **kwargs)
        made.append(session)
        return session

    monkeypatch.setattr(aiohttp, "ClientSession", tracking)
    return made


async def test_every_failed_or_cancelled_connect_closes_its_session(
    server: FakeServer, sessions: list[aiohttp.ClientSession]
) -> None:
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        with contextlib.suppress(Exception):
            await reader.read()
        writer.close()

    peer = await asyncio.start_server(silent, "127.0.0.1", 0)
    silent_url = f"ws://127.0.0.1:{peer.sockets[0].getsockname()[1]}/"
    try:
        with pytest.raises(TransportError):  # open_timeout
            await AiohttpTransport().connect(silent_url, token=None, open_timeout=0.2)
        attempt = asyncio.create_task(
            AiohttpTransport().connect(silent_url, token=None, open_timeout=5)
        )
        accepted.clear()
        await asyncio.wait_for(accepted.wait(), 2)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        await server.reject_handshakes(1, 503)
        with pytest.raises(HandshakeRejected):
            await AiohttpTransport().connect(server.ws_url, token=None, open_timeout=2)
        with pytest.raises(ProtocolError):
            await AiohttpTransport().connect("ws://[bad", token=None, open_timeout=2)
    finally:
        peer.close()
        await peer.wait_closed()
    assert len(sessions) == 4 and all(s.closed for s in sessions)


async def test_one_byte_slices_and_a_reset_mid_frame(roomy_server: FakeServer) -> None:
    server = roomy_server
    async with FaultProxy(upstream=(server.host, server.port)) as proxy:
        alice = Client(
            proxy.url("ws", "/ws"),
            token=server.issue_token("alice"),
            transport="aiohttp",
            backoff=FAST,
        )
        bob = Client(server.ws_url, token=server.issue_token("bob"), transport="aiohttp")
        seen = Recorder(alice)
        try:
            with proxy.slicer(1):  # both directions, one byte per write
                await alice.connect()
                await alice.join("r")
                await bob.connect()
                await bob.join("r")
                await bob.send("r", "sliced")
                await wait_until(lambda: seen.texts() == ["sliced"])
            # a 50 KB frame (incompressible) cut after 1 KB
            rnd = random.Random(7)
            big = "".join(rnd.choice(string.ascii_letters) for _ in range(50_000))
            with proxy.limit_data(1_000, direction="downstream"):
                await bob.send("r", big)
                await wait_until(lambda: alice.stats()["reconnects"] >= 1)
            await wait_until(lambda: len(seen.texts()) == 2)
            assert seen.texts()[1] == big
            assert alice.stats()["malformed"] == 0
        finally:
            await alice.close(flush=False)
            await bob.close(flush=False)


async def test_every_connect_failure_is_an_rtclient_error_through_a_faulty_proxy(
    server: FakeServer,
) -> None:
    async with FaultProxy(upstream=(server.host, server.port)) as proxy:
        url = proxy.url("ws", "/ws")
        for toxic in (
            lambda: proxy.reset_peer(direction="downstream"),
            lambda: proxy.limit_data(50, direction="upstream"),
            lambda: proxy.limit_data(60, direction="downstream"),
            lambda: proxy.blackhole(),
        ):
            with toxic(), pytest.raises(RtClientError):
                await AiohttpTransport().connect(url, token="t", open_timeout=0.5)


@pytest.mark.parametrize("transport", ["aiohttp", "websocket"])
async def test_a_handshake_response_swallowed_by_a_blackhole_is_retried(
    server: FakeServer, transport: str
) -> None:
    """Issue 19's long run: a blackhole swallowed the 101, the server then restarted and its
    close frame (1012) was the first thing the client read. A network failure: retried."""
    async with FaultProxy(upstream=(server.host, server.port)) as proxy:
        client = Client(
            proxy.url("ws", "/ws"),
            token=lambda: server.issue_token("u"),
            transport=transport,
            backoff=FAST,
            connect_timeout=5.0,
        )
        try:
            with proxy.blackhole(direction="downstream"):
                connecting = asyncio.create_task(client.connect())
                # The server counts the connection once it has written the 101; the
                # proxy may read it later: wait until the blackhole has swallowed it.
                await wait_until(
                    lambda: server.connection_count() >= 1 and proxy.stats.bytes_dropped > 0
                )
            await server.close_all(1012)
            async with asyncio.timeout(10):
                await connecting
            assert client.stats()["attempts"] >= 2
        finally:
            await client.close(flush=False)
