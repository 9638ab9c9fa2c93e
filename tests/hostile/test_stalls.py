"""Stalls: a server that freezes after the welcome, mid-frame, or on one request.

README ("Dead links are noticed"): a heartbeat drops a connection whose pong has not
come within ``ping_timeout``, so a frozen server is noticed within interval + timeout
and the client reconnects; what was in flight is sent again and deduplicated.
"""

from __future__ import annotations

import asyncio

import pytest

from rtclient import ConnectionState
from rtclient.testing import HostileConnection, HostileServer, Request, wait_until

from .conftest import ALL, MakeClient

HEARTBEAT = {"ping_interval": 0.05, "ping_timeout": 0.15}


@pytest.mark.parametrize("transport", ALL)
async def test_frozen_server_is_noticed_and_left(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, _seen = await make_client(transport, rooms=("lobby",), **HEARTBEAT)
    stalled = asyncio.ensure_future(srv.connections[-1].stall())
    await wait_until(lambda: len(srv.connections) == 2, timeout=3)
    await client.wait_for(ConnectionState.CONNECTED, timeout=3)
    assert client.stats()["dead_links"] == 1
    assert (await asyncio.wait_for(client.send("lobby", "elsewhere"), 3)).event_id == 1
    await asyncio.wait_for(stalled, 3)  # the client closed the frozen link's TCP


@pytest.mark.parametrize("transport", ALL)
async def test_stall_mid_frame_is_noticed_and_left(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    from websockets.frames import Frame, Opcode

    client, seen = await make_client(transport, rooms=("lobby",), **HEARTBEAT)
    conn = srv.connections[-1]
    text = conn.envelope("chat:message", srv.contract.append("lobby", "cut short" * 100))
    wire = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    await conn.send_raw(wire[: len(wire) // 2])
    stalled = asyncio.ensure_future(conn.stall())
    await wait_until(lambda: len(srv.connections) == 2, timeout=3)
    await client.wait_for(ConnectionState.CONNECTED, timeout=3)
    await wait_until(lambda: seen.ids() == [1], timeout=3)  # synced on the new link
    assert client.stats()["dead_links"] == 1
    await asyncio.wait_for(stalled, 3)


@pytest.mark.parametrize("transport", ALL)
async def test_server_that_freezes_on_a_send_loses_nothing(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",), **HEARTBEAT)

    async def freeze(conn: HostileConnection, req: Request) -> None:
        await conn.server.contract.commit(req)
        await conn.stall()

    srv.on("chat:send", freeze, nth=1)
    ack = await asyncio.wait_for(client.send("lobby", "through the freeze"), 5)
    assert (ack.event_id, ack.duplicate) == (1, True)
    await wait_until(lambda: seen.ids() == [1], timeout=3)
    assert len(srv.contract.logs["lobby"]) == 1


@pytest.mark.parametrize("transport", ALL)
async def test_silence_after_the_welcome_is_fine_while_pongs_come(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    """A quiet server that still answers pings is not a dead link."""
    client, _ = await make_client(transport, rooms=("lobby",), **HEARTBEAT)
    await wait_until(lambda: client.quality.samples >= 5, timeout=3)
    assert client.stats()["dead_links"] == 0
    assert len(srv.handshakes) == 1
