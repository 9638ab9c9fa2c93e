"""Sending: the outbox and requests in flight, acks, retransmission, the send window.

A :class:`Sender` decides what goes out on the connection and when: requests once the
server welcomed the connection, messages once live, at most ``max_in_flight`` messages
awaiting acks, none while a rate-limit hold lasts (see :mod:`rtclient.pacing`). It
retransmits unacknowledged messages after the link's retransmission timeout, doubled
per attempt, and settles messages by their acks. It never awaits and reads no clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from .errors import (
    AckTimeout,
    ConnectionLost,
    MessageDropped,
    MessageExpired,
    OutboxFull,
    RequestRejected,
    RtClientError,
)
from .events import ErrorEvent
from .journal import Enqueued, Journal, Removed
from .outbox import Outbox, OutboxEntry
from .outcomes import Failed, Outcomes
from .pacing import Pacer
from .pending import Request, RequestKind
from .quality import QualityTracker
from .sizing import SizeOf
from .states import ConnectionMachine

__all__ = ["Sender"]


class Sender:
    """What is queued and in flight on the session's behalf; see the module doc."""

    def __init__(
        self,
        machine: ConnectionMachine,
        out: Outcomes,
        journal: Journal,
        *,
        outbox: Outbox,
        ack_timeout: float,
        ack_timeout_floor: float,
        max_in_flight: int,
        quality: QualityTracker,
        new_id: Callable[[], str],
        size_of: SizeOf,
        max_server_delay: float,
    ) -> None:
        self._machine = machine
        self.out = out
        """Where outcomes go (shared with the rest of the session)."""
        self._journal = journal
        self.outbox = outbox
        self.ack_timeout = ack_timeout
        self.ack_timeout_floor = min(ack_timeout_floor, ack_timeout)
        self.max_in_flight = max_in_flight
        self.quality = quality
        self.new_id = new_id
        self.size_of = size_of
        self.pacer = Pacer(max_server_delay)
        self.requests: dict[str, Request] = {}
        self.max_frame: int | None = None
        """The server's maxMessageSize: larger messages fail instead of being sent."""
        self._buffer: list[dict[str, Any]] = []
        self._ttl_count = 0
        self._new_deadline: float | None = None

    # -- what the caller collects ----------------------------------------------------

    def data_to_send(self) -> list[dict[str, Any]]:
        """Return and forget the envelopes to write, in order."""
        data, self._buffer = self._buffer, []
        return data

    def has_data_to_send(self) -> bool:
        """Whether :meth:`data_to_send` would return anything."""
        return bool(self._buffer)

    def push(self, envelope: dict[str, Any]) -> None:
        """Write ``envelope`` as it is (no ack awaited, never sent again)."""
        self._buffer.append(envelope)

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must be called next (None: nothing is timed)."""
        deadlines: list[float] = []
        if self._machine.open:
            for entry in self.outbox.in_flight():
                if entry.sent_at is not None:
                    deadlines.append(entry.sent_at + self.retransmit_wait(entry))
            for request in self.requests.values():
                if request.sent_at is not None:
                    deadlines.append(request.sent_at + self.ack_timeout)
            if self._machine.live:
                paced = self.pacer.deadline(queued=self.outbox.has_queued)
                if paced is not None:
                    deadlines.append(paced)
        if self._ttl_count:
            expiry = self.outbox.next_expiry()
            if expiry is not None:
                deadlines.append(expiry)
        return min(deadlines, default=None)

    def note_deadline(self, when: float) -> None:
        """Remember ``when`` for :meth:`take_new_deadline` if it is the earliest yet."""
        if self._new_deadline is None or when < self._new_deadline:
            self._new_deadline = when

    def take_new_deadline(self) -> float | None:
        """The earliest deadline created since the last call (None: none was)."""
        when, self._new_deadline = self._new_deadline, None
        return when

    # -- timing ----------------------------------------------------------------------

    @property
    def ack_wait(self) -> float:
        """The link's RTO (SRTT + 4·RTTVAR) within [ack_timeout_floor, ack_timeout]."""
        rto = self.quality.rto
        if rto is None:
            return self.ack_timeout
        return min(self.ack_timeout, max(self.ack_timeout_floor, rto))

    def retransmit_wait(self, entry: OutboxEntry) -> float:
        """:attr:`ack_wait`, doubled for every transmission so far (RFC 6298 §5.5)."""
        backoff: float = 2.0 ** max(0, entry.attempts - 1)
        return min(self.ack_timeout, self.ack_wait * backoff)

    def tick(self, now: float) -> None:
        """Expire messages, retransmit unacknowledged ones, time requests out, send."""
        if self._ttl_count:
            for entry in self.outbox.expire(now):
                self._ttl_count -= 1
                self.out.counters["expired"] += 1
                self._journal.record(Removed(entry.message_id))
                self.out.fail(
                    entry.message_id,
                    MessageExpired(entry.message_id, maybe_delivered=entry.attempts > 0),
                )
        if not self._machine.open:
            return
        for entry in list(self.outbox.in_flight()):
            if entry.sent_at is not None and entry.sent_at + self.retransmit_wait(entry) <= now:
                self.transmit(entry, now)
        for request_id, request in list(self.requests.items()):
            if request.sent_at is None or request.sent_at + self.ack_timeout > now:
                continue
            if request.kind is RequestKind.GENERIC:
                del self.requests[request_id]
                self.out.fail(request.key, AckTimeout(f"no ack for {request.type} in time"))
            else:
                self.transmit_request(request, now)
        self.pacer.tick(now)
        self.flush(now)

    # -- queueing --------------------------------------------------------------------

    def enqueue_message(
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
        """Queue a message (kept until acked, or written once with ``wants_ack=False``)."""
        message_id = message_id or self.new_id()
        if message_id in self.outbox:
            return message_id
        entry = OutboxEntry(
            message_id,
            kind,
            room,
            payload,
            self.size_of(payload, raw),
            now,
            None if ttl is None else now + ttl,
            raw=raw,
            wants_ack=wants_ack,
        )
        for dropped in self.outbox.add(entry):
            self._ttl_count -= dropped.expires_at is not None
            self.dropped(dropped, "outbox full")
        self._ttl_count += entry.expires_at is not None
        if entry.expires_at is not None:
            self.note_deadline(entry.expires_at)
        if wants_ack and not raw and self._journal.enabled:  # no record built without a store
            self._journal.record(Enqueued(entry))
        self.flush(now)
        return message_id

    def enqueue_request(
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
        """Queue a request (sent at once if welcomed); returns its outcome key."""
        request_id = self.new_id()
        request = Request(
            request_id, kind, type_, payload, room, key or request_id, raw=raw, resend=resend
        )
        self.requests[request_id] = request
        if self._machine.welcomed:
            self.transmit_request(request, now)
        return request.key

    def defer_request(
        self, kind: RequestKind, type_: str, payload: dict[str, Any], at: float, *, room: str
    ) -> str:
        """Queue a request to be written at ``at`` (the ack timer's retransmission does
        it: the request counts as sent ``ack_timeout`` before ``at``); returns its key."""
        request = Request(self.new_id(), kind, type_, payload, room, "")
        request.key = request.request_id
        request.in_flight, request.sent_at = True, at - self.ack_timeout
        self.requests[request.request_id] = request
        self.note_deadline(at)
        return request.key

    def check_restore(self, entries: list[OutboxEntry]) -> None:
        """Raise OutboxFull if ``entries`` do not fit under ``overflow="raise"``."""
        box = self.outbox
        size = sum(entry.size for entry in entries)
        count = len(box) + len(entries)
        if box.overflow == "raise" and (count > box.limit or box.bytes + size > box.max_bytes):
            raise OutboxFull(
                f"the store holds {len(entries)} queued messages ({size} bytes), more than "
                f"the outbox takes (outbox_limit={box.limit}, outbox_max_bytes="
                f"{box.max_bytes}): raise the limits or use overflow='drop_oldest'"
            )

    def restore(self, entries: list[OutboxEntry]) -> None:
        """Queue messages a store kept; what does not fit is dropped and reported."""
        for entry in entries:
            try:
                dropped = self.outbox.add(entry)
            except OutboxFull:  # alone larger than outbox_max_bytes
                self.dropped(entry, "larger than the outbox")
                continue
            for old in dropped:
                self._ttl_count -= old.expires_at is not None
                self.dropped(old, "outbox full on restore")
            self._ttl_count += entry.expires_at is not None
            if entry.expires_at is not None:
                self.note_deadline(entry.expires_at)

    # -- transmitting ----------------------------------------------------------------

    def transmit_request(self, request: Request, now: float) -> None:
        """Write ``request`` (again) and time its ack."""
        request.in_flight = True
        request.sent_at = now
        self.note_deadline(now + self.ack_timeout)
        envelope = {"type": request.type, "id": request.request_id, "payload": request.payload}
        if request.raw:
            envelope["raw"] = True
        self._buffer.append(envelope)

    def transmit(self, entry: OutboxEntry, now: float) -> None:
        """Write a message (again); one without an ack is done once written."""
        self.out.counters["resent" if entry.attempts else "sent"] += 1
        envelope: dict[str, Any] = {"type": entry.kind, "payload": entry.payload}
        if entry.raw:
            envelope["raw"] = True
        if not entry.wants_ack:
            self._buffer.append(envelope)
            self.remove_entry(entry)
            self.out.complete(entry.message_id, None)
            return
        envelope["id"] = entry.message_id
        self.outbox.mark_sent(entry, now)
        self.note_deadline(now + self.retransmit_wait(entry))
        self._buffer.append(envelope)

    def flush(self, now: float) -> None:
        """Send what may go now: queued requests once welcomed, messages once live."""
        if not self._machine.welcomed:
            return
        for request in self.requests.values():
            if not request.in_flight:
                self.transmit_request(request, now)
        pacer = self.pacer
        if pacer.pace:
            pacer.relax(now, queued=self.outbox.has_queued)
        if not self.outbox.has_queued or not self._machine.live:
            return
        count = self.max_in_flight - self.outbox.in_flight_count()
        if pacer.hold_until or pacer.pace:  # held or paced: the pacer decides
            count, wake = pacer.window(now, count)
            if wake is not None:
                self.note_deadline(wake)  # the caller's timer may not know it
        if count <= 0:
            return
        limit = self.max_frame
        for entry in list(itertools.islice(self.outbox.queued(), count)):
            if limit is not None and entry.size > limit:
                # The server would close the connection (1009) and the resend would loop.
                self.remove_entry(entry)
                self.out.fail(
                    entry.message_id, RequestRejected("MESSAGE_TOO_LARGE", f"over {limit} bytes")
                )
                continue
            self.transmit(entry, now)

    # -- settling ------------------------------------------------------------------------

    def remove_entry(self, entry: OutboxEntry) -> None:
        """Forget a settled message (and tell the store)."""
        self.outbox.remove(entry.message_id)
        self._ttl_count -= entry.expires_at is not None
        if self._journal.enabled:  # per message: no record built without a store
            self._journal.record(Removed(entry.message_id))

    def dropped(self, entry: OutboxEntry, why: str) -> None:
        """Report a message the outbox dropped (it is no longer in the outbox)."""
        self._journal.record(Removed(entry.message_id))
        self.out.counters["dropped"] += 1
        error = MessageDropped(f"message {entry.message_id} dropped: {why}")
        self.out.add(Failed(entry.message_id, error))
        self.out.add(ErrorEvent("MESSAGE_DROPPED", str(error), error))

    def fail_queued_for(self, room: str, error: RtClientError) -> None:
        """Fail the chat messages queued (not yet sent) for ``room``."""
        for entry in list(self.outbox.queued()):
            if entry.room == room and entry.kind == "chat:send":
                self.remove_entry(entry)
                self.out.fail(entry.message_id, error)

    def connection_dropped(self) -> None:
        """The connection is gone: requeue messages; settle or keep each request."""
        self._buffer.clear()
        self.outbox.requeue_all()
        for request_id, request in list(self.requests.items()):
            if request.kind is RequestKind.LEAVE:
                # The server drops a connection's memberships when it goes away.
                del self.requests[request_id]
                self.out.complete(request.key, True)
            elif request.kind in (RequestKind.JOIN, RequestKind.SYNC):
                del self.requests[request_id]  # the recovery plan sends them again
            elif not request.resend:
                del self.requests[request_id]
                self.out.fail(
                    request.key, ConnectionLost(None, "connection lost before the answer")
                )
            else:
                request.in_flight = False
                request.sent_at = None

    def fail_all(self, failure: RtClientError) -> None:
        """The session closed: every queued message and pending request fails."""
        for entry in self.outbox.entries():
            self.outbox.remove(entry.message_id)
            self.out.fail(entry.message_id, failure)
        for request_id, request in list(self.requests.items()):
            del self.requests[request_id]
            if request.key is not None:
                self.out.fail(request.key, failure)
