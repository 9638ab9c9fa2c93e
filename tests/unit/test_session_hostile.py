"""What the session core believes from a server that breaks docs/protocol.md (issue 13).

Each test is one misbehaviour: a sync page out of order or with a hole, an absurd
event id, events for rooms never joined, a restore larger than the outbox, a
success ack without an event id. No sockets, no clock.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from rtclient.errors import MessageDropped, OutboxFull
from rtclient.events import Ack, ConnectionState, ErrorEvent, Event, Gap
from rtclient.journal import Removed
from rtclient.outbox import OutboxEntry
from rtclient.session import Completed, Failed, Output, Session

Envelope = dict[str, Any]


def msg(event_id: int, room: str = "a", epoch: str = "e1") -> Envelope:
    return {"roomId": room, "eventId": event_id, "epoch": epoch, "text": f"m{event_id}"}


def ack(s: Session, rid: str, payload: Envelope) -> None:
    s.receive({"type": "ack", "id": rid, "payload": payload}, 1)


def live(s: Session, event: Envelope, name: str = "chat:message") -> None:
    s.receive({"type": name, "payload": event}, 1)


def joined(s: Session, head: int = 1, user: str = "me") -> None:
    """Connected, room "a" joined with its cursor at ``head``; outcomes drained."""
    s.connecting()
    s.connection_opened()
    s.join("a", 0)
    s.receive({"type": "connected", "payload": {"userId": user, "epoch": "e1"}}, 0)
    (join,) = s.data_to_send()
    ok = {"success": True, "roomId": "a", "members": [], "epoch": "e1", "lastEventId": head}
    ack(s, join["id"], ok)
    s.outcomes()


def reconnect(s: Session, head: int | None) -> None:
    """Drop the connection, reconnect; the join ack says the room's head is ``head``."""
    s.connection_lost(ConnectionError(), 0.0)
    s.connection_opened()
    s.receive({"type": "connected", "payload": {"userId": "me", "epoch": "e1"}}, 2)
    (join,) = s.data_to_send()
    ok = {"success": True, "roomId": "a", "members": [], "epoch": "e1", "lastEventId": head}
    if head is None:
        del ok["lastEventId"]
    ack(s, join["id"], ok)


def sync_request(s: Session) -> Envelope:
    (sync,) = [e for e in s.data_to_send() if e["type"] == "sync:messages"]
    return sync


def page(s: Session, events: list[Envelope], *, head: int | None, **extra: Any) -> int:
    """Answer the pending sync with ``events`` (more/truncated false unless given).

    Returns the ``lastEventId`` the sync asked from.
    """
    sync = sync_request(s)
    reply = {"success": True, "roomId": "a", "epoch": "e1", "events": events}
    reply.update({"more": False, "truncated": False, "lastEventId": head, **extra})
    ack(s, sync["id"], reply)
    return int(sync["payload"]["lastEventId"])


def sync_requests(s: Session) -> int:
    """How many sync requests the session has to send now."""
    return sum(e["type"] == "sync:messages" for e in s.data_to_send())


def hole(s: Session, first: int) -> None:
    """A live event past the cursor: the room starts a sync."""
    live(s, msg(first))


def ids(out: list[Output]) -> list[int | None]:
    return [o.event_id for o in out if isinstance(o, Event) and o.name == "chat:message"]


def of(out: list[Output], kind: type) -> list[Any]:
    return [o for o in out if isinstance(o, kind)]


# -- 4. bad sync pages ---------------------------------------------------------------


def test_an_out_of_order_page_is_delivered_in_order_and_reported() -> None:
    s = Session()
    joined(s, head=1)
    hole(s, 5)
    page(s, [msg(4), msg(2), msg(3)], head=5)
    out = s.outcomes()
    assert ids(out) == [2, 3, 4, 5]
    assert [e.code for e in of(out, ErrorEvent)] == ["SYNC_INCONSISTENT"]
    assert of(out, Gap) == []
    assert s.stats()["inconsistent_pages"] == 1 and s.stats()["duplicates_dropped"] == 0


def test_a_page_with_a_hole_is_asked_for_again_and_a_filled_hole_loses_nothing() -> None:
    s = Session()
    joined(s, head=1)
    hole(s, 5)
    page(s, [msg(2), msg(4)], head=5)  # skips 3 without saying truncated
    assert page(s, [msg(3), msg(4)], head=5) == 2  # asked again from the cursor
    out = s.outcomes()
    assert ids(out) == [2, 3, 4, 5]
    assert of(out, Gap) == []
    assert s.state is ConnectionState.CONNECTED


