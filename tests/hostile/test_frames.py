"""Bad frames from a server that already welcomed us: counted, reported, survived.

README ("On the wire" and the transport contract): a frame that cannot be decoded, or
decodes to something that is not an envelope, is a typed ``error`` event
(``MALFORMED``) and counted in ``stats()["malformed"]``; the connection stays up and the
next good event is delivered, once.
"""

from __future__ import annotations

import json

import pytest

from rtclient import ConnectionState
from rtclient.testing import HostileServer, wait_until

from .conftest import ALL, RAW, MakeClient

RAW_JUNK = {
    "invalid-json": "{not json",
    "json-array": "[1, 2]",
    "type-not-string": '{"type": 5}',
    "payload-not-object": '{"type": "chat:message", "payload": "x"}',
    "event-id-string": '{"type": "chat:message", "payload": {"roomId": "lobby", "eventId": "7"}}',
    "room-id-number": '{"type": "chat:message", "payload": {"roomId": 7, "eventId": 1}}',
    "ack-without-id": '{"type": "ack", "payload": {"success": true}}',
    "ack-payload-list": '{"type": "ack", "id": "nope", "payload": [1]}',
    "utf8-replacement-soup": '{"type": "\\ud800", "payload": 3}',
}
SIO_JUNK = {
    "payload-string": '42["chat:message", "x"]',
    "event-name-number": "42[5]",
    "event-id-string": '42["chat:message", {"roomId": "lobby", "eventId": "7"}]',
    "event-id-float": '42["chat:message", {"roomId": "lobby", "eventId": 1.5}]',
}
# Undecodable Socket.IO packets: python-socketio raises on them inside engine.io's
# reader, which only logs; the transport reports each as MALFORMED (hostile finding H1).
SIO_UNDECODABLE = {
    "invalid-json": "42{not json",
    "packet-id-garbage": "4x",
    "empty-event": "42[]",
    # json raises RecursionError, not ValueError (the raw codec says "nested too deeply")
    "nested-too-deep": "42" + "[" * 100_000 + "]" * 100_000,
}


async def _junk_then_good(srv: HostileServer, frame: str | bytes) -> None:
    conn = srv.connections[-1]
    if isinstance(frame, bytes):
        await conn.send_bytes(frame)
    else:
        await conn.send_text(frame)
    await conn.emit("chat:message", srv.contract.append("lobby", "after the junk"))


