"""MessagePack codec and codec negotiation helpers.

MsgpackCodec has two engines: ormsgpack when installed (``fast``) and msgpack. Each
behaviour is checked on both, and the two must be interchangeable: the same frames,
the same results, the same errors, and either decodes what the other (or fake_server,
which uses msgpack) encodes.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import os
import subprocess
import sys
import textwrap
import uuid
from collections import namedtuple
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_server.envelope import parse_frame
from rtclient.codec import JsonCodec, MsgpackCodec, codec_named, subprotocol_of
from rtclient.errors import ProtocolError

ENVELOPE = {
    "type": "chat:message",
    "payload": {"roomId": "lobby", "eventId": 7, "text": "héllo", "from": "alice", "ts": 1.5},
}

ENGINES = pytest.mark.parametrize("fast", [True, False], ids=["ormsgpack", "msgpack"])


def _codec(fast: bool) -> MsgpackCodec:
    codec = MsgpackCodec(fast=fast)
    if fast and not codec.fast:
        pytest.skip("ormsgpack is not installed")
    return codec


FAST = MsgpackCodec(fast=True)
SLOW = MsgpackCodec(fast=False)
needs_ormsgpack = pytest.mark.skipif(not FAST.fast, reason="ormsgpack is not installed")


def _outcome(codec: MsgpackCodec, frame: bytes | str) -> tuple[str, object]:
    """What decode() does: ("ok", the value, re-packed so that NaN compares) or the error."""
    try:
        return "ok", msgpack.packb(codec.decode(frame), use_bin_type=True)
    except ProtocolError as exc:
        return "error", str(exc)


def test_fast_flag() -> None:
    assert SLOW.fast is False
    assert MsgpackCodec().fast is FAST.fast


@ENGINES
def test_round_trip_and_binary_frames(fast: bool) -> None:
    codec = _codec(fast)
    frame = codec.encode(ENVELOPE)
    assert isinstance(frame, bytes)
    assert codec.decode(frame) == ENVELOPE
    blob = {"type": "x", "payload": {"blob": b"\x00\xff", "text": "\x00\xff"}}
    frame = codec.encode(blob)
    assert b"\xc4\x02\x00\xff" in frame  # bin 8
    assert b"\xa3\x00\xc3\xbf" in frame  # fixstr of 3 bytes, UTF-8
    assert codec.decode(frame) == blob
    for view in (bytearray(frame), memoryview(frame)):
        assert codec.decode(view) == blob


def test_smaller_than_json_on_a_chat_message() -> None:
    assert len(MsgpackCodec().encode(ENVELOPE)) < len(JsonCodec().encode(ENVELOPE).encode())


BAD_FRAMES = {
    "reserved": b"\xc1",
    "truncated": b"\x92\x01",
    "empty": b"",
    "text": "text frame",
    "int-key": msgpack.packb({1: "int key"}),
    "bool-key": msgpack.packb({True: 1}),
    "nil-key": msgpack.packb({None: 1}),
    "array-key": b"\x81\x91\x01\x01",
    "bad-utf8": b"\xa2\xff\xfe",
    "trailing": b"\x01\x02",
    "trailing-nil": msgpack.packb({"a": 1}) + b"\xc0",
    "two-objects": msgpack.packb(ENVELOPE) * 2,
    "bin-past-the-end": b"\xc4\x05ab",
    "str-past-the-end": b"\xd9\x22" + b"a" * 8,
    "4-GB-bin": b"\xc6\xff\xff\xff\xff" + b"\x00" * 5,
    "4-GB-str": b"\xdb\xff\xff\xff\xff" + b"a" * 5,
    "4-G-array": b"\xdd\xff\xff\xff\xff" + b"\xc0" * 5,
    "4-G-map": b"\xdf\xff\xff\xff\xff" + b"\xa1k\x01",
    "4-GB-ext": b"\xc9\xff\xff\xff\xff\x01" + b"\x00" * 4,
    "deep": b"\x91" * 100_000,
    "deep-maps": b"\x81\xa1k" * 2_000 + b"\x00",
}


@ENGINES
@pytest.mark.parametrize("frame", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_bad_frames_raise_protocol_error(fast: bool, frame: bytes | str) -> None:
    with pytest.raises(ProtocolError, match=r"\w+: \w+|too deeply|text frame"):
        _codec(fast).decode(frame)


@needs_ormsgpack
@pytest.mark.parametrize("frame", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_both_engines_give_the_same_error(frame: bytes | str) -> None:
    assert _outcome(FAST, frame) == _outcome(SLOW, frame)


@ENGINES
def test_deep_frame_says_so(fast: bool) -> None:
    with pytest.raises(ProtocolError, match="nested too deeply"):
        _codec(fast).decode(b"\x91" * 100_000)


@needs_ormsgpack
@pytest.mark.parametrize("depth", [255, 256, 512, 1000, 1023, 1024, 1025])
def test_depth_limit_is_msgpacks_on_both(depth: int) -> None:
    """msgpack reads up to 1,024 levels; ormsgpack stops earlier and hands over."""
    frame = b"\x91" * depth + b"\x00"
    assert _outcome(FAST, frame) == _outcome(SLOW, frame)
    assert _outcome(SLOW, frame)[0] == ("ok" if depth <= 1024 else "error")


@pytest.mark.skipif(sys.platform != "linux", reason="uses RLIMIT_AS and /proc")
def test_declared_lengths_do_not_allocate() -> None:
    """A few bytes that declare 4 GB fail at once, under a 256 MiB address-space cap."""
    script = textwrap.dedent(
        """
        import resource
        from rtclient.codec import MsgpackCodec
        from rtclient.errors import ProtocolError

        codecs = [MsgpackCodec(fast=True), MsgpackCodec(fast=False)]
        # bin, str, array, map, ext; an array in an array, a bin in a map
        heads = [b"\\xc6", b"\\xdb", b"\\xdd", b"\\xdf", b"\\xc9", b"\\x91\\xdd"]
        heads.append(b"\\x81\\xa1k\\xc6")
        frames = [head + b"\\xff\\xff\\xff\\xff" + b"\\x01" * 6 for head in heads]
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                size = int(line.split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size + 256 * 2**20, resource.RLIM_INFINITY))
        for codec in codecs:
            for frame in frames:
                try:
                    codec.decode(frame)
                except ProtocolError:
                    pass
                else:
                    raise SystemExit(f"decoded {frame!r}")
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