def test_a_hole_the_server_cannot_fill_is_a_gap_that_says_why() -> None:
    s = Session()
    joined(s, head=1)
    hole(s, 5)
    page(s, [msg(2), msg(4)], head=5)
    assert page(s, [msg(4)], head=5) == 2  # still no 3
    out = s.outcomes()
    assert ids(out) == [2, 4, 5]
    gaps = of(out, Gap)
    assert [(g.reason, g.after_event_id, g.resumed_at) for g in gaps] == [("inconsistent", 2, 4)]
    assert "SYNC_INCONSISTENT" in [e.code for e in of(out, ErrorEvent)]
    assert s.rooms["a"].last_event_id == 5 and s.state is ConnectionState.CONNECTED


def test_a_holey_page_with_more_continues_after_the_gap() -> None:
    s = Session()
    joined(s, head=1)
    hole(s, 9)
    page(s, [msg(3), msg(4)], head=9, more=True)  # 2 is missing
    assert page(s, [msg(3), msg(4)], head=9, more=True) == 1  # asked again: still missing
    assert page(s, [msg(5), msg(6), msg(7), msg(8)], head=9) == 4
    out = s.outcomes()
    assert ids(out) == [3, 4, 5, 6, 7, 8, 9]
    assert [(g.reason, g.after_event_id) for g in of(out, Gap)] == [("inconsistent", 1)]


def test_a_page_short_of_the_head_it_reports_is_asked_again() -> None:
    s = Session()
    joined(s, head=1)
    reconnect(s, head=4)  # the cursor is at 1: the session syncs
    page(s, [msg(2)], head=4)  # more: false, yet 3 and 4 are missing
    assert page(s, [msg(3), msg(4)], head=4) == 2
    out = s.outcomes()
    assert ids(out) == [2, 3, 4] and of(out, Gap) == []
    assert s.state is ConnectionState.CONNECTED


def test_a_tail_the_server_cannot_serve_is_a_gap() -> None:
    s = Session()
    joined(s, head=1)
    reconnect(s, head=4)
    page(s, [msg(2)], head=4)
    assert page(s, [], head=4) == 2
    out = s.outcomes()
    assert ids(out) == [2]
    gaps = of(out, Gap)
    assert [(g.reason, g.after_event_id, g.resumed_at) for g in gaps] == [("inconsistent", 2, None)]
    assert s.rooms["a"].last_event_id == 2  # a head no event backs is not believed
    live(s, msg(5))  # past the tail still missing: fetched first (not asked again)
    assert page(s, [], head=5) == 2
    out = s.outcomes()
    assert ids(out) == [5]
    gaps = of(out, Gap)
    assert [(g.reason, g.after_event_id, g.resumed_at) for g in gaps] == [("unavailable", 2, 5)]


def test_an_empty_page_that_says_more_is_asked_again_then_a_gap() -> None:
    s = Session()
    joined(s, head=1)
    reconnect(s, head=4)
    assert page(s, [], head=4, more=True) == 1  # no progress: not the end of the sync
    assert page(s, [], head=4, more=True) == 1  # asked again once, from the same cursor
    out = s.outcomes()
    assert ids(out) == []
    gaps = of(out, Gap)
    assert [(g.reason, g.after_event_id, g.resumed_at) for g in gaps] == [("inconsistent", 1, None)]
    assert [e.code for e in of(out, ErrorEvent)] == ["SYNC_INCONSISTENT"]
    assert sync_requests(s) == 0 and s.state is ConnectionState.CONNECTED


def test_an_empty_page_that_says_more_loses_nothing_when_asked_again() -> None:
    s = Session()
    joined(s, head=1)
    reconnect(s, head=4)
    page(s, [], head=4, more=True)
    assert page(s, [msg(2), msg(3), msg(4)], head=4) == 1
    out = s.outcomes()
    assert ids(out) == [2, 3, 4] and of(out, Gap) == []


def test_an_empty_page_that_says_more_without_a_head_is_asked_again_then_a_gap() -> None:
    s = Session()
    joined(s, head=1)
    reconnect(s, head=4)
    page(s, [], head=None, more=True)
    assert page(s, [], head=None, more=True) == 1
    gaps = of(s.outcomes(), Gap)
    assert [(g.reason, g.after_event_id, g.resumed_at) for g in gaps] == [("inconsistent", 1, None)]
    assert sync_requests(s) == 0


def test_a_missing_tail_is_a_gap_when_the_live_event_that_started_the_sync_was_in_the_page() -> (
    None
):
    s = Session()
    joined(s, head=1)
    hole(s, 3)  # 2 is missing: the session syncs, 3 held
    page(s, [msg(2), msg(3)], head=5)  # more: false, yet 4 and 5 are missing
    assert page(s, [], head=5) == 3  # asked again: still missing
    out = s.outcomes()
    assert ids(out) == [2, 3]
    gaps = of(out, Gap)
    assert [(g.reason, g.after_event_id, g.resumed_at) for g in gaps] == [("inconsistent", 3, None)]


