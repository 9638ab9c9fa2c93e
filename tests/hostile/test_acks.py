"""Bad acks: unknown ids, doubles, malformed event ids, odd refusals, odd delays.

README ("Nothing sent is lost"): ``send`` resolves with the server's ack or raises a
typed error, never drops silently; an ack nobody waits for is ignored; a message whose
ack is unreadable or missing is sent again with the same id, and the server's dedupe
keeps one copy. RATE_LIMIT / INTERNAL refusals are retried after the (capped) delay.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from rtclient import ConnectionState, Forbidden, NotJoined, RequestRejected
from rtclient.testing import HostileConnection, HostileServer, Request, wait_until

from .conftest import ALL, MakeClient


def _stranger(conn: HostileConnection) -> Request:
    """A request the client never made (Socket.IO ack ids are integers)."""
    return Request(
        "chat:send", 999_999 if conn.kind == "socketio" else "not-a-request-of-yours", {}
    )


@pytest.mark.parametrize("transport", ALL)
async def test_ack_for_an_unknown_id_is_ignored(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))

    async def hook(conn: HostileConnection, req: Request) -> None:
        await conn.ack(_stranger(conn), eventId=99)
        await conn.default(req)

    srv.on("chat:send", hook)
    ack = await asyncio.wait_for(client.send("lobby", "mine"), 3)
    assert ack.event_id == 1
    assert seen.codes() == []
    assert client.stats()["acked"] == 1


@pytest.mark.parametrize("transport", ALL)
async def test_duplicate_ack_resolves_once(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))

    async def twice(conn: HostileConnection, req: Request) -> None:
        await conn.default(req)
        await conn.ack(req, eventId=77, duplicate=False)

    srv.on("chat:send", twice)
    first = await asyncio.wait_for(client.send("lobby", "one"), 3)
    second = await asyncio.wait_for(client.send("lobby", "two"), 3)
    assert (first.event_id, second.event_id) == (1, 2)
    await wait_until(lambda: seen.ids() == [1, 2], timeout=3)
    assert client.stats()["acked"] == 2
    assert seen.codes() == []


@pytest.mark.parametrize("transport", ALL)
async def test_duplicate_join_ack_is_ignored(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    async def twice(conn: HostileConnection, req: Request) -> None:
        await conn.default(req)
        await conn.ack(req, roomId="lobby", members="garbage", lastEventId="x")

    srv.on("room:join", twice)
    client, _ = await make_client(transport, rooms=("lobby",))
    assert (await asyncio.wait_for(client.send("lobby", "fine"), 3)).event_id == 1
    assert client.rooms == ["lobby"]


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize("event_id", ["x", 1.5, None], ids=["string", "float", "missing"])
async def test_success_ack_with_a_malformed_event_id_is_not_a_failure(
    srv: HostileServer, make_client: MakeClient, transport: str, event_id: object
) -> None:
    client, _ = await make_client(transport, rooms=("lobby",))

    async def odd(conn: HostileConnection, req: Request) -> None:
        ack = await conn.server.contract.commit(req)
        assert ack is not None
        await conn.ack(req, **{**ack, "eventId": event_id})

    srv.on("chat:send", odd, nth=1)
    await asyncio.wait_for(client.send("lobby", "committed"), 3)
    assert srv.count("chat:send") == 1


REFUSALS = {
    "odd-code": ({"code": "WEIRD_CODE", "message": "?"}, RequestRejected, "WEIRD_CODE"),
    "empty-code": ({"code": "", "message": ""}, RequestRejected, ""),
    "code-number": ({"code": 123}, RequestRejected, "123"),
    "error-string": ("just a string", RequestRejected, "ERROR"),
    "error-missing": (None, RequestRejected, "ERROR"),
    "forbidden": ({"code": "FORBIDDEN", "message": "no"}, Forbidden, None),
    "not-in-room": ({"code": "NOT_IN_ROOM", "message": "join"}, NotJoined, "NOT_IN_ROOM"),
}


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=REFUSALS.keys())
async def test_refusal_fails_that_send_only(
    srv: HostileServer,
    make_client: MakeClient,
    transport: str,
    refusal: tuple[object, type[Exception], str | None],
) -> None:
    error, kind, code = refusal
    client, _ = await make_client(transport, rooms=("lobby",))
    body: dict[str, object] = {"success": False}
    if error is not None:
        body["error"] = error
    srv.on("chat:send", lambda conn, req: conn.ack(req, body), nth=1)
    with pytest.raises(kind) as raised:
        await asyncio.wait_for(client.send("lobby", "refused"), 3)
    if code is not None:
        assert getattr(raised.value, "code", None) == code
    assert (await asyncio.wait_for(client.send("lobby", "next"), 3)).event_id == 1
    assert srv.count("chat:send") == 2  # the refused one was not resent
    assert client.state is ConnectionState.CONNECTED


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize(
    ("code", "retry_after"),
    [("RATE_LIMIT", -5), ("RATE_LIMIT", "soon"), ("INTERNAL", float("nan"))],
    ids=["neg", "str", "internal-nan"],
)
async def test_retryable_refusal_with_an_odd_retry_after_is_resent_once(
    srv: HostileServer, make_client: MakeClient, transport: str, code: str, retry_after: object
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    error: dict[str, object] = {"code": code, "message": "later"}
    if retry_after is not None:
        error["retryAfter"] = retry_after
    srv.on("chat:send", lambda conn, req: conn.reject(req, **error), nth=1)  # type: ignore[arg-type]
    ack = await asyncio.wait_for(client.send("lobby", "patience"), 3)
    assert (ack.event_id, ack.duplicate) == (1, False)
    assert srv.count("chat:send") == 2
    await wait_until(lambda: seen.ids() == [1], timeout=3)


@pytest.mark.parametrize("transport", ALL)
async def test_rate_limited_burst_is_resent_once_per_message(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    """Every first transmission of 20 messages is refused: 20 resends, not a storm."""
    client, seen = await make_client(transport, rooms=("lobby",))
    srv.on(
        "chat:send",
        lambda conn, req: conn.reject(req, "RATE_LIMIT", "slow down", retryAfter=0.05),
        nth=range(1, 21),
    )
    acks = await asyncio.wait_for(
        asyncio.gather(*(client.send("lobby", f"m{i}") for i in range(20))), 5
    )
    assert sorted(a.event_id for a in acks) == list(range(1, 21))
    await wait_until(lambda: len(seen.ids()) == 20, timeout=3)
    assert srv.count("chat:send") <= 40


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize("payload", [[1, 2], "ok", 7], ids=["list", "string", "number"])
async def test_unreadable_ack_means_resend_and_dedupe(
    srv: HostileServer, make_client: MakeClient, transport: str, payload: object
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",), ack_timeout=0.2)

    async def garbled(conn: HostileConnection, req: Request) -> None:
        await conn.server.contract.commit(req)
        if conn.kind == "socketio":
            await conn.send_text(f"43{req.id}[{json.dumps(payload)}]")
        else:
            await conn.send_json({"type": "ack", "id": req.id, "payload": payload})

    srv.on("chat:send", garbled, nth=1)
    ack = await asyncio.wait_for(client.send("lobby", "said twice, logged once"), 3)
    assert (ack.event_id, ack.duplicate) == (1, True)
    await wait_until(lambda: seen.ids() == [1], timeout=3)
    assert len(srv.contract.logs["lobby"]) == 1


@pytest.mark.parametrize("transport", ALL)
async def test_ack_that_never_comes_is_retransmitted_and_deduplicated(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",), ack_timeout=0.2)

    async def swallow(conn: HostileConnection, req: Request) -> None:
        await conn.server.contract.commit(req)  # committed, broadcast, never acked

    srv.on("chat:send", swallow, nth=[1, 2])
    ack = await asyncio.wait_for(client.send("lobby", "anyone there?"), 5)
    assert (ack.event_id, ack.duplicate) == (1, True)
    assert srv.count("chat:send") == 3
    assert client.stats()["resent"] == 2
    await wait_until(lambda: seen.ids() == [1], timeout=3)
    assert len(srv.connections) == 1
