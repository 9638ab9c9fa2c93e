"""The generic-mode adapters, sans-I/O: frames in, items out (no sockets, no clock)."""

from __future__ import annotations

import json

import pytest

from rtclient.adapters import (
    Acked,
    Closing,
    JsonEnvelope,
    NatsJetStream,
    Ready,
    Received,
    Refused,
    Reply,
    Reset,
)
from rtclient.adapters.nats_wire import Message, NatsReader, Op
from rtclient.errors import ProtocolError
from rtclient.redact import MASK, redact, remember_query_parameter
from rtclient.transports.adapted import url_with_token

# -- the seed's envelope -----------------------------------------------------------------


def test_seed_envelope_round_trip_and_greeting() -> None:
    adapter = JsonEnvelope()
    assert not adapter.acks and not adapter.resumes and adapter.greets
    assert adapter.opening("t", None) == []
    (frame,) = adapter.encode("join:room", {"roomId": "r"}, "id-1")
    assert json.loads(frame) == {"type": "join:room", "payload": {"roomId": "r"}}  # no id
    greeting = json.dumps({"type": "connected", "payload": {"clientId": "c1"}})
    assert adapter.decode(greeting) == [Ready(), Received("connected", {"clientId": "c1"})]
    message = json.dumps({"type": "room:message", "payload": {"text": "hi", "from": "bob"}})
    assert adapter.decode(message) == [Received("room:message", {"text": "hi", "from": "bob"})]
    assert adapter.decode('{"type": "bare"}') == [Received("bare", None)]


@pytest.mark.parametrize(
    "frame", ["not json", "[1, 2]", '{"payload": {}}', '{"type": 3}', "[" * 100_000]
)
def test_seed_envelope_unreadable_frames_are_protocol_errors(frame: str) -> None:
    with pytest.raises(ProtocolError):
        JsonEnvelope().decode(frame)


def test_seed_envelope_refuses_what_json_cannot_carry() -> None:
    with pytest.raises((TypeError, ValueError)):
        JsonEnvelope().encode("x", {"n": float("nan")}, None)
    with pytest.raises(TypeError):
        JsonEnvelope().encode("x", {b"k": 1}, None)


def test_envelope_with_acks_matches_them_by_id() -> None:
    adapter = JsonEnvelope(id_key="id", ack_type="ack", greeting=None)
    assert adapter.acks and not adapter.greets
    (frame,) = adapter.encode("say", {"text": "hi"}, "m1")
    assert json.loads(frame) == {"type": "say", "payload": {"text": "hi"}, "id": "m1"}
    assert adapter.decode('{"type": "ack", "id": "m1", "payload": {"seq": 4}}') == [
        Acked("m1", {"seq": 4})
    ]
    refused = '{"type": "ack", "id": "m2", "error": {"code": "FULL", "message": "no room"}}'
    assert adapter.decode(refused) == [Refused("m2", "FULL", "no room")]
    with pytest.raises(ProtocolError):
        adapter.decode('{"type": "ack", "payload": {}}')
    with pytest.raises(ValueError):
        JsonEnvelope(ack_type="ack")


# -- NATS --------------------------------------------------------------------------------


