"""The application's operations on a session: :class:`Operations`, a base of
:class:`~rtclient.session.Session`.

``join``, ``leave``, ``send``, ``send_direct``, ``emit``, ``cancel``, ``request``,
``send_volatile`` and ``notify`` record what the application asked for; the outbox, acks
and the send window decide the rest (:mod:`rtclient.sending`, :mod:`rtclient.recovery`).
Sans-I/O like the session: no awaiting, no clock (``now`` is an argument).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ClientClosed, MessageDropped, NotJoined, RtClientError
from .events import ConnectionState
from .outbox import Outbox
from .outcomes import Outcomes
from .pending import RequestKind
from .recovery import Recovery
from .rooms import Room
from .sending import Sender
from .states import ConnectionMachine

__all__ = ["Operations"]


class Operations:
    """The application's operations; the :class:`~rtclient.session.Session` sets up the
    parts declared here."""

    _machine: ConnectionMachine
    _out: Outcomes
    _sender: Sender
    _recovery: Recovery
    outbox: Outbox
    rooms: dict[str, Room]
    counters: dict[str, int]
    close_error: RtClientError | None

    if TYPE_CHECKING:

        @property
        def max_in_flight(self) -> int: ...

    def join(self, room: str, now: float) -> str:
        """Join ``room`` (remembered, rejoined after every reconnect). Returns the outcome key.

        The key's ``Completed`` result is the member list from the server.
        """
        self._check_open_for_work()
        return self._recovery.join(room, now, welcomed=self._machine.welcomed)

    def leave(self, room: str, now: float) -> str:
        """Leave ``room``: forget it, fail its queued messages. Returns the outcome key."""
        return self._recovery.leave(room, now, welcomed=self._machine.welcomed)

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
        early: bool = False,
    ) -> str:
        """Queue a generic event (any server); returns its message id (the outcome key).

        Kept in the outbox like a chat message: sent when live, sent again after a
        reconnect until acknowledged. With ``ack=False`` it is done once written to a
        live connection. When ``data`` is a dict, the message id is added to it under
        ``message_id_field`` so the server (or the receiving app) can deduplicate.
        The ``Completed`` result is the ack's arguments (one value, or a list).

        ``early`` (an emit from an ``on_connect`` hook, the rejoin): while the welcomed
        connection is not live yet, it is written at once, ahead of the outbox, and
        belongs to this connection: ``ack=False`` is done once written; with ``ack``
        it is a request that fails with ConnectionLost if the connection drops first
        (the hook runs again on the next one).
        """
        message_id = self._sender.new_id()
        if isinstance(data, dict) and message_id_field:
            data = {**data, message_id_field: data.get(message_id_field, message_id)}
        if early and self._machine.welcomed and not self._machine.live:
            self._check_open_for_work()
            if ack:
                return self._sender.enqueue_request(
                    RequestKind.GENERIC, event, data, now, raw=True, resend=False
                )
            self.counters["sent"] += 1
            self._sender.push({"type": event, "payload": data, "raw": True})
            self._out.complete(message_id, None)
            return message_id
        return self._enqueue_message(event, "", data, now, ttl, message_id, raw=True, wants_ack=ack)

    def cancel(self, message_id: str) -> bool:
        """Withdraw a message that has not been transmitted yet; True if it was withdrawn."""
        entry = self.outbox.get(message_id)
        if entry is None or entry.in_flight or entry.attempts > 0:
            return False
        self._sender.remove_entry(entry)
        self._out.fail(message_id, MessageDropped("cancelled by the application"))
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
        return self._sender.enqueue_request(
            RequestKind.GENERIC, type_, payload, now, raw=raw, resend=resend
        )

    def send_volatile(self, room: str, text: str) -> bool:
        """Send a chat message now or never: not queued, not resent, no ack awaited.

        Dropped (and counted in ``volatile_dropped``) when not live or when
        ``max_in_flight`` messages are already waiting for acks (congestion).
        """
        if room not in self.rooms:
            raise NotJoined(room)
        if not self._machine.live or self.outbox.in_flight_count() >= self.max_in_flight:
            self.counters["volatile_dropped"] += 1
            return False
        self.counters["volatile_sent"] += 1
        self._sender.push(
            {
                "type": "chat:send",
                "id": self._sender.new_id(),
                "payload": {"roomId": room, "text": text},
            }
        )
        return True

    def notify(self, type_: str, payload: dict[str, Any]) -> bool:
        """Send a fire-and-forget message if live (typing indicators); False if not sent."""
        if self._machine.state is not ConnectionState.CONNECTED:
            return False
        self._sender.push({"type": type_, "payload": payload})
        return True

    # -- internals -----------------------------------------------------------------------

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
        return self._sender.enqueue_message(
            kind, room, payload, now, ttl, message_id, raw=raw, wants_ack=wants_ack
        )

    def _check_open_for_work(self) -> None:
        if self._machine.finished:
            cause = self.close_error
            reason = f": {type(cause).__name__}: {cause}" if cause is not None else ""
            raise ClientClosed(f"the client is closed{reason}") from cause
