"""Encoding envelopes for the wire. Sans-I/O: objects in, frames out, and back.

Two codecs, negotiated with the WebSocket subprotocol (docs/protocol.md):

- :class:`JsonCodec` — ``rtclient.v1.json``, JSON in text frames (the default, and what
  a server that selects no subprotocol speaks);
- :class:`MsgpackCodec` — ``rtclient.v1.msgpack``, MessagePack in binary frames:
  smaller, faster, and payloads may hold raw bytes.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any, Protocol

import msgpack

try:  # optional: pip install rtclient[fast]
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]

try:  # optional: pip install rtclient[fast]
    import ormsgpack
except ImportError:  # pragma: no cover - depends on the environment
    ormsgpack = None  # type: ignore[assignment]

from .errors import ProtocolError

__all__ = [
    "CODECS",
    "Codec",
    "JsonCodec",
    "MsgpackCodec",
    "codec_named",
    "negotiated",
    "offered_subprotocols",
    "payload_check",
    "subprotocol_of",
]

SUBPROTOCOL_PREFIX = "rtclient.v1."


class Codec(Protocol):
    """Turns envelopes (dicts) into frames and back."""

    name: str

    def encode(self, envelope: dict[str, Any]) -> str | bytes:
        """Return the frame for ``envelope``."""
        ...

    def decode(self, frame: str | bytes) -> object:
        """Return the decoded frame; raise ProtocolError if it is not valid."""
        ...


class JsonCodec:
    """JSON in text frames.

    Uses orjson when it is installed (``pip install rtclient[fast]``: 5 to 10 times
    faster on these envelopes), the standard library's json otherwise; the frames are
    the same. One difference: orjson reads integers beyond 64 bits as floats (as
    JavaScript does); ``fast=False`` forces the standard library, which keeps them.
    """

    name = "json"

    def __init__(self, *, fast: bool = True) -> None:
        self.fast = fast and orjson is not None

    def encode(self, envelope: dict[str, Any]) -> str:
        """Return compact JSON text (TypeError for what JSON cannot represent)."""
        if self.fast:
            try:
                return orjson.dumps(envelope).decode()
            except TypeError:  # e.g. an integer beyond 64 bits: the stdlib can
                pass
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)

    def decode(self, frame: str | bytes) -> object:
        """Parse a text frame; a binary frame or invalid JSON raises ProtocolError."""
        if not isinstance(frame, str):
            raise ProtocolError("binary frame where JSON text was expected")
        if self.fast:
            try:
                return orjson.loads(frame)
            except ValueError:  # invalid: the stdlib's error message is the clearer one
                pass
        try:
            return json.loads(frame)
        except ValueError as exc:
            raise ProtocolError(f"frame is not valid JSON: {exc}") from None
        except RecursionError:
            raise ProtocolError("frame is nested too deeply") from None


if ormsgpack is not None:
    # What msgpack refuses, ormsgpack must refuse too (it would write datetimes, UUIDs,
    # dataclasses and enums as strings / maps / values): encode() then lets msgpack
    # decide, which packs it the same or raises as it always did.
    _ORMSGPACK_OPTIONS = (
        ormsgpack.OPT_PASSTHROUGH_DATACLASS
        | ormsgpack.OPT_PASSTHROUGH_DATETIME
        | ormsgpack.OPT_PASSTHROUGH_ENUM
        | ormsgpack.OPT_PASSTHROUGH_UUID
    )
    # ormsgpack ignores bytes after the first object, where msgpack raises ExtraData.
    # decode() unpacks ``[frame, SECRET]`` instead: the second item is SECRET only if the
    # frame held exactly one whole object (the secret never leaves the process, so a
    # peer cannot append it; a truncated frame eats into it).
    _SECRET = secrets.token_hex(16)
    _TAIL = ormsgpack.packb(_SECRET)


class MsgpackCodec:
    """MessagePack in binary frames (``bytes`` values travel as MessagePack bin).

    Uses ormsgpack when it is installed (``pip install rtclient[fast]``: 1.4 to 1.9
    times faster per envelope encode + decode), msgpack otherwise; ``fast=False``
    forces msgpack. The frames are the same bytes, and so are the outcomes: whatever
    ormsgpack refuses, to encode or to decode (int keys, tuple subclasses, ext types,
    frames over 1,000 levels deep, invalid data...), goes to msgpack, whose result or
    error stands. One difference: ormsgpack's own ``ormsgpack.Ext`` and
    ``ormsgpack.Fragment`` values encode on the fast path only (msgpack refuses them;
    ``msgpack.ExtType`` works on both).
    """

    name = "msgpack"

    def __init__(self, *, max_depth: int = 64, fast: bool = True) -> None:
        self._packer = msgpack.Packer(use_bin_type=True)
        self._max_depth = max_depth
        self.fast = fast and ormsgpack is not None

    def encode(self, envelope: dict[str, Any]) -> bytes:
        """Return the MessagePack bytes (TypeError for values it cannot represent)."""
        if self.fast:
            try:
                data: bytes = ormsgpack.packb(envelope, option=_ORMSGPACK_OPTIONS)
                return data
            except TypeError:  # e.g. int keys, tuple subclasses, or not encodable: msgpack
                pass
        try:
            data = self._packer.pack(envelope)
        except OverflowError as exc:  # an integer beyond 64 bits
            raise TypeError(f"cannot encode as MessagePack: {exc}") from None
        return data

    def decode(self, frame: str | bytes) -> object:
        """Unpack a binary frame; a text frame or invalid data raises ProtocolError."""
        if self.fast and type(frame) is bytes:  # what WebSocket frames are
            try:
                pair = ormsgpack.unpackb(b"\x92" + frame + _TAIL)
            except (ValueError, TypeError):  # invalid, or not for ormsgpack: msgpack says
                pass
            else:
                if pair[1] == _SECRET:
                    return pair[0]
        if not isinstance(frame, bytes | bytearray | memoryview):
            raise ProtocolError("text frame where MessagePack was expected")
        try:
            return msgpack.unpackb(frame, raw=False, strict_map_key=True, max_bin_len=len(frame))
        except (msgpack.StackError, RecursionError):
            raise ProtocolError("frame is nested too deeply") from None
        except msgpack.FormatError:  # it has no message
            raise ProtocolError("frame is not valid MessagePack: reserved type byte") from None
        except (ValueError, msgpack.UnpackException, TypeError) as exc:
            raise ProtocolError(f"frame is not valid MessagePack: {exc}") from None


CODECS: dict[str, type[JsonCodec] | type[MsgpackCodec]] = {
    "json": JsonCodec,
    "msgpack": MsgpackCodec,
}


def codec_named(name: str) -> Codec:
    """Return a new codec by name (``"json"`` or ``"msgpack"``)."""
    try:
        return CODECS[name]()
    except KeyError:
        raise ValueError(f"unknown codec {name!r}: one of {sorted(CODECS)}") from None


def payload_check(
    codec: Codec | str | None, *, binary_attachments: bool = False
) -> Callable[[Any], None]:
    """A function that raises TypeError at once for a payload the wire cannot carry.

    The codec decides: MessagePack carries ``bytes``, JSON does not — except over
    Socket.IO (``binary_attachments``), whose JSON packets carry ``bytes`` as binary
    attachments.
    """
    if codec is None or isinstance(codec, str):
        codec = codec_named(codec or "json")
    if binary_attachments and codec.name == "json":
        return _json_with_binary
    encode = codec.encode

    def check(payload: Any) -> None:
        encode({"payload": payload})

    return check


def _json_with_binary(payload: Any) -> None:
    json.dumps(payload, default=_binary_only)


def _binary_only(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return None
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def subprotocol_of(codec: Codec) -> str:
    """The WebSocket subprotocol that names ``codec``."""
    return SUBPROTOCOL_PREFIX + codec.name


def offered_subprotocols(
    codec: Codec | str | None, codecs: tuple[str, ...] | None
) -> dict[str, Codec]:
    """The codecs a client offers, by subprotocol, in order of preference.

    ``codec`` (a name or a Codec) offers that one alone; ``codecs`` several names; neither
    offers JSON.
    """
    if codec is not None and codecs is not None:
        raise ValueError("give codec= or codecs=, not both")
    if isinstance(codec, str):
        codec = codec_named(codec)
    offered = [codec] if codec is not None else [codec_named(n) for n in codecs or ("json",)]
    return {subprotocol_of(c): c for c in offered}


def negotiated(offered: dict[str, Codec], chosen: str | None) -> Codec:
    """The codec for the subprotocol the server chose.

    A server that selects none predates the negotiation: it speaks JSON.
    """
    return offered.get(chosen, JsonCodec()) if chosen else JsonCodec()
