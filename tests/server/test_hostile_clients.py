"""fake_server under hostile clients: every limit, on both endpoints where it applies.

Each case ends by checking that a healthy client (connected after the attack, or
beside it) is still served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import websockets
from aiohttp import web
from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode

from fake_server import FakeServer
from fake_server.envelope import event
from fake_server.peer import QueuedPeer
from rtclient.testing import wait_until

from .conftest import Connect, MakeServer
from .helpers import WAIT, WsClient, bearer, open_ws
from .sio_helpers import OpenSio, SioUser, sio_users

Client = WsClient | SioUser
Open = Callable[[FakeServer, str], Awaitable[Client]]


@pytest.fixture(params=["ws", "sio"])
async def open_client(request: pytest.FixtureRequest, connect: Connect) -> AsyncIterator[Open]:
    """Open a client of one endpoint or the other (the test runs for both)."""
    if request.param == "ws":

        async def open_ws_client(server: FakeServer, user: str) -> Client:
            return await connect(server, user)

        yield open_ws_client
    else:
        async with sio_users() as open_user:

            async def open_sio_client(server: FakeServer, user: str) -> Client:
                return await open_user(server, user)

            yield open_sio_client


@pytest.fixture
async def sio() -> AsyncIterator[OpenSio]:
    async with sio_users() as open_user:
        yield open_user


async def healthy(server: FakeServer, open_client: Open) -> None:
    """A new client of the same endpoint is served: welcome, join, a message, a ping."""
    client = await open_client(server, "healthy")
    await client.join("healthy-room")
    await say(client, "healthy-room", "still here")
    assert (await client.ok("ping", {"ts": 7}))["ts"] == 7


async def say(client: Client, room: str, text: str) -> dict[str, Any]:
    return await client.say(room, text)


async def answer(client: Client, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The ack payload of one request, success or not."""
    if isinstance(client, WsClient):
        return await client.request(kind, payload)
    ack = await client.call(kind, payload)
    assert isinstance(ack, dict)
    return ack


def code(ack: dict[str, Any]) -> str:
    return "ok" if ack["success"] else str(ack["error"]["code"])


# -- 1. strict JSON ------------------------------------------------------------------------

NOT_JSON_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999999", str(2**53), str(-(2**70))]


@pytest.mark.parametrize("number", NOT_JSON_NUMBERS)
async def test_non_json_numbers_are_bad_requests_on_ws(
    server: FakeServer, connect: Connect, number: str
) -> None:
    alice = await connect(server, "alice")
    await alice.send(f'{{"type":"ping","id":"p1","payload":{{"ts":{number}}}}}')
    ack = await alice.expect_ack("p1")
    assert ack["success"] is False and ack["error"]["code"] == "BAD_REQUEST"
    # Deep inside the payload too.
    await alice.send(f'{{"type":"ping","id":"p2","payload":{{"x":[{{"y":{number}}}]}}}}')
    assert (await alice.expect_ack("p2"))["error"]["code"] == "BAD_REQUEST"
    await alice.silent("pong")
    assert server.counters["bad_requests"] == 2
    assert (await alice.ok("ping", {"ts": 1.5}))["ts"] == 1.5


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf, 2**53])
async def test_non_json_numbers_are_bad_requests_on_socketio(
    server: FakeServer, sio: OpenSio, number: float
) -> None:
    alice = await sio(server, "alice")
    # python-socketio's client writes NaN and Infinity as Python's json does.
    assert await alice.fails("ping", {"ts": number}) == "BAD_REQUEST"
    assert await alice.fails("ping", {"x": [{"y": number}]}) == "BAD_REQUEST"
    await alice.silent("pong")
    assert (await alice.ok("ping", {"ts": 2}))["ts"] == 2


