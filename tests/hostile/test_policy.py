"""The reconnect policy against hostile servers: key rotation, rate limits, wrong servers.

README ("Reconnects are polite", "Tokens refresh themselves"): a rejected credential
is retried once with a fresh token when the provider can give one; rate limits hold
the send window and send each limited message once more; a server that will never
welcome us ends in a clear error; leaving ``async with`` (even cancelled) leaves no
task running.
"""

from __future__ import annotations

import asyncio

import pytest

from rtclient import Client, ConnectionState, ProtocolError
from rtclient.testing import HostileConnection, HostileServer, Request, wait_until

from .conftest import ALL, FAST, MakeClient


class RotatingTokens:
    """Hands out the old token until asked with ``force=True``."""

    def __init__(self) -> None:
        self.forced = 0

    async def get(self, *, force: bool = False) -> str:
        self.forced += force
        return "new-token" if self.forced else "old-token"


@pytest.mark.parametrize("transport", ALL)
async def test_4001_after_a_key_rotation_asks_the_provider_for_a_fresh_token(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    async def rotated(conn: HostileConnection) -> None:
        await conn.open()
        if conn.token == "old-token":
            await conn.close(4001, "INVALID_TOKEN")
            return
        await conn.welcome()

    srv.script(rotated)
    client, _ = await make_client(transport, connect=False, token=RotatingTokens())
    async with asyncio.timeout(3):
        await client.connect()
    assert [c.token for c in srv.connections] == ["old-token", "new-token"]


@pytest.mark.parametrize("transport", ALL)
async def test_4001_with_a_provider_that_has_nothing_fresher_is_fatal_at_once(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    async def refuse(conn: HostileConnection) -> None:
        await conn.open()
        await conn.close(4001, "INVALID_TOKEN")

    srv.script(refuse)
    client, _ = await make_client(transport, connect=False, token="static-token")
    with pytest.raises(Exception, match="INVALID_TOKEN"):
        async with asyncio.timeout(3):
            await client.connect()
    assert len(srv.handshakes) <= 2  # at most one retry with the same token


async def test_socketio_server_without_the_rooms_contract_says_use_generic(
    srv: HostileServer, make_client: MakeClient
) -> None:
    srv.script(lambda conn: conn.open())  # a plain Socket.IO server: no `connected`
    client, _ = await make_client("socketio", connect=False, connect_timeout=0.1)
    with pytest.raises(ProtocolError, match="generic"):
        async with asyncio.timeout(2):
            await client.connect()


@pytest.mark.parametrize("transport", ALL)
async def test_cancelled_async_with_leaves_no_task_running(
    srv: HostileServer, transport: str
) -> None:
    srv.refuse(503, times=None)
    before = asyncio.all_tasks()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            async with Client(srv.url_for(transport), transport=transport, backoff=FAST):
                pass
    attempts = len(srv.handshakes)

    def ours() -> set[asyncio.Task[object]]:
        return {t for t in asyncio.all_tasks() - before if "rtclient" in t.get_name()}

    try:
        await wait_until(lambda: not ours(), timeout=0.5)
    finally:
        for task in ours():
            task.cancel()
    assert len(srv.handshakes) == attempts  # and nobody knocks any more


def bucket(rate: float, burst: int) -> object:
    """A chat:send hook limiting like fake_server: a token bucket per server."""
    state = {"tokens": float(burst), "at": 0.0}

    async def hook(conn: HostileConnection, req: Request) -> None:
        now = asyncio.get_running_loop().time()
        if state["at"]:
            state["tokens"] = min(burst, state["tokens"] + (now - state["at"]) * rate)
        state["at"] = now
        if state["tokens"] < 1:
            wait = (1 - state["tokens"]) / rate
            await conn.reject(req, "RATE_LIMIT", "slow down", retryAfter=wait)
            return
        state["tokens"] -= 1
        await conn.default(req)

    return hook


@pytest.mark.parametrize("transport", ALL)
async def test_rate_limit_is_not_answered_with_a_resend_storm(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    messages = 100
    client, seen = await make_client(transport, rooms=("lobby",))
    srv.on("chat:send", bucket(rate=400.0, burst=10))  # type: ignore[arg-type]
    sends = [client.send_nowait("lobby", f"m{i}") for i in range(messages)]
    await wait_until(lambda: len(seen.ids()) == messages, timeout=10)
    assert len(set(sends)) == messages
    assert srv.count("chat:send") <= 2 * messages  # each limited message once more
    assert client.state is ConnectionState.CONNECTED
