"""The store changes a session records are typed records, in the order they happened."""

from __future__ import annotations

from rtclient.journal import CursorForgotten, CursorSet, Enqueued, Removed, RoomsSet
from rtclient.session import Session
from tests.unit.sim import SimServer


def test_a_room_life_is_journaled_as_typed_records() -> None:
    session, server = Session(), SimServer()
    session.track_changes = True
    session.connecting()
    server.open(session)
    server.deliver(session, 0.0)
    session.join("a", 0.0)
    server.deliver(session, 0.0)  # joined at the head: the cursor baseline
    message_id = session.send("a", "hi", 0.0)
    server.deliver(session, 0.0)  # acked
    session.leave("a", 0.0)
    changes = session.store_changes()
    assert changes[0] == RoomsSet(("a",))
    assert changes[1] == CursorSet("a", "e1", 0)
    assert isinstance(changes[2], Enqueued) and changes[2].entry.message_id == message_id
    assert changes[3:] == [Removed(message_id), RoomsSet(()), CursorForgotten("a")]
    assert session.store_changes() == []


def test_nothing_is_journaled_unless_asked() -> None:
    session = Session()
    session.connecting()
    session.join("a", 0.0)
    session.send("a", "hi", 0.0)
    assert session.store_changes() == []
