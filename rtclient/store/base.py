"""What a durable store keeps, how it fails, and the :class:`Store` contract.

A store keeps what a bot needs to pick up where it left off after its own process
restarts: the unacknowledged outbox (in enqueue order), the joined rooms (in join
order) and each room's cursor. rtclient's message ids are idempotent, so resending a
restored message that the previous process had already delivered is harmless.

The errors, all under :class:`rtclient.errors.RtClientError`::

    StoreError             the store failed or is not open; a file that is not usable
    ├── StoreCorrupt       not an SQLite database, not an rtclient store, or damaged
    ├── StoreVersionError  written by a schema version this rtclient does not know
    └── StoreLocked        another store (any process, or this one) has the file open
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import StoreCorrupt, StoreError, StoreLocked, StoreVersionError
from ..outbox import OutboxEntry

__all__ = [
    "Cursor",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreLocked",
    "StoreVersionError",
    "StoredMessage",
    "StoredState",
    "clock_offset",
]


def clock_offset() -> float:
    """``time.time() - time.monotonic()``: add it to a monotonic time to get wall-clock time.

    The session counts time on the monotonic clock, which restarts with the process;
    the store keeps wall-clock (Unix epoch) seconds. Take the offset once per process
    and pass it to :meth:`StoredMessage.from_entry` and :meth:`StoredMessage.to_entry`.
    """
    return time.time() - time.monotonic()


@dataclass(frozen=True, slots=True)
class Cursor:
    """A room's position in the server's log (``None`` parts: no position yet)."""

    epoch: str | None
    last_event_id: int | None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One outbox message as the store keeps it; times are wall-clock epoch seconds."""

    message_id: str
    kind: str
    room: str
    payload: dict[str, Any]
    size: int
    enqueued_at: float
    expires_at: float | None = None
    attempts: int = 0

    @classmethod
    def from_entry(cls, entry: OutboxEntry, *, clock_offset: float) -> StoredMessage:
        """Convert a session outbox entry (monotonic times) to wall-clock times."""
        return cls(
            entry.message_id,
            entry.kind,
            entry.room,
            entry.payload,
            entry.size,
            entry.enqueued_at + clock_offset,
            None if entry.expires_at is None else entry.expires_at + clock_offset,
            entry.attempts,
        )

    def to_entry(self, *, clock_offset: float, assume_sent: bool = True) -> OutboxEntry:
        """Convert back to an outbox entry on this process's monotonic clock.

        With ``assume_sent`` (the default, right after a restart) ``attempts`` is at
        least 1: the previous process may have transmitted the message, so the
        session must not let it be cancelled, and an expiry reports
        ``maybe_delivered``.
        """
        return OutboxEntry(
            message_id=self.message_id,
            kind=self.kind,
            room=self.room,
            payload=self.payload,
            size=self.size,
            enqueued_at=self.enqueued_at - clock_offset,
            expires_at=None if self.expires_at is None else self.expires_at - clock_offset,
            attempts=max(self.attempts, 1) if assume_sent else self.attempts,
        )


@dataclass(slots=True)
class StoredState:
    """What :meth:`Store.open` found: rooms in join order, cursors, outbox in enqueue order."""

    rooms: list[str] = field(default_factory=list)
    cursors: dict[str, Cursor] = field(default_factory=dict)
    outbox: list[StoredMessage] = field(default_factory=list)


@runtime_checkable
class Store(Protocol):
    """A durable home for one client identity's outbox, rooms and cursors.

    Writes are buffered and never block: :meth:`enqueue`, :meth:`remove`,
    :meth:`set_rooms`, :meth:`set_cursor` and :meth:`forget_cursor` only record the
    change. A background committer writes the buffer in one transaction (group
    commit) when someone awaits :meth:`flush`, when ``max_batch`` changes are
    pending, or ``max_delay`` seconds after the first unflushed change, whichever
    comes first. Changes are committed in call order, batch by batch: after a crash
    the store holds a prefix of the calls, never a later change without an earlier.

    A change is *durable* once a :meth:`flush` (or :meth:`enqueue_durable`) that
    began after it has returned; what durable survives (process kill, power loss)
    is the implementation's to document. If a write fails, the store fails: the
    pending ``flush`` calls and every later call raise :class:`StoreError`.
    """

    async def open(self) -> StoredState:
        """Lock and load the store; return what it holds. Raises StoreError's subclasses."""
        ...

    async def close(self) -> None:
        """Commit what is buffered, then release the file, lock and thread. Idempotent.

        After it returns nothing of the store is left running. Raises
        :class:`StoreError` if the store had failed (buffered changes were lost).
        """
        ...

    def enqueue(self, message: StoredMessage) -> None:
        """Buffer ``message`` at the end of the outbox (not durable until a flush).

        The payload is encoded now: later changes to the dict are not stored.
        Raises ValueError if the id is already in the store, TypeError if the
        payload is not JSON-serialisable.
        """
        ...

    def remove(self, message_id: str) -> bool:
        """Buffer the removal of an acknowledged/failed message; False if unknown.

        A message removed before its enqueue was committed is never written at all.
        """
        ...

    def set_rooms(self, rooms: Iterable[str]) -> None:
        """Buffer the joined rooms, in join order (replaces the previous list)."""
        ...

    def set_cursor(self, room: str, epoch: str | None, last_event_id: int | None) -> None:
        """Buffer ``room``'s cursor. Coalesced: only the latest per room is written."""
        ...

    def forget_cursor(self, room: str) -> None:
        """Buffer the removal of ``room``'s cursor (a room left for good)."""
        ...

    async def flush(self) -> None:
        """Return once every change buffered before this call is committed.

        Concurrent callers share one transaction. Cancelling a flush does not
        cancel the commit. Raises :class:`StoreError` if the commit failed.
        """
        ...

    async def enqueue_durable(self, message: StoredMessage) -> None:
        """:meth:`enqueue` then :meth:`flush`: durable when it returns."""
        ...
