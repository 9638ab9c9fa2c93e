"""Server heartbeats: RTT samples for /health, and a silent peer gets cut off."""

from __future__ import annotations

import asyncio
import base64
import os

import aiohttp

from fake_server import FakeServer

from .conftest import Connect, MakeServer
from .helpers import WAIT, wait_until


async def raw_upgrade(
    host: str, port: int, token: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a WebSocket by hand; the caller never answers pings."""
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def test_silent_peer_is_closed_after_ping_timeout(make_server: MakeServer) -> None:
    server = await make_server(ping_interval=0.05, ping_timeout=0.1)
    reader, writer = await raw_upgrade(server.host, server.port, server.issue_token("zombie"))
    await wait_until(lambda: server.connection_count() == 1)
    try:
        async with asyncio.timeout(WAIT):
            while await reader.read(4096):  # pings and `connected` arrive; no pong goes back
                pass
    finally:
        writer.close()
        await writer.wait_closed()
    await wait_until(lambda: server.connection_count() == 0)
    assert server.counters["heartbeat_timeouts"] == 1


async def test_answering_peer_stays_and_feeds_latency(
    make_server: MakeServer, connect: Connect
) -> None:
    server = await make_server(ping_interval=0.02, ping_timeout=0.5)
    alice = await connect(server, "alice")
    await wait_until(lambda: server.latency.total >= 3)
    async with aiohttp.ClientSession() as http, http.get(f"{server.http_url}/health") as resp:
        latency = (await resp.json())["latency"]
    assert latency["samples"] >= 3
    assert 0 <= latency["p50"] <= latency["p95"]
    assert (await alice.ok("ping", {"ts": 1}))["ts"] == 1
    assert server.counters["heartbeat_timeouts"] == 0


async def test_client_pings_get_pongs(server: FakeServer, connect: Connect) -> None:
    alice = await connect(server, "alice")
    latency = await asyncio.wait_for(await alice.ws.ping(b"hello"), WAIT)
    assert latency >= 0
