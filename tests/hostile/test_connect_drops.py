"""Socket.IO nodes that die between the Engine.IO handshake and their answer to CONNECT.

python-socketio's ``connect()`` goes on waiting for the namespace after the Engine.IO
link is gone. The attempt must end when the link does, with the TransportError of any
dropped connect, and the reconnect policy go on (backoff, the next URL): not wait out
``connect_timeout`` (30 s here, against test timeouts of 5 s). A CONNECT that arrived
just before the drop still counts: the connection opens and is reported lost.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable, Callable

import engineio
import pytest
from websockets.frames import Frame, Opcode

from rtclient import Client, ConnectionState
from rtclient.errors import ConnectionLost, ConnectRefused, TransportError
from rtclient.testing import HostileConnection, HostileServer
from rtclient.transports import SocketIOTransport
from rtclient.transports.socketio_client import PacedEngineIO

from .conftest import FAST, MakeClient

LONG = 30.0  # connect_timeout: the attempt must end long before it
Script = Callable[[HostileConnection], Awaitable[None]]


async def reset(conn: HostileConnection) -> None:
    conn.drop()  # TCP reset: engine.io's reader fails


async def close_frame(conn: HostileConnection) -> None:
    await conn.send_frame(Opcode.CLOSE, struct.pack("!H", 1001))  # a proxy going away


async def engineio_close(conn: HostileConnection) -> None:
    await conn.send_text("1")  # Engine.IO CLOSE: the server ends the session
    conn.drop()


async def engineio_close_then_silence(conn: HostileConnection) -> None:
    await conn.send_text("1")
    await conn.stall()  # nor answers the client's close frame: aiohttp would wait 5 s


LOSSES = {
    "reset": reset,
    "close frame": close_frame,
    "engine.io CLOSE": engineio_close,
    "engine.io CLOSE, then silence": engineio_close_then_silence,
}


def dies_before_connect(lose: Script) -> Script:
    async def script(conn: HostileConnection) -> None:
        await conn.await_connect()  # the CONNECT arrived; no answer, then the link goes
        await lose(conn)

    return script


def engineio_tasks() -> set[asyncio.Task[object]]:
    """engine.io's reader and writer tasks still running."""
    names = ("AsyncClient._read_loop_websocket", "AsyncClient._write_loop")
    return {
        t
        for t in asyncio.all_tasks()
        if not t.done() and getattr(t.get_coro(), "__qualname__", "") in names
    }


@pytest.mark.parametrize("how", LOSSES)
async def test_a_link_lost_before_the_connect_answer_ends_the_attempt_at_once(
    srv: HostileServer, how: str
) -> None:
    srv.script(dies_before_connect(LOSSES[how]))
    clients = list(engineio.base_client.connected_clients)
    async with asyncio.timeout(3):
        with pytest.raises(TransportError) as caught:
            await SocketIOTransport().connect(srv.sio_url, token="t", open_timeout=LONG)
    assert type(caught.value) is TransportError  # retried; not a refusal, not a timeout
    assert "lost before the server answered" in str(caught.value)
    assert srv.connections[0].auth == {"token": "t"}  # it did get as far as the CONNECT
    # Nothing left behind: engine.io's client list, its reader and writer.
    assert engineio.base_client.connected_clients == clients
    assert engineio_tasks() == set()


@pytest.mark.parametrize("protocol", ["rooms", "generic"])
async def test_the_client_retries_at_once_under_its_backoff(
    srv: HostileServer, make_client: MakeClient, protocol: str
) -> None:
    async def answer(conn: HostileConnection) -> None:
        await (conn.welcome() if protocol == "rooms" else conn.open())

    srv.script(dies_before_connect(reset), times=2)
    srv.script(answer)
    client, seen = await make_client(
        "socketio", connect=False, protocol=protocol, connect_timeout=LONG
    )
    async with asyncio.timeout(5):
        await client.connect()
    assert client.state is ConnectionState.CONNECTED
    assert client.stats()["attempts"] == 3 and len(srv.connections) == 3
    errors = [s.error for s in seen.states if s.new is ConnectionState.RECONNECTING]
    assert len(errors) == 2
    assert all(type(e) is TransportError and "lost before" in str(e) for e in errors)
    assert len(seen.delays()) == 2 and min(seen.delays()) >= FAST.base / 10  # backoff