def test_an_absurd_head_of_a_short_page_does_not_blind_the_room() -> None:
    s = Session()
    joined(s, head=1)
    reconnect(s, head=3)
    page(s, [msg(2), msg(3)], head=2**64 - 1)  # a head no event backs
    page(s, [], head=2**64 - 1)
    assert [g.reason for g in of(s.outcomes(), Gap)] == ["inconsistent"]
    live(s, msg(4))  # the real next event
    assert ids(s.outcomes()) == [4]


def test_a_missing_tail_is_reported_once_when_a_doubted_live_event_costs_another_sync() -> None:
    s = Session()
    joined(s, head=1)
    reconnect(s, head=4)
    live(s, msg(2**64 - 1))  # held while the room syncs
    page(s, [msg(2)], head=4)  # short: asked again
    page(s, [], head=4)  # still short: a gap; the held event is doubted: one more sync
    page(s, [], head=4)  # still nothing: the held event is dropped
    assert [e for e in s.data_to_send() if e["type"] == "sync:messages"] == []
    out = s.outcomes()
    gaps = of(out, Gap)
    assert [(g.reason, g.after_event_id, g.resumed_at) for g in gaps] == [("inconsistent", 2, None)]
    assert [e.code for e in of(out, ErrorEvent)] == ["SYNC_INCONSISTENT", "IMPLAUSIBLE_EVENT"]
    assert s.state is ConnectionState.CONNECTED


def test_a_page_that_contradicts_its_own_reply_is_not_believed() -> None:
    s = Session()
    joined(s, head=1)
    hole(s, 3)
    page(s, [msg(2), msg(2), msg(2**64 - 1), msg(3, epoch="other"), "junk"], head=3)
    out = s.outcomes()
    assert ids(out) == [2, 3]  # 3: the live one held during the sync
    (error,) = [e for e in of(out, ErrorEvent) if e.code == "SYNC_INCONSISTENT"]
    assert "repeated" in error.message and "epoch" in error.message and "head" in error.message
    assert s.rooms["a"].last_event_id == 3
    assert s.stats()["malformed"] == 1


# -- 5. one absurd event id ------------------------------------------------------------


def test_an_absurd_live_event_id_does_not_blind_the_room() -> None:
    s = Session()
    joined(s, head=3)
    live(s, msg(2**64 - 1))
    page(s, [], head=3)  # the server knows nothing past 3
    page(s, [], head=3)  # asked once more: still nothing
    out = s.outcomes()
    assert ids(out) == []
    (error,) = of(out, ErrorEvent)
    assert error.code == "IMPLAUSIBLE_EVENT"
    assert s.stats()["implausible_events"] == 1
    assert s.rooms["a"].last_event_id == 3 and s.state is ConnectionState.CONNECTED
    live(s, msg(4))
    assert ids(s.outcomes()) == [4]


def test_a_live_event_that_overtook_the_reply_is_fetched_not_dropped() -> None:
    s = Session()
    joined(s, head=3)
    hole(s, 6)
    page(s, [msg(4)], head=4)  # the reply was made before 5 and 6 were committed
    page(s, [msg(5), msg(6)], head=6)  # the second look finds them
    out = s.outcomes()
    assert ids(out) == [4, 5, 6]
    assert of(out, ErrorEvent) == [] and of(out, Gap) == []


def test_a_sync_reply_without_an_epoch_does_not_make_held_events_doubtful() -> None:
    s = Session()
    joined(s, head=3)
    hole(s, 5)
    page(s, [msg(4), msg(5)], head=5, epoch=None)  # the reply names no epoch; events do
    assert [e for e in s.data_to_send() if e["type"] == "sync:messages"] == []
    out = s.outcomes()
    assert ids(out) == [4, 5] and of(out, ErrorEvent) == []
    assert s.state is ConnectionState.CONNECTED and s.stats()["syncs"] == 1


def test_a_live_event_of_a_made_up_epoch_does_not_move_the_cursor() -> None:
    s = Session()
    joined(s, head=3)
    live(s, msg(1, epoch="bogus"))
    page(s, [], head=3)
    page(s, [], head=3)
    assert s.rooms["a"].epoch == "e1" and s.rooms["a"].last_event_id == 3
    live(s, msg(4))
    assert ids(s.outcomes()) == [4]


def test_a_join_ack_behind_the_cursor_resets_it_with_a_gap() -> None:
    s = Session()
    joined(s, head=3)
    s.rooms["a"].last_event_id = 2**64 - 1  # believed once (e.g. restored from a store)
    s.outcomes()
    reconnect(s, head=3)
    out = s.outcomes()
    gaps = of(out, Gap)
    assert [(g.reason, g.after_event_id) for g in gaps] == [("ahead", 3)]
    assert s.rooms["a"].last_event_id == 3 and s.state is ConnectionState.CONNECTED
    live(s, msg(4))
    assert ids(s.outcomes()) == [4]


