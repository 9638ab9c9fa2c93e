"""The adapter interface's second example: NATS over WebSocket with JetStream.

A real nats-server 2.9 (Debian's ``nats-server``: JetStream on, a WebSocket listener,
a token) runs here; rtclient speaks NATS to it through the ``NatsJetStream`` adapter.
What it proves: acks (JetStream's PubAck, with the stream sequence; ``Nats-Msg-Id``
makes a resend after a lost ack a duplicate the stream drops) and resume positions (a
consumer from the stream sequence after the last event taken: nothing missed across
cuts). The publisher and the subscriber each reach the server through a FaultProxy
that cuts them off; counts are taken in the stream itself.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rtclient import Client, ConnectionState, Event, RequestRejected, Unauthorized
from rtclient.adapters import NatsJetStream
from rtclient.events import Gap
from rtclient.testing import FaultProxy, wait_until
from rtclient.testing.nats_server import NatsServer
from rtclient.testing.programs import ProgramMissing, in_ci

from .conftest import FAST

TOKEN = "nats-s3cret-7d1f0c2a"
TIMEOUT = 15.0
TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "aiohttp"])


@pytest.fixture
async def nats() -> AsyncIterator[NatsServer]:
    try:
        server = NatsServer(token=TOKEN)
    except ProgramMissing as exc:
        if in_ci():
            pytest.fail(f"CI=true and nats-server is missing: {exc}", pytrace=False)
        pytest.skip(f"nats-server not installed (Debian package nats-server): {exc}")
    async with server:
        created = await server.request(
            "$JS.API.STREAM.CREATE.CHAT", {"name": "CHAT", "subjects": ["chat.>"]}
        )
        assert created.get("did_create") is True, created
        yield server


def nats_client(url: str, transport: str, **options: Any) -> Client:
    options.setdefault("backoff", FAST)
    options.setdefault("ack_timeout", 2.0)
    options.setdefault("adapter", NatsJetStream("CHAT", "chat.>"))
    options.setdefault("token", TOKEN)
    return Client(url, protocol="generic", transport=transport, **options)  # type: ignore[arg-type]


@TRANSPORTS
async def test_publish_acknowledged_and_followed_through_cuts(
    nats: NatsServer, transport: str
) -> None:
    rng = random.Random(1717)
    total, cuts = 300, 10
    cut_at = sorted(rng.sample(range(10, total - 10), cuts))
    async with (
        FaultProxy(upstream=("127.0.0.1", nats.ws_port), seed=17) as to_publisher,
        FaultProxy(upstream=("127.0.0.1", nats.ws_port), seed=71) as to_subscriber,
    ):
        publisher = nats_client(to_publisher.url("ws", "/"), transport)
        subscriber = nats_client(to_subscriber.url("ws", "/"), transport)
        got: list[Event] = []
        subscriber.on("chat.lobby", got.append)
        acks: list[Any] = []
        async with subscriber, publisher:
            pending: list[asyncio.Task[Any]] = []
            for n in range(total):
                pending.append(asyncio.create_task(publisher.emit("chat.lobby", {"n": n})))
                if n in cut_at:
                    proxy, client = (
                        (to_publisher, publisher)
                        if rng.random() < 0.5
                        else (to_subscriber, subscriber)
                    )
                    before = client.stats()["reconnects"]
                    if client is publisher and rng.random() < 0.7:
                        # The stream stores what was published, its acks are lost:
                        # the resends after the cut are duplicates the stream drops.
                        with proxy.blackhole(direction="downstream"):
                            # every emit so far stored, the acks of those in flight lost
                            await wait_until(lambda k=n: _more(nats, k), TIMEOUT)
                            await proxy.down(reset=rng.random() < 0.5)
                    else:
                        await proxy.down(reset=rng.random() < 0.5)
                    await proxy.up()
                    await wait_until(
                        lambda c=client, b=before: (
                            c.stats()["reconnects"] == b + 1
                            and c.state is ConnectionState.CONNECTED
                        ),
                        TIMEOUT,
                    )
                if len(pending) >= 16:
                    acks += await asyncio.gather(*pending)
                    pending = []
            acks += await asyncio.gather(*pending)
            await wait_until(lambda: len(got) >= total, TIMEOUT)
            stats = publisher.stats(), subscriber.stats()
    stored = await nats.stream_messages("CHAT")
    numbers = [data["n"] for _, data in stored]
    lost = len(set(range(total)) - set(numbers))
    duplicated = len(numbers) - len(set(numbers))
    reordered = sum(1 for a, b in itertools.pairwise(numbers) if b < a)
    seen = [e.data["n"] for e in got]
    print(
        f"\n[{transport}] NATS JetStream: {total} emits, {cuts} cuts "
        f"(publisher reconnects={stats[0]['reconnects']}, resent={stats[0]['resent']}, "
        f"duplicate acks={sum(1 for a in acks if a.get('duplicate'))}, "
        f"subscriber reconnects={stats[1]['reconnects']}, "
        f"replayed overlap dropped={stats[1]['duplicates_dropped']}); in the stream: "
        f"lost={lost} duplicated={duplicated} reordered={reordered}; at the subscriber: "
        f"{len(seen)} events, lost={len(set(range(total)) - set(seen))} "
        f"duplicated={len(seen) - len(set(seen))} "
        f"reordered={sum(1 for a, b in itertools.pairwise(seen) if b < a)}"
    )
    assert (lost, duplicated, reordered) == (0, 0, 0)
    assert seen == list(range(total))  # nothing missed, nothing doubled, in order
    # Each emit's ack names where its message is stored (a resend's says "duplicate").
    assert [ack["seq"] for ack in acks] == [s for s, _ in stored]
    assert stats[0]["reconnects"] + stats[1]["reconnects"] == cuts


async def _more(nats: NatsServer, than: int) -> bool:
    return await nats.stream_count("CHAT") > than


@TRANSPORTS
async def test_a_resend_after_lost_acks_is_a_duplicate_the_stream_drops(
    nats: NatsServer, transport: str
) -> None:
    async with (
        FaultProxy(upstream=("127.0.0.1", nats.ws_port), seed=5) as proxy,
        nats_client(proxy.url("ws", "/"), transport) as publisher,
    ):
        with proxy.blackhole(direction="downstream"):  # the server's acks are lost
            emits = [asyncio.create_task(publisher.emit("chat.lobby", {"n": n})) for n in range(5)]
            await wait_until(lambda: _more(nats, 4), TIMEOUT)  # all five are stored
            await proxy.down()
        await proxy.up()
        acks = await asyncio.gather(*emits)
        stats = publisher.stats()
    assert [ack.get("duplicate") for ack in acks] == [True] * 5
    assert [ack["seq"] for ack in acks] == [1, 2, 3, 4, 5]
    assert await nats.stream_count("CHAT") == 5
    assert stats["resent"] == 5 and stats["reconnects"] == 1


@TRANSPORTS
async def test_a_publish_over_max_payload_fails_without_a_reconnect(
    nats: NatsServer, transport: str
) -> None:
    async with nats_client(nats.ws_url, transport) as client:
        with pytest.raises(RequestRejected, match="MESSAGE_TOO_LARGE"):
            await client.emit("chat.lobby", {"text": "x" * 1_100_000})
        assert await client.emit("chat.lobby", {"text": "small"}) == {"stream": "CHAT", "seq": 1}
        assert client.stats()["reconnects"] == 0


@TRANSPORTS
async def test_wrong_token_is_fatal(nats: NatsServer, transport: str) -> None:
    client = nats_client(nats.ws_url, transport, token="not-the-token-0000")
    with pytest.raises(Unauthorized, match="NATS refused"):
        await client.connect()
    assert client.state is ConnectionState.CLOSED


@TRANSPORTS
async def test_publish_to_a_subject_no_stream_takes_is_refused(
    nats: NatsServer, transport: str
) -> None:
    async with nats_client(nats.ws_url, transport) as client:
        with pytest.raises(Exception, match="NO_RESPONDERS"):
            await client.emit("nowhere.at.all", {"n": 1})
        ack = await client.emit("chat.lobby", {"n": 2})
    assert ack == {"stream": "CHAT", "seq": 1}


@TRANSPORTS
async def test_a_stream_recreated_while_cut_off_is_a_gap_and_its_events_arrive(
    nats: NatsServer, transport: str
) -> None:
    async with (
        FaultProxy(upstream=("127.0.0.1", nats.ws_port), seed=9) as proxy,
        nats_client(proxy.url("ws", "/"), transport) as subscriber,
        nats_client(nats.ws_url, transport) as publisher,
    ):
        got: list[Event] = []
        gaps: list[Gap] = []
        subscriber.on("chat.lobby", got.append)
        subscriber.on("gap", gaps.append)
        for n in range(5):
            await publisher.emit("chat.lobby", {"n": n})
        await wait_until(lambda: len(got) == 5, TIMEOUT)
        await proxy.down()
        await subscriber.wait_for(ConnectionState.RECONNECTING)
        deleted = await nats.request("$JS.API.STREAM.DELETE.CHAT", {})
        assert deleted.get("success") is True, deleted
        created = await nats.request(
            "$JS.API.STREAM.CREATE.CHAT", {"name": "CHAT", "subjects": ["chat.>"]}
        )
        assert created.get("did_create") is True, created
        acks = [await publisher.emit("chat.lobby", {"n": n}) for n in range(5, 8)]
        assert [ack["seq"] for ack in acks] == [1, 2, 3]  # the new stream's sequence
        await proxy.up()
        await wait_until(lambda: len(got) == 8, TIMEOUT)
        await publisher.emit("chat.lobby", {"n": 8})  # seq 4, below the old position too
        await wait_until(lambda: len(got) == 9, TIMEOUT)
        stats = subscriber.stats()
    assert [e.data["n"] for e in got] == list(range(9))
    assert len(gaps) == 1 and (gaps[0].room, gaps[0].reason) == ("CHAT", "reset")
    assert gaps[0].after_event_id == 5 and gaps[0].old_epoch != gaps[0].new_epoch
    assert stats["gaps"] == 1 and stats["duplicates_dropped"] == 0
