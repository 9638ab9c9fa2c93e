"""The checker: reads a :class:`~.history.History` and lists every broken promise.

=================  ==========================================================
lost               acknowledged, but never delivered to a client that was a
                   member of the room throughout, and no gap announced for it
duplicated         delivered twice to one client (same event id, or the same
                   message id under two event ids of one epoch)
reordered          per client and room, an event id not above the previous one
unannounced_gaps   a hole in a client's event ids (or a new epoch) that no Gap
                   event covered
unacked            sent, and neither acknowledged nor failed by the end
failed             ``send`` raised (nothing in a chaos run should make it)
mismatched         delivered under another event id than the sender's ack said,
                   or two messages acknowledged as one event id of one epoch
                   (a store that lost acknowledged data and reused the id)
=================  ==========================================================

A gap covers a hole when it was announced after the client's previous delivery in that
room and starts at or before it; it covers a lost message when the message sits in the
announced range (``after_event_id`` < id < ``resumed_at``), or in the old epoch of an
epoch gap — or in an epoch the client never saw at all (it began and was lost while the
client was away), when an epoch gap was announced after the message was acknowledged.
The checker is pure: it reads records and returns a :class:`Report`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from .history import Acked, Announced, Delivered, History, Joined, SendFailed, Sent

__all__ = ["KINDS", "Anomaly", "Report", "check"]

KINDS = ("lost", "duplicated", "reordered", "unannounced_gaps", "unacked", "failed", "mismatched")


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One broken promise: ``kind`` is one of :data:`KINDS`."""

    kind: str
    client: str
    room: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.client} in {self.room}: {self.detail}"


@dataclass
class Report:
    """What the checker found, and the totals it looked at."""

    anomalies: list[Anomaly] = field(default_factory=list)
    sent: int = 0
    acked: int = 0
    delivered: int = 0
    gaps: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing was lost, doubled, reordered or skipped unannounced."""
        return not self.anomalies

    def of(self, kind: str) -> list[Anomaly]:
        """The anomalies of one kind."""
        return [a for a in self.anomalies if a.kind == kind]

    def counts(self) -> dict[str, int]:
        """How many anomalies of each kind (every kind present, zeros included)."""
        found = Counter(a.kind for a in self.anomalies)
        return {kind: found.get(kind, 0) for kind in KINDS}

    def describe(self, limit: int = 20) -> str:
        """A readable summary: the counts, then the first ``limit`` anomalies."""
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items())
        lines = [
            f"sent={self.sent} acked={self.acked} delivered={self.delivered} "
            f"gaps={self.gaps}; {counts}"
        ]
        lines += [f"  {a}" for a in self.anomalies[:limit]]
        if len(self.anomalies) > limit:
            lines.append(f"  … and {len(self.anomalies) - limit} more")
        return "\n".join(lines)


def check(history: History) -> Report:
    """Check ``history`` against rtclient's delivery promises."""
    report = Report()
    records = history.records
    sent = [r for r in records if isinstance(r, Sent)]
    acks = [r for r in records if isinstance(r, Acked)]
    failed = [r for r in records if isinstance(r, SendFailed)]
    joins = [r for r in records if isinstance(r, Joined)]
    report.sent, report.acked = len(sent), len({a.message_id for a in acks})
    report.delivered = sum(isinstance(r, Delivered) for r in records)
    report.gaps = sum(isinstance(r, Announced) for r in records)
    add = report.anomalies.append

    first_ack: dict[str, Acked] = {}
    for ack in acks:
        known = first_ack.setdefault(ack.message_id, ack)
        if (known.event_id, known.epoch) != (ack.event_id, ack.epoch):
            add(
                Anomaly(
                    "mismatched",
                    ack.client,
                    ack.room,
                    f"{ack.text!r} acked as #{known.event_id} and as #{ack.event_id}",
                )
            )
    owner: dict[tuple[str, str | None, int], Acked] = {}
    for ack in first_ack.values():
        known = owner.setdefault((ack.room, ack.epoch, ack.event_id), ack)
        if known.message_id != ack.message_id:
            add(
                Anomaly(
                    "mismatched",
                    ack.client,
                    ack.room,
                    f"{known.text!r} and {ack.text!r} both acked as #{ack.event_id}",
                )
            )
    settled = {a.text for a in acks} | {f.text for f in failed}
    for failure in failed:
        add(Anomaly("failed", failure.client, failure.room, f"{failure.text!r}: {failure.error}"))
    for attempt in sent:
        if attempt.text not in settled:
            detail = f"{attempt.text!r} never acknowledged"
            add(Anomaly("unacked", attempt.client, attempt.room, detail))

    streams: dict[tuple[str, str], list[Delivered | Announced]] = defaultdict(list)
    for record in records:
        if isinstance(record, Delivered | Announced):
            streams[record.client, record.room].append(record)
    members = {(j.client, j.room): j for j in joins}
    got: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (client, room), stream in streams.items():
        _check_stream(client, room, stream, members.get((client, room)), first_ack, add)
        got[client, room] = {
            d.message_id for d in stream if isinstance(d, Delivered) and d.message_id is not None
        }

    seen_epochs: dict[tuple[str, str], set[str | None]] = defaultdict(set)
    for key, stream in streams.items():
        for item in stream:
            if isinstance(item, Delivered):
                seen_epochs[key].add(item.epoch)
            else:
                seen_epochs[key].update((item.old_epoch, item.new_epoch))
    for message_id, ack in first_ack.items():
        for (client, room), joined in members.items():
            if room != ack.room or message_id in got[client, room]:
                continue
            if joined.epoch == ack.epoch and ack.event_id <= joined.after_event_id:
                continue  # before this member joined: not owed to it
            announced = [r for r in streams[client, room] if isinstance(r, Announced)]
            if any(_covers(gap, ack) for gap in announced):
                continue
            if ack.epoch not in seen_epochs[client, room] and any(
                gap.old_epoch != gap.new_epoch and gap.at >= ack.at for gap in announced
            ):
                # An epoch that began and was lost while this client was away: it
                # cannot know of it; the epoch gap it was told about covers it.
                continue
            add(
                Anomaly(
                    "lost",
                    client,
                    room,
                    f"{ack.text!r} (#{ack.event_id}, acked to {ack.client}) never delivered",
                )
            )
    return report


