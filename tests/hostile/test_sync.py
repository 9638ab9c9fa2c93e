"""Bad sync pages: out of order, holes, absurd ids, endless ``more``, refusals.

README ("Nothing received is lost or doubled"): after a reconnect the client fetches
what it missed page by page and delivers it in server order; duplicates are dropped
by event id; when the server cannot serve the gap, a ``gap`` event says so. So for
any page a server makes up, every missed event is delivered once, in order, or the
application is told with a ``gap`` — and the sync ends (no endless paging).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rtclient import Client, ConnectionState
from rtclient.testing import HostileConnection, HostileServer, Request, wait_until

from .conftest import ALL, MakeClient, Seen

ITEM_4 = "issue 13 item 4 (fixed on branch i13c)"


async def miss_three(srv: HostileServer, client: Client, seen: Seen) -> None:
    """Event 1 arrives live; 2, 3, 4 are logged while the link is down; reconnect."""
    conn = srv.connections[-1]
    await conn.emit("chat:message", srv.contract.append("lobby", "e1"))
    await wait_until(lambda: seen.ids() == [1], timeout=3)
    for n in (2, 3, 4):
        srv.contract.append("lobby", f"e{n}")
    conn.drop()
    await wait_until(lambda: len(srv.connections) == 2, timeout=3)
    await client.wait_for(ConnectionState.CONNECTED, timeout=3)


def page(srv: HostileServer, ids: list[int], **fields: Any) -> Callable[..., Any]:
    """A sync hook answering with the logged events ``ids``, in that order."""
    return lambda conn, req: conn.ack(req, srv.contract.page("lobby", ids, **fields))


def told(seen: Seen) -> bool:
    """Every missed event delivered once in order, or a gap reported."""
    return seen.ids() == [1, 2, 3, 4] or bool(seen.gaps)


@pytest.mark.parametrize("transport", ALL)
async def test_a_good_sync_delivers_everything_missed_in_order(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",), sync_page_size=2)
    await miss_three(srv, client, seen)
    await wait_until(lambda: seen.ids() == [1, 2, 3, 4], timeout=3)
    assert [m.replayed for m in seen.messages] == [False, True, True, True]
    assert srv.count("sync:messages") == 2  # pages of 2: [2, 3] then [4]


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize("ids", [[4, 2, 3], [4, 3, 2]], ids=["423", "432"])
async def test_out_of_order_page_loses_nothing_silently(
    srv: HostileServer, make_client: MakeClient, transport: str, ids: list[int]
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    srv.on("sync:messages", page(srv, ids), nth=1)
    await miss_three(srv, client, seen)
    await wait_until(lambda: told(seen), timeout=0.3)


@pytest.mark.parametrize("transport", ALL)
async def test_page_with_a_hole_loses_nothing_silently(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    srv.on("sync:messages", page(srv, [2, 4]), nth=1)
    await miss_three(srv, client, seen)
    await wait_until(lambda: told(seen), timeout=0.3)


@pytest.mark.parametrize("transport", ALL)
async def test_empty_page_that_says_more_loses_nothing_silently(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    srv.on("sync:messages", page(srv, [], more=True))
    await miss_three(srv, client, seen)
    await wait_until(lambda: told(seen), timeout=0.3)


@pytest.mark.parametrize("transport", ALL)
async def test_endless_more_with_the_same_page_ends(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    srv.on("sync:messages", page(srv, [2, 3, 4], more=True))
    await miss_three(srv, client, seen)
    await wait_until(lambda: seen.ids() == [1, 2, 3, 4], timeout=3)
    assert srv.count("sync:messages") == 2  # the repeat made no progress: live
    assert client.stats()["duplicates_dropped"] == 3


@pytest.mark.parametrize("transport", ALL)
async def test_page_replaying_old_events_does_not_double_them(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    srv.on("sync:messages", page(srv, [1, 1, 2, 3, 4]), nth=1)
    await miss_three(srv, client, seen)
    await wait_until(lambda: seen.ids() == [1, 2, 3, 4], timeout=3)
    assert client.stats()["duplicates_dropped"] >= 1  # the 1 the client already had
    assert "SYNC_INCONSISTENT" in seen.codes()  # the page repeated an id: reported


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize(
    "reply",
    [{"events": "nope"}, {"events": None}, {}],
    ids=["events-string", "events-null", "events-missing"],
)
async def test_sync_reply_without_an_events_list_is_malformed_and_the_room_goes_live(
    srv: HostileServer, make_client: MakeClient, transport: str, reply: dict[str, Any]
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    srv.on("sync:messages", lambda conn, req: conn.ack(req, {"success": True, **reply}), nth=1)
    await miss_three(srv, client, seen)
    await wait_until(lambda: "MALFORMED" in seen.codes(), timeout=3)
    assert client.state is ConnectionState.CONNECTED
    # The next live event shows the hole, and a second sync fills it.
    await srv.connections[-1].emit("chat:message", srv.contract.append("lobby", "e5"))
    await wait_until(lambda: seen.ids() == [1, 2, 3, 4, 5], timeout=3)


@pytest.mark.parametrize("transport", ALL)
async def test_page_with_junk_items_delivers_the_good_ones(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))

    async def junk(conn: HostileConnection, req: Request) -> None:
        good = srv.contract.logs["lobby"][1:]
        events = ["x", {"eventId": "2"}, None, *good]
        await conn.ack(req, roomId="lobby", epoch="e1", events=events, more=False)

    srv.on("sync:messages", junk, nth=1)
    await miss_three(srv, client, seen)
    await wait_until(lambda: seen.ids() == [1, 2, 3, 4], timeout=3)
    assert client.stats()["malformed"] == 1  # one report for the page, naming all three
    assert any("3 events" in str(e) for e in seen.errors)


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize("code", ["INTERNAL", "RATE_LIMIT"])
async def test_a_sync_refused_for_load_is_asked_again_and_fills_the_hole(
    srv: HostileServer, make_client: MakeClient, transport: str, code: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    srv.on("sync:messages", lambda conn, req: conn.reject(req, code, "busy"), nth=1)
    await miss_three(srv, client, seen)
    await wait_until(lambda: seen.ids() == [1, 2, 3, 4], timeout=3)
    assert client.stats()["syncs_deferred"] == 1
    assert "SYNC_FAILED" not in seen.codes() and not seen.gaps


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize("code", ["FORBIDDEN", "WHAT"])
async def test_refused_sync_is_reported_and_the_room_goes_live(
    srv: HostileServer, make_client: MakeClient, transport: str, code: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    srv.on("sync:messages", lambda conn, req: conn.reject(req, code, "no"), nth=1)
    await miss_three(srv, client, seen)
    await wait_until(lambda: "SYNC_FAILED" in seen.codes(), timeout=3)
    assert client.state is ConnectionState.CONNECTED
    assert (await client.send("lobby", "still usable")).event_id == 5


@pytest.mark.parametrize("transport", ALL)
async def test_truncated_page_in_a_new_epoch_is_a_gap(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    srv.on("sync:messages", page(srv, [3, 4], truncated=True, epoch="e2"), nth=1)
    await miss_three(srv, client, seen)
    await wait_until(lambda: len(seen.gaps) == 1, timeout=3)
    assert seen.gaps[0].reason == "epoch"


@pytest.mark.parametrize("transport", ALL)
async def test_one_absurd_event_id_does_not_blind_the_room(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    conn = srv.connections[-1]
    await conn.emit("chat:message", srv.contract.append("lobby", "e1"))
    absurd = {**srv.contract.logs["lobby"][0], "eventId": 2**64 - 1, "text": "absurd"}
    await conn.emit("chat:message", absurd)
    await wait_until(lambda: "IMPLAUSIBLE_EVENT" in seen.codes(), timeout=3)
    assert 2**64 - 1 not in seen.ids()  # past the head the sync reported: not believed
    conn.drop()  # the join ack after the reconnect says the head is 1
    await wait_until(lambda: len(srv.connections) == 2, timeout=3)
    await client.wait_for(ConnectionState.CONNECTED, timeout=3)
    await srv.connections[-1].emit("chat:message", srv.contract.append("lobby", "e2"))
    await wait_until(lambda: 2 in seen.ids(), timeout=0.3)
