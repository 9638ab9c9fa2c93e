"""One misconfigured node among several URLs, on every transport.

Two FakeServers with different secrets: the client's token is good on one and refused
(Unauthorized) by the other, as in a rolling deploy or a secret rotation that reached
one node. Given both URLs the client moves past the refusing node and connects to the
good one; given only refusing nodes it stops after one round with Unauthorized.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState, StateChanged
from rtclient.endpoints import endpoint_label
from rtclient.errors import Unauthorized

from .conftest import TEST_SERVER, Recorder

pytestmark = pytest.mark.parametrize("transport_name", ["websocket", "aiohttp", "socketio"])

WAIT = 10.0
OTHER = dict(TEST_SERVER, secret="rotated-secret-" + "fedcba9876543210" * 4)
"""The settings of a node whose secret is not the one the client's token was signed with."""

# A backoff so slow that a client that waited one round would not connect in the test:
# the move past a refusing node is immediate.
SLOW = Backoff(base=30.0, cap=60.0, jitter="equal", stable_after=0.2)


def url_of(server: FakeServer, transport_name: str) -> str:
    return server.sio_url if transport_name == "socketio" else server.ws_url


@pytest.fixture
async def misconfigured() -> AsyncIterator[FakeServer]:
    async with FakeServer(**OTHER) as srv:
        yield srv


async def test_a_refusing_node_is_passed_over_for_the_good_one(
    server: FakeServer, misconfigured: FakeServer, transport_name: str
) -> None:
    urls = [url_of(misconfigured, transport_name), url_of(server, transport_name)]
    client = Client(
        urls,
        url_order="given",
        token=server.issue_token("alice"),  # a fixed token: no refresh to try
        transport=transport_name,  # type: ignore[arg-type]
        backoff=SLOW,
    )
    seen = Recorder(client)
    async with client:
        await client.join("room")
        await client.send("room", "hello")
        assert client.endpoint == endpoint_label(urls[1])
        stats = client.stats()
        assert stats["refusals"] == 1 and stats["failovers"] == 1 and stats["attempts"] == 2
    assert [e["text"] for e in server.room_events("room")] == ["hello"]
    moved = [
        s
        for s in seen.states
        if isinstance(s, StateChanged) and s.new is ConnectionState.RECONNECTING
    ]
    # The refusal is reported: the state change names the next URL and carries why.
    assert len(moved) == 1 and moved[0].endpoint == endpoint_label(urls[1])
    assert moved[0].delay == 0.0 and moved[0].error is not None
    assert seen.errors == []


async def test_only_refusing_nodes_stop_the_client_after_one_round(
    misconfigured: FakeServer, transport_name: str
) -> None:
    async with FakeServer(**dict(OTHER, secret="third-secret-" + "0a1b2c3d4e5f6789" * 4)) as third:
        token = FakeServer(**TEST_SERVER).issue_token("alice")  # signed for neither node
        urls = [url_of(misconfigured, transport_name), url_of(third, transport_name)]
        fast = dataclasses.replace(SLOW, base=0.01, cap=0.05)  # a second round would be quick
        client = Client(
            urls,
            url_order="given",
            token=token,
            transport=transport_name,  # type: ignore[arg-type]
            backoff=fast,
        )
        with pytest.raises(Unauthorized):
            await client.connect()
        stats = client.stats()
        # One attempt on each node, the same typed error as with one URL.
        assert stats["attempts"] == 2 and stats["refusals"] == 1 and stats["failovers"] == 1
        assert client.state is ConnectionState.CLOSED


async def test_a_refreshable_provider_refreshes_once_then_moves_on(
    server: FakeServer, misconfigured: FakeServer, transport_name: str
) -> None:
    """The one forced refresh after a 4001 stays (the key may have rotated), on the
    same URL; the second refusal moves on to the good node instead of stopping."""
    asked: list[bool] = []

    def provider() -> str:
        asked.append(True)
        return server.issue_token("alice")

    urls = [url_of(misconfigured, transport_name), url_of(server, transport_name)]
    client = Client(
        urls,
        url_order="given",
        token=provider,
        transport=transport_name,  # type: ignore[arg-type]
        backoff=SLOW,
    )
    async with client:
        assert client.endpoint == endpoint_label(urls[1])
        stats = client.stats()
        assert stats["attempts"] == 3 and stats["token_refreshes"] == 1
        assert stats["refusals"] == 1 and stats["failovers"] == 1
