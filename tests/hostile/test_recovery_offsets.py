"""Socket.IO connection state recovery against a server that delivers an offset twice.

In generic mode each event of a recovering session carries an offset. An event whose
offset was already seen in the session (a broadcast delivered live and again in the
replay of a recovery on another node, or a server replaying from too far back) is
dropped, counted as a duplicate, and does not move the resume position back.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rtclient import Event
from rtclient.testing import HostileConnection, HostileServer, wait_until

from .conftest import MakeClient


async def send_events(conn: HostileConnection, *events: tuple[int, str]) -> None:
    for n, offset in events:
        await conn.send_text("42" + json.dumps(["tick", {"n": n}, offset]))


async def test_an_offset_seen_before_reaches_the_app_once(
    srv: HostileServer, make_client: MakeClient
) -> None:
    connections: list[HostileConnection] = []
    dropped = asyncio.Event()

    async def first(conn: HostileConnection) -> None:
        await conn.open(pid="p1")
        # A repeat inside one connection: o2 again after o3.
        await send_events(conn, (1, "o1"), (2, "o2"), (3, "o3"), (2, "o2"), (4, "o4"))
        await dropped.wait()
        conn.drop()

    async def second(conn: HostileConnection) -> None:
        # The recovery replays from too far back (o3, o4 were delivered) and o5, then
        # o5 arrives live as well (the broadcast raced the replay).
        replay: list[list[Any]] = [["tick", {"n": n}, f"o{n}"] for n in (3, 4, 5)]
        await conn.open(pid="p1", replay=replay)
        await send_events(conn, (5, "o5"), (6, "o6"))

    async def script(conn: HostileConnection) -> None:
        connections.append(conn)
        await (first if len(connections) == 1 else second)(conn)

    srv.script(script)
    client, seen = await make_client("socketio", connect=False, protocol="generic")
    ticks: list[Event] = []
    client.on("tick", ticks.append)
    async with asyncio.timeout(5):
        await client.connect()
    await wait_until(lambda: len(ticks) >= 4, timeout=5)
    assert client.stats()["duplicates_dropped"] == 1
    dropped.set()
    await wait_until(lambda: client.stats()["duplicates_dropped"] == 4, timeout=5)
    await wait_until(lambda: len(ticks) >= 6, timeout=5)

    assert [t.data["n"] for t in ticks] == [1, 2, 3, 4, 5, 6]
    auth = connections[1].auth
    assert isinstance(auth, dict) and (auth["pid"], auth["offset"]) == ("p1", "o4")
    assert client.recovered is True and seen.gaps == []
    assert client._session.resume.offset == "o6"


async def test_a_new_session_forgets_the_offsets_of_the_old_one(
    srv: HostileServer, make_client: MakeClient
) -> None:
    """Offsets are per session: a server that starts a new one may reuse them."""
    connections: list[HostileConnection] = []
    dropped = asyncio.Event()

    async def script(conn: HostileConnection) -> None:
        connections.append(conn)
        if len(connections) == 1:
            await conn.open(pid="p1")
            await send_events(conn, (1, "o1"), (2, "o2"))
            await dropped.wait()
            conn.drop()
        else:
            await conn.open(pid="p2")  # not the session asked for: a new one
            await send_events(conn, (3, "o1"))

    srv.script(script)
    client, seen = await make_client("socketio", connect=False, protocol="generic")
    ticks: list[Event] = []
    client.on("tick", ticks.append)
    async with asyncio.timeout(5):
        await client.connect()
    await wait_until(lambda: len(ticks) == 2, timeout=5)
    dropped.set()
    await wait_until(lambda: len(ticks) == 3, timeout=5)
    assert [t.data["n"] for t in ticks] == [1, 2, 3]
    assert client.stats()["duplicates_dropped"] == 0
    assert [g.reason for g in seen.gaps] == ["session"]