def _covers(gap: Announced, ack: Acked) -> bool:
    """Whether ``gap`` told the client that ``ack``'s event could not be replayed."""
    if gap.old_epoch != gap.new_epoch:
        return gap.old_epoch == ack.epoch and ack.event_id > gap.after_event_id
    resumed = gap.resumed_at if gap.resumed_at is not None else float("inf")
    return gap.new_epoch == ack.epoch and gap.after_event_id < ack.event_id < resumed


def _check_stream(
    client: str,
    room: str,
    stream: list[Delivered | Announced],
    joined: Joined | None,
    acks: dict[str, Acked],
    add: Callable[[Anomaly], None],
) -> None:
    """Walk one client's deliveries in one room, in the order its handlers saw them."""
    epoch = joined.epoch if joined is not None else None
    last = joined.after_event_id if joined is not None else None
    seen: set[tuple[str | None, int]] = set()
    ids_of: dict[tuple[str | None, str], int] = {}
    announced: Announced | None = None
    for item in stream:
        if isinstance(item, Announced):
            announced = item
            continue
        key = (item.epoch, item.event_id)
        if key in seen:
            add(Anomaly("duplicated", client, room, f"event #{item.event_id} delivered twice"))
            continue
        seen.add(key)
        if item.message_id is not None:
            other = ids_of.setdefault((item.epoch, item.message_id), item.event_id)
            if other != item.event_id:
                add(
                    Anomaly(
                        "duplicated",
                        client,
                        room,
                        f"{item.text!r} delivered as #{other} and as #{item.event_id}",
                    )
                )
            ack = acks.get(item.message_id)
            if ack is not None and ack.epoch == item.epoch and ack.event_id != item.event_id:
                add(
                    Anomaly(
                        "mismatched",
                        client,
                        room,
                        f"{item.text!r} delivered as #{item.event_id}, acked as #{ack.event_id}",
                    )
                )
        if last is None:  # no join on record: the first delivery is the baseline
            epoch, last, announced = item.epoch, item.event_id, None
            continue
        if epoch is None:  # joined with the epoch unknown: it is learnt now
            epoch = item.epoch
        if item.epoch != epoch:
            if announced is None or announced.new_epoch != item.epoch:
                add(
                    Anomaly(
                        "unannounced_gaps",
                        client,
                        room,
                        f"epoch {epoch} -> {item.epoch} at #{item.event_id} without a gap",
                    )
                )
            epoch, last = item.epoch, item.event_id
        elif item.event_id <= last:
            add(
                Anomaly(
                    "reordered",
                    client,
                    room,
                    f"#{item.event_id} delivered after #{last}",
                )
            )
        else:
            if item.event_id > last + 1 and (announced is None or announced.after_event_id > last):
                missing = f"#{last + 1}" + (
                    f"..#{item.event_id - 1}" if item.event_id - 1 > last + 1 else ""
                )
                add(
                    Anomaly(
                        "unannounced_gaps",
                        client,
                        room,
                        f"{missing} skipped without a gap (next was #{item.event_id})",
                    )
                )
            last = item.event_id
        announced = None
