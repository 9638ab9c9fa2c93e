"""Generic mode on the raw WebSocket transports, against small Python servers.

:class:`SeedServer` is the seed guide's first server (tests/interop/ws_server.js runs
the real Node.js one) on the ``websockets`` library: JSON ``{"type", "payload"}``, the
token from the query string or the ``Authorization`` header, a ``connected`` greeting,
rooms per socket, no acks — unless ``acks=True``, when it answers every frame that
carries an ``id`` with ``{"type": "ack", "id", "payload"}``. :class:`LogServer` numbers
its events and replays them from a position (what an adapter with resume positions
needs); its adapter is written here, as an application would write one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import websockets
from websockets.asyncio.server import ServerConnection, serve

from rtclient import Backoff, Client, ConnectionState, Event, RequestRejected, Unauthorized
from rtclient.adapters import (
    Frame,
    Incoming,
    JsonEnvelope,
    NatsJetStream,
    Ready,
    Received,
    Reset,
)
from rtclient.errors import ProtocolError
from rtclient.events import Gap
from rtclient.testing import wait_until

FAST = Backoff(base=0.01, cap=0.1, stable_after=0.2)
TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "aiohttp"])


class SeedServer:
    """The seed's ``ws`` server, in Python; ``frames`` holds what each connection sent."""

    def __init__(self, *, acks: bool = False) -> None:
        self.acks = acks
        self.frames: list[tuple[int, str, Any]] = []  # (connection, type, payload)
        self.tokens: list[tuple[str | None, str | None]] = []  # (query, header) per upgrade
        self.rooms: dict[str, set[ServerConnection]] = {}
        self.connections = 0
        self.sockets: list[ServerConnection] = []
        self.port = 0
        self._server: Any = None

    async def __aenter__(self) -> SeedServer:
        self._server = await serve(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def kick(self) -> None:
        """Drop every connection without a close frame (a cut)."""
        for ws in list(self.sockets):
            ws.transport.abort()

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query).get("token", [None])[0]
        header = ws.request.headers.get("Authorization")
        self.tokens.append((query, header))
        token = query or (header.removeprefix("Bearer ") if header else None)
        if not token or not token.startswith("secret-"):
            await ws.close(4001, "Unauthorized")
            return
        user = token.removeprefix("secret-")
        self.connections += 1
        number = self.connections
        self.sockets.append(ws)
        await ws.send(json.dumps({"type": "connected", "payload": {"clientId": f"c{number}"}}))
        try:
            async for raw in ws:
                message = json.loads(raw)
                type_, payload = message["type"], message.get("payload")
                self.frames.append((number, type_, payload))
                if self.acks and "id" in message:
                    if type_ == "refuse":
                        error = {"code": "NOPE", "message": "refused"}
                        await ws.send(
                            json.dumps({"type": "ack", "id": message["id"], "error": error})
                        )
                    else:
                        answer = {
                            "type": "ack",
                            "id": message["id"],
                            "payload": {"n": len(self.frames)},
                        }
                        await ws.send(json.dumps(answer))
                if type_ == "join:room":
                    self.rooms.setdefault(payload["roomId"], set()).add(ws)
                elif type_ == "room:message":
                    data = {**payload, "from": user}
                    for peer in self.rooms.get(payload["roomId"], set()) - {ws}:
                        await peer.send(json.dumps({"type": "room:message", "payload": data}))
                elif type_ == "garbage":
                    await ws.send("this is not JSON")
                elif type_ == "relay":  # the frames the test asks this server to send
                    for frame in payload["frames"]:
                        await ws.send(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.sockets.remove(ws)
            for members in self.rooms.values():
                members.discard(ws)


@pytest.fixture
async def seed() -> AsyncIterator[SeedServer]:
    async with SeedServer() as server:
        yield server


def generic(url: str, transport: str, **options: Any) -> Client:
    options.setdefault("backoff", FAST)
    options.setdefault("token", "secret-bob")
    return Client(url, protocol="generic", transport=transport, **options)  # type: ignore[arg-type]


@TRANSPORTS
async def test_token_in_the_header_by_default_in_the_query_when_asked(
    seed: SeedServer, transport: str
) -> None:
    async with generic(seed.url, transport):
        pass
    async with generic(seed.url, transport, token_query="token"):
        pass
    assert seed.tokens == [(None, "Bearer secret-bob"), ("secret-bob", None)]


@TRANSPORTS
async def test_hook_emits_go_before_the_offline_emits_which_go_once_in_order(
    seed: SeedServer, transport: str
) -> None:
    client = generic(seed.url, transport)

    async def rejoin(c: Client) -> None:
        await c.emit("join:room", {"roomId": "lobby"}, ack=False)

    client.on_connect(rejoin)
    async with client:
        await wait_until(lambda: len(seed.frames) == 1)
        await seed.kick()
        await client.wait_for(ConnectionState.RECONNECTING)
        for n in range(5):
            client.emit_nowait("room:message", {"roomId": "lobby", "n": n}, ack=False)
        await wait_until(lambda: len(seed.frames) == 7)
    second = [(t, p.get("n")) for c, t, p in seed.frames if c == 2]
    assert second == [("join:room", None)] + [("room:message", n) for n in range(5)]


@TRANSPORTS
async def test_acks_when_the_server_sends_them(transport: str) -> None:
    adapter = JsonEnvelope(id_key="id", ack_type="ack")
    async with (
        SeedServer(acks=True) as server,
        generic(server.url, transport, adapter=adapter) as c,
    ):
        assert await c.emit("say", {"text": "hi"}) == {"n": 1}
        assert await c.call("say", {"text": "again"}) == {"n": 2}
        with pytest.raises(RequestRejected, match="NOPE"):
            await c.emit("refuse", {})
        assert c.stats()["queued"] == 0


@TRANSPORTS
async def test_without_acks_emit_is_done_once_written_and_call_says_why_not(
    seed: SeedServer, transport: str
) -> None:
    async with generic(seed.url, transport) as client:
        assert await client.emit("say", {"text": "hi"}) is None
        with pytest.raises(Exception, match="no acks"):
            await client.call("say", {})
        await wait_until(lambda: len(seed.frames) == 1)


@TRANSPORTS
async def test_an_unreadable_frame_is_counted_and_the_connection_stays(
    seed: SeedServer, transport: str
) -> None:
    client = generic(seed.url, transport)
    errors: list[Any] = []
    client.on("error", errors.append)
    async with client:
        await client.emit("garbage", {}, ack=False)
        await wait_until(lambda: client.stats()["malformed"] == 1)
        await client.emit("after", {}, ack=False)
        await wait_until(lambda: len(seed.frames) == 2)
        assert client.state is ConnectionState.CONNECTED
    assert errors and client.stats()["reconnects"] == 0


@TRANSPORTS
async def test_the_servers_events_named_like_rooms_frames_are_its_own(
    seed: SeedServer, transport: str
) -> None:
    """A plain server's ``chat:message`` (no roomId, no eventId), ``ack`` or a second
    ``connected`` are its own events: delivered, not dropped as malformed rooms frames."""
    names = ["chat:message", "dm:message", "ack", "connected"]
    client = generic(seed.url, transport)
    got: list[Event] = []
    for name in names:
        client.on(name, got.append)
    frames = [json.dumps({"type": name, "payload": {"text": name}}) for name in names]
    async with client:
        await wait_until(lambda: len(got) == 1)  # the greeting
        await client.emit("relay", {"frames": frames}, ack=False)
        await wait_until(lambda: len(got) == 5)
        stats = client.stats()
    assert [(e.name, e.data) for e in got[1:]] == [(n, {"text": n}) for n in names]
    assert stats["malformed"] == 0 and stats["delivered"] == 0  # none taken as logged


@TRANSPORTS
async def test_missing_token_closes_4001_and_is_fatal(seed: SeedServer, transport: str) -> None:
    with pytest.raises(Unauthorized):
        await generic(seed.url, transport, token=None).connect()
    assert seed.tokens == [(None, None)]


@TRANSPORTS
async def test_a_server_without_the_greeting_is_fatal_with_advice_a_silent_one_retried(
    transport: str,
) -> None:
    """The default adapter waits for the seed's ``connected`` greeting. A server that
    speaks but greets otherwise fails ``connect()`` after three connections, saying how
    to configure the adapter (it used to retry for ever, connect() never returning); a
    server that says nothing may be stalled and is retried."""

    async def hello(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "hello", "payload": {}}))
        await ws.wait_closed()

    async with serve(hello, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        client = generic(url, transport, connect_timeout=0.5)
        with pytest.raises(ProtocolError, match=r"greeting=None") as info:
            await client.connect()
        assert client.stats()["attempts"] >= 3  # more only if a slow machine timed one out
        assert "rooms" not in str(info.value)
        # greeting=None: the open socket is the acceptance and "hello" an event
        heard: list[Event] = []
        client = generic(url, transport, adapter=JsonEnvelope(greeting=None))
        client.on("hello", heard.append)
        async with client:
            await wait_until(lambda: len(heard) == 1)

    async def silent(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with serve(silent, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        client = generic(url, transport, connect_timeout=0.1)
        await client.connect(wait=False)
        try:
            await wait_until(lambda: client.stats()["attempts"] >= 5, 10)
            assert client.state is ConnectionState.RECONNECTING
        finally:
            await client.close()


def test_generic_raw_options_are_checked() -> None:
    with pytest.raises(ValueError, match="adapter"):
        Client("ws://127.0.0.1:1/ws", adapter=JsonEnvelope())  # rooms mode
    with pytest.raises(ValueError, match="token_query"):
        Client("http://127.0.0.1:1", transport="socketio", protocol="generic", token_query="t")
    with pytest.raises(ValueError, match="codec"):
        Client("ws://127.0.0.1:1/ws", protocol="generic", codec="msgpack")


# -- an adapter with resume positions, written as an application would -------------------


class LogEnvelope:
    """``{"seq", "type", "payload"}`` events; ``{"resume": after}`` opens a connection."""

    acks = False
    resumes = True
    sends_token = False
    greets = True

    def opening(self, token: str | None, resume: int | None) -> list[Frame]:
        return [json.dumps({"resume": resume})]

    def encode(self, name: str, data: Any, message_id: str | None) -> list[Frame]:
        return [json.dumps({"type": name, "payload": data})]

    def decode(self, frame: Frame) -> list[Incoming]:
        try:
            message = json.loads(frame)
        except ValueError:
            raise ProtocolError("not JSON") from None
        if message.get("type") == "hello":
            return [Ready()]
        if message.get("type") == "reset":  # the server's log started over
            return [Reset("log")]
        return [Received(message["type"], message["payload"], message["seq"])]


class LogServer:
    """Numbers every event and, on each connection, replays the log from the position
    offered, starting ``overlap`` events early (as a careless server might)."""

    def __init__(self, overlap: int = 2) -> None:
        self.log: list[dict[str, Any]] = []
        self.overlap = overlap
        self.resumes: list[int | None] = []
        self.sockets: set[ServerConnection] = set()
        self._server: Any = None
        self.url = ""

    async def __aenter__(self) -> LogServer:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def publish(self, n: int) -> None:
        event = {"seq": len(self.log) + 1, "type": "tick", "payload": {"n": n}}
        self.log.append(event)
        for ws in list(self.sockets):
            await ws.send(json.dumps(event))

    async def _handle(self, ws: ServerConnection) -> None:
        resume = json.loads(await ws.recv())["resume"]
        self.resumes.append(resume)
        await ws.send(json.dumps({"type": "hello"}))
        start = 0 if resume is None else max(0, resume - self.overlap)
        if resume is not None and resume > len(self.log):  # it lost its log meanwhile
            await ws.send(json.dumps({"type": "reset"}))
            start = 0
        for event in self.log[start:]:
            await ws.send(json.dumps(event))
        self.sockets.add(ws)
        try:
            await ws.wait_closed()
        finally:
            self.sockets.discard(ws)


@TRANSPORTS
async def test_resume_positions_miss_nothing_and_drop_the_overlap(transport: str) -> None:
    async with LogServer(overlap=2) as server:
        client = Client(
            server.url, protocol="generic", transport=transport, adapter=LogEnvelope(), backoff=FAST
        )
        got: list[Event] = []
        client.on("tick", got.append)
        async with client:
            for n in range(5):
                await server.publish(n)
            await wait_until(lambda: len(got) == 5)
            for ws in list(server.sockets):
                ws.transport.abort()
            await client.wait_for(ConnectionState.RECONNECTING)
            for n in range(5, 10):  # while the client is away
                await server.publish(n)
            await wait_until(lambda: len(got) == 10)
            stats = client.stats()
    assert [e.data["n"] for e in got] == list(range(10))
    assert server.resumes == [None, 5]
    assert stats["duplicates_dropped"] == 2  # the two the server sent again


async def test_a_hook_waiting_on_a_dropped_connection_does_not_hold_the_client(
    seed: SeedServer,
) -> None:
    """The hook is the connection's: when the connection drops, it is cancelled (and
    runs again on the next one) instead of keeping the client from reconnecting."""
    adapter = JsonEnvelope(id_key="id", ack_type="ack")  # this server never acks
    client = generic(seed.url, "websocket", adapter=adapter, ack_timeout=60)
    runs: list[int] = []

    async def hook(c: Client) -> None:
        runs.append(len(runs) + 1)
        if len(runs) == 1:
            await c.call("never:answered", {})

    client.on_connect(hook)
    await client.connect(wait=False)
    try:
        await wait_until(lambda: len(seed.frames) == 1)
        await seed.kick()
        await client.wait_for(ConnectionState.CONNECTED, timeout=5)
        assert runs == [1, 2]
    finally:
        await client.close()


class BrokenEnvelope(JsonEnvelope):
    """An application's adapter with a bug that some frames trigger."""

    def decode(self, frame: Frame) -> list[Incoming]:
        if "boom" in str(frame):
            raise KeyError("boom")
        return super().decode(frame)


async def test_an_adapter_that_raises_is_a_malformed_frame_not_a_crash(seed: SeedServer) -> None:
    client = generic(seed.url, "websocket", adapter=BrokenEnvelope())
    async with client:
        await client.emit("room:message", {"roomId": "r"}, ack=False)  # nobody in r
        await client.emit("join:room", {"roomId": "boom"}, ack=False)
        other = generic(seed.url, "websocket", token="secret-alice")
        async with other:
            await other.emit("room:message", {"roomId": "boom", "text": "x"}, ack=False)
            await wait_until(lambda: client.stats()["malformed"] == 1)
        assert client.state is ConnectionState.CONNECTED


async def test_only_the_running_hooks_emit_ahead_of_the_outbox(seed: SeedServer) -> None:
    """A task the first hook run left behind emits like the application, even while the
    second run goes on: behind what was queued offline."""
    client = generic(seed.url, "websocket")
    left_behind: list[asyncio.Task[None]] = []
    go = asyncio.Event()

    async def later(c: Client) -> None:
        await go.wait()
        c.emit_nowait("late", {}, ack=False)

    async def hook(c: Client) -> None:
        await c.emit("join:room", {"roomId": "lobby"}, ack=False)
        if not left_behind:
            left_behind.append(asyncio.create_task(later(c)))
        else:  # the second run: the left-behind task emits while this one runs
            go.set()
            await left_behind[0]

    client.on_connect(hook)
    async with client:
        await wait_until(lambda: len(seed.frames) == 1)
        await seed.kick()
        await client.wait_for(ConnectionState.RECONNECTING)
        client.emit_nowait("queued", {}, ack=False)
        await wait_until(lambda: len(seed.frames) == 4)
    assert [t for c, t, _ in seed.frames if c == 2] == ["join:room", "queued", "late"]


@TRANSPORTS
async def test_a_token_in_the_url_shows_nowhere(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused at the HTTP upgrade (401) and refused after it (4001): neither the
    exception nor any log line, at DEBUG, holds the token."""
    secret = "url-secret-0f9e8d7c6b5a"

    def refuse(connection: ServerConnection, request: Any) -> Any:
        if "refuse-http" in request.path:
            return connection.respond(401, "no\n")
        return None

    async with serve(
        lambda ws: ws.close(4001, "Unauthorized"), "127.0.0.1", 0, process_request=refuse
    ) as server:
        port = server.sockets[0].getsockname()[1]
        errors: list[BaseException] = []
        with caplog.at_level(logging.DEBUG):
            for path in ("/refuse-http", "/ws"):
                client = generic(
                    f"ws://127.0.0.1:{port}{path}?room=1",
                    transport,
                    token=secret,
                    token_query="key",  # a name the default patterns do not know
                )
                with pytest.raises(Unauthorized) as info:
                    await client.connect()
                errors.append(info.value)
    ours = "\n".join(  # the test server's own log shows its request lines: not ours
        r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")
    )
    assert "key=" in ours or transport == "aiohttp"
    assert secret not in ours
    for error in errors:
        assert secret not in f"{error} {error!r} {error.__cause__!r}"


async def test_what_the_adapter_cannot_encode_fails_at_once() -> None:
    seed = Client("ws://127.0.0.1:1/", protocol="generic", backoff=FAST)
    with pytest.raises(ValueError):
        seed.emit_nowait("x", {"n": float("nan")})  # JSON has no NaN
    nats = Client("ws://127.0.0.1:1/", protocol="generic", adapter=NatsJetStream("S"))
    with pytest.raises(ValueError, match="subject"):
        await nats.emit("not a subject", {})
    nats.emit_nowait("chat.ok", b"raw bytes are a NATS payload", ack=False)
    assert seed.stats()["queued"] == 0 and nats.stats()["queued"] == 1
    await seed.close()
    await nats.close()


@TRANSPORTS
def test_a_url_no_connection_can_use_is_refused_at_once(transport: str) -> None:
    """A bad port or no host is the caller's mistake: ValueError from the constructor
    (it used to fail each attempt with the URL, token included, in the error and the
    log line; aiohttp's InvalidURL showed it whole)."""
    for url, match in (
        ("ws://127.0.0.1:notaport/", "Port"),
        ("ws://127.0.0.1:99999/", "Port"),
        ("ws:///path", "host"),
    ):
        with pytest.raises(ValueError, match=match) as info:
            generic(url, transport, token="url-secret-77aa", token_query="key")
        assert "url-secret-77aa" not in str(info.value)


def test_an_invalid_url_error_from_a_library_is_redacted() -> None:
    import aiohttp
    from websockets.exceptions import InvalidURI

    from rtclient.redact import remember_query_parameter
    from rtclient.transports.aiohttp_ws import _aiohttp_error
    from rtclient.transports.websocket import _websockets_error

    remember_query_parameter("key")
    url = "ws://h:1/?room=1&key=url-secret-88bb"
    for error in (_aiohttp_error(aiohttp.InvalidURL(url)), _websockets_error(InvalidURI(url, "x"))):
        assert isinstance(error, ProtocolError) and "url-secret-88bb" not in str(error)


class FlakyEncoder(JsonEnvelope):
    """An application's adapter whose encode fails, at write time, for one name."""

    broken: str | None = None

    def encode(self, name: str, data: Any, message_id: str | None) -> list[Frame]:
        if name == self.broken:
            raise KeyError(name)
        return super().encode(name, data, message_id)


async def test_an_adapter_that_raises_when_writing_is_reported_not_a_crash(
    seed: SeedServer,
) -> None:
    """encode passed when the emit was made and raises when it is written (after a
    reconnect): an ENCODE error event, and the client goes on (it used to end CLOSED,
    its task group failing with the adapter's KeyError)."""
    adapter = FlakyEncoder()
    client = generic(seed.url, "websocket", adapter=adapter)
    errors: list[Any] = []
    client.on("error", errors.append)
    async with client:
        await client.emit("first", {}, ack=False)
        await seed.kick()
        await client.wait_for(ConnectionState.RECONNECTING)
        client.emit_nowait("poison", {}, ack=False)
        adapter.broken = "poison"
        client.emit_nowait("after", {}, ack=False)
        await wait_until(lambda: [t for c, t, _ in seed.frames if c == 2] == ["after"])
        assert client.state is ConnectionState.CONNECTED
    assert [e.code for e in errors] == ["ENCODE"] and "KeyError" in errors[0].message


async def test_an_emit_the_adapter_cannot_encode_with_a_message_id_fails_at_once(
    seed: SeedServer,
) -> None:
    """The check at emit time encodes with a message id when the adapter has acks."""

    class NoIds(JsonEnvelope):
        def encode(self, name: str, data: Any, message_id: str | None) -> list[Frame]:
            if message_id is not None and name == "x":
                raise ValueError("this server cannot take an id here")
            return super().encode(name, data, message_id)

    client = generic(seed.url, "websocket", adapter=NoIds(id_key="id", ack_type="ack"))
    with pytest.raises(ValueError, match="cannot take an id"):
        client.emit_nowait("x", {})
    assert client.stats()["queued"] == 0
    await client.close()


async def test_an_adapter_whose_opening_raises_fails_connect_with_a_protocol_error(
    seed: SeedServer,
) -> None:
    """It would fail every attempt: fatal, and typed (it used to end the client with an
    ExceptionGroup holding the adapter's own exception, from connect() and close())."""

    class BadOpening(JsonEnvelope):
        def opening(self, token: str | None, resume: int | None) -> list[Frame]:
            raise RuntimeError("opening bug")

    client = generic(seed.url, "websocket", adapter=BadOpening())
    with pytest.raises(ProtocolError, match=r"BadOpening.opening failed: RuntimeError"):
        await client.connect()
    assert client.state is ConnectionState.CLOSED
    await client.close()


async def test_an_adapter_whose_decode_returns_no_list_is_a_malformed_frame(
    seed: SeedServer,
) -> None:
    class NoList(JsonEnvelope):
        def decode(self, frame: Frame) -> list[Incoming]:
            if "odd" in str(frame):
                return None  # type: ignore[return-value]
            if "wrong" in str(frame):
                return ["not an item"]  # type: ignore[list-item]
            return super().decode(frame)

    client = generic(seed.url, "websocket", adapter=NoList())
    async with client:
        frames = [json.dumps({"type": "odd"}), json.dumps({"type": "wrong"})]
        await client.emit("relay", {"frames": frames}, ack=False)
        await wait_until(lambda: client.stats()["malformed"] == 2)
        assert client.state is ConnectionState.CONNECTED


@TRANSPORTS
async def test_a_sequence_that_starts_over_is_a_gap_not_dropped_duplicates(
    transport: str,
) -> None:
    async with LogServer(overlap=0) as server:
        client = Client(
            server.url, protocol="generic", transport=transport, adapter=LogEnvelope(), backoff=FAST
        )
        got: list[Event] = []
        gaps: list[Gap] = []
        client.on("tick", got.append)
        client.on("gap", gaps.append)
        async with client:
            for n in range(5):
                await server.publish(n)
            await wait_until(lambda: len(got) == 5)
            for ws in list(server.sockets):
                ws.transport.abort()
            await client.wait_for(ConnectionState.RECONNECTING)
            server.log.clear()  # the server lost its data: its sequence starts at 1 again
            for n in range(5, 8):
                await server.publish(n)
            await wait_until(lambda: len(got) == 8)
            await server.publish(8)  # seq 4: taken, the old position is forgotten
            await wait_until(lambda: len(got) == 9)
            stats = client.stats()
    assert [e.data["n"] for e in got] == list(range(9))
    assert gaps == [Gap("log", "reset", 5, None, None)]
    assert stats["gaps"] == 1 and stats["duplicates_dropped"] == 0
