"""A Socket.IO recovery that replays many events before its CONNECT answer.

socket.io v4 queues a recovered session's missed packets in the Socket constructor,
before ``_onconnect`` sends the CONNECT packet: the client reads them all before the
connection opens. Nothing takes them from the inbox until ``connect()`` returns, so
they are held (up to ``max_replay``), not paced by the inbox's ``max_queue``: a replay
longer than the inbox used to deadlock the attempt until its timeout, every time.

The connect timeout is long and the test's short: a deadlock fails the test instead of
being waited out. A replay past ``max_replay`` fails the attempt with ReplayTooLong; a
failed attempt never moves the resume position past the events it threw away.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from rtclient import Event
from rtclient.errors import ReplayTooLong
from rtclient.testing import HostileConnection, HostileServer, wait_until

from .conftest import MakeClient

REPLAYED = 1000  # far more than max_queue (64)
SLOW = 60.0  # the connect timeout: a deadlocked attempt outlives the test


def ticks(first: int, last: int) -> list[list[Any]]:
    return [["tick", {"n": n}, f"o{n}"] for n in range(first, last + 1)]


async def send(conn: HostileConnection, events: list[list[Any]]) -> None:
    for args in events:
        await conn.send_text("42" + json.dumps(args))


@pytest.mark.parametrize("protocol", ["generic", "rooms"])
async def test_a_replay_longer_than_the_inbox_is_delivered_once_in_order(
    srv: HostileServer, make_client: MakeClient, protocol: str
) -> None:
    connections: list[HostileConnection] = []
    dropped = asyncio.Event()
    rooms = protocol == "rooms"

    async def script(conn: HostileConnection) -> None:
        connections.append(conn)
        if len(connections) == 1:
            await conn.open(pid="p1")
            if rooms:
                await conn.welcome()
            await send(conn, ticks(1, 1))
            await dropped.wait()
            conn.drop()
        else:
            await conn.open(pid="p1", replay=ticks(2, REPLAYED + 1))
            if rooms:
                await conn.welcome()
            await send(conn, ticks(REPLAYED + 2, REPLAYED + 2))  # live, after the replay
            await conn.serve()

    srv.script(script)
    options: dict[str, Any] = {"protocol": "generic"} if not rooms else {}
    client, seen = await make_client("socketio", connect=False, connect_timeout=SLOW, **options)
    got: list[Event] = []
    client.on("tick", got.append)
    async with asyncio.timeout(5):
        await client.connect()
    await wait_until(lambda: len(got) == 1, timeout=5)
    dropped.set()
    await wait_until(lambda: len(got) >= REPLAYED + 2, timeout=10)

    assert [t.data["n"] for t in got] == list(range(1, REPLAYED + 3))
    assert len(connections) == 2  # the recovery opened at its first attempt
    auth = connections[1].auth
    assert isinstance(auth, dict) and (auth["pid"], auth["offset"]) == ("p1", "o1")
    assert client._transport.recovered is True  # type: ignore[attr-defined]
    assert seen.gaps == [] and client.stats()["duplicates_dropped"] == 0
    assert client._session.resume.offset == f"o{REPLAYED + 2}"


async def test_a_drop_before_the_connect_answer_does_not_move_the_resume_position(
    srv: HostileServer, make_client: MakeClient
) -> None:
    """Events replayed by an attempt that never opened were thrown away with it: the
    next attempt resumes from before them, and they are delivered (not taken for
    duplicates)."""
    connections: list[HostileConnection] = []
    dropped = asyncio.Event()

    async def script(conn: HostileConnection) -> None:
        connections.append(conn)
        if len(connections) == 1:
            await conn.open(pid="p1")
            await send(conn, ticks(1, 1))
            await dropped.wait()
            conn.drop()
        elif len(connections) == 2:
            await conn.await_connect()
            await send(conn, ticks(2, 3))  # the replay, then the node dies
            conn.drop()
        else:
            await conn.open(pid="p1", replay=ticks(2, 3))
            await send(conn, ticks(4, 4))

    srv.script(script)
    client, seen = await make_client(
        "socketio", connect=False, protocol="generic", connect_timeout=SLOW
    )
    got: list[Event] = []
    client.on("tick", got.append)
    async with asyncio.timeout(5):
        await client.connect()
    await wait_until(lambda: len(got) == 1, timeout=5)
    dropped.set()
    await wait_until(lambda: len(got) >= 4, timeout=5)

    assert [t.data["n"] for t in got] == [1, 2, 3, 4]
    offsets = [c.auth["offset"] for c in connections[1:] if isinstance(c.auth, dict)]
    assert offsets == ["o1", "o1"]
    assert client.stats()["duplicates_dropped"] == 0
    assert client.recovered is True and seen.gaps == []


async def test_a_replay_past_max_replay_fails_the_attempt_and_gives_the_session_up(
    srv: HostileServer, make_client: MakeClient
) -> None:
    connections: list[HostileConnection] = []
    dropped = asyncio.Event()

    async def script(conn: HostileConnection) -> None:
        connections.append(conn)
        if len(connections) == 1:
            await conn.open(pid="p1")
            await send(conn, ticks(1, 1))
            await dropped.wait()
            conn.drop()
        elif len(connections) == 2:
            await conn.open(pid="p1", replay=ticks(2, 200))  # more than max_replay
            await conn.serve()
        else:
            await conn.open(pid="p2")  # no pid asked for: a new session
            await send(conn, [["tick", {"n": 300}, "n1"]])
            await conn.serve()

    srv.script(script)
    client, seen = await make_client(
        "socketio", connect=False, protocol="generic", connect_timeout=SLOW
    )
    client._transport.max_replay = 50  # type: ignore[attr-defined]
    errors: list[BaseException] = []
    client.on("state", lambda s: errors.append(s.error) if s.error is not None else None)
    got: list[Event] = []
    client.on("tick", got.append)
    async with asyncio.timeout(5):
        await client.connect()
    await wait_until(lambda: len(got) == 1, timeout=5)
    dropped.set()
    await wait_until(lambda: len(got) >= 2, timeout=5)

    assert [t.data["n"] for t in got] == [1, 300]  # none of the replay was handed on
    assert any(isinstance(e, ReplayTooLong) for e in errors), errors
    auth = connections[1].auth
    assert isinstance(auth, dict) and (auth["pid"], auth["offset"]) == ("p1", "o1")
    third = connections[2].auth
    assert isinstance(third, dict) and "pid" not in third  # the session was given up
    assert client.recovered is False
    assert [g.reason for g in seen.gaps] == ["session"]
    assert client._session.resume.offset == "n1"


async def test_the_session_gap_of_a_given_up_session_comes_before_the_new_sessions_events(
    srv: HostileServer, make_client: MakeClient
) -> None:
    """Generic mode: the new session's first events arrive right after its CONNECT,
    before connect() returns; the ``session`` gap (the replay thrown away) must reach
    the application before them, not after."""
    connections: list[HostileConnection] = []
    dropped = asyncio.Event()

    async def script(conn: HostileConnection) -> None:
        connections.append(conn)
        if len(connections) == 1:
            await conn.open(pid="p1")
            await send(conn, ticks(1, 1))
            await dropped.wait()
            conn.drop()
        elif len(connections) == 2:
            await conn.open(pid="p1", replay=ticks(2, 200))  # more than max_replay
            await conn.serve()
        else:
            await conn.open(pid="p2")
            await send(conn, [["tick", {"n": n}, f"n{n}"] for n in (300, 301)])
            await conn.serve()

    srv.script(script)
    client, _seen = await make_client(
        "socketio", connect=False, protocol="generic", connect_timeout=SLOW
    )
    client._transport.max_replay = 50  # type: ignore[attr-defined]
    order: list[object] = []
    client.on("tick", lambda e: order.append(e.data["n"]))
    client.on("gap", lambda g: order.append(g.reason))
    async with asyncio.timeout(5):
        await client.connect()
    await wait_until(lambda: len(order) == 1, timeout=5)
    dropped.set()
    await wait_until(lambda: len(order) >= 4, timeout=5)

    assert order == [1, "session", 300, 301]
