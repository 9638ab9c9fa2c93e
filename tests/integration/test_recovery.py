"""Nothing received is lost or doubled, across restarts, drops and duplicated frames."""

from __future__ import annotations

import asyncio
import time

import pytest

from fake_server import FakeServer
from rtclient import Backoff, ConnectionState
from rtclient.testing import wait_until

from .conftest import GatedTransport, MakeClient, Recorder


@pytest.fixture(params=["websocket", "aiohttp", "socketio"])
def transport_name(request: pytest.FixtureRequest) -> str:
    """Every test in this module runs over each transport."""
    return str(request.param)


def server_ids(server: FakeServer, room: str) -> list[int]:
    return [e["eventId"] for e in server.room_events(room)]


async def test_restart_keep_log_while_two_clients_chat(
    server: FakeServer, make_client: MakeClient
) -> None:
    alice = await make_client("alice", rooms=("lobby",))
    bob = await make_client("bob", rooms=("lobby",))
    seen_a, seen_b = Recorder(alice), Recorder(bob)
    for i in range(20):
        alice.send_nowait("lobby", f"a{i}")
        bob.send_nowait("lobby", f"b{i}")
    restart = asyncio.create_task(server.restart(downtime=0.2, keep_log=True))
    await wait_until(lambda: alice.state is ConnectionState.RECONNECTING)
    # Sent while the server is down: queued, flushed after the rejoin and the sync.
    acks = [asyncio.create_task(alice.send("lobby", f"offline{i}")) for i in range(10)]
    acks += [asyncio.create_task(bob.send("lobby", f"offline-b{i}")) for i in range(10)]
    await restart
    await asyncio.gather(*acks)
    await wait_until(lambda: len(server.room_events("lobby")) == 60)
    expected = server_ids(server, "lobby")
    assert len(set(expected)) == 60
    await wait_until(lambda: seen_a.ids("lobby") == expected and seen_b.ids("lobby") == expected)
    texts = [e["text"] for e in server.room_events("lobby")]
    assert sorted(texts) == sorted(
        [f"a{i}" for i in range(20)]
        + [f"b{i}" for i in range(20)]
        + [f"offline{i}" for i in range(10)]
        + [f"offline-b{i}" for i in range(10)]
    )
    # Each sender's own messages are in the log in the order they were sent.
    assert [t for t in texts if t.startswith("offline-b")] == [f"offline-b{i}" for i in range(10)]
    assert [t for t in texts if t.startswith("a")] == [f"a{i}" for i in range(20)]
    assert alice.stats()["reconnects"] >= 1 and bob.stats()["reconnects"] >= 1
    assert seen_a.gaps == [] and seen_b.gaps == []


async def test_drop_connections_during_a_burst_of_1000_sends(
    server: FakeServer, make_client: MakeClient
) -> None:
    # Every connection here lives for ten acks, well under FAST's stable_after: under
    # FAST each drop would count as a failed attempt and the clients would spend the
    # test in backoff sleeps near its cap. With no stability wait, each drop is followed
    # by the quick retry of a stable connection (the path of a bot's ordinary drop).
    quick = Backoff(base=0.01, cap=0.2, first_delay=0.01, stable_after=0.0)
    sender = await make_client("sender", rooms=("burst",), max_in_flight=32, backoff=quick)
    receivers = [await make_client(f"r{i}", rooms=("burst",), backoff=quick) for i in range(2)]
    seen = [Recorder(c) for c in (sender, *receivers)]
    faults = 0
    unacked_at_drop: list[int] = []  # committed, ack not yet at the sender
    stop = asyncio.Event()

    async def chaos() -> None:
        nonlocal faults
        while not stop.is_set():
            # Drop again as soon as the sender is back and got a few acks: it must get
            # some work done between drops, or a slow handshake would never progress.
            await sender.wait_for(ConnectionState.CONNECTED)
            target = sender.stats()["acked"] + 10
            await wait_until(lambda t=target: stop.is_set() or sender.stats()["acked"] >= t)
            if stop.is_set():
                break
            unacked_at_drop.append(len(server.room_events("burst")) - sender.stats()["acked"])
            await server.drop_connections()
            faults += 1

    started = time.perf_counter()
    chaos_task = asyncio.create_task(chaos())
    sends = [asyncio.create_task(sender.send("burst", f"m{i}")) for i in range(1000)]
    acks = await asyncio.gather(*sends)
    stop.set()
    await chaos_task
    elapsed = time.perf_counter() - started
    assert len({a.event_id for a in acks}) == 1000
    expected = server_ids(server, "burst")
    assert len(expected) == 1000
    assert sorted(a.event_id for a in acks) == expected
    await wait_until(lambda: all(r.ids("burst") == expected for r in seen), timeout=20)
    # The sender's messages are in the log in the order they were sent.
    assert [e["text"] for e in server.room_events("burst")] == [f"m{i}" for i in range(1000)]
    assert faults >= 5
    print(
        f"\n[burst] 1000 messages, {faults} connection drops, {elapsed:.2f}s, "
        f"resent={sender.stats()['resent']}, duplicate acks={sender.stats()['duplicate_acks']}"
        f", committed unacked at a drop={sum(unacked_at_drop) / len(unacked_at_drop):.1f} (mean), "
        f"server duplicates={server.counters['duplicates']}"
    )


