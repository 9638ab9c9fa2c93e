"""Edge cases of the session core found in review: each was a hang, a loop or a crash."""

from __future__ import annotations

from typing import Any

import pytest

from rtclient.events import ConnectionState, ErrorEvent, Event, Gap
from rtclient.journal import Removed
from rtclient.session import Completed, Session


def welcome(s: Session, **extra: Any) -> None:
    s.receive({"type": "connected", "payload": {"userId": "me", "epoch": "e1", **extra}}, 0)


def ack(s: Session, rid: str, payload: dict[str, Any], t: float = 0.0) -> None:
    s.receive({"type": "ack", "id": rid, "payload": payload}, t)


def joined(s: Session, room: str = "a", head: int = 5) -> None:
    s.connecting()
    s.connection_opened()
    s.join(room, 0)
    welcome(s)
    (join,) = s.data_to_send()
    ok = {"success": True, "roomId": room, "members": ["me"], "epoch": "e1", "lastEventId": head}
    ack(s, join["id"], ok)
    s.outcomes()


def hole(s: Session) -> str:
    """Cursor at 5, event 7 arrives: the room syncs. Returns the sync request id."""
    msg = {"roomId": "a", "eventId": 7, "epoch": "e1", "text": "seven"}
    s.receive({"type": "chat:message", "payload": msg}, 1)
    (sync,) = [e for e in s.data_to_send() if e["type"] == "sync:messages"]
    return str(sync["id"])


def test_leaving_the_last_recovering_room_goes_live() -> None:
    s = Session()
    s.connecting()
    s.connection_opened()
    s.join("a", 0)
    s.join("b", 0)
    welcome(s)
    joins = s.data_to_send()
    ok = {"success": True, "roomId": "a", "members": [], "epoch": "e1", "lastEventId": 0}
    ack(s, joins[0]["id"], ok)
    s.leave("b", 0)  # b's join still in flight
    assert s.state is ConnectionState.CONNECTED
    s.send("a", "hello", 1)
    assert [e["type"] for e in s.data_to_send()] == ["room:leave", "chat:send"]


def test_join_of_a_syncing_room_completes() -> None:
    s = Session()
    joined(s)
    hole(s)
    key = s.join("a", 1)
    assert [o.key for o in s.outcomes() if isinstance(o, Completed)] == [key]


@pytest.mark.parametrize("limits", [None, [], "big", {"maxMessageSize": "x"}])
def test_a_strange_welcome_never_crashes(limits: object) -> None:
    s = Session()
    s.connecting()
    s.connection_opened()
    welcome(s, limits=limits)
    assert s.state is ConnectionState.CONNECTED
    s.send_direct("bob", "hi", 1)  # flushing must not trip over the limits either
    assert [e["type"] for e in s.data_to_send()] == ["dm:send"]


@pytest.mark.parametrize(
    "reply",
    [
        # (A refusal for load, INTERNAL or RATE_LIMIT, is asked again a bounded number
        # of times first: tests/unit/test_session_sync_busy.py.)
        {"success": False, "error": {"code": "BAD_REQUEST", "message": "no such cursor"}},
        {"success": True, "roomId": "a", "epoch": "e1", "events": [], "more": False},
    ],
    ids=["sync-failed", "sync-empty"],
)
def test_a_hole_the_sync_cannot_fill_is_a_gap_not_a_loop(reply: dict[str, Any]) -> None:
    s = Session()
    joined(s)
    ack(s, hole(s), reply, 1)
    assert [e for e in s.data_to_send() if e["type"] == "sync:messages"] == []
    out = s.outcomes()
    gaps = [o for o in out if isinstance(o, Gap)]
    assert [(g.reason, g.after_event_id, g.resumed_at) for g in gaps] == [("unavailable", 5, 7)]
    assert [o.text for o in out if isinstance(o, Event)] == ["seven"]
    assert s.rooms["a"].last_event_id == 7
    assert len([o for o in out if isinstance(o, ErrorEvent)]) == (0 if reply["success"] else 1)


def test_retransmissions_back_off() -> None:
    s = Session(ack_timeout=10.0)
    s.connecting()
    s.connection_opened()
    welcome(s)
    s.quality.ack_rtt(0.02)  # a fast link: the RTO sits at the 1 s floor
    s.send_direct("bob", "slow", 0.0)
    s.data_to_send()
    sends = []
    t = 0.0
    while t < 20.0:
        t = round(t + 0.1, 1)
        s.tick(t)
        if s.data_to_send():
            sends.append(t)
    assert sends == [1.0, 3.0, 7.0, 15.0]  # waits of 1, 2, 4, 8 s (capped at 10)


def test_an_expired_message_leaves_the_store() -> None:
    s = Session()
    s.track_changes = True
    s.connecting()
    message_id = s.send_direct("bob", "hi", 0.0, ttl=1.0)
    s.store_changes()
    s.tick(5.0)
    assert s.store_changes() == [Removed(message_id)]


def test_an_ack_without_event_id_settles_the_send_instead_of_looping() -> None:
    s = Session()
    s.connecting()
    s.connection_opened()
    welcome(s)
    message_id = s.send_direct("bob", "hi", 0)
    s.data_to_send()
    ack(s, message_id, {"success": True})
    (done,) = [o for o in s.outcomes() if isinstance(o, Completed)]
    assert done.key == message_id and done.result.event_id is None
    s.tick(100)
    assert s.data_to_send() == []


def test_a_huge_retry_after_is_capped() -> None:
    s = Session()
    joined(s)
    message_id = s.send("a", "x", 0)
    s.data_to_send()
    error = {"code": "RATE_LIMIT", "message": "", "retryAfter": 10**400}
    ack(s, message_id, {"success": False, "error": error})
    deadline = s.next_deadline()
    assert deadline is not None and deadline <= 300.0


def test_a_drain_notice_is_remembered_for_this_connection_only() -> None:
    s = Session()
    s.endpoint = "ws://a/ws"
    joined(s)
    notice = {"type": "server:draining", "payload": {"retryAfter": 1, "reason": "draining"}}
    s.receive(notice, 1)
    assert s.drain_notice and s.stats()["drain_notices"] == 1
    (event,) = [o for o in s.outcomes() if isinstance(o, Event)]
    assert (event.name, event.data) == ("server:draining", notice["payload"])
    s.endpoint = "ws://b/ws"
    s.connection_lost(ConnectionError("1012"), 0.0)
    (change,) = s.outcomes()
    assert change.new is ConnectionState.RECONNECTING and change.endpoint == "ws://b/ws"  # type: ignore[union-attr]
    s.connection_opened()
    assert not s.drain_notice  # the next connection starts without it
