"""Lifecycle edges: tokens that cannot be refreshed, stalled consumers, close() in a
handler, a slow application versus the heartbeat."""

from __future__ import annotations

import asyncio

from fake_server import FakeServer
from rtclient import Client, ConnectionState, Event
from rtclient.testing import wait_until

from .conftest import FAST, GatedTransport, MakeClient, Recorder


async def test_a_token_that_does_not_change_is_not_refreshed_in_a_loop(
    server: FakeServer, make_client: MakeClient
) -> None:
    static = server.issue_token("alice", ttl=1.0)  # refresh is due after 0.5 s
    client = await make_client("alice", token=static)
    # The token expires: the server closes with 4002, the same token is refused
    # again, and the client stops with TokenExpired — without a single in-band try.
    await client.wait_for(ConnectionState.CLOSED, timeout=10)
    assert client.stats()["in_band_refreshes"] == 0
    assert type(client._session.close_error).__name__ == "TokenExpired"


async def test_expiries_do_not_add_up_to_token_expired(
    server: FakeServer, make_client: MakeClient
) -> None:
    client = await make_client("alice", token=lambda: server.issue_token("alice"))
    for expiry in range(1, 6):
        await server.expire_tokens()
        await wait_until(lambda n=expiry: client.stats()["token_refreshes"] == n)
        await client.wait_for(ConnectionState.CONNECTED)
    assert client.state is ConnectionState.CONNECTED  # five expiries, each fixed at once


async def test_close_returns_with_an_events_iterator_nobody_reads(
    server: FakeServer, make_client: MakeClient
) -> None:
    client = await make_client("alice", rooms=("lobby",), max_pending_events=5)
    bob = await make_client("bob", rooms=("lobby",))
    iterator = client.events()
    first = asyncio.create_task(anext(iterator))  # started, then never read again
    for i in range(20):
        await bob.send("lobby", f"m{i}")
    await wait_until(lambda: client.stats()["read_pauses"] >= 1)
    async with asyncio.timeout(5):
        await client.close()
    await first
    assert client.state is ConnectionState.CLOSED


async def test_close_awaited_in_a_handler(server: FakeServer, make_client: MakeClient) -> None:
    client = await make_client("alice", rooms=("lobby",))
    bob = await make_client("bob", rooms=("lobby",))
    done = asyncio.Event()

    async def on_message(event: Event) -> None:
        if event.text == "/quit":
            await client.close()  # a bot that quits on command
            done.set()

    client.on("chat:message", on_message)
    await bob.send("lobby", "/quit")
    async with asyncio.timeout(5):
        await done.wait()
        await client.wait_for(ConnectionState.CLOSED)


async def test_a_slow_application_is_not_a_dead_link(server: FakeServer) -> None:
    client = Client(
        server.ws_url,
        token=server.issue_token("alice"),
        backoff=FAST,
        ping_interval=0.05,
        ping_timeout=0.2,
        max_pending_events=5,
    )
    seen = Recorder(client)
    gate = asyncio.Event()

    async def stuck(event: Event) -> None:
        await gate.wait()

    client.on("chat:message", stuck)
    bob = Client(server.ws_url, token=server.issue_token("bob"), backoff=FAST)
    async with client, bob:
        await client.join("lobby")
        await bob.join("lobby")
        for i in range(200):
            bob.send_nowait("lobby", f"m{i}")
        # Heartbeats whose pongs sit unread behind the paused reader are not deaths.
        await wait_until(lambda: client.stats()["pongs_unread"] >= 2)
        assert client.stats()["dead_links"] == 0 and client.stats()["reconnects"] == 0
        gate.set()
        await wait_until(lambda: len(seen.messages) == 200, timeout=20)


def _client_tasks() -> list[str]:
    return sorted(t.get_name() for t in asyncio.all_tasks() if "rtclient" in t.get_name())


async def test_an_idle_client_runs_two_tasks_and_refreshes_leave_none_behind(
    server: FakeServer, make_client: MakeClient
) -> None:
    # Idle memory (issue 8): the writer exists only while something is to be written,
    # the in-band token refresh is a timer that starts a task when it is due.
    client = await make_client(
        "alice",
        rooms=("lobby",),
        token=lambda: server.issue_token("alice", ttl=1.2),
        token_refresh_ahead=0.6,
        ping_interval=None,
    )
    await client.send("lobby", "hello")
    await wait_until(lambda: len(_client_tasks()) == 2)
    assert _client_tasks() == ["rtclient dispatcher", f"rtclient {server.ws_url}"]
    await wait_until(lambda: client.stats()["in_band_refreshes"] >= 3)
    await wait_until(lambda: len(_client_tasks()) == 2)  # each refresh task has ended
    assert client.stats()["reconnects"] == 0
    assert len(client._runner.link.helpers) <= 1  # finished refresh tasks are not kept


# -- close() interrupting the supervisor (it runs in the runner task) -------------------


async def test_close_while_the_token_provider_hangs(server: FakeServer) -> None:
    asked = asyncio.Event()

    async def slow_token() -> str:
        asked.set()
        await asyncio.Event().wait()  # never answers
        return "x"

    client = Client(server.ws_url, token=slow_token, backoff=FAST)
    await client.connect(wait=False)
    await asyncio.wait_for(asked.wait(), 5)
    await asyncio.wait_for(client.close(), 5)
    assert client.state is ConnectionState.CLOSED


async def test_close_from_an_on_connect_hook_and_twice_concurrently(
    server: FakeServer, make_client: MakeClient
) -> None:
    client = await make_client("alice", connect=False)
    closed = asyncio.Event()

    async def hook(c: Client) -> None:
        try:
            await c.close()
        finally:
            closed.set()

    client.on_connect(hook)
    await client.connect(wait=False)
    await asyncio.wait_for(closed.wait(), 5)
    await asyncio.wait_for(asyncio.gather(client.close(), client.close()), 5)
    assert client.state is ConnectionState.CLOSED


async def test_close_during_a_backoff_sleep_and_while_connecting(
    server: FakeServer, make_client: MakeClient
) -> None:
    gate = GatedTransport()
    client = await make_client("alice", gate=gate, backoff=FAST)
    gate.cut()
    await client.wait_for(ConnectionState.RECONNECTING)
    await asyncio.wait_for(client.close(), 5)
    assert client.state is ConnectionState.CLOSED
