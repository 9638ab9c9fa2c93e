"""Acks: what a server's answer to a message or a request settles.

A message's ack settles it (an :class:`~rtclient.events.Ack`), unless the server
refused it for load (RATE_LIMIT, INTERNAL): then it is queued again behind a hold
(see :mod:`rtclient.pacing`). A request's ack completes or fails its waiter; the
recovery plan's own requests (join, sync) are the recovery's to read.
"""

from __future__ import annotations

from typing import Any

from .errors import RtClientError
from .events import Ack
from .outbox import OutboxEntry
from .outcomes import Completed, Outcomes, opt_int, opt_str, rejection
from .pending import Request, RequestKind
from .recovery import Recovery
from .sending import Sender

__all__ = ["on_ack", "settle_message", "settle_request"]


def on_ack(
    sender: Sender,
    recovery: Recovery,
    request_id: object,
    payload: dict[str, Any],
    now: float,
    args: object = None,
) -> None:
    """Route an ack by its id: to a message, a request, or the recovery plan's request."""
    out = sender.out
    if not isinstance(request_id, str):
        out.malformed("ack without a string id")
        return
    ok = payload.get("success") is True
    entry = sender.outbox.get(request_id)
    if entry is not None:
        settle_message(sender, out, entry, ok, payload, now, args)
        return
    request = sender.requests.pop(request_id, None)
    if request is None:
        return  # the ack of a retransmitted request, or of an expired message
    room = recovery.rooms.get(request.room) if request.room is not None else None
    if request.kind is RequestKind.JOIN:
        if room is not None and room.request_id == request_id:
            recovery.on_join_ack(room, ok, payload, now)
    elif request.kind is RequestKind.SYNC:
        if room is not None and room.request_id == request_id:
            recovery.on_sync_ack(room, ok, payload, now)
    else:
        settle_request(out, request, ok, payload, args)


def settle_message(
    sender: Sender,
    out: Outcomes,
    entry: OutboxEntry,
    ok: bool,
    payload: dict[str, Any],
    now: float,
    args: object,
) -> None:
    """Settle a message by its ack (or queue it again after a refusal for load)."""
    if entry.raw:  # a generic emit: whatever the server answered is the answer
        sender.remove_entry(entry)
        if isinstance(args, RtClientError):  # an adapter read a refusal (never a peer's data)
            out.fail(entry.message_id, args)
            return
        out.counters["acked"] += 1
        if entry.attempts == 1 and entry.sent_at is not None:
            sender.quality.ack_rtt(now - entry.sent_at)
        if isinstance(args, list):
            result: Any = args[0] if len(args) == 1 else args
        else:
            result = payload
        out.complete(entry.message_id, result)
        return
    if ok:
        # The server says it committed the message: that settles it, whatever else
        # the ack gets wrong. Failing it would make an app that retries post twice.
        event_id = opt_int(payload.get("eventId"))
        if event_id is None:
            out.malformed(
                f"ack of {entry.message_id} says success without an integer eventId "
                f"({type(payload.get('eventId')).__name__}): settled with event_id None"
            )
        sender.remove_entry(entry)
        if entry.attempts == 1 and entry.sent_at is not None:
            sender.quality.ack_rtt(now - entry.sent_at)  # Karn: only unambiguous samples
        duplicate = payload.get("duplicate") is True
        out.counters["acked"] += 1
        out.counters["duplicate_acks"] += duplicate
        ack = Ack(
            entry.message_id,
            opt_str(payload.get("roomId")) or entry.room,
            event_id,
            opt_str(payload.get("epoch")),
            duplicate,
        )
        out.add(Completed(entry.message_id, ack))
        return
    error = payload.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    if code in ("RATE_LIMIT", "INTERNAL"):
        retry_after = error.get("retryAfter") if isinstance(error, dict) else None
        sender.pacer.refused(str(code), retry_after, entry.sent_at, now)
        sender.note_deadline(sender.pacer.hold_until)
        if code == "RATE_LIMIT":
            out.counters["rate_limited"] += 1
        sender.outbox.mark_queued(entry)
        return
    sender.remove_entry(entry)
    out.fail(entry.message_id, rejection(payload, room=entry.room))


def settle_request(
    out: Outcomes, request: Request, ok: bool, payload: dict[str, Any], args: object
) -> None:
    """Complete or fail the waiter of an application request (or a leave) by its ack."""
    if request.raw and isinstance(args, RtClientError):  # an adapter read a refusal
        out.fail(request.key, args)
    elif request.raw:
        result = args[0] if isinstance(args, list) and len(args) == 1 else args
        out.complete(request.key, payload if args is None else result)
    elif request.kind is RequestKind.LEAVE or ok:
        out.complete(request.key, payload)
    else:
        out.fail(request.key, rejection(payload))
