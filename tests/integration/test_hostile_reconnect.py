"""Reconnect decisions against servers that misbehave (issue 13, items 1, 2, 11, 14, 16, 19).

Each server here is a few lines: a ``websockets`` handler, a raw TCP peer that answers
the upgrade with an HTTP status, or a plain python-socketio AsyncServer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp.web
import pytest
import socketio
from websockets.asyncio.server import ServerConnection, serve

from fake_server import FakeServer
from rtclient import (
    Backoff,
    Client,
    ConnectionState,
    ProtocolError,
    Unauthorized,
)
from rtclient.testing import wait_until

from .conftest import FAST, TEST_SERVER, MakeClient, Recorder

WELCOME = json.dumps({"type": "connected", "payload": {"userId": "x"}})


@pytest.fixture(params=["websocket", "aiohttp"])
def transport_name(request: pytest.FixtureRequest) -> str:
    """Every test in this module runs over both raw WebSocket transports."""
    return str(request.param)


@asynccontextmanager
async def ws_server(
    handler: Callable[[ServerConnection], Awaitable[None]],
) -> AsyncIterator[str]:
    """A ``websockets`` server on a loopback port running ``handler``; yields its URL."""
    async with serve(handler, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


@asynccontextmanager
async def http_refuser(status: int, headers: dict[str, str]) -> AsyncIterator[str]:
    """A TCP peer answering every upgrade with ``status`` and ``headers``; yields its URL."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            lines = [f"HTTP/1.1 {status} Refused", "Content-Length: 0", "Connection: close"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


def reconnect_delays(seen: Recorder) -> list[float]:
    return [s.delay for s in seen.states if s.new is ConnectionState.RECONNECTING]


# -- item 1: welcome, then 4002 ------------------------------------------------------------


async def test_welcome_then_4002_is_no_reconnect_storm(transport_name: str) -> None:
    handshakes = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal handshakes
        handshakes += 1
        await ws.send(WELCOME)
        await ws.close(4002, "token expired")

    async with ws_server(handler) as url:
        client = Client(
            url,
            token=lambda: "t",
            transport=transport_name,
            backoff=Backoff(base=0.02, cap=0.08, jitter="none", stable_after=5.0),
        )
        seen = Recorder(client)
        await client.connect()
        await wait_until(lambda: len(reconnect_delays(seen)) >= 5)
        await client.close()
    # Only the first refresh is at once; then the backoff series (0.02 s was the first).
    assert reconnect_delays(seen)[:5] == pytest.approx([0.0, 0.04, 0.08, 0.08, 0.08])
    assert handshakes <= 6


# -- item 2: server delays are capped --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "most"),
    [
        (429, "999999", 60.0),
        (503, "999999", 60.0),
        (503, "Fri, 31 Dec 9999 23:59:59 GMT", 60.0),
        (429, "inf", 1.0),  # ignored: the backoff's own delay (cap 1 s)
        (503, "-5", 1.0),
        (503, "nan", 1.0),
    ],
)
async def test_retry_after_header_is_capped_or_ignored(
    transport_name: str, status: int, retry_after: str, most: float
) -> None:
    async with http_refuser(status, {"Retry-After": retry_after}) as url:
        client = Client(
            url, token="t", transport=transport_name, backoff=Backoff(base=0.5, cap=1.0)
        )
        seen = Recorder(client)
        await client.connect(wait=False)
        await wait_until(lambda: len(reconnect_delays(seen)) == 1)
        await client.close()
    (delay,) = reconnect_delays(seen)
    assert 0 < delay <= most
    if most == 60.0:
        assert delay == 60.0  # believed, up to the cap


async def test_max_server_delay_is_configurable(transport_name: str) -> None:
    async with http_refuser(503, {"Retry-After": "3600"}) as url:
        client = Client(url, token="t", transport=transport_name, max_server_delay=5.0)
        seen = Recorder(client)
        await client.connect(wait=False)
        await wait_until(lambda: len(reconnect_delays(seen)) == 1)
        await client.close()
    assert reconnect_delays(seen) == [5.0]


async def test_close_1013_with_a_day_long_retry_after_is_capped(transport_name: str) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.close(1013, "retryAfter=86400")

    async with ws_server(handler) as url:
        client = Client(url, token="t", transport=transport_name, backoff=FAST)
        seen = Recorder(client)
        await client.connect(wait=False)
        await wait_until(lambda: len(reconnect_delays(seen)) == 1)
        await client.close()
    assert reconnect_delays(seen) == [60.0]


# -- item 11: a cancelled connect leaves nothing running ---------------------------------------


def client_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t.get_name().startswith("rtclient")}


async def test_cancelled_async_with_leaves_no_task_running(transport_name: str) -> None:
    async with http_refuser(503, {}) as url:
        client = Client(url, token="t", transport=transport_name, backoff=FAST)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                async with client:
                    pytest.fail("the server refuses: never connected")
        assert client.state is ConnectionState.CLOSED
        assert not client_tasks()


