"""The state tables: the connection's state and each room's phase, one table each.

As in h11's ``_state.py``, every transition lives here: the session asks these
machines to move and never assigns a state itself. A transition a table does not
allow raises :class:`rtclient.errors.InvalidState` (a bug of the caller: the peer's
input never reaches a forbidden transition, it is checked before).

Connection states (``ConnectionState``)::

    IDLE ──▶ CONNECTING ──welcome──▶ RECOVERING ──rooms live──▶ CONNECTED
                 │                       ▲  │                        │
                 └──────▶ RECONNECTING ──┘  └────────┬───────────────┘
                               ▲  (lost / failed)    │
                               └─────────────────────┘
    any but CLOSED ──▶ CLOSING ──▶ CLOSED; any but CLOSED ──▶ CLOSED

Room phases (``RoomPhase``)::

    OFFLINE ──join sent──▶ JOINING ──ack, no cursor / at head──▶ LIVE
                              └──ack, behind──▶ SYNCING ──last page──▶ LIVE
    LIVE ──hole in the live stream──▶ SYNCING (again: SYNCING ──▶ SYNCING)
    any ──connection dropped──▶ OFFLINE
"""

from __future__ import annotations

from .errors import InvalidState
from .events import ConnectionState, StateChanged
from .rooms import Room, RoomPhase

__all__ = ["CONNECTION_TABLE", "ROOM_TABLE", "ConnectionMachine", "move_room"]

_S = ConnectionState
CONNECTION_TABLE: dict[ConnectionState, frozenset[ConnectionState]] = {
    _S.IDLE: frozenset({_S.CONNECTING, _S.CLOSING, _S.CLOSED}),
    _S.CONNECTING: frozenset({_S.RECOVERING, _S.RECONNECTING, _S.CLOSING, _S.CLOSED}),
    _S.RECOVERING: frozenset({_S.CONNECTED, _S.RECONNECTING, _S.CLOSING, _S.CLOSED}),
    _S.CONNECTED: frozenset({_S.RECONNECTING, _S.CLOSING, _S.CLOSED}),
    _S.RECONNECTING: frozenset({_S.RECONNECTING, _S.RECOVERING, _S.CLOSING, _S.CLOSED}),
    _S.CLOSING: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}
"""For each connection state, the states it may move to."""

_P = RoomPhase
ROOM_TABLE: dict[RoomPhase, frozenset[RoomPhase]] = {
    _P.OFFLINE: frozenset({_P.JOINING, _P.OFFLINE}),
    _P.JOINING: frozenset({_P.SYNCING, _P.LIVE, _P.OFFLINE}),
    _P.SYNCING: frozenset({_P.SYNCING, _P.LIVE, _P.OFFLINE}),
    _P.LIVE: frozenset({_P.SYNCING, _P.OFFLINE}),
}
"""For each room phase, the phases it may move to."""


def move_room(room: Room, new: RoomPhase) -> None:
    """Move ``room`` to phase ``new``; raises InvalidState if ROOM_TABLE forbids it."""
    if new not in ROOM_TABLE[room.phase]:
        raise InvalidState(f"room {room.name}: cannot go from {room.phase.name} to {new.name}")
    room.phase = new


class ConnectionMachine:
    """The connection's state and whether a connection is open; moves by CONNECTION_TABLE."""

    def __init__(self) -> None:
        self.state = ConnectionState.IDLE
        self.open = False
        """A connection is open (the welcome may not have come yet)."""

    def move(
        self,
        new: ConnectionState,
        *,
        delay: float | None = None,
        error: BaseException | None = None,
        endpoint: str | None = None,
    ) -> StateChanged:
        """Go to ``new`` and return the event that says so; InvalidState if forbidden."""
        old = self.state
        if new not in CONNECTION_TABLE[old]:
            raise InvalidState(f"cannot go from {old.name} to {new.name}")
        self.state = new
        return StateChanged(old, new, delay, error, endpoint)

    @property
    def awaiting_welcome(self) -> bool:
        """A connection is open and not yet welcomed: a ``connected`` starts recovery."""
        return self.open and self.state in (
            ConnectionState.CONNECTING,
            ConnectionState.RECONNECTING,
        )

    @property
    def welcomed(self) -> bool:
        """The server welcomed the open connection: requests may be sent."""
        return self.open and self.state in (ConnectionState.RECOVERING, ConnectionState.CONNECTED)

    @property
    def live(self) -> bool:
        """Recovered and open: messages may be sent."""
        return self.open and self.state is ConnectionState.CONNECTED

    @property
    def finished(self) -> bool:
        """``close()`` was called (CLOSING) or the session is CLOSED: no new work."""
        return self.state in (ConnectionState.CLOSING, ConnectionState.CLOSED)
