"""The sans-I/O session core, driven by hand: no sockets, no clock."""

from __future__ import annotations

from typing import Any

import pytest

from rtclient.errors import (
    ClientClosed,
    Forbidden,
    MessageDropped,
    MessageExpired,
    NotJoined,
    OutboxFull,
    RequestRejected,
)
from rtclient.events import Ack, ConnectionState, ErrorEvent, Event, Gap, StateChanged
from rtclient.session import Completed, Failed, InvalidState, Session, join_key

from .sim import SimServer


def online(session: Session, server: SimServer, now: float = 0.0) -> None:
    """Connect (first time or again) and run the recovery plan to the end."""
    if session.state is ConnectionState.IDLE:
        session.connecting()
    server.open(session)
    server.deliver(session, now)


def outputs(session: Session, kind: type) -> list[Any]:
    return [o for o in session.outcomes() if isinstance(o, kind)]


def texts(events: list[Any]) -> list[str]:
    return [e.text for e in events if isinstance(e, Event) and e.name == "chat:message"]


def test_recovery_plan_order_rejoin_then_sync_then_flush() -> None:
    session, server = Session(), SimServer()
    online(session, server)
    session.join("a", 0)
    session.join("b", 0)
    server.deliver(session)
    server.drop()
    session.connection_lost(ConnectionError(), 0.0)
    session.send("a", "queued", 1.0)
    server.post("a", "missed")
    session.outcomes()
    session.connection_opened()
    server.connected = True
    session.receive({"type": "connected", "payload": {"userId": "me"}}, 2.0)
    first = session.data_to_send()
    # Rooms are rejoined in join order, and nothing else goes out before the join acks.
    assert [(e["type"], e["payload"]["roomId"]) for e in first] == [
        ("room:join", "a"),
        ("room:join", "b"),
    ]
    for envelope in first:
        server.handle(envelope)
    server.wire.pop(0)  # hold back a's join ack: b's ack alone must not flush the outbox
    session.receive(server.wire.pop(0), 2.0)
    assert [e["type"] for e in session.data_to_send()] == []
    server.wire[:0] = [
        {
            "type": "ack",
            "id": first[0]["id"],
            "payload": {"success": True, "roomId": "a", "epoch": "e1", "lastEventId": 1},
        }
    ]
    session.receive(server.wire.pop(0), 2.0)
    sync = session.data_to_send()
    assert [e["type"] for e in sync] == ["sync:messages"]
    assert sync[0]["payload"]["lastEventId"] == 0
    server.handle(sync[0])
    session.receive(server.wire.pop(), 2.0)
    flush = session.data_to_send()
    assert [e["type"] for e in flush] == ["chat:send"]
    assert session.state is ConnectionState.CONNECTED
    events = session.outcomes()
    assert texts(events) == ["missed"]
    states = [o.new for o in events if isinstance(o, StateChanged)]
    assert states == [ConnectionState.RECOVERING, ConnectionState.CONNECTED]


def test_first_join_starts_cursor_at_the_room_head() -> None:
    session, server = Session(), SimServer()
    server.post("a", "history")
    online(session, server)
    session.join("a", 0)
    server.deliver(session)
    assert texts(session.outcomes()) == []
    server.post("a", "live")
    server.deliver(session)
    events = outputs(session, Event)
    assert [(e.text, e.event_id, e.replayed, e.sender) for e in events] == [
        ("live", 2, False, "other")
    ]
    assert session.rooms["a"].last_event_id == 2


def test_sync_pages_until_more_is_false_and_cursor_advances() -> None:
    session, server = Session(sync_page_size=3), SimServer(page_limit=3)
    online(session, server)
    session.join("a", 0)
    server.deliver(session)
    server.drop()
    session.connection_lost(ConnectionError(), 0.0)
    for i in range(8):
        server.post("a", f"m{i}")
    session.outcomes()
    server.open(session)
    server.deliver(session)
    events = outputs(session, Event)
    assert [e.text for e in events] == [f"m{i}" for i in range(8)]
    assert all(e.replayed for e in events)
    assert session.counters["syncs"] == 3  # pages of 3, 3, 2
    assert session.rooms["a"].last_event_id == 8


def test_live_event_racing_a_sync_page_is_held_and_delivered_once() -> None:
    session, server = Session(), SimServer(page_limit=10)
    online(session, server)
    session.join("a", 0)
    server.deliver(session)
    server.drop()
    session.connection_lost(ConnectionError(), 0.0)
    server.post("a", "missed")
    session.outcomes()
    server.open(session)
    session.receive(server.wire.pop(0), 0)  # the welcome: the join goes out
    for envelope in session.data_to_send():
        server.handle(envelope)
    session.receive(server.wire.pop(0), 0)  # the join ack: the sync request goes out...
    sync = session.data_to_send()
    assert [e["type"] for e in sync] == ["sync:messages"]
    # ...and before its reply, a live event (id 2) arrives, then the sync page (ids 1, 2).
    server.post("a", "live")
    for envelope in sync:
        server.handle(envelope)
    server.deliver(session)
    events = outputs(session, Event)
    assert [(e.text, e.replayed) for e in events] == [("missed", True), ("live", True)]
    assert session.counters["duplicates_dropped"] == 1


