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

This module is a facade; the decisions live beside it: ``operations`` (the application's
operations, a base of :class:`Session`), ``states`` (the connection and room phase
tables), ``recovery`` and ``delivery`` (the plan, holes, events), ``sending``, ``acks``
and ``pacing`` (outbox, acks, rate-limit holds, the send window), ``journal`` (store
changes), ``welcome`` (the welcome, read once) and ``sizing`` (message sizes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .acks import on_ack
from .errors import (
    ClientClosed,
    InvalidState,
    RtClientError,
)
from .events import ConnectionState, ErrorEvent, Gap, QualityChanged
from .hints import DEFAULT_MAX_SERVER_DELAY
from .ids import new_message_id
from .journal import Journal, StoreChange
from .operations import Operations
from .outbox import Outbox, OutboxEntry, Overflow
from .outcomes import Completed, Failed, Outcomes, Output
from .pacing import HOLD_MIN, PACE_MARGIN
from .quality import QualityLevel, QualitySnapshot, QualityTracker
from .recovery import Recovery, join_key, leave_key
from .redact import peer_text
from .rooms import Room
from .sending import Sender
from .sizing import SizeOf, json_size
from .states import ConnectionMachine
from .welcome import RepeatedOffset, SocketIOResume, Welcome, interpret_welcome

__all__ = [
    "HOLD_MIN",
    "OWN_EVENT",
    "PACE_MARGIN",
    "Completed",
    "Failed",
    "InvalidState",
    "Output",
    "Session",
    "join_key",
    "leave_key",
]

LOGGED_EVENTS = frozenset({"chat:message", "dm:message"})


class _OwnEvent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "OWN_EVENT"


OWN_EVENT = _OwnEvent()
"""The value under ``"own"`` of an envelope that holds a generic server's own event
(put there by the transports of generic mode: an object that no decoded frame can
hold, so that a server cannot claim it)."""


class Session(Operations):
    """Rooms, cursors, outbox and in-flight requests of one client; see the module doc.

    A facade: the connection's state lives in a :class:`~rtclient.states.ConnectionMachine`,
    the rooms and the recovery plan in a :class:`~rtclient.recovery.Recovery`, the outbox,
    acks and the send window in a :class:`~rtclient.sending.Sender`.
    """

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
        size_of: SizeOf = json_size,
    ) -> None:
        if ack_timeout <= 0 or max_in_flight < 1 or sync_page_size < 1:
            raise ValueError("ack_timeout, max_in_flight and sync_page_size must be positive")
        self._machine = ConnectionMachine()
        self._out = Outcomes()
        self._journal = Journal()
        self.quality = quality or QualityTracker()
        self._sender = Sender(
            self._machine,
            self._out,
            self._journal,
            outbox=Outbox(limit=outbox_limit, max_bytes=outbox_max_bytes, overflow=overflow),
            ack_timeout=ack_timeout,
            ack_timeout_floor=ack_timeout_floor,
            max_in_flight=max_in_flight,
            quality=self.quality,
            new_id=id_factory,
            size_of=size_of,
            max_server_delay=max_server_delay,
        )
        self._recovery = Recovery(
            self._sender, self._out, self._journal, self._maybe_live, sync_page_size=sync_page_size
        )
        self.outbox = self._sender.outbox
        self.rooms: dict[str, Room] = self._recovery.rooms
        self._recent = self._recovery.delivery.recent
        self.counters: dict[str, int] = self._out.counters
        self.gate_on_welcome = False
        """When true, a welcome does not lead to CONNECTED until :meth:`open_gate`."""
        self._gated = False
        self.close_error: RtClientError | None = None
        """The fatal error that closed the session, if one did."""
        self.endpoint: str | None = None
        """The URL (redacted) the connection is to or the next attempt goes to; the
        caller sets it, state changes carry it (``StateChanged.endpoint``)."""
        self.drain_notice = False
        """The server said ``server:draining`` on the open connection: however it then
        ends, it is a drain (the caller treats the end like a close 1012)."""
        self.resume = SocketIOResume()
        """Socket.IO connection state recovery: the session to resume and the offset.

        Kept by the session so that it outlives a transport: the Client hands it to its
        Socket.IO transport (``SocketIOTransport.resume``), which reads and updates it."""

    # -- configuration -------------------------------------------------------------

    @property
    def ack_timeout(self) -> float:
        """The longest wait for an ack (requests fail after it; messages are resent)."""
        return self._sender.ack_timeout

    @property
    def max_in_flight(self) -> int:
        """The most messages awaiting acks at once (the send window)."""
        return self._sender.max_in_flight

    @property
    def sync_page_size(self) -> int:
        """How many events one sync page asks for."""
        return self._recovery.sync_page_size

    @property
    def track_changes(self) -> bool:
        """When true, changes a durable store must mirror are kept for :meth:`store_changes`."""
        return self._journal.enabled

    @track_changes.setter
    def track_changes(self, value: bool) -> None:
        self._journal.enabled = value

    @property
    def welcome(self) -> Welcome:
        """What the last welcome said (:data:`~rtclient.welcome.NO_WELCOME` before one)."""
        return self._recovery.delivery.welcome

    # -- state -------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The current connection state."""
        return self._machine.state

    @property
    def welcomed(self) -> bool:
        """The server welcomed the open connection (RECOVERING or CONNECTED)."""
        return self._machine.welcomed

    def _set_state(
        self,
        new: ConnectionState,
        *,
        delay: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        self._out.add(self._machine.move(new, delay=delay, error=error, endpoint=self.endpoint))

    def connecting(self) -> None:
        """The client starts its first connection attempt (IDLE → CONNECTING)."""
        self._set_state(ConnectionState.CONNECTING)

    def connection_opened(self) -> None:
        """A connection is open; the session waits for the server's welcome."""
        self._machine.open = True
        self.drain_notice = False

    def attempt_failed(self, error: BaseException, delay: float) -> None:
        """A connection attempt failed; the next one comes after ``delay`` seconds."""
        self._drop_connection()
        self._set_state(ConnectionState.RECONNECTING, delay=delay, error=error)

    def connection_lost(self, error: BaseException, delay: float) -> None:
        """The open connection broke; the next attempt comes after ``delay`` seconds.

        Everything in flight is queued again (same ids), rooms wait for their rejoin.
        """
        self._drop_connection()
        if not self._machine.finished:
            self._set_state(ConnectionState.RECONNECTING, delay=delay, error=error)

    def closing(self) -> None:
        """``close()`` was called: no new work is accepted."""
        if not self._machine.finished:
            self._set_state(ConnectionState.CLOSING)

    def closed(self, error: RtClientError | None = None) -> None:
        """The client stopped; every pending operation fails with ``error`` or ClientClosed."""
        if self._machine.state is ConnectionState.CLOSED:
            return
        self._drop_connection()
        self.close_error = error
        failure = error if error is not None else ClientClosed("the client was closed")
        self._sender.fail_all(failure)
        self._recovery.fail_joins(failure)
        self._set_state(ConnectionState.CLOSED, error=error)

    def _drop_connection(self) -> None:
        self._machine.open = False
        self._recovery.connection_dropped()
        self._sender.connection_dropped()

    # -- what the caller collects ----------------------------------------------------

    def data_to_send(self) -> list[dict[str, Any]]:
        """Return and forget the envelopes to write on the current connection, in order."""
        return self._sender.data_to_send()

    def has_data_to_send(self) -> bool:
        """Whether :meth:`data_to_send` would return anything."""
        return self._sender.has_data_to_send()

    def outcomes(self) -> list[Output]:
        """Return and forget what happened since the last call, in order."""
        return self._out.take()

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must be called next (None: nothing is timed)."""
        return self._sender.next_deadline()

    def take_new_deadline(self) -> float | None:
        """The earliest deadline created since the last call (None: none was).

        Lets the caller keep its timer asleep unless a deadline earlier than the one
        it waits for appeared, instead of recomputing :meth:`next_deadline` after
        every frame.
        """
        return self._sender.take_new_deadline()

    def stats(self) -> dict[str, int]:
        """Counters, plus the current queue sizes."""
        return {
            **self.counters,
            "queued": len(self.outbox),
            "in_flight": self.outbox.in_flight_count(),
            "rooms": len(self.rooms),
        }

    def store_changes(self) -> list[StoreChange]:
        """Return and forget the changes a durable store must mirror, in order.

        Typed records of :mod:`rtclient.journal`: ``Enqueued``, ``Removed``, ``RoomsSet``,
        ``CursorForgotten``, ``CursorSet`` — the cursor baselines the session sets
        itself (first join, after a truncated sync); the cursors of delivered events
        are the client's to record, once delivered. Removals because the client
        closed are not changes: those messages stay.
        """
        return self._journal.take()

    # -- link quality ------------------------------------------------------------------

    def pong(self, rtt: float) -> None:
        """A heartbeat was answered after ``rtt`` seconds."""
        self._quality_moved(self.quality.level, self.quality.pong(rtt))

    def pong_missed(self) -> None:
        """A heartbeat went unanswered."""
        self._quality_moved(self.quality.level, self.quality.missed())

    def _quality_moved(self, old: QualityLevel, new: QualityLevel | None) -> None:
        if new is not None:
            self._out.add(QualityChanged(old, new, self.quality.snapshot()))

    @property
    def ack_wait(self) -> float:
        """How long an unacknowledged request waits before it is sent again.

        The retransmission timeout of the link (SRTT + 4·RTTVAR) within
        [``ack_timeout_floor``, ``ack_timeout``]; ``ack_timeout`` before any sample.
        """
        return self._sender.ack_wait

    def quality_snapshot(self) -> QualitySnapshot:
        """The link's quality figures now."""
        return self.quality.snapshot()

    # -- time and input ------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Let time pass: expire messages, retransmit unacknowledged requests."""
        self._sender.tick(now)

    def receive(self, envelope: object, now: float) -> None:
        """Handle one decoded frame from the server. Malformed input never raises.

        An envelope with ``"own":`` :data:`OWN_EVENT` is a generic server's own event:
        delivered as it is under its name, except ``error`` (an ErrorEvent, as from
        our servers).
        """
        if isinstance(envelope, RepeatedOffset):  # dropped by the Socket.IO transport
            self.counters["duplicates_dropped"] += 1
            return
        if isinstance(envelope, Gap):  # generic mode: the server's sequence started over
            self.counters["gaps"] += 1
            self._out.add(envelope)
            return
        if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
            self._out.malformed("frame is not an object with a string 'type'")
            return
        type_: str = envelope["type"]
        payload = envelope.get("payload", {})
        if not isinstance(payload, dict):
            self._out.malformed(f"{type_}: payload is not an object")
            return
        if envelope.get("own") is OWN_EVENT and type_ != "error":
            # A generic server's own event (an adapter's Received): whatever its name
            # ("ack", "connected", "chat:message"), never read as our contract's frame.
            self._recovery.delivery.on_plain_event(type_, payload)
        elif type_ == "ack":
            on_ack(
                self._sender, self._recovery, envelope.get("id"), payload, now, envelope.get("args")
            )
        elif type_ == "connected":
            self._on_welcome(payload, now)
        elif type_ in LOGGED_EVENTS:
            self._recovery.delivery.on_logged_event(type_, payload, now)
        elif type_ == "server:draining":
            self.drain_notice = True
            self.counters["drain_notices"] += 1
            self._recovery.delivery.on_plain_event(type_, payload)
        elif type_ == "error":
            self.counters["server_errors"] += 1
            self._out.add(
                ErrorEvent(
                    str(payload.get("code", "ERROR")), peer_text(str(payload.get("message", "")))
                )
            )
        else:
            self._recovery.delivery.on_plain_event(type_, payload)
        self._sender.flush(now)

    def malformed(self, what: str) -> None:
        """A frame from the server could not be decoded: counted and reported."""
        self._out.malformed(what)

    def open_gate(self, now: float) -> None:
        """The on-connect hooks are done: the session may go live."""
        self._gated = False
        self._maybe_live(now)

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
        ``Removed`` store change, the ``dropped`` counter, a MessageDropped failure
        and a ``MESSAGE_DROPPED`` error event each.
        """
        if self._machine.state is not ConnectionState.IDLE:
            raise InvalidState("restore() is for a session that has not connected yet")
        self._sender.check_restore(entries)
        for name in rooms:
            epoch, last = cursors.get(name, (None, None))
            self.rooms[name] = Room(name, epoch=epoch, last_event_id=last)
        self._sender.restore(entries)

    # -- internals -----------------------------------------------------------------------

    def _on_welcome(self, payload: dict[str, Any], now: float) -> None:
        if not self._machine.awaiting_welcome:
            # Not waiting for a welcome: a server's own event that happens to be named
            # "connected" (generic Socket.IO servers), delivered as it is.
            self._recovery.delivery.on_plain_event("connected", payload)
            return
        welcome = interpret_welcome(payload)
        self._sender.max_frame = welcome.max_message_size
        self._gated = self.gate_on_welcome
        self._set_state(ConnectionState.RECOVERING)
        self._recovery.welcomed(welcome, now)
        self._maybe_live(now)

    def _maybe_live(self, now: float) -> None:
        if (
            self._machine.state is ConnectionState.RECOVERING
            and not self._gated
            and self._recovery.all_live()
        ):
            self._set_state(ConnectionState.CONNECTED)
            self._sender.flush(now)
