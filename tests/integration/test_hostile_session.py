"""A scripted server that breaks the sync and ack contract, on both raw transports (issue 13).

The server is a plain ``websockets`` server: it welcomes, acks joins with a chosen
head, answers each sync with the next scripted page, acks sends as told, and sends
whatever frames the test pushes. The client must neither lose nor double an event,
and must say when the server's answers did not add up.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import socketio
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve

from fake_server import FakeServer
from rtclient import Client, ConnectionState, OutboxFull
from rtclient.events import ErrorEvent, Event, Gap
from rtclient.testing import wait_until

from .conftest import FAST, GatedTransport

Envelope = dict[str, Any]


def chat(event_id: int, room: str = "a", epoch: str = "e1") -> Envelope:
    return {
        "roomId": room,
        "eventId": event_id,
        "epoch": epoch,
        "from": "bob",
        "text": f"m{event_id}",
    }


class ScriptedServer:
    """One room ``a`` in epoch ``e1``; every answer comes from the script.

    Speaks the raw binding on a ``websockets`` server, or the Socket.IO binding on
    a python-socketio server (``transport="socketio"``), with the same script.
    """

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.head = 1
        self.pages: list[tuple[list[Envelope], int]] = []
        """(events, head) answers to the next syncs; afterwards: no events, ``head``."""
        self.send_ack: Envelope = {"eventId": 1}
        self.requests: list[Envelope] = []
        self.ws: ServerConnection | None = None
        self.sio = socketio.AsyncServer(async_mode="aiohttp", always_connect=True)
        self.sid = ""
        self.url = ""
        self.welcome = {"userId": "me", "epoch": "e1", "features": []}
        for kind in ("room:join", "sync:messages", "chat:send"):
            self.sio.on(kind, self._sio_handler(kind))
        self.sio.on("connect", self._sio_connect)

    def answer(self, kind: str, rid: object, payload: Envelope) -> Envelope | None:
        """The ack payload for a request (None: no ack)."""
        self.requests.append({"type": kind, "id": rid, "payload": payload})
        if kind == "room:join":
            reply = {"roomId": "a", "members": ["me"], "epoch": "e1", "lastEventId": self.head}
        elif kind == "sync:messages":
            events, head = self.pages.pop(0) if self.pages else ([], self.head)
            reply = {"roomId": "a", "epoch": "e1", "events": events, "more": False}
            reply.update({"truncated": False, "lastEventId": head})
        elif kind == "chat:send":
            reply = {"roomId": payload["roomId"], "messageId": payload.get("messageId", rid)}
            reply.update({"epoch": "e1", "duplicate": False, **self.send_ack})
        else:
            return None
        return {"success": True, **reply}

    async def handler(self, ws: ServerConnection) -> None:
        self.ws = ws
        await ws.send(json.dumps({"type": "connected", "payload": self.welcome}))
        async for frame in ws:
            request = json.loads(frame)
            kind, rid = request["type"], request.get("id")
            reply = self.answer(kind, rid, request.get("payload", {}))
            if reply is not None:
                await ws.send(json.dumps({"type": "ack", "id": rid, "payload": reply}))

    async def _sio_connect(self, sid: str, environ: Any, auth: Any) -> None:
        self.sid = sid
        await self.sio.emit("connected", self.welcome, to=sid)

    def _sio_handler(self, kind: str) -> Any:
        async def handle(sid: str, data: Envelope) -> Envelope | None:
            return self.answer(kind, None, data)

        return handle

    async def push(self, *payloads: Envelope, name: str = "chat:message") -> None:
        for payload in payloads:
            if self.transport == "socketio":
                await self.sio.emit(name, payload, to=self.sid)
            else:
                assert self.ws is not None
                await self.ws.send(json.dumps({"type": name, "payload": payload}))

    async def kick(self) -> None:
        """Close the connection the way a restarting server does."""
        if self.transport == "socketio":
            await self.sio.disconnect(self.sid)
        else:
            assert self.ws is not None
            await self.ws.close(1012)

    def syncs(self) -> list[int]:
        """The ``lastEventId`` of every sync the client asked for, in order."""
        return [r["payload"]["lastEventId"] for r in self.requests if r["type"] == "sync:messages"]


@pytest.fixture(params=["websocket", "aiohttp", "socketio"])
async def scripted(request: pytest.FixtureRequest) -> AsyncIterator[ScriptedServer]:
    script = ScriptedServer(request.param)
    if request.param != "socketio":
        async with serve(script.handler, "127.0.0.1", 0) as srv:
            port = next(iter(srv.sockets)).getsockname()[1]
            script.url = f"ws://127.0.0.1:{port}/"
            yield script
        return
    app = web.Application()
    script.sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    script.url = f"http://127.0.0.1:{port}"
    try:
        yield script
    finally:
        await runner.cleanup()


class Watched:
    """A client joined to ``a`` and everything its handlers were given."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seen: list[Event | Gap | ErrorEvent] = []
        client.on("chat:message", self.seen.append)
        client.on("gap", self.seen.append)
        client.on("error", self.seen.append)

    def of(self, kind: type) -> list[Any]:
        return [o for o in self.seen if isinstance(o, kind)]

    def delivered(self) -> list[int | None]:
        return [e.event_id for e in self.of(Event)]

    def stats(self) -> dict[str, int]:
        return self.client.stats()


