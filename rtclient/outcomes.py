"""What the session hands the caller: outcomes in order, and the counters beside them.

The session's parts (the state tables, recovery, sending) share one :class:`Outcomes`
so that everything that happened reaches the caller in the order it happened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .errors import Forbidden, NotJoined, RequestRejected, RtClientError
from .events import ErrorEvent, Event, Gap, QualityChanged, StateChanged
from .peerlog import PeerLog
from .redact import peer_text

__all__ = ["COUNTERS", "Completed", "Failed", "Outcomes", "Output", "rejection"]

log = logging.getLogger("rtclient")

COUNTERS = (
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
    "rejoins_deferred",
    "syncs_deferred",
    "volatile_sent",
    "volatile_dropped",
    "drain_notices",
)
"""The counters a session keeps (``Session.stats``)."""


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


class Outcomes:
    """The outcomes not yet collected, the counters, and the peer-input log."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.peerlog = PeerLog(log)
        self._items: list[Output] = []

    def add(self, item: Output) -> None:
        """Queue ``item`` for the caller."""
        self._items.append(item)

    def complete(self, key: str, result: Any) -> None:
        """The operation named by ``key`` succeeded."""
        self._items.append(Completed(key, result))

    def fail(self, key: str, error: RtClientError) -> None:
        """The operation named by ``key`` failed."""
        self._items.append(Failed(key, error))

    def malformed(self, what: str) -> None:
        """Input from the server was malformed: counted, logged (rate-limited), reported."""
        self.counters["malformed"] += 1
        self.peerlog.warn("MALFORMED", f"malformed input from the server: {what}")
        self._items.append(ErrorEvent("MALFORMED", what))

    def take(self) -> list[Output]:
        """Return and forget the outcomes, in order."""
        items, self._items = self._items, []
        return items


def rejection(payload: dict[str, Any], *, room: str | None = None) -> RtClientError:
    """The error an error reply (``success: false``) stands for."""
    error = payload.get("error")
    code = str(error.get("code", "ERROR")) if isinstance(error, dict) else "ERROR"
    message = peer_text(str(error.get("message", ""))) if isinstance(error, dict) else ""
    if code == "FORBIDDEN":
        return Forbidden(message or "forbidden")
    if code == "NOT_IN_ROOM" and room is not None:
        return NotJoined(room)
    return RequestRejected(code, message)


def opt_str(value: object) -> str | None:
    """``value`` if it is a string, else None."""
    return value if isinstance(value, str) else None


def opt_int(value: object) -> int | None:
    """``value`` if it is an int (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