def test_duplicated_and_reordered_live_events_are_delivered_once_in_order() -> None:
    session, server = Session(), SimServer(page_limit=10)
    online(session, server)
    session.join("a", 0)
    server.deliver(session)
    server.connected = False  # collect frames without sending them
    for text in ("one", "two", "three"):
        server.post("a", text)
    frames = [{"type": "chat:message", "payload": e} for e in server.logs["a"]]  # ids 1, 2, 3
    server.connected = True
    server.joined.add("a")
    for frame in (frames[0], frames[0], frames[2], frames[1], frames[2]):
        session.receive(frame, 0)
        server.take(session)  # the hole (3 before 2) makes the session sync
    server.deliver(session)
    assert texts(session.outcomes()) == ["one", "two", "three"]
    assert session.rooms["a"].last_event_id == 3


def test_lost_ack_is_retransmitted_with_the_same_id_and_reported_duplicate() -> None:
    session, server = Session(ack_timeout=5.0), SimServer(lose_acks=1)
    online(session, server)
    session.join("a", 0)
    server.deliver(session)
    message_id = session.send("a", "hello", 10.0)
    server.deliver(session, 10.0)
    assert session.next_deadline() == 15.0
    session.tick(14.9)
    assert session.data_to_send() == []
    session.tick(15.0)
    server.deliver(session, 15.0)
    acks = [o.result for o in session.outcomes() if isinstance(o, Completed)]
    assert acks[-1:] == [Ack(message_id, "a", 1, None, True)]
    assert len(server.logs["a"]) == 1
    assert session.counters["resent"] == 1


def test_unacked_messages_are_resent_in_order_after_reconnect() -> None:
    session, server = Session(), SimServer()
    online(session, server)
    session.join("a", 0)
    server.deliver(session)
    ids = [session.send("a", f"m{i}", 0) for i in range(5)]
    server.take(session)  # all five committed...
    server.drop()  # ...but every ack is lost with the connection
    session.connection_lost(ConnectionError(), 0.1)
    assert [e.in_flight for e in session.outbox.entries()] == [False] * 5
    online(session, server, 1.0)
    acks = [o.result for o in session.outcomes() if isinstance(o, Completed) and o.key in ids]
    assert [a.message_id for a in acks] == ids
    assert all(a.duplicate for a in acks)
    assert [e["text"] for e in server.logs["a"]] == [f"m{i}" for i in range(5)]


def test_offline_sends_wait_for_recovery() -> None:
    session, server = Session(), SimServer()
    session.connecting()
    session.join("a", 0)
    session.send("a", "early", 0)
    assert session.data_to_send() == []
    online(session, server)
    assert [e["text"] for e in server.logs["a"]] == ["early"]


def test_send_to_a_room_not_joined_raises() -> None:
    with pytest.raises(NotJoined):
        Session().send("nowhere", "x", 0)


def test_outbox_full_raise_policy() -> None:
    session = Session(outbox_limit=2)
    session.join("a", 0)
    session.send("a", "1", 0)
    session.send("a", "2", 0)
    with pytest.raises(OutboxFull):
        session.send("a", "3", 0)
    assert len(session.outbox) == 2


def test_outbox_drop_oldest_fails_the_dropped_future_and_reports_it() -> None:
    session = Session(outbox_limit=2, overflow="drop_oldest")
    session.join("a", 0)
    first = session.send("a", "1", 0)
    session.send("a", "2", 0)
    session.send("a", "3", 0)
    out = session.outcomes()
    failed = [o for o in out if isinstance(o, Failed)]
    assert [(f.key, type(f.error)) for f in failed] == [(first, MessageDropped)]
    assert any(isinstance(o, ErrorEvent) and o.code == "MESSAGE_DROPPED" for o in out)
    assert [e.payload["text"] for e in session.outbox.entries()] == ["2", "3"]
    assert session.counters["dropped"] == 1


def test_ttl_expiry_says_whether_it_may_have_been_delivered() -> None:
    session, server = Session(ack_timeout=100), SimServer(lose_acks=1)
    session.join("a", 0)
    never = session.send("a", "never sent", 0, ttl=1.0)
    assert session.next_deadline() == 1.0
    session.tick(1.0)
    (failed,) = outputs(session, Failed)
    assert failed.key == never
    assert isinstance(failed.error, MessageExpired) and not failed.error.maybe_delivered
    online(session, server, 2.0)
    sent = session.send("a", "sent", 2.0, ttl=1.0)
    server.deliver(session, 2.0)  # committed, ack lost
    session.tick(3.0)
    (failed,) = outputs(session, Failed)
    assert failed.key == sent and isinstance(failed.error, MessageExpired)
    assert failed.error.maybe_delivered
    assert session.counters["expired"] == 2


