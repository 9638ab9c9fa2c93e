"""A lost connection is released once the client has moved on (issue 19).

The error a connection ended with outlives it (it is ``StateChanged.error`` and the
reconnect loop keeps it while the next connection runs). Its traceback used to hold
the frames that ran the dead connection, so the connection, its buffers and its
permessage-deflate contexts (~190 KB of zlib state) stayed alive until the next error
replaced it: the old and the new connection's memory interleaved in the C heap and
the process grew with every reconnect.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from fake_server import FakeServer
from rtclient.events import StateChanged
from rtclient.transports import AiohttpTransport, SocketIOTransport, WebSocketTransport

from .conftest import MakeClient, wait_until


class Recording:
    """A real transport that keeps a weak reference to every connection it opened."""

    def __init__(self, name: str) -> None:
        self.inner: Any = {
            "websocket": WebSocketTransport,
            "aiohttp": AiohttpTransport,
            "socketio": SocketIOTransport,
        }[name]()
        self.opened: list[weakref.ref[Any]] = []

    async def connect(self, url: str, *, token: str | None, open_timeout: float) -> Any:
        conn = await self.inner.connect(url, token=token, open_timeout=open_timeout)
        self.opened.append(weakref.ref(conn))
        return conn


@pytest.mark.parametrize("transport_name", ["websocket", "aiohttp", "socketio"])
async def test_a_dropped_connection_is_freed_after_the_reconnect(
    server: FakeServer, make_client: MakeClient, transport_name: str
) -> None:
    transport = Recording(transport_name)
    changes: list[StateChanged] = []
    client = await make_client("alice", rooms=("lobby",), transport=transport, ping_interval=None)
    client.on("state", changes.append)
    for _ in range(2):
        before = client.stats()["reconnects"]
        await server.drop_connections()
        await wait_until(lambda b=before: client.stats()["reconnects"] > b)  # type: ignore[misc]
        await client.send("lobby", "still here")  # the new connection works
    gc.collect()
    alive = [i for i, ref in enumerate(transport.opened[:-1]) if ref() is not None]
    assert alive == [], f"dead connections still referenced: {alive} of {len(transport.opened)}"
    assert transport.opened[-1]() is not None
    # The errors handed to the application still say why (without their frames).
    errors = [c.error for c in changes if c.error is not None]
    assert errors and all(str(e) for e in errors), changes


async def test_a_send_while_the_connection_ends_stays_queued(
    server: FakeServer, make_client: MakeClient
) -> None:
    """The connection's task group is finishing when a caller kicks the writer (found by
    ``benchmarks.longrun``: send() raised RuntimeError "TaskGroup is finished")."""
    client = await make_client("alice", rooms=("lobby",), ping_interval=None)
    async with asyncio.TaskGroup() as finished:
        pass
    group, client._hook_group = client._hook_group, finished  # type: ignore[attr-defined]
    try:
        client.send_nowait("lobby", "queued as the link ends")  # kicks the writer
        assert client.stats()["queued"] == 1
    finally:
        client._hook_group = group  # type: ignore[attr-defined]
    before = client.stats()["reconnects"]
    await server.drop_connections()  # the next connection sends it
    await wait_until(lambda: client.stats()["reconnects"] > before)
    await wait_until(lambda: client.stats()["queued"] == 0 and client.stats()["acked"] >= 1)
