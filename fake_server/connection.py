"""One client connection as the hub sees it: the :class:`Peer` protocol and :class:`Connection`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .auth import Principal
from .lanes import Lane
from .timers import Timer

__all__ = ["Connection", "Peer", "inbox_room"]


class Peer(Protocol):
    """One client connection as a transport sees it.  None of these may block."""

    def send(self, envelope: dict[str, Any], *, tag: str | None = None) -> None:
        """Queue one envelope for this peer, after everything queued before.

        ``tag`` (a request type) is counted by :meth:`in_flight` until written.
        """

    def in_flight(self, tag: str) -> int:
        """Envelopes queued with ``tag`` and not written yet."""

    def close(self, code: int, reason: str) -> None:
        """Queue a close with ``code``/``reason`` after the envelopes already queued."""

    def abort(self) -> None:
        """Cut the connection now, without a close frame."""


def inbox_room(user_id: str) -> str:
    """The room that holds ``user_id``'s direct messages."""
    return f"user:{user_id}"


@dataclass(eq=False, slots=True)
class Connection:
    """The hub's state for one authenticated peer."""

    client_id: str
    peer: Peer
    principal: Principal
    rooms: set[str] = field(default_factory=set)
    token_timers: list[Timer] = field(default_factory=list)
    warned_for: float | None = None
    """``exp`` of the token ``token:expiring`` was sent for (once per token)."""
    lane: Lane | None = None
    """Where its requests wait their turn (a store that waits for Redis); else None."""

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    def __repr__(self) -> str:
        return f"Connection({self.client_id}, user={self.user_id!r})"
