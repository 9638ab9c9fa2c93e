"""Recovery: rejoin, sync page by page, hold and merge live events, report holes.

After every welcome, each room is rejoined in join order, then synced from its cursor
page by page until ``more`` is false; live events arriving meanwhile are held and merged
by event id. Pages that break the protocol (holes, a missing tail, a head behind the
cursor, live events past the head) are asked for again once, then reported as a
:class:`~rtclient.events.Gap` instead of being believed or retried for ever. Rooms move
through their phases only by :func:`rtclient.states.move_room`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .delivery import Delivery
from .errors import NotJoined, RtClientError
from .events import ErrorEvent, Gap
from .hints import parse_delay
from .journal import CursorForgotten, CursorSet, Journal, RoomsSet
from .outcomes import Outcomes, opt_int, opt_str, rejection
from .pacing import DEFAULT_HOLD, HOLD_MIN
from .pages import check_page, event_id_of
from .pending import RequestKind
from .rooms import Room, RoomPhase
from .sending import Sender
from .states import move_room
from .welcome import Welcome

__all__ = ["Recovery", "join_key", "leave_key"]

SYNC_RETRIES = 6
"""Syncs in a row refused for load that are asked again before the hole is a gap."""


def join_key(room: str) -> str:
    """The outcome key of ``join(room)``."""
    return f"join:{room}"


def leave_key(room: str) -> str:
    """The outcome key of ``leave(room)``."""
    return f"leave:{room}"


class Recovery:
    """The rooms, their cursors and phases, and the recovery plan; see the module doc.

    ``room_live(now)`` is called whenever a room may have become the last one to go
    live (the session then decides whether the connection is recovered).
    """

    def __init__(
        self,
        sender: Sender,
        out: Outcomes,
        journal: Journal,
        room_live: Callable[[float], None],
        *,
        sync_page_size: int,
    ) -> None:
        self._sender = sender
        self._out = out
        self._journal = journal
        self._room_live = room_live
        self.sync_page_size = sync_page_size
        self.rooms: dict[str, Room] = {}
        self.delivery = Delivery(self.rooms, sender, out, resync=self._send_sync)

    # -- the application's rooms ------------------------------------------------------------

    def join(self, room: str, now: float, *, welcomed: bool) -> str:
        """Remember ``room`` and join it now if ``welcomed``; returns the outcome key."""
        key = join_key(room)
        state = self.rooms.get(room)
        if state is not None and state.phase in (RoomPhase.LIVE, RoomPhase.SYNCING):
            self._out.complete(key, sorted(state.members))  # joined (SYNCING: join acked)
            return key
        if state is None:
            state = Room(room)
            self.rooms[room] = state
            self._journal.record(RoomsSet(tuple(self.rooms)))
        if welcomed and state.request_id is None:
            self.send_join(state, now)
        return key

    def leave(self, room: str, now: float, *, welcomed: bool) -> str:
        """Forget ``room``, fail what was queued for it, tell the server if ``welcomed``."""
        key = leave_key(room)
        state = self.rooms.pop(room, None)
        if state is None:
            self._out.complete(key, True)
            return key
        self._journal.record(RoomsSet(tuple(self.rooms)))
        self._journal.record(CursorForgotten(room))
        self._sender.fail_queued_for(room, NotJoined(room))
        if state.phase is not RoomPhase.LIVE:
            self._out.fail(join_key(room), NotJoined(room))
        if state.request_id is not None:
            self._sender.requests.pop(state.request_id, None)
        if welcomed:
            self._sender.enqueue_request(
                RequestKind.LEAVE, "room:leave", {"roomId": room}, now, room=room, key=key
            )
        else:
            self._out.complete(key, True)
        self._room_live(now)  # it may have been the last room still recovering
        return key

    def fail_joins(self, failure: RtClientError) -> None:
        """The session closed: the joins of rooms not yet live fail."""
        for room in self.rooms.values():
            if room.phase is not RoomPhase.LIVE:
                self._out.fail(join_key(room.name), failure)

    # -- the plan ------------------------------------------------------------------------

    def welcomed(self, welcome: Welcome, now: float) -> None:
        """The server welcomed a connection: rejoin every room, in join order."""
        self.delivery.new_connection(welcome)
        for room in self.rooms.values():
            self.send_join(room, now)

    def all_live(self) -> bool:
        """Whether every room is caught up."""
        return all(r.phase is RoomPhase.LIVE for r in self.rooms.values())

    def connection_dropped(self) -> None:
        """The connection is gone: every room waits for its rejoin."""
        for room in self.rooms.values():
            move_room(room, RoomPhase.OFFLINE)
            room.request_id = None
            room.refetch_at = None
            room.doubted = False
            room.sync_deferred = 0
            room.held.clear()

    def send_join(self, room: Room, now: float) -> None:
        """Ask to join ``room`` (first join or rejoin)."""
        move_room(room, RoomPhase.JOINING)
        room.request_id = self._sender.enqueue_request(
            RequestKind.JOIN, "room:join", {"roomId": room.name}, now, room=room.name
        )

    def _send_sync(self, room: Room, now: float) -> None:
        move_room(room, RoomPhase.SYNCING)
        self._out.counters["syncs"] += 1
        room.request_id = self._sender.enqueue_request(
            RequestKind.SYNC, "sync:messages", self._sync_payload(room), now, room=room.name
        )

    def _sync_payload(self, room: Room) -> dict[str, Any]:
        return {
            "roomId": room.name,
            "lastEventId": room.last_event_id or 0,
            "epoch": room.epoch,
            "limit": self.sync_page_size,
        }

    def on_join_ack(self, room: Room, ok: bool, payload: dict[str, Any], now: float) -> None:
        """The server answered a join: go live at its head, or sync from the cursor."""
        room.request_id = None
        if not ok and room.joined and self._defer_rejoin(room, payload, now):
            return
        if not ok:
            del self.rooms[room.name]
            self._journal.record(RoomsSet(tuple(self.rooms)))
            error = rejection(payload)
            self._out.fail(join_key(room.name), error)
            self._sender.fail_queued_for(room.name, error)
            self._room_live(now)
            return
        room.joined, room.deferred = True, 0
        members = payload.get("members")
        if isinstance(members, list):
            room.members = {m for m in members if isinstance(m, str)}
        epoch = opt_str(payload.get("epoch"))
        head = opt_int(payload.get("lastEventId"))
        if not room.has_cursor:
            if head is not None:
                room.advance(head, epoch)
                self._journal.record(CursorSet(room.name, room.epoch, room.last_event_id))
            self._go_live(room, now)
        elif head is not None and epoch == room.epoch and head <= (room.last_event_id or 0):
            self._cursor_ahead(room, head)  # past the head: only an id the server never had
            self._go_live(room, now)
        else:
            self._send_sync(room, now)
        self._out.complete(join_key(room.name), sorted(room.members))

    def _defer_rejoin(self, room: Room, payload: dict[str, Any], now: float) -> bool:
        """A rejoin refused for load: ask again later, keeping the room (True).

        The application joined the room; a refusal for load (RATE_LIMIT, INTERNAL) of
        the rejoin after a reconnect must not undo that, nor fail what is queued for it.
        The join goes again after the server's ``retryAfter`` (capped; ``DEFAULT_HOLD``
        without one), doubled for each refusal in a row, at most ``max_server_delay``.
        Any other refusal (FORBIDDEN, a room that is gone) is final: False.
        """
        error = payload.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        if code not in ("RATE_LIMIT", "INTERNAL"):
            return False
        assert isinstance(error, dict)
        cap = self._sender.pacer.max_server_delay
        hint = parse_delay(error.get("retryAfter"))
        wait = max(min(hint, cap) if hint is not None else DEFAULT_HOLD, HOLD_MIN)
        wait = min(wait * 2 ** min(room.deferred, 10), cap)
        room.deferred += 1
        self._out.counters["rejoins_deferred"] += 1
        room.request_id = self._sender.defer_request(
            RequestKind.JOIN, "room:join", {"roomId": room.name}, now + wait, room=room.name
        )
        return True

    def _defer_sync(self, room: Room, payload: dict[str, Any], now: float) -> bool:
        """True if a sync refused for load (RATE_LIMIT, INTERNAL) is asked again later.

        A busy server (a cluster node waiting for Redis: ``STORE_BUSY``) is no reason to
        give up the hole as a gap: the same page is asked for again after the server's
        ``retryAfter`` (capped; ``DEFAULT_HOLD`` without one), up to ``SYNC_RETRIES``
        times in a row; then the hole is reported as before.
        """
        error = payload.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        if code not in ("RATE_LIMIT", "INTERNAL") or room.sync_deferred >= SYNC_RETRIES:
            room.sync_deferred = 0
            return False
        assert isinstance(error, dict)
        cap = self._sender.pacer.max_server_delay
        hint = parse_delay(error.get("retryAfter"))
        # No doubling: the count bounds the retries, and a room waiting for its sync
        # holds its live events, so the hole should be filled (or reported) soon.
        wait = max(min(hint, cap) if hint is not None else DEFAULT_HOLD, HOLD_MIN)
        room.sync_deferred += 1
        self._out.counters["syncs_deferred"] += 1
        room.request_id = self._sender.defer_request(
            RequestKind.SYNC, "sync:messages", self._sync_payload(room), now + wait, room=room.name
        )
        return True

    def on_sync_ack(self, room: Room, ok: bool, payload: dict[str, Any], now: float) -> None:
        """A sync page came: deliver it in order, ask for the next, or go live."""
        out = self._out
        room.request_id = None
        if not ok:
            if self._defer_sync(room, payload, now):
                return
            out.add(ErrorEvent("SYNC_FAILED", f"{room.name}: {rejection(payload)}"))
            self._go_live(room, now, after_sync=True)
            return
        room.sync_deferred = 0
        items = payload.get("events")
        if not isinstance(items, list):
            out.malformed("sync reply without an events list")
            items = []
        epoch = opt_str(payload.get("epoch"))
        head = opt_int(payload.get("lastEventId"))
        page = check_page(items, epoch=epoch, head=head)
        if page.malformed:
            out.malformed(f"sync page of {room.name}: {page.malformed} events without an eventId")
        if page.problems:
            self._inconsistent(room, ", ".join(page.problems))
        first = event_id_of(page.events[0]) if page.events else None
        if payload.get("truncated") is True:
            after = room.last_event_id or 0
            reason = "epoch" if epoch is not None and epoch != room.epoch else "retention"
            out.counters["gaps"] += 1
            out.add(Gap(room.name, reason, after, room.epoch, epoch, first))
            room.advance(first - 1 if first is not None else (head or 0), epoch)
            self._journal.record(CursorSet(room.name, room.epoch, room.last_event_id))
        elif head is not None and epoch == room.epoch:
            self._cursor_ahead(room, head)
        progressed = False
        for item in page.events:
            event_id: int = item["eventId"]
            item_epoch = opt_str(item.get("epoch"))
            if room.is_duplicate(event_id, item_epoch):
                out.counters["duplicates_dropped"] += 1
                continue
            hole = not room.is_next(event_id, item_epoch)
            if hole and not self._page_hole(room, event_id, item_epoch, now):
                return  # asked again from the cursor
            name = "dm:message" if "to" in item else "chat:message"
            self.delivery.emit_logged(name, item, room, event_id, item_epoch, replayed=True)
            progressed = True
        more = payload.get("more") is True
        if more and progressed:
            room.refetch_at = None
            self._send_sync(room, now)
        elif not self._page_short(room, head, epoch, now, more=more):
            # A page that says ``more`` but brings nothing new made no progress: it is
            # checked against the head as a last page (asking again would never end).
            room.refetch_at = None
            self._go_live(room, now, after_sync=True, head=head, epoch=epoch)

    def _page_hole(self, room: Room, event_id: int, epoch: str | None, now: float) -> bool:
        """A page skips events after the cursor (without saying ``truncated``).

        The first time at this cursor the page is asked for again (False: a sync is
        under way); if the server skips them again it cannot serve them: a gap with
        reason ``inconsistent``, and delivery resumes at ``event_id`` (True).
        """
        after = room.last_event_id or 0
        if room.refetch_at != after:
            room.refetch_at = after
            self._inconsistent(room, f"page skips from {after} to {event_id}; asking again")
            self._send_sync(room, now)
            return False
        room.refetch_at = None
        self._out.counters["gaps"] += 1
        self._out.add(Gap(room.name, "inconsistent", after, room.epoch, epoch, event_id))
        room.advance(event_id - 1, epoch)
        return True

    def _page_short(
        self, room: Room, head: int | None, epoch: str | None, now: float, *, more: bool = False
    ) -> bool:
        """The last page ends below the head it reports: a missing tail.

        The last page is one with ``more`` false, or one with ``more`` that brought
        nothing new (``more=True``: then a missing head counts as "more to come" too).
        Unless a held live event carries on from the cursor, the page is asked for
        again once (True: a sync is under way). Missing again: a gap with reason
        ``inconsistent`` (False), once per cursor. The cursor stays at the last event
        delivered: a head that no event backs is not believed (an absurd one would
        make every later real event look like a duplicate).
        """
        after = room.last_event_id
        if (
            after is None
            or (head is None and not more)
            or (head is not None and after >= head)
            or epoch not in (None, room.epoch)
            or after + 1 in room.held
            or room.tail_gap == (room.epoch, after)  # reported: nothing new to ask or say
        ):
            return False
        if room.refetch_at != after:
            room.refetch_at = after
            if head is None:
                what = f"page says more but brings nothing after {after}"
            else:
                what = f"page ends at {after}, the head it reports is {head}"
            self._inconsistent(room, what)
            self._send_sync(room, now)
            return True
        if not any(i > after and (head is None or i <= head) for i in room.held):
            # Else going live reports the hole up to the first held event. Held events
            # at or below the cursor (the live one that started the sync, now in the
            # page) or past the head (doubted) carry nothing on: the tail is a gap.
            room.tail_gap = (room.epoch, after)
            self._out.counters["gaps"] += 1
            self._out.add(Gap(room.name, "inconsistent", after, room.epoch, epoch, None))
        return False

    def _cursor_ahead(self, room: Room, head: int) -> bool:
        """The server's head is behind the cursor (same epoch): believe the server.

        Only an event id the server never had (an absurd live id) puts a cursor
        there; left alone, every later real event would look like a duplicate. The
        cursor goes back to the head and a gap (reason ``ahead``) says so.
        """
        after = room.last_event_id
        if after is None or after <= head:
            return False
        self._out.counters["gaps"] += 1
        self._out.add(Gap(room.name, "ahead", head, room.epoch, room.epoch, None))
        self._out.peerlog.warn(
            "ahead", f"{room.name}: cursor {after} is past the server's head {head}: reset"
        )
        room.last_event_id = head
        self._journal.record(CursorSet(room.name, room.epoch, head))
        return True

    def _inconsistent(self, room: Room, what: str) -> None:
        self._out.counters["inconsistent_pages"] += 1
        message = f"sync page of {room.name} broke the protocol: {what}"
        self._out.peerlog.warn("SYNC_INCONSISTENT", message)
        self._out.add(ErrorEvent("SYNC_INCONSISTENT", message))

    def _go_live(
        self,
        room: Room,
        now: float,
        *,
        after_sync: bool = False,
        head: int | None = None,
        epoch: str | None = None,
    ) -> None:
        """Deliver the held events and go live.

        ``after_sync``: a hole the sync just could not fill (it failed, or the server
        has nothing up to the held event) is reported as a gap and skipped, instead
        of syncing again and again. ``head``/``epoch``: what the sync said the log
        holds; held events past it are not believed (see :meth:`_doubt_held`).
        """
        if after_sync and head is not None and self._doubt_held(room, head, epoch, now):
            return
        move_room(room, RoomPhase.LIVE)
        room.doubted = False
        for event_id, name, payload in room.release():
            held_epoch = opt_str(payload.get("epoch"))
            if (
                after_sync
                and not room.is_duplicate(event_id, held_epoch)
                and not room.is_next(event_id, held_epoch)
            ):
                self._out.counters["gaps"] += 1
                after = room.last_event_id or 0
                self._out.add(
                    Gap(room.name, "unavailable", after, room.epoch, held_epoch, event_id)
                )
                room.advance(event_id - 1, held_epoch)
            after_sync = False
            self.delivery.on_logged_event(name, payload, now)
            if room.phase is not RoomPhase.LIVE:
                break  # a hole: a new sync is under way and holds the rest
        self._room_live(now)

    def _doubt_held(self, room: Room, head: int, epoch: str | None, now: float) -> bool:
        """Held live events past the server's head, or of another epoch, are doubted.

        The first time, one more sync is asked for (True): a live event may have
        overtaken the reply that reports it. If the next reply still does not know
        them, they are dropped, counted and reported, so that one absurd event id
        cannot move the cursor past every real event to come.
        """
        doubtful = [
            event_id
            for event_id, (_, payload) in room.held.items()
            if event_id > head
            or (epoch is not None and opt_str(payload.get("epoch")) not in (None, epoch))
        ]
        if not doubtful:
            return False
        if not room.doubted:
            room.doubted = True
            self._send_sync(room, now)
            return True
        for event_id in doubtful:
            del room.held[event_id]
        self._out.counters["implausible_events"] += len(doubtful)
        message = (
            f"{room.name}: {len(doubtful)} live events (ids up to {max(doubtful)}) are past "
            f"the server's head {head} in epoch {epoch}: ignored"
        )
        self._out.peerlog.warn("IMPLAUSIBLE_EVENT", message)
        self._out.add(ErrorEvent("IMPLAUSIBLE_EVENT", message))
        return False
