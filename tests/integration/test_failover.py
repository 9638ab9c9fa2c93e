"""Failover across a list of URLs, on every transport: nothing lost, nothing doubled.

Two FaultProxy instances in front of ONE FakeServer are two URLs over shared state (one
event log, one dedupe table): cutting one proxy is a node going away while the data
stays, so the client must carry on on the other URL with no gap. A proxy that is down
refuses connections: a dead node.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState, StateChanged
from rtclient.endpoints import endpoint_label
from rtclient.testing import FaultProxy, wait_until

from .conftest import FAST, TEST_SERVER, Recorder

pytestmark = pytest.mark.parametrize("transport_name", ["websocket", "aiohttp", "socketio"])

WAIT = 10.0


def url_of(proxy: FaultProxy, transport_name: str) -> str:
    return proxy.url("http") if transport_name == "socketio" else proxy.url("ws", "/ws")


@pytest.fixture
async def proxies(server: FakeServer) -> AsyncIterator[tuple[FaultProxy, FaultProxy]]:
    """Two proxies in front of the one server: two URLs, shared state."""
    upstream = (server.host, server.port)
    async with FaultProxy(upstream=upstream) as a, FaultProxy(upstream=upstream) as b:
        yield a, b


async def test_cutting_one_url_moves_the_client_to_the_other_with_nothing_lost(
    server: FakeServer,
    proxies: tuple[FaultProxy, FaultProxy],
    transport_name: str,
) -> None:
    a, b = proxies
    urls = [url_of(a, transport_name), url_of(b, transport_name)]
    client = Client(
        urls,
        url_order="given",
        token=server.issue_token("alice"),
        transport=transport_name,  # type: ignore[arg-type]
        backoff=FAST,
        ack_timeout=2.0,
    )
    other = Client(
        server.sio_url if transport_name == "socketio" else server.ws_url,
        token=server.issue_token("bob"),
        transport=transport_name,  # type: ignore[arg-type]
        backoff=FAST,
    )
    seen = Recorder(client)
    async with client, other:
        await client.join("room")
        await other.join("room")
        assert client.endpoint == endpoint_label(urls[0]) and client.stats()["endpoint"] == 0
        sends: list[asyncio.Task[Any]] = []
        for i in range(60):
            sends.append(asyncio.create_task(client.send("room", f"alice {i}")))
            await other.send("room", f"bob {i}")
            if i == 20:
                await a.down()  # cut everything through A; A refuses from now on
        acks = await asyncio.wait_for(asyncio.gather(*sends), WAIT)
        await wait_until(lambda: len(seen.texts("room")) >= 120, timeout=WAIT)
        assert client.endpoint == endpoint_label(urls[1])
        assert client.stats()["endpoint"] == 1
        assert client.stats()["failovers"] >= 1
    # Every message once in the server's log, every ack names its own event.
    texts = [e["text"] for e in server.room_events("room")]
    assert sorted(texts) == sorted(
        [f"alice {i}" for i in range(60)] + [f"bob {i}" for i in range(60)]
    )
    assert len({ack.event_id for ack in acks}) == 60
    # Delivered once each, in the server's order, no gap: the cursor went with it.
    assert seen.texts("room") == texts
    assert seen.gaps == []
    moved = [
        s for s in seen.states if isinstance(s, StateChanged) and s.new is ConnectionState.CONNECTED
    ]
    assert [s.endpoint for s in moved] == [endpoint_label(urls[0]), endpoint_label(urls[1])]


async def test_a_dead_first_url_costs_one_attempt(
    server: FakeServer,
    proxies: tuple[FaultProxy, FaultProxy],
    transport_name: str,
) -> None:
    a, b = proxies
    await a.down()  # connection refused
    urls = [url_of(a, transport_name), url_of(b, transport_name)]
    # A backoff so slow that only an immediate move to B connects within the test.
    slow = Backoff(base=30.0, cap=60.0, jitter="equal", stable_after=0.2)
    client = Client(
        urls,
        url_order="given",
        token=server.issue_token("alice"),
        transport=transport_name,  # type: ignore[arg-type]
        backoff=slow,
    )
    seen = Recorder(client)
    async with asyncio.timeout(WAIT):
        await client.connect()
    try:
        assert client.stats()["attempts"] == 2
        assert client.endpoint == endpoint_label(urls[1])
        states = [(s.new, s.delay, s.endpoint) for s in seen.states]
        assert states[:2] == [
            (ConnectionState.CONNECTING, None, endpoint_label(urls[0])),
            (ConnectionState.RECONNECTING, 0.0, endpoint_label(urls[1])),
        ]
        assert states[-1] == (ConnectionState.CONNECTED, None, endpoint_label(urls[1]))
    finally:
        await client.close()


async def test_every_url_dead_still_backs_off(
    proxies: tuple[FaultProxy, FaultProxy], transport_name: str
) -> None:
    a, b = proxies
    await a.down()
    await b.down()
    backoff = Backoff(base=0.05, cap=0.2, jitter="none")
    client = Client(
        [url_of(a, transport_name), url_of(b, transport_name)],
        token="t",
        transport=transport_name,  # type: ignore[arg-type]
        backoff=backoff,
    )
    delays: list[float] = []
    client.on(
        "state",
        lambda s: delays.append(s.delay) if s.new is ConnectionState.RECONNECTING else None,
    )
    await client.connect(wait=False)
    try:
        # Rounds of two attempts (the second at once), each followed by the backoff:
        # 0.05, 0.1, 0.2, 0.2 ... s. Two rounds take at least 0.15 s.
        await wait_until(lambda: len(delays) >= 8, timeout=WAIT)
    finally:
        await client.close()
    assert delays[:8] == [0.0, 0.05, 0.0, 0.1, 0.0, 0.2, 0.0, 0.2]
    assert client.stats()["failovers"] >= 7


@pytest.fixture
async def second_server() -> AsyncIterator[FakeServer]:
    async with FakeServer(**TEST_SERVER) as srv:
        yield srv


async def test_a_drain_moves_the_client_at_once_and_every_message_is_acked_once(
    server: FakeServer, second_server: FakeServer, transport_name: str
) -> None:
    a, b = server, second_server  # two independent servers (same secret)
    urls = [(s.sio_url if transport_name == "socketio" else s.ws_url) for s in (a, b)]
    # Base 4 s, equal jitter: any backoff would wait at least 2 s.
    slow = Backoff(base=4.0, cap=8.0, jitter="equal", stable_after=0.1)
    client = Client(
        urls,
        url_order="given",
        token=a.issue_token("alice"),
        transport=transport_name,  # type: ignore[arg-type]
        backoff=slow,
        ack_timeout=2.0,
    )
    seen = Recorder(client)
    loop = asyncio.get_running_loop()
    on_b: list[float] = []
    client.on(
        "state",
        lambda s: (
            on_b.append(loop.time())
            if s.new is ConnectionState.CONNECTED and s.endpoint == endpoint_label(urls[1])
            else None
        ),
    )
    async with client:
        await client.join("room")
        up_since = loop.time()
        first = [await client.send("room", f"m{i}") for i in range(30)]
        # A drain is told apart from a crash on a link that was stable: stable_after,
        # and at least base / 10 (a crash would then be retried on A first).
        stable = max(slow.stable_after, slow.base / 10)
        await wait_until(lambda: loop.time() - up_since > stable, timeout=WAIT)
        futures = [asyncio.create_task(client.send("room", f"m{i}")) for i in range(30, 80)]
        # Drain while the second half is on the wire: some are in flight to A.
        await wait_until(lambda: client.stats()["sent"] >= 40, timeout=WAIT)
        drained_at = loop.time()
        drain = asyncio.create_task(a.drain(timeout=5.0, retry_after=1.0))
        acks = first + await asyncio.wait_for(asyncio.gather(*futures), WAIT)
        assert await drain is True
        await wait_until(lambda: bool(on_b), timeout=WAIT)
        # On B well within the least backoff this client could wait (base / 2).
        assert on_b[0] - drained_at < slow.base / 2
        reconnecting = [s for s in seen.states if s.new is ConnectionState.RECONNECTING]
        assert [s.delay for s in reconnecting] == [0.0]  # at once, no backoff
        assert client.stats()["drains"] == 1 and client.stats()["failovers"] == 1
        assert client.stats()["attempts"] == 2  # A, then B: not A again
    on_a_ids = [e["messageId"] for e in a.room_events("room")]
    on_b_ids = [e["messageId"] for e in b.room_events("room")]
    assert sorted(on_a_ids + on_b_ids) == sorted(ack.message_id for ack in acks)
    assert len(set(on_a_ids + on_b_ids)) == 80  # each message stored once, on one of them
    assert not any(ack.duplicate for ack in acks)


async def test_urls_with_a_token_in_the_query_stay_out_of_logs_and_events(
    transport_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeServer(**TEST_SERVER, allow_query_token=True) as srv:
        upstream = (srv.host, srv.port)
        async with FaultProxy(upstream=upstream) as a, FaultProxy(upstream=upstream) as b:
            await a.down()
            token = srv.issue_token("alice")
            urls = [f"{url_of(p, transport_name)}?token={token}" for p in (a, b)]
            client = Client(
                urls,
                url_order="given",
                transport=transport_name,  # type: ignore[arg-type]
                backoff=FAST,
            )
            states: list[StateChanged] = []
            client.on("state", states.append)
            with caplog.at_level("DEBUG"):
                async with client:
                    await client.join("room")
                    await client.send("room", "hi")
                    shown = [client.endpoint, repr(client), str(client.stats())]
    assert client.stats()["failovers"] == 1
    signature = token.rsplit(".", 1)[1]
    for text in [caplog.text, *shown, *map(repr, states)]:
        assert signature not in text
        assert token[:20] not in text
    assert {s.endpoint for s in states} == {endpoint_label(u) for u in urls}


async def test_with_one_url_a_drain_is_a_short_capped_wait_and_back(
    server: FakeServer, transport_name: str
) -> None:
    client = Client(
        server.sio_url if transport_name == "socketio" else server.ws_url,
        token=server.issue_token("alice"),
        transport=transport_name,  # type: ignore[arg-type]
        backoff=Backoff(base=4.0, cap=8.0, first_delay=0.01, stable_after=0.1),
        max_server_delay=0.3,  # the server's hint below is cut to this
    )
    seen = Recorder(client)
    loop = asyncio.get_running_loop()
    async with client:
        await client.join("room")
        up_since = loop.time()
        await wait_until(lambda: loop.time() - up_since > 0.45, timeout=WAIT)  # stable
        await server.close_all(1012, "retryAfter=3600")
        await wait_until(lambda: client.stats()["reconnects"] == 1, timeout=WAIT)
        await client.wait_for(ConnectionState.CONNECTED, timeout=WAIT)
        ack = await client.send("room", "back")
        assert ack.event_id == 1
        assert client.stats()["drains"] == 1 and client.stats()["failovers"] == 0
        assert client.stats()["attempts"] == 2
    delays = [s.delay for s in seen.states if s.new is ConnectionState.RECONNECTING]
    assert delays == [0.3]
