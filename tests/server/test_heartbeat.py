"""Server heartbeats: RTT samples for /health, and a silent peer gets cut off."""

from __future__ import annotations

import asyncio
import base64
import os

import aiohttp
import pytest

from fake_server import FakeServer
from rtclient.testing import wait_until

from .conftest import Connect, MakeServer
from .helpers import WAIT


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


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one unmasked server frame: (opcode, payload)."""
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return head[0] & 0x0F, await reader.readexactly(length)


def masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


async def next_ping(reader: asyncio.StreamReader) -> bytes:
    while True:
        opcode, payload = await read_frame(reader)
        if opcode == 0x9:
            return payload


async def test_pause_does_not_time_out_a_ping_in_flight(make_server: MakeServer) -> None:
    server = await make_server(ping_interval=0.05, ping_timeout=0.15)
    reader, writer = await raw_upgrade(server.host, server.port, server.issue_token("slow"))
    try:
        async with asyncio.timeout(WAIT):
            ping = await next_ping(reader)
        await server.pause()  # the ping is in flight; its pong is not read while paused
        with pytest.raises(TimeoutError):  # > ping_timeout of silence from a frozen server
            await asyncio.wait_for(reader.read(1), 0.4)
        await server.resume()
        writer.write(masked_frame(0xA, ping))
        async with asyncio.timeout(WAIT):
            await next_ping(reader)  # still connected: the heartbeat goes on
        assert server.counters["heartbeat_timeouts"] == 0
        assert server.connection_count() == 1
    finally:
        writer.close()
        await writer.wait_closed()


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
