"""Encoding envelopes for the wire. Sans-I/O: objects in, frames out, and back.

Two codecs, negotiated with the WebSocket subprotocol (docs/protocol.md):

- :class:`JsonCodec` — ``rtclient.v1.json``, JSON in text frames (the default, and what
  a server that selects no subprotocol speaks);
- :class:`MsgpackCodec` — ``rtclient.v1.msgpack``, MessagePack in binary frames:
  smaller, faster, and payloads may hold raw bytes.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import msgpack

try:  # optional: pip install rtclient[fast]
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]

from .errors import ProtocolError

__all__ = ["CODECS", "Codec", "JsonCodec", "MsgpackCodec", "codec_named", "subprotocol_of"]

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


class MsgpackCodec:
    """MessagePack in binary frames (``bytes`` values travel as MessagePack bin)."""

    name = "msgpack"

    def __init__(self, *, max_depth: int = 64) -> None:
        self._packer = msgpack.Packer(use_bin_type=True)
        self._max_depth = max_depth

    def encode(self, envelope: dict[str, Any]) -> bytes:
        """Return the MessagePack bytes (TypeError for values it cannot represent)."""
        try:
            data: bytes = self._packer.pack(envelope)
        except OverflowError as exc:  # an integer beyond 64 bits
            raise TypeError(f"cannot encode as MessagePack: {exc}") from None
        return data

    def decode(self, frame: str | bytes) -> object:
        """Unpack a binary frame; a text frame or invalid data raises ProtocolError."""
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


def subprotocol_of(codec: Codec) -> str:
    """The WebSocket subprotocol that names ``codec``."""
    return SUBPROTOCOL_PREFIX + codec.name
