"""The sans-I/O session core: everything rtclient remembers and decides, and no I/O.

A :class:`Session` holds the rooms (in join order) with their cursors, the outbox,
the requests in flight (matched by id, never by position), the live events held
back during a sync, and the connection state. It never awaits, never reads a clock
and never touches a socket: the caller feeds it what happened and asks it what to do.

Inputs: ``connecting``, ``attempt_failed``, ``connection_lost``, ``closed`` (the
connection's life), ``receive(envelope, now)`` (a decoded frame), ``tick(now)``
(time passed), and the application's ``join``, ``leave``, ``send``, ``request``.

After calling any of them, the caller must:

- send every envelope from :meth:`Session.data_to_send`, in order, on the current
  connection (if there is one; without one the list is empty);
- hand every item from :meth:`Session.outcomes` to the application (events, state
  changes, gaps, errors) or to the waiter named by its key (``Completed``/``Failed``);
- call :meth:`Session.tick` no later than :meth:`Session.next_deadline`.

The recovery plan after every (re)connect, started by the server's ``connected``
welcome: rejoin every room in join order → sync each room from its cursor, page by
page, until ``more`` is false (live events arriving meanwhile are held and merged by
event id) → flush the outbox in enqueue order → live (state CONNECTED).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import (
    AckTimeout,
    ClientClosed,
    ConnectionLost,
    Forbidden,
    MessageDropped,
    MessageExpired,
    NotJoined,
    OutboxFull,
    RequestRejected,
    RtClientError,
)
from .events import (
    Ack,
    ConnectionState,
    ErrorEvent,
    Event,
    Gap,
    QualityChanged,
    StateChanged,
    make_event,
)
from .hints import DEFAULT_MAX_SERVER_DELAY, parse_delay
from .ids import new_message_id
from .outbox import Outbox, OutboxEntry, Overflow
from .pages import check_page, event_id_of
from .peerlog import PeerLog
from .quality import QualityLevel, QualitySnapshot, QualityTracker
from .redact import peer_text
from .requests import Request, RequestKind
from .rooms import RecentIds, Room, RoomPhase

__all__ = ["Completed", "Failed", "InvalidState", "Output", "Session"]

log = logging.getLogger("rtclient")

LOGGED_EVENTS = frozenset({"chat:message", "dm:message"})
HOLD_MIN = 0.01
"""The shortest hold after a RATE_LIMIT or INTERNAL reply: "retryAfter: 0" is no licence
to resend at once (each refusal would bring a resend, one per round trip)."""
PACE_MAX = 1.0
"""While rate limited, messages go out one at a time at most this far apart."""
PACE_MARGIN = 1.1
"""The pace is the server's retryAfter and a tenth: a little under its rate, not at it."""
PACE_GROWTH = 1.25
"""A message limited although it was paced makes the pace this much slower."""
PACE_RELEASE = 1.0
"""Each time no rate limit came for this long, the pace shrinks by PACE_DECAY; it ends
when nothing is queued or it is under HOLD_MIN."""
PACE_DECAY = 0.8
"""One rate limit must not slow a steady sender for ever: the pace probes back up."""
_ENVELOPE_OVERHEAD = 96  # type, id and the JSON punctuation around the payload
_S = ConnectionState
_TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    _S.IDLE: frozenset({_S.CONNECTING, _S.CLOSING, _S.CLOSED}),
    _S.CONNECTING: frozenset({_S.RECOVERING, _S.RECONNECTING, _S.CLOSING, _S.CLOSED}),
    _S.RECOVERING: frozenset({_S.CONNECTED, _S.RECONNECTING, _S.CLOSING, _S.CLOSED}),
    _S.CONNECTED: frozenset({_S.RECONNECTING, _S.CLOSING, _S.CLOSED}),
    _S.RECONNECTING: frozenset({_S.RECONNECTING, _S.RECOVERING, _S.CLOSING, _S.CLOSED}),
    _S.CLOSING: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}


class InvalidState(RtClientError):
    """A transition that the state machine does not allow (a bug in the caller)."""


@dataclass(frozen=True, slots=True)
class Completed:
    """The operation named by ``key`` succeeded with ``result``."""

    key: str
    result: Any


@dataclass(frozen=True, slots=True)
class Failed:
    """The operation named by ``key`` failed with ``error``."""

    key: str
    error: RtClientError


Output = Event | Gap | StateChanged | QualityChanged | ErrorEvent | Completed | Failed
StoreChange = tuple[Any, ...]


def join_key(room: str) -> str:
    """The outcome key of ``join(room)``."""
    return f"join:{room}"


def leave_key(room: str) -> str:
    """The outcome key of ``leave(room)``."""
    return f"leave:{room}"


