"""Token lifetime during a session: token:expiring, token:refresh, the 4002 close."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from fake_server.auth import TokenAuthority
from fake_server.config import ServerConfig
from fake_server.faults import FaultState
from fake_server.hub import Hub
from fake_server.stats import Counters
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


class _Clock:
    """Virtual time for the hub: ``call_later`` timers fire when :meth:`advance` passes them."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.timers: list[tuple[float, Callable[[], None], list[bool]]] = []

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Cancel:
        cancelled = [False]
        self.timers.append((self.now + delay, callback, cancelled))
        return _Cancel(cancelled)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now and not t[2][0]]
        self.timers = [t for t in self.timers if t not in due]
        for _, callback, _ in sorted(due, key=lambda t: t[0]):
            callback()


class _Cancel:
    def __init__(self, flag: list[bool]) -> None:
        self._flag = flag

    def cancel(self) -> None:
        self._flag[0] = True


class _Recorder:
    """A Peer that records what the hub sends."""

    close_requested: tuple[int, str] | None = None

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    def send(self, envelope: dict[str, Any], *, tag: str | None = None) -> None:
        self.sent.append(envelope)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def abort(self) -> None:
        self.closed = (1006, "")

    def in_flight(self, tag: str) -> int:
        return 0

    def kinds(self) -> list[str]:
        return [str(e["type"]) for e in self.sent]


async def test_a_one_hour_token_is_warned_token_warning_before_it_expires() -> None:
    """In virtual time: no warning until ``exp - token_warning``, then exactly one."""
    clock = _Clock()
    config = ServerConfig(secret="s", token_warning=300.0, token_leeway=0.0)
    authority = TokenAuthority("s", leeway=0.0)
    hub = Hub(
        config,
        authority=authority,
        faults=FaultState(),
        counters=Counters(),
        scheduler=clock,
        clock=clock,
    )
    token = authority.issue("alice", now=clock.now, ttl=3600.0)
    peer = _Recorder()
    hub.attach(peer, authority.verify(token, now=clock.now))
    assert peer.kinds() == ["connected"]
    clock.advance(3600.0 - 300.0 - 0.5)
    assert peer.kinds() == ["connected"]
    clock.advance(1.0)
    assert peer.kinds() == ["connected", "token:expiring"]
    assert peer.sent[-1]["payload"]["expiresIn"] == pytest.approx(299.5)
    clock.advance(299.0)
    assert peer.kinds() == ["connected", "token:expiring"] and peer.closed is None
    clock.advance(1.0)
    assert peer.closed == (4002, "TOKEN_EXPIRED")


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
