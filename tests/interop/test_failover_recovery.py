"""Socket.IO recovery kept across URLs: the reference server behind two proxies.

Two FaultProxy instances in front of ONE socket.io 4.8 server (connectionStateRecovery
on) are two URLs of a server that keeps sessions: when the link through A is cut and
A refuses, the client goes to B with the session's pid and offset, and the server
recovers it there — every event once, in order, no gap.
"""

from __future__ import annotations

from rtclient import ConnectionState, Event, Gap
from rtclient.endpoints import endpoint_label
from rtclient.testing import FaultProxy, wait_until

from .conftest import StartServer
from .test_reference_server import TIMEOUT, generic, subscriber


async def test_cutting_one_url_recovers_the_session_through_the_other(
    start_server: StartServer,
) -> None:
    server = await start_server(recovery=True, max_disconnection_ms=10_000, skip_middlewares=True)
    upstream = ("127.0.0.1", server.port)
    async with FaultProxy(upstream=upstream) as a, FaultProxy(upstream=upstream) as b:
        urls = [a.url("http"), b.url("http")]
        client = generic(urls, url_order="given")
        runs, hook = subscriber("erin", "feed")
        client.on_connect(hook)
        ticks: list[Event] = []
        gaps: list[Gap] = []
        fences: list[Event] = []
        client.on("tick", ticks.append)
        client.on("gap", gaps.append)
        client.on("fence", fences.append)
        async with client:
            await client.call("stream", {"n": 40, "every": 10, "room": "feed", "id": "s1"})
            await wait_until(lambda: len(ticks) >= 10, timeout=TIMEOUT)
            pid = client._session.resume.pid
            await a.down()  # cut the link through A; A refuses from now on
            await wait_until(lambda: client.stats()["reconnects"] == 1, timeout=TIMEOUT)
            await client.wait_for(ConnectionState.CONNECTED, timeout=TIMEOUT)
            assert client.endpoint == endpoint_label(urls[1])
            assert client.recovered is True
            assert client._session.resume.pid == pid  # the same session, on the other URL
            await wait_until(lambda: len(ticks) >= 40, timeout=TIMEOUT)
            await server.post("/control/emit", {"room": "feed", "event": "fence", "data": {}})
            await wait_until(lambda: len(fences) == 1, timeout=TIMEOUT)
            stats = client.stats()
    assert [t.data for t in ticks] == [{"stream": "s1", "seq": n} for n in range(1, 41)]
    assert gaps == []
    assert stats["failovers"] >= 1 and stats["endpoint"] == 1
    state = await server.state()
    assert [c["recovered"] for c in state["connections"]] == [False, True]
    assert runs == [1, 2]