@pytest.mark.parametrize("transport", RAW)
@pytest.mark.parametrize("frame", RAW_JUNK.values(), ids=RAW_JUNK.keys())
async def test_raw_junk_frame_is_malformed_and_survived(
    srv: HostileServer, make_client: MakeClient, transport: str, frame: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    await _junk_then_good(srv, frame)
    await wait_until(lambda: seen.ids() == [1], timeout=3)
    assert client.state is ConnectionState.CONNECTED
    assert client.stats()["malformed"] == 1
    assert seen.codes() == ["MALFORMED"]
    assert len(srv.handshakes) == 1  # no reconnect over it


@pytest.mark.parametrize("transport", RAW)
@pytest.mark.parametrize(
    "frame", [b"\x00\xff\xfe", b'{"type": "chat:message"}'], ids=["bin", "json"]
)
async def test_binary_frame_on_a_json_connection_is_malformed(
    srv: HostileServer, make_client: MakeClient, transport: str, frame: bytes
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    await _junk_then_good(srv, frame)
    await wait_until(lambda: seen.ids() == [1], timeout=3)
    assert client.stats()["malformed"] == 1
    assert seen.codes() == ["MALFORMED"]


@pytest.mark.parametrize("frame", SIO_JUNK.values(), ids=SIO_JUNK.keys())
async def test_socketio_junk_event_is_malformed_and_survived(
    srv: HostileServer, make_client: MakeClient, frame: str
) -> None:
    client, seen = await make_client("socketio", rooms=("lobby",))
    await _junk_then_good(srv, frame)
    await wait_until(lambda: seen.ids() == [1], timeout=3)
    assert client.state is ConnectionState.CONNECTED
    assert client.stats()["malformed"] == 1
    assert seen.codes() == ["MALFORMED"]


@pytest.mark.parametrize("frame", SIO_UNDECODABLE.values(), ids=SIO_UNDECODABLE.keys())
async def test_socketio_undecodable_packet_is_malformed(
    srv: HostileServer, make_client: MakeClient, frame: str
) -> None:
    client, seen = await make_client("socketio", rooms=("lobby",))
    await _junk_then_good(srv, frame)
    await wait_until(lambda: seen.ids() == [1], timeout=3)
    assert client.state is ConnectionState.CONNECTED
    assert client.stats()["malformed"] == 1


async def test_socketio_binary_packet_with_a_bad_attachment_is_malformed_and_forgotten(
    srv: HostileServer, make_client: MakeClient
) -> None:
    """A BINARY_EVENT whose placeholder names an attachment it did not send.

    python-socketio keeps the half-read packet in ``_binary_packet`` and would take
    every later message for one of its attachments; the transport must reset it (a
    python-socketio that renames that attribute fails here, not silently).
    """
    client, seen = await make_client("socketio", rooms=("lobby",))
    blobs: list[object] = []
    client.on("blob", blobs.append)
    conn = srv.connections[-1]
    await conn.send_text('451-["blob",{"data":{"_placeholder":true,"num":5}}]')
    await conn.send_bytes(b"\x01\x02")
    await conn.send_text('451-["blob",{"data":{"_placeholder":true,"num":0}}]')
    await conn.send_bytes(b"\x03\x04")  # a good one: attachments still work
    await conn.emit("chat:message", srv.contract.append("lobby", "after the junk"))
    await wait_until(lambda: seen.ids() == [1], timeout=3)
    assert client.stats()["malformed"] == 1
    assert [getattr(b, "data", None) for b in blobs] == [{"data": b"\x03\x04"}]
    assert client.state is ConnectionState.CONNECTED


@pytest.mark.parametrize("transport", ALL)
async def test_unknown_event_type_is_delivered_as_an_event_not_an_error(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    weird: list[object] = []
    client.on("weird:thing", weird.append)
    await srv.connections[-1].emit("weird:thing", {"x": 1})
    await srv.connections[-1].emit("chat:message", srv.contract.append("lobby", "next"))
    await wait_until(lambda: seen.ids() == [1], timeout=3)
    assert len(weird) == 1
    assert client.stats()["malformed"] == 0


@pytest.mark.parametrize("transport", ALL)
async def test_server_error_events_are_counted_and_reported(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    conn = srv.connections[-1]
    await conn.emit("error", {"code": "WHATEVER", "message": "m"})
    await conn.emit("error", {"code": ["not", "a", "string"]})
    await conn.emit("chat:message", srv.contract.append("lobby", "next"))
    await wait_until(lambda: seen.ids() == [1], timeout=3)
    assert seen.codes() == ["WHATEVER", "['not', 'a', 'string']"]
    assert client.stats()["server_errors"] == 2
    assert client.state is ConnectionState.CONNECTED


@pytest.mark.parametrize("transport", RAW)
async def test_invalid_utf8_text_frame_closes_1007_and_the_client_reconnects(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, _seen = await make_client(transport, rooms=("lobby",))
    ack_before = await client.send("lobby", "before")
    await srv.connections[-1].send_text(b'{"type": "\xff\xfe"}')
    await wait_until(lambda: len(srv.connections) == 2, timeout=3)
    await client.wait_for(ConnectionState.CONNECTED, timeout=3)
    ack_after = await client.send("lobby", "after")
    assert (ack_before.event_id, ack_after.event_id) == (1, 2)
    assert srv.count("chat:send") == 2


@pytest.mark.parametrize("transport", RAW)
async def test_frame_over_max_size_drops_the_connection_then_recovers(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    huge = {"type": "error", "payload": {"pad": "0" * (2 << 20)}}
    await srv.connections[-1].send_text(json.dumps(huge))
    await wait_until(lambda: len(srv.connections) == 2, timeout=3)
    await client.wait_for(ConnectionState.CONNECTED, timeout=3)
    srv.contract.append("lobby", "missed while the huge frame went by")
    ack = await client.send("lobby", "after")
    await wait_until(lambda: seen.ids() == [1, 2], timeout=3)
    assert ack.event_id == 2
    assert client.stats()["server_errors"] == 0  # the huge frame was never accepted
