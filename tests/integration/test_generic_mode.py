"""Generic mode: rtclient over any Socket.IO server, here a plain python-socketio one.

The server below knows nothing of rtclient's rooms contract: it has a ``subscribe``
call, an ``echo`` event with an ack, a ``publish`` that broadcasts to subscribers, and
remembers message ids (as an app would) to show the id travels with the data.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio
from aiohttp import web

from rtclient import Backoff, Client, ConnectionState, Event
from rtclient.testing import wait_until

FAST = Backoff(base=0.01, cap=0.1, stable_after=0.2)


class PlainServer:
    """A python-socketio server with its own little protocol, on port 0."""

    def __init__(self, serializer: str = "default") -> None:
        self.sio = socketio.AsyncServer(async_mode="aiohttp", serializer=serializer)
        self.app = web.Application()
        self.sio.attach(self.app)
        self.seen_ids: list[str] = []
        self.echoes: list[Any] = []
        self.auth: list[Any] = []
        self.disconnects: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        sio = self.sio

        @sio.event
        async def connect(sid: str, environ: Any, auth: Any) -> None:
            self.auth.append(auth)
            if not (isinstance(auth, dict) and auth.get("token") == "good"):
                raise socketio.exceptions.ConnectionRefusedError("INVALID_TOKEN")

        @sio.event
        async def disconnect(sid: str, reason: str) -> None:
            self.disconnects.append(reason)

        @sio.on("subscribe")
        async def subscribe(sid: str, topic: str) -> dict[str, Any]:
            await sio.enter_room(sid, topic)
            return {"ok": True, "topic": topic}

        @sio.on("echo")
        async def echo(sid: str, data: Any) -> Any:
            self.echoes.append(data)
            if isinstance(data, dict) and "messageId" in data:
                self.seen_ids.append(data["messageId"])
            return data

        @sio.on("relay")
        async def relay(sid: str, events: list[list[Any]]) -> None:
            for name, data in events:  # events the test asks this server to emit
                await sio.emit(name, data, to=sid)

        @sio.on("publish")
        async def publish(sid: str, data: dict[str, Any]) -> str:
            await sio.emit("news", data, room=data["topic"])
            return "published"

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await self.site.start()
        self.port = self.site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Stop listening, disconnect everyone, shut down (a server going away)."""
        assert self.runner is not None
        await self.site.stop()
        await self.kick_everyone()
        await self.runner.cleanup()

    async def kick_everyone(self) -> None:
        """A server-initiated disconnect of every client."""
        for sid in list(self.sio.manager.get_participants("/", None)):
            await self.sio.disconnect(sid[0])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def plain() -> AsyncIterator[PlainServer]:
    server = PlainServer()
    await server.start()
    yield server
    await server.stop()


async def test_emit_call_on_and_resubscribe_after_reconnect(plain: PlainServer) -> None:
    client = Client(plain.url, transport="socketio", protocol="generic", token="good", backoff=FAST)
    news: list[Event] = []
    client.on("news", news.append)
    subscribed = 0

    async def resubscribe(c: Client) -> None:
        nonlocal subscribed
        assert await c.call("subscribe", "sports") == {"ok": True, "topic": "sports"}
        subscribed += 1

    client.on_connect(resubscribe)
    async with client:
        assert subscribed == 1
        reply = await client.emit("echo", {"text": "hi"})
        assert reply["text"] == "hi" and reply["messageId"] == plain.seen_ids[0]
        assert await client.emit("echo", "plain string") == "plain string"
        assert await client.emit("echo", [1, 2], ack=True) == [1, 2]
        await plain.kick_everyone()
        await wait_until(lambda: subscribed == 2)  # the hook ran again after the reconnect
        await client.wait_for(ConnectionState.CONNECTED)
        assert await client.call("publish", {"topic": "sports", "score": 3}) == "published"
        await wait_until(lambda: len(news) == 1)
        assert news[0].data == {"topic": "sports", "score": 3}
        assert client.recovered is False
        assert client.stats()["reconnects"] == 1


