"""Unit tests: a sync refused for load is asked again, not given up as a gap at once."""

from __future__ import annotations

from typing import Any

from rtclient.events import ErrorEvent, Event, Gap
from rtclient.recovery import SYNC_RETRIES
from rtclient.session import Session

from .test_session_edges import ack, hole, joined


def busy(s: Session, request_id: str, now: float, retry_after: Any = 0.2) -> None:
    error = {
        "code": "INTERNAL",
        "reason": "STORE_BUSY",
        "message": "busy",
        "retryAfter": retry_after,
    }
    ack(s, request_id, {"success": False, "error": error}, now)


def page(s: Session, request_id: str, now: float) -> None:
    events = [
        {"roomId": "a", "eventId": 6, "epoch": "e1", "text": "six"},
        {"roomId": "a", "eventId": 7, "epoch": "e1", "text": "seven"},
    ]
    ack(s, request_id, {"success": True, "events": events, "epoch": "e1", "more": False}, now)


def texts(s: Session) -> list[str]:
    return [o.text for o in s.outcomes() if isinstance(o, Event) and o.name == "chat:message"]


def test_a_busy_sync_is_asked_again_after_the_hint_and_fills_the_hole() -> None:
    s = Session()
    joined(s)
    first = hole(s)
    busy(s, first, 1.0)
    outcomes = s.outcomes()
    assert not [o for o in outcomes if isinstance(o, Gap | ErrorEvent)]
    assert s.stats()["syncs_deferred"] == 1
    assert not [e for e in s.data_to_send() if e["type"] == "sync:messages"]  # held
    s.tick(1.25)  # past retryAfter
    (again,) = [e for e in s.data_to_send() if e["type"] == "sync:messages"]
    assert again["payload"]["lastEventId"] == 5
    page(s, str(again["id"]), 1.3)
    assert texts(s) == ["six", "seven"]
    assert s.stats()["gaps"] == 0


def test_a_sync_refused_for_load_again_and_again_is_a_gap_in_the_end() -> None:
    s = Session()
    joined(s)
    request_id, now = hole(s), 1.0
    for _ in range(SYNC_RETRIES):
        busy(s, request_id, now, retry_after=0.1)
        deadline = s.next_deadline()
        assert deadline is not None and deadline - now <= 60.0  # every wait is capped
        now = deadline
        s.tick(now)
        (sync,) = [e for e in s.data_to_send() if e["type"] == "sync:messages"]
        request_id = str(sync["id"])
    busy(s, request_id, now)
    outcomes = s.outcomes()
    assert [o.code for o in outcomes if isinstance(o, ErrorEvent)] == ["SYNC_FAILED"]
    assert [g.reason for g in outcomes if isinstance(g, Gap)] == ["unavailable"]
    assert s.stats()["syncs_deferred"] == SYNC_RETRIES


def test_a_sync_refused_for_good_is_not_asked_again() -> None:
    s = Session()
    joined(s)
    request_id = hole(s)
    error = {"code": "FORBIDDEN", "message": "no"}
    ack(s, request_id, {"success": False, "error": error}, 1.0)
    assert [g.reason for g in s.outcomes() if isinstance(g, Gap)] == ["unavailable"]
    assert s.stats()["syncs_deferred"] == 0
