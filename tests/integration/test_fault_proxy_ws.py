"""FaultProxy between a plain ``websockets`` client and a plain ``websockets`` echo server.

The proxy knows nothing of WebSocket; these tests check that its byte-level faults show up
as the WebSocket-level symptoms a client must handle. Timing checks are lower bounds only.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import suppress

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.frames import CloseCode
from websockets.protocol import State

from rtclient.testing import FaultProxy

WAIT = 2.0


async def _echo(ws: ServerConnection) -> None:
    with suppress(ConnectionClosed):
        async for message in ws:
            await ws.send(message)


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    async with serve(_echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with FaultProxy(upstream=("127.0.0.1", port), seed=3) as fault_proxy:
            yield fault_proxy


@pytest.fixture
async def ws(proxy: FaultProxy) -> AsyncIterator[ClientConnection]:
    async with connect(
        proxy.url("ws", "/"),
        compression=None,  # so that frame sizes on the wire are the message sizes
        ping_interval=None,
        open_timeout=WAIT,
        close_timeout=0.5,
    ) as client:
        yield client


async def _rtt(ws: ClientConnection) -> float:
    pong = await ws.ping()
    async with asyncio.timeout(WAIT):
        return await pong


async def test_latency_raises_ping_rtt(proxy: FaultProxy, ws: ClientConnection) -> None:
    await _rtt(ws)
    with proxy.latency(60, direction="both"):
        assert await _rtt(ws) >= 0.12  # 60 ms each way


async def test_limit_data_mid_frame_is_an_abnormal_closure(
    proxy: FaultProxy, ws: ClientConnection
) -> None:
    await ws.send("warm-up")
    async with asyncio.timeout(WAIT):
        assert await ws.recv() == "warm-up"
    proxy.limit_data(100, direction="upstream")
    await ws.send(os.urandom(1000))  # the server gets the first 100 bytes of this frame
    with pytest.raises(ConnectionClosedError) as caught:
        async with asyncio.timeout(WAIT):
            await ws.recv()
    assert caught.value.rcvd is None  # no close frame: not a clean close
    assert ws.close_code == CloseCode.ABNORMAL_CLOSURE


async def test_blackhole_times_out_a_ping_while_the_socket_stays_open(
    proxy: FaultProxy, ws: ClientConnection
) -> None:
    await _rtt(ws)
    hole = proxy.blackhole(direction="downstream")
    pong = asyncio.ensure_future(await ws.ping())
    done, _ = await asyncio.wait({pong}, timeout=0.2)  # unlike wait_for, leaves it pending
    assert not done
    assert ws.state is State.OPEN and proxy.connections == 1
    hole.remove()
    await _rtt(ws)  # the link is back; the dropped pong never arrives, a new one does


async def test_reset_peer_is_an_abnormal_closure(proxy: FaultProxy, ws: ClientConnection) -> None:
    await _rtt(ws)
    proxy.reset_peer()
    with pytest.raises(ConnectionClosedError) as caught:
        async with asyncio.timeout(WAIT):
            await ws.recv()
    assert caught.value.rcvd is None
    assert ws.close_code == CloseCode.ABNORMAL_CLOSURE
    assert proxy.stats.resets_sent == 2
