"""A caller writes its own request (rtclient/outgoing.py): what a slow socket must not break."""

from __future__ import annotations

import asyncio
from typing import Any

from fake_server import FakeServer
from rtclient.testing import wait_until
from rtclient.transports import WebSocketTransport

from .conftest import MakeClient


class SlowDrain:
    """A WebSocket transport whose socket buffer can be made 'full'.

    As websockets does, ``send`` hands the frame to the socket first (the server gets
    it and answers), then waits for the buffer to drain (here: until ``drained``).
    """

    def __init__(self) -> None:
        self.inner = WebSocketTransport()
        self.drained = asyncio.Event()
        self.drained.set()
        self.holding = 0

    async def connect(self, url: str, *, token: str | None, open_timeout: float) -> Any:
        conn = await self.inner.connect(url, token=token, open_timeout=open_timeout)
        outer = self

        class Conn:
            async def send(self, envelope: dict[str, Any]) -> None:
                await conn.send(envelope)
                outer.holding += 1
                try:
                    await outer.drained.wait()
                finally:
                    outer.holding -= 1

            def __getattr__(self, name: str) -> Any:
                return getattr(conn, name)

        return Conn()


async def test_an_acked_send_is_not_reported_as_ack_timeout_while_the_socket_drains(
    server: FakeServer, make_client: MakeClient
) -> None:
    wire = SlowDrain()
    alice = await make_client("alice", rooms=("lobby",), transport=wire)
    wire.drained.clear()  # a slow network: the buffer stays above its high-water mark
    acked_before = alice.stats()["acked"]
    try:
        ack = await alice.send("lobby", "hello", timeout=1.0)
    finally:
        acked_before_raise = alice.stats()["acked"]
        wire.drained.set()
    # The ack came well within the second while the caller was still in its own write
    # (draining): it gets the ack, not AckTimeout "(still queued)".
    assert acked_before_raise == acked_before + 1
    assert ack.event_id == server.room_events("lobby")[-1]["eventId"]


async def test_a_caller_is_not_kept_writing_other_callers_frames(
    server: FakeServer, make_client: MakeClient
) -> None:
    wire = SlowDrain()
    alice = await make_client("alice", rooms=("lobby",), transport=wire)
    wire.drained.clear()
    first = asyncio.create_task(alice.send("lobby", "first"))
    await wait_until(lambda: wire.holding == 1)  # first's task is draining its frame
    await wait_until(lambda: len(server.room_events("lobby")) == 1)
    # Another producer keeps the session busy: the first caller, whose message was
    # acknowledged, must return instead of writing the others' frames on a slow link.
    for i in range(3):
        alice.send_nowait("lobby", f"other{i}")
    wire.drained.set()
    wire.drained.clear()
    await wait_until(lambda: wire.holding == 1)
    try:
        await asyncio.wait_for(asyncio.shield(first), 1.0)
    finally:
        wire.drained.set()
