"""``benchmarks.scale``: the definition of *fully recovered*, and a small real run."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import suite
from benchmarks.scale_load import rooms_of
from benchmarks.scale_metrics import (
    decode,
    encode,
    heads,
    latencies,
    merge,
    outages,
    recovery,
    undelivered,
)
from rtclient.events import ConnectionState as S
from rtclient.testing.chaos.history import (
    Acked,
    Announced,
    Delivered,
    Joined,
    Record,
    Sent,
    StateMoved,
)

E = "epoch-1"


def _away(client: str, at: float) -> StateMoved:
    return StateMoved(client, S.CONNECTED, S.RECONNECTING, 0.0, at)


def _back(client: str, at: float) -> list[StateMoved]:
    return [
        StateMoved(client, S.RECONNECTING, S.RECOVERING, None, at - 0.01),
        StateMoved(client, S.RECOVERING, S.CONNECTED, None, at),
    ]


def _acked(room: str, event_id: int, at: float, text: str = "") -> Acked:
    text = text or f"other:{event_id}"
    return Acked("other", room, text, f"m-{event_id}", event_id, E, False, at)


def _got(client: str, room: str, event_id: int, at: float) -> Delivered:
    return Delivered(client, room, event_id, E, f"m-{event_id}", None, False, at)


def _base(*rooms: str) -> list[Record]:
    return [Joined("c", room, 0, None, 0.0) for room in rooms]


def test_recovered_once_connected_and_at_the_rooms_head_at_the_fault() -> None:
    records = [
        *_base("r"),
        _acked("r", 4, 8.0),
        _acked("r", 5, 9.0),
        _got("c", "r", 4, 8.1),
        _away("c", 10.0),
        _acked("r", 6, 10.2),  # after the fault: not part of the head owed
        *_back("c", 10.5),
        _got("c", "r", 5, 11.0),  # the sync page brings #5 after CONNECTED
        _got("c", "r", 6, 11.0),
    ]
    (outage,) = outages(records)
    assert (outage.lost_at, outage.connected_at, outage.recovered_at) == (10.0, 10.5, 11.0)
    assert outage.seconds == pytest.approx(1.0)
    assert not outage.gap


def test_a_client_that_had_the_head_already_is_recovered_when_connected() -> None:
    records = [
        *_base("r", "q"),
        _acked("r", 5, 9.0),
        _got("c", "r", 5, 9.1),
        _away("c", 10.0),
        *_back("c", 10.4),
    ]
    (outage,) = outages(records)
    assert outage.seconds == pytest.approx(0.4)  # room q had nothing to catch up with


def test_messages_sent_while_away_must_be_acknowledged() -> None:
    records = [
        *_base("r"),
        Sent("c", "r", "c:1", 9.9),  # in flight at the fault
        _away("c", 10.0),
        Sent("c", "r", "c:2", 10.2),  # queued while offline
        *_back("c", 10.5),
        Acked("c", "r", "c:1", "m1", 1, E, False, 10.6),
        Acked("c", "r", "c:2", "m2", 2, E, False, 10.9),
        Sent("c", "r", "c:3", 11.0),  # after CONNECTED: not owed to the recovery
        _got("c", "r", 1, 10.7),
        _got("c", "r", 2, 10.95),
    ]
    (outage,) = outages(records)
    assert outage.recovered_at == 10.9


def test_a_message_never_acknowledged_means_never_recovered() -> None:
    records = [*_base("r"), _away("c", 10.0), Sent("c", "r", "c:1", 10.2), *_back("c", 10.5)]
    (outage,) = outages(records)
    assert math.isinf(outage.seconds)
    assert recovery(records).never == 1


def test_a_client_that_never_comes_back_never_recovers() -> None:
    found = recovery([*_base("r"), _away("c", 10.0)])
    assert found.never == 1
    assert math.isinf(found.p99)


def test_a_second_drop_before_recovery_is_the_same_outage() -> None:
    records = [
        *_base("r"),
        _acked("r", 5, 9.0),
        _away("c", 10.0),
        *_back("c", 10.3),
        _away("c", 10.4),  # drained again before #5 came: still the first outage
        *_back("c", 11.0),
        _got("c", "r", 5, 11.2),
        _away("c", 20.0),  # fully recovered in between: a new outage
        *_back("c", 20.1),
    ]
    first, second = outages(records)
    assert (first.lost_at, first.connected_at, first.recovered_at) == (10.0, 11.0, 11.2)
    assert first.merged == 2
    assert second.seconds == pytest.approx(0.1)


def test_an_announced_gap_stands_for_the_head_and_is_counted() -> None:
    records = [
        *_base("r"),
        _acked("r", 5, 9.0),
        _away("c", 10.0),
        *_back("c", 10.5),
        Announced("c", "r", "epoch_changed", 4, E, "epoch-2", None, 10.6),
    ]
    found = recovery(records)
    assert found.outages[0].recovered_at == 10.6
    assert found.with_gap == 1


def test_the_head_is_the_highest_id_acknowledged_even_when_acks_arrive_out_of_order() -> None:
    records = [
        *_base("r"),
        _acked("r", 6, 9.0),
        _acked("r", 5, 9.5),  # acked later, lower id
        _away("c", 10.0),
        *_back("c", 10.5),
        _got("c", "r", 5, 10.6),
        _got("c", "r", 6, 10.8),
    ]
    assert outages(records)[0].recovered_at == 10.8


def test_heads_of_several_processes_merge_to_the_latest_epoch() -> None:
    one = heads([_acked("r", 9, 1.0), _acked("r", 7, 2.0)])
    assert one == {"r": (1.0, E, 9)}
    other = {"r": (3.0, "epoch-2", 2)}
    assert merge([one, other]) == {"r": (3.0, "epoch-2", 2)}
    assert merge([other, one]) == {"r": (3.0, "epoch-2", 2)}  # older epoch does not win


def test_records_cross_the_process_boundary_unchanged() -> None:
    records: list[Record] = [
        *_base("r"),
        _acked("r", 5, 9.0),
        _got("c", "r", 5, 9.1),
        Sent("c", "r", "c:1", 9.2),
        Announced("c", "r", "retention", 1, E, E, 3, 9.3),
        _away("c", 10.0),
    ]
    assert decode(json.loads(json.dumps(encode(records)))) == records


def test_rooms_have_members_from_across_the_whole_range() -> None:
    members: dict[str, set[int]] = {}
    for i in range(100):
        rooms = rooms_of(i, 100, 10, "t")
        assert 1 <= len(rooms) <= 2
        for room in rooms:
            members.setdefault(room, set()).add(i)
    assert len(members) == 10
    assert all(15 <= len(m) <= 20 for m in members.values())
    assert all(max(m) - min(m) >= 50 for m in members.values())  # every client process


def test_the_quick_scale_case_recovers_every_client_and_loses_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """30 clients in two processes, a node restarted under them (about 10 s)."""
    assert suite.main(["--quick", "--only", "scale", "--check", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "--check: 0 of 1 targets missed" in out
    assert "30 outages of 30 clients" in out


def test_undelivered_counts_what_a_gap_excused_too() -> None:
    records = [
        Joined("c", "r", 0, None, 0.0),
        Joined("d", "r", 0, None, 0.0),
        _acked("r", 1, 1.0),
        _acked("r", 2, 2.0),
        _got("c", "r", 1, 1.1),
        _got("c", "r", 2, 2.1),
        _got("d", "r", 1, 1.2),
        Announced("d", "r", "unavailable", 1, E, E, 3, 2.5),  # d never gets #2
    ]
    assert undelivered(records) == 1


def test_latencies_run_from_the_ack_to_each_delivery() -> None:
    records = [_acked("r", 1, 1.0), _got("c", "r", 1, 1.25), _got("d", "r", 1, 1.5)]
    assert latencies(records) == [0.25, 0.5]
