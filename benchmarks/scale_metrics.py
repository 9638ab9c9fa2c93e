"""The scale benchmark's arithmetic: outages and time to fully recovered, from records.

Pure functions over the chaos :class:`~rtclient.testing.chaos.history.History` records
that every client process of ``benchmarks.scale`` keeps (``time.monotonic()`` stamps:
one clock for every process of the machine). Nothing here opens a socket or reads a
clock, so the definitions below are tested on hand-made histories.

An **outage** of a client begins when it leaves ``CONNECTED`` (to ``RECONNECTING``:
the link dropped, the node closed it, a drain told it to go) at ``t0``. The client is
**fully recovered** at the first moment when all three hold:

1. it is ``CONNECTED`` again (every room rejoined and synced: ``RECOVERING`` is over);
2. in each of its rooms it has delivered, to its handlers, the room's *head at t0*: the
   highest event id the server had acknowledged to any sender (in any process) in that
   room before ``t0`` — or it was told by a ``gap`` event that this part cannot be
   replayed (counted apart: a recovery with a gap is not a clean one);
3. every message it sent before it was ``CONNECTED`` again that was not acknowledged at
   ``t0`` (queued while offline, or in flight when the link went) is acknowledged.

An outage that begins again before the client fully recovered from the previous one
(a client moved to a node that is drained next) is one outage, from the first ``t0``.
A client that never recovers counts as an infinite time (the percentiles show it).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, field
from typing import Any

from rtclient.events import ConnectionState
from rtclient.testing.chaos.history import (
    Acked,
    Announced,
    Delivered,
    Joined,
    Record,
    SendFailed,
    Sent,
    StateMoved,
)

from .harness import percentile

__all__ = [
    "Head",
    "Outage",
    "Recovery",
    "decode",
    "encode",
    "heads",
    "latencies",
    "merge",
    "outages",
    "recovery",
    "undelivered",
]

_TYPES: dict[str, type[Any]] = {
    "J": Joined,
    "S": Sent,
    "A": Acked,
    "F": SendFailed,
    "D": Delivered,
    "G": Announced,
    "M": StateMoved,
}
_TAGS = {kind: tag for tag, kind in _TYPES.items()}


def encode(records: Iterable[Record]) -> list[list[Any]]:
    """``records`` as JSON-ready lists (``[tag, *fields]``); other kinds are left out."""
    out: list[list[Any]] = []
    for record in records:
        tag = _TAGS.get(type(record))
        if tag is None:
            continue
        fields = list(astuple(record))
        if isinstance(record, StateMoved):
            fields[1], fields[2] = record.old.name, record.new.name
        out.append([tag, *fields])
    return out


def decode(rows: Iterable[Sequence[Any]]) -> list[Record]:
    """The records :func:`encode` wrote."""
    records: list[Record] = []
    for tag, *fields in rows:
        if tag == "M":
            fields[1], fields[2] = ConnectionState[fields[1]], ConnectionState[fields[2]]
        records.append(_TYPES[tag](*fields))
    return records


@dataclass(frozen=True, slots=True)
class Outage:
    """One client's time away: from leaving CONNECTED to fully recovered (see the module)."""

    client: str
    lost_at: float
    connected_at: float
    """CONNECTED again (``inf``: never)."""
    recovered_at: float
    """Fully recovered (``inf``: never)."""
    gap: bool = False
    """A room was caught up by an announced gap, not by delivery."""
    merged: int = 1
    """How many times it left CONNECTED before it fully recovered."""

    @property
    def seconds(self) -> float:
        return self.recovered_at - self.lost_at


@dataclass(frozen=True)
class Recovery:
    """The figures of a run: the outages and what they add up to."""

    outages: list[Outage] = field(default_factory=list)

    @property
    def times(self) -> list[float]:
        return sorted(o.seconds for o in self.outages)

    @property
    def connected(self) -> list[float]:
        """Seconds from leaving CONNECTED to CONNECTED again (the first part), sorted."""
        return sorted(o.connected_at - o.lost_at for o in self.outages)

    @property
    def p50(self) -> float:
        return percentile(self.times, 0.5)

    @property
    def p99(self) -> float:
        return percentile(self.times, 0.99)

    @property
    def max(self) -> float:
        return max(self.times, default=math.nan)

    @property
    def never(self) -> int:
        """Outages the client never fully recovered from."""
        return sum(math.isinf(o.seconds) for o in self.outages)

    @property
    def with_gap(self) -> int:
        return sum(o.gap for o in self.outages)


_Stamp = tuple[float, str | None, int]
"""(time, epoch, event id)"""


Head = tuple[float, str | None, int]
"""A room's head: when it was acknowledged, its epoch, its event id."""


def heads(records: Iterable[Record]) -> dict[str, Head]:
    """Each room's highest acknowledged event id in its latest epoch (see :func:`merge`)."""
    return merge([{r.room: (r.at, r.epoch, r.event_id)} for r in records if isinstance(r, Acked)])


def merge(tops: Iterable[dict[str, Head]]) -> dict[str, Head]:
    """The heads of several processes as one: per room, the latest epoch's highest id."""
    top: dict[str, Head] = {}
    for one in tops:
        for room, (at, epoch, event_id) in one.items():
            known = top.get(room)
            if (
                known is None
                or (epoch != known[1] and at >= known[0])
                or (epoch == known[1] and event_id > known[2])
            ):
                top[room] = (at, epoch, event_id)
    return top


