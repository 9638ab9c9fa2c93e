"""Authentication at the handshake: header, first message, query token, failures."""

from __future__ import annotations

import logging
import time

import jwt
import pytest

from fake_server import FakeServer

from .conftest import SECRET, MakeServer
from .helpers import bearer, open_ws, unsigned_token


def claims(user: str = "alice", ttl: float = 60.0) -> dict[str, object]:
    now = time.time()
    return {"sub": user, "iat": now, "exp": now + ttl}


async def closed_with(server: FakeServer, headers: dict[str, str]) -> tuple[int | None, str]:
    client = await open_ws(server.ws_url, headers)
    return await client.closed()


async def test_header_token_gets_connected_with_welcome_fields(server: FakeServer) -> None:
    client = await open_ws(server.ws_url, bearer(server.issue_token("alice", roles=["x"])))
    welcome = await client.expect("connected")
    assert welcome["userId"] == "alice"
    assert welcome["clientId"].startswith("c-")
    assert welcome["epoch"] == server.epoch
    assert welcome["expiresAt"] > time.time()
    assert abs(welcome["serverTime"] - time.time()) < 5
    assert set(welcome["features"]) == {"token:refresh", "sync", "batch"}
    assert welcome["limits"] == {
        "maxMessageSize": 102400,
        "maxTextLength": 8000,
        "syncPageMax": 500,
    }
    await client.ws.close()


async def test_first_message_auth(server: FakeServer) -> None:
    client = await open_ws(server.ws_url)
    await client.send({"type": "auth", "payload": {"token": server.issue_token("bob")}})
    assert (await client.expect("connected"))["userId"] == "bob"
    await client.ws.close()


async def test_missing_token_closes_4001_after_auth_timeout(make_server: MakeServer) -> None:
    server = await make_server(auth_timeout=0.1)
    client = await open_ws(server.ws_url)
    assert await client.closed() == (4001, "AUTHENTICATION_REQUIRED")
    assert server.counters["auth_failures"] == 1


async def test_no_room_data_before_auth(server: FakeServer) -> None:
    client = await open_ws(server.ws_url)
    await client.send({"type": "room:join", "id": "1", "payload": {"roomId": "lobby"}})
    assert await client.closed() == (4001, "AUTHENTICATION_REQUIRED")
    assert client.backlog == []
    assert server.members("lobby") == []


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(jwt.encode(claims(), "another-secret-0123456789abcdefgh"), id="bad-signature"),
        pytest.param(jwt.encode(claims(), SECRET, algorithm="HS512"), id="hs512"),
        pytest.param(unsigned_token({"alg": "none", "typ": "JWT"}, claims(), b""), id="alg-none"),
        pytest.param(
            unsigned_token({"alg": "RS256", "typ": "JWT"}, claims(), b"\x01" * 256), id="rs256"
        ),
        pytest.param("not-a-jwt", id="garbage"),
        pytest.param(jwt.encode({"sub": "alice"}, SECRET), id="no-exp"),
        pytest.param(jwt.encode({"exp": time.time() + 60}, SECRET), id="no-sub"),
        pytest.param(jwt.encode({**claims(), "roles": "admin"}, SECRET), id="bad-roles"),
    ],
)
async def test_invalid_tokens_close_4001(server: FakeServer, token: str) -> None:
    assert await closed_with(server, bearer(token)) == (4001, "INVALID_TOKEN")
    assert server.connection_count() == 0


async def test_non_bearer_authorization_is_invalid(server: FakeServer) -> None:
    headers = {"Authorization": f"Basic {server.issue_token('alice')}"}
    assert await closed_with(server, headers) == (4001, "INVALID_TOKEN")


async def test_expired_token_closes_4002(server: FakeServer) -> None:
    token = server.issue_token("alice", ttl=-10)
    assert await closed_with(server, bearer(token)) == (4002, "TOKEN_EXPIRED")


async def test_leeway_accepts_a_just_expired_token(make_server: MakeServer) -> None:
    server = await make_server(token_leeway=2.0)
    client = await open_ws(server.ws_url, bearer(server.issue_token("alice", ttl=-1)))
    await client.expect("connected")
    await client.ws.close()


async def test_64k_token_in_first_message_is_refused(server: FakeServer) -> None:
    client = await open_ws(server.ws_url)
    await client.send({"type": "auth", "payload": {"token": "x" * 65536}})
    assert await client.closed() == (4001, "INVALID_TOKEN")


async def test_64k_token_in_header_is_refused_and_server_survives(server: FakeServer) -> None:
    assert await closed_with(server, bearer("x" * 65536)) == (4001, "INVALID_TOKEN")
    client = await open_ws(server.ws_url, bearer(server.issue_token("alice")))
    await client.expect("connected")
    await client.ws.close()


async def test_query_token_is_ignored_by_default(make_server: MakeServer) -> None:
    server = await make_server(auth_timeout=0.1)
    client = await open_ws(f"{server.ws_url}?token={server.issue_token('alice')}")
    assert await client.closed() == (4001, "AUTHENTICATION_REQUIRED")


async def test_query_token_accepted_when_enabled(make_server: MakeServer) -> None:
    server = await make_server(allow_query_token=True)
    client = await open_ws(f"{server.ws_url}?token={server.issue_token('alice')}")
    assert (await client.expect("connected"))["userId"] == "alice"
    await client.ws.close()


async def test_tokens_never_logged(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await make_server(allow_query_token=True)
    good = server.issue_token("alice")
    bad = jwt.encode(claims(), "another-secret-0123456789abcdefgh")
    client = await open_ws(f"{server.ws_url}?token={good}")
    await client.expect("connected")
    await client.ws.close()
    assert await closed_with(server, bearer(bad)) == (4001, "INVALID_TOKEN")
    await server.stop()
    # Server-side records only: the websockets client logs its own request headers.
    text = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith("websockets")
    )
    assert "alice" in text
    for secret in (good, bad, SECRET, good.split(".")[2], bad.split(".")[2]):
        assert secret not in text
    assert SECRET not in repr(server.config)
    assert "admin-token" not in repr(server.config)
