"""Reconnects are polite: backoff that grows, fatal errors that stop, fresh tokens on 4002."""

from __future__ import annotations

import asyncio
import time

import pytest

from fake_server import FakeServer
from rtclient import (
    Backoff,
    Client,
    ClientClosed,
    ConnectionFailed,
    ConnectionState,
    Forbidden,
    TokenExpired,
    Unauthorized,
)
from rtclient.testing import wait_until

from .conftest import MakeClient, Recorder


@pytest.fixture(params=["websocket", "aiohttp"])
def transport_name(request: pytest.FixtureRequest) -> str:
    """Every test in this module runs over both raw WebSocket transports."""
    return str(request.param)


async def test_invalid_token_raises_unauthorized_without_retrying(
    server: FakeServer, make_client: MakeClient
) -> None:
    client = await make_client("mallory", connect=False, token="not-a-jwt")
    before = server.counters["handshakes"]
    with pytest.raises(Unauthorized):
        await client.connect()
    assert client.state is ConnectionState.CLOSED
    assert server.counters["handshakes"] - before == 1
    with pytest.raises(ClientClosed) as info:
        await client.join("lobby")
    assert isinstance(info.value.__cause__, Unauthorized)


async def test_forbidden_room(server: FakeServer, make_client: MakeClient) -> None:
    client = await make_client("alice")
    with pytest.raises(Forbidden):
        await client.join("admin:ops")
    assert client.rooms == []
    admin = await make_client("root", token=server.issue_token("root", roles=["admin"]))
    assert await admin.join("admin:ops") == ["root"]


async def test_server_that_accepts_then_closes_at_once_gets_growing_delays(
    server: FakeServer, make_client: MakeClient
) -> None:
    backoff = Backoff(base=0.01, cap=10.0, jitter="none", stable_after=1.0)
    client = await make_client("alice", connect=False, backoff=backoff)
    seen = Recorder(client)
    await client.connect()
    await server.reject_handshakes(6, 1011)
    await server.drop_connections()

    def delays() -> list[float | None]:
        return [s.delay for s in seen.states if s.new is ConnectionState.RECONNECTING]

    await wait_until(lambda: len(delays()) == 7, timeout=10)
    await client.wait_for(ConnectionState.CONNECTED)
    assert server.counters["handshakes_rejected"] == 6
    # The first drop came after a connection that was not stable yet, and every
    # accept-then-close counts as a failure: the delays double, never reset.
    assert delays() == pytest.approx([0.01 * 2**i for i in range(7)])


async def test_first_retry_after_a_stable_connection_is_quick(
    server: FakeServer, make_client: MakeClient
) -> None:
    # stable_after is at least base / 10 (the floor of every other delay): 0.1 s here.
    backoff = Backoff(base=1.0, cap=30.0, first_delay=0.02, stable_after=0.05)
    client = await make_client("alice", connect=False, backoff=backoff)
    seen = Recorder(client)
    await client.connect()
    started = time.perf_counter()
    await wait_until(lambda: time.perf_counter() - started > 0.12, timeout=1)
    await server.drop_connections()
    await wait_until(lambda: client.stats()["reconnects"] == 1)
    await client.wait_for(ConnectionState.CONNECTED)
    (delay,) = [s.delay for s in seen.states if s.new is ConnectionState.RECONNECTING]
    assert 0 <= delay <= 0.02


async def test_retry_after_from_the_server_is_respected(
    server: FakeServer, make_client: MakeClient
) -> None:
    client = await make_client("alice", connect=False)
    seen = Recorder(client)
    await server.reject_handshakes(1, 503, retry_after=0.3)
    await client.connect()
    (delay,) = [s.delay for s in seen.states if s.new is ConnectionState.RECONNECTING]
    assert delay >= 0.3


async def test_gives_up_after_max_attempts(server: FakeServer, make_client: MakeClient) -> None:
    await server.reject_handshakes(100, 503)
    client = await make_client(
        "alice", connect=False, backoff=Backoff(base=0.001, cap=0.01, max_attempts=3)
    )
    with pytest.raises(ConnectionFailed):
        await client.connect()
    assert client.stats()["attempts"] == 3


async def test_expired_token_is_refreshed_once_and_retried_at_once(
    server: FakeServer, make_client: MakeClient
) -> None:
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return server.issue_token("alice")

    client = await make_client("alice", rooms=("lobby",), token=provider)
    seen = Recorder(client)
    await server.expire_tokens()
    await wait_until(lambda: client.stats()["token_refreshes"] == 1)
    await client.wait_for(ConnectionState.CONNECTED)
    assert calls == 2
    delays = [s.delay for s in seen.states if s.new is ConnectionState.RECONNECTING]
    assert delays == [0.0]
    assert (await client.send("lobby", "after refresh")).event_id == 1


async def test_provider_that_keeps_giving_expired_tokens_ends_in_token_expired(
    server: FakeServer, make_client: MakeClient
) -> None:
    stale = server.issue_token("alice")
    await server.expire_tokens()  # every token issued so far is now rejected with 4002
    client = await make_client("alice", connect=False, token=lambda: stale, max_token_refreshes=2)
    before = server.counters["handshakes"]
    with pytest.raises(TokenExpired):
        await client.connect()
    assert server.counters["handshakes"] - before == 3  # first try + 2 refreshes


async def test_close_during_backoff_returns_promptly(server: FakeServer) -> None:
    await server.reject_handshakes(100, 503)
    client = Client(server.ws_url, token=server.issue_token("a"), backoff=Backoff(base=30, cap=60))
    await client.connect(wait=False)
    await wait_until(lambda: client.state is ConnectionState.RECONNECTING)
    async with asyncio.timeout(2):
        await client.close()
    assert client.state is ConnectionState.CLOSED