async def test_the_servers_events_named_like_rooms_frames_are_its_own(plain: PlainServer) -> None:
    """A Socket.IO server's own ``chat:message`` (no roomId, no eventId) or ``ack``:
    delivered under their names (they were dropped as malformed rooms frames)."""
    client = Client(plain.url, transport="socketio", protocol="generic", token="good", backoff=FAST)
    names = ["chat:message", "dm:message", "ack", "connected"]
    got: list[Event] = []
    for name in names:
        client.on(name, got.append)
    async with client:
        await client.emit("relay", [[name, {"text": name}] for name in names], ack=False)
        await wait_until(lambda: len(got) == len(names))
        stats = client.stats()
    assert [(e.name, e.data) for e in got] == [(n, {"text": n}) for n in names]
    assert stats["malformed"] == 0


async def test_msgpack_emits_carry_bytes() -> None:
    """The outbox sizes an emit with the configured codec: bytes are fine in MessagePack."""
    server = PlainServer(serializer="msgpack")
    await server.start()
    try:
        client = Client(
            server.url,
            transport="socketio",
            protocol="generic",
            codec="msgpack",
            token="good",
            backoff=FAST,
        )
        async with client:
            reply = await client.emit("echo", {"blob": b"\x00\xff" * 8})
        assert reply["blob"] == b"\x00\xff" * 8
        assert server.echoes[0]["blob"] == b"\x00\xff" * 8
    finally:
        await server.stop()


async def test_emits_queued_while_the_server_is_down_are_delivered(plain: PlainServer) -> None:
    client = Client(plain.url, transport="socketio", protocol="generic", token="good", backoff=FAST)
    async with client:
        await plain.stop()
        await client.wait_for(ConnectionState.RECONNECTING)
        pending = [asyncio.create_task(client.emit("echo", {"n": i})) for i in range(5)]
        await wait_until(lambda: client.stats()["queued"] == 5)
        plain.runner = None
        await plain.start()  # same port: the client comes back by itself
        replies = await asyncio.gather(*pending)
    assert [r["n"] for r in replies] == list(range(5))
    assert [e["n"] for e in plain.echoes] == list(range(5))


async def test_refused_connection_is_fatal(plain: PlainServer) -> None:
    client = Client(plain.url, transport="socketio", protocol="generic", token="bad")
    with pytest.raises(Exception) as info:
        await client.connect()
    assert type(info.value).__name__ == "Unauthorized"
    assert plain.auth == [{"token": "bad"}]  # one attempt, no retry storm


async def test_hook_emits_are_written_before_the_offline_emits(plain: PlainServer) -> None:
    """The rejoin from an on_connect hook goes first, even with ack=False; what was
    emitted while offline follows once, in order."""
    client = Client(plain.url, transport="socketio", protocol="generic", token="good", backoff=FAST)

    replies: list[Any] = []

    async def hello(c: Client) -> None:
        await c.emit("echo", {"hook": "written"}, ack=False)
        replies.append(await c.emit("echo", {"hook": "acked"}))  # the server's answer

    client.on_connect(hello)
    async with client:
        await wait_until(lambda: len(plain.echoes) == 2)
        await plain.kick_everyone()
        await client.wait_for(ConnectionState.RECONNECTING)
        for n in range(3):
            client.emit_nowait("echo", {"n": n}, ack=False)
        await wait_until(lambda: len(plain.echoes) == 7)
    assert [e.get("hook", e.get("n")) for e in plain.echoes] == [
        *("written", "acked") * 2,
        *(0, 1, 2),
    ]
    assert [r["hook"] for r in replies] == ["acked", "acked"]


async def test_close_reaches_the_server_as_a_client_disconnect(plain: PlainServer) -> None:
    # Socket.IO's DISCONNECT and engine.io's CLOSE go out before the WebSocket closes
    # (engine.io closed it first: the server saw "transport close").
    client = Client(plain.url, transport="socketio", protocol="generic", token="good", backoff=FAST)
    async with client:
        assert await client.emit("echo", "hi") == "hi"
    await wait_until(lambda: len(plain.disconnects) == 1)
    assert plain.disconnects == [plain.sio.reason.CLIENT_DISCONNECT]
