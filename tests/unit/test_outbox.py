"""Unit tests for rtclient.outbox: bounded by count and bytes, overflow policies, TTL."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtclient.errors import OutboxFull
from rtclient.outbox import Outbox, OutboxEntry


def entry(message_id: str, size: int = 10, expires_at: float | None = None) -> OutboxEntry:
    return OutboxEntry(
        message_id=message_id,
        kind="message",
        room="lobby",
        payload={"text": message_id},
        size=size,
        enqueued_at=0.0,
        expires_at=expires_at,
    )


def ids(entries: Any) -> list[str]:
    return [e.message_id for e in entries]


def snapshot(box: Outbox) -> tuple[list[str], int, int, list[str]]:
    return ids(box.entries()), box.bytes, box.in_flight_count(), ids(box.in_flight())


# -- construction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0, "max_bytes": 10, "overflow": "raise"},
        {"limit": 1, "max_bytes": 0, "overflow": "raise"},
        {"limit": 1, "max_bytes": 10, "overflow": "drop_newest"},
    ],
)
def test_invalid_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Outbox(**kwargs)


# -- order ----------------------------------------------------------------------------


def test_order_is_kept_through_send_and_requeue() -> None:
    box = Outbox(limit=10, max_bytes=1000, overflow="raise")
    a, b, c, d = (entry(x) for x in "abcd")
    for e in (a, b, c, d):
        assert box.add(e) == []
    assert ids(box.entries()) == ["a", "b", "c", "d"]
    box.mark_sent(c, 1.0)
    box.mark_sent(a, 2.0)
    assert ids(box.queued()) == ["b", "d"]
    assert ids(box.in_flight()) == ["a", "c"]
    assert ids(box.entries()) == ["a", "b", "c", "d"]
    box.requeue_all()
    assert ids(box.queued()) == ["a", "b", "c", "d"]
    assert list(box.in_flight()) == []
    assert len(box) == 4
    assert "a" in box and "z" not in box
    assert box.get("b") is b and box.get("z") is None


def test_entries_snapshot_survives_removal_while_iterating() -> None:
    box = Outbox(limit=10, max_bytes=1000, overflow="raise")
    for x in "abc":
        box.add(entry(x))
    for e in box.entries():
        box.remove(e.message_id)
    assert len(box) == 0 and box.bytes == 0


# -- raise policy -------------------------------------------------------------------------


def test_count_limit_with_raise_refuses_and_changes_nothing() -> None:
    box = Outbox(limit=2, max_bytes=1000, overflow="raise")
    box.add(entry("a"))
    box.add(entry("b"))
    before = snapshot(box)
    with pytest.raises(OutboxFull):
        box.add(entry("c"))
    assert snapshot(box) == before
    assert "c" not in box


def test_byte_limit_with_raise_refuses_and_changes_nothing() -> None:
    box = Outbox(limit=100, max_bytes=25, overflow="raise")
    box.add(entry("a", 10))
    box.add(entry("b", 10))
    before = snapshot(box)
    with pytest.raises(OutboxFull):
        box.add(entry("c", 6))
    assert snapshot(box) == before
    box.add(entry("d", 5))  # exactly max_bytes fits
    assert box.bytes == 25


def test_room_is_made_again_by_remove() -> None:
    box = Outbox(limit=1, max_bytes=1000, overflow="raise")
    box.add(entry("a"))
    with pytest.raises(OutboxFull):
        box.add(entry("b"))
    assert box.remove("a") is not None
    box.add(entry("b"))
    assert ids(box.entries()) == ["b"]


@pytest.mark.parametrize("overflow", ["raise", "drop_oldest"])
def test_entry_larger_than_max_bytes_raises(overflow: Any) -> None:
    box = Outbox(limit=10, max_bytes=50, overflow=overflow)
    with pytest.raises(OutboxFull):
        box.add(entry("huge", 51))
    box.add(entry("a", 20))
    box.add(entry("b", 20))
    before = snapshot(box)
    with pytest.raises(OutboxFull):
        box.add(entry("huge", 51))
    assert snapshot(box) == before  # drop_oldest did not drop anything for it


# -- drop_oldest policy ---------------------------------------------------------------------


def test_drop_oldest_by_count_drops_and_returns_oldest() -> None:
    box = Outbox(limit=3, max_bytes=1000, overflow="drop_oldest")
    a, b, c, d = entry("a", 1), entry("b", 2), entry("c", 3), entry("d", 4)
    for e in (a, b, c):
        box.add(e)
    dropped = box.add(d)
    assert dropped == [a]
    assert ids(box.entries()) == ["b", "c", "d"]
    assert box.bytes == 9


def test_drop_oldest_skips_in_flight_entries() -> None:
    box = Outbox(limit=3, max_bytes=1000, overflow="drop_oldest")
    a, b, c = entry("a"), entry("b"), entry("c")
    for e in (a, b, c):
        box.add(e)
    box.mark_sent(a, 1.0)
    dropped = box.add(entry("d"))
    assert ids(dropped) == ["b"]
    assert ids(box.entries()) == ["a", "c", "d"]
    assert box.in_flight_count() == 1
    assert box.bytes == 30


def test_drop_oldest_by_bytes_drops_just_enough() -> None:
    box = Outbox(limit=100, max_bytes=30, overflow="drop_oldest")
    for e in (entry("a", 10), entry("b", 10), entry("c", 5)):
        box.add(e)
    dropped = box.add(entry("d", 15))  # needs 15 bytes free: dropping a is enough
    assert ids(dropped) == ["a"]
    assert ids(box.entries()) == ["b", "c", "d"]
    assert box.bytes == 30


def test_drop_oldest_by_bytes_may_drop_several() -> None:
    box = Outbox(limit=100, max_bytes=30, overflow="drop_oldest")
    for e in (entry("a", 10), entry("b", 10), entry("c", 10)):
        box.add(e)
    dropped = box.add(entry("d", 25))
    assert ids(dropped) == ["a", "b", "c"]
    assert ids(box.entries()) == ["d"]
    assert box.bytes == 25


def test_drop_oldest_when_all_in_flight_raises_and_removes_nothing() -> None:
    box = Outbox(limit=2, max_bytes=1000, overflow="drop_oldest")
    a, b = entry("a"), entry("b")
    box.add(a)
    box.add(b)
    box.mark_sent(a, 1.0)
    box.mark_sent(b, 1.0)
    before = snapshot(box)
    with pytest.raises(OutboxFull):
        box.add(entry("c"))
    assert snapshot(box) == before


def test_drop_oldest_raises_when_droppable_entries_would_not_free_enough() -> None:
    box = Outbox(limit=100, max_bytes=30, overflow="drop_oldest")
    a, b, c = entry("a", 10), entry("b", 10), entry("c", 5)
    for e in (a, b, c):
        box.add(e)
    box.mark_sent(a, 1.0)
    box.mark_sent(b, 1.0)
    before = snapshot(box)
    with pytest.raises(OutboxFull):
        box.add(entry("d", 15))  # dropping c frees only 5
    assert snapshot(box) == before
    assert "c" in box


# -- in-flight accounting -------------------------------------------------------------------


def test_mark_sent_and_mark_queued_keep_in_flight_count() -> None:
    box = Outbox(limit=10, max_bytes=1000, overflow="raise")
    a, b = entry("a"), entry("b")
    box.add(a)
    box.add(b)
    box.mark_sent(a, 1.0)
    box.mark_sent(a, 2.0)  # a retransmission is not a second in-flight entry
    assert box.in_flight_count() == 1
    assert (a.in_flight, a.attempts, a.sent_at) == (True, 2, 2.0)
    box.mark_sent(b, 3.0)
    assert box.in_flight_count() == 2
    box.mark_queued(a)
    box.mark_queued(a)  # idempotent
    assert box.in_flight_count() == 1
    assert (a.in_flight, a.attempts, a.sent_at) == (False, 2, None)
    box.requeue_all()
    assert box.in_flight_count() == 0
    assert not b.in_flight and b.sent_at is None
    box.requeue_all()
    assert box.in_flight_count() == 0


def test_removing_in_flight_entry_decrements_count() -> None:
    box = Outbox(limit=10, max_bytes=1000, overflow="raise")
    a, b = entry("a", 7), entry("b", 11)
    box.add(a)
    box.add(b)
    box.mark_sent(a, 1.0)
    assert box.remove("a") is a
    assert box.in_flight_count() == 0
    assert box.bytes == 11
    assert box.remove("a") is None
    assert box.remove("nope") is None
    assert box.bytes == 11
    assert box.remove("b") is b
    assert (len(box), box.bytes) == (0, 0)


# -- TTL --------------------------------------------------------------------------------------


def test_expire_removes_exactly_the_expired() -> None:
    box = Outbox(limit=10, max_bytes=1000, overflow="raise")
    a, b, c, d = entry("a", 1, 5.0), entry("b", 2, None), entry("c", 4, 10.0), entry("d", 8, 15.0)
    for e in (a, b, c, d):
        box.add(e)
    box.mark_sent(c, 1.0)
    assert box.next_expiry() == 5.0
    assert box.expire(4.9) == []
    expired = box.expire(10.0)  # a deadline equal to now has passed
    assert expired == [a, c]
    assert ids(box.entries()) == ["b", "d"]
    assert box.bytes == 10
    assert box.in_flight_count() == 0
    assert box.next_expiry() == 15.0
    assert box.expire(14.0) == []
    assert box.expire(1e9) == [d]
    assert ids(box.entries()) == ["b"]
    assert box.next_expiry() is None


def test_next_expiry_empty() -> None:
    assert Outbox(limit=1, max_bytes=1, overflow="raise").next_expiry() is None


# -- invariants under random operations ---------------------------------------------------

operation = st.one_of(
    st.tuples(
        st.just("add"),
        st.integers(min_value=1, max_value=60),
        st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
    ),
    st.tuples(st.just("remove"), st.integers(min_value=0, max_value=30)),
    st.tuples(st.just("sent"), st.integers(min_value=0, max_value=30)),
    st.tuples(st.just("queued"), st.integers(min_value=0, max_value=30)),
    st.tuples(st.just("requeue_all")),
    st.tuples(st.just("expire"), st.floats(min_value=0, max_value=100)),
)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=60, max_value=200),
    st.sampled_from(["raise", "drop_oldest"]),
    st.lists(operation, max_size=60),
)
def test_accounting_invariants(limit: int, max_bytes: int, overflow: Any, ops: list[Any]) -> None:
    box = Outbox(limit=limit, max_bytes=max_bytes, overflow=overflow)
    made = 0
    for op in ops:
        current = list(box.entries())
        if op[0] == "add":
            made += 1
            new = entry(f"m{made}", op[1], op[2])
            before = snapshot(box)
            try:
                dropped = box.add(new)
            except OutboxFull:
                assert snapshot(box) == before
            else:
                assert new.message_id in box
                assert all(not e.in_flight and e.message_id not in box for e in dropped)
                if overflow == "raise":
                    assert dropped == []
                survivors = [e for e in current if e not in dropped] + [new]
                assert list(box.entries()) == survivors
        elif current and op[0] == "remove":
            box.remove(current[op[1] % len(current)].message_id)
        elif current and op[0] == "sent":
            box.mark_sent(current[op[1] % len(current)], 1.0)
        elif current and op[0] == "queued":
            box.mark_queued(current[op[1] % len(current)])
        elif op[0] == "requeue_all":
            box.requeue_all()
        elif op[0] == "expire":
            expired = box.expire(op[1])
            assert all(e.expires_at is not None and e.expires_at <= op[1] for e in expired)
            assert all(e.expires_at is None or e.expires_at > op[1] for e in box.entries())
        entries = list(box.entries())
        assert box.bytes == sum(e.size for e in entries)
        assert box.in_flight_count() == sum(e.in_flight for e in entries)
        assert len(box) == len(entries) <= limit
        assert box.bytes <= max_bytes
        deadlines = [e.expires_at for e in entries if e.expires_at is not None]
        assert box.next_expiry() == min(deadlines, default=None)
