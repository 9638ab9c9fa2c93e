"""What happened in a chaos run: every send, ack, delivery, gap and state change.

A :class:`History` is filled by :meth:`History.watch` (handlers on a client) and
:meth:`History.send` (a ``client.send`` that records its outcome); the checker
(:mod:`.checker`) reads it afterwards. Records are plain frozen dataclasses, so a test
can also build a history by hand. Times are ``time.monotonic()`` seconds.

Messages are named by their text, which the workload makes unique (``"bot0:17"``): a
message that never got an ack has no known message id, and still has to be accounted for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ...client import Client
from ...errors import RtClientError
from ...events import ConnectionState, Event, Gap, QualityChanged, StateChanged

__all__ = [
    "Acked",
    "Announced",
    "Delivered",
    "History",
    "Joined",
    "QualityMoved",
    "SendFailed",
    "Sent",
    "StateMoved",
]


@dataclass(frozen=True, slots=True)
class Joined:
    """``client`` is a member of ``room`` from ``after_event_id`` (in ``epoch``) on."""

    client: str
    room: str
    after_event_id: int = 0
    epoch: str | None = None
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class Sent:
    """``client`` asked to send ``text`` to ``room``."""

    client: str
    room: str
    text: str
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class Acked:
    """The server acknowledged ``text``: it is event ``event_id`` of ``room`` in ``epoch``."""

    client: str
    room: str
    text: str
    message_id: str
    event_id: int
    epoch: str | None = None
    duplicate: bool = False
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class SendFailed:
    """``client.send`` raised instead of returning an ack."""

    client: str
    room: str
    text: str
    error: str
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class Delivered:
    """``client``'s handlers got a chat message."""

    client: str
    room: str
    event_id: int
    epoch: str | None = None
    message_id: str | None = None
    text: str | None = None
    replayed: bool = False
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class Announced:
    """``client`` was told (a Gap event) that ``room`` could not be replayed in full."""

    client: str
    room: str
    reason: str
    after_event_id: int
    old_epoch: str | None = None
    new_epoch: str | None = None
    resumed_at: int | None = None
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class StateMoved:
    """``client``'s connection state changed (``delay``: before the next attempt)."""

    client: str
    old: ConnectionState
    new: ConnectionState
    delay: float | None = None
    at: float = 0.0
    reason: str = ""
    """Why, when the client said: the error's type and text."""


@dataclass(frozen=True, slots=True)
class QualityMoved:
    """``client``'s link quality level changed."""

    client: str
    old: str
    new: str
    p95: float | None = None
    at: float = 0.0
    missed_ratio: float = 0.0
    p50: float | None = None
    """The median of the last heartbeats: the figure the level is judged on."""


Record = Joined | Sent | Acked | SendFailed | Delivered | Announced | StateMoved | QualityMoved


@dataclass
class History:
    """Everything recorded, in the order it happened (per client, dispatch order)."""

    records: list[Record] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
    listeners: list[Callable[[Record], None]] = field(default_factory=list)

    def add(self, record: Record) -> None:
        """Append ``record`` and tell the listeners (e.g. the demo's progress lines)."""
        self.records.append(record)
        for listener in self.listeners:
            listener(record)

    def of(self, kind: type[Record]) -> list[Record]:
        """The records of one kind, in order."""
        return [r for r in self.records if isinstance(r, kind)]

    # -- recording a live client -----------------------------------------------------------

    def watch(self, client: Client, name: str) -> None:
        """Record what ``client`` (called ``name`` in the report) delivers from now on.

        Call it before ``connect()`` so that the first state changes are in.
        """

        def on_message(event: Event) -> None:
            if event.room is None or event.event_id is None:
                return
            self.add(
                Delivered(
                    name,
                    event.room,
                    event.event_id,
                    event.epoch,
                    event.message_id,
                    event.text,
                    event.replayed,
                    self.clock(),
                )
            )

        def on_gap(gap: Gap) -> None:
            self.add(
                Announced(
                    name,
                    gap.room,
                    gap.reason,
                    gap.after_event_id,
                    gap.old_epoch,
                    gap.new_epoch,
                    gap.resumed_at,
                    self.clock(),
                )
            )

        def on_state(change: StateChanged) -> None:
            error = change.error
            reason = "" if error is None else f"{type(error).__name__}: {error}"
            self.add(StateMoved(name, change.old, change.new, change.delay, self.clock(), reason))

        def on_quality(change: QualityChanged) -> None:
            self.add(
                QualityMoved(
                    name,
                    str(change.old.value),
                    str(change.new.value),
                    change.snapshot.p95,
                    self.clock(),
                    change.snapshot.missed_ratio,
                    change.snapshot.p50,
                )
            )

        client.on("chat:message", on_message)
        client.on("gap", on_gap)
        client.on("state", on_state)
        client.on("quality", on_quality)

    def joined(self, name: str, room: str, after_event_id: int, epoch: str | None) -> None:
        """Record that ``name`` joined ``room`` when its log ended at ``after_event_id``."""
        self.add(Joined(name, room, after_event_id, epoch, self.clock()))

    async def send(self, client: Client, name: str, room: str, text: str) -> None:
        """``client.send(room, text)``, recording the attempt and its ack or failure."""
        self.add(Sent(name, room, text, self.clock()))
        try:
            ack = await client.send(room, text)
        except RtClientError as exc:
            self.add(SendFailed(name, room, text, f"{type(exc).__name__}: {exc}", self.clock()))
            return
        if ack.event_id is None:  # a malformed ack (never from fake_server): nothing to check
            self.add(SendFailed(name, room, text, "acked without an event id", self.clock()))
            return
        self.add(
            Acked(
                name,
                room,
                text,
                ack.message_id,
                ack.event_id,
                ack.epoch,
                ack.duplicate,
                self.clock(),
            )
        )
