"""The seed's envelope: JSON text frames ``{"type": ..., "payload": ...}``.

What the seed guide's Node.js ``ws`` server and its browser client speak, and the
default adapter of generic mode on the raw WebSocket transports. Without options it
has no acks (the seed server sends none), and the server's ``connected`` greeting
(``{"type": "connected", "payload": {"clientId": …}}``) says it accepted the
connection: it is also delivered to ``on("connected")`` handlers. ``greeting=None``
for a server that greets with nothing (the open WebSocket is then the acceptance).

A server that echoes an id can be given ``id_key`` and ``ack_type``: the message id
travels in the envelope under ``id_key``, and a frame ``{type: ack_type, <id_key>: id,
payload: result}`` settles the emit with that id (``{..., "error": {"code", "message"}}``
refuses it).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ProtocolError
from .base import Acked, Frame, Incoming, Ready, Received, Refused

__all__ = ["JsonEnvelope"]


class JsonEnvelope:
    """``{"type": name, "payload": data}`` in JSON text frames; see the module doc.

    :param type_key: the key of the event name.
    :param payload_key: the key of the event's data.
    :param id_key: where a message id travels (None: nowhere; acks need it).
    :param ack_type: the ``type`` of the server's acks (None: the server sends none).
    :param greeting: the ``type`` of the server's greeting (None: it sends none).
    """

    resumes = False
    sends_token = False

    def __init__(
        self,
        *,
        type_key: str = "type",
        payload_key: str = "payload",
        id_key: str | None = None,
        ack_type: str | None = None,
        greeting: str | None = "connected",
    ) -> None:
        if ack_type is not None and id_key is None:
            raise ValueError("acks are matched by id: give id_key with ack_type")
        self.type_key = type_key
        self.payload_key = payload_key
        self.id_key = id_key
        self.ack_type = ack_type
        self.acks = ack_type is not None
        self.greeting = greeting
        self.greets = greeting is not None

    def opening(self, token: str | None, resume: int | None) -> list[Frame]:
        """Nothing to say first: the server speaks when it accepted the connection."""
        return []

    def encode(self, name: str, data: Any, message_id: str | None) -> list[Frame]:
        """One text frame (TypeError / ValueError for data JSON cannot carry)."""
        envelope: dict[str, Any] = {self.type_key: name, self.payload_key: data}
        if message_id is not None and self.id_key is not None:
            envelope[self.id_key] = message_id
        return [json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, allow_nan=False)]

    def decode(self, frame: Frame) -> list[Incoming]:
        """One event, or one ack; ProtocolError for anything else. The greeting says
        Ready on every connection; a second one is only an event."""
        try:
            envelope = json.loads(frame)
        except (ValueError, RecursionError):
            raise ProtocolError("frame is not valid JSON") from None
        if not isinstance(envelope, dict) or not isinstance(envelope.get(self.type_key), str):
            raise ProtocolError(f"frame is not an object with a string {self.type_key!r}")
        name: str = envelope[self.type_key]
        data = envelope.get(self.payload_key)
        if self.ack_type is not None and name == self.ack_type:
            message_id = envelope.get(self.id_key) if self.id_key else None
            if not isinstance(message_id, str):
                raise ProtocolError(f"{name}: an ack without a string {self.id_key!r}")
            error = envelope.get("error")
            if isinstance(error, dict):
                return [
                    Refused(
                        message_id, str(error.get("code", "ERROR")), str(error.get("message", ""))
                    )
                ]
            return [Acked(message_id, data)]
        if name == self.greeting:
            return [Ready(), Received(name, data)]
        return [Received(name, data)]