async def test_failed_connect_leaves_no_task_running(transport_name: str) -> None:
    async with http_refuser(401, {}) as url:
        client = Client(url, token="t", transport=transport_name, backoff=FAST)
        with pytest.raises(Unauthorized):
            await client.connect()
        assert not client_tasks()
        await client.close()


# -- item 14: one fatal error, one error event --------------------------------------------------


async def test_fatal_close_with_three_rooms_gives_one_error_event(
    server: FakeServer, make_client: MakeClient
) -> None:
    client = await make_client("alice", rooms=("a", "b", "c"))
    seen = Recorder(client)
    client.send_nowait("a", "queued when the server says no")
    await server.reject_handshakes(1, 401)
    await server.drop_connections()
    await client.wait_for(ConnectionState.CLOSED)
    await wait_until(lambda: len(seen.errors) >= 1)
    await client.close()
    assert [type(e.error) for e in seen.errors] == [Unauthorized]


# -- item 19: 4001 after a key rotation -------------------------------------------------------


@pytest.mark.parametrize("refusal", [4001, 401])
async def test_4001_with_a_refreshable_provider_gets_one_forced_refresh(
    server: FakeServer, make_client: MakeClient, refusal: int
) -> None:
    forced: list[bool] = []

    class Provider:
        async def get(self, *, force: bool = False) -> str:
            forced.append(force)
            return server.issue_token("alice")

    await server.reject_handshakes(1, refusal)  # 4001: after the welcome; 401: the upgrade
    client = await make_client("alice", token=Provider())
    await wait_until(lambda: forced == [False, True])
    await client.wait_for(ConnectionState.CONNECTED)


@pytest.mark.parametrize("refusal", [4001, 401])
async def test_4001_twice_is_fatal_after_one_refresh(
    server: FakeServer, make_client: MakeClient, refusal: int
) -> None:
    await server.reject_handshakes(5, refusal)
    before = server.counters["handshakes"]
    client = await make_client("alice", connect=False, token=lambda: server.issue_token("a"))
    seen = Recorder(client)
    try:
        await client.connect()  # 4001 comes after a welcome: connect() returns first
    except Unauthorized:
        assert refusal == 401
    async with asyncio.timeout(5):
        await client.wait_for(ConnectionState.CLOSED)
    assert isinstance(seen.states[-1].error, Unauthorized)
    assert server.counters["handshakes"] - before == 2


async def test_401_with_a_fixed_token_is_fatal_at_once(
    server: FakeServer, make_client: MakeClient
) -> None:
    await server.reject_handshakes(5, 401)
    before = server.counters["handshakes"]
    client = await make_client("alice", connect=False)
    with pytest.raises(Unauthorized):
        await client.connect()
    assert server.counters["handshakes"] - before == 1


# -- item 16: rooms mode against a plain Socket.IO server ----------------------------------------


@pytest.fixture
async def plain_sio_url() -> AsyncIterator[str]:
    """A python-socketio AsyncServer that knows nothing of the rooms contract."""
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = aiohttp.web.Application()
    sio.attach(app)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await sio.shutdown()
        await runner.cleanup()


async def test_rooms_mode_against_a_plain_socketio_server_says_use_generic(
    plain_sio_url: str,
) -> None:
    client = Client(
        plain_sio_url, token="t", transport="socketio", backoff=FAST, connect_timeout=0.2
    )
    async with asyncio.timeout(10):
        with pytest.raises(ProtocolError, match='protocol="generic"'):
            await client.connect()
    assert client.stats()["attempts"] == 3
    await client.close()


# -- item 15: rate limits ---------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["websocket", "aiohttp", "socketio"])
async def test_rate_limited_messages_are_sent_once_more_not_in_a_storm(transport: str) -> None:
    n, rate, burst = 80, 100.0, 10
    settings = {**TEST_SERVER, "rate_per_second": rate, "rate_burst": burst}
    async with FakeServer(**settings) as server:
        url = server.sio_url if transport == "socketio" else server.ws_url
        token = server.issue_token("alice")
        async with Client(url, token=token, transport=transport, backoff=FAST) as client:
            await client.join("lobby")
            acks = await asyncio.gather(*(client.send("lobby", f"m{i}") for i in range(n)))
            stats = client.stats()
        limited = server.counters["rate_limited"]
    assert sorted(a.event_id for a in acks) == list(range(1, n + 1))
    assert stats["resent"] == stats["rate_limited"] == limited
    # The first window (all n at once) meets an empty bucket; after that the client
    # paces itself: every message is limited at most once (before the fix: ~15 times).
    assert limited <= n


async def test_a_raw_server_that_never_welcomes_is_retried_not_fatal(transport_name: str) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()  # stalled: a raw server says nothing either way

    async with ws_server(handler) as url:
        client = Client(
            url, token="t", transport=transport_name, backoff=FAST, connect_timeout=0.05
        )
        await client.connect(wait=False)
        await wait_until(lambda: client.stats()["attempts"] >= 5)
        assert client.state is not ConnectionState.CLOSED
        await client.close()
