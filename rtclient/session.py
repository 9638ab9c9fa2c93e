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
    ProtocolError,
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
from .ids import new_message_id
from .outbox import Outbox, OutboxEntry, Overflow
from .quality import QualityLevel, QualitySnapshot, QualityTracker
from .requests import Request, RequestKind
from .rooms import Room, RoomPhase

__all__ = ["Completed", "Failed", "InvalidState", "Output", "Session"]

LOGGED_EVENTS = frozenset({"chat:message", "dm:message"})
MAX_RETRY_AFTER = 300.0  # a server's retryAfter beyond this is not believed
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
        self._passive: dict[str, Room] = {}
        self._requests: dict[str, Request] = {}
        self._send_buffer: list[dict[str, Any]] = []
        self._outputs: list[Output] = []
        self._hold_until = 0.0
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
            passive = self._passive.pop(room, None)
            state = Room(room, epoch=passive.epoch if passive else None)
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
            self._enqueue_request(RequestKind.LEAVE, "room:leave", {"roomId": room}, now, key=key)
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
                ErrorEvent(str(payload.get("code", "ERROR")), str(payload.get("message", "")))
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
        elif head is not None and epoch == room.epoch and head == room.last_event_id:
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
        events = payload.get("events")
        if not isinstance(events, list):
            self._malformed("sync reply without an events list")
            events = []
        epoch = _opt_str(payload.get("epoch"))
        first = next((e.get("eventId") for e in events if isinstance(e, dict)), None)
        if payload.get("truncated") is True:
            after = room.last_event_id or 0
            reason = "epoch" if epoch is not None and epoch != room.epoch else "retention"
            self.counters["gaps"] += 1
            resumed = first if isinstance(first, int) else None
            self._outputs.append(Gap(room.name, reason, after, room.epoch, epoch, resumed))
            head = _opt_int(payload.get("lastEventId")) or 0
            room.advance(resumed - 1 if resumed is not None else head, epoch)
            self._record(("cursor", room.name, room.epoch, room.last_event_id))
        progressed = False
        for item in events:
            name = "dm:message" if isinstance(item, dict) and "to" in item else "chat:message"
            progressed |= self._deliver_logged(name, item, room, replayed=True)
        if payload.get("more") is True and progressed:
            self._send_sync(room, now)
        else:
            self._go_live(room, now, after_sync=True)

    def _go_live(self, room: Room, now: float, *, after_sync: bool = False) -> None:
        """Deliver the held events and go live.

        ``after_sync``: a hole the sync just could not fill (it failed, or the server
        has nothing up to the held event) is reported as a gap and skipped, instead
        of syncing again and again.
        """
        room.phase = RoomPhase.LIVE
        for event_id, name, payload in room.release():
            epoch = _opt_str(payload.get("epoch"))
            if (
                after_sync
                and not room.is_duplicate(event_id, epoch)
                and not room.is_next(event_id, epoch)
            ):
                self.counters["gaps"] += 1
                after = room.last_event_id or 0
                self._outputs.append(
                    Gap(room.name, "unavailable", after, room.epoch, epoch, event_id)
                )
                room.advance(event_id - 1, epoch)
            after_sync = False
            self._on_logged_event(name, payload, now)
            if room.phase is not RoomPhase.LIVE:
                break  # a hole: a new sync is under way and holds the rest
        self._maybe_live(now)

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
            room = self._passive.setdefault(room_id, Room(room_id, tracked=False))
            self._deliver_logged(name, payload, room, replayed=False)
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

    def _deliver_logged(self, name: str, payload: object, room: Room, *, replayed: bool) -> bool:
        if not isinstance(payload, dict) or not isinstance(payload.get("eventId"), int):
            self._malformed(f"{name} in {room.name} without an integer eventId")
            return False
        event_id: int = payload["eventId"]
        epoch = _opt_str(payload.get("epoch"))
        if room.is_duplicate(event_id, epoch):
            self.counters["duplicates_dropped"] += 1
            return False
        self._emit_logged(name, payload, room, event_id, epoch, replayed=replayed)
        return True

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
            event_id = payload.get("eventId")
            if not isinstance(event_id, int):
                self._malformed("message ack without an integer eventId")
                self._remove_entry(entry)
                self._fail(entry.message_id, ProtocolError("the server's ack has no eventId"))
                return
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
            self.counters["rate_limited"] += code == "RATE_LIMIT"
            retry_after = error.get("retryAfter") if isinstance(error, dict) else None
            wait = _seconds(retry_after, default=0.5)
            self._hold_until = max(self._hold_until, now + max(0.0, wait))
            self._note_deadline(self._hold_until)
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
            self._record(("remove", dropped.message_id))
            self.counters["dropped"] += 1
            error = MessageDropped(f"message {dropped.message_id} dropped: outbox full")
            self._outputs.append(Failed(dropped.message_id, error))
            self._outputs.append(ErrorEvent("MESSAGE_DROPPED", str(error), error))
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
        if not self.outbox.has_queued or not self._live:
            return
        if self._hold_until > now:
            return
        budget = self.max_in_flight - self.outbox.in_flight_count()
        if budget <= 0:
            return
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
        """
        if self._state is not ConnectionState.IDLE:
            raise InvalidState("restore() is for a session that has not connected yet")
        for name in rooms:
            epoch, last = cursors.get(name, (None, None))
            self.rooms[name] = Room(name, epoch=epoch, last_event_id=last)
        for entry in entries:
            self.outbox.add(entry)
            self._ttl_count += entry.expires_at is not None
            if entry.expires_at is not None:
                self._note_deadline(entry.expires_at)

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
        self._outputs.append(ErrorEvent("MALFORMED", what))


def _rejection(payload: dict[str, Any], *, room: str | None = None) -> RtClientError:
    error = payload.get("error")
    code = str(error.get("code", "ERROR")) if isinstance(error, dict) else "ERROR"
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    if code == "FORBIDDEN":
        return Forbidden(message or "forbidden")
    if code == "NOT_IN_ROOM" and room is not None:
        return NotJoined(room)
    return RequestRejected(code, message)


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(value: object, *, default: float) -> float:
    """A delay from the peer, as a float in [0, MAX_RETRY_AFTER]; ``default`` if absurd."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return default
    try:
        seconds = float(value)
    except OverflowError:
        return MAX_RETRY_AFTER
    if seconds != seconds:  # NaN
        return default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


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
