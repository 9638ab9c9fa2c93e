"""Socket.IO servers that refuse the namespace connect (a CONNECT_ERROR packet).

Only a refusal of the credentials stops the client: our contract's messages, the usual
words of other servers (``not authorized``) and ``data.code`` 4001 / 401 / 403 ...
Any other refusal (a middleware's ``next(new Error("server busy"))``, a node refusing
during a drain) is retried under the backoff, counted (``connect_refusals``) and logged
with the server's text redacted; with several URLs the next one is tried at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from rtclient import (
    Backoff,
    Client,
    ConnectionState,
    ConnectRefused,
    Forbidden,
    Unauthorized,
)
from rtclient.testing import HostileConnection, HostileServer, wait_until

from .conftest import FAST, MakeClient


def refusing(times: int, message: str, data: object = None) -> Any:
    """A script: refuse the first ``times`` connects with ``message``, then welcome."""
    refused = 0

    async def script(conn: HostileConnection) -> None:
        nonlocal refused
        if refused < times:
            refused += 1
            await conn.connect_error(message, data)
            return
        await conn.welcome()

    return script


async def test_an_unknown_refusal_is_retried_counted_and_logged_redacted(
    srv: HostileServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rtclient")
    token = "hostile-test-token-0123456789"
    srv.script(refusing(3, f"server busy (token {token})"))
    client, seen = await make_client("socketio", connect=False, token=token)
    async with asyncio.timeout(5):
        await client.connect()
    assert client.state is ConnectionState.CONNECTED
    stats = client.stats()
    assert stats["connect_refusals"] == 3 and stats["attempts"] == 4
    assert len(srv.handshakes) == 4
    # Under the backoff: never a zero-delay retry (one URL).
    assert len(seen.delays()) == 3 and min(seen.delays()) >= FAST.base / 10
    errors = [s.error for s in seen.states if s.new is ConnectionState.RECONNECTING]
    assert all(isinstance(e, ConnectRefused) for e in errors)
    logged = [r.getMessage() for r in caplog.records if "refused the connection" in r.getMessage()]
    assert len(logged) == 3 and all("server busy" in text for text in logged)
    texts = logged + [str(e) for e in errors]
    assert not any(token in text for text in texts)


async def test_the_same_unknown_refusal_for_ever_backs_off_and_never_stops(
    srv: HostileServer, make_client: MakeClient
) -> None:
    srv.script(refusing(10_000, "server busy"))
    backoff = Backoff(base=0.01, cap=0.05, first_delay=0.01, stable_after=0.3, jitter="none")
    client, seen = await make_client("socketio", connect=False, backoff=backoff)
    connecting = asyncio.create_task(client.connect())
    await wait_until(lambda: client.stats()["connect_refusals"] >= 8, timeout=5)
    assert not connecting.done()  # still trying: not taken for a fatal refusal
    delays = seen.delays()
    assert all(d >= backoff.base / 10 for d in delays)
    assert delays[-1] == pytest.approx(backoff.cap)  # grew to the cap, no faster
    await client.close(flush=False)
    with pytest.raises(Exception):  # noqa: B017 - ended by close(): whatever it says
        await connecting


@pytest.mark.parametrize(
    ("message", "data", "error"),
    [
        ("INVALID_TOKEN", None, Unauthorized),
        ("AUTHENTICATION_REQUIRED", None, Unauthorized),
        ("not authorized", None, Unauthorized),
        ("Authentication error", None, Unauthorized),
        ("Invalid token", None, Unauthorized),
        ("refused", {"code": 4001}, Unauthorized),
        ("refused", {"code": 401}, Unauthorized),
        ("jwt malformed", {"code": "invalid_token", "type": "UnauthorizedError"}, Unauthorized),
        ("refused", {"code": "unauthorized"}, Unauthorized),
        ("USER_DISABLED", None, Forbidden),
        ("refused", {"code": 403}, Forbidden),
    ],
)
async def test_a_refusal_of_the_credentials_is_fatal_in_one_attempt(
    srv: HostileServer, make_client: MakeClient, message: str, data: object, error: type
) -> None:
    srv.script(refusing(10_000, message, data))
    client, _ = await make_client("socketio", connect=False, token="static-token")
    with pytest.raises(error):
        async with asyncio.timeout(3):
            await client.connect()
    assert len(srv.handshakes) == 1
    assert client.stats()["connect_refusals"] == 0


async def test_a_server_busy_hint_is_a_floor_for_the_delay(
    srv: HostileServer, make_client: MakeClient
) -> None:
    srv.script(refusing(1, "server busy", {"retryAfter": 0.3}))
    client, seen = await make_client("socketio", connect=False)
    async with asyncio.timeout(5):
        await client.connect()
    assert seen.delays() == [pytest.approx(0.3)]


async def test_an_unknown_refusal_moves_to_the_next_url_at_once() -> None:
    async with HostileServer() as busy, HostileServer() as ok:
        busy.script(refusing(10_000, "server busy"))
        client = Client(
            [busy.url_for("socketio"), ok.url_for("socketio")],
            url_order="given",
            transport="socketio",
            token="hostile-test-token",
            backoff=FAST,
            connect_timeout=1.0,
            ping_interval=None,
        )
        delays: list[float | None] = []
        client.on("state", lambda s: delays.append(s.delay) if s.delay is not None else None)
        async with asyncio.timeout(5):
            await client.connect()
        try:
            assert client.url == ok.url_for("socketio")
            stats = client.stats()
            assert stats["connect_refusals"] == 1 and stats["failovers"] == 1
            assert delays == [0.0]  # an untried URL: at once
            assert len(busy.handshakes) == 1 and len(ok.handshakes) == 1
        finally:
            await client.close(flush=False)
