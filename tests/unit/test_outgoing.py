"""The write side of a connection (rtclient/outgoing.py) and the Flag it is woken with."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rtclient._flag import Flag
from rtclient._outgoing import Outgoing
from rtclient.errors import ConnectionLost
from rtclient.events import ErrorEvent
from rtclient.session import Session
from rtclient.testing import wait_until

from .sim import SimServer


class Wire:
    """A connection whose ``send`` can be held (a full socket buffer) or can fail."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.open = asyncio.Event()
        self.open.set()
        self.lost = False

    async def send(self, envelope: dict[str, Any]) -> None:
        if self.lost:
            raise ConnectionLost(1006, "")
        if envelope.get("type") == "chat:send" and envelope["payload"]["text"] == "bad":
            raise TypeError("cannot encode")
        self.frames.append(envelope)  # handed to the transport first, as websockets does…
        await self.open.wait()  # …then waits for the buffer to drain

    def texts(self) -> list[str]:
        return [f["payload"]["text"] for f in self.frames if f["type"] == "chat:send"]


def live_session(features: list[str] | None = None) -> Session:
    session, server = Session(max_in_flight=100), SimServer()
    session.connecting()
    server.open(session)
    if features is not None:
        server.wire[0]["payload"]["features"] = features
    server.deliver(session, 0.0)
    session.join("a", 0.0)
    server.deliver(session, 0.0)
    session.outcomes()
    return session


def outgoing(session: Session, wire: Wire, reports: list[ErrorEvent] | None = None) -> Outgoing:
    return Outgoing(
        wire,  # type: ignore[arg-type]
        session,
        batchable=False,
        batch_max=1,
        batch_wait=0.0,
        report=(reports if reports is not None else []).append,
        counters={"batches": 0},
    )


async def test_flush_writes_everything_in_order_and_is_free_again() -> None:
    session, wire = live_session(), Wire()
    out = outgoing(session, wire)
    for i in range(5):
        session.send("a", f"m{i}", 1.0)
    assert out.inline
    await out.flush()
    assert wire.texts() == [f"m{i}" for i in range(5)]
    assert not out.busy and out.unsent == [] and not session.has_data_to_send()


async def test_a_writer_cancelled_on_a_full_buffer_leaves_the_rest_for_the_next() -> None:
    session, wire = live_session(), Wire()
    out = outgoing(session, wire)
    for i in range(4):
        session.send("a", f"m{i}", 1.0)
    wire.open.clear()  # the socket buffer is full: the first write waits
    caller = asyncio.create_task(out.flush())
    await wait_until(lambda: wire.texts() == ["m0"])  # handed over, waiting for the buffer
    assert out.busy and not out.inline  # others leave the writing to this writer
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert not out.busy
    assert wire.texts() == ["m0"]  # handed over before the wait: not lost, not repeated
    assert [e["payload"]["text"] for e in out.unsent] == ["m1", "m2", "m3"]
    session.send("a", "m4", 2.0)
    wire.open.set()
    await out.flush()  # the next writer: first what was taken, then the session's
    assert wire.texts() == ["m0", "m1", "m2", "m3", "m4"]


async def test_one_round_leaves_what_came_meanwhile_to_the_next_writer() -> None:
    session, wire = live_session(), Wire()
    out = outgoing(session, wire)
    session.send("a", "mine", 1.0)
    wire.open.clear()  # a slow link: the caller's own write waits for the buffer
    caller = asyncio.create_task(out.flush(once=True))
    await wait_until(lambda: wire.texts() == ["mine"])  # handed over, waiting for the buffer
    for i in range(3):
        session.send("a", f"other{i}", 1.0)  # others queue while it waits
    wire.open.set()
    await caller
    assert wire.texts() == ["mine"]  # it returned instead of writing the others' frames
    assert not out.busy and session.has_data_to_send()
    await out.flush()  # the writer task's part: everything, in order
    assert wire.texts() == ["mine", "other0", "other1", "other2"]


async def test_a_lost_connection_ends_the_flush_quietly() -> None:
    session, wire = live_session(), Wire()
    out = outgoing(session, wire)
    session.send("a", "m0", 1.0)
    session.send("a", "m1", 1.0)
    wire.lost = True
    await out.flush()  # the reader reports the loss; the session resends on the next one
    assert wire.frames == [] and out.unsent == [] and not out.busy


async def test_an_unencodable_envelope_is_reported_and_the_rest_still_goes() -> None:
    session, wire = live_session(), Wire()
    reports: list[ErrorEvent] = []
    out = outgoing(session, wire, reports)
    for text in ("m0", "bad", "m2"):
        session.send("a", text, 1.0)
    await out.flush()
    assert wire.texts() == ["m0", "m2"]
    assert [r.code for r in reports] == ["ENCODE"]


async def test_batching_only_when_the_server_offers_it() -> None:
    wire = Wire()

    def batching(session: Session) -> Outgoing:
        return Outgoing(
            wire,  # type: ignore[arg-type]
            session,
            batchable=True,
            batch_max=8,
            batch_wait=0.0,
            report=[].append,
            counters={"batches": 0},
        )

    assert batching(live_session()).inline  # the sim server's welcome lists no "batch"
    session = live_session(features=["batch"])
    out = batching(session)
    assert not out.inline  # batches are made by the writer task, which may linger
    session.send("a", "m0", 1.0)
    session.send("a", "m1", 1.0)
    await out.flush()
    assert [f["type"] for f in wire.frames] == ["batch"]


def waiting(flag: Flag) -> int:
    """How many tasks wait for ``flag`` (white box: its waiter list)."""
    return len(flag._waiters or ())


async def test_flag_is_an_event_without_a_deque() -> None:
    flag = Flag()
    assert not flag.is_set()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await wait_until(lambda: waiting(flag) == 3)
    assert not any(w.done() for w in waiters)
    waiters[0].cancel()
    await wait_until(lambda: waiting(flag) == 2)
    flag.set()
    await asyncio.wait_for(asyncio.gather(*waiters[1:]), 1.0)
    assert waiters[0].cancelled()
    await asyncio.wait_for(flag.wait(), 1.0)  # set: returns at once
    flag.clear()
    late = asyncio.create_task(flag.wait())
    await wait_until(lambda: waiting(flag) == 1)
    assert not late.done()  # clear() affects later waits
    flag.set()
    flag.set()  # idempotent
    await asyncio.wait_for(late, 1.0)
    assert "set" in repr(flag)