@pytest.fixture
async def client(scripted: ScriptedServer) -> AsyncIterator[Watched]:
    c = Client(
        scripted.url, token="t", transport=scripted.transport, backoff=FAST, ping_interval=None
    )
    watched = Watched(c)
    async with c:
        await c.join("a")
        yield watched


async def test_an_out_of_order_page_loses_nothing(
    scripted: ScriptedServer, client: Watched
) -> None:
    scripted.pages = [([chat(4), chat(2), chat(3)], 5)]
    await scripted.push(chat(5))  # a hole after the cursor at 1: the client syncs
    await wait_until(lambda: client.delivered() == [2, 3, 4, 5])
    assert [e.code for e in client.of(ErrorEvent)] == ["SYNC_INCONSISTENT"]
    assert client.of(Gap) == [] and client.stats()["duplicates_dropped"] == 0


async def test_a_holey_page_is_asked_again_then_reported_as_a_gap(
    scripted: ScriptedServer, client: Watched
) -> None:
    scripted.pages = [([chat(2), chat(4)], 5), ([chat(4)], 5)]  # 3 never comes
    await scripted.push(chat(5))
    await wait_until(lambda: client.delivered() == [2, 4, 5])
    assert scripted.syncs() == [1, 2]
    (gap,) = client.of(Gap)
    assert (gap.reason, gap.after_event_id, gap.resumed_at) == ("inconsistent", 2, 4)
    assert client.stats()["inconsistent_pages"] >= 1


async def test_an_absurd_event_id_does_not_blind_the_room(
    scripted: ScriptedServer, client: Watched
) -> None:
    scripted.head = 3
    await scripted.push(chat(2), chat(3), chat(2**64 - 1))
    await wait_until(lambda: client.stats()["implausible_events"] == 1)
    assert client.delivered() == [2, 3]
    assert [e.code for e in client.of(ErrorEvent)] == ["IMPLAUSIBLE_EVENT"]
    assert scripted.syncs() == [3, 3]  # one sync for the hole, one to be sure
    await scripted.push(chat(4))
    await wait_until(lambda: client.delivered() == [2, 3, 4])
    scripted.head = 4
    await scripted.kick()  # and after a reconnect whose join ack says 4
    await wait_until(lambda: client.stats()["reconnects"] == 1)
    await client.client.wait_for(ConnectionState.CONNECTED)
    await scripted.push(chat(5))
    await wait_until(lambda: client.delivered() == [2, 3, 4, 5])
    assert client.of(Gap) == []


async def test_events_of_rooms_never_joined_keep_no_state(
    scripted: ScriptedServer, client: Watched
) -> None:
    await scripted.push(*(chat(1, room=f"r{i}") for i in range(500)))
    await scripted.push(chat(2))
    await wait_until(lambda: client.delivered() == [2])
    assert client.stats()["foreign_events"] == 500
    assert client.stats()["rooms"] == 1
    assert [e.code for e in client.of(ErrorEvent)] == ["NOT_JOINED_EVENT"]


async def test_a_committed_send_with_a_malformed_event_id_is_not_an_error(
    scripted: ScriptedServer, client: Watched
) -> None:
    scripted.send_ack = {"eventId": "seven"}
    ack = await client.client.send("a", "hello")
    assert ack.event_id is None and ack.room == "a"
    assert [r["type"] for r in scripted.requests].count("chat:send") == 1
    assert client.stats()["malformed"] == 1 and client.stats()["queued"] == 0


# -- 13. a store holding more than the outbox takes -----------------------------------------


async def _store_with_queued(server: FakeServer, path: str, count: int) -> list[str]:
    token = server.issue_token("bot")
    gate = GatedTransport()
    gate.wrap("websocket")
    first = Client(server.ws_url, token=token, store=path, backoff=FAST, transport=gate)
    await first.connect()
    await first.join("lobby")
    gate.cut()
    await first.wait_for(ConnectionState.RECONNECTING)
    ids = [await first.enqueue("lobby", f"offline-{i}") for i in range(count)]
    await first.close(flush=False)
    return ids


async def test_a_restore_over_the_limit_closes_the_store(
    server: FakeServer, tmp_path: Path
) -> None:
    path = str(tmp_path / "bot.db")
    ids = await _store_with_queued(server, path, 5)
    token = server.issue_token("bot")
    small = Client(server.ws_url, token=token, store=path, backoff=FAST, outbox_limit=3)
    with pytest.raises(OutboxFull, match="outbox_limit=3"):
        await small.connect()
    assert small.state is ConnectionState.CLOSED
    await small.close()  # harmless

    dropping = Client(
        server.ws_url,
        token=token,
        store=path,  # not StoreLocked: the failed restore released it
        backoff=FAST,
        outbox_limit=3,
        overflow="drop_oldest",
    )
    errors: list[ErrorEvent] = []
    dropping.on("error", errors.append)
    async with dropping:
        await wait_until(lambda: len(server.room_events("lobby")) == 3)
        await wait_until(lambda: len([e for e in errors if e.code == "MESSAGE_DROPPED"]) == 2)
    assert [e.code for e in errors] == ["MESSAGE_DROPPED"] * 2  # each drop reported once
    assert [e["messageId"] for e in server.room_events("lobby")] == ids[2:]
    assert dropping.stats()["dropped"] == 2

    last = Client(server.ws_url, token=token, store=path, backoff=FAST)
    async with last:
        assert last.stats()["queued"] == 0  # the dropped ones left the store too
