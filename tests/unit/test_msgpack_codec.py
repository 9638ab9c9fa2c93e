"""MessagePack codec and codec negotiation helpers."""

from __future__ import annotations

import msgpack
import pytest

from rtclient.codec import JsonCodec, MsgpackCodec, codec_named, subprotocol_of
from rtclient.errors import ProtocolError

ENVELOPE = {
    "type": "chat:message",
    "payload": {"roomId": "lobby", "eventId": 7, "text": "héllo", "from": "alice", "ts": 1.5},
}


def test_round_trip_and_binary_frames() -> None:
    codec = MsgpackCodec()
    frame = codec.encode(ENVELOPE)
    assert isinstance(frame, bytes)
    assert codec.decode(frame) == ENVELOPE
    assert codec.decode(codec.encode({"type": "x", "payload": {"blob": b"\x00\xff"}})) == {
        "type": "x",
        "payload": {"blob": b"\x00\xff"},
    }


def test_smaller_than_json_on_a_chat_message() -> None:
    assert len(MsgpackCodec().encode(ENVELOPE)) < len(JsonCodec().encode(ENVELOPE).encode())


@pytest.mark.parametrize(
    "frame",
    [b"\xc1", b"\x92\x01", "text frame", msgpack.packb({1: "int key"}), b"\x91" * 10_000],
    ids=["reserved", "truncated", "text", "int-key", "deep"],
)
def test_bad_frames_raise_protocol_error(frame: bytes | str) -> None:
    with pytest.raises(ProtocolError, match=r"\w+: \w+|too deeply|text frame"):
        MsgpackCodec().decode(frame)


def test_deep_frame_says_so() -> None:
    with pytest.raises(ProtocolError, match="nested too deeply"):
        MsgpackCodec().decode(b"\x91" * 100_000)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1])
def test_integers_beyond_64_bits_raise_type_error(value: int) -> None:
    with pytest.raises(TypeError, match="MessagePack"):
        MsgpackCodec().encode({"type": "x", "payload": {"n": value}})


def test_names_and_subprotocols() -> None:
    assert codec_named("msgpack").name == "msgpack"
    assert subprotocol_of(codec_named("json")) == "rtclient.v1.json"
    with pytest.raises(ValueError, match="unknown codec"):
        codec_named("xml")


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "stdlib"])
def test_json_codec_both_engines_make_the_same_frames(fast: bool) -> None:
    codec = JsonCodec(fast=fast)
    frame = codec.encode(ENVELOPE)
    assert isinstance(frame, str)
    assert codec.decode(frame) == ENVELOPE
    assert JsonCodec(fast=not fast).decode(frame) == ENVELOPE
    for bad in ("{", "[" * 100_000, b"{}"):
        with pytest.raises(ProtocolError):
            codec.decode(bad)
