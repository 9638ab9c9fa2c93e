"""The server's welcome (``connected``), read once into a typed record.

A welcome starts the recovery plan. What it says — who we are, which features the
server has, its limits, and for Socket.IO whether the previous session was recovered —
is interpreted here, in one pure function, so that neither the session nor the client
picks fields out of a dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .events import Gap

__all__ = [
    "NO_WELCOME",
    "RECENT_OFFSETS",
    "RepeatedOffset",
    "SocketIOResume",
    "Welcome",
    "interpret_welcome",
]


@dataclass(frozen=True, slots=True)
class Welcome:
    """What the server's ``connected`` frame said, checked and typed.

    ``recovered``: Socket.IO connection state recovery's outcome (None: the server
    did not say); ``previous_pid``: the session the client asked to resume, if any.
    ``payload`` is the frame's payload as it came, for fields nobody interprets.
    """

    user_id: str | None = None
    features: frozenset[str] = frozenset()
    max_message_size: int | None = None
    recovered: bool | None = None
    previous_pid: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)

    @property
    def refreshable(self) -> bool:
        """Whether the server refreshes tokens in band (``token:refresh``)."""
        return "token:refresh" in self.features

    def session_gap(self, namespace: str) -> Gap | None:
        """The gap to report when the Socket.IO session asked for was not recovered.

        None when nothing was asked for or the server recovered it: then no event of
        the namespace was lost between the connections.
        """
        if self.recovered is not False or not self.previous_pid:
            return None
        return Gap(
            room=namespace,
            reason="session",
            after_event_id=0,
            old_epoch=self.previous_pid,
            new_epoch=None,
        )


NO_WELCOME = Welcome()
"""The welcome of a session that has not been welcomed yet."""


def interpret_welcome(payload: Mapping[str, Any]) -> Welcome:
    """Read a ``connected`` payload; fields of the wrong type count as absent."""
    features = payload.get("features")
    limits = payload.get("limits")
    size = limits.get("maxMessageSize") if isinstance(limits, dict) else None
    recovered = payload.get("recovered")
    previous = payload.get("previousPid")
    user = payload.get("userId")
    return Welcome(
        user_id=user if isinstance(user, str) else None,
        features=frozenset(f for f in features if isinstance(f, str))
        if isinstance(features, list)
        else frozenset(),
        max_message_size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        recovered=recovered if isinstance(recovered, bool) else None,
        previous_pid=str(previous) if previous else None,
        payload=payload,
    )


RECENT_OFFSETS = 1024
"""How many offsets of a Socket.IO session :class:`SocketIOResume` remembers."""


@dataclass(slots=True)
class SocketIOResume:
    """Socket.IO v4 connection state recovery: the session to resume and where.

    The session-side holder (``Session.resume``) of what a reconnect must send
    (``auth.pid`` and ``auth.offset``); the Client hands it to its Socket.IO transport
    (``SocketIOTransport.resume``), which fills it in.

    It also remembers the last :data:`RECENT_OFFSETS` offsets of the session, so that
    an event delivered twice (a broadcast that arrives live and again in a recovery's
    replay, or a server that replays from too far back) reaches the application once.
    Offsets are opaque strings: compared for equality only, never ordered.
    """

    pid: str | None = None
    offset: str | None = None
    _recent: dict[str, None] = field(default_factory=dict, init=False, repr=False, compare=False)
    """The session's recent offsets, oldest first (an ordered set)."""

    _attempt: dict[str, None] = field(default_factory=dict, init=False, repr=False, compare=False)
    """The last :data:`RECENT_OFFSETS` offsets taken during the connection attempt under
    way (before ``connected``), oldest first: not committed until it succeeds."""

    _attempt_last: str | None = field(default=None, init=False, repr=False, compare=False)
    """The last offset of the attempt under way (where it moves ``offset`` if it opens)."""

    _attempting: bool = field(default=False, init=False, repr=False, compare=False)

    given_up: str | None = None
    """A session given up (its recovery replay was too long to hold): the next attempt
    asks for a new session and reports this one as not recovered (a ``session`` gap)."""

    def attempting(self) -> None:
        """A connection attempt starts: events may arrive before its connect returns.

        What a previous attempt took and never committed (it failed: its events were
        thrown away with its connection) is forgotten: the resume position stays at the
        last event of an attempt that opened.
        """
        self._attempt.clear()
        self._attempt_last = None
        self._attempting = True

    def failed(self) -> None:
        """The attempt under way failed: what it took is forgotten (its events were thrown
        away with its connection), and the position stays where the last attempt that
        opened left it."""
        self._attempt.clear()
        self._attempt_last = None
        self._attempting = False

    def give_up(self) -> None:
        """Forget the session (see :attr:`given_up`); its offsets no longer count."""
        if self.pid is not None:
            self.given_up = self.pid
        self.pid = None
        self.offset = None
        self._recent.clear()

    def connected(self, pid: str | None, *, recovered: bool) -> None:
        """A connect ended with the server's ``pid``: the offsets of this attempt are
        committed. A new session starts with only those (the events a server sends
        right after its CONNECT can be handled before the connect returns); a recovered
        one adds them to its own, and resumes after the last of them."""
        self.pid = pid
        self.given_up = None
        if recovered:
            for offset in self._attempt:
                self._remember(offset)
            if self._attempt_last is not None:
                self.offset = self._attempt_last
        else:
            self._recent = dict(self._attempt)
            self.offset = self._attempt_last
        self._attempt.clear()
        self._attempt_last = None
        self._attempting = False

    def received(self, offset: str, *, session_pid: str | None = None) -> bool:
        """An event with ``offset`` arrived; ``session_pid``: the pid of the CONNECT
        packet the connection got so far (None before it: a recovery's replay).

        False if the offset was seen before in the session: the caller must drop the
        event (it was delivered), and the resume position stays where it was. During an
        attempt the offset is only noted: the position moves when the attempt opens
        (:meth:`connected`), never past an event a failed attempt threw away. During an
        attempt whose CONNECT named another session than the one asked for, only the
        offsets of this attempt count: the new session may reuse the old one's offsets.
        """
        if not self._attempting:
            if offset in self._recent:
                return False
            self._remember(offset)
            self.offset = offset
            return True
        new = session_pid is not None and session_pid != self.pid
        if offset in self._attempt or (not new and offset in self._recent):
            return False
        self._attempt[offset] = None
        if len(self._attempt) > RECENT_OFFSETS:
            del self._attempt[next(iter(self._attempt))]
        self._attempt_last = offset
        return True

    def _remember(self, offset: str) -> None:
        self._recent[offset] = None
        if len(self._recent) > RECENT_OFFSETS:
            del self._recent[next(iter(self._recent))]


@dataclass(frozen=True, slots=True)
class RepeatedOffset:
    """What a Socket.IO connection hands on instead of an event whose offset repeats.

    The transport drops the event (see :meth:`SocketIOResume.received`); the session
    counts it as a duplicate (``duplicates_dropped``).
    """

    event: str
    offset: str
