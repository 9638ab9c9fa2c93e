"""What ``rtclient chat`` prints: text lines for a person, JSON records for a script.

Pure functions of the delivered items (:mod:`rtclient.events`); nothing here prints.
A token never reaches these functions' output: rtclient's exception texts carry none.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from ..events import (
    Ack,
    ConnectionState,
    Delivered,
    ErrorEvent,
    Event,
    Gap,
    QualityChanged,
    StateChanged,
)

__all__ = [
    "ack_line",
    "ack_record",
    "clip",
    "describe_error",
    "event_line",
    "failure_line",
    "failure_record",
    "item_line",
    "item_record",
    "json_line",
    "paint",
    "pending_line",
    "seconds_text",
    "shown",
]

SILENT_EVENTS = frozenset({"typing:start", "typing:stop", "pong", "connected", "token:expiring"})


_COLOURS = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)


def paint(line: str, user: str | None, colour: bool) -> str:
    """``line`` with ``user``'s name in a colour of its own (ANSI), when ``colour``.

    The colour is a stable function of the name (CRC-32), so a user keeps it.
    """
    if not colour or not user:
        return line
    code = _COLOURS[zlib.crc32(user.encode()) % len(_COLOURS)]
    return line.replace(f" {user}", f" \x1b[{code}m{user}\x1b[0m", 1)


def clip(text: str, width: int = 60) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def describe_error(error: BaseException | None) -> str:
    """``Type: message`` for an exception (the message alone for a bare type)."""
    if error is None:
        return "unknown error"
    text = shown(error)  # an error's text may carry what the server said
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def seconds_text(seconds: float) -> str:
    """``2.1 s``, or ``0.04 s`` below one second (where one decimal would say 0.0)."""
    return f"{seconds:.1f} s" if seconds >= 0.95 else f"{seconds:.2f} s"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


_CONTROLS = {
    code: "\ufffd" for code in (*range(0x20), *range(0x7F, 0xA0)) if chr(code) not in "\n\t"
}


def shown(value: object) -> str:
    """``value`` as text that is safe to print: control characters (escape sequences,
    bells, carriage returns) from a peer become U+FFFD; a newline and a tab stay."""
    return str(value).translate(_CONTROLS)


def event_line(event: Event) -> str | None:
    """A server event as a line, or None for what the toolbar shows instead (typing, …).

    What came from the server is passed through :func:`shown` (no escape sequences)."""
    data = event.data
    who = shown(event.sender or data.get("userId") or data.get("from") or "?")
    room = shown(event.room or data.get("roomId") or "?")
    tag = " (replayed)" if event.replayed else ""
    number = f"#{event.event_id} " if event.event_id is not None else ""
    if event.name == "chat:message":
        return f"[{room}] {number}{who}: {shown(event.text or '')}{tag}"
    if event.name == "dm:message":
        to = shown(data.get("to", "you"))
        return f"[dm] {number}{who} → {to}: {shown(event.text or '')}{tag}"
    if event.name == "user:joined":
        return f"[{room}] * {who} joined"
    if event.name == "user:left":
        return f"[{room}] * {who} left"
    if event.name == "message:read":
        return None
    if event.name in SILENT_EVENTS:
        return None
    fields = json.dumps(data, ensure_ascii=False, sort_keys=True)  # escapes controls
    return f"[{room}] {shown(event.name)} {fields}"


def state_line(change: StateChanged) -> str | None:
    """A state change worth a line: lost, back, closed."""
    new = change.new
    if new is ConnectionState.RECONNECTING:
        delay = "" if change.delay is None else f"; reconnecting in {seconds_text(change.delay)}"
        if change.old in (ConnectionState.CONNECTED, ConnectionState.RECOVERING):
            return f"· connection lost ({describe_error(change.error)}){delay}"
        return f"· cannot connect ({describe_error(change.error)}){delay}"
    if new is ConnectionState.CONNECTED:
        return "· connected"
    if new is ConnectionState.CLOSED and change.error is not None:
        return f"· closed: {describe_error(change.error)}"
    if new is ConnectionState.CLOSED:
        return "· closed"
    return None


def item_line(item: Delivered) -> str | None:
    """Any delivered item as a line for a person, or None if it is not worth one."""
    if isinstance(item, Event):
        return event_line(item)
    if isinstance(item, StateChanged):
        return state_line(item)
    if isinstance(item, Gap):
        resumed = f", resuming at #{item.resumed_at}" if item.resumed_at is not None else ""
        return (
            f"! [{item.room}] events after #{item.after_event_id} are lost ({item.reason}){resumed}"
        )
    if isinstance(item, QualityChanged):
        return (
            f"· link quality {item.old.value} → {item.new.value} "
            f"(p50 {_ms(item.snapshot.p50)}, p95 {_ms(item.snapshot.p95)})"
        )
    return f"! {item.code}: {item.message}"


def pending_line(room: str, text: str, *, online: bool) -> str:
    """The line for a message just typed: it is in the outbox, not yet acknowledged."""
    where = "" if online else " (offline: queued)"
    return f"… pending  [{room}] {clip(text)}{where}"


def ack_line(ack: Ack, text: str) -> str:
    """The line for an acknowledged message: ``✓ #12  [room] text``."""
    again = " (duplicate)" if ack.duplicate else ""
    number = f"#{ack.event_id}" if ack.event_id is not None else "#?"
    return f"✓ {number}{again}  [{ack.room}] {clip(text)}"


