"""rtclient's generic Socket.IO mode against the Node.js socket.io 4.8 reference server.

Nobody here wrote that server: these tests check rtclient against the real protocol
(acks, rooms, server-initiated disconnects, v4 connection state recovery, connect_error)
rather than against our own reading of it. See server.js for what the server does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rtclient import Client, ConnectionState, Event, Gap, Unauthorized
from rtclient.testing import wait_until

from .conftest import FAST, GatedTransport, StartServer

TIMEOUT = 10.0


def generic(url: str | list[str], **options: Any) -> Client:
    options.setdefault("transport", "socketio")
    options.setdefault("token", "good")
    options.setdefault("backoff", FAST)
    options.setdefault("ack_timeout", 2.0)
    return Client(url, protocol="generic", **options)


def subscriber(name: str, *rooms: str) -> tuple[list[int], Any]:
    """An on_connect hook that registers ``name`` and joins ``rooms``; counts its runs."""
    runs: list[int] = []

    async def hook(client: Client) -> None:
        await client.call("register", {"name": name}, timeout=TIMEOUT)
        for room in rooms:
            reply = await client.call("join", room, timeout=TIMEOUT)
            assert room in reply["rooms"]
        runs.append(len(runs) + 1)

    return runs, hook


async def test_emit_with_ack_round_trips_dict_string_and_list(start_server: StartServer) -> None:
    server = await start_server()
    async with generic(server.url) as client:
        first = await client.emit("echo", {"text": "hi", "nested": {"a": [1, 2.5, None]}})
        second = await client.emit("echo", {"text": "again"}, timeout=TIMEOUT)
        text = await client.emit("echo", "plain string", timeout=TIMEOUT)
        items = await client.emit("echo", [1, "two", {"three": 3}], timeout=TIMEOUT)
        called = await client.call("echo", {"via": "call"}, timeout=TIMEOUT)
        stats = client.stats()

    assert first["text"] == "hi" and first["nested"] == {"a": [1, 2.5, None]}
    assert isinstance(first["messageId"], str) and first["messageId"]
    assert second["messageId"] != first["messageId"]
    assert text == "plain string"
    assert items == [1, "two", {"three": 3}]
    assert called == {"via": "call"}
    # What the server saw: the message id travels inside the dict; other data as is,
    # each exactly once; call() adds no message id.
    assert (await server.state())["echoes"] == [
        {"text": "hi", "nested": {"a": [1, 2.5, None]}, "messageId": first["messageId"]},
        {"text": "again", "messageId": second["messageId"]},
        "plain string",
        [1, "two", {"three": 3}],
        {"via": "call"},
    ]
    assert stats["acked"] == 4 and stats["queued"] == 0


async def test_server_side_rooms_reach_joined_clients_exactly_once(
    start_server: StartServer,
) -> None:
    server = await start_server()
    alice_runs, alice_hook = subscriber("alice", "lobby")
    alice = generic(server.url)
    alice.on_connect(alice_hook)
    heard: list[Event] = []
    alice.on("said", heard.append)
    bob = generic(server.url)
    bob_heard: list[Event] = []
    bob.on("said", bob_heard.append)
    async with alice, bob:
        assert alice_runs == [1]
        await bob.call("register", {"name": "bob"}, timeout=TIMEOUT)
        await bob.call("say", {"room": "lobby", "text": "hello"}, timeout=TIMEOUT)
        await bob.call("say", {"room": "lobby", "text": "fence"}, timeout=TIMEOUT)
        await wait_until(lambda: any(e.data.get("text") == "fence" for e in heard), timeout=TIMEOUT)
        await bob.call("join", "other", timeout=TIMEOUT)
        await alice.call("say", {"room": "other", "text": "to bob"}, timeout=TIMEOUT)
        await wait_until(lambda: len(bob_heard) == 1, timeout=TIMEOUT)

    # Everything before the fence arrived on the same connection, in order: no doubles.
    assert [e.data for e in heard] == [
        {"room": "lobby", "text": "hello", "from": "bob"},
        {"room": "lobby", "text": "fence", "from": "bob"},
    ]
    assert all(e.name == "said" for e in heard)
    # bob was not in lobby: the first thing he heard is what was said in his room.
    assert [e.data["text"] for e in bob_heard] == ["to bob"]


async def test_server_disconnect_reconnects_reruns_hook_and_delivers_queued_once(
    start_server: StartServer,
) -> None:
    server = await start_server()
    gate = GatedTransport()
    client = generic(server.url, transport=gate)
    runs, hook = subscriber("carol", "lobby")
    client.on_connect(hook)
    async with client:
        assert runs == [1]
        gate.open.clear()  # after the kick, keep the client away while it queues
        assert await client.call("kick", timeout=TIMEOUT) == {"ok": True}
        await client.wait_for(ConnectionState.RECONNECTING, timeout=TIMEOUT)
        pending = [
            asyncio.create_task(client.emit("echo", {"n": n}, timeout=TIMEOUT)) for n in range(5)
        ]
        await wait_until(lambda: client.stats()["queued"] == 5, timeout=TIMEOUT)
        nowait_id = client.emit_nowait("echo", {"n": 5})
        await wait_until(
            lambda: client.stats()["queued"] == 6 and gate.refused >= 1, timeout=TIMEOUT
        )
        assert client.state is not ConnectionState.CONNECTED
        assert (await server.state())["echoes"] == []  # nothing went out while away
        gate.open.set()
        replies = await asyncio.gather(*pending)
        await wait_until(lambda: client.stats()["queued"] == 0, timeout=TIMEOUT)
        assert await client.call("echo", "fence", timeout=TIMEOUT) == "fence"
        assert runs == [1, 2]  # the hook ran again after the reconnect
        stats = client.stats()

    assert [r["n"] for r in replies] == [0, 1, 2, 3, 4]
    state = await server.state()
    echoes = state["echoes"]
    assert [e["n"] for e in echoes[:-1]] == [0, 1, 2, 3, 4, 5]  # each once, in order
    assert echoes[-1] == "fence"
    assert echoes[5]["messageId"] == nowait_id
    assert len({e["messageId"] for e in echoes[:-1]}) == 6
    assert stats["reconnects"] == 1
    kicked = [d for d in state["disconnects"] if d["name"] == "carol"]
    assert kicked[0]["reason"] == "server namespace disconnect"
    # On the new connection the hook's register + join came before the queued emits.
    second_sid = state["connections"][1]["sid"]
    events = [e["event"] for e in state["log"] if e["sid"] == second_sid]
    assert events[:2] == ["register", "join"] and set(events[2:]) == {"echo"}
    assert state["connections"][1]["recovered"] is False


async def test_transport_drop_mid_stream_recovers_every_event_once(
    start_server: StartServer,
) -> None:
    server = await start_server(recovery=True, max_disconnection_ms=10_000, skip_middlewares=True)
    client = generic(server.url)
    runs, hook = subscriber("dave", "feed")
    client.on_connect(hook)
    ticks: list[Event] = []
    gaps: list[Gap] = []
    fences: list[Event] = []
    client.on("tick", ticks.append)
    client.on("gap", gaps.append)
    client.on("fence", fences.append)
    async with client:
        assert client.recovered is False  # a first connection has nothing to recover
        reply = await client.call("stream", {"n": 40, "every": 10, "room": "feed", "id": "s1"})
        assert reply == {"id": "s1"}
        await wait_until(lambda: len(ticks) >= 10, timeout=TIMEOUT)
        resume = client._session.resume  # kept by the session, not the transport
        assert resume.pid is not None and resume.offset is not None
        # Cut the transport (no DISCONNECT packet) and emit 5 ticks while it is surely away.
        dropped = await server.post("/control/drop", {"name": "dave", "stream": "s1", "burst": 5})
        assert dropped == {"dropped": 1, "burst": 5}
        await wait_until(lambda: len(ticks) >= 40, timeout=TIMEOUT)
        await server.post("/control/emit", {"room": "feed", "event": "fence", "data": {}})
        await wait_until(lambda: len(fences) == 1, timeout=TIMEOUT)
        recovered = client.recovered
        stats = client.stats()

    assert [t.data for t in ticks] == [{"stream": "s1", "seq": n} for n in range(1, 41)]
    assert recovered is True
    assert gaps == []
    assert stats["reconnects"] == 1
    state = await server.state()
    assert state["streams"]["s1"]["whileAway"] >= 5  # recovery really had work to do
    assert [c["recovered"] for c in state["connections"]] == [False, True]
    assert state["connections"][0]["sid"] == state["connections"][1]["sid"]
    assert runs == [1, 2]


async def test_back_to_back_drops_replay_nothing_twice(start_server: StartServer) -> None:
    """A second drop right after a recovery, before any live event: no replay twice.

    The events a recovered session replays carry offsets too; the next recovery must
    start after the last of them, or the server replays them again.
    """
    server = await start_server(recovery=True, max_disconnection_ms=10_000, skip_middlewares=True)
    client = generic(server.url)
    runs, hook = subscriber("fay", "feed")
    client.on_connect(hook)
    ticks: list[Event] = []
    fences: list[Event] = []
    gaps: list[Gap] = []
    client.on("tick", ticks.append)
    client.on("fence", fences.append)
    client.on("gap", gaps.append)

    async def drop(burst: int) -> None:
        reconnects = client.stats()["reconnects"]
        body = {"name": "fay", "stream": "s1", "burst": burst}
        assert await server.post("/control/drop", body) == {"dropped": 1, "burst": burst}
        await wait_until(lambda: client.stats()["reconnects"] == reconnects + 1, timeout=TIMEOUT)
        await client.wait_for(ConnectionState.CONNECTED, timeout=TIMEOUT)
        assert client.recovered is True
        assert await client.call("echo", "ack round trip", timeout=TIMEOUT) == "ack round trip"

    async with client:
        await client.call("stream", {"n": 6, "every": 0, "room": "feed", "id": "s1"})
        await server.post("/control/advance", {"stream": "s1", "count": 1})
        await wait_until(lambda: len(ticks) == 1, timeout=TIMEOUT)  # live: the client has an offset
        await drop(burst=2)  # ticks 2 and 3 are replayed by the recovery
        await drop(burst=0)  # nothing was missed this time
        await server.post("/control/advance", {"stream": "s1", "count": 3})
        await server.post("/control/emit", {"room": "feed", "event": "fence", "data": {}})
        await wait_until(lambda: len(fences) == 1, timeout=TIMEOUT)
        stats = client.stats()

    assert [t.data for t in ticks] == [{"stream": "s1", "seq": n} for n in range(1, 7)]
    assert gaps == []
    assert stats["reconnects"] == 2
    state = await server.state()
    assert [c["recovered"] for c in state["connections"]] == [False, True, True]
    assert state["streams"]["s1"]["whileAway"] == 2
    assert runs == [1, 2, 3]


async def test_a_recovery_replaying_more_than_the_inbox_holds_delivers_each_once(
    start_server: StartServer,
) -> None:
    """1,000 broadcasts missed: socket.io replays them all before its CONNECT answer.

    The client's inbox holds 64 (``max_queue``); nothing reads it before the connect
    returns. The replay used to deadlock every attempt until the connect timeout (the
    long one here: the short wait below fails first).
    """
    missed = 1000
    server = await start_server(recovery=True, max_disconnection_ms=60_000, skip_middlewares=True)
    client = generic(server.url, connect_timeout=60.0)
    runs, hook = subscriber("gil", "feed")
    client.on_connect(hook)
    ticks: list[Event] = []
    gaps: list[Gap] = []
    client.on("tick", ticks.append)
    client.on("gap", gaps.append)
    async with client:
        await client.call("stream", {"n": missed + 1, "every": 0, "room": "feed", "id": "s1"})
        await server.post("/control/advance", {"stream": "s1", "count": 1})
        await wait_until(lambda: len(ticks) == 1, timeout=TIMEOUT)  # live: an offset
        body = {"name": "gil", "stream": "s1", "burst": missed}
        assert await server.post("/control/drop", body) == {"dropped": 1, "burst": missed}
        await wait_until(lambda: len(ticks) >= missed + 1, timeout=TIMEOUT)
        await wait_until(lambda: runs == [1, 2], timeout=TIMEOUT)
        recovered = client.recovered
        stats = client.stats()

    assert [t.data["seq"] for t in ticks] == list(range(1, missed + 2))
    assert recovered is True and gaps == []
    assert stats["reconnects"] == 1 and stats["duplicates_dropped"] == 0
    state = await server.state()
    assert state["streams"]["s1"]["whileAway"] == missed
    assert [c["recovered"] for c in state["connections"]] == [False, True]


async def test_drop_longer_than_max_disconnection_is_reported_as_a_gap(
    start_server: StartServer,
) -> None:
    server = await start_server(recovery=True, max_disconnection_ms=300)
    gate = GatedTransport()
    client = generic(server.url, transport=gate)
    runs, hook = subscriber("erin", "feed")
    client.on_connect(hook)
    ticks: list[Event] = []
    gaps: list[Gap] = []
    gap_seen = asyncio.Event()
    client.on("tick", ticks.append)

    def on_gap(gap: Gap) -> None:
        gaps.append(gap)
        gap_seen.set()

    client.on("gap", on_gap)
    async with client:
        await client.call("stream", {"n": 3, "every": 5, "room": "feed", "id": "before"})
        await wait_until(
            lambda: len(ticks) == 3, timeout=TIMEOUT
        )  # the client holds a recovery offset now
        assert gate.inner.pid is not None and gate.inner.offset is not None
        gate.open.clear()
        assert await client.call("drop", timeout=TIMEOUT) == {"ok": True}
        await client.wait_for(ConnectionState.RECONNECTING, timeout=TIMEOUT)
        lost = {"stream": "lost", "seq": 1}
        await server.post("/control/emit", {"room": "feed", "event": "tick", "data": lost})

        async def session_expired() -> bool:
            session = await server.get("/control/session", name="erin")
            return bool(session["pid"] is not None and session["expired"])

        await wait_until(session_expired, timeout=TIMEOUT)
        await wait_until(lambda: gate.refused >= 1, timeout=TIMEOUT)
        gate.open.set()
        async with asyncio.timeout(TIMEOUT):
            await gap_seen.wait()
        await client.wait_for(ConnectionState.CONNECTED, timeout=TIMEOUT)
        recovered = client.recovered
        # The hook joined the room again: the new session hears it.
        await client.call("stream", {"n": 2, "every": 5, "room": "feed", "id": "after"})
        await wait_until(lambda: len(ticks) == 5, timeout=TIMEOUT)

    assert recovered is False
    assert len(gaps) == 1 and gaps[0].reason == "session"
    assert [t.data for t in ticks] == [
        {"stream": "before", "seq": 1},
        {"stream": "before", "seq": 2},
        {"stream": "before", "seq": 3},
        {"stream": "after", "seq": 1},
        {"stream": "after", "seq": 2},
    ]  # the tick emitted while away is lost, and the gap said so
    state = await server.state()
    assert [c["recovered"] for c in state["connections"]] == [False, False]
    assert runs == [1, 2]


async def test_invalid_token_is_unauthorized_after_one_attempt(start_server: StartServer) -> None:
    server = await start_server()
    client = generic(server.url, token="bad")
    with pytest.raises(Unauthorized):
        await client.connect()
    await client.close()
    assert client.state is ConnectionState.CLOSED
    assert client.stats()["attempts"] == 1
    state = await server.state()
    assert state["authAttempts"] == {"bad": 1}
    assert state["connections"] == []


async def test_close_is_a_client_disconnect_and_leaves_no_session(
    start_server: StartServer,
) -> None:
    """``close()`` sends the Socket.IO DISCONNECT (and engine.io's CLOSE) before the
    WebSocket closes: the server sees the client leave, not a transport close, and keeps
    no session for a recovery that will never come."""
    server = await start_server(recovery=True, max_disconnection_ms=60_000)
    client = generic(server.url)
    runs, hook = subscriber("gus", "feed")
    client.on_connect(hook)
    async with client:
        assert runs == [1]
        assert client._session.resume.pid is not None  # recovery is on for this session

    async def disconnected() -> bool:
        return len((await server.state())["disconnects"]) == 1

    await wait_until(disconnected, timeout=TIMEOUT)
    (disconnect,) = (await server.state())["disconnects"]
    assert (disconnect["name"], disconnect["reason"]) == ("gus", "client namespace disconnect")
    session = await server.get("/control/session", name="gus")
    assert session["pid"] is not None and session["stored"] is False


async def test_a_middleware_refusal_that_is_not_about_credentials_is_retried(
    start_server: StartServer,
) -> None:
    """``next(new Error("server busy"))`` twice, then accepted: retried, not Unauthorized."""
    server = await start_server()
    async with generic(server.url, token="busy") as client:
        assert await client.emit("echo", "through") == "through"
        stats = client.stats()
    assert stats["connect_refusals"] == 2 and stats["attempts"] == 3
    assert (await server.state())["authAttempts"] == {"busy": 3}


async def test_a_refusal_with_data_code_401_is_unauthorized_after_one_attempt(
    start_server: StartServer,
) -> None:
    server = await start_server()
    client = generic(server.url, token="coded")
    with pytest.raises(Unauthorized, match="not today"):
        await client.connect()
    await client.close()
    assert client.stats()["attempts"] == 1
    assert (await server.state())["authAttempts"] == {"coded": 1}
