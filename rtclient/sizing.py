"""How many bytes a message takes on the wire, as the codec in use would write it.

The outbox bounds its bytes (``outbox_max_bytes``) and the server its frames
(``maxMessageSize``); both need a message's size when it is queued, which may be long
before a connection (and its negotiated codec) exists. The session takes a size
function, ``size_of(payload, raw)``, from the configured codec: :func:`size_function`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgpack

__all__ = ["ENVELOPE_OVERHEAD", "SizeOf", "json_size", "msgpack_size", "size_function"]

SizeOf = Callable[[Any, bool], int]
"""``size_of(payload, raw)``: about how many bytes a message with ``payload`` takes."""

ENVELOPE_OVERHEAD = 96
"""The envelope around a payload (type, id and punctuation), counted once per message."""


def _flat_size(payload: dict[str, Any]) -> int:
    # Chat payloads are flat dicts of strings: counted without encoding them (the codec
    # encodes once, when sending).
    size = ENVELOPE_OVERHEAD
    for key, value in payload.items():
        size += len(key) + (len(value.encode()) if isinstance(value, str) else 24)
    return size


def json_size(payload: Any, raw: bool) -> int:
    """The size of ``payload`` in JSON text.

    Generic emits (``raw``) and payloads that are not dicts are encoded, which also
    checks that they can be (TypeError at once otherwise); ``bytes`` count as their length.
    """
    if raw or not isinstance(payload, dict):
        text = json.dumps(payload, ensure_ascii=False, default=_binary_size)
        return len(text.encode()) + ENVELOPE_OVERHEAD
    return _flat_size(payload)


def _binary_size(value: object) -> object:
    # ``bytes`` count as their length: the client has checked that its codec (MessagePack,
    # or Socket.IO's binary attachments) carries them; anything else JSON refuses.
    if isinstance(value, bytes | bytearray | memoryview):
        return "#" * len(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def msgpack_size(payload: Any, raw: bool) -> int:
    """The size of ``payload`` in MessagePack (``bytes`` values allowed).

    Generic emits (``raw``) and payloads that are not dicts are packed, which also
    checks that they can be (TypeError at once otherwise).
    """
    if raw or not isinstance(payload, dict):
        return len(msgpack.packb(payload, use_bin_type=True)) + ENVELOPE_OVERHEAD
    return _flat_size(payload)


def size_function(codec: object) -> SizeOf:
    """The size function for the client's ``codec=`` argument.

    ``"msgpack"`` (or a codec named so) sizes in MessagePack; a codec object with a
    ``size_of(payload, raw)`` method sizes itself; anything else (JSON, the default,
    a codec negotiated later) sizes in JSON.
    """
    own = getattr(codec, "size_of", None)
    if callable(own):
        return own  # type: ignore[no-any-return]
    name = codec if isinstance(codec, str) else getattr(codec, "name", None)
    return msgpack_size if name == "msgpack" else json_size
