"""/health and the admin HTTP API (token minting and faults)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from fake_server import FakeServer
from rtclient.testing import wait_until

from .conftest import ADMIN, Connect, MakeServer
from .helpers import bearer, open_ws


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def admin(
    http: aiohttp.ClientSession,
    server: FakeServer,
    path: str,
    body: Any = None,
    token: str | None = ADMIN,
) -> tuple[int, Any]:
    headers = {} if token is None else bearer(token)
    async with http.post(f"{server.http_url}{path}", json=body, headers=headers) as resp:
        return resp.status, await resp.json() if resp.content_type == "application/json" else None


async def test_health(server: FakeServer, connect: Connect, http: aiohttp.ClientSession) -> None:
    alice = await connect(server, "alice")
    await alice.join("lobby")
    await alice.say("lobby", "x")
    async with http.get(f"{server.http_url}/health") as resp:
        assert resp.status == 200
        health = await resp.json()
    assert health["status"] == "ok"
    assert health["connections"] == 1 and health["rooms"] == 1 and health["storedEvents"] == 1
    assert health["uptime"] >= 0 and health["epoch"] == server.epoch
    assert health["latency"] == {"p50": None, "p95": None, "samples": 0}
    counters = health["counters"]
    for name in (
        "handshakes",
        "auth_failures",
        "connections_opened",
        "connections_closed",
        "messages_committed",
        "duplicates",
        "bad_requests",
        "rate_limited",
        "acks_lost",
        "events_duplicated",
        "syncs",
    ):
        assert isinstance(counters[name], int)
    assert counters["messages_committed"] == 1 and counters["connections_opened"] == 1


async def test_admin_disabled_without_admin_token(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    server = await make_server(admin_token=None)
    assert (await admin(http, server, "/admin/token", {"userId": "a"}))[0] == 404
    assert (await admin(http, server, "/admin/faults/pause"))[0] == 404


@pytest.mark.parametrize("token", [None, "wrong", ADMIN + "x", ""])
async def test_admin_wrong_credentials(
    server: FakeServer, http: aiohttp.ClientSession, token: str | None
) -> None:
    assert (await admin(http, server, "/admin/token", {"userId": "a"}, token=token))[0] == 401
    assert (await admin(http, server, "/admin/faults/pause", token=token))[0] == 401
    assert not server._faults.paused


async def test_admin_mints_tokens(server: FakeServer, http: aiohttp.ClientSession) -> None:
    status, body = await admin(
        http, server, "/admin/token", {"userId": "root", "ttl": 60, "roles": ["admin"]}
    )
    assert status == 200
    client = await open_ws(server.ws_url, bearer(body["token"]))
    assert (await client.expect("connected"))["userId"] == "root"
    assert (await client.join("admin:ops"))["members"] == ["root"]
    await client.ws.close()
    assert (await admin(http, server, "/admin/token", {"ttl": 60}))[0] == 400
    assert (await admin(http, server, "/admin/token", {"userId": "a", "roles": "x"}))[0] == 400


async def test_admin_faults(
    server: FakeServer, connect: Connect, http: aiohttp.ClientSession
) -> None:
    alice = await connect(server, "alice")
    assert await admin(http, server, "/admin/faults/close_all", {"code": 1012}) == (
        200,
        {"ok": True, "fault": "close_all"},
    )
    assert (await alice.closed())[0] == 1012
    alice = await connect(server, "alice")
    await alice.join("lobby")
    assert (await admin(http, server, "/admin/faults/lose_next_acks", {"n": 1}))[0] == 200
    await alice.send({"type": "chat:send", "id": "m", "payload": {"roomId": "lobby", "text": "a"}})
    await alice.expect("chat:message")
    await alice.silent("ack")
    assert (await admin(http, server, "/admin/faults/duplicate_next_events", {"n": 1}))[0] == 200
    assert (await admin(http, server, "/admin/faults/set_latency", {"ms": 5}))[0] == 200
    assert server._faults.latency == 0.005
    assert (await admin(http, server, "/admin/faults/set_latency", {"ms": 0}))[0] == 200
    assert (await admin(http, server, "/admin/faults/pause"))[0] == 200
    assert server._faults.paused
    assert (await admin(http, server, "/admin/faults/resume", {}))[0] == 200
    assert not server._faults.paused
    body = {"n": 1, "status": 503, "retryAfter": 1.5}
    assert (await admin(http, server, "/admin/faults/reject_handshakes", body))[0] == 200
    with pytest.raises(Exception, match="503"):
        await open_ws(server.ws_url, bearer(server.issue_token("x")))
    assert (await admin(http, server, "/admin/faults/expire_tokens"))[0] == 200
    assert (await alice.closed())[0] == 4002
    alice = await connect(server, "alice")
    assert (await admin(http, server, "/admin/faults/drop_connections"))[0] == 200
    assert await alice.closed() == (None, "")


async def test_admin_restart_answers_202_first(
    server: FakeServer, connect: Connect, http: aiohttp.ClientSession
) -> None:
    alice = await connect(server, "alice")
    epoch = server.epoch
    status, _ = await admin(
        http, server, "/admin/faults/restart", {"downtime": 0.05, "keepLog": False}
    )
    assert status == 202
    assert (await alice.closed())[0] == 1012
    await wait_until(lambda: server.epoch != epoch)
    await wait_until(lambda: not server._tasks)
    assert (await connect(server, "alice")).welcome["epoch"] == server.epoch


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/faults/lose_next_acks", {"n": -1}),
        ("/admin/faults/lose_next_acks", {"n": "2"}),
        ("/admin/faults/set_latency", {}),
        ("/admin/faults/close_all", {"code": 12}),
        ("/admin/faults/reject_handshakes", {"n": 1, "status": 99}),
        ("/admin/faults/restart", {"keepLog": "no"}),
        ("/admin/faults/pause", [1]),
    ],
)
async def test_admin_fault_bad_arguments(
    server: FakeServer, http: aiohttp.ClientSession, path: str, body: Any
) -> None:
    status, reply = await admin(http, server, path, body)
    assert status == 400 and "error" in reply


async def test_admin_unknown_fault(server: FakeServer, http: aiohttp.ClientSession) -> None:
    assert (await admin(http, server, "/admin/faults/explode"))[0] == 404
