"""Unit tests for rtclient.ids: UUIDv7 message ids."""

from __future__ import annotations

import time
import uuid

from rtclient.ids import new_message_id

N = 1000


def test_ids_are_unique_ordered_uuid7() -> None:
    before_ms = time.time_ns() // 1_000_000
    ids = [new_message_id() for _ in range(N)]
    assert len(set(ids)) == N
    assert ids == sorted(ids)  # creation order is sort order (as strings)
    parsed = [uuid.UUID(i) for i in ids]
    assert [u.int for u in parsed] == sorted(u.int for u in parsed)
    for text, u in zip(ids, parsed, strict=True):
        assert u.version == 7
        assert u.variant == uuid.RFC_4122
        assert len(text) == 36
        assert str(u) == text  # canonical lowercase form
    first_ms = parsed[0].int >> 80  # the 48-bit Unix-ms timestamp leads
    assert before_ms <= first_ms <= before_ms + 60_000


def test_ids_are_strings() -> None:
    assert isinstance(new_message_id(), str)
    assert new_message_id() != new_message_id()