def test_rate_limit_reply_requeues_and_waits_retry_after() -> None:
    session, server = Session(), SimServer()
    online(session, server)
    session.join("a", 0)
    server.deliver(session)
    message_id = session.send("a", "x", 0)
    assert [e["id"] for e in session.data_to_send()] == [message_id]
    error = {"code": "RATE_LIMIT", "message": "slow down", "retryAfter": 2.0}
    session.receive(
        {"type": "ack", "id": message_id, "payload": {"success": False, "error": error}}, 0
    )
    assert session.data_to_send() == []
    assert session.next_deadline() == 2.0
    session.tick(2.0)
    assert [e["id"] for e in session.data_to_send()] == [message_id]
    assert session.counters["rate_limited"] == 1


def test_error_reply_fails_the_send_with_the_server_code() -> None:
    session, server = Session(), SimServer()
    online(session, server)
    session.join("a", 0)
    server.deliver(session)
    message_id = session.send("a", "x", 0)
    session.data_to_send()
    error = {"code": "BAD_REQUEST", "message": "text too long"}
    session.receive(
        {"type": "ack", "id": message_id, "payload": {"success": False, "error": error}}, 0
    )
    (failed,) = outputs(session, Failed)
    assert isinstance(failed.error, RequestRejected) and failed.error.code == "BAD_REQUEST"
    assert len(session.outbox) == 0


def test_forbidden_join_fails_and_the_room_is_forgotten() -> None:
    session = Session()
    session.connecting()
    session.connection_opened()
    session.receive({"type": "connected", "payload": {}}, 0)
    key = session.join("admin:x", 0)
    (join,) = session.data_to_send()
    error = {"code": "FORBIDDEN", "message": "admins only"}
    session.receive(
        {"type": "ack", "id": join["id"], "payload": {"success": False, "error": error}}, 0
    )
    (failed,) = outputs(session, Failed)
    assert failed.key == key and isinstance(failed.error, Forbidden)
    assert "admin:x" not in session.rooms


def test_truncated_sync_reports_a_gap_and_resumes() -> None:
    session, server = Session(), SimServer(page_limit=10)
    online(session, server)
    session.join("a", 0)
    server.deliver(session)
    server.post("a", "before")
    server.deliver(session)
    server.drop()
    session.connection_lost(ConnectionError(), 0)
    server.reset_log()
    server.post("a", "after reset")
    session.outcomes()
    online(session, server)
    out = session.outcomes()
    gaps = [o for o in out if isinstance(o, Gap)]
    assert gaps == [Gap("a", "epoch", 1, "e1", "e1'", 1)]
    assert texts(out) == ["after reset"]
    assert out.index(gaps[0]) < next(i for i, o in enumerate(out) if isinstance(o, Event))


def test_leave_forgets_the_room_and_fails_its_queued_messages() -> None:
    session = Session()
    session.join("a", 0)
    queued = session.send("a", "x", 0)
    session.leave("a", 0)
    out = session.outcomes()
    assert any(isinstance(o, Failed) and o.key == queued for o in out)
    assert "a" not in session.rooms and len(session.outbox) == 0


def test_malformed_frames_are_counted_and_never_raise() -> None:
    session, server = Session(), SimServer()
    online(session, server)
    for frame in (
        None,
        [],
        {"type": 3},
        {"type": "ack"},
        {"type": "chat:message", "payload": {"roomId": "a"}},
        {"type": "chat:message", "payload": "nope"},
        {"type": "ack", "id": "x", "payload": {"success": True}},
    ):
        session.receive(frame, 0)
    errors = outputs(session, ErrorEvent)
    assert len(errors) == 6 and session.counters["malformed"] == 6


def test_close_fails_everything_pending() -> None:
    session = Session()
    session.connecting()
    session.join("a", 0)
    message_id = session.send("a", "x", 0)
    session.closing()
    session.closed()
    failed = {o.key: o.error for o in outputs(session, Failed)}
    assert isinstance(failed[message_id], ClientClosed)
    assert isinstance(failed[join_key("a")], ClientClosed)
    assert session.state is ConnectionState.CLOSED
    with pytest.raises(ClientClosed):
        session.send("a", "y", 0)


def test_illegal_transitions_raise_and_a_stray_welcome_is_an_event() -> None:
    session = Session()
    with pytest.raises(InvalidState):
        session._set_state(ConnectionState.CONNECTED)
    session.connection_opened()
    session.receive({"type": "connected", "payload": {}}, 0)  # not connecting: an event
    assert session.state is ConnectionState.IDLE
    assert [o.name for o in outputs(session, Event)] == ["connected"]
