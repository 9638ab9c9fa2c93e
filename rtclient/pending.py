"""Requests other than messages that the session has sent or will send, matched by id."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["Request", "RequestKind"]


class RequestKind(enum.Enum):
    """What a request is for; decides what happens on a timeout or a disconnect."""

    JOIN = "join"
    """Part of the recovery plan; sent again on timeout, rebuilt after a reconnect."""
    SYNC = "sync"
    """Part of the recovery plan; sent again on timeout, rebuilt after a reconnect."""
    LEAVE = "leave"
    """Done by the disconnect itself if the connection drops."""
    GENERIC = "generic"
    """An application request: fails with AckTimeout, sent again after a reconnect."""


@dataclass(slots=True, eq=False)
class Request:
    """One request; ``key`` names the application waiter its outcome goes to."""

    request_id: str
    kind: RequestKind
    type: str
    payload: Any
    room: str | None
    key: str
    in_flight: bool = False
    sent_at: float | None = None
    raw: bool = False
    resend: bool = True
    """Send again on the next connection if this one drops before the answer."""
    """A generic Socket.IO call: the payload is sent as is, the ack's arguments returned."""
