"""The state tables: every transition in one place, every other one raises InvalidState."""

from __future__ import annotations

import itertools

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
