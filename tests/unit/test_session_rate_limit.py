"""Unit tests: the session paces its sends after a rate limit (time passed in)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from rtclient.events import ConnectionState
from rtclient.outcomes import Failed
from rtclient.session import HOLD_MIN, PACE_MARGIN, Session

from .sim import SimServer
from .test_session import online


def limit(session: Session, message_id: str, now: float, retry_after: Any) -> None:
    error = {"code": "RATE_LIMIT", "message": "slow down", "retryAfter": retry_after}
    session.receive(
        {"type": "ack", "id": message_id, "payload": {"success": False, "error": error}}, now
    )


def ack(session: Session, message_id: str, event_id: int, now: float) -> None:
    payload = {"success": True, "eventId": event_id, "roomId": "a"}
    session.receive({"type": "ack", "id": message_id, "payload": payload}, now)


def joined_session(**options: Any) -> Session:
    session, server = Session(**options), SimServer()
    online(session, server)
    session.join("a", 0)
    server.deliver(session)
    return session


def test_after_a_rate_limit_messages_go_one_at_a_time_a_retry_after_apart() -> None:
    session = joined_session()
    ids = [session.send("a", f"m{i}", 0) for i in range(5)]
    assert [e["id"] for e in session.data_to_send()] == ids  # the whole window at once
    ack(session, ids[0], 1, 0.0)
    for message_id in ids[1:]:
        limit(session, message_id, 0.0, 0.1)
    assert session.data_to_send() == []
    pace = 0.1 * PACE_MARGIN
    sent = []
    now = 0.0
    for _ in range(20):
        deadline = session.next_deadline()
        if deadline is None:
            break
        now = deadline
        session.tick(now)
        for envelope in session.data_to_send():
            sent.append((now, envelope["id"]))
            ack(session, envelope["id"], len(sent) + 1, now)
    # Each limited message once more, in order, one per pace.
    assert [m for _, m in sent] == ids[1:]
    times = [t for t, _ in sent]
    assert times[0] >= 0.1  # held for retryAfter
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([pace] * 3)
    assert session.counters["resent"] == 4


@pytest.mark.parametrize("retry_after", [86400, 1e300, float("inf"), -1, "soon", None, True])
def test_a_rate_limit_hint_is_capped_or_ignored(retry_after: Any) -> None:
    session = joined_session(max_server_delay=30.0)
    message_id = session.send("a", "x", 0)
    session.data_to_send()
    limit(session, message_id, 0.0, retry_after)
    expected = 30.0 if retry_after in (86400, 1e300) else 0.5  # unreadable: 0.5 s
    assert session.next_deadline() == pytest.approx(expected)


@pytest.mark.parametrize("code", ["RATE_LIMIT", "INTERNAL"])
def test_a_server_that_says_retry_after_0_every_time_gets_no_resend_storm(code: str) -> None:
    session = joined_session()
    message_id = session.send("a", "x", 0)
    assert [e["id"] for e in session.data_to_send()] == [message_id]
    error = {"code": code, "message": "slow down", "retryAfter": 0}
    reply = {"type": "ack", "id": message_id, "payload": {"success": False, "error": error}}
    now, sends = 0.0, 1
    for _ in range(1000):  # every send is refused at once, with "retry now"
        session.receive(reply, now)
        session.tick(now)
        sent = session.data_to_send()
        while not sent and now <= 2.0:
            deadline = session.next_deadline()
            assert deadline is not None and deadline > now  # it neither stalls nor spins
            now = deadline
            session.tick(now)
            sent = session.data_to_send()
        if now > 2.0:
            break
        assert [e["id"] for e in sent] == [message_id]  # never doubled, never lost
        sends += 1
    # Each send is held at least HOLD_MIN: a bounded rate, not one per round trip.
    assert sends <= 2.0 / HOLD_MIN + 2  # the first send and one of float rounding


def test_a_hold_that_outlives_the_connection_is_a_new_deadline_once_live_again() -> None:
    # The caller's timer only learns of deadlines through take_new_deadline (and
    # next_deadline, which leaves the hold out while offline): a hold still running
    # when the session is live again must be announced, or the queue waits for ever.
    session, server = Session(), SimServer()
    online(session, server)
    session.join("a", 0)
    server.deliver(session)
    message_id = session.send("a", "x", 0)
    session.data_to_send()
    limit(session, message_id, 0.0, 5.0)
    assert session.take_new_deadline() == pytest.approx(5.0)
    session.connection_lost(ConnectionError(), 0.1)
    assert session.next_deadline() is None  # offline: the caller's timer sleeps
    online(session, server, 1.0)
    assert session.state is ConnectionState.CONNECTED
    assert message_id in [e.message_id for e in session.outbox.entries()]  # held
    assert session.take_new_deadline() == pytest.approx(5.0)


def test_one_rate_limit_does_not_slow_a_steady_sender_for_ever() -> None:
    # One RATE_LIMIT (retryAfter 1 s), then a server that takes everything: a bot
    # sending 5 messages a second must get back to its own rate, not stay paced at
    # one a second with a backlog that only grows.
    session = joined_session()
    first = session.send("a", "m", 0)
    session.data_to_send()
    limit(session, first, 0.0, 1.0)
    now, step, event_id = 0.0, 0.01, 1
    while now < 30.0:
        now = round(now + step, 2)
        if round(now * 100) % 20 == 0:  # every 0.2 s
            session.send("a", f"m{now}", now)
        session.tick(now)
        for envelope in session.data_to_send():
            event_id += 1
            ack(session, envelope["id"], event_id, now)
    assert len(session.outbox) <= 5


def test_a_rate_limited_rejoin_keeps_the_room() -> None:
    session = joined_session()
    session.send("a", "queued", 0)
    session.data_to_send()
    session.connection_lost(ConnectionError("dropped"), 0.0)
    session.connection_opened()
    session.receive({"type": "connected", "payload": {"userId": "me", "epoch": "e1"}}, 1)
    (rejoin,) = [e for e in session.data_to_send() if e["type"] == "room:join"]
    limit(session, rejoin["id"], 1, 0.5)
    assert "a" in session.rooms  # a transient refusal: the room is joined again later
    assert len(session.outbox) == 1  # and what was queued for it is still queued
    assert session.stats()["rejoins_deferred"] == 1
    assert not [e for e in session.data_to_send() if e["type"] == "room:join"]  # held
    session.tick(1.6)  # past retryAfter: the join goes again
    (again,) = [e for e in session.data_to_send() if e["type"] == "room:join"]
    assert again["payload"] == {"roomId": "a"}


def test_a_rejoin_refused_for_good_forgets_the_room() -> None:
    session = joined_session()
    session.connection_lost(ConnectionError("dropped"), 0.0)
    session.connection_opened()
    session.receive({"type": "connected", "payload": {"userId": "me", "epoch": "e1"}}, 1)
    (rejoin,) = [e for e in session.data_to_send() if e["type"] == "room:join"]
    session.receive(
        {
            "type": "ack",
            "id": rejoin["id"],
            "payload": {"success": False, "error": {"code": "FORBIDDEN", "message": "no"}},
        },
        1,
    )
    assert "a" not in session.rooms


def test_a_first_join_refused_for_load_fails_to_the_application() -> None:
    session = joined_session()  # welcomed, room "a" joined
    key = session.join("b", 1)
    (join,) = [e for e in session.data_to_send() if e["type"] == "room:join"]
    limit(session, join["id"], 1, 0.5)
    assert "b" not in session.rooms  # the application asked: it is told, and may retry
    assert any(isinstance(o, Failed) and o.key == key for o in session.outcomes())