async def test_a_non_finite_number_is_never_written(
    server: FakeServer, connect: Connect, sio: OpenSio
) -> None:
    alice = await connect(server, "alice")
    bob = await sio(server, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    with pytest.raises(ValueError, match="JSON"):
        server.hub.broadcast("lobby", event("custom", {"v": math.nan}))
    await alice.silent("custom")
    await bob.silent("custom")
    assert (await alice.ok("ping", {"ts": 1}))["ts"] == 1
    assert (await bob.ok("ping", {"ts": 1}))["ts"] == 1


# -- 2. a client that does not read ---------------------------------------------------------

SMALL_QUEUE = {"max_queued_frames": 64, "max_queued_bytes": 64 * 1024}


async def test_unread_pings_close_the_ws_client_1013(make_server: MakeServer) -> None:
    server = await make_server(**SMALL_QUEUE)
    token = server.issue_token("mallory")
    # max_queue=1: the client stops reading from TCP once one frame waits unread.
    ws = await websockets.connect(
        server.ws_url,
        additional_headers=bearer(token),
        ping_interval=None,
        max_queue=1,
        compression=None,
    )
    frame = json.dumps({"type": "ping", "id": "p", "payload": {"ts": "x" * 50_000}})
    await flood_unread(server, ws, frame, 2_000)
    with pytest.raises(websockets.ConnectionClosed) as info:
        async with asyncio.timeout(WAIT):
            while True:  # what the kernel buffered, then the close frame
                await ws.recv()
    assert server.counters["slow_consumers"] == 1
    rcvd = info.value.rcvd
    assert rcvd is None or (rcvd.code, rcvd.reason) == (1013, "slow consumer")
    await wait_until(lambda: server.connection_count() == 0)
    async with aiohttp.ClientSession() as http, http.get(f"{server.http_url}/health") as r:
        assert (await r.json())["counters"]["slow_consumers"] == 1
    await healthy(server, _ws_opener)


async def flood_unread(server: FakeServer, ws: ClientConnection, frame: str, n: int) -> None:
    """Send ``frame`` ``n`` times, read nothing, until the server gives up on us.

    Loopback sockets buffer tens of megabytes (``tcp_rmem`` autotuning): the replies
    to ``n`` frames must be well beyond that before the server's queue fills.
    """
    with contextlib.suppress(websockets.ConnectionClosed):  # closed while we send
        for _ in range(n):
            await ws.send(frame)
    await wait_until(lambda: server.counters["slow_consumers"] > 0, timeout=WAIT * 5)


async def _ws_opener(server: FakeServer, user: str) -> Client:
    client = await open_ws(server.ws_url, bearer(server.issue_token(user)))
    client.welcome = await client.expect("connected")
    return client


async def test_a_reading_client_is_never_cut(make_server: MakeServer, connect: Connect) -> None:
    server = await make_server(**SMALL_QUEUE)
    alice = await connect(server, "alice")
    for i in range(300):  # far more than 64 frames, but read as they come
        assert (await alice.ok("ping", {"ts": i}))["ts"] == i
    assert server.counters["slow_consumers"] == 0


async def test_unread_syncs_close_the_ws_client(make_server: MakeServer, connect: Connect) -> None:
    server = await make_server(max_queued_bytes=256 * 1024, max_syncs_in_flight=10_000)
    seeder = await connect(server, "seeder")
    await seeder.join("big")
    for i in range(40):
        await seeder.say("big", f"{i:04d}" + "y" * 2000)
    ws = await websockets.connect(
        server.ws_url,
        additional_headers=bearer(server.issue_token("mallory")),
        ping_interval=None,
        max_queue=1,
        compression=None,
    )
    frame = json.dumps({"type": "sync:messages", "id": "s", "payload": {"roomId": "big"}})
    await flood_unread(server, ws, frame, 2_000)
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(WAIT):
            while True:
                await ws.recv()
    assert server.counters["slow_consumers"] == 1
    await healthy(server, _ws_opener)


async def test_unread_events_close_the_socketio_client(make_server: MakeServer) -> None:
    server = await make_server(**SMALL_QUEUE)
    url = server.sio_url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    ws = await websockets.connect(
        url, open_timeout=WAIT, ping_interval=None, max_queue=1, compression=None
    )
    assert str(await ws.recv()).startswith("0")  # OPEN
    await ws.send("40" + json.dumps({"token": server.issue_token("mallory")}))
    assert str(await ws.recv()).startswith("40")  # CONNECT
    packet = "42" + json.dumps(["ping", {"ts": "x" * 50_000}])
    await flood_unread(server, ws, packet, 2_000)
    assert server.counters["slow_consumers"] == 1
    # The server forgot the connection (its backlog is gone) while the client still
    # has tens of megabytes of replies unread in its socket buffers.
    await wait_until(lambda: server.connection_count() == 0 and len(server.hub.rooms) == 0)
    ws.transport.abort()
    async with sio_users() as open_user:
        await healthy(server, open_user)


# -- 3. receipts and typing are rate limited -------------------------------------------------


@pytest.mark.parametrize("kind", ["message:read", "typing:start"])
async def test_receipts_and_typing_are_rate_limited(
    make_server: MakeServer, open_client: Open, kind: str
) -> None:
    # No token comes back within the test, however slow the run (at 1 a second the
    # 20 round trips had to fit in 2 s).
    server = await make_server(ephemeral_per_second=0.001, ephemeral_burst=5)
    mallory = await open_client(server, "mallory")
    bob = await open_client(server, "bob")
    await mallory.join("lobby")
    await bob.join("lobby")
    await say(mallory, "lobby", "hello")
    codes = [
        code(await answer(mallory, kind, {"roomId": "lobby", "eventId": 1})) for _ in range(20)
    ]
    assert codes == ["ok"] * 5 + ["RATE_LIMIT"] * 15
    assert server.counters["rate_limited"] == 15
    await healthy(server, open_client)


# -- 4. half-sent requests, connections per address ------------------------------------------


async def test_a_half_sent_request_is_cut_after_the_header_timeout(
    make_server: MakeServer,
) -> None:
    server = await make_server(header_timeout=0.3)
    conns = []
    for path in ("/ws", "/socket.io/?EIO=4&transport=polling"):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: web".encode())
        conns.append((reader, writer))
    idle = await asyncio.open_connection(server.host, server.port)  # sends nothing
    conns.append(idle)
    for reader, writer in conns:
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""  # closed by the server
        writer.close()
    await healthy(server, _ws_opener)
    async with sio_users() as open_user:
        await healthy(server, open_user)


async def test_a_long_poll_outlives_the_header_timeout(make_server: MakeServer) -> None:
    """``header_timeout`` (aiohttp's keep-alive timeout) runs only between requests: a
    long poll held longer than it on a kept-alive connection is answered, not cut."""
    server = await make_server(header_timeout=0.2, ping_interval=0.6, ping_timeout=1.0)
    reader, writer = await asyncio.open_connection(server.host, server.port)

    async def get(path: str) -> bytes:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return await reader.readexactly(length)

    async with asyncio.timeout(WAIT):
        sid = json.loads((await get("/socket.io/?EIO=4&transport=polling"))[1:])["sid"]
        # Held until engine.io's PING, ping_interval (3 header timeouts) later.
        assert await get(f"/socket.io/?EIO=4&transport=polling&sid={sid}") == b"2"
    writer.close()


async def test_a_half_sent_long_polling_body_is_cut(make_server: MakeServer) -> None:
    """A Socket.IO POST whose body never fully arrives is cut like a half-sent head."""
    server = await make_server(header_timeout=0.3)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(WAIT):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        sid = json.loads((await reader.readexactly(length))[1:])["sid"]
    writer.write(
        f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: text/plain\r\nContent-Length: 50\r\n\r\n40".encode()
    )
    async with asyncio.timeout(WAIT):
        rest = await reader.read()  # closed by the server, without an answer
    assert not rest.startswith(b"HTTP/1.1 200")
    writer.close()
    async with sio_users() as open_user:
        await healthy(server, open_user)


async def test_a_socketio_session_that_never_connects_is_cut(make_server: MakeServer) -> None:
    """An engine.io session that answers PINGs but never sends the Socket.IO CONNECT
    (its auth) is closed after ``auth_timeout``, like a silent ``/ws``."""
    server = await make_server(auth_timeout=0.3, ping_interval=0.1, ping_timeout=0.5)
    url = server.http_url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(url, compression=None) as ws:
        assert str(await ws.recv()).startswith("0")  # engine.io OPEN
        async with asyncio.timeout(WAIT):
            with contextlib.suppress(websockets.ConnectionClosed):
                async for message in ws:
                    if message == "2":
                        await ws.send("3")  # alive, but never "40"
    assert server.counters["auth_failures"] == 1
    async with sio_users() as open_user:
        await healthy(server, open_user)


async def test_connections_per_address_are_capped(make_server: MakeServer) -> None:
    server = await make_server(max_connections_per_address=4)
    idle = [await asyncio.open_connection(server.host, server.port) for _ in range(4)]
    for path in ("/ws", "/socket.io/?EIO=4&transport=polling"):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        async with asyncio.timeout(WAIT):
            answer = await reader.read()
        assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in answer
        writer.close()
    assert server.counters["connections_refused"] == 2
    # Another loopback address is not affected.
    token = server.issue_token("healthy")
    other = await open_ws(server.ws_url, bearer(token), local_addr=("127.0.0.2", 0))
    await other.expect("connected")
    await other.ws.close()
    # Once the idle connections go, the address is served again.
    for _, writer in idle:
        writer.close()
    await wait_until(lambda: len(server._runner.server.connections) == 0)  # type: ignore[union-attr]
    await healthy(server, _ws_opener)
    async with sio_users() as open_user:
        await healthy(server, open_user)


# -- 5. unused rooms cost nothing ---------------------------------------------------------------


async def test_reading_rooms_never_creates_logs(server: FakeServer, open_client: Open) -> None:
    mallory = await open_client(server, "mallory")
    for i in range(100):
        room = f"never-used-{i}"
        await mallory.join(room)
        await mallory.ok("sync:messages", {"roomId": room})
        await mallory.ok("room:leave", {"roomId": room})
    assert len(server.hub.store) == 0
    assert server.health()["logs"] == 0
    assert [r for r in server.hub.rooms if not r.startswith("user:")] == []
    await healthy(server, open_client)
    assert len(server.hub.store) == 1  # the healthy client wrote to its room


# -- 6. fairness ------------------------------------------------------------------------------


async def test_a_flood_does_not_hold_back_another_connection(
    make_server: MakeServer, connect: Connect
) -> None:
    """The healthy client's ping is answered while the flood is still being read.

    The flood goes out in one write of frames we encode ourselves, so the server has it
    all at once (not as the client library flushes it); the ping is sent once the server
    has answered the flood's first frame, so the flood is being read when the ping comes.
    Every frame read takes one turn of the event loop at least, so the few turns the ping
    needs cannot see the flood's thousands of frames through, however slow the machine.
    """
    # One message in the bucket and none more within the test, however long the flood
    # takes to read (at 1 a second a slow run let a second message through).
    server = await make_server(rate_per_second=0.001, rate_burst=1)
    mallory = await connect(server, "mallory")
    alice = await connect(server, "alice")
    await mallory.join("lobby")
    flood = 2_000
    frames = (
        json.dumps(
            {"type": "chat:send", "id": f"f{i}", "payload": {"roomId": "lobby", "text": "x"}}
        )
        for i in range(flood)
    )
    mallory.ws.transport.write(
        b"".join(Frame(Opcode.TEXT, f.encode()).serialize(mask=True, extensions=[]) for f in frames)
    )
    await mallory.expect_ack("f0", timeout=WAIT * 5)  # the flood is being read
    await alice.ok("ping", {"ts": 1})
    assert server.counters["rate_limited"] < flood - 1
    await wait_until(lambda: server.counters["rate_limited"] == flood - 1, timeout=WAIT * 5)
    await healthy(server, _ws_opener)


# -- limits on what fans out or allocates ----------------------------------------------------


async def test_rooms_per_connection(make_server: MakeServer, open_client: Open) -> None:
    server = await make_server(max_rooms_per_connection=3)
    mallory = await open_client(server, "mallory")
    for i in range(3):
        await mallory.join(f"r{i}")
    assert await mallory.fails("room:join", {"roomId": "r3"}) == "FORBIDDEN"
    await mallory.join("r0")  # rejoining a room it is in is fine
    await mallory.ok("room:leave", {"roomId": "r0"})
    await mallory.join("r3")
    assert server.counters["limited"] == 1
    await healthy(server, open_client)


async def test_rooms_per_user_across_connections(
    make_server: MakeServer, open_client: Open
) -> None:
    server = await make_server(max_rooms_per_user=3)
    first = await open_client(server, "mallory")
    second = await open_client(server, "mallory")
    await first.join("r0")
    await first.join("r1")
    await second.join("r0")
    assert await second.fails("room:join", {"roomId": "r2"}) == "FORBIDDEN"
    assert await first.fails("room:join", {"roomId": "r2"}) == "FORBIDDEN"
    await first.ok("room:leave", {"roomId": "r1"})
    await second.join("r2")
    assert server.counters["limited"] == 2
    await healthy(server, open_client)


async def test_members_queries_and_syncs_are_rate_limited(
    make_server: MakeServer, open_client: Open
) -> None:
    server = await make_server(query_per_second=0.001, query_burst=6)  # no refill in the test
    mallory = await open_client(server, "mallory")
    await mallory.join("lobby")  # the join takes one of the 6
    kinds = ["room:members", "sync:messages"] * 5
    codes = [code(await answer(mallory, kind, {"roomId": "lobby"})) for kind in kinds]
    assert codes == ["ok"] * 5 + ["RATE_LIMIT"] * 5
    await healthy(server, open_client)


async def test_each_limit_has_its_own_bucket(make_server: MakeServer, open_client: Open) -> None:
    """Joins and syncs take from the query bucket, never from the messages' one."""
    server = await make_server(rate_per_second=0.01, rate_burst=1)
    alice = await open_client(server, "alice")
    await alice.join("lobby")
    await alice.ok("sync:messages", {"roomId": "lobby"})
    await say(alice, "lobby", "the one message the bucket holds")
    assert server.counters["rate_limited"] == 0


async def test_syncs_in_flight_per_connection(make_server: MakeServer, open_client: Open) -> None:
    server = await make_server(max_syncs_in_flight=2)
    mallory = await open_client(server, "mallory")
    await mallory.join("lobby")
    # Held replies stay in flight: three syncs at once, the third is refused.
    await server.set_latency(300)
    sync = {"roomId": "lobby"}
    if isinstance(mallory, WsClient):
        for i in range(3):
            await mallory.send({"type": "sync:messages", "id": f"s{i}", "payload": sync})
        replies = [await mallory.expect_ack(f"s{i}") for i in range(3)]
    else:
        calls = (mallory.call("sync:messages", sync) for _ in range(3))
        replies = list(await asyncio.gather(*calls))
    await server.set_latency(0)
    codes = sorted(code(r) for r in replies)
    assert codes == ["RATE_LIMIT", "ok", "ok"]
    assert server.counters["limited"] == 1
    await mallory.ok("sync:messages", {"roomId": "lobby"})  # none in flight now
    await healthy(server, open_client)


async def test_a_multi_room_sync_is_one_page_in_all(make_server: MakeServer, sio: OpenSio) -> None:
    """Socket.IO's multi-room ``sync:messages`` is one reply: its rooms share one page
    (``sync_page_max`` events), else one request could queue 100 full pages at once."""
    server = await make_server(sync_page_max=10, sync_page_default=10)
    alice = await sio(server, "alice")
    rooms = [f"r{n}" for n in range(4)]
    for room in rooms:
        await alice.join(room)
        for n in range(10):
            await alice.say(room, f"{room}-{n}")
    reply = await alice.ok("sync:messages", {"rooms": rooms, "lastEventId": 0, "limit": 10})
    pages = reply["rooms"]
    assert sum(len(pages[room]["events"]) for room in rooms) <= 10
    assert all(pages[room]["success"] and pages[room]["more"] for room in rooms)
    # Paging on from each room's last event gets the rest.
    after = {room: pages[room]["events"][-1]["eventId"] for room in rooms}
    reply = await alice.ok("sync:messages", {"rooms": rooms, "lastEventId": after})
    assert all(reply["rooms"][room]["events"][0]["eventId"] == after[room] + 1 for room in rooms)
    await healthy(server, sio)


async def test_distinct_unknown_requests_leave_no_state(
    server: FakeServer, open_client: Open
) -> None:
    mallory = await open_client(server, "mallory")
    for i in range(200):
        assert code(await answer(mallory, f"made-up:{i}", {})) == "UNKNOWN_TYPE"
    (conn,) = [c for c in server.hub.connections.values() if c.user_id == "mallory"]
    peer = conn.peer
    assert isinstance(peer, QueuedPeer)
    await wait_until(lambda: peer.queued == (0, 0))
    assert len(peer._tags) == 0
    await healthy(server, open_client)


async def test_a_client_that_resets_during_the_upgrade_is_counted_not_a_traceback(
    make_server: MakeServer,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A real reset inside prepare(): the first handshake is held after aiohttp checked
    # the upgrade and before it writes the 101 (where a slow server or a busy loop
    # yields), the client resets (SO_LINGER 0) and, once aiohttp has seen the loss, the
    # 101 goes to a dead transport (aiohttp raises ClientConnectionResetError there).
    server = await make_server()
    held = asyncio.Event()
    release = asyncio.Event()
    prepare_headers = web.WebSocketResponse._prepare_headers

    async def holding(self: web.WebSocketResponse) -> None:
        if not held.is_set():
            held.set()
            await release.wait()
        await prepare_headers(self)

    monkeypatch.setattr(web.WebSocketResponse, "_prepare_headers", holding)
    host, port = server.ws_url.removeprefix("ws://").split("/")[0].split(":")
    raw = socket.create_connection((host, int(port)))  # loopback: the kernel accepts
    raw.sendall(
        f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await asyncio.wait_for(held.wait(), WAIT)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()  # a reset
    # aiohttp keeps a connection listed until its handler ends: wait for the loss.
    assert server._runner is not None and server._runner.server is not None
    web_server = server._runner.server
    (handler,) = web_server.connections
    await wait_until(lambda: handler.transport is None, timeout=WAIT)
    release.set()
    await wait_until(lambda: server.counters["handshakes_abandoned"] == 1, timeout=WAIT)
    await wait_until(lambda: not web_server.connections, timeout=WAIT)  # the handler ended
    alice = await connect(server, "alice")  # still served
    assert alice.welcome is not None
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