def test_nats_reader_reassembles_operations_split_across_frames() -> None:
    reader = NatsReader()
    data = b"PING\r\nMSG a.b 2 _R.x 5\r\nhello\r\nHMSG c 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n+OK\r\n"
    items = []
    for i in range(0, len(data), 3):  # three bytes per frame
        items += reader.feed(data[i : i + 3])
    assert items == [
        Op("PING"),
        Message("a.b", "2", "_R.x", b"", b"hello"),
        Message("c", "1", None, b"NATS/1.0\r\n\r\n", b"hi"),
        Op("+OK"),
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"BOGUS\r\n",
        b"MSG a 1 notanumber\r\n",
        b"MSG a 1 99999999999\r\n",
        b"MSG a 1 2\r\nabcd\r\n",  # the payload is not followed by CRLF
        b"HMSG a 1 9 5\r\n",  # headers larger than the whole
        b"X" * 5000,  # a line without an end, past the bound
    ],
)
def test_nats_reader_rejects_what_makes_no_sense(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        NatsReader().feed(data)


def _info(adapter: NatsJetStream, created: str, last: int) -> list[object]:
    """The adapter's reading of the stream info reply of its latest connection."""
    info = json.dumps({"created": created, "state": {"last_seq": last}}).encode()
    subject = adapter._info_reply
    return list(adapter.decode(f"MSG {subject} 3 {len(info)}\r\n".encode() + info + b"\r\n"))


def test_nats_adapter_opening_resumes_after_the_last_position() -> None:
    adapter = NatsJetStream("CHAT", "chat.>", start="all")
    (first,) = adapter.opening("tok", None)
    assert isinstance(first, bytes)
    assert b'"auth_token": "tok"' in first and b"$JS.API.STREAM.INFO.CHAT" in first
    (create,) = _info(adapter, "t1", 0)
    assert isinstance(create, Reply) and isinstance(create.frame, bytes)
    assert b'"deliver_policy": "all"' in create.frame and create.frame.endswith(b"PING\r\n")
    adapter.opening("tok", 41)
    (again,) = _info(adapter, "t1", 50)
    assert isinstance(again, Reply) and isinstance(again.frame, bytes)
    assert b'"by_start_sequence"' in again.frame and b'"opt_start_seq": 42' in again.frame
    assert adapter.decode(b'INFO {"max_payload": 1048576}\r\nPONG\r\n') == [Ready(1048448)]
    assert adapter.decode(b"PONG\r\n") == []  # only the first PONG is the acceptance


def test_nats_adapter_a_recreated_or_emptied_stream_is_a_reset() -> None:
    adapter = NatsJetStream("CHAT", "chat.>")
    adapter.opening(None, None)
    _info(adapter, "t1", 7)
    adapter.opening(None, 9)
    reset, create = _info(adapter, "t2", 12)  # deleted and recreated: another created time
    assert reset == Reset("CHAT", "t1", "t2")
    assert isinstance(create, Reply) and isinstance(create.frame, bytes)
    assert b'"deliver_policy": "all"' in create.frame  # the new stream from its start
    adapter.opening(None, 3)
    reset, _ = _info(adapter, "t2", 1)  # same stream, behind the position: data lost
    assert reset == Reset("CHAT", "t2", "t2")
    adapter.opening(None, 3)
    assert len(_info(adapter, "t2", 3)) == 1  # the same stream: only the consumer


def _deliveries(adapter: NatsJetStream, frame: bytes) -> list[object]:
    adapter.opening(None, None)
    return list(adapter.decode(frame))


def test_nats_adapter_reads_deliveries_acks_refusals_and_pings() -> None:
    adapter = NatsJetStream("CHAT")
    inbox = adapter._inbox
    v1 = b'MSG chat.x 2 $JS.ACK.CHAT.c1.1.17.3.1700000000.0 7\r\n{"n":1}\r\n'
    assert _deliveries(adapter, v1) == [Received("chat.x", {"n": 1}, 17)]
    v2 = b"MSG chat.y 2 $JS.ACK.dom.acc.CHAT.c1.1.18.4.1700000000.0.tok 2\r\nhi\r\n"
    assert adapter.decode(v2) == [Received("chat.y", "hi", 18)]
    ack = f'MSG {inbox}.r.m1 1 26\r\n{{"stream":"CHAT", "seq":5}}\r\n'.encode()
    assert adapter.decode(ack) == [Acked("m1", {"stream": "CHAT", "seq": 5})]
    none = f"HMSG {inbox}.r.m2 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n".encode()
    assert adapter.decode(none)[0] == Refused(
        "m2", "NO_RESPONDERS", "no stream or service takes this subject"
    )
    error = json.dumps({"error": {"code": 400, "err_code": 10060, "description": "bad"}})
    frame = f"MSG {inbox}.r.m3 1 {len(error)}\r\n{error}\r\n".encode()
    assert adapter.decode(frame) == [Refused("m3", "JETSTREAM_10060", "bad")]
    assert adapter.decode(b"PING\r\n") == [Reply(b"PONG\r\n")]
    (closing,) = adapter.decode(b"-ERR 'Authorization Violation'\r\n")
    assert isinstance(closing, Closing) and closing.code == 4001
    assert redact(closing.reason) == closing.reason  # nothing the redactor would mask
    (closing,) = adapter.decode(b"-ERR 'User Authentication Expired'\r\n")
    assert isinstance(closing, Closing) and closing.code == 4002
    (closing,) = adapter.decode(b"-ERR 'Authentication Timeout'\r\n")
    assert isinstance(closing, Closing) and closing.code == 1011  # retried
    assert adapter.decode(b"garbage\r\n") == [
        Closing(1011, "unreadable NATS stream: unknown NATS operation 'GARBAGE'")
    ]


def test_nats_adapter_encodes_a_publish_with_its_message_id() -> None:
    adapter = NatsJetStream("CHAT")
    (frame,) = adapter.encode("chat.x", {"n": 1}, "m-1")
    assert isinstance(frame, bytes)
    head, rest = frame.split(b"\r\n", 1)
    assert head.startswith(b"HPUB chat.x " + adapter._inbox.encode() + b".r.m-1 ")
    assert rest == b'NATS/1.0\r\nNats-Msg-Id: m-1\r\n\r\n{"n": 1}\r\n'
    assert adapter.encode("chat.x", b"raw", None) == [b"PUB chat.x 3\r\nraw\r\n"]
    for subject in ("", "a b", "chat.*", "a..b"):
        with pytest.raises(ValueError):
            adapter.encode(subject, {}, None)


def test_nats_consumer_on_new_resumes_from_the_stream_head_when_nothing_came() -> None:
    adapter = NatsJetStream("CHAT")  # start="new"
    adapter.opening(None, None)
    created = json.dumps({"delivered": {"consumer_seq": 0, "stream_seq": 9}})
    reply = adapter._create_reply
    assert adapter.decode(f"MSG {reply} 4 {len(created)}\r\n{created}\r\n".encode()) == []
    adapter.opening(None, None)  # a reconnect before any event was taken
    (create,) = _info(adapter, "t1", 9)
    assert isinstance(create, Reply) and b'"opt_start_seq": 10' in bytes(create.frame)


# -- the token in the URL ------------------------------------------------------------------


def test_url_with_token_replaces_the_parameter() -> None:
    assert url_with_token("ws://h/ws", "token", "a b") == "ws://h/ws?token=a+b"
    assert url_with_token("ws://h/?x=1&token=old", "token", "new") == "ws://h/?x=1&token=new"


def test_a_query_parameter_named_for_the_token_is_redacted() -> None:
    remember_query_parameter("access_key")
    text = "GET /ws?room=1&access_key=zz-unregistered-value HTTP/1.1"
    assert redact(text) == f"GET /ws?room=1&access_key={MASK} HTTP/1.1"
    assert redact("access_key=abc123;next") == f"access_key={MASK};next"
    assert redact("monkey_access_key=abc123") == "monkey_access_key=abc123"  # another name
