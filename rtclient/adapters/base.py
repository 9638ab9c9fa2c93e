"""The adapter interface: how generic mode speaks a WebSocket server's own envelope.

An adapter is sans-I/O, in the spirit of h11 and wsproto: frames in, items out; it
never awaits, reads no clock and touches no socket. The Client owns the connection,
the reconnect loop, the outbox and the heartbeat; the adapter only says what the
bytes mean. One adapter object serves every connection of one Client, one at a time:
:meth:`Adapter.opening` starts each connection afresh.

What an adapter can recognise decides which promise generic mode keeps (README,
"My server is a plain WebSocket server"):

- no acks (``acks = False``): an emit is **sent** once it was written to a live
  socket. Emits made while offline wait in the outbox and are written once, in order,
  after the ``on_connect`` hooks; one written just before a cut may be lost;
- acks (``acks = True``, :class:`Acked` from :meth:`Adapter.decode`): an emit is
  **acknowledged**; it is written again after a reconnect until its ack arrives, with
  the same message id, so delivery is at least once and a server that deduplicates by
  that id makes it exactly once;
- resume positions (``resumes = True``, :class:`Received` with a ``position``): the
  Client keeps the position of the last event it took and offers it to
  :meth:`Adapter.opening` on the next connection, so **nothing is missed**; an event
  at or before that position (a replay overlapping what was seen) is dropped and
  counted as a duplicate. Positions only mean something within one sequence: an
  adapter whose server can start its sequence over (a stream deleted and recreated,
  a server that lost its data) must say so with :class:`Reset` before the first event
  of the new sequence, else those events are dropped as duplicates;

Contract of :meth:`Adapter.decode`: a frame that cannot be read raises
:class:`~rtclient.errors.ProtocolError` (the Client counts it, reports an ``error``
event and keeps reading); it never raises anything else for a peer's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "Acked",
    "Adapter",
    "Closing",
    "Frame",
    "Incoming",
    "Ready",
    "Received",
    "Refused",
    "Reply",
    "Reset",
]

Frame = str | bytes
"""A WebSocket message: text (``str``) or binary (``bytes``)."""


@dataclass(frozen=True, slots=True)
class Received:
    """An event from the server: delivered to ``on(name)`` handlers as ``event.data``.

    ``position``: the event's place in the server's sequence (an int that grows), for
    adapters with resume positions; None otherwise. ``data`` that is not a dict is
    delivered as ``{"args": [data]}``, as in Socket.IO generic mode.
    """

    name: str
    data: Any
    position: int | None = None


@dataclass(frozen=True, slots=True)
class Acked:
    """The server acknowledged the message (or call) with this id; ``result`` is what
    ``emit`` / ``call`` return."""

    message_id: str
    result: Any = None


@dataclass(frozen=True, slots=True)
class Refused:
    """The server refused the message with this id: ``emit`` raises RequestRejected."""

    message_id: str
    code: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """A frame to write back at once, below the application (a protocol's own PONG)."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class Closing:
    """The server said in band why it ends the connection (``-ERR`` …): the connection
    ends as if closed with ``code`` (4001 invalid token, 4003 forbidden: fatal)."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Ready:
    """The server accepted the connection (its greeting; NATS's first PONG): the
    ``on_connect`` hooks run, then the outbox flushes. For adapters with ``greets``.

    ``max_message_size``: the largest emit the server takes, if it says (bytes of
    data): a larger one fails with RequestRejected ``MESSAGE_TOO_LARGE`` instead of
    being sent (a server that closes on it would see it again after every reconnect).
    """

    max_message_size: int | None = None


@dataclass(frozen=True, slots=True)
class Reset:
    """The server's sequence started over: positions before this item belong to an
    old sequence. For adapters with ``resumes``.

    The Client forgets the position it kept (the next event is taken whatever its
    position), reports a :class:`~rtclient.events.Gap` (reason ``"reset"``: events of
    the old sequence after the last one taken may never have been delivered) and
    counts it (``stats()["gaps"]``). ``scope`` names what was reset (the Gap's
    ``room``: a stream's name); ``old_epoch`` / ``new_epoch`` identify the sequence
    before and after (a stream's creation time), if the adapter knows them.
    """

    scope: str = ""
    old_epoch: str | None = None
    new_epoch: str | None = None


Incoming = Received | Acked | Refused | Reply | Closing | Ready | Reset


class Adapter(Protocol):
    """Encodes the application's emits into frames and decodes the server's frames.

    After :meth:`opening`, the Client writes the frames it returned, then every frame
    :meth:`encode` returns, in order, and hands every frame it receives to
    :meth:`decode`.
    """

    acks: bool
    """Whether :meth:`decode` recognises acks (:class:`Acked` / :class:`Refused`)."""
    resumes: bool
    """Whether :class:`Received` carries positions that :meth:`opening` resumes from."""
    greets: bool
    """True if the server says when it accepted the connection (:class:`Ready`): until
    then nothing is sent, and a refusal (4001) fails ``connect()``. False: the
    connection counts as accepted once the WebSocket is open."""
    sends_token: bool
    """True if :meth:`opening` puts the token in the protocol itself (then the Client
    puts it in neither the ``Authorization`` header nor the URL)."""

    def opening(self, token: str | None, resume: int | None) -> list[Frame]:
        """Start a new connection; return the frames to write first (a handshake, a
        subscription from ``resume``: the position of the last event taken, None before
        any or after a :class:`Reset`). Forgets whatever was half-read on the previous
        connection."""
        ...

    def encode(self, name: str, data: Any, message_id: str | None) -> list[Frame]:
        """The frames for one emit. ``message_id`` is None when nothing awaits an ack;
        an adapter with acks puts it where the server's ack will name it.

        Raises TypeError or ValueError for data the envelope cannot carry. The Client
        calls it once when the emit is made (to raise at once) and again when it is
        written: it must not depend on earlier calls."""
        ...

    def decode(self, frame: Frame) -> list[Incoming]:
        """What one frame from the server says (ProtocolError if it cannot be read)."""
        ...