async def test_restart_without_log_reports_a_gap(
    server: FakeServer, make_client: MakeClient
) -> None:
    alice = await make_client("alice", rooms=("lobby",))
    seen = Recorder(alice)
    await alice.send("lobby", "before")
    old_epoch = server.epoch
    await server.restart(downtime=0.05, keep_log=False)
    await wait_until(lambda: bool(seen.gaps))
    (gap,) = seen.gaps
    assert gap.room == "lobby" and gap.reason == "epoch"
    assert gap.old_epoch == old_epoch and gap.new_epoch == server.epoch != old_epoch
    assert gap.after_event_id == 1
    await alice.wait_for(ConnectionState.CONNECTED)
    ack = await alice.send("lobby", "after")
    assert ack.event_id == 1 and ack.epoch == server.epoch
    await wait_until(lambda: seen.texts() == ["before", "after"])


async def test_duplicated_events_are_seen_once(server: FakeServer, make_client: MakeClient) -> None:
    alice = await make_client("alice", rooms=("lobby",))
    bob = await make_client("bob", rooms=("lobby",))
    seen = Recorder(bob)
    await server.duplicate_next_events(5)
    for i in range(8):
        await alice.send("lobby", f"m{i}")
    await wait_until(lambda: len(seen.messages) == 8)
    await alice.send("lobby", "marker")
    await wait_until(lambda: seen.texts()[-1:] == ["marker"])
    assert seen.texts() == [f"m{i}" for i in range(8)] + ["marker"]
    assert bob.stats()["duplicates_dropped"] >= 5
    assert server.counters["events_duplicated"] >= 5


async def test_missed_events_are_synced_page_by_page_and_marked_replayed(
    server: FakeServer, make_client: MakeClient
) -> None:
    alice = await make_client("alice", rooms=("lobby",))
    gate = GatedTransport()
    bob = await make_client("bob", rooms=("lobby",), sync_page_size=7, gate=gate)
    seen = Recorder(bob)
    gate.cut()
    await bob.wait_for(ConnectionState.RECONNECTING)
    for i in range(30):
        await alice.send("lobby", f"m{i}")
    gate.restore()
    await bob.wait_for(ConnectionState.CONNECTED)
    await wait_until(lambda: len(seen.messages) == 30)
    assert seen.texts() == [f"m{i}" for i in range(30)]
    assert all(m.replayed for m in seen.messages)
    assert bob.stats()["syncs"] == 5  # 30 events in pages of 7
    await alice.send("lobby", "live")
    await wait_until(lambda: len(seen.messages) == 31)
    assert not seen.messages[-1].replayed


async def test_mixed_room_raw_and_socketio_through_faults(server: FakeServer) -> None:
    """Raw WebSocket and Socket.IO users in one room: every message once, at everyone."""
    from rtclient import Client

    from .conftest import FAST

    clients = [
        Client(server.ws_url, token=server.issue_token("raw"), backoff=FAST),
        Client(server.sio_url, transport="socketio", token=server.issue_token("sio"), backoff=FAST),
    ]
    seen = [Recorder(c) for c in clients]
    for client in clients:
        await client.connect()
        await client.join("mixed")
    sends = []
    for round_ in range(4):
        for i, client in enumerate(clients):
            sends += [
                asyncio.create_task(client.send("mixed", f"{i}-{round_}-{k}")) for k in range(25)
            ]
        if round_ % 2:
            await server.restart(downtime=0.05)
        else:
            await server.drop_connections()
    await asyncio.gather(*sends)
    expected = server_ids(server, "mixed")
    assert len(expected) == 200 == len(set(expected))
    await wait_until(lambda: all(r.ids("mixed") == expected for r in seen))
    for client in clients:
        await client.close()