def failure_line(room: str, text: str, error: BaseException) -> str:
    """The line for a message that will not be delivered, and why."""
    return f"✗ {describe_error(error)}  [{room}] {clip(text)}"


# -- JSON records (pipe mode) --------------------------------------------------------------


def json_line(record: dict[str, Any]) -> str:
    """One compact JSON object on one line."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def item_record(item: Delivered) -> dict[str, Any]:
    """Any delivered item as a JSON-ready record with an ``event`` key."""
    if isinstance(item, Event):
        data = item.data
        record: dict[str, Any] = {
            "event": item.name,
            "room": item.room or data.get("roomId"),
            "from": item.sender or data.get("userId"),
            "text": item.text,
            "eventId": item.event_id,
            "replayed": item.replayed,
        }
        if item.message_id is not None:
            record["messageId"] = item.message_id
        if item.name not in ("chat:message", "dm:message"):
            record["data"] = data
        return record
    if isinstance(item, StateChanged):
        return {
            "event": "state",
            "old": item.old.value,
            "new": item.new.value,
            "delay": item.delay,
            "error": None if item.error is None else describe_error(item.error),
            "endpoint": item.endpoint,
        }
    if isinstance(item, Gap):
        return {
            "event": "gap",
            "room": item.room,
            "reason": item.reason,
            "afterEventId": item.after_event_id,
            "resumedAt": item.resumed_at,
        }
    if isinstance(item, QualityChanged):
        snap = item.snapshot
        return {
            "event": "quality",
            "old": item.old.value,
            "new": item.new.value,
            "p50": None if snap.p50 is None else round(snap.p50 * 1000, 3),
            "p95": None if snap.p95 is None else round(snap.p95 * 1000, 3),
        }
    assert isinstance(item, ErrorEvent)
    return {"event": "error", "code": item.code, "message": item.message}


def ack_record(ack: Ack, text: str, line: int) -> dict[str, Any]:
    """The record for an acknowledged input line (``line`` counts from 1)."""
    return {
        "event": "ack",
        "room": ack.room,
        "eventId": ack.event_id,
        "messageId": ack.message_id,
        "duplicate": ack.duplicate,
        "line": line,
        "text": text,
    }


def failure_record(room: str, text: str, line: int, error: BaseException) -> dict[str, Any]:
    """The record for an input line that was not delivered."""
    return {
        "event": "failed",
        "room": room,
        "line": line,
        "text": text,
        "error": type(error).__name__,
        "message": str(error),
    }
