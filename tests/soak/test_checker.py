"""The checker on hand-made histories: a clean one passes, each anomaly is caught."""

from __future__ import annotations

from rtclient.testing.chaos import (
    Acked,
    Announced,
    Delivered,
    History,
    Joined,
    SendFailed,
    Sent,
    check,
)

E1, E2 = "epoch-1", "epoch-2"


def clean() -> list[object]:
    """alice sends two messages to lobby; alice and bob both get both."""
    records: list[object] = [Joined("alice", "lobby", 0, E1), Joined("bob", "lobby", 0, E1)]
    for n in (1, 2):
        text = f"alice:{n}"
        records += [
            Sent("alice", "lobby", text),
            Acked("alice", "lobby", text, f"m{n}", n, E1),
            Delivered("alice", "lobby", n, E1, f"m{n}", text),
            Delivered("bob", "lobby", n, E1, f"m{n}", text),
        ]
    return records


def history(records: list[object]) -> History:
    result = History()
    for record in records:
        result.add(record)  # type: ignore[arg-type]
    return result


def kinds(records: list[object]) -> dict[str, int]:
    return {k: v for k, v in check(history(records)).counts().items() if v}


def test_a_clean_history_passes() -> None:
    report = check(history(clean()))
    assert report.ok, report.describe()
    assert (report.sent, report.acked, report.delivered) == (2, 2, 4)


def test_an_acked_message_not_delivered_to_a_member_is_lost() -> None:
    records = [r for r in clean() if r != Delivered("bob", "lobby", 2, E1, "m2", "alice:2")]
    report = check(history(records))
    assert kinds(records) == {"lost": 1}
    (lost,) = report.of("lost")
    assert lost.client == "bob" and "alice:2" in lost.detail


def test_a_message_sent_before_a_member_joined_is_not_owed_to_it() -> None:
    records = clean()
    records[1] = Joined("bob", "lobby", 1, E1)
    records.remove(Delivered("bob", "lobby", 1, E1, "m1", "alice:1"))
    assert kinds(records) == {}


def test_a_second_delivery_is_a_duplicate() -> None:
    records = [*clean(), Delivered("bob", "lobby", 2, E1, "m2", "alice:2")]
    assert kinds(records) == {"duplicated": 1}


def test_one_message_under_two_event_ids_is_a_duplicate() -> None:
    records = [*clean(), Delivered("bob", "lobby", 3, E1, "m2", "alice:2")]
    found = kinds(records)
    assert found["duplicated"] == 1  # and bob saw an event the ack does not know: mismatched
    assert set(found) <= {"duplicated", "mismatched"}


def test_an_event_id_going_backwards_is_reordered() -> None:
    records = clean()
    b1, b2 = (r for r in records if isinstance(r, Delivered) and r.client == "bob")
    i, j = records.index(b1), records.index(b2)
    records[i], records[j] = b2, b1
    # #2 first is a hole when it arrives (#1 was still missing); #1 after it is reordered.
    assert kinds(records) == {"reordered": 1, "unannounced_gaps": 1}


def test_a_hole_without_a_gap_event_is_an_unannounced_gap() -> None:
    records = clean()
    records.remove(Delivered("bob", "lobby", 1, E1, "m1", "alice:1"))
    assert kinds(records) == {"unannounced_gaps": 1, "lost": 1}


def test_a_hole_covered_by_a_retention_gap_is_fine() -> None:
    records = clean()
    at = records.index(Delivered("bob", "lobby", 1, E1, "m1", "alice:1"))
    records[at] = Announced("bob", "lobby", "retention", 0, E1, E1, 2)
    assert kinds(records) == {}


def test_a_new_epoch_must_be_announced() -> None:
    def after_restart(alice_told: bool, bob_told: bool) -> list[object]:
        records = [
            *clean(),
            Sent("alice", "lobby", "alice:3"),
            Acked("alice", "lobby", "alice:3", "m3", 1, E2),
        ]
        for client, told in (("alice", alice_told), ("bob", bob_told)):
            if told:
                records.append(Announced(client, "lobby", "epoch", 2, E1, E2, 1))
            records.append(Delivered(client, "lobby", 1, E2, "m3", "alice:3"))
        return records

    assert kinds(after_restart(True, True)) == {}
    assert kinds(after_restart(True, False)) == {"unannounced_gaps": 1}
    assert kinds(after_restart(False, False)) == {"unannounced_gaps": 2}


def test_messages_lost_with_an_old_epoch_are_covered_by_its_gap() -> None:
    records = clean()
    records.remove(Delivered("bob", "lobby", 2, E1, "m2", "alice:2"))
    records += [
        Announced("bob", "lobby", "epoch", 1, E1, E2, None),
    ]
    assert kinds(records) == {}


def test_unacked_and_failed_sends_are_reported() -> None:
    records = [
        *clean(),
        Sent("alice", "lobby", "alice:3"),
        Sent("alice", "lobby", "alice:4"),
        SendFailed("alice", "lobby", "alice:4", "ClientClosed: closed"),
    ]
    report = check(history(records))
    assert report.counts()["unacked"] == 1 and report.counts()["failed"] == 1
    assert "alice:3" in report.of("unacked")[0].detail
    assert not report.ok
    assert "unacked=1" in report.describe()


def test_an_ack_and_a_delivery_that_disagree_are_mismatched() -> None:
    records = clean()
    at = records.index(Delivered("bob", "lobby", 2, E1, "m2", "alice:2"))
    records[at] = Delivered("bob", "lobby", 2, E1, "m-other", "alice:2")
    assert kinds(records) == {"lost": 1}  # bob never got m2
    records[at] = Delivered("bob", "lobby", 2, E1, "m1", "alice:1")
    assert kinds(records) == {"duplicated": 1, "mismatched": 1, "lost": 1}


def test_an_epoch_that_lived_and_died_while_a_client_was_away_is_covered() -> None:
    e3 = "epoch-3"
    records: list[object] = [Joined("alice", "lobby", 0, E2), Joined("bob", "lobby", 0, E1)]
    records += [
        Acked("alice", "lobby", "in-e2", "m1", 1, E2, at=1.0),  # bob was away all of E2
        Delivered("alice", "lobby", 1, E2, "m1", "in-e2"),
        Announced("bob", "lobby", "epoch", 0, E1, e3, None, at=2.0),  # told of E1 -> E3
    ]
    assert kinds(records) == {}
    # ... but a gap announced before the message was acknowledged does not cover it.
    records[-1] = Announced("bob", "lobby", "epoch", 0, E1, e3, None, at=0.5)
    assert kinds(records) == {"lost": 1}


def test_two_messages_acked_as_one_event_id_are_mismatched() -> None:
    """A store that lost acknowledged data reuses its event ids: the acks tell."""
    records = clean()
    records += [
        Sent("bob", "lobby", "bob:1"),
        Acked("bob", "lobby", "bob:1", "m3", 2, E1),  # #2 was alice:2's
    ]
    report = check(history(records))
    (anomaly,) = report.of("mismatched")
    assert "'alice:2' and 'bob:1' both acked as #2" in anomaly.detail
