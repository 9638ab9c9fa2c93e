"""Socket.IO connection state recovery across a failed attempt: what a recovering server
replays before its CONNECT answer belongs to that attempt only.

socket.io replays a recovered session's missed events before it sends the CONNECT
packet. An attempt that fails after part of a replay (the node dies, or refuses)
delivers none of it: the resume position and the offsets seen must stay where they
were, or the next attempt resumes past events the application never got (and drops
their replay as repeats). A replay longer than the connection's inbox must not stall
the reader before the CONNECT answer: nobody reads the inbox until connect returns.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.frames import Frame, Opcode

from rtclient.errors import ConnectRefused, ReplayTooLong, TransportError
from rtclient.testing import HostileConnection, HostileServer, wait_until
from rtclient.transports import SocketIOTransport

LONG = 30.0


def recovering(transport: SocketIOTransport) -> None:
    """A transport that resumes session p1 from offset o0 (o0 already delivered)."""
    transport.resume.connected("p1", recovered=False)
    assert transport.resume.received("o0")


def events(offsets: range) -> list[list[object]]:
    return [["news", {"n": n}, f"o{n}"] for n in offsets]


async def replay(conn: HostileConnection, offsets: range) -> None:
    for args in events(offsets):
        await conn.send_text("42" + json.dumps(args))


async def test_a_replay_cut_by_a_drop_is_resumed_from_where_it_was(srv: HostileServer) -> None:
    async def dies_mid_replay(conn: HostileConnection) -> None:
        await conn.await_connect()
        await replay(conn, range(1, 4))
        conn.drop()

    async def recovers(conn: HostileConnection) -> None:
        await conn.open(pid="p1", replay=events(range(1, 4)))

    srv.script(dies_mid_replay, times=1)
    srv.script(recovers)
    transport = SocketIOTransport(welcome="synthesize")
    recovering(transport)
    async with asyncio.timeout(5):
        with pytest.raises(TransportError):
            await transport.connect(srv.sio_url, token="t", open_timeout=LONG)
        assert transport.resume.pid == "p1" and transport.resume.offset == "o0"
        conn = await transport.connect(srv.sio_url, token="t", open_timeout=LONG)
        try:
            assert srv.connections[1].auth == {"token": "t", "pid": "p1", "offset": "o0"}
            got = [await conn.recv() for _ in range(4)]
        finally:
            await conn.close()
    # The replay, every event once (none taken for a repeat), then the welcome.
    assert [e["payload"] for e in got[:3]] == [{"n": 1}, {"n": 2}, {"n": 3}]  # type: ignore[index]
    assert transport.recovered and transport.resume.offset == "o3"


async def test_a_replay_then_a_refusal_leaves_the_resume_position(srv: HostileServer) -> None:
    async def refuses_mid_replay(conn: HostileConnection) -> None:
        await conn.await_connect()
        await replay(conn, range(1, 3))
        await conn.send_text("44" + json.dumps({"message": "server busy"}))

    srv.script(refuses_mid_replay)
    transport = SocketIOTransport(welcome="synthesize")
    recovering(transport)
    async with asyncio.timeout(5):
        with pytest.raises(ConnectRefused):
            await transport.connect(srv.sio_url, token="t", open_timeout=LONG)
    assert transport.resume.pid == "p1" and transport.resume.offset == "o0"
    assert transport.resume.received("o1")  # not taken for a repeat next time


async def test_a_replay_longer_than_the_inbox_does_not_stall_the_connect(
    srv: HostileServer,
) -> None:
    async def long_replay(conn: HostileConnection) -> None:
        await conn.open(pid="p1", replay=events(range(1, 21)))
        await conn.serve()

    srv.script(long_replay)
    transport = SocketIOTransport(welcome="synthesize", max_queue=4)
    recovering(transport)
    async with asyncio.timeout(5):
        conn = await transport.connect(srv.sio_url, token="t", open_timeout=LONG)
        try:
            got = [await conn.recv() for _ in range(21)]
        finally:
            await conn.close()
    assert [e["payload"] for e in got[:20]] == [{"n": n} for n in range(1, 21)]  # type: ignore[index]
    assert transport.recovered


@pytest.mark.parametrize(("max_replay", "max_queue"), [(2, 64), (10_000, 4)])
async def test_events_after_a_refusal_are_not_a_replay_too_long(
    srv: HostileServer, max_replay: int, max_queue: int
) -> None:
    """What a server sends after its CONNECT_ERROR (while connect() says goodbye) is
    not a recovery's replay: a refusal stays a refusal, and the session is not given up
    (the next attempt still asks to resume it). Nor is it paced by the inbox nobody
    reads: the reader would stop, and connect()'s disconnect wait for it until the
    open timeout."""

    async def refuses_then_floods(conn: HostileConnection) -> None:
        await conn.await_connect()
        packets = ["44" + json.dumps({"message": "server busy"})]
        packets += ["42" + json.dumps(args) for args in events(range(1, 201))]
        # In one write: the client reads the flood right after the refusal.
        await conn.send_raw(
            b"".join(Frame(Opcode.TEXT, p.encode()).serialize(mask=False) for p in packets)
        )
        await conn.serve()

    srv.script(refuses_then_floods)
    transport = SocketIOTransport(welcome="synthesize", max_replay=max_replay, max_queue=max_queue)
    recovering(transport)
    async with asyncio.timeout(5):
        with pytest.raises(ConnectRefused):
            await transport.connect(srv.sio_url, token="t", open_timeout=LONG)
    assert transport.resume.pid == "p1" and transport.resume.offset == "o0"
    assert transport.resume.given_up is None


async def test_a_close_under_a_flood_ends_the_reader(srv: HostileServer) -> None:
    """The application closes a connection whose server floods it, events unread: the
    closed inbox must not stop engine.io's reader again (each event read after the
    close filled it anew), or close() waits for the reader until its own time limit and
    leaves it waiting for room forever (a task leaked per close)."""

    async def floods(conn: HostileConnection) -> None:
        await conn.open()
        await conn.flood("42" + json.dumps(["news", {"n": n}]) for n in range(5000))
        await conn.serve()

    srv.script(floods)
    transport = SocketIOTransport(welcome="synthesize", max_queue=4)
    async with asyncio.timeout(5):
        conn = await transport.connect(srv.sio_url, token="t", open_timeout=LONG)
        await wait_until(lambda: conn._inbox.waits > 0, timeout=5)  # the reader is paused
        await conn.close()
    reader = conn._sio.eio.read_loop_task
    assert reader is not None
    await wait_until(reader.done, timeout=3)
    # It got to the end of the link: not cancelled by close()'s time limit (2 s) with
    # the goodbye, while it waited for room in an inbox nobody reads any more.
    assert not reader.cancelled()


async def test_a_replay_past_max_replay_bytes_fails_the_attempt(srv: HostileServer) -> None:
    """The size cap counts what the reader read before the answer: a few large events
    past ``max_replay_bytes`` fail the attempt (ReplayTooLong in bytes), and the session
    is given up, as past ``max_replay``."""

    async def large_replay(conn: HostileConnection) -> None:
        big = "x" * 10_000
        await conn.open(
            pid="p1", replay=[["news", {"n": n, "pad": big}, f"o{n}"] for n in range(1, 11)]
        )
        await conn.serve()

    srv.script(large_replay)
    transport = SocketIOTransport(welcome="synthesize", max_replay_bytes=50_000)
    recovering(transport)
    async with asyncio.timeout(5):
        with pytest.raises(ReplayTooLong) as caught:
            await transport.connect(srv.sio_url, token="t", open_timeout=LONG)
    assert (caught.value.limit, caught.value.unit) == (50_000, "bytes")
    assert transport.resume.pid is None and transport.resume.given_up == "p1"