def test_a_sync_head_behind_the_cursor_resets_it() -> None:
    s = Session()
    joined(s, head=3)
    s.rooms["a"].last_event_id = 2**64 - 1
    reconnect(s, head=None)  # a join ack without the head: the session syncs
    page(s, [], head=4)
    out = s.outcomes()
    assert [(g.reason, g.after_event_id) for g in of(out, Gap)] == [("ahead", 4)]
    live(s, msg(5))
    assert ids(s.outcomes()) == [5]


# -- 6. events for rooms never joined -------------------------------------------------------


def test_events_of_rooms_not_joined_are_counted_and_dropped_without_state() -> None:
    s = Session()
    joined(s, head=0)
    for i in range(2_000):
        live(s, msg(1, room=f"r{i}"))
    out = s.outcomes()
    assert ids(out) == []
    assert [e.code for e in of(out, ErrorEvent)] == ["NOT_JOINED_EVENT"]  # once
    assert s.stats()["foreign_events"] == 2_000
    assert list(s.rooms) == ["a"] and len(s._recent) == 0


def test_the_inbox_is_delivered_once_without_joining() -> None:
    s = Session()
    joined(s, head=0)
    dm = {**msg(7, room="user:me"), "to": "me", "from": "bob"}
    live(s, dm, "dm:message")
    live(s, dm, "dm:message")  # doubled frame
    live(s, {**dm, "eventId": 2**64 - 1}, "dm:message")  # an absurd id blinds nothing
    live(s, {**dm, "eventId": 8}, "dm:message")
    out = s.outcomes()
    assert [o.event_id for o in out if isinstance(o, Event)] == [7, 2**64 - 1, 8]
    assert s.stats()["duplicates_dropped"] == 1 and list(s.rooms) == ["a"]


def test_a_room_just_left_is_not_reported_as_a_server_error() -> None:
    s = Session()
    joined(s, head=0)
    s.leave("a", 1)
    live(s, msg(1))  # in flight before the server saw the leave
    out = s.outcomes()
    assert ids(out) == [] and of(out, ErrorEvent) == []


def test_memory_for_100000_foreign_rooms_stays_bounded() -> None:
    s = Session()
    joined(s, head=0)
    frames = [{"type": "chat:message", "payload": msg(1, room=f"r{i}")} for i in range(100_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for frame in frames:
            s.receive(frame, 1)
            s.outcomes()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000, f"{grown} bytes kept for rooms never joined"


# -- 13. restore larger than the outbox -------------------------------------------------


def entry(i: int) -> OutboxEntry:
    return OutboxEntry(f"m{i}", "chat:send", "a", {"roomId": "a", "text": str(i)}, 100, 0.0)


def test_a_restore_larger_than_the_outbox_reports_what_drop_oldest_dropped() -> None:
    s = Session(outbox_limit=3, overflow="drop_oldest")
    s.track_changes = True
    s.restore(["a"], {}, [entry(i) for i in range(5)])
    out = s.outcomes()
    assert [o.key for o in of(out, Failed)] == ["m0", "m1"]
    assert all(isinstance(o.error, MessageDropped) for o in of(out, Failed))
    assert [e.code for e in of(out, ErrorEvent)] == ["MESSAGE_DROPPED"] * 2
    assert s.store_changes() == [Removed("m0"), Removed("m1")]
    assert [e.message_id for e in s.outbox.entries()] == ["m2", "m3", "m4"]
    assert s.stats()["dropped"] == 2


def test_a_restore_larger_than_the_outbox_raises_clearly_and_restores_nothing() -> None:
    s = Session(outbox_limit=3)
    with pytest.raises(OutboxFull, match=r"outbox_limit=3.*drop_oldest"):
        s.restore(["a"], {}, [entry(i) for i in range(5)])
    assert len(s.outbox) == 0 and s.rooms == {}


# -- 18. a success ack without a usable event id ---------------------------------------------


@pytest.mark.parametrize("event_id", [None, "7", 7.5, True, [7]])
def test_a_success_ack_with_a_bad_event_id_settles_the_message(event_id: object) -> None:
    s = Session()
    joined(s, head=0)
    message_id = s.send("a", "hi", 1)
    s.data_to_send()
    ack(s, message_id, {"success": True, "roomId": "a", "eventId": event_id, "epoch": "e1"})
    out = s.outcomes()
    (done,) = of(out, Completed)
    assert done.result == Ack(message_id, "a", None, "e1", False)
    assert [e.code for e in of(out, ErrorEvent)] == ["MALFORMED"]
    assert s.stats()["malformed"] == 1 and s.stats()["acked"] == 1 and len(s.outbox) == 0
    s.tick(100)
    assert s.data_to_send() == []  # never sent again