async def test_the_next_url_is_tried_when_a_node_dies_before_its_answer() -> None:
    async with HostileServer() as dying, HostileServer() as good:
        dying.script(dies_before_connect(reset))
        client = Client(
            [dying.sio_url, good.sio_url],
            transport="socketio",
            token="t",
            url_order="given",
            backoff=FAST,
            connect_timeout=LONG,
            ping_interval=None,
        )
        try:
            async with asyncio.timeout(5):
                await client.connect()
            assert client.endpoint == good.sio_url
            assert client.stats()["failovers"] == 1
            assert len(dying.connections) == 1 and len(good.connections) == 1
        finally:
            async with asyncio.timeout(5):
                await client.close(flush=False)


ENDINGS = {
    "close frame": Frame(Opcode.CLOSE, struct.pack("!H", 1001)),
    "engine.io CLOSE": Frame(Opcode.TEXT, b"1"),
}


def answer_then(ending: Frame) -> Script:
    """The CONNECT answer and the end of the link in one TCP segment: one read of the
    client (engine.io may handle both before connect() has resumed)."""

    async def script(conn: HostileConnection) -> None:
        await conn.await_connect()
        answer = Frame(Opcode.TEXT, ("40" + json.dumps({"sid": "s1"})).encode())
        await conn.send_raw(answer.serialize(mask=False) + ending.serialize(mask=False))

    return script


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("welcome", ["server", "synthesize"])
async def test_a_connect_answer_that_arrives_with_the_drop_opens_then_is_lost(
    srv: HostileServer, welcome: str, ending: str
) -> None:
    srv.script(answer_then(ENDINGS[ending]))
    clients = list(engineio.base_client.connected_clients)
    transport = SocketIOTransport(welcome="synthesize" if welcome == "synthesize" else "server")
    async with asyncio.timeout(5):
        conn = await transport.connect(srv.sio_url, token="t", open_timeout=LONG)
        try:
            if welcome == "synthesize":
                first = await conn.recv()
                assert isinstance(first, dict) and first["type"] == "connected"
            with pytest.raises(ConnectionLost):
                await conn.recv()
        finally:
            await conn.close()
    assert engineio.base_client.connected_clients == clients
    assert engineio_tasks() == set()


async def test_a_refusal_without_an_object_is_not_reported_as_a_lost_link(
    srv: HostileServer,
) -> None:
    """python-socketio's connect() disconnects itself after a CONNECT_ERROR: that
    disconnect is not a link lost before the answer (the server did answer)."""

    async def refuses(conn: HostileConnection) -> None:
        await conn.await_connect()
        await conn.send_text('44"busy"')  # a CONNECT_ERROR whose data is not an object
        await conn.serve()  # until the client leaves (its close answered)

    srv.script(refuses)
    async with asyncio.timeout(5):
        with pytest.raises(TransportError) as caught:
            await SocketIOTransport().connect(srv.sio_url, token="t", open_timeout=LONG)
    assert "lost before" not in str(caught.value)
    assert "failed to connect" in str(caught.value)


@pytest.mark.parametrize("ending", ENDINGS)
async def test_a_refusal_that_arrives_with_the_drop_is_still_a_refusal(
    srv: HostileServer, ending: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONNECT_ERROR and the end of the link in one read: the server's answer wins
    over the loss (ConnectRefused), not a lost link. connect() disconnects with a
    goodbye that its writer, ended by the loss, never writes: the wait for it ends with
    the writer, not after ``flush_timeout`` (30 s here; on 3.11 connect() resumes
    before the reader has seen the loss)."""
    monkeypatch.setattr(PacedEngineIO, "flush_timeout", LONG)

    async def script(conn: HostileConnection) -> None:
        await conn.await_connect()
        body = {"message": "server busy", "data": {"retryAfter": 2}}
        refusal = Frame(Opcode.TEXT, ("44" + json.dumps(body)).encode())
        await conn.send_raw(refusal.serialize(mask=False) + ENDINGS[ending].serialize(mask=False))

    srv.script(script)
    async with asyncio.timeout(5):
        with pytest.raises(ConnectRefused) as caught:
            await SocketIOTransport().connect(srv.sio_url, token="t", open_timeout=LONG)
    assert caught.value.message == "server busy"
    assert engineio_tasks() == set()
