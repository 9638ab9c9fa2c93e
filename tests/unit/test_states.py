"""The state tables: every transition in one place, every other one raises InvalidState."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from rtclient import InvalidState, RtClientError
from rtclient.events import ConnectionState
from rtclient.rooms import Room, RoomPhase
from rtclient.session import Session
from rtclient.states import CONNECTION_TABLE, ROOM_TABLE, ConnectionMachine, move_room
from tests.unit.sim import SimServer

S = ConnectionState
P = RoomPhase


def test_invalid_state_is_part_of_the_one_exception_tree() -> None:
    assert issubclass(InvalidState, RtClientError)


def test_the_tables_cover_every_state_and_phase() -> None:
    assert set(CONNECTION_TABLE) == set(ConnectionState)
    assert set(ROOM_TABLE) == set(RoomPhase)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(S, S)))
def test_the_connection_moves_exactly_as_its_table_says(
    old: ConnectionState, new: ConnectionState
) -> None:
    machine = ConnectionMachine()
    machine.state = old
    if new in CONNECTION_TABLE[old]:
        changed = machine.move(new, delay=1.5)
        assert (changed.old, changed.new, changed.delay) == (old, new, 1.5)
        assert machine.state is new
    else:
        with pytest.raises(InvalidState, match=f"{old.name} to {new.name}"):
            machine.move(new)
        assert machine.state is old


@pytest.mark.parametrize(("old", "new"), list(itertools.product(P, P)))
def test_a_room_moves_exactly_as_its_table_says(old: RoomPhase, new: RoomPhase) -> None:
    room = Room("a", phase=old)
    if new in ROOM_TABLE[old]:
        move_room(room, new)
        assert room.phase is new
    else:
        with pytest.raises(InvalidState, match=f"room a: cannot go from {old.name}"):
            move_room(room, new)
        assert room.phase is old


def test_closed_is_final_and_live_needs_a_welcome() -> None:
    assert CONNECTION_TABLE[S.CLOSED] == frozenset()
    assert S.CONNECTED not in CONNECTION_TABLE[S.CONNECTING]  # recovery comes first
    assert P.LIVE not in ROOM_TABLE[P.OFFLINE]  # a room is rejoined before it is live


def test_welcomed_and_live_need_an_open_connection() -> None:
    machine = ConnectionMachine()
    machine.move(S.CONNECTING)
    assert not machine.awaiting_welcome  # no connection open yet
    machine.open = True
    assert machine.awaiting_welcome and not machine.welcomed
    machine.move(S.RECOVERING)
    assert machine.welcomed and not machine.live
    machine.move(S.CONNECTED)
    assert machine.live
    machine.open = False
    assert not machine.welcomed and not machine.live


def test_a_recovery_walks_rooms_through_their_table() -> None:
    """A reconnect with a hole: OFFLINE → JOINING → SYNCING → LIVE, then OFFLINE."""
    session, server = Session(), SimServer()
    session.connecting()
    server.open(session)
    server.deliver(session, 0.0)
    session.join("a", 0.0)
    assert session.rooms["a"].phase is P.JOINING
    server.deliver(session, 0.0)
    assert session.rooms["a"].phase is P.LIVE
    session.connection_lost(ConnectionError("x"), 0.1)
    assert session.rooms["a"].phase is P.OFFLINE
    assert session.state is S.RECONNECTING
    server.drop()
    server.post("a", "missed while away")  # the rejoin finds the cursor behind the head
    server.open(session)
    server.deliver(session, 1.0, limit=2)  # the welcome, then the join ack
    assert session.rooms["a"].phase is P.SYNCING
    server.deliver(session, 1.0)
    assert session.rooms["a"].phase is P.LIVE
    assert session.state is S.CONNECTED


def _hostile_frame(r: random.Random, pending: list[str]) -> dict[str, Any]:
    room = r.choice(["a", "b", "user:me", "zz"])
    epoch = r.choice(["e1", None, "other"])
    if pending and r.random() < 0.6:  # an answer to something the client asked
        events = [
            {"eventId": r.randint(-1, 12), "roomId": room, "epoch": r.choice(["e1", None, "x"])}
            for _ in range(r.randint(0, 3))
        ]
        payload: dict[str, Any] = {
            "success": r.random() < 0.8,
            "lastEventId": r.choice([None, r.randint(0, 12), "7"]),
            "epoch": epoch,
            "events": r.choice([events, events, None]),
            "more": r.random() < 0.4,
            "truncated": r.random() < 0.1,
            "members": ["x"],
            "eventId": r.randint(0, 9),
        }
        if r.random() < 0.3:
            code = r.choice(["RATE_LIMIT", "INTERNAL", "FORBIDDEN", "X"])
            payload.update(success=False, error={"code": code, "retryAfter": r.random()})
        return {"type": "ack", "id": r.choice(pending), "payload": payload}
    name = r.choice(["chat:message", "dm:message", "connected", "user:joined", "error"])
    payload = {"roomId": room, "eventId": r.randint(-1, 15), "epoch": epoch, "userId": "me"}
    return {"type": name, "payload": payload}


@pytest.mark.parametrize("seed", range(100))
def test_no_frame_of_a_peer_reaches_a_forbidden_transition(seed: int) -> None:
    """Peer input never raises InvalidState: the tables are checked before they move.

    Frames that answer the client's own requests (join and sync acks with made-up pages,
    refusals), logged events and welcomes at any time, between drops and reconnects.
    Seeded draws (hypothesis' own randoms rarely reached SYNCING → SYNCING).
    """
    r = random.Random(seed)
    session = Session(max_in_flight=4, sync_page_size=3)
    session.gate_on_welcome = r.random() < 0.3
    session.connecting()
    now, opened = 0.0, False
    for _ in range(120):
        now += r.random()
        op = r.random()
        if op < 0.04 and session.state is not S.CLOSED:
            session.connection_lost(ConnectionError("x"), 1.0)
            opened = False
        elif op < 0.1 and not opened and session.state in (S.CONNECTING, S.RECONNECTING):
            session.connection_opened()
            opened = True
        elif op < 0.15:
            session.join(r.choice(["a", "b"]), now)
        elif op < 0.17:
            session.leave(r.choice(["a", "b"]), now)
        elif op < 0.22 and "a" in session.rooms:
            session.send("a", "hi", now)
        elif op < 0.24:
            session.open_gate(now)
        elif op < 0.27:
            session.tick(now)
        else:
            pending = sorted(session._sender.requests) + [
                e.message_id for e in session.outbox.entries()
            ]
            session.receive(_hostile_frame(r, pending), now)
        session.data_to_send()
        session.outcomes()
