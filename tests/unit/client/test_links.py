"""Dead links, lost acks and recovery of a Client over MemoryTransport, in virtual time."""

from __future__ import annotations

import pytest

from rtclient import AckTimeout, Backoff, ConnectionState
from rtclient.errors import TransportError
from rtclient.testing import Inbox

from .harness import harness, let_time_pass, now

pytestmark = pytest.mark.looptime


async def test_heartbeat_drops_a_half_open_link_within_interval_plus_timeout() -> None:
    async with harness() as h:
        async with h.client(ping_interval=25.0, ping_timeout=20.0) as client:
            await let_time_pass(60)  # pongs come back: the link is fine
            assert client.stats()["dead_links"] == 0
            stalled = now()
            h.hub.link.stall()
            await client.wait_for(ConnectionState.RECONNECTING, timeout=300)
            noticed = now() - stalled
            assert 20.0 <= noticed <= 45.0  # ping_timeout .. ping_interval + ping_timeout
            assert client.stats()["dead_links"] == 1
            await client.wait_for(ConnectionState.CONNECTED, timeout=60)
        assert h.hub.welcomed == 2


async def test_a_message_sent_into_a_dead_link_is_delivered_once_after_reconnect() -> None:
    async with harness() as h:
        reader = h.client(token=h.provider("bob"), ping_interval=None)
        writer = h.client(ping_interval=5.0, ping_timeout=5.0)
        async with reader, writer:
            await reader.join("lobby")
            await writer.join("lobby")
            inbox = Inbox(reader)
            h.hub.link.stall()  # the writer's link: it connected last
            ack = await writer.send("lobby", "into the void", timeout=120)
            assert writer.stats()["dead_links"] == 1
            (event,) = await inbox.wait_for(1, timeout=60)
            assert event.text == "into the void"
            assert event.event_id == ack.event_id
            await let_time_pass(60)
            assert inbox.texts() == ["into the void"]


async def test_a_lost_ack_brings_a_retransmission_after_ack_timeout_deduplicated() -> None:
    async with harness() as h:
        reader = h.client(token=h.provider("bob"), ping_interval=None)
        writer = h.client(ack_timeout=10.0, ping_interval=None)
        async with reader, writer:
            await reader.join("lobby")
            await writer.join("lobby")
            inbox = Inbox(reader)
            h.hub.faults.lose_next_acks(1)
            sent = now()
            ack = await writer.send("lobby", "once", timeout=60)
            assert now() - sent == pytest.approx(10.0, abs=0.01)  # no RTT sample yet
            assert ack.duplicate  # the server had it: the resend was deduplicated
            assert writer.stats()["resent"] == 1
            await let_time_pass(30)
            assert inbox.texts() == ["once"]
        assert h.hub.welcomed == 2  # no reconnect was needed


async def test_send_timeout_raises_ack_timeout_and_the_message_stays_queued() -> None:
    async with harness() as h:
        reader = h.client(token=h.provider("bob"), ping_interval=None)
        writer = h.client(ack_timeout=10.0, ping_interval=None)
        async with reader, writer:
            await reader.join("lobby")
            await writer.join("lobby")
            inbox = Inbox(reader)
            link = h.hub.link
            link.stall()  # no heartbeat: nothing notices, acks never come
            started = now()
            with pytest.raises(AckTimeout):
                await writer.send("lobby", "patient", timeout=25.0)
            assert now() - started == pytest.approx(25.0, abs=0.01)
            link.abort()
            (event,) = await inbox.wait_for(1, timeout=60)
            assert event.text == "patient"
            await let_time_pass(30)
            assert inbox.texts() == ["patient"]


async def test_missed_events_are_synced_in_order_after_a_drop() -> None:
    async with harness() as h:
        speaker = h.client(token=h.provider("bob"), ping_interval=None)
        listener = h.client(
            ping_interval=None, backoff=Backoff(base=2.0, jitter="none", stable_after=10.0)
        )
        async with speaker, listener:
            await speaker.join("lobby")
            await listener.join("lobby")
            inbox = Inbox(listener)
            await speaker.send("lobby", "before")
            await inbox.wait_for(1)
            await let_time_pass(30)  # stable
            for _ in range(3):
                h.transport.refuse_next(TransportError("refused"))
            h.hub.link.abort()  # the listener's link: it connected last
            await listener.wait_for(ConnectionState.RECONNECTING)
            for n in range(5):
                await speaker.send("lobby", f"missed {n}")
            assert listener.state is ConnectionState.RECONNECTING
            await listener.wait_for(ConnectionState.CONNECTED, timeout=60)
            await speaker.send("lobby", "after")
            await inbox.wait_for(7, timeout=60)
            assert inbox.texts() == ["before", *(f"missed {n}" for n in range(5)), "after"]
            ids = [e.event_id for e in inbox.events]
            assert ids == sorted(ids) and len(set(ids)) == 7
            assert [e.replayed for e in inbox.events] == [False, *[True] * 5, False]
            assert not inbox.gaps
