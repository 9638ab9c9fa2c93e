"""Envelopes: parse a client frame into a :class:`Request`, build acks and events.

Bad input raises :class:`~fake_server.errors.RequestError` (``BAD_REQUEST``); the
caller decides whether it becomes an error ack or an ``error`` event.  Field
validators for payloads live here too, so that every refusal reads the same.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .errors import ErrorCode, RequestError

__all__ = [
    "MAX_SAFE_INTEGER",
    "ROOM_ID_RE",
    "FrameError",
    "Request",
    "ack",
    "check_numbers",
    "error_ack",
    "event",
    "get_int",
    "get_room_id",
    "get_str",
    "parse_envelope",
    "parse_frame",
]

ROOM_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_ID_LENGTH = 64
MAX_SAFE_INTEGER = 2**53 - 1
"""Integers beyond +-(2**53 - 1) are refused: JSON peers (JavaScript) cannot hold them,
and MessagePack cannot hold those past 64 bits."""


@dataclass(frozen=True, slots=True)
class Request:
    """A client request: ``type``, optional ``id`` and the ``payload`` object."""

    type: str
    id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


class FrameError(RequestError):
    """The frame could not be read as a request; ``request_id`` is set when known."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(ErrorCode.BAD_REQUEST, message)
        self.request_id = request_id


def parse_frame(data: str | bytes, codec: str = "json") -> Request:
    """Parse one frame; raise :class:`FrameError` when it is not a valid envelope.

    ``codec`` is the connection's: ``"json"`` (text frames) or ``"msgpack"`` (binary).
    """
    if codec == "msgpack":
        if not isinstance(data, bytes):
            raise FrameError("text frame on a MessagePack connection")
        try:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except (ValueError, TypeError, RecursionError, msgpack.UnpackException):
            raise FrameError("frame is not MessagePack") from None
        return parse_envelope(obj)
    if not isinstance(data, str):
        raise FrameError("binary frames are not accepted; send JSON text")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise FrameError("frame is not JSON") from None
    return parse_envelope(obj)


def parse_envelope(obj: object) -> Request:
    """Validate an already decoded envelope (also used by non-JSON transports)."""
    if not isinstance(obj, dict):
        raise FrameError("frame is not a JSON object")
    request_id = obj.get("id")
    if request_id is not None and (
        not isinstance(request_id, str) or not 1 <= len(request_id) <= MAX_ID_LENGTH
    ):
        raise FrameError(f"id must be a string of 1 to {MAX_ID_LENGTH} characters")
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind:
        raise FrameError("type must be a non-empty string", request_id)
    payload = obj.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise FrameError("payload must be an object", request_id)
    try:
        check_numbers(payload)
    except RequestError as exc:
        raise FrameError(exc.message, request_id) from None
    return Request(type=kind, id=request_id, payload=payload)


def check_numbers(value: object) -> None:
    """Refuse NaN, Infinity and integers beyond :data:`MAX_SAFE_INTEGER`, at any depth.

    Python's ``json`` reads ``NaN``, ``Infinity`` and ``1e999999`` (as ``inf``); none
    of them is JSON, so none may come in and be echoed back.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise _bad("numbers must be finite (NaN and Infinity are not JSON)")
        elif isinstance(item, int) and not isinstance(item, bool):
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                raise _bad(f"integers must be within +-{MAX_SAFE_INTEGER}")
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def ack(request_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A success ack; ``success: true`` is added in front of ``payload``."""
    return {"type": "ack", "id": request_id, "payload": {"success": True, **payload}}


def error_ack(request_id: str, error: RequestError) -> dict[str, Any]:
    return {
        "type": "ack",
        "id": request_id,
        "payload": {"success": False, "error": error.payload()},
    }


def event(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "payload": payload}


# -- payload field validators --------------------------------------------------------------


def _bad(message: str) -> RequestError:
    return RequestError(ErrorCode.BAD_REQUEST, message)


def get_str(payload: dict[str, Any], name: str, *, max_length: int, min_length: int = 1) -> str:
    """Return ``payload[name]``: a string of ``min_length`` to ``max_length`` characters."""
    value = payload.get(name)
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string")
    if not min_length <= len(value) <= max_length:
        raise _bad(f"{name} must have {min_length} to {max_length} characters")
    return value


def get_room_id(payload: dict[str, Any], name: str = "roomId") -> str:
    """Return ``payload[name]``: a room id matching ``^[A-Za-z0-9_.:-]{1,64}$``."""
    value = payload.get(name)
    if not isinstance(value, str) or not ROOM_ID_RE.fullmatch(value):
        raise _bad(f"{name} must match [A-Za-z0-9_.:-]{{1,64}}")
    return value


def get_int(
    payload: dict[str, Any],
    name: str,
    *,
    minimum: int = 0,
    default: int | None = None,
) -> int:
    """Return ``payload[name]``: an integer >= ``minimum`` (booleans are not integers)."""
    value = payload.get(name, default)
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be an integer")
    if value < minimum:
        raise _bad(f"{name} must be >= {minimum}")
    return value
