"""The idempotency table: (user, message id) → the committed message.

Pure: time comes in as ``now``.  Entries live ``ttl`` seconds; the table is also
bounded by count, oldest first.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

__all__ = ["DedupeTable", "Entry", "digest"]


def digest(text: str) -> bytes:
    """What an entry keeps of a message's text: enough to tell another text apart."""
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Entry:
    """What a message id was first used for, and the ack it got."""

    room_id: str
    text_digest: bytes
    """:func:`digest` of the text (the text itself leaves memory with the log)."""
    ack: dict[str, Any]
    stored_at: float


class DedupeTable:
    """Remembers committed messages by (user id, message id)."""

    __slots__ = ("_entries", "_max", "_ttl")

    def __init__(self, *, ttl: float, max_entries: int) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: str, message_id: str, *, now: float) -> Entry | None:
        """Return the live entry for this key, or ``None``."""
        self._expire(now)
        return self._entries.get((user_id, message_id))

    def put(self, user_id: str, message_id: str, entry: Entry) -> None:
        """Remember ``entry``; the oldest entries go when the table is full."""
        self._entries[(user_id, message_id)] = entry
        self._entries.move_to_end((user_id, message_id))
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def _expire(self, now: float) -> None:
        # Insertion order is storage order, so expired entries are at the front.
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.stored_at > now - self._ttl:
                break
            del self._entries[key]