def outages(records: Sequence[Record]) -> list[Outage]:
    """Every client's outages, in the order they began (see the module for the rules)."""
    acks: dict[str, list[_Stamp]] = defaultdict(list)
    acked_at: dict[str, float] = {}
    for r in records:
        if isinstance(r, Acked):
            acks[r.room].append((r.at, r.epoch, r.event_id))
            acked_at.setdefault(r.text, r.at)
    for stamps in acks.values():
        stamps.sort()
    rooms: dict[str, set[str]] = defaultdict(set)
    moves: dict[str, list[StateMoved]] = defaultdict(list)
    delivered: dict[tuple[str, str], list[_Stamp]] = defaultdict(list)
    gaps: dict[tuple[str, str], list[float]] = defaultdict(list)
    sent: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for r in records:
        if isinstance(r, Joined):
            rooms[r.client].add(r.room)
        elif isinstance(r, StateMoved):
            moves[r.client].append(r)
        elif isinstance(r, Delivered):
            delivered[r.client, r.room].append((r.at, r.epoch, r.event_id))
        elif isinstance(r, Announced):
            gaps[r.client, r.room].append(r.at)
        elif isinstance(r, Sent):
            sent[r.client].append((r.at, r.text))
    found: list[Outage] = []
    for client, changes in moves.items():
        lost = [m.at for m in changes if m.old is ConnectionState.CONNECTED and _away(m.new)]
        back = [m.at for m in changes if m.new is ConnectionState.CONNECTED]
        i = 0
        while i < len(lost):
            t0, merged = lost[i], 1
            caught, gap = 0.0, False
            for room in rooms[client]:
                at, by_gap = _caught_up(t0, acks[room], delivered[client, room], gaps[client, room])
                caught, gap = max(caught, at), gap or by_gap
            while True:
                t1 = _first_after(back, t0 if merged == 1 else lost[i])
                owed = [
                    acked_at.get(text, math.inf)
                    for at, text in sent[client]
                    if at < t1 and acked_at.get(text, math.inf) > t0
                ]
                done = max(t1, caught, *owed)
                if i + 1 < len(lost) and lost[i + 1] < done:
                    i, merged = i + 1, merged + 1
                    continue
                break
            found.append(Outage(client, t0, t1, done, gap, merged))
            i += 1
    found.sort(key=lambda o: o.lost_at)
    return found


def undelivered(records: Iterable[Record]) -> int:
    """(message, member) pairs acknowledged and never delivered, announced gap or not.

    The checker does not count a message as lost when a gap told the member it cannot
    be replayed; this counts it still: what the members missed, whatever they were told.
    """
    members: dict[str, set[str]] = defaultdict(set)
    got: set[tuple[str, str]] = set()
    acked: dict[str, str] = {}
    for r in records:
        if isinstance(r, Joined):
            members[r.room].add(r.client)
        elif isinstance(r, Delivered) and r.message_id is not None:
            got.add((r.client, r.message_id))
        elif isinstance(r, Acked):
            acked.setdefault(r.message_id, r.room)
    return sum(
        (member, message_id) not in got
        for message_id, room in acked.items()
        for member in members[room]
    )


def latencies(records: Iterable[Record]) -> list[float]:
    """Seconds from each message's ack (to its sender) to each delivery of it, sorted.

    In steady traffic this is the fan-out's delay; when it grows, the machine (server
    nodes, Redis, client processes) no longer keeps up with the traffic.
    """
    acked: dict[str, float] = {}
    deliveries: list[tuple[str, float]] = []
    for r in records:
        if isinstance(r, Acked):
            acked.setdefault(r.message_id, r.at)
        elif isinstance(r, Delivered) and r.message_id is not None:
            deliveries.append((r.message_id, r.at))
    return sorted(at - acked[m] for m, at in deliveries if m in acked)


def recovery(records: Sequence[Record]) -> Recovery:
    return Recovery(outages(records))


def _away(state: ConnectionState) -> bool:
    return state not in (ConnectionState.CLOSING, ConnectionState.CLOSED)


def _first_after(times: list[float], t: float) -> float:
    """The first of the sorted ``times`` after ``t`` (``inf``: none)."""
    i = bisect.bisect_right(times, t)
    return times[i] if i < len(times) else math.inf


def _caught_up(
    t0: float, acks: list[_Stamp], delivered: list[_Stamp], gaps: list[float]
) -> tuple[float, bool]:
    """When the client had the room's head at ``t0``, and whether a gap stood for it."""
    before = [stamp for stamp in acks if stamp[0] <= t0]
    if not before:
        return t0, False  # nothing acknowledged yet: nothing to catch up with
    head_epoch = before[-1][1]  # acks arrive out of order: the highest of the latest epoch
    head_id = max(event_id for _, epoch, event_id in before if epoch == head_epoch)
    by_delivery = next(
        (at for at, epoch, event_id in delivered if epoch == head_epoch and event_id >= head_id),
        math.inf,
    )
    by_gap = _first_after(gaps, t0)
    if by_delivery <= by_gap:
        return max(t0, by_delivery), False
    return by_gap, True
