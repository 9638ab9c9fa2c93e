"""Drains from servers that say so in other ways than a clean close 1012.

A ``server:draining`` notice makes however the connection then ends a drain (a
reset, a bare disconnect: the code can be lost); a server that welcomes and says 1012
every time gets no free moves for ever.
"""

from __future__ import annotations

import asyncio

import pytest

from rtclient import Backoff, Client, ClientClosed, ConnectionState, Forbidden, ProtocolError
from rtclient.testing import HostileServer, wait_until

from .conftest import ALL, Seen

# Base 2 s: a retry under the backoff waits at least 0.2 s; stable after 0.2 s.
STEADY = Backoff(base=2.0, cap=4.0, jitter="equal", first_delay=0.05, stable_after=0.2)


@pytest.mark.parametrize("transport", ALL)
async def test_a_notice_then_a_reset_is_a_drain(transport: str) -> None:
    async with HostileServer() as a, HostileServer() as b:
        client = Client(
            [a.url_for(transport), b.url_for(transport)],
            url_order="given",
            token="t",
            transport=transport,  # type: ignore[arg-type]
            backoff=STEADY,
            ping_interval=None,
        )
        seen = Seen(client)
        loop = asyncio.get_running_loop()
        async with client:
            await client.join("lobby")
            up_since = loop.time()
            await wait_until(lambda: loop.time() - up_since > 0.25, timeout=5)  # stable
            conn = a.connections[-1]
            await conn.emit("server:draining", {"retryAfter": 30})
            await wait_until(lambda: client.stats()["drain_notices"] == 1, timeout=5)
            conn.drop()  # no close code reaches the client
            await client.wait_for(ConnectionState.RECONNECTING, timeout=5)
            await client.wait_for(ConnectionState.CONNECTED, timeout=5)
            assert client.url == b.url_for(transport)
            assert client.stats()["drains"] == 1
            assert client.stats()["attempts"] == 2  # not back to A first
            assert len(a.handshakes) == 1
        assert seen.delays()[0] == 0.0


@pytest.mark.parametrize("transport", ALL)
async def test_a_cluster_that_welcomes_and_drains_every_time_meets_the_backoff(
    transport: str,
) -> None:
    async def drain_at_once(conn: object) -> None:
        await conn.welcome()  # type: ignore[attr-defined]
        await conn.close(1012, "retryAfter=0")  # type: ignore[attr-defined]

    async with HostileServer() as a, HostileServer() as b:
        for srv in (a, b):
            srv.script(drain_at_once)
        client = Client(
            [a.url_for(transport), b.url_for(transport)],
            token="t",
            transport=transport,  # type: ignore[arg-type]
            backoff=Backoff(base=0.05, cap=0.2, jitter="none"),
            ping_interval=None,
        )
        seen = Seen(client)
        await client.connect(wait=False)
        try:
            await wait_until(lambda: len(seen.delays()) >= 6, timeout=5)
        finally:
            await client.close()
        # Moves between the two at once, then the backoff; never a loop.
        assert seen.delays()[:6] == [0.0, 0.05, 0.0, 0.1, 0.0, 0.2]


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize(
    "close",
    [(4003, "FORBIDDEN", Forbidden), (1002, "protocol error", ProtocolError)],
    ids=["4003", "1002"],
)
async def test_a_notice_does_not_turn_a_fatal_close_into_a_drain(
    transport: str, close: tuple[int, str, type[Exception]]
) -> None:
    """``server:draining``, then a close that is fatal on its own: a refusal, not a drain.

    The notice says how a link that merely *ends* is read (a reset, a bare disconnect);
    it does not make a server's explicit verdict (forbidden, a protocol violation) a
    drain, so a server cannot dodge a stop by announcing a drain first: with several
    URLs the refusal moves on as refusals do, and when B refuses too the client stops
    (a drain never stops it).
    """
    code, reason, error = close

    async def refuse(conn: object) -> None:
        # Welcomed, then the verdict: the same close as A's on every transport (on
        # Socket.IO a refusal before the namespace opens is a CONNECT_ERROR instead).
        await conn.welcome()  # type: ignore[attr-defined]
        await conn.close(code, reason)  # type: ignore[attr-defined]

    async with HostileServer() as a, HostileServer() as b:
        b.script(refuse)
        client = Client(
            [a.url_for(transport), b.url_for(transport)],
            url_order="given",
            token="t",
            transport=transport,  # type: ignore[arg-type]
            backoff=STEADY,
            ping_interval=None,
        )
        async with client:
            await client.join("lobby")
            conn = a.connections[-1]
            await conn.emit("server:draining", {"retryAfter": 30})
            await wait_until(lambda: client.stats()["drain_notices"] == 1, timeout=5)
            await conn.close(code, reason)
            await client.wait_for(ConnectionState.CLOSED, timeout=5)
            with pytest.raises(ClientClosed) as closed:
                client.send_nowait("lobby", "after the end")
            assert isinstance(closed.value.__cause__, error)
            assert client.stats()["drains"] == 0
            assert client.stats()["refusals"] == 1  # A's verdict counted as a refusal
            assert len(b.handshakes) == 1  # B refused too: one round, then the stop
