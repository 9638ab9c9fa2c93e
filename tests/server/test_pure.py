"""The pure building blocks, with time passed in: log retention, dedupe, rate limit."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from fake_server import requests
from fake_server.auth import TokenAuthority
from fake_server.config import ServerConfig
from fake_server.dedupe import DedupeTable, Entry, digest
from fake_server.envelope import Request
from fake_server.errors import ErrorCode, RequestError
from fake_server.eventlog import EventLog, LogStore
from fake_server.faults import FaultState
from fake_server.hub import Hub
from fake_server.ratelimit import RateLimiter, TokenBucket
from fake_server.stats import Counters


def add(log: EventLog, at: float) -> None:
    log.append({"eventId": log.next_event_id(), "timestamp": at})


def test_retention_by_age() -> None:
    store = LogStore(max_count=100, max_age=10.0)
    log = store.for_append("r", now=0.0)
    for t in (0.0, 5.0, 9.0):
        add(log, t)
    store.for_append("r", now=12.0)  # drops the event of t=0
    assert [e["eventId"] for e in log.events()] == [2, 3]
    assert log.dropped_through == 1
    page = log.page(after=0, limit=10, same_epoch=True)
    assert page.truncated and [e["eventId"] for e in page.events] == [2, 3]
    store.for_append("r", now=100.0)
    page = log.page(after=2, limit=10, same_epoch=True)
    assert page.truncated and page.events == [] and page.last_event_id == 3


def test_event_ids_must_be_consecutive() -> None:
    log = EventLog("r")
    with pytest.raises(ValueError):
        log.append({"eventId": 2, "timestamp": 0.0})


def test_new_store_has_a_new_epoch() -> None:
    assert LogStore(max_count=1, max_age=1).epoch != LogStore(max_count=1, max_age=1).epoch


def test_dedupe_ttl_and_bound() -> None:
    table = DedupeTable(ttl=10.0, max_entries=2)
    for i, key in enumerate(("a", "b", "c")):
        table.put("u", key, Entry("r", digest(key), {}, stored_at=float(i)))
    assert table.get("u", "a", now=3.0) is None  # pushed out by the bound
    assert table.get("u", "b", now=3.0) is not None
    assert table.get("u", "b", now=11.5) is None  # stored at 1.0, ttl 10
    assert table.get("u", "c", now=11.5) is not None
    assert table.get("other", "c", now=11.5) is None


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2.0, burst=2, now=0.0)
    assert bucket.take(0.0) == 0.0 and bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0
    limiter = RateLimiter(rate=1.0, burst=1)
    assert limiter.take("a", 0.0) == 0.0 and limiter.take("b", 0.0) == 0.0
    assert limiter.take("a", 0.0) > 0


def test_rate_limiter_forgets_refilled_buckets() -> None:
    """A bucket per user ever seen would grow for the server's lifetime: a full bucket
    is the same as none, so the limiter drops those as it grows."""
    limiter = RateLimiter(rate=10.0, burst=20)
    for n in range(10_000):
        limiter.take(f"user-{n}", 0.0)
    for n in range(30_000):  # other users, an hour later: the old buckets are full again
        limiter.take(f"later-{n}", 3600.0)
    assert len(limiter) == 30_000  # the first 10,000 are forgotten
    # Forgetting changes nothing: an emptied bucket is kept, a refilled one is full.
    for _ in range(20):
        assert limiter.take("hot", 3600.0) == 0.0
    for n in range(5_000):
        limiter.take(f"more-{n}", 3600.0)
    assert limiter.take("hot", 3600.0) > 0


def test_a_short_page_of_a_long_log_copies_only_its_events() -> None:
    """A sync asks for ``limit`` events: a page of one from a 10,000-event log must not
    copy the whole log first (a sync flood from the cursor 0 would)."""
    log = EventLog("r")
    for n in range(10_000):
        add(log, float(n))
    tracemalloc.start()
    try:
        page = log.page(after=0, limit=1, same_epoch=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [e["eventId"] for e in page.events] == [1] and page.more
    assert peak < 64 * 1024  # the whole log, copied, is megabytes


class _Peer:
    """A hub peer that drops what it is sent."""

    close_requested: tuple[int, str] | None = None

    def send(self, envelope: dict[str, Any], *, tag: str | None = None) -> None:
        pass

    def close(self, code: int, reason: str) -> None:
        pass

    def abort(self) -> None:
        pass

    def in_flight(self, tag: str) -> int:
        return 0


class _Timers:
    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timers:
        return self

    def cancel(self) -> None:
        pass


def test_the_dedupe_table_does_not_keep_message_texts() -> None:
    """Message texts leave memory with the log: the dedupe table (100,000 entries by
    default) keeps a digest to detect a reused id, not up to 8,000 characters each."""
    config = ServerConfig(secret="s", retention_count=1, rate_burst=1000)
    authority = TokenAuthority("s", leeway=0.0)
    hub = Hub(
        config, authority=authority, faults=FaultState(), counters=Counters(), scheduler=_Timers()
    )
    principal = authority.verify(
        authority.issue("alice", now=time.time(), ttl=60.0), now=time.time()
    )
    conn = hub.attach(_Peer(), principal)
    hub.handle_request(conn, Request("room:join", "j", {"roomId": "lobby"}))
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for n in range(200):
            text = str(n) * (8000 // len(str(n)))  # a new 8,000-character string each time
            hub.handle_request(
                conn, Request("chat:send", f"m{n}", {"roomId": "lobby", "text": text})
            )
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert hub.counters["messages_committed"] == 200 and len(hub.dedupe) == 200
    assert after - before < 800_000  # the texts alone are 1.6 MB
    # A reused id with another text is still told apart from a resend.
    again = Request("chat:send", "m7", {"roomId": "lobby", "text": "another text"})
    with pytest.raises(RequestError) as info:
        requests.dispatch(hub, conn, again)
    assert info.value.code is ErrorCode.IDEMPOTENCY_CONFLICT
    resend = Request("chat:send", "m7", {"roomId": "lobby", "text": "7" * 8000})
    reply = requests.dispatch(hub, conn, resend)
    assert reply is not None and reply["payload"]["duplicate"] is True
