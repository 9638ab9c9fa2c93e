"""Token refresh of a Client over MemoryTransport, in virtual time: hours in milliseconds.

The hub checks ``exp`` against the same wall clock as the Client (:mod:`.harness`), so
token lifetimes, ``token:expiring`` warnings and 4002 closes all happen on the loop's
virtual clock.
"""

from __future__ import annotations

import pytest

from rtclient import ConnectionState

from .harness import gaps, harness, let_time_pass, now

pytestmark = pytest.mark.looptime


async def test_in_band_refresh_renews_the_token_ahead_of_exp_without_reconnecting() -> None:
    async with harness(token_warning=30.0) as h:
        issuer = h.provider(ttl=600.0)
        async with h.client(token=issuer, token_refresh_ahead=60.0, ping_interval=None) as client:
            await let_time_pass(3600)  # an hour of virtual time
            assert client.state is ConnectionState.CONNECTED
            stats = client.stats()
        # Connect at 0, then a refresh 60 s before every exp: every 540 s.
        assert [force for _, force in issuer.calls] == [False] + [True] * 6
        assert gaps(issuer.times) == [540.0] * 6
        assert stats["in_band_refreshes"] == 6
        assert h.hub.welcomed == 1  # never reconnected
        assert h.hub.counters["auth_failures"] == 0


async def test_the_servers_expiry_warning_pulls_the_refresh_forward_to_half_life() -> None:
    async with harness(token_warning=300.0) as h:
        issuer = h.provider(ttl=600.0)
        async with h.client(token=issuer, token_refresh_ahead=60.0, ping_interval=None):
            await let_time_pass(301)
        # token:expiring came at 300 s (exp - 300): the refresh moved from 540 s to the
        # half-life floor, 300 s, and not before it.
        assert issuer.times == pytest.approx([0.0, 300.0], abs=1e-3)


async def test_a_4002_close_fetches_a_fresh_token_and_reconnects_at_once() -> None:
    async with harness() as h:
        issuer = h.provider()
        async with h.client(token=issuer, ping_interval=None) as client:
            await let_time_pass(30)  # a stable connection
            expired = now()
            h.hub.hub.expire_tokens()
            await h.hub.wait_welcomed(2, timeout=60)
            assert client.stats()["token_refreshes"] == 1
        assert issuer.calls[-1][1] is True  # forced: not a cached token
        assert h.transport.attempt_times[-1] - expired < 0.01


async def test_without_a_fresher_token_the_4002_at_exp_brings_one() -> None:
    async with harness(token_warning=30.0, token_leeway=2.0) as h:
        issuer = h.provider(ttl=600.0, reuse=True)
        async with h.client(token=issuer, token_refresh_ahead=60.0, ping_interval=None) as c:
            await h.hub.wait_welcomed(2, timeout=700)
            assert c.stats()["in_band_refreshes"] == 0
            assert c.stats()["token_refreshes"] == 1
        # The in-band attempt at 540 s got the same token back and gave up; the server
        # closed with 4002 at exp + leeway and the reconnect fetched a new one.
        assert issuer.times == pytest.approx([0.0, 540.0, 602.0], abs=0.01)
        assert h.transport.attempt_times == pytest.approx([0.0, 602.0], abs=0.01)
