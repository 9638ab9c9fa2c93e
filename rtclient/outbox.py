"""The outbox: every message the application sent that the server has not acknowledged.

Pure data structure, no I/O, time passed in. Entries stay in enqueue order from
``add`` until ``remove``; being in flight is a flag, so after a disconnect
``requeue_all`` puts everything back as it was and the flush goes out in the
original order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import OutboxFull

__all__ = ["Outbox", "OutboxEntry", "Overflow"]

Overflow = Literal["raise", "drop_oldest"]


@dataclass(slots=True, eq=False)
class OutboxEntry:
    """One unacknowledged message. ``message_id`` is also its request id on the wire."""

    message_id: str
    kind: str
    room: str
    payload: Any
    size: int
    enqueued_at: float
    expires_at: float | None = None
    attempts: int = 0
    in_flight: bool = False
    sent_at: float | None = field(default=None)
    raw: bool = False
    """A generic emit: ``payload`` is the application's data as is, any ack is accepted."""
    wants_ack: bool = True
    """False: fire-and-forget, done once written to a live connection."""
    seq: int = 0
    """Enqueue order, set by the outbox."""


class Outbox:
    """Unacknowledged messages, bounded by count and by bytes.

    When full, ``overflow="raise"`` refuses the new message with :class:`OutboxFull`;
    ``"drop_oldest"`` removes the oldest messages that are not in flight and returns
    them so the caller can fail their futures (never silently).
    """

    def __init__(self, *, limit: int, max_bytes: int, overflow: Overflow) -> None:
        if limit < 1 or max_bytes < 1:
            raise ValueError("outbox limits must be positive")
        if overflow not in ("raise", "drop_oldest"):
            raise ValueError(f"unknown overflow policy {overflow!r}")
        self.limit = limit
        self.max_bytes = max_bytes
        self.overflow: Overflow = overflow
        self._entries: dict[str, OutboxEntry] = {}
        # Unsent and in-flight entries, each in enqueue order, so that a flush never
        # walks the whole outbox to find what is left to send.
        self._queued: dict[str, OutboxEntry] = {}
        self._flight: dict[str, OutboxEntry] = {}
        self._bytes = 0
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._entries

    @property
    def bytes(self) -> int:
        """Total size of the queued payloads."""
        return self._bytes

    def get(self, message_id: str) -> OutboxEntry | None:
        """Return the entry for ``message_id``, if it is still unacknowledged."""
        return self._entries.get(message_id)

    def add(self, entry: OutboxEntry) -> list[OutboxEntry]:
        """Append ``entry``; return the entries dropped to make room (``drop_oldest``).

        Raises :class:`OutboxFull` when the policy is ``raise`` and there is no room,
        or when nothing can be dropped (everything is in flight), or when the entry
        alone is larger than ``max_bytes``.
        """
        if entry.message_id in self._entries:
            raise ValueError(f"message id {entry.message_id} is already queued")
        if entry.size > self.max_bytes:
            raise OutboxFull(f"message of {entry.size} bytes exceeds the outbox's {self.max_bytes}")
        dropped: list[OutboxEntry] = []
        if self._over(entry.size):
            if self.overflow == "raise":
                raise OutboxFull(
                    f"outbox full ({len(self._entries)} messages, {self._bytes} bytes)"
                )
            count, size = len(self._entries), self._bytes
            for old in self._entries.values():
                if count + 1 <= self.limit and size + entry.size <= self.max_bytes:
                    break
                if not old.in_flight:
                    dropped.append(old)
                    count, size = count - 1, size - old.size
            if count + 1 > self.limit or size + entry.size > self.max_bytes:
                raise OutboxFull("outbox full and every queued message is in flight")
            for old in dropped:
                self.remove(old.message_id)
        self._seq += 1
        entry.seq = self._seq
        self._entries[entry.message_id] = entry
        if entry.in_flight:
            self._flight[entry.message_id] = entry
        else:
            self._queued[entry.message_id] = entry
        self._bytes += entry.size
        return dropped

    def remove(self, message_id: str) -> OutboxEntry | None:
        """Remove and return the entry (acknowledged, failed, expired or cancelled)."""
        entry = self._entries.pop(message_id, None)
        if entry is not None:
            self._bytes -= entry.size
            self._queued.pop(message_id, None)
            self._flight.pop(message_id, None)
        return entry

    def mark_sent(self, entry: OutboxEntry, now: float) -> None:
        """Record that ``entry`` was transmitted at ``now`` and awaits its ack."""
        if not entry.in_flight:
            entry.in_flight = True
            del self._queued[entry.message_id]
            last = next(reversed(self._flight.values()), None)
            self._flight[entry.message_id] = entry
            if last is not None and last.seq > entry.seq:  # sent out of order: rare
                self._flight = {k: e for k, e in self._entries.items() if e.in_flight}
        entry.attempts += 1
        entry.sent_at = now

    def mark_queued(self, entry: OutboxEntry) -> None:
        """Put ``entry`` back in the queue (rate limited, or its connection is gone)."""
        if entry.in_flight:
            entry.in_flight = False
            del self._flight[entry.message_id]
            self._queued[entry.message_id] = entry
            # Back in enqueue order (a rate-limited message goes before later ones).
            self._queued = {k: e for k, e in self._entries.items() if not e.in_flight}
        entry.sent_at = None

    @property
    def has_queued(self) -> bool:
        """Whether anything waits to be transmitted (O(1): checked on every frame)."""
        return bool(self._queued)

    def queued(self) -> Iterator[OutboxEntry]:
        """Entries waiting to be transmitted, in enqueue order."""
        return iter(self._queued.values())

    def in_flight(self) -> Iterator[OutboxEntry]:
        """Entries transmitted and waiting for their ack, in enqueue order."""
        return iter(self._flight.values())

    def in_flight_count(self) -> int:
        """How many entries are in flight."""
        return len(self._flight)

    def entries(self) -> Iterator[OutboxEntry]:
        """All entries in enqueue order."""
        return iter(list(self._entries.values()))

    def requeue_all(self) -> None:
        """Mark every entry as not in flight (the connection carrying them is gone)."""
        for entry in self._entries.values():
            entry.in_flight = False
            entry.sent_at = None
        self._flight.clear()
        self._queued = dict(self._entries)

    def expire(self, now: float) -> list[OutboxEntry]:
        """Remove and return the entries whose TTL has passed."""
        expired = [
            e for e in self._entries.values() if e.expires_at is not None and e.expires_at <= now
        ]
        for entry in expired:
            self.remove(entry.message_id)
        return expired

    def next_expiry(self) -> float | None:
        """The earliest TTL deadline, if any."""
        deadlines = [e.expires_at for e in self._entries.values() if e.expires_at is not None]
        return min(deadlines, default=None)

    def _over(self, extra: int) -> bool:
        return len(self._entries) + 1 > self.limit or self._bytes + extra > self.max_bytes