@dataclasses.dataclass
class Point:
    x: int = 1


class Color(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"


class Ratio(float):
    pass


class Blob(bytes):
    pass


Pair = namedtuple("Pair", "a b")

UNENCODABLE: dict[str, tuple[object, type[Exception]]] = {
    "int beyond 64 bits": (2**64, TypeError),
    "int below -2**63": (-(2**63) - 1, TypeError),
    "datetime": (datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC), TypeError),
    "date": (datetime.date(2025, 1, 1), TypeError),
    "uuid": (uuid.UUID(int=1), TypeError),
    "dataclass": (Point(), TypeError),
    "enum": (Color.RED, TypeError),
    "set": ({1}, TypeError),
    "complex": (1j, TypeError),
    "object": (object(), TypeError),
    "lone surrogate": ("\ud800", UnicodeEncodeError),
}


@ENGINES
@pytest.mark.parametrize("value,error", UNENCODABLE.values(), ids=UNENCODABLE.keys())
def test_unencodable_values_raise(fast: bool, value: object, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        _codec(fast).encode({"type": "x", "payload": {"v": value}})
    assert type(info.value) is error


def _nested(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


# msgpack packs these (ormsgpack refuses them, or would write them differently): the
# fast engine must write the same bytes.
MSGPACK_ONLY: dict[str, object] = {
    "int keys": {1: "a", 2: "b"},
    "bytes keys": {b"k": 1},
    "bool, nil and float keys": {True: 1, None: 2, 1.5: 3},
    "tuple": (1, "a"),
    "namedtuple": Pair(1, 2),
    "int enum": Level.HIGH,
    "str enum": Mode.FAST,
    "float subclass": Ratio(0.5),
    "bytes subclass": Blob(b"\x00"),
    "ExtType": msgpack.ExtType(5, b"ext"),
    "Timestamp": msgpack.Timestamp(1, 2),
    "300 levels deep": _nested(300),
}


@needs_ormsgpack
@pytest.mark.parametrize("value", MSGPACK_ONLY.values(), ids=MSGPACK_ONLY.keys())
def test_values_only_msgpack_packs_make_the_same_frames(value: object) -> None:
    envelope = {"type": "x", "payload": {"v": value}}
    frame = FAST.encode(envelope)
    assert frame == SLOW.encode(envelope) == msgpack.packb(envelope, use_bin_type=True)
    assert _outcome(FAST, frame) == _outcome(SLOW, frame)


@needs_ormsgpack
def test_ormsgpack_own_types_encode_only_on_the_fast_engine() -> None:
    """The one documented difference: msgpack does not know ormsgpack.Ext / Fragment."""
    import ormsgpack

    for value in (ormsgpack.Ext(5, b"ext"), ormsgpack.Fragment(b"\x01")):
        envelope = {"type": "x", "payload": {"v": value}}
        assert SLOW.decode(FAST.encode(envelope)) == {
            "type": "x",
            "payload": {"v": msgpack.ExtType(5, b"ext") if isinstance(value, ormsgpack.Ext) else 1},
        }
        with pytest.raises(TypeError):
            SLOW.encode(envelope)


@needs_ormsgpack
@pytest.mark.parametrize(
    "frame",
    [
        msgpack.packb({b"bin key": 1}),
        msgpack.packb({"v": msgpack.ExtType(5, b"ext")}),
        msgpack.packb({"v": msgpack.Timestamp(1, 2)}),
        b"\xd4\xff\x00",  # a timestamp of the wrong length
        b"\xca\x3f\xc0\x00\x00",  # float 32
        b"\xcf\x00\x00\x00\x00\x00\x00\x00\x01",  # 1 as uint 64
        b"\x82\xa1a\x01\xa1a\x02",  # a key twice
    ],
    ids=["bin-key", "ext", "timestamp", "bad-timestamp", "float32", "wide-int", "dup-key"],
)
def test_frames_ormsgpack_reads_differently_decode_as_msgpack_does(frame: bytes) -> None:
    assert _outcome(FAST, frame) == _outcome(SLOW, frame)


def test_names_and_subprotocols() -> None:
    assert codec_named("msgpack").name == "msgpack"
    assert subprotocol_of(codec_named("json")) == "rtclient.v1.json"
    with pytest.raises(ValueError, match="unknown codec"):
        codec_named("xml")


@ENGINES
def test_fake_server_reads_our_frames_and_we_read_its(fast: bool) -> None:
    codec = _codec(fast)
    request = {"type": "chat:send", "id": "m-1", "payload": {"roomId": "r", "blob": b"\x01"}}
    parsed = parse_frame(codec.encode(request), "msgpack")
    assert (parsed.type, parsed.id, parsed.payload) == ("chat:send", "m-1", request["payload"])
    assert codec.decode(msgpack.packb(ENVELOPE, use_bin_type=True)) == ENVELOPE


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
envelopes = st.dictionaries(st.text(), values, max_size=6)


@needs_ormsgpack
@settings(max_examples=300, deadline=None)
@given(envelopes)
def test_engines_are_interchangeable(envelope: dict[str, Any]) -> None:
    frame = FAST.encode(envelope)
    assert frame == SLOW.encode(envelope) == msgpack.packb(envelope, use_bin_type=True)
    assert FAST.decode(frame) == SLOW.decode(frame) == envelope
    assert msgpack.unpackb(frame, raw=False, strict_map_key=True) == envelope  # fake_server


def _damaged(frame: bytes, data: st.DataObject) -> bytes:
    how = data.draw(st.sampled_from(["whole", "cut", "append", "flip"]))
    if how == "whole" or not frame:
        return frame
    if how == "cut":
        return frame[: data.draw(st.integers(0, len(frame) - 1))]
    if how == "append":
        return frame + data.draw(st.binary(min_size=1, max_size=8))
    at = data.draw(st.integers(0, len(frame) - 1))
    return frame[:at] + bytes([frame[at] ^ data.draw(st.integers(1, 255))]) + frame[at + 1 :]


@needs_ormsgpack
@settings(max_examples=500, deadline=None)
@given(st.data())
def test_engines_agree_on_any_bytes(data: st.DataObject) -> None:
    """Random bytes, and valid frames cut short, extended or with a byte changed."""
    frame = data.draw(
        st.binary(max_size=64) | envelopes.map(lambda e: msgpack.packb(e, use_bin_type=True))
    )
    frame = _damaged(frame, data)
    assert _outcome(FAST, frame) == _outcome(SLOW, frame)
