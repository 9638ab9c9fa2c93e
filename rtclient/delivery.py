"""Delivery: logged events to the application in order, once; presence kept per room.

A logged event (``chat:message``, ``dm:message``) of a live room is delivered if it
follows the room's cursor, dropped if it is at or below it, and otherwise held while
the recovery fetches what is missing. Events of the user's inbox (not joined, no
cursor) are delivered with doubles dropped by a bounded window; events of other rooms
not joined are counted and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .events import ErrorEvent, Event, make_event
from .outcomes import Outcomes, opt_str
from .pending import RequestKind
from .rooms import RecentIds, Room, RoomPhase
from .sending import Sender
from .welcome import NO_WELCOME, Welcome

__all__ = ["Delivery"]

log = logging.getLogger("rtclient")


class Delivery:
    """Hands events to the application; ``resync(room, now)`` fetches a hole's events."""

    def __init__(
        self,
        rooms: dict[str, Room],
        sender: Sender,
        out: Outcomes,
        *,
        resync: Callable[[Room, float], None],
    ) -> None:
        self._rooms = rooms
        self._sender = sender
        self._out = out
        self._resync = resync
        self._recent = RecentIds()
        self._welcome: Welcome = NO_WELCOME
        self._foreign_reported = False

    @property
    def welcome(self) -> Welcome:
        """The last welcome (who the user is: their inbox is ``user:<userId>``)."""
        return self._welcome

    @property
    def recent(self) -> RecentIds:
        """The window of inbox event ids seen."""
        return self._recent

    def new_connection(self, welcome: Welcome) -> None:
        """A connection was welcomed: foreign events are reported again, once."""
        self._welcome = welcome
        self._foreign_reported = False

    def on_logged_event(self, name: str, payload: dict[str, Any], now: float) -> None:
        """A logged event (with an event id): deliver, drop as a double, or hold and sync."""
        room_id = payload.get("roomId")
        event_id = payload.get("eventId")
        if not isinstance(room_id, str) or not isinstance(event_id, int):
            self._out.malformed(f"{name} without a string roomId and an integer eventId")
            return
        epoch = opt_str(payload.get("epoch"))
        room = self._rooms.get(room_id)
        if room is None:
            self._on_unjoined_event(name, payload, room_id, event_id, epoch)
            return
        if room.phase is not RoomPhase.LIVE:
            room.hold(event_id, name, payload)
        elif room.is_duplicate(event_id, epoch):
            self._out.counters["duplicates_dropped"] += 1
        elif room.is_next(event_id, epoch):
            self.emit_logged(name, payload, room, event_id, epoch, replayed=False)
        else:
            # A hole in the live stream or a new epoch: fetch what is missing first.
            room.hold(event_id, name, payload)
            self._resync(room, now)

    def _on_unjoined_event(
        self, name: str, payload: dict[str, Any], room_id: str, event_id: int, epoch: str | None
    ) -> None:
        """A logged event of a room the application has not joined.

        The user's inbox (``user:<userId>``, a member without joining) is delivered,
        doubles dropped by a bounded window. Any other room is a server's mistake (or
        the tail of a room just left): counted and dropped, without keeping state for
        it. Before a welcome that names the user (generic servers), there is no
        inbox to tell apart: such events are delivered the inbox's way.
        """
        user = self._welcome.user_id
        if user is not None and room_id != f"user:{user}":
            self._out.counters["foreign_events"] += 1
            if not self._foreign_reported and not self._leaving(room_id):
                self._foreign_reported = True
                message = f"{name} for {room_id}, a room not joined: dropped (once per connection)"
                log.warning("%s", message)
                self._out.add(ErrorEvent("NOT_JOINED_EVENT", message))
            return
        if self._recent.seen(room_id, epoch, event_id):
            self._out.counters["duplicates_dropped"] += 1
            return
        self._out.counters["delivered"] += 1
        self._out.add(
            make_event(
                name,
                payload,
                room_id,
                event_id,
                epoch,
                opt_str(payload.get("from")),
                opt_str(payload.get("messageId")),
                False,
            )
        )

    def _leaving(self, room_id: str) -> bool:
        return any(
            r.kind is RequestKind.LEAVE and r.room == room_id
            for r in self._sender.requests.values()
        )

    def emit_logged(
        self,
        name: str,
        payload: dict[str, Any],
        room: Room,
        event_id: int,
        epoch: str | None,
        *,
        replayed: bool,
    ) -> None:
        """Deliver a checked, new logged event and move the room's cursor past it."""
        room.advance(event_id, epoch)
        self._out.counters["replayed" if replayed else "delivered"] += 1
        self._out.add(
            make_event(
                name,
                payload,
                room.name,
                event_id,
                room.epoch,
                opt_str(payload.get("from")),
                opt_str(payload.get("messageId")),
                replayed,
            )
        )

    def on_plain_event(self, name: str, payload: dict[str, Any]) -> None:
        """An event without an event id (presence, typing, a generic server's own)."""
        room_id = opt_str(payload.get("roomId"))
        user = opt_str(payload.get("userId"))
        room = self._rooms.get(room_id) if room_id is not None else None
        if room is not None and user is not None:
            if name == "user:joined":
                room.members.add(user)
            elif name == "user:left":
                room.members.discard(user)
        self._out.add(Event(name=name, data=payload, room=room_id, sender=user))
