"""start/stop: graceful 1001, no task or timer left behind, restartable objects."""

from __future__ import annotations

import asyncio
import logging

import pytest

from fake_server import FakeServer, ServerConfig

from .conftest import SECRET
from .helpers import bearer, open_ws


async def test_stop_closes_clients_with_1001_and_leaves_no_task() -> None:
    before = asyncio.all_tasks()
    server = FakeServer(secret=SECRET, typing_timeout=30.0, ping_interval=0.05, auth_timeout=30.0)
    await server.start()
    alice = await open_ws(server.ws_url, bearer(server.issue_token("alice", ttl=600)))
    await alice.expect("connected")
    bob = await open_ws(server.ws_url, bearer(server.issue_token("bob")))
    await bob.expect("connected")
    pending = await open_ws(server.ws_url)  # never authenticates
    await alice.join("lobby")
    await alice.ok("typing:start", {"roomId": "lobby"})  # arms a typing timer
    restart = server.spawn(server.restart(downtime=30.0))  # a background task in downtime
    assert (await alice.closed())[0] == 1012
    await server.stop()
    assert restart.cancelled()
    for client in (bob, pending):
        assert (await client.closed())[0] in (1001, 1012)
    assert asyncio.all_tasks() - before == {asyncio.current_task()} - before
    assert len(server._timers) == 0
    await server.stop()  # idempotent


async def test_graceful_stop_code_is_1001() -> None:
    async with FakeServer(secret=SECRET) as server:
        client = await open_ws(server.ws_url, bearer(server.issue_token("alice")))
        await client.expect("connected")
    assert await client.closed() == (1001, "server shutting down")


async def test_urls_and_overrides() -> None:
    config = ServerConfig(secret=SECRET, retention_count=7)
    server = FakeServer(config, ping_interval=0.5)
    assert server.config.retention_count == 7 and server.config.ping_interval == 0.5
    async with server:
        assert server.port > 0
        assert server.ws_url == f"ws://127.0.0.1:{server.port}/ws"
        assert server.http_url == f"http://127.0.0.1:{server.port}"
        assert len(server.epoch) >= 8
    with pytest.raises(TypeError):
        FakeServer(no_such_knob=1)
    with pytest.raises(ValueError):
        ServerConfig(ping_interval=0)


async def test_random_secret_when_none_given() -> None:
    async with FakeServer() as server:
        assert server.config.secret
        client = await open_ws(server.ws_url, bearer(server.issue_token("alice")))
        await client.expect("connected")
        await client.ws.close()


async def test_connects_and_disconnects_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fake_server")
    async with FakeServer(secret=SECRET) as server:
        client = await open_ws(server.ws_url, bearer(server.issue_token("alice")))
        welcome = await client.expect("connected")
        await server.close_all(1012, "maintenance")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("fake_server")]
    client_id = welcome["clientId"]
    assert f"connected client={client_id} user=alice" in lines
    assert f"disconnected client={client_id} user=alice code=1012 reason=maintenance" in lines
