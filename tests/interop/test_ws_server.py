"""rtclient's generic mode on the raw WebSocket transports against the seed's ``ws`` server.

ws_server.js is the seed guide's first server, written with npm's ``ws``: JSON
``{"type", "payload"}`` envelopes, the token in the query string (4001 without it),
a ``connected {clientId}`` greeting, rooms that live only as long as the socket, pings
every ``--ping-ms``, no acks. Bob reaches it through a FaultProxy that cuts him off;
Alice listens on a direct connection. Every test runs on both raw transports.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from typing import Any

import pytest

from rtclient import Client, ConnectionState, Event, Unauthorized
from rtclient.testing import FaultProxy, wait_until

from .conftest import FAST, NodeServer, StartWsServer

TIMEOUT = 10.0
TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "aiohttp"])


def seed_client(url: str, transport: str, user: str | None, **options: Any) -> Client:
    options.setdefault("backoff", FAST)
    return Client(
        url,
        protocol="generic",
        transport=transport,  # type: ignore[arg-type]
        token=f"secret-{user}" if user else None,
        token_query="token",
        **options,
    )


def rejoin(room: str) -> Any:
    """The seed server forgets rooms with the socket: join again on every connection."""

    async def hook(client: Client) -> None:
        await client.emit("join:room", {"roomId": room}, ack=False)

    return hook


async def frames_of(server: NodeServer, user: str) -> list[dict[str, Any]]:
    state = await server.state()
    return [f for f in state["frames"] if f["userId"] == user]


@TRANSPORTS
async def test_greeting_rooms_and_broadcast(start_ws_server: StartWsServer, transport: str) -> None:
    server = await start_ws_server()
    url = f"ws://127.0.0.1:{server.port}/"
    alice = seed_client(url, transport, "alice")
    bob = seed_client(url, transport, "bob")
    greetings: list[Event] = []
    heard: list[Event] = []
    joined: list[Event] = []
    alice.on("connected", greetings.append)
    alice.on("room:message", heard.append)
    alice.on("user:joined", joined.append)
    alice.on_connect(rejoin("lobby"))
    bob.on_connect(rejoin("lobby"))
    async with alice:
        await wait_until(lambda: len(joined) == 1, TIMEOUT)  # alice herself
        async with bob:
            await wait_until(lambda: len(joined) == 2, TIMEOUT)
            assert await bob.emit("room:message", {"roomId": "lobby", "text": "hi"}) is None
            await wait_until(lambda: len(heard) == 1, TIMEOUT)
    assert greetings[0].data["clientId"]
    assert joined[1].data == {"userId": "bob", "roomId": "lobby"}
    assert heard[0].data["text"] == "hi" and heard[0].data["from"] == "bob"
    assert heard[0].data["messageId"]  # the id travels with the data: receivers can dedupe
    state = await server.state()
    assert state["urls"] == ["/?token=***", "/?token=***"]  # the token went in the query
    with pytest.raises(Exception, match="no acks"):
        await alice.call("room:message", {"roomId": "lobby"})


@TRANSPORTS
async def test_rejoin_from_hooks_and_offline_emits_once_in_order(
    start_ws_server: StartWsServer, transport: str
) -> None:
    """Cut Bob off again and again; what he emits while offline goes out once, in order,
    after the rejoin his hook emits (counted at the server and at Alice)."""
    server = await start_ws_server()
    cuts, per_cut = 8, 25
    async with FaultProxy(upstream=("127.0.0.1", server.port), seed=18) as proxy:
        alice = seed_client(f"ws://127.0.0.1:{server.port}/", transport, "alice")
        bob = seed_client(proxy.url("ws", "/"), transport, "bob")
        heard: list[Event] = []
        alice.on("room:message", heard.append)
        alice.on_connect(rejoin("lobby"))
        bob.on_connect(rejoin("lobby"))
        sent = 0
        async with alice, bob:
            await wait_until(server_has_room_members(server, 2), TIMEOUT)
            for _ in range(cuts):
                await proxy.down()
                await bob.wait_for(ConnectionState.RECONNECTING, timeout=TIMEOUT)
                for _ in range(per_cut):  # offline: they wait in the outbox
                    bob.emit_nowait("room:message", {"roomId": "lobby", "n": sent}, ack=False)
                    sent += 1
                await proxy.up()
                await wait_until(lambda n=sent: len(heard) == n, TIMEOUT)
            stats = bob.stats()

    frames = await frames_of(server, "bob")
    by_connection: dict[str, list[str]] = {}
    for frame in frames:
        by_connection.setdefault(frame["clientId"], []).append(frame["type"])
    numbers = [f["payload"]["n"] for f in frames if f["type"] == "room:message"]
    lost = len(set(range(sent)) - set(numbers))
    duplicated = len(numbers) - len(set(numbers))
    reordered = sum(1 for a, b in itertools.pairwise(numbers) if b < a)
    print(
        f"\n[{transport}] ws seed server: {sent} offline emits, {cuts} cuts, "
        f"{len(by_connection)} connections; lost={lost} duplicated={duplicated} "
        f"reordered={reordered}; bob reconnects={stats['reconnects']}"
    )
    assert (lost, duplicated, reordered) == (0, 0, 0)
    assert [e.data["n"] for e in heard] == list(range(sent))  # Alice, in the same order
    assert len(by_connection) == cuts + 1
    for types in by_connection.values():
        assert types[0] == "join:room"  # the hook's rejoin, ahead of the queued emits
        assert types.count("join:room") == 1
    assert stats["reconnects"] == cuts


def server_has_room_members(server: NodeServer, count: int) -> Any:
    async def check() -> bool:
        state = await server.state()
        return len(state["rooms"].get("lobby", [])) == count

    return check


@TRANSPORTS
async def test_live_emits_under_random_cuts(start_ws_server: StartWsServer, transport: str) -> None:
    """Without acks the promise is "sent once written to a live socket": what was written
    on a connection just before it was cut may be lost, but what arrives from each
    connection is a prefix of what was written on it (nothing doubled or reordered), and
    what is emitted while the client knows it is offline waits for the next one."""
    server = await start_ws_server()
    rng = random.Random(1818)
    cuts = 6
    async with FaultProxy(upstream=("127.0.0.1", server.port), seed=1818) as proxy:
        bob = seed_client(proxy.url("ws", "/"), transport, "bob")
        written: list[int] = []  # per message: the connection it was written on
        stop = asyncio.Event()

        async def send() -> None:
            while not stop.is_set():
                n = len(written)
                await bob.emit("room:message", {"roomId": "none", "n": n}, ack=False)
                written.append(bob.stats()["reconnects"])
                await asyncio.sleep(0.001)  # pacing (about 1,000 a second), not a wait

        async def received() -> int:
            return len(await frames_of(server, "bob"))

        async with bob, asyncio.TaskGroup() as tasks:
            tasks.create_task(send())
            for _ in range(cuts):
                target = await received() + rng.randint(20, 80)

                async def reached(target: int = target) -> bool:
                    return await received() >= target

                await wait_until(reached, TIMEOUT)
                await proxy.down(reset=rng.random() < 0.5)
                await proxy.up()
            await wait_until(lambda: bob.stats()["reconnects"] == cuts, TIMEOUT)
            target = len(written) + 20
            await wait_until(lambda: len(written) >= target, TIMEOUT)
            stop.set()
        sent = len(written)

        async def all_after_the_last_cut() -> bool:
            last = [n for n, c in enumerate(written) if c == cuts]
            return {f["payload"]["n"] for f in await frames_of(server, "bob")} >= set(last)

        await wait_until(all_after_the_last_cut, TIMEOUT)
    numbers = [f["payload"]["n"] for f in await frames_of(server, "bob")]
    lost = sorted(set(range(sent)) - set(numbers))
    duplicated = len(numbers) - len(set(numbers))
    reordered = sum(1 for a, b in itertools.pairwise(numbers) if b < a)
    print(
        f"\n[{transport}] ws seed server, live emits: {sent} sent, {cuts} cuts; "
        f"lost={len(lost)} duplicated={duplicated} reordered={reordered}"
    )
    assert duplicated == 0 and reordered == 0
    arrived = set(numbers)
    for connection in range(cuts + 1):
        mine = [n for n, c in enumerate(written) if c == connection]
        delivered = [n for n in mine if n in arrived]
        assert delivered == mine[: len(delivered)]  # a prefix: losses only at the cut
    assert all(written[n] < cuts for n in lost)  # nothing lost on the connection not cut


@TRANSPORTS
async def test_missing_token_is_fatal(start_ws_server: StartWsServer, transport: str) -> None:
    server = await start_ws_server()
    client = seed_client(f"ws://127.0.0.1:{server.port}/", transport, None)
    with pytest.raises(Unauthorized):
        await client.connect()
    assert client.state is ConnectionState.CLOSED
    state = await server.state()
    assert state["rejected"] == 1  # one attempt: no retry storm


@TRANSPORTS
async def test_wrong_token_in_the_query_is_redacted(
    start_ws_server: StartWsServer, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_ws_server()
    secret = "not-the-secret-4ab1c9d7e2"
    client = Client(
        f"ws://127.0.0.1:{server.port}/",
        protocol="generic",
        transport=transport,  # type: ignore[arg-type]
        token=secret,
        token_query="token",
        backoff=FAST,
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(Unauthorized) as info:
        await client.connect()
    assert "token=" in caplog.text or transport == "aiohttp"  # websockets logs the request
    assert secret not in caplog.text
    assert secret not in str(info.value) and secret not in repr(client)


@TRANSPORTS
async def test_the_servers_pings_keep_the_connection_alive(
    start_ws_server: StartWsServer, transport: str
) -> None:
    """The seed server terminates a client that misses a ping; rtclient answers them all,
    with or without its own heartbeat."""
    server = await start_ws_server(ping_ms=50)
    quiet = seed_client(f"ws://127.0.0.1:{server.port}/", transport, "quiet", ping_interval=None)
    beating = seed_client(
        f"ws://127.0.0.1:{server.port}/", transport, "beating", ping_interval=0.05
    )
    async with quiet, beating:

        async def pinged() -> bool:
            return (await server.state())["pings"] >= 30

        await wait_until(pinged, TIMEOUT)
        await wait_until(lambda: beating.quality.samples >= 5, TIMEOUT)
        assert quiet.state is ConnectionState.CONNECTED
        assert beating.state is ConnectionState.CONNECTED
        stats = quiet.stats(), beating.stats()
    state = await server.state()
    assert state["terminated"] == 0
    assert state["connections"] == 2
    assert state["pongs"] >= state["pings"] - 2  # the last round may be in flight
    assert stats[0]["reconnects"] == stats[1]["reconnects"] == 0
    await asyncio.sleep(0)
