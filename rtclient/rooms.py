"""Per-room receive state: the cursor (epoch + last event id), and events held back.

A room's events carry strictly increasing integer ids within an epoch, so the cursor
is also the dedupe window: an event at or below the cursor (same epoch) has been
delivered already. Events that arrive ahead of the cursor — live events racing a
sync page, or a hole in the live stream — are held and merged by event id.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RecentIds", "Room", "RoomPhase"]

# Logged events of rooms without a cursor (the inbox) remembered to drop doubles.
RECENT_IDS = 1024
# Live events kept while a room syncs. Past this the oldest are dropped: the sync
# that is under way will fetch them again from the log.
MAX_HELD = 10_000


class RoomPhase(enum.Enum):
    """Where a room is in the recovery plan."""

    JOINING = "joining"
    """``room:join`` sent, ack not yet received."""
    SYNCING = "syncing"
    """Joined; fetching missed events page by page."""
    LIVE = "live"
    """Caught up: live events are delivered as they come."""
    OFFLINE = "offline"
    """No connection: waiting for the next rejoin."""


@dataclass(slots=True)
class Room:
    """A room the application joined: its cursor, phase and held live events."""

    name: str
    phase: RoomPhase = RoomPhase.OFFLINE
    epoch: str | None = None
    last_event_id: int | None = None
    members: set[str] = field(default_factory=set)
    held: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    request_id: str | None = None
    """The join or sync request in flight for this room."""
    refetch_at: int | None = None
    """The cursor from which a sync page with a hole was asked for again (once)."""
    tail_gap: tuple[str | None, int] | None = None
    """The (epoch, cursor) after which a missing sync tail was reported: not again."""
    doubted: bool = False
    """Held events lay past the server's head: one more sync checks them."""
    joined: bool = False
    """The server accepted a join of this room once: a later join is a rejoin."""
    deferred: int = 0
    """Rejoins in a row the server refused for load (RATE_LIMIT, INTERNAL)."""
    sync_deferred: int = 0
    """Syncs in a row the server refused for load (RATE_LIMIT, INTERNAL)."""

    @property
    def has_cursor(self) -> bool:
        """True once the room has a position in the server's log."""
        return self.last_event_id is not None

    def is_duplicate(self, event_id: int, epoch: str | None) -> bool:
        """True if the event is at or below the cursor in the same epoch."""
        return (
            self.last_event_id is not None
            and (epoch is None or epoch == self.epoch)
            and event_id <= self.last_event_id
        )

    def is_next(self, event_id: int, epoch: str | None) -> bool:
        """True if the event directly follows the cursor (no hole, same epoch)."""
        if self.last_event_id is None:
            return True
        return (epoch is None or epoch == self.epoch) and event_id == self.last_event_id + 1

    def advance(self, event_id: int, epoch: str | None) -> None:
        """Move the cursor to ``event_id`` (in ``epoch`` when given)."""
        if epoch is not None:
            self.epoch = epoch
        self.last_event_id = event_id

    def hold(self, event_id: int, name: str, payload: dict[str, Any]) -> None:
        """Keep a live event until the room is caught up."""
        self.held[event_id] = (name, payload)
        if len(self.held) > MAX_HELD:
            del self.held[min(self.held)]

    def release(self) -> list[tuple[int, str, dict[str, Any]]]:
        """Return and forget the held events, in event-id order (duplicates included)."""
        held, self.held = self.held, {}
        return [(event_id, name, payload) for event_id, (name, payload) in sorted(held.items())]


class RecentIds:
    """The last :data:`RECENT_IDS` (room, epoch, event id) seen in rooms without a cursor.

    The user's inbox is not joined, so it has no cursor and no sync: doubled frames
    are caught by this window instead. A window, not a high-water mark, so one
    absurd event id cannot hide the real ones after it; bounded, so a server
    sending events for many rooms cannot grow it.
    """

    def __init__(self, size: int = RECENT_IDS) -> None:
        self._size = size
        self._seen: dict[tuple[str, str | None, int], None] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, room: str, epoch: str | None, event_id: int) -> bool:
        """True if this event was seen already; otherwise remember it and return False."""
        key = (room, epoch, event_id)
        if key in self._seen:
            return True
        self._seen[key] = None
        if len(self._seen) > self._size:
            del self._seen[next(iter(self._seen))]
        return False
