"""Tokens refresh themselves, in band and on reconnect, and never show up in logs."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from fake_server import FakeServer
from rtclient import (
    Backoff,
    Client,
    ConnectionState,
    HttpTokenProvider,
    TokenProviderError,
)
from rtclient.testing import wait_until
from rtclient.tokens import StaticToken, token_times

from .conftest import SECRET, MakeClient, Recorder


async def test_short_tokens_are_refreshed_in_band_without_reconnecting(
    server: FakeServer, make_client: MakeClient
) -> None:
    issued = 0

    def provider() -> str:
        nonlocal issued
        issued += 1
        return server.issue_token("alice", ttl=0.5)  # renewed every 0.25 s

    alice = await make_client("alice", rooms=("lobby",), token=provider)
    bob = await make_client("bob", rooms=("lobby",))
    seen = Recorder(bob)
    before = server.counters["connections_opened"]
    acks = []
    i = 0
    async with asyncio.timeout(20):
        # Keep sending (each send waits for its ack) until the token was renewed four
        # times in band: a session of about five token lifetimes (1 to 2 s).
        while alice.stats()["in_band_refreshes"] < 4:
            acks.append(await alice.send("lobby", f"m{i}"))
            i += 1
    assert server.counters["connections_opened"] == before  # exactly one connection
    assert alice.stats()["reconnects"] == 0
    assert alice.stats()["in_band_refreshes"] >= 4
    # Every token the provider made went to the server (one may be on its way now).
    await wait_until(lambda: issued == alice.stats()["in_band_refreshes"] + 1)
    await wait_until(lambda: len(seen.messages) == i)
    assert seen.texts() == [f"m{k}" for k in range(i)]
    assert [a.event_id for a in acks] == list(range(1, i + 1))


async def test_http_token_provider_caches_until_near_expiry_and_forces_on_4002(
    server: FakeServer, make_client: MakeClient
) -> None:
    # FakeServer's admin endpoint mints tokens: a real HTTP token service.
    admin = "admin-secret-for-tokens"
    async with FakeServer(secret=SECRET, admin_token=admin) as issuer:
        provider = HttpTokenProvider(
            f"{issuer.http_url}/admin/token",
            json={"userId": "alice", "ttl": 3600},
            headers={"Authorization": f"Bearer {admin}"},
        )
        first = await provider.get()
        assert await provider.get() == first and provider.fetches == 1
        assert await provider.get(force=True) and provider.fetches == 2
        assert first not in repr(provider)
        client = await make_client("alice", rooms=("lobby",), token=provider)
        assert provider.fetches == 2  # the cached token was used
        await server.expire_tokens()
        await wait_until(lambda: client.stats()["token_refreshes"] == 1)
        await client.wait_for(ConnectionState.CONNECTED)
        assert provider.fetches == 3  # 4002 forced a fetch
        await client.close()
        assert provider._session is None  # the client closed the provider's HTTP session


async def test_http_token_provider_errors_are_typed_and_say_no_token() -> None:
    async with FakeServer(secret=SECRET, admin_token="right") as issuer:
        provider = HttpTokenProvider(
            f"{issuer.http_url}/admin/token",
            json={"userId": "alice"},
            headers={"Authorization": "Bearer wrong"},
        )
        with pytest.raises(TokenProviderError, match="HTTP 401"):
            await provider.get()
        await provider.aclose()
    port_closed = HttpTokenProvider(f"{issuer.http_url}/admin/token", timeout=1)
    with pytest.raises(TokenProviderError):
        await port_closed.get()
    await port_closed.aclose()


async def test_failing_provider_is_retried_with_backoff_and_reported(
    server: FakeServer, make_client: MakeClient
) -> None:
    failures = 2

    async def flaky() -> str:
        nonlocal failures
        if failures:
            failures -= 1
            raise aiohttp.ClientConnectionError("token service down")
        return server.issue_token("alice")

    client = await make_client("alice", connect=False, token=flaky)
    seen = Recorder(client)
    await client.connect()
    assert [e.code for e in seen.errors] == ["TOKEN_PROVIDER", "TOKEN_PROVIDER"]
    delays = [s.delay for s in seen.states if s.new is ConnectionState.RECONNECTING]
    assert len(delays) == 2 and all(d is not None and d >= 0 for d in delays)


async def test_expired_at_handshake_is_refreshed_once(
    server: FakeServer, make_client: MakeClient
) -> None:
    tokens = [server.issue_token("alice", ttl=-10), server.issue_token("alice")]
    client = await make_client("alice", connect=False, token=lambda: tokens.pop(0))
    await client.connect()
    assert client.stats()["token_refreshes"] == 1 and tokens == []


async def test_tokens_never_appear_in_logs_reprs_or_errors(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = server.issue_token("alice", ttl=1.2)
    issued = [token]
    bad = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.not-a-signature"
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        if calls > 1:
            issued.append(server.issue_token("alice", ttl=3600))
        return issued[-1]

    client = Client(
        server.ws_url,
        token=provider,
        backoff=Backoff(base=0.01, cap=0.1),
        ping_interval=0.05,
        ping_timeout=1.0,
    )
    async with client:
        await client.join("lobby")
        await client.send("lobby", "hello")
        await wait_until(lambda: client.stats()["in_band_refreshes"] >= 1)
        await server.expire_tokens()
        await wait_until(lambda: client.stats()["token_refreshes"] >= 1)
        await client.wait_for(ConnectionState.CONNECTED)
        texts = [repr(client), repr(StaticToken(token))]
    refused = Client(server.ws_url, token=bad, backoff=Backoff(base=0.01, cap=0.1))
    with pytest.raises(Exception) as info:
        await refused.connect()
    texts += [str(info.value), repr(info.value), repr(refused)]
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert any("Authorization" in t for t in texts)  # websockets did log the headers...
    assert len(issued) >= 3
    for secret in (bad, *issued, *(t.split(".")[2] for t in issued)):
        leaks = [t for t in texts if secret in t]
        assert not leaks, leaks[:3]  # ...but never a token


def test_token_times_reads_claims_without_verifying() -> None:
    import jwt

    token = jwt.encode({"sub": "a", "iat": 100, "exp": 160}, "k" * 32, algorithm="HS256")
    assert token_times(token) == (100.0, 160.0)
    assert token_times("garbage") == (None, None)
    assert token_times(None) == (None, None)
