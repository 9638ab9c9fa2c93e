"""The changes a durable store must mirror, as typed records, and the journal that keeps them.

The session records a change whenever something a store keeps moves (a message queued or
settled, the room list, a cursor baseline); the client takes them with
:meth:`rtclient.session.Session.store_changes` and applies each one to its store by
matching on the record's type. Nothing is recorded unless the journal is switched on
(a client without a store pays nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from .outbox import OutboxEntry

__all__ = [
    "CursorForgotten",
    "CursorSet",
    "Enqueued",
    "Journal",
    "Removed",
    "RoomsSet",
    "StoreChange",
]


@dataclass(frozen=True, slots=True)
class Enqueued:
    """A message was queued: the store keeps it until it is settled."""

    entry: OutboxEntry


@dataclass(frozen=True, slots=True)
class Removed:
    """A message was settled (acked, rejected, expired, dropped): the store forgets it."""

    message_id: str


@dataclass(frozen=True, slots=True)
class RoomsSet:
    """The joined rooms are now these, in join order."""

    rooms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CursorForgotten:
    """The room was left: its cursor is forgotten."""

    room: str


@dataclass(frozen=True, slots=True)
class CursorSet:
    """A cursor baseline the session set itself (first join, truncated sync, reset)."""

    room: str
    epoch: str | None
    last_event_id: int | None


StoreChange = Enqueued | Removed | RoomsSet | CursorForgotten | CursorSet


class Journal:
    """The store changes recorded since the last :meth:`take`, in order."""

    def __init__(self) -> None:
        self.enabled = False
        """When true, changes are kept; when false, :meth:`record` forgets them."""
        self._changes: list[StoreChange] = []

    def record(self, change: StoreChange) -> None:
        """Keep ``change`` (if enabled) for the next :meth:`take`."""
        if self.enabled:
            self._changes.append(change)

    def take(self) -> list[StoreChange]:
        """Return and forget the recorded changes, in order."""
        changes, self._changes = self._changes, []
        return changes
