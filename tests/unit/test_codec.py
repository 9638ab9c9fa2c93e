"""Unit tests for rtclient.codec.JsonCodec."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtclient.codec import JsonCodec
from rtclient.errors import ProtocolError, RtClientError

codec = JsonCodec()

ENVELOPE: dict[str, Any] = {
    "type": "message",
    "id": "0190c6e2-0000-7000-8000-000000000000",
    "room": "lobby",
    "payload": {"text": "hi", "n": 3, "ratio": 0.25, "ok": True, "none": None, "tags": [1, "a"]},
}


def test_name() -> None:
    assert codec.name == "json"


def test_round_trip() -> None:
    frame = codec.encode(ENVELOPE)
    assert isinstance(frame, str)
    assert codec.decode(frame) == ENVELOPE


def test_output_is_compact() -> None:
    assert codec.encode({"a": 1, "b": [1, 2], "c": {"d": None}}) == (
        '{"a":1,"b":[1,2],"c":{"d":null}}'
    )
    frame = codec.encode(ENVELOPE)
    assert ", " not in frame and ": " not in frame and "\n" not in frame


def test_non_ascii_is_kept() -> None:
    text = "héllo ✓ 日本語 🙂"
    frame = codec.encode({"text": text})
    assert text in frame
    assert "\\u" not in frame
    assert codec.decode(frame) == {"text": text}


def test_decode_accepts_any_json_value() -> None:
    assert codec.decode("[1,2]") == [1, 2]
    assert codec.decode(' {"a" : 1} ') == {"a": 1}


@pytest.mark.parametrize("frame", [b'{"a":1}', b"", bytearray(b"{}")])
def test_binary_frame_raises_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec.decode(frame)


@pytest.mark.parametrize(
    "frame",
    ["", "   ", "{", "not json", '{"a":}', "{'a': 1}", '{"a":1} trailing', "[" * 100_000],
    ids=lambda f: repr(f[:20]),
)
def test_invalid_json_raises_protocol_error(frame: str) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode(frame)
    assert isinstance(info.value, RtClientError)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # orjson's range (see JsonCodec)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_round_trip_property(envelope: dict[str, Any]) -> None:
    frame = codec.encode(envelope)
    assert codec.decode(frame) == envelope
    assert json.loads(frame) == envelope
