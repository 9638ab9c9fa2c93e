"""A Socket.IO connection whose link engine.io gave up on releases its HTTP connection.

engine.io's reader stops on its own when the server has been silent for its ping
interval plus ping timeout ("Server has stopped communicating"), and leaves its
WebSocket response open: ``close()`` must release it, or aiohttp's connection stays
acquired and the GC warns "Unclosed connection" / "Unclosed response" (seen under load
in the long soak, where the lab's engine.io timeout is 0.75 s).
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator

import pytest

from fake_server import FakeServer
from rtclient.errors import ConnectionLost, TransportError
from rtclient.transports.base import Connection
from rtclient.transports.socketio import SocketIOTransport

from .conftest import TEST_SERVER


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    """engine.io pings every 50 ms and gives up after 100 ms of silence."""
    async with FakeServer(**TEST_SERVER, ping_interval=0.05, ping_timeout=0.05) as srv:
        yield srv


async def test_close_after_engineio_gave_up_on_a_silent_server_releases_the_response(
    server: FakeServer,
) -> None:
    # aiohttp says "Unclosed response" in debug mode (else "Unclosed connection", or
    # nothing, depending on the order the GC finalises the cycle in).
    # Connected before debug mode slows the loop (aiohttp reads it when the response is
    # collected): engine.io gives up after 100 ms of silence here, which a loaded machine
    # can reach while connecting, and a link lost before the CONNECT answer now fails the
    # attempt at once, so such an attempt is made again.
    conn = await _connect(server)
    loop = asyncio.get_running_loop()
    debug = loop.get_debug()
    loop.set_debug(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await server.pause()  # no reads, no writes, no pings: a silent server
            with pytest.raises(ConnectionLost):
                async with asyncio.timeout(5.0):
                    while True:
                        await conn.recv()
            await conn.close()
            del conn
            gc.collect()
    finally:
        loop.set_debug(debug)
        await server.resume()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


async def _connect(server: FakeServer, attempts: int = 5) -> Connection:
    for attempt in range(attempts):
        try:
            return await SocketIOTransport().connect(
                server.sio_url, token=server.issue_token("alice"), open_timeout=2.0
            )
        except TransportError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