class Session:
    """Rooms, cursors, outbox and in-flight requests of one client; see the module doc."""

    def __init__(
        self,
        *,
        outbox_limit: int = 10_000,
        outbox_max_bytes: int = 64 * 1024 * 1024,
        overflow: Overflow = "raise",
        ack_timeout: float = 10.0,
        ack_timeout_floor: float = 1.0,
        max_in_flight: int = 64,
        sync_page_size: int = 100,
        quality: QualityTracker | None = None,
        id_factory: Callable[[], str] = new_message_id,
        max_server_delay: float = DEFAULT_MAX_SERVER_DELAY,
    ) -> None:
        if ack_timeout <= 0 or max_in_flight < 1 or sync_page_size < 1:
            raise ValueError("ack_timeout, max_in_flight and sync_page_size must be positive")
        self.outbox = Outbox(limit=outbox_limit, max_bytes=outbox_max_bytes, overflow=overflow)
        self.ack_timeout = ack_timeout
        self.ack_timeout_floor = min(ack_timeout_floor, ack_timeout)
        self.quality = quality or QualityTracker()
        self.max_in_flight = max_in_flight
        self.sync_page_size = sync_page_size
        self._new_id = id_factory
        self._state = ConnectionState.IDLE
        self._open = False
        self.rooms: dict[str, Room] = {}
        self._recent = RecentIds()
        self._peerlog = PeerLog(log)
        self._foreign_reported = False
        self._requests: dict[str, Request] = {}
        self._send_buffer: list[dict[str, Any]] = []
        self._outputs: list[Output] = []
        self.max_server_delay = max_server_delay
        self._hold_until = 0.0
        self._pace = 0.0
        """While rate limited: the least time between two message sends (0: no pacing)."""
        self._paced_at = 0.0
        self._limited_at = 0.0
        self._paced_since = 0.0
        self._ttl_count = 0
        self.welcome: dict[str, Any] = {}
        self.track_changes = False
        """When true, changes a durable store must mirror are kept for :meth:`store_changes`."""
        self._changes: list[StoreChange] = []
        self._max_frame: int | None = None
        self._new_deadline: float | None = None
        self.gate_on_welcome = False
        """When true, a welcome does not lead to CONNECTED until :meth:`open_gate`."""
        self._gated = False
        self.close_error: RtClientError | None = None
        """The fatal error that closed the session, if one did."""
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "sent",
                "acked",
                "resent",
                "duplicate_acks",
                "delivered",
                "replayed",
                "duplicates_dropped",
                "gaps",
                "inconsistent_pages",
                "implausible_events",
                "foreign_events",
                "rate_limited",
                "malformed",
                "server_errors",
                "dropped",
                "expired",
                "syncs",
                "volatile_sent",
                "volatile_dropped",
            ),
            0,
        )

    # -- state -------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The current connection state."""
        return self._state

    def _set_state(
        self,
        new: ConnectionState,
        *,
        delay: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        old = self._state
        if new not in _TRANSITIONS[old]:
            raise InvalidState(f"cannot go from {old.name} to {new.name}")
        self._state = new
        self._outputs.append(StateChanged(old, new, delay, error))

    def connecting(self) -> None:
        """The client starts its first connection attempt (IDLE → CONNECTING)."""
        self._set_state(ConnectionState.CONNECTING)

    def connection_opened(self) -> None:
        """A connection is open; the session waits for the server's welcome."""
        self._open = True

    def attempt_failed(self, error: BaseException, delay: float) -> None:
        """A connection attempt failed; the next one comes after ``delay`` seconds."""
        self._drop_connection()
        self._set_state(ConnectionState.RECONNECTING, delay=delay, error=error)

    def connection_lost(self, error: BaseException, delay: float) -> None:
        """The open connection broke; the next attempt comes after ``delay`` seconds.

        Everything in flight is queued again (same ids), rooms wait for their rejoin.
        """
        self._drop_connection()
        if self._state not in (ConnectionState.CLOSING, ConnectionState.CLOSED):
            self._set_state(ConnectionState.RECONNECTING, delay=delay, error=error)

    def closing(self) -> None:
        """``close()`` was called: no new work is accepted."""
        if self._state not in (ConnectionState.CLOSING, ConnectionState.CLOSED):
            self._set_state(ConnectionState.CLOSING)

    def closed(self, error: RtClientError | None = None) -> None:
        """The client stopped; every pending operation fails with ``error`` or ClientClosed."""
        if self._state is ConnectionState.CLOSED:
            return
        self._drop_connection()
        self.close_error = error
        failure = error if error is not None else ClientClosed("the client was closed")
        for entry in self.outbox.entries():
            self.outbox.remove(entry.message_id)
            self._outputs.append(Failed(entry.message_id, failure))
        for request_id, request in list(self._requests.items()):
            del self._requests[request_id]
            if request.key is not None:
                self._outputs.append(Failed(request.key, failure))
        for room in self.rooms.values():
            if room.phase is not RoomPhase.LIVE:
                self._outputs.append(Failed(join_key(room.name), failure))
        self._set_state(ConnectionState.CLOSED, error=error)

    def _drop_connection(self) -> None:
        self._open = False
        self._send_buffer.clear()
        self.outbox.requeue_all()
        for room in self.rooms.values():
            room.phase = RoomPhase.OFFLINE
            room.request_id = None
            room.refetch_at = None
            room.doubted = False
            room.held.clear()
        for request_id, request in list(self._requests.items()):
            if request.kind is RequestKind.LEAVE:
                # The server drops a connection's memberships when it goes away.
                del self._requests[request_id]
                self._complete(request.key, True)
            elif request.kind in (RequestKind.JOIN, RequestKind.SYNC):
                del self._requests[request_id]  # the recovery plan sends them again
            elif not request.resend:
                del self._requests[request_id]
                self._fail(request.key, ConnectionLost(None, "connection lost before the answer"))
            else:
                request.in_flight = False
                request.sent_at = None

    # -- the application's operations ------------------------------------------------

    def join(self, room: str, now: float) -> str:
        """Join ``room`` (remembered, rejoined after every reconnect). Returns the outcome key.

        The key's ``Completed`` result is the member list from the server.
        """
        self._check_open_for_work()
        key = join_key(room)
        state = self.rooms.get(room)
        if state is not None and state.phase in (RoomPhase.LIVE, RoomPhase.SYNCING):
            self._complete(key, sorted(state.members))  # joined (SYNCING: join acked)
            return key
        if state is None:
            state = Room(room)
            self.rooms[room] = state
            self._record(("rooms", list(self.rooms)))
        if self._welcomed and state.request_id is None:
            self._send_join(state, now)
        return key

    def leave(self, room: str, now: float) -> str:
        """Leave ``room``: forget it, fail its queued messages. Returns the outcome key."""
        key = leave_key(room)
        state = self.rooms.pop(room, None)
        if state is None:
            self._complete(key, True)
            return key
        self._record(("rooms", list(self.rooms)))
        self._record(("forget", room))
        self._fail_queued_for(room, NotJoined(room))
        if state.phase is not RoomPhase.LIVE:
            self._fail(join_key(room), NotJoined(room))
        if state.request_id is not None:
            self._requests.pop(state.request_id, None)
        if self._welcomed:
            self._enqueue_request(
                RequestKind.LEAVE, "room:leave", {"roomId": room}, now, room=room, key=key
            )
        else:
            self._complete(key, True)
        self._maybe_live(now)  # it may have been the last room still recovering
        return key

    def send(
        self,
        room: str,
        text: str,
        now: float,
        *,
        ttl: float | None = None,
        message_id: str | None = None,
    ) -> str:
        """Queue a chat message for ``room``; returns its message id (the outcome key).

        Raises NotJoined if the room was not joined, OutboxFull when the outbox is
        full under the ``raise`` policy. The ``Completed`` result is an :class:`Ack`.
        """
        if room not in self.rooms:
            raise NotJoined(room)
        return self._enqueue_message(
            "chat:send", room, {"roomId": room, "text": text}, now, ttl, message_id
        )

    def send_direct(self, user_id: str, text: str, now: float, *, ttl: float | None = None) -> str:
        """Queue a direct message to ``user_id``; returns its message id."""
        room = f"user:{user_id}"
        return self._enqueue_message(
            "dm:send", room, {"toUserId": user_id, "text": text}, now, ttl, None
        )

    def emit(
        self,
        event: str,
        data: Any,
        now: float,
        *,
        ack: bool = True,
        ttl: float | None = None,
        message_id_field: str | None = "messageId",
    ) -> str:
        """Queue a generic event (any server); returns its message id (the outcome key).

        Kept in the outbox like a chat message: sent when live, sent again after a
        reconnect until acknowledged. With ``ack=False`` it is done once written to a
        live connection. When ``data`` is a dict, the message id is added to it under
        ``message_id_field`` so the server (or the receiving app) can deduplicate.
        The ``Completed`` result is the ack's arguments (one value, or a list).
        """
        message_id = self._new_id()
        if isinstance(data, dict) and message_id_field:
            data = {**data, message_id_field: data.get(message_id_field, message_id)}
        return self._enqueue_message(event, "", data, now, ttl, message_id, raw=True, wants_ack=ack)

    def cancel(self, message_id: str) -> bool:
        """Withdraw a message that has not been transmitted yet; True if it was withdrawn."""
        entry = self.outbox.get(message_id)
        if entry is None or entry.in_flight or entry.attempts > 0:
            return False
        self._remove_entry(entry)
        self._outputs.append(Failed(message_id, MessageDropped("cancelled by the application")))
        return True

    def request(
        self, type_: str, payload: Any, now: float, *, raw: bool = False, resend: bool = True
    ) -> str:
        """Send a request that expects an ack. Returns the outcome key.

        Sent as soon as the server has welcomed the connection (also while recovering,
        so an on-connect hook can use it), again after a reconnect if unanswered. The
        ``Completed`` result is the ack's payload (``raw``: the ack's arguments as they
        came, for any Socket.IO server); an error reply fails it with RequestRejected,
        no ack within ``ack_timeout`` with AckTimeout. ``resend=False``: if the
        connection drops first, fail with ConnectionLost instead of sending it again
        on the next connection (for requests tied to a connection, like token:refresh).
        """
        self._check_open_for_work()
        return self._enqueue_request(
            RequestKind.GENERIC, type_, payload, now, raw=raw, resend=resend
        )

    def send_volatile(self, room: str, text: str) -> bool:
        """Send a chat message now or never: not queued, not resent, no ack awaited.

        Dropped (and counted in ``volatile_dropped``) when not live or when
        ``max_in_flight`` messages are already waiting for acks (congestion).
        """
        if room not in self.rooms:
            raise NotJoined(room)
        if not self._live or self.outbox.in_flight_count() >= self.max_in_flight:
            self.counters["volatile_dropped"] += 1
            return False
        self.counters["volatile_sent"] += 1
        self._send_buffer.append(
            {"type": "chat:send", "id": self._new_id(), "payload": {"roomId": room, "text": text}}
        )
        return True

    def notify(self, type_: str, payload: dict[str, Any]) -> bool:
        """Send a fire-and-forget message if live (typing indicators); False if not sent."""
        if self._state is not ConnectionState.CONNECTED:
            return False
        self._send_buffer.append({"type": type_, "payload": payload})
        return True

    # -- what the caller collects ----------------------------------------------------

    def data_to_send(self) -> list[dict[str, Any]]:
        """Return and forget the envelopes to write on the current connection, in order."""
        data, self._send_buffer = self._send_buffer, []
        return data

    def has_data_to_send(self) -> bool:
        """Whether :meth:`data_to_send` would return anything."""
        return bool(self._send_buffer)

    def outcomes(self) -> list[Output]:
        """Return and forget what happened since the last call, in order."""
        out, self._outputs = self._outputs, []
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must be called next (None: nothing is timed)."""
        deadlines: list[float] = []
        if self._open:
            for entry in self.outbox.in_flight():
                if entry.sent_at is not None:
                    deadlines.append(entry.sent_at + self._retransmit_wait(entry))
            for request in self._requests.values():
                if request.sent_at is not None:
                    deadlines.append(request.sent_at + self.ack_timeout)
            if self._hold_until and self._state is ConnectionState.CONNECTED:
                deadlines.append(self._hold_until)
            if self._pace and self.outbox.has_queued and self._state is ConnectionState.CONNECTED:
                deadlines.append(max(self._hold_until, self._paced_at + self._pace))
        if self._ttl_count:
            expiry = self.outbox.next_expiry()
            if expiry is not None:
                deadlines.append(expiry)
        return min(deadlines, default=None)

    def stats(self) -> dict[str, int]:
        """Counters, plus the current queue sizes."""
        return {
            **self.counters,
            "queued": len(self.outbox),
            "in_flight": self.outbox.in_flight_count(),
            "rooms": len(self.rooms),
        }

    # -- link quality ------------------------------------------------------------------

    def pong(self, rtt: float) -> None:
        """A heartbeat was answered after ``rtt`` seconds."""
        self._quality_moved(self.quality.level, self.quality.pong(rtt))

    def pong_missed(self) -> None:
        """A heartbeat went unanswered."""
        self._quality_moved(self.quality.level, self.quality.missed())

    def _quality_moved(self, old: QualityLevel, new: QualityLevel | None) -> None:
        if new is not None:
            self._outputs.append(QualityChanged(old, new, self.quality.snapshot()))

    @property
    def ack_wait(self) -> float:
        """How long an unacknowledged request waits before it is sent again.

        The retransmission timeout of the link (SRTT + 4·RTTVAR) within
        [``ack_timeout_floor``, ``ack_timeout``]; ``ack_timeout`` before any sample.
        """
        rto = self.quality.rto
        if rto is None:
            return self.ack_timeout
        return min(self.ack_timeout, max(self.ack_timeout_floor, rto))

    def _retransmit_wait(self, entry: OutboxEntry) -> float:
        """:attr:`ack_wait`, doubled for every transmission so far (RFC 6298 §5.5)."""
        backoff: float = 2.0 ** max(0, entry.attempts - 1)
        return min(self.ack_timeout, self.ack_wait * backoff)

    def quality_snapshot(self) -> QualitySnapshot:
        """The link's quality figures now."""
        return self.quality.snapshot()

    # -- time ------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Let time pass: expire messages, retransmit unacknowledged requests."""
        if self._ttl_count:
            for entry in self.outbox.expire(now):
                self._ttl_count -= 1
                self.counters["expired"] += 1
                self._record(("remove", entry.message_id))
                self._outputs.append(
                    Failed(
                        entry.message_id,
                        MessageExpired(entry.message_id, maybe_delivered=entry.attempts > 0),
                    )
                )
        if not self._open:
            return
        for entry in list(self.outbox.in_flight()):
            if entry.sent_at is not None and entry.sent_at + self._retransmit_wait(entry) <= now:
                self._transmit(entry, now)
        for request_id, request in list(self._requests.items()):
            if request.sent_at is None or request.sent_at + self.ack_timeout > now:
                continue
            if request.kind is RequestKind.GENERIC:
                del self._requests[request_id]
                self._fail(request.key, AckTimeout(f"no ack for {request.type} in time"))
            else:
                self._transmit_request(request, now)
        if self._hold_until and now >= self._hold_until:
            self._hold_until = 0.0
        self._flush(now)

    # -- what the server sends -------------------------------------------------------

    def receive(self, envelope: object, now: float) -> None:
        """Handle one decoded frame from the server. Malformed input never raises."""
        if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
            self._malformed("frame is not an object with a string 'type'")
            return
        type_: str = envelope["type"]
        payload = envelope.get("payload", {})
        if not isinstance(payload, dict):
            self._malformed(f"{type_}: payload is not an object")
            return
        if type_ == "ack":
            self._on_ack(envelope.get("id"), payload, now, envelope.get("args"))
        elif type_ == "connected":
            self._on_welcome(payload, now)
        elif type_ in LOGGED_EVENTS:
            self._on_logged_event(type_, payload, now)
        elif type_ == "error":
            self.counters["server_errors"] += 1
            self._outputs.append(
                ErrorEvent(
                    str(payload.get("code", "ERROR")), peer_text(str(payload.get("message", "")))
                )
            )
        else:
            self._on_plain_event(type_, payload)
        self._flush(now)

    # -- internals: the recovery plan --------------------------------------------------

    @property
    def _welcomed(self) -> bool:
        return self._open and self._state in (ConnectionState.RECOVERING, ConnectionState.CONNECTED)

    def _on_welcome(self, payload: dict[str, Any], now: float) -> None:
        if not self._open or self._state not in (
            ConnectionState.CONNECTING,
            ConnectionState.RECONNECTING,
        ):
            # Not waiting for a welcome: a server's own event that happens to be named
            # "connected" (generic Socket.IO servers), delivered as it is.
            self._on_plain_event("connected", payload)
            return
        self.welcome = payload
        limits = payload.get("limits")
        size = limits.get("maxMessageSize") if isinstance(limits, dict) else None
        self._max_frame = _opt_int(size)
        self._gated = self.gate_on_welcome
        self._foreign_reported = False
        self._set_state(ConnectionState.RECOVERING)
        for room in self.rooms.values():
            self._send_join(room, now)
        self._maybe_live(now)

    def _send_join(self, room: Room, now: float) -> None:
        room.phase = RoomPhase.JOINING
        room.request_id = self._enqueue_request(
            RequestKind.JOIN, "room:join", {"roomId": room.name}, now, room=room.name
        )

    def _send_sync(self, room: Room, now: float) -> None:
        room.phase = RoomPhase.SYNCING
        self.counters["syncs"] += 1
        room.request_id = self._enqueue_request(
            RequestKind.SYNC,
            "sync:messages",
            {
                "roomId": room.name,
                "lastEventId": room.last_event_id or 0,
                "epoch": room.epoch,
                "limit": self.sync_page_size,
            },
            now,
            room=room.name,
        )

    def open_gate(self, now: float) -> None:
        """The on-connect hooks are done: the session may go live."""
        self._gated = False
        self._maybe_live(now)

    def _maybe_live(self, now: float) -> None:
        if (
            self._state is ConnectionState.RECOVERING
            and not self._gated
            and all(r.phase is RoomPhase.LIVE for r in self.rooms.values())
        ):
            self._set_state(ConnectionState.CONNECTED)
            self._flush(now)

    def _on_join_ack(self, room: Room, ok: bool, payload: dict[str, Any], now: float) -> None:
        room.request_id = None
        if not ok:
            del self.rooms[room.name]
            self._record(("rooms", list(self.rooms)))
            error = _rejection(payload)
            self._fail(join_key(room.name), error)
            self._fail_queued_for(room.name, error)
            self._maybe_live(now)
            return
        members = payload.get("members")
        if isinstance(members, list):
            room.members = {m for m in members if isinstance(m, str)}
        epoch = _opt_str(payload.get("epoch"))
        head = _opt_int(payload.get("lastEventId"))
        if not room.has_cursor:
            if head is not None:
                room.advance(head, epoch)
                self._record(("cursor", room.name, room.epoch, room.last_event_id))
            self._go_live(room, now)
        elif head is not None and epoch == room.epoch and head <= (room.last_event_id or 0):
            self._cursor_ahead(room, head)  # past the head: only an id the server never had
            self._go_live(room, now)
        else:
            self._send_sync(room, now)
        self._complete(join_key(room.name), sorted(room.members))

    def _on_sync_ack(self, room: Room, ok: bool, payload: dict[str, Any], now: float) -> None:
        room.request_id = None
        if not ok:
            self._outputs.append(ErrorEvent("SYNC_FAILED", f"{room.name}: {_rejection(payload)}"))
            self._go_live(room, now, after_sync=True)
            return
        items = payload.get("events")
        if not isinstance(items, list):
            self._malformed("sync reply without an events list")
            items = []
        epoch = _opt_str(payload.get("epoch"))
        head = _opt_int(payload.get("lastEventId"))
        page = check_page(items, epoch=epoch, head=head)
        if page.malformed:
            self._malformed(f"sync page of {room.name}: {page.malformed} events without an eventId")
        if page.problems:
            self._inconsistent(room, ", ".join(page.problems))
        first = event_id_of(page.events[0]) if page.events else None
        if payload.get("truncated") is True:
            after = room.last_event_id or 0
            reason = "epoch" if epoch is not None and epoch != room.epoch else "retention"
            self.counters["gaps"] += 1
            self._outputs.append(Gap(room.name, reason, after, room.epoch, epoch, first))
            room.advance(first - 1 if first is not None else (head or 0), epoch)
            self._record(("cursor", room.name, room.epoch, room.last_event_id))
        elif head is not None and epoch == room.epoch:
            self._cursor_ahead(room, head)
        progressed = False
        for item in page.events:
            event_id: int = item["eventId"]
            item_epoch = _opt_str(item.get("epoch"))
            if room.is_duplicate(event_id, item_epoch):
                self.counters["duplicates_dropped"] += 1
                continue
            hole = not room.is_next(event_id, item_epoch)
            if hole and not self._page_hole(room, event_id, item_epoch, now):
                return  # asked again from the cursor
            name = "dm:message" if "to" in item else "chat:message"
            self._emit_logged(name, item, room, event_id, item_epoch, replayed=True)
            progressed = True
        more = payload.get("more") is True
        if more and progressed:
            room.refetch_at = None
            self._send_sync(room, now)
        elif more or not self._page_short(room, head, epoch, now):
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
        self.counters["gaps"] += 1
        self._outputs.append(Gap(room.name, "inconsistent", after, room.epoch, epoch, event_id))
        room.advance(event_id - 1, epoch)
        return True

    def _page_short(self, room: Room, head: int | None, epoch: str | None, now: float) -> bool:
        """The last page ends below the head it reports (``more`` false): a missing tail.

        Unless a held live event carries on from the cursor, the page is asked for
        again once (True: a sync is under way). Missing again: a gap with reason
        ``inconsistent`` (False), once per cursor. The cursor stays at the last event
        delivered: a head that no event backs is not believed (an absurd one would
        make every later real event look like a duplicate).
        """
        after = room.last_event_id
        if (
            after is None
            or head is None
            or after >= head
            or epoch not in (None, room.epoch)
            or after + 1 in room.held
            or room.tail_gap == (room.epoch, after)  # reported: nothing new to ask or say
        ):
            return False
        if room.refetch_at != after:
            room.refetch_at = after
            self._inconsistent(room, f"page ends at {after}, the head it reports is {head}")
            self._send_sync(room, now)
            return True
        if not any(after < i <= head for i in room.held):
            # Else going live reports the hole up to the first held event. Held events
            # at or below the cursor (the live one that started the sync, now in the
            # page) or past the head (doubted) carry nothing on: the tail is a gap.
            room.tail_gap = (room.epoch, after)
            self.counters["gaps"] += 1
            self._outputs.append(Gap(room.name, "inconsistent", after, room.epoch, epoch, None))
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
        self.counters["gaps"] += 1
        self._outputs.append(Gap(room.name, "ahead", head, room.epoch, room.epoch, None))
        self._peerlog.warn(
            "ahead", f"{room.name}: cursor {after} is past the server's head {head}: reset"
        )
        room.last_event_id = head
        self._record(("cursor", room.name, room.epoch, head))
        return True

    def _inconsistent(self, room: Room, what: str) -> None:
        self.counters["inconsistent_pages"] += 1
        message = f"sync page of {room.name} broke the protocol: {what}"
        self._peerlog.warn("SYNC_INCONSISTENT", message)
        self._outputs.append(ErrorEvent("SYNC_INCONSISTENT", message))

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
        room.phase = RoomPhase.LIVE
        room.doubted = False
        for event_id, name, payload in room.release():
            held_epoch = _opt_str(payload.get("epoch"))
            if (
                after_sync
                and not room.is_duplicate(event_id, held_epoch)
                and not room.is_next(event_id, held_epoch)
            ):
                self.counters["gaps"] += 1
                after = room.last_event_id or 0
                self._outputs.append(
                    Gap(room.name, "unavailable", after, room.epoch, held_epoch, event_id)
                )
                room.advance(event_id - 1, held_epoch)
            after_sync = False
            self._on_logged_event(name, payload, now)
            if room.phase is not RoomPhase.LIVE:
                break  # a hole: a new sync is under way and holds the rest
        self._maybe_live(now)

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
            or (epoch is not None and _opt_str(payload.get("epoch")) not in (None, epoch))
        ]
        if not doubtful:
            return False
        if not room.doubted:
            room.doubted = True
            self._send_sync(room, now)
            return True
        for event_id in doubtful:
            del room.held[event_id]
        self.counters["implausible_events"] += len(doubtful)
        message = (
            f"{room.name}: {len(doubtful)} live events (ids up to {max(doubtful)}) are past "
            f"the server's head {head} in epoch {epoch}: ignored"
        )
        self._peerlog.warn("IMPLAUSIBLE_EVENT", message)
        self._outputs.append(ErrorEvent("IMPLAUSIBLE_EVENT", message))
        return False

    # -- internals: events --------------------------------------------------------------

    def _on_logged_event(self, name: str, payload: dict[str, Any], now: float) -> None:
        room_id = payload.get("roomId")
        event_id = payload.get("eventId")
        if not isinstance(room_id, str) or not isinstance(event_id, int):
            self._malformed(f"{name} without a string roomId and an integer eventId")
            return
        epoch = _opt_str(payload.get("epoch"))
        room = self.rooms.get(room_id)
        if room is None:
            self._on_unjoined_event(name, payload, room_id, event_id, epoch)
            return
        if room.phase is not RoomPhase.LIVE:
            room.hold(event_id, name, payload)
        elif room.is_duplicate(event_id, epoch):
            self.counters["duplicates_dropped"] += 1
        elif room.is_next(event_id, epoch):
            self._emit_logged(name, payload, room, event_id, epoch, replayed=False)
        else:
            # A hole in the live stream or a new epoch: fetch what is missing first.
            room.hold(event_id, name, payload)
            self._send_sync(room, now)

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
        user = _opt_str(self.welcome.get("userId"))
        if user is not None and room_id != f"user:{user}":
            self.counters["foreign_events"] += 1
            if not self._foreign_reported and not self._leaving(room_id):
                self._foreign_reported = True
                message = f"{name} for {room_id}, a room not joined: dropped (once per connection)"
                log.warning("%s", message)
                self._outputs.append(ErrorEvent("NOT_JOINED_EVENT", message))
            return
        if self._recent.seen(room_id, epoch, event_id):
            self.counters["duplicates_dropped"] += 1
            return
        self.counters["delivered"] += 1
        self._outputs.append(
            make_event(
                name,
                payload,
                room_id,
                event_id,
                epoch,
                _opt_str(payload.get("from")),
                _opt_str(payload.get("messageId")),
                False,
            )
        )

    def _leaving(self, room_id: str) -> bool:
        return any(
            r.kind is RequestKind.LEAVE and r.room == room_id for r in self._requests.values()
        )

    def _emit_logged(
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
        self.counters["replayed" if replayed else "delivered"] += 1
        self._outputs.append(
            make_event(
                name,
                payload,
                room.name,
                event_id,
                room.epoch,
                _opt_str(payload.get("from")),
                _opt_str(payload.get("messageId")),
                replayed,
            )
        )

    def _on_plain_event(self, name: str, payload: dict[str, Any]) -> None:
        room_id = _opt_str(payload.get("roomId"))
        user = _opt_str(payload.get("userId"))
        room = self.rooms.get(room_id) if room_id is not None else None
        if room is not None and user is not None:
            if name == "user:joined":
                room.members.add(user)
            elif name == "user:left":
                room.members.discard(user)
        self._outputs.append(Event(name=name, data=payload, room=room_id, sender=user))

    # -- internals: acks ------------------------------------------------------------------

    def _on_ack(
        self, request_id: object, payload: dict[str, Any], now: float, args: object = None
    ) -> None:
        if not isinstance(request_id, str):
            self._malformed("ack without a string id")
            return
        ok = payload.get("success") is True
        entry = self.outbox.get(request_id)
        if entry is not None:
            self._on_message_ack(entry, ok, payload, now, args)
            return
        request = self._requests.pop(request_id, None)
        if request is None:
            return  # the ack of a retransmitted request, or of an expired message
        room = self.rooms.get(request.room) if request.room is not None else None
        if request.kind is RequestKind.JOIN:
            if room is not None and room.request_id == request_id:
                self._on_join_ack(room, ok, payload, now)
        elif request.kind is RequestKind.SYNC:
            if room is not None and room.request_id == request_id:
                self._on_sync_ack(room, ok, payload, now)
        elif request.raw:
            result = args[0] if isinstance(args, list) and len(args) == 1 else args
            self._complete(request.key, payload if args is None else result)
        elif request.kind is RequestKind.LEAVE or ok:
            self._complete(request.key, payload)
        else:
            self._fail(request.key, _rejection(payload))

    def _on_message_ack(
        self, entry: OutboxEntry, ok: bool, payload: dict[str, Any], now: float, args: object
    ) -> None:
        if entry.raw:  # a generic emit: whatever the server answered is the answer
            self._remove_entry(entry)
            self.counters["acked"] += 1
            if entry.attempts == 1 and entry.sent_at is not None:
                self.quality.ack_rtt(now - entry.sent_at)
            if isinstance(args, list):
                result: Any = args[0] if len(args) == 1 else args
            else:
                result = payload
            self._complete(entry.message_id, result)
            return
        if ok:
            # The server says it committed the message: that settles it, whatever else
            # the ack gets wrong. Failing it would make an app that retries post twice.
            event_id = _opt_int(payload.get("eventId"))
            if event_id is None:
                self._malformed(
                    f"ack of {entry.message_id} says success without an integer eventId "
                    f"({type(payload.get('eventId')).__name__}): settled with event_id None"
                )
            self._remove_entry(entry)
            if entry.attempts == 1 and entry.sent_at is not None:
                self.quality.ack_rtt(now - entry.sent_at)  # Karn: only unambiguous samples
            duplicate = payload.get("duplicate") is True
            self.counters["acked"] += 1
            self.counters["duplicate_acks"] += duplicate
            ack = Ack(
                entry.message_id,
                _opt_str(payload.get("roomId")) or entry.room,
                event_id,
                _opt_str(payload.get("epoch")),
                duplicate,
            )
            self._outputs.append(Completed(entry.message_id, ack))
            return
        error = payload.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        if code in ("RATE_LIMIT", "INTERNAL"):
            # Hold every message for the server's retryAfter; after a rate limit, send
            # one at a time, that far apart, until the backlog is gone: a limited
            # message is sent once more, not once per window.
            hint = parse_delay(error.get("retryAfter") if isinstance(error, dict) else None)
            wait = min(hint, self.max_server_delay) if hint is not None else 0.5
            wait = max(wait, HOLD_MIN)
            self._hold_until = max(self._hold_until, now + wait)
            self._note_deadline(self._hold_until)
            if code == "RATE_LIMIT":
                self.counters["rate_limited"] += 1
                paced = bool(self._pace) and (entry.sent_at or 0.0) > self._paced_since
                if not self._pace:
                    self._paced_since = now
                # Limited although paced (the path bunched our sends up): slow down.
                grown = self._pace * PACE_GROWTH if paced else self._pace
                self._pace = min(PACE_MAX, max(grown, wait * PACE_MARGIN))
                self._limited_at = now
            self.outbox.mark_queued(entry)
            return
        self._remove_entry(entry)
        self._fail(entry.message_id, _rejection(payload, room=entry.room))

    # -- internals: sending -------------------------------------------------------------

    def _enqueue_message(
        self,
        kind: str,
        room: str,
        payload: Any,
        now: float,
        ttl: float | None,
        message_id: str | None,
        *,
        raw: bool = False,
        wants_ack: bool = True,
    ) -> str:
        self._check_open_for_work()
        message_id = message_id or self._new_id()
        if message_id in self.outbox:
            return message_id
        size = _size_of(payload, raw=raw)
        entry = OutboxEntry(
            message_id,
            kind,
            room,
            payload,
            size,
            now,
            None if ttl is None else now + ttl,
            raw=raw,
            wants_ack=wants_ack,
        )
        for dropped in self.outbox.add(entry):
            self._ttl_count -= dropped.expires_at is not None
            self._dropped(dropped, "outbox full")
        self._ttl_count += entry.expires_at is not None
        if entry.expires_at is not None:
            self._note_deadline(entry.expires_at)
        if wants_ack and not raw:
            self._record(("enqueue", entry))
        self._flush(now)
        return message_id

    def _enqueue_request(
        self,
        kind: RequestKind,
        type_: str,
        payload: dict[str, Any],
        now: float,
        *,
        room: str | None = None,
        key: str | None = None,
        raw: bool = False,
        resend: bool = True,
    ) -> str:
        request_id = self._new_id()
        request = Request(
            request_id, kind, type_, payload, room, key or request_id, raw=raw, resend=resend
        )
        self._requests[request_id] = request
        if self._welcomed:
            self._transmit_request(request, now)
        return request.key

    def _transmit_request(self, request: Request, now: float) -> None:
        request.in_flight = True
        request.sent_at = now
        self._note_deadline(now + self.ack_timeout)
        envelope = {"type": request.type, "id": request.request_id, "payload": request.payload}
        if request.raw:
            envelope["raw"] = True
        self._send_buffer.append(envelope)

    def _transmit(self, entry: OutboxEntry, now: float) -> None:
        self.counters["resent" if entry.attempts else "sent"] += 1
        envelope: dict[str, Any] = {"type": entry.kind, "payload": entry.payload}
        if entry.raw:
            envelope["raw"] = True
        if not entry.wants_ack:
            self._send_buffer.append(envelope)
            self._remove_entry(entry)
            self._complete(entry.message_id, None)
            return
        envelope["id"] = entry.message_id
        self.outbox.mark_sent(entry, now)
        self._note_deadline(now + self._retransmit_wait(entry))
        self._send_buffer.append(envelope)

    def _note_deadline(self, when: float) -> None:
        if self._new_deadline is None or when < self._new_deadline:
            self._new_deadline = when

    def take_new_deadline(self) -> float | None:
        """The earliest deadline created since the last call (None: none was).

        Lets the caller keep its timer asleep unless a deadline earlier than the one
        it waits for appeared, instead of recomputing :meth:`next_deadline` after
        every frame.
        """
        when, self._new_deadline = self._new_deadline, None
        return when

    @property
    def _live(self) -> bool:
        return self._open and self._state is ConnectionState.CONNECTED

    def _flush(self, now: float) -> None:
        """Send what may go now: queued requests once welcomed, messages once live."""
        if not self._welcomed:
            return
        for request in self._requests.values():
            if not request.in_flight:
                self._transmit_request(request, now)
        if self._pace and now - self._limited_at >= PACE_RELEASE:
            # A while without a rate limit: a shorter pace, so that one limit does not
            # slow a steady sender for ever; an empty queue or a short pace ends it.
            pace = self._pace * PACE_DECAY
            self._pace = pace if self.outbox.has_queued and pace >= HOLD_MIN else 0.0
            self._limited_at = now
        if not self.outbox.has_queued or not self._live:
            return
        if self._hold_until > now:
            self._note_deadline(self._hold_until)  # the caller's timer may not know it
            return
        budget = self.max_in_flight - self.outbox.in_flight_count()
        if self._pace:
            if now < self._paced_at + self._pace:
                self._note_deadline(self._paced_at + self._pace)
                return
            budget = min(budget, 1)
        if budget <= 0:
            return
        if self._pace:
            self._paced_at = now
        limit = self._max_frame
        for entry in list(itertools.islice(self.outbox.queued(), budget)):
            if limit is not None and entry.size > limit:
                # The server would close the connection (1009) and the resend would loop.
                self._remove_entry(entry)
                self._fail(
                    entry.message_id, RequestRejected("MESSAGE_TOO_LARGE", f"over {limit} bytes")
                )
                continue
            self._transmit(entry, now)

    # -- internals: helpers -----------------------------------------------------------

    def _check_open_for_work(self) -> None:
        if self._state in (ConnectionState.CLOSING, ConnectionState.CLOSED):
            cause = self.close_error
            reason = f": {type(cause).__name__}: {cause}" if cause is not None else ""
            raise ClientClosed(f"the client is closed{reason}") from cause

    def _record(self, change: StoreChange) -> None:
        if self.track_changes:
            self._changes.append(change)

    def store_changes(self) -> list[StoreChange]:
        """Return and forget the changes a durable store must mirror, in order.

        ``("enqueue", entry)``, ``("remove", message_id)``, ``("rooms", [room, …])``,
        ``("forget", room)``, ``("cursor", room, epoch, last_event_id)`` — the cursor
        baselines the session sets itself (first join, after a truncated sync); the
        cursors of delivered events are the client's to record, once delivered.
        Removals because the client closed are not changes: those messages stay.
        """
        changes, self._changes = self._changes, []
        return changes

    def restore(
        self,
        rooms: list[str],
        cursors: dict[str, tuple[str | None, int | None]],
        entries: list[OutboxEntry],
    ) -> None:
        """Load what a durable store kept (before the first connect).

        Rooms are rejoined in this order and synced from their cursors; the
        messages are sent again, in order, with their original ids.

        More messages than the outbox takes: under ``overflow="raise"`` this raises
        OutboxFull and restores nothing (the caller must close the store); under
        ``"drop_oldest"`` the oldest are dropped as a live overflow drops them: a
        ``remove`` store change, the ``dropped`` counter, a MessageDropped failure
        and a ``MESSAGE_DROPPED`` error event each.
        """
        if self._state is not ConnectionState.IDLE:
            raise InvalidState("restore() is for a session that has not connected yet")
        box = self.outbox
        size = sum(entry.size for entry in entries)
        count = len(box) + len(entries)
        if box.overflow == "raise" and (count > box.limit or box.bytes + size > box.max_bytes):
            raise OutboxFull(
                f"the store holds {len(entries)} queued messages ({size} bytes), more than "
                f"the outbox takes (outbox_limit={box.limit}, outbox_max_bytes="
                f"{box.max_bytes}): raise the limits or use overflow='drop_oldest'"
            )
        for name in rooms:
            epoch, last = cursors.get(name, (None, None))
            self.rooms[name] = Room(name, epoch=epoch, last_event_id=last)
        for entry in entries:
            try:
                dropped = box.add(entry)
            except OutboxFull:  # alone larger than outbox_max_bytes
                self._dropped(entry, "larger than the outbox")
                continue
            for old in dropped:
                self._ttl_count -= old.expires_at is not None
                self._dropped(old, "outbox full on restore")
            self._ttl_count += entry.expires_at is not None
            if entry.expires_at is not None:
                self._note_deadline(entry.expires_at)

    def _dropped(self, entry: OutboxEntry, why: str) -> None:
        """Report a message the outbox dropped (it is no longer in the outbox)."""
        self._record(("remove", entry.message_id))
        self.counters["dropped"] += 1
        error = MessageDropped(f"message {entry.message_id} dropped: {why}")
        self._outputs.append(Failed(entry.message_id, error))
        self._outputs.append(ErrorEvent("MESSAGE_DROPPED", str(error), error))

    def _remove_entry(self, entry: OutboxEntry) -> None:
        self.outbox.remove(entry.message_id)
        self._ttl_count -= entry.expires_at is not None
        self._record(("remove", entry.message_id))

    def _fail_queued_for(self, room: str, error: RtClientError) -> None:
        for entry in list(self.outbox.queued()):
            if entry.room == room and entry.kind == "chat:send":
                self._remove_entry(entry)
                self._fail(entry.message_id, error)

    def _complete(self, key: str, result: Any) -> None:
        self._outputs.append(Completed(key, result))

    def _fail(self, key: str, error: RtClientError) -> None:
        self._outputs.append(Failed(key, error))

    def malformed(self, what: str) -> None:
        """A frame from the server could not be decoded: counted and reported."""
        self._malformed(what)

    def _malformed(self, what: str) -> None:
        self.counters["malformed"] += 1
        self._peerlog.warn("MALFORMED", f"malformed input from the server: {what}")
        self._outputs.append(ErrorEvent("MALFORMED", what))


def _rejection(payload: dict[str, Any], *, room: str | None = None) -> RtClientError:
    error = payload.get("error")
    code = str(error.get("code", "ERROR")) if isinstance(error, dict) else "ERROR"
    message = peer_text(str(error.get("message", ""))) if isinstance(error, dict) else ""
    if code == "FORBIDDEN":
        return Forbidden(message or "forbidden")
    if code == "NOT_IN_ROOM" and room is not None:
        return NotJoined(room)
    return RequestRejected(code, message)


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _size_of(payload: Any, *, raw: bool) -> int:
    """About how many bytes ``payload`` takes on the wire (the outbox's byte bound).

    Chat payloads are flat dicts of strings: their size is counted without encoding
    them (the codec encodes once, when sending). Generic emits are measured as JSON,
    ``bytes`` by their length (the client checked that its codec can carry them).
    """
    if raw or not isinstance(payload, dict):
        text = json.dumps(payload, ensure_ascii=False, default=_binary_size)
        return len(text.encode()) + _ENVELOPE_OVERHEAD
    size = _ENVELOPE_OVERHEAD
    for key, value in payload.items():
        size += len(key) + (len(value.encode()) if isinstance(value, str) else 24)
    return size


def _binary_size(value: object) -> object:
    """``bytes`` in a payload count as their length; anything else JSON refuses."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "#" * len(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
