"""Reproductions of bugs the chaos soak found; each must pass once the bug is fixed.

1. A WebSocket client behind a TCP proxy (FaultProxy, HAProxy in TCP mode, a cloud
   load balancer) stops for good when the proxy accepts the connection and closes it
   before the HTTP upgrade response — which is what a proxy does while the server
   behind it restarts. websockets reports an EOF during the handshake as
   ``InvalidMessage("did not receive a valid HTTP response")`` (an ``InvalidHandshake``,
   its ``__cause__`` an ``EOFError``); ``rtclient/transports/websocket.py::_mapped`` turns
   every ``InvalidHandshake`` into ``ProtocolError``, which ``failures.classify`` calls
   fatal: the client ends CLOSED. A connection cut during the handshake is a network
   failure (TransportError: retry), as it is over Socket.IO.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal

import pytest

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState
from rtclient.testing import FaultProxy

FAST = Backoff(base=0.02, cap=0.1, first_delay=0.02, stable_after=0.3)


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    async with FakeServer(close_timeout=1.0) as srv:
        yield srv


@pytest.mark.parametrize("transport", ["websocket", "socketio"])
async def test_a_restart_behind_a_tcp_proxy_is_survived(
    server: FakeServer, transport: Literal["websocket", "socketio"]
) -> None:
    async with FaultProxy(upstream=(server.host, server.port)) as proxy:
        url = proxy.url("ws", "/ws") if transport == "websocket" else proxy.url("http")
        client = Client(
            url, token=lambda: server.issue_token("alice"), transport=transport, backoff=FAST
        )
        await client.connect()
        try:
            await client.join("lobby")
            # While the server is down the proxy accepts, fails to reach it, and closes:
            # the client's handshake ends in an EOF before any HTTP response.
            await server.restart(downtime=0.5)
            await client.wait_for(ConnectionState.CONNECTED, timeout=5)
            ack = await client.send("lobby", "after the restart", timeout=5)
            assert ack.event_id == 1
        finally:
            await client.close(flush=False)


async def test_an_eof_before_the_upgrade_response_is_retried() -> None:
    """The smallest case: a listener that accepts and closes every connection at once."""
    accepted = 0
    three = asyncio.Event()

    def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()
        if accepted >= 3:
            three.set()

    listener = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = Client(f"ws://127.0.0.1:{port}/ws", token="t", backoff=FAST)
    waits = [
        asyncio.ensure_future(three.wait()),
        asyncio.ensure_future(client.wait_for(ConnectionState.CLOSED)),
    ]
    try:
        await client.connect(wait=False)
        await asyncio.wait(waits, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        assert client.state is not ConnectionState.CLOSED, "an EOF in the handshake was fatal"
        assert accepted >= 3
    finally:
        await client.close(flush=False)
        for wait in waits:
            wait.cancel()
        listener.close()
        await listener.wait_closed()
