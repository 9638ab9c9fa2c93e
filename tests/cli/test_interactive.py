"""``rtclient chat`` in a terminal, driven through prompt_toolkit's pipe input.

The prompt runs for real (a PromptSession on a pipe input and a DummyOutput) against
an in-process FakeServer; lines are captured where they would print above the prompt
and the toolbar is read from the same function prompt_toolkit renders.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState, Event, Unauthorized
from rtclient.console.chat import interactive
from rtclient.console.controller import ChatController

from .conftest import eventually

FAST = Backoff(base=0.01, cap=0.2, first_delay=0.01, stable_after=0.3)
# Slow enough to watch: every retry 0.3 s after the last, no jitter.
VISIBLE = Backoff(base=0.3, cap=0.3, jitter="none", first_delay=0.3, stable_after=60.0)


@dataclass
class Chat:
    """A running ``rtclient chat``: type into it, read its lines and toolbar."""

    keys: PipeInput
    client: Client
    task: asyncio.Task[ChatController]
    lines: list[str] = field(default_factory=list)
    controller: ChatController | None = None
    session: PromptSession[str] | None = None

    def type(self, text: str) -> None:
        self.keys.send_text(text)

    def toolbar(self) -> str:
        assert self.controller is not None
        return self.controller.toolbar()

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    async def wait_line(self, text: str, timeout: float = 5.0) -> str:
        await eventually(lambda: self.saw(text), timeout, f"a line with {text!r}: {self.lines}")
        return next(line for line in self.lines if text in line)

    async def wait_toolbar(self, text: str, timeout: float = 5.0) -> str:
        await eventually(lambda: text in self.toolbar(), timeout, f"{text!r} in the toolbar")
        return self.toolbar()


@asynccontextmanager
async def running_chat(
    server: FakeServer,
    user: str = "alice",
    rooms: tuple[str, ...] = ("lobby",),
    transport: str = "websocket",
    **options: Any,
) -> AsyncIterator[Chat]:
    options.setdefault("token", server.issue_token(user))
    options.setdefault("backoff", FAST)
    options.setdefault("ack_timeout", 2.0)
    url = server.ws_url if transport == "websocket" else server.sio_url
    client = Client(url, transport=transport, **options)  # type: ignore[arg-type]
    with create_pipe_input() as keys:
        lines: list[str] = []

        def ready(controller: ChatController, session: PromptSession[str]) -> None:
            chat.controller = controller
            chat.session = session

        task = asyncio.create_task(
            interactive(
                client,
                list(rooms),
                input=keys,
                output=DummyOutput(),
                out=lines.append,
                on_ready=ready,
            )
        )
        chat = Chat(keys, client, task, lines)
        try:
            await eventually(lambda: chat.controller is not None, what="the chat to start")
            yield chat
        finally:
            if not task.done():
                keys.send_text("/quit\r")
            async with asyncio.timeout(10):
                await asyncio.wait([task])
    assert client.state is ConnectionState.CLOSED


async def connected(server: FakeServer, user: str, *rooms: str) -> Client:
    client = Client(server.ws_url, token=server.issue_token(user), backoff=FAST)
    await client.connect()
    for room in rooms:
        await client.join(room)
    return client


async def test_send_and_receive(server: FakeServer) -> None:
    async with running_chat(server) as chat:
        await chat.wait_line("· joined lobby (1 here: alice)")
        assert chat.saw("· connected as alice")
        chat.type("hello everyone\r")
        ack = await chat.wait_line("✓ #1")
        assert ack == "✓ #1  [lobby] hello everyone"
        pending = chat.lines.index("… pending  [lobby] hello everyone")
        assert pending < chat.lines.index(ack)

        bob = await connected(server, "bob", "lobby")
        try:
            await chat.wait_line("[lobby] * bob joined")
            await bob.send("lobby", "hi alice")
            await chat.wait_line("[lobby] #2 bob: hi alice")
        finally:
            await bob.close()
        await chat.wait_line("[lobby] * bob left")
        # Our own message came back from the server too, but the ✓ line already said it.
        assert not chat.saw("alice: hello everyone")
        assert "connected │" in chat.toolbar() and "alice @ lobby" in chat.toolbar()
    assert [e["text"] for e in server.room_events("lobby")] == ["hello everyone", "hi alice"]


async def test_socketio_transport(server: FakeServer) -> None:
    async with running_chat(server, transport="socketio") as chat:
        await chat.wait_line("· joined lobby")
        chat.type("over socket.io\r")
        await chat.wait_line("✓ #1  [lobby] over socket.io")


async def test_join_rooms_who_leave(server: FakeServer) -> None:
    bob = await connected(server, "bob", "lobby")
    try:
        async with running_chat(server) as chat:
            await chat.wait_line("· joined lobby (2 here:")
            chat.type("/join ops\r")
            await chat.wait_line("· joined ops (1 here: alice)")
            assert chat.controller is not None and chat.controller.current == "ops"
            assert "alice @ ops" in chat.toolbar()
            chat.type("/rooms\r")
            await chat.wait_line("· rooms: lobby, ops (current)")
            chat.type("/who lobby\r")
            who = await chat.wait_line("· in lobby:")
            assert sorted(who.removeprefix("· in lobby: ").split(", ")) == ["alice", "bob"]
            chat.type("in ops\r")
            await chat.wait_line("✓ #1  [ops] in ops")
            chat.type("/leave\r")
            await chat.wait_line("· left ops; talking in lobby")
            chat.type("/help\r/frob\r/room nowhere\r")
            await chat.wait_line("unknown command /frob")
            await chat.wait_line("· not in nowhere: /join nowhere")
            assert chat.saw("/who [ROOM]")
            assert chat.client.rooms == ["lobby"]
    finally:
        await bob.close()


async def test_reconnect_shown_and_queued_message_acked(server: FakeServer) -> None:
    async with running_chat(server, backoff=VISIBLE) as chat:
        await chat.wait_line("· joined lobby")
        await server.reject_handshakes(1000, 503)  # the server stays unreachable
        await server.drop_connections()
        await chat.wait_toolbar("reconnecting in ")
        await chat.wait_line("· connection lost (ConnectionLost: connection closed")
        await chat.wait_toolbar("offline · retry in ")
        await chat.wait_line("· cannot connect (HandshakeRejected: handshake rejected with HTTP")

        chat.type("sent while offline\r")
        await chat.wait_line("… pending  [lobby] sent while offline (offline: queued)")
        await chat.wait_toolbar("queued 1")
        assert not chat.saw("✓")

        await server.reject_handshakes(0, 503)  # back
        await chat.wait_line("✓ #1  [lobby] sent while offline")
        await chat.wait_toolbar(" connected │")
        assert "queued 0" in chat.toolbar()
    assert [e["text"] for e in server.room_events("lobby")] == ["sent while offline"]


async def test_failed_message_says_why(server: FakeServer) -> None:
    async with running_chat(server, backoff=VISIBLE, outbox_limit=1) as chat:
        await chat.wait_line("· joined lobby")
        await server.reject_handshakes(1000, 503)
        await server.drop_connections()
        await chat.wait_toolbar("offline")
        chat.type("first\r")
        await chat.wait_toolbar("queued 1")
        chat.type("second\r")
        await chat.wait_line("✗ OutboxFull: ")
        assert chat.saw("[lobby] second") and chat.controller is not None
        await server.reject_handshakes(0, 503)
        await chat.wait_line("✓ #1  [lobby] first")
        chat.type("/quit\r")
    assert chat.saw("· 1 message(s) not delivered")


async def test_typing_indicators_both_ways(server: FakeServer) -> None:
    bob = await connected(server, "bob", "lobby")
    seen: list[Event] = []
    bob.on("typing:start", seen.append)
    bob.on("typing:stop", seen.append)
    try:
        async with running_chat(server) as chat:
            await chat.wait_line("· joined lobby")
            bob.typing("lobby")
            await chat.wait_toolbar("bob is typing…")
            await bob.send("lobby", "done typing")
            await eventually(lambda: "typing" not in chat.toolbar(), what="typing to end")

            chat.type("hel")  # no Enter: still typing
            await eventually(lambda: [e.name for e in seen] == ["typing:start"], what="start")
            assert seen[0].data["userId"] == "alice"
            chat.type("lo\r")
            await eventually(lambda: len(seen) == 2, what="typing:stop")
            assert seen[1].name == "typing:stop"
            await chat.wait_line("✓ #2  [lobby] hello")
    finally:
        await bob.close()


async def test_ctrl_d_and_ctrl_c_exit_cleanly(server: FakeServer) -> None:
    for key in ("\x04", "\x03"):
        async with running_chat(server) as chat:
            await chat.wait_line("· joined lobby")
            chat.type(key)
            controller = await asyncio.wait_for(chat.task, 5)
            assert controller.fatal is None
        assert chat.lines[-1] == "· closed"


async def test_fatal_error_ends_the_chat(server: FakeServer) -> None:
    async with running_chat(server, token="not-a-token") as chat:
        controller = await asyncio.wait_for(chat.task, 5)
    assert isinstance(controller.fatal, Unauthorized)
    assert chat.saw("· closed: Unauthorized: ")
    assert not chat.saw("not-a-token")
