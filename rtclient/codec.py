"""Encoding envelopes for the wire. Sans-I/O: bytes or text in, objects out."""

from __future__ import annotations

import json
from typing import Any, Protocol

from .errors import ProtocolError

__all__ = ["Codec", "JsonCodec"]


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
    """JSON in text frames (the default; docs/protocol.md)."""

    name = "json"

    def encode(self, envelope: dict[str, Any]) -> str:
        """Return compact JSON text."""
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)

    def decode(self, frame: str | bytes) -> object:
        """Parse a text frame; a binary frame or invalid JSON raises ProtocolError."""
        if not isinstance(frame, str):
            raise ProtocolError("binary frame where JSON text was expected")
        try:
            return json.loads(frame)
        except ValueError as exc:
            raise ProtocolError(f"frame is not valid JSON: {exc}") from None
        except RecursionError:
            raise ProtocolError("frame is nested too deeply") from None
