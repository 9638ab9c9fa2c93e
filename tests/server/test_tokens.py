"""Token lifetime during a session: token:expiring, token:refresh, the 4002 close."""

from __future__ import annotations

import time

from fake_server import FakeServer
from rtclient.testing import wait_until

from .conftest import Connect, MakeServer
from .helpers import WAIT


async def test_token_expiring_sent_once_when_close(
    make_server: MakeServer, connect: Connect
) -> None:
    server = await make_server(token_warning=60.0)
    alice = await connect(server, "alice", ttl=30.0)
    warning = await alice.expect("token:expiring")
    assert 25.0 < warning["expiresIn"] <= 30.0
    assert warning["expiresAt"] > time.time()
    await alice.ok("token:refresh", {"token": server.issue_token("alice", ttl=3600.0)})
    await alice.silent("token:expiring")


async def test_token_expiring_fires_later_for_a_longer_token(
    make_server: MakeServer, connect: Connect
) -> None:
    server = await make_server(token_warning=1.0)
    alice = await connect(server, "alice", ttl=1.5)
    await alice.silent("token:expiring", within=0.2)
    warning = await alice.expect("token:expiring")
    assert warning["expiresIn"] <= 1.0


async def test_no_warning_for_a_long_token(server: FakeServer, connect: Connect) -> None:
    alice = await connect(server, "alice", ttl=3600.0)
    await alice.silent("token:expiring")


async def test_closed_4002_when_the_token_runs_out(
    make_server: MakeServer, connect: Connect
) -> None:
    server = await make_server()
    alice = await connect(server, "alice", ttl=0.5)
    started = time.monotonic()
    assert await alice.closed() == (4002, "TOKEN_EXPIRED")
    assert time.monotonic() - started >= 0.3
    await wait_until(lambda: server.connection_count() == 0)


async def test_refresh_extends_the_session(make_server: MakeServer, connect: Connect) -> None:
    server = await make_server()
    alice = await connect(server, "alice", ttl=0.8)
    old_exp = alice.welcome["expiresAt"]
    new_token = server.issue_token("alice", ttl=3600.0)
    ack = await alice.ok("token:refresh", {"token": new_token})
    assert ack["expiresAt"] > time.time() + 3000
    await wait_until(lambda: time.time() > old_exp + 0.3, timeout=WAIT)
    assert (await alice.ok("ping", {"ts": 1}))["ts"] == 1


async def test_refresh_for_another_user_is_refused(
    make_server: MakeServer, connect: Connect
) -> None:
    server = await make_server()
    alice = await connect(server, "alice", ttl=1.0)
    other = {"token": server.issue_token("mallory", ttl=3600.0)}
    assert await alice.fails("token:refresh", other) == "USER_MISMATCH"
    # The old token stays in force, and so does its expiry.
    assert await alice.closed() == (4002, "TOKEN_EXPIRED")


async def test_refresh_with_bad_tokens(make_server: MakeServer, connect: Connect) -> None:
    server = await make_server()
    alice = await connect(server, "alice")
    assert await alice.fails("token:refresh", {"token": "garbage"}) == "INVALID_TOKEN"
    expired = server.issue_token("alice", ttl=-5)
    assert await alice.fails("token:refresh", {"token": expired}) == "TOKEN_EXPIRED"
    assert (await alice.ok("ping", {"ts": 2}))["ts"] == 2
