"""Floods: pings, errors, duplicates, a firehose, events for rooms nobody joined.

README: bad or excessive input is counted and survived, never grows memory without
bound; duplicates are dropped by event id; backpressure holds a slow application's
backlog at ``max_pending_events`` and nothing is lost.
"""

from __future__ import annotations

import gc
import json
import tracemalloc

import pytest

from rtclient import ConnectionState
from rtclient.testing import HostileServer, wait_until

from .conftest import ALL, RAW, MakeClient

N = 5_000


@pytest.mark.parametrize("transport", ALL)
async def test_ping_flood_is_answered_and_survived(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    conn = srv.connections[-1]
    ping = "2" if conn.kind == "socketio" else b""
    if conn.kind == "socketio":
        await conn.flood(ping for _ in range(N))
    else:
        from websockets.frames import Frame, Opcode

        await conn.send_raw(Frame(Opcode.PING, b"p").serialize(mask=False) * N)
    await conn.emit("chat:message", srv.contract.append("lobby", "after the pings"))
    await wait_until(lambda: seen.ids() == [1], timeout=5)
    assert client.state is ConnectionState.CONNECTED
    assert len(srv.handshakes) == 1


@pytest.mark.parametrize("transport", ALL)
async def test_duplicate_event_flood_is_delivered_once(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    conn = srv.connections[-1]
    frame = conn.envelope("chat:message", srv.contract.append("lobby", "once"))
    await conn.flood(frame for _ in range(N))
    await conn.emit("chat:message", srv.contract.append("lobby", "twice"))
    await wait_until(lambda: seen.ids() == [1, 2], timeout=5)
    assert client.stats()["duplicates_dropped"] == N - 1


@pytest.mark.parametrize("transport", ALL)
async def test_error_event_flood_is_counted_and_survived(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    conn = srv.connections[-1]
    frame = conn.envelope("error", {"code": "SPAM", "message": "x" * 100})
    await conn.flood(frame for _ in range(N))
    await conn.emit("chat:message", srv.contract.append("lobby", "after the errors"))
    await wait_until(lambda: seen.ids() == [1], timeout=5)
    assert client.stats()["server_errors"] == N
    assert client.state is ConnectionState.CONNECTED


@pytest.mark.parametrize("transport", ALL)
async def test_firehose_reaches_a_slow_app_whole_and_in_order(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",), max_pending_events=100)
    conn = srv.connections[-1]
    events = [srv.contract.append("lobby", f"m{i}") for i in range(N)]
    await conn.flood(conn.envelope("chat:message", e) for e in events)
    await wait_until(lambda: len(seen.ids()) == N, timeout=10)
    assert seen.ids() == list(range(1, N + 1))
    if transport in RAW:
        assert client.stats()["read_pauses"] > 0  # the backlog bound held


@pytest.mark.parametrize("transport", RAW)
async def test_events_for_10000_rooms_never_joined_do_not_grow_memory(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    rooms = 10_000
    client, seen = await make_client(transport, rooms=("lobby",))
    conn = srv.connections[-1]
    frames = [
        json.dumps({"type": "chat:message", "payload": {"roomId": f"r{i}", "eventId": 1}})
        for i in range(rooms)
    ]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await conn.flood(frames)
        await conn.emit("chat:message", srv.contract.append("lobby", "last"))
        await wait_until(lambda: seen.ids() == [1], timeout=20)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert client.state is ConnectionState.CONNECTED
    assert grown < 1_000_000, f"{grown / rooms:.0f} bytes kept per foreign room"
