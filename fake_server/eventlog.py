"""Per-room event logs with an epoch, retention by count and age, and sync pages.

Pure data structures: no I/O, time comes in as ``now`` (wall-clock seconds).
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["EventLog", "LogStore", "SyncPage", "new_epoch"]


def new_epoch() -> str:
    """Return a fresh opaque epoch string."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class SyncPage:
    """One page of a room's log, as ``sync:messages`` returns it."""

    events: list[dict[str, Any]]
    more: bool
    truncated: bool
    last_event_id: int


class EventLog:
    """The log of one room: payloads with strictly increasing integer event ids.

    ``dropped_through`` is the highest event id that left retention (0 if none): a
    cursor below it cannot be served without a gap.
    """

    __slots__ = ("_events", "dropped_through", "last_event_id", "room_id")

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.last_event_id = 0
        self.dropped_through = 0
        self._events: deque[dict[str, Any]] = deque()

    def __len__(self) -> int:
        return len(self._events)

    def next_event_id(self) -> int:
        return self.last_event_id + 1

    def append(self, payload: dict[str, Any]) -> None:
        """Append ``payload``, whose ``eventId`` must be :meth:`next_event_id`."""
        if payload["eventId"] != self.last_event_id + 1:
            raise ValueError("event ids must be consecutive")
        self._events.append(payload)
        self.last_event_id = payload["eventId"]

    def prune(self, *, now: float, max_count: int, max_age: float) -> None:
        """Drop events beyond ``max_count`` or older than ``max_age`` seconds."""
        while self._events and (
            len(self._events) > max_count or self._events[0]["timestamp"] < now - max_age
        ):
            self.dropped_through = self._events.popleft()["eventId"]

    def events(self) -> list[dict[str, Any]]:
        """A copy of the retained payloads, oldest first."""
        return [dict(e) for e in self._events]

    def page(self, *, after: int, limit: int, same_epoch: bool) -> SyncPage:
        """Return up to ``limit`` events after event id ``after``.

        The page is ``truncated`` when the cursor belongs to another epoch or events
        right after it have left retention; it then starts at the oldest retained event.
        """
        truncated = not same_epoch or after < self.dropped_through
        start_after = 0 if truncated else after
        # Event ids are consecutive in the deque, so the start index is arithmetic.
        first_id = self.dropped_through + 1
        start = max(0, start_after + 1 - first_id)
        end = min(len(self._events), start + limit)
        selected = [dict(self._events[i]) for i in range(start, end)]
        more = start + len(selected) < len(self._events)
        return SyncPage(
            events=selected, more=more, truncated=truncated, last_event_id=self.last_event_id
        )


class LogStore:
    """Every room's log under one epoch.  A new store is a server that lost its log."""

    __slots__ = ("_logs", "epoch", "max_age", "max_count")

    def __init__(self, *, max_count: int, max_age: float, epoch: str | None = None) -> None:
        self.epoch = epoch or new_epoch()
        self.max_count = max_count
        self.max_age = max_age
        self._logs: dict[str, EventLog] = {}

    def for_append(self, room_id: str, *, now: float) -> EventLog:
        """Return the room's log to append to (created on first use), pruned to ``now``."""
        log = self._logs.get(room_id)
        if log is None:
            log = self._logs[room_id] = EventLog(room_id)
        log.prune(now=now, max_count=self.max_count, max_age=self.max_age)
        return log

    def _read(self, room_id: str, now: float) -> EventLog | None:
        log = self._logs.get(room_id)
        if log is not None:
            log.prune(now=now, max_count=self.max_count, max_age=self.max_age)
        return log

    def last_event_id(self, room_id: str, *, now: float) -> int:
        """The room's last event id (0: nothing was ever written); creates nothing."""
        log = self._read(room_id, now)
        return 0 if log is None else log.last_event_id

    def page(
        self, room_id: str, *, now: float, after: int, limit: int, same_epoch: bool
    ) -> SyncPage:
        """:meth:`EventLog.page` of the room's log; a room never written to costs nothing."""
        log = self._read(room_id, now)
        if log is None:
            log = EventLog(room_id)  # not kept: reading never allocates a log
        return log.page(after=after, limit=limit, same_epoch=same_epoch)

    def __len__(self) -> int:
        """Logs kept (rooms that were written to)."""
        return len(self._logs)

    def peek(self, room_id: str) -> EventLog | None:
        """Return the room's log without creating or pruning it."""
        return self._logs.get(room_id)

    def stored_events(self) -> int:
        return sum(len(log) for log in self._logs.values())
