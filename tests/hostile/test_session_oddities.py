"""Oddities around the session: a second welcome, a refused rejoin, a lost join ack,
events before the join ack, TLS spoken to a plain server."""

from __future__ import annotations

import asyncio

import pytest

from rtclient import ConnectionState, Forbidden, RtClientError
from rtclient.testing import HostileConnection, HostileServer, Request, wait_until

from .conftest import ALL, RAW, MakeClient


@pytest.mark.parametrize("transport", ALL)
async def test_a_second_welcome_mid_session_changes_nothing(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    welcomes: list[object] = []
    client.on("connected", welcomes.append)
    conn = srv.connections[-1]
    await conn.welcome(userId="mallory", epoch="other")
    await conn.emit("chat:message", srv.contract.append("lobby", "after"))
    await wait_until(lambda: seen.ids() == [1], timeout=3)
    assert len(welcomes) == 1  # delivered as an event, not obeyed
    assert client.user_id == "alice"
    assert [s.new for s in seen.states].count(ConnectionState.CONNECTED) == 1


@pytest.mark.parametrize("transport", ALL)
async def test_rejoin_refused_after_a_reconnect_fails_that_room_only(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, _ = await make_client(transport, rooms=("lobby", "vip"))

    def refuse_vip(conn: HostileConnection, req: Request) -> object:
        if req.payload.get("roomId") == "vip":
            return conn.reject(req, "FORBIDDEN", "not any more")
        return conn.default(req)

    srv.on("room:join", refuse_vip)
    srv.connections[-1].drop()
    queued = asyncio.ensure_future(client.send("vip", "to a room that is gone"))
    await wait_until(lambda: len(srv.connections) == 2, timeout=3)
    await client.wait_for(ConnectionState.CONNECTED, timeout=3)
    with pytest.raises(Forbidden):
        await asyncio.wait_for(queued, 3)
    assert client.rooms == ["lobby"]
    assert (await client.send("lobby", "still here")).event_id == 1


@pytest.mark.parametrize("transport", ALL)
async def test_lost_join_ack_is_retransmitted(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    srv.on("room:join", lambda conn, req: None, nth=1)  # swallowed
    client, _ = await make_client(transport, rooms=("lobby",), ack_timeout=0.2)
    assert srv.count("room:join") == 2
    assert (await client.send("lobby", "joined at last")).event_id == 1


@pytest.mark.parametrize("transport", ALL)
async def test_events_before_the_join_ack_are_held_then_delivered_in_order(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport)

    async def early(conn: HostileConnection, req: Request) -> None:
        conn.rooms.add("lobby")
        for n in (1, 2):
            await conn.emit("chat:message", srv.contract.append("lobby", f"early {n}"))
        await conn.ack(req, roomId="lobby", members=[], epoch="e1", lastEventId=0)

    srv.on("room:join", early, nth=1)
    await asyncio.wait_for(client.join("lobby"), 3)
    await wait_until(lambda: seen.ids() == [1, 2], timeout=3)


@pytest.mark.parametrize("transport", RAW)
async def test_tls_to_a_plain_server_is_fatal_and_says_tls(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, _ = await make_client(transport, connect=False)
    tls = type(client)(
        srv.url.replace("ws://", "wss://"), transport=transport, backoff=client.backoff
    )
    try:
        with pytest.raises(RtClientError, match=r"(?i)tls|ssl"):
            async with asyncio.timeout(1):
                await tls.connect()
    finally:
        await tls.close(flush=False)
    assert all(h.method == "TLS" for h in srv.handshakes)
    assert len(srv.handshakes) <= 2
