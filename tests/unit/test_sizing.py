"""Message sizes as the configured codec writes them (the outbox's byte bound)."""

from __future__ import annotations

import json

import msgpack
import pytest

from rtclient.codec import JsonCodec, MsgpackCodec
from rtclient.session import Session
from rtclient.sizing import ENVELOPE_OVERHEAD, json_size, msgpack_size, size_function


def test_chat_payloads_are_counted_without_encoding() -> None:
    payload = {"roomId": "a", "text": "héllo"}
    expected = ENVELOPE_OVERHEAD + len("roomId") + 1 + len("text") + len("héllo".encode())
    assert json_size(payload, False) == msgpack_size(payload, False) == expected


def test_generic_payloads_are_sized_in_their_codec() -> None:
    data = {"n": list(range(100))}
    assert json_size(data, True) == len(json.dumps(data).encode()) + ENVELOPE_OVERHEAD
    assert msgpack_size(data, True) == len(msgpack.packb(data)) + ENVELOPE_OVERHEAD
    assert msgpack_size(data, True) < json_size(data, True)


def test_bytes_are_a_size_in_msgpack_and_their_length_in_json() -> None:
    # Whether JSON may carry bytes at all (over Socket.IO, as binary attachments) is
    # codec.payload_check's decision, made before a message is sized.
    assert msgpack_size({"blob": b"\x00" * 10}, True) > 10
    assert json_size({"blob": b"\x00" * 10}, True) == json_size({"blob": "#" * 10}, True)
    with pytest.raises(TypeError):
        json_size({"blob": object()}, True)


def test_size_function_follows_the_codec_argument() -> None:
    assert size_function(None) is json_size
    assert size_function("json") is json_size
    assert size_function(JsonCodec()) is json_size
    assert size_function("msgpack") is msgpack_size
    assert size_function(MsgpackCodec()) is msgpack_size

    class Own:
        name = "own"

        def size_of(self, payload: object, raw: bool) -> int:
            return 7

    assert size_function(Own())({"a": 1}, True) == 7


def test_the_session_sizes_with_the_function_it_is_given() -> None:
    session = Session(size_of=msgpack_size, outbox_max_bytes=10_000)
    session.connecting()
    session.emit("upload", {"blob": b"\x00" * 1000}, 0.0)  # JSON could not size it
    (entry,) = session.outbox.entries()
    assert entry.size == msgpack_size(entry.payload, True)
    assert session.outbox.bytes == entry.size
