"""A :class:`~fake_server.hub.Peer` over one Socket.IO connection.

The hub speaks envelopes; this peer turns them into Socket.IO traffic:

* an event envelope ``{"type": kind, "payload": p}`` becomes ``emit(kind, p)``;
* an ack envelope (the reply to a request) becomes the Socket.IO ack of the event that
  carried the request (when the client asked for one), an ``error`` event (a refused
  request without callback) or nothing;
* a close becomes ``error {code, message, closeCode, reason}`` followed by a server-side
  disconnect (Socket.IO has no close codes).

Everything outgoing, acks included, goes through the bounded queue of
:class:`~fake_server.peer.QueuedPeer`, so injected latency and pauses keep the
per-connection order (a ``chat:message`` echo is emitted before the ack of its
``chat:send``).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import CloseReason
from .faults import FaultState
from .peer import QueuedPeer, QueueLimits
from .stats import Counters

__all__ = ["AckTarget", "SioLink", "SioPeer", "close_payload"]

log = logging.getLogger("fake_server.sio")

Answer = Callable[[dict[str, Any], "str | None"], None]

AckTarget = int | None | list[dict[str, Any]]
"""Where the reply to the request being handled goes: a Socket.IO ack id, ``None``
(no callback: errors become ``error`` events) or a list that collects it."""

_CLOSE_NAMES = {
    1000: "NORMAL",
    1001: "GOING_AWAY",
    1009: "MESSAGE_TOO_BIG",
    1011: "INTERNAL",
    1012: "SERVICE_RESTART",
    1013: "TRY_AGAIN_LATER",
    4001: "INVALID_TOKEN",
    4002: "TOKEN_EXPIRED",
    4003: "FORBIDDEN",
}
_RETRY_AFTER = re.compile(r"retryAfter=([0-9]+(?:\.[0-9]+)?)")


def close_payload(code: int, reason: str) -> dict[str, Any]:
    """The ``error`` event sent right before a server-side disconnect.

    ``closeCode``/``reason`` are what the raw endpoint would put in its close frame;
    ``code`` is the reason when it is one of the protocol's (``TOKEN_EXPIRED`` …),
    else a name for the close code.
    """
    known = {r.value for r in CloseReason}
    name = reason if reason in known else _CLOSE_NAMES.get(code, "CLOSED")
    payload: dict[str, Any] = {
        "code": name,
        "message": reason or name.lower().replace("_", " "),
        "closeCode": code,
        "reason": reason,
    }
    if match := _RETRY_AFTER.fullmatch(reason):
        payload["retryAfter"] = float(match.group(1))
    return payload


class SioLink(Protocol):
    """What a peer needs from its endpoint (the Socket.IO server)."""

    def is_connected(self, sid: str) -> bool: ...

    async def emit(self, sid: str, name: str, payload: Any) -> None: ...

    async def ack(self, eio_sid: str, ack_id: int, payload: dict[str, Any]) -> None: ...

    async def disconnect(self, sid: str, eio_sid: str) -> None: ...

    def abort(self, eio_sid: str) -> None: ...

    async def drained(self, eio_sid: str) -> None:
        """Return once engine.io's own queue for ``eio_sid`` is short (or gone)."""


class _Kind(enum.Enum):
    EVENT = enum.auto()
    ACK = enum.auto()
    CLOSE = enum.auto()


@dataclass(frozen=True, slots=True)
class _Outgoing:
    kind: _Kind
    name: str = ""
    payload: Any = None
    ack_id: int = 0
    code: int = 0


def _size(payload: Any) -> int:
    """The payload's JSON size; ``ValueError`` when it is not strict JSON."""
    return len(json.dumps(payload, separators=(",", ":"), allow_nan=False))


class SioPeer(QueuedPeer[_Outgoing]):
    """One Socket.IO connection (namespace ``/``): a :class:`~fake_server.peer.QueuedPeer`.

    The endpoint runs :meth:`run_writer` in a task and sets :attr:`disconnected` once
    Socket.IO reports the disconnect.
    """

    def __init__(
        self,
        link: SioLink,
        *,
        sid: str,
        eio_sid: str,
        faults: FaultState,
        counters: Counters,
        limits: QueueLimits,
        close_timeout: float,
        remote: str,
    ) -> None:
        super().__init__(
            faults=faults,
            counters=counters,
            limits=limits,
            close_timeout=close_timeout,
            remote=remote,
        )
        self.sid = sid
        self.eio_sid = eio_sid
        self._link = link

    def __repr__(self) -> str:
        return f"SioPeer({self.remote}, sid={self.sid}, close_requested={self.close_requested})"

    # -- Peer protocol -------------------------------------------------------------------

    def send(self, envelope: dict[str, Any], *, tag: str | None = None) -> None:
        if not self.open:
            return
        kind = envelope.get("type")
        if kind == "ack":  # replies go through answer_to()
            log.debug("dropping an ack sent outside a request for %s", self.sid)
        else:
            payload = envelope.get("payload", {})
            self._put(_Outgoing(_Kind.EVENT, name=str(kind), payload=payload), _size(payload))

    # -- requests and their replies -----------------------------------------------------

    def answer_to(self, target: AckTarget, request_type: str) -> Answer:
        """Where the hub sends the reply to one request: its ack goes to ``target``."""

        def answer(envelope: dict[str, Any], tag: str | None) -> None:
            if envelope.get("type") == "ack":
                self.reply(target, request_type, envelope.get("payload", {}))
            else:
                self.send(envelope)

        return answer

    def reply(self, target: AckTarget, request_type: str, payload: dict[str, Any]) -> None:
        """Deliver a request's reply (the raw ack payload) to ``target``."""
        if isinstance(target, list):
            target.append(payload)
        elif target is not None:
            if self.open:
                item = _Outgoing(_Kind.ACK, payload=payload, ack_id=target)
                self._put(item, _size(payload), request_type)
        elif not payload.get("success", False):
            error = payload.get("error", {})
            self.send({"type": "error", "payload": {**error, "requestType": request_type}})

    # -- QueuedPeer ----------------------------------------------------------------------

    def _close_item(self, code: int, reason: str) -> _Outgoing:
        return _Outgoing(_Kind.CLOSE, payload=reason, code=code)

    def _cut(self) -> None:
        self._link.abort(self.eio_sid)

    async def run_writer(self) -> None:
        """Emit queued items in order until the disconnect went out or the link broke."""
        # The connect handler queued ``connected`` before Socket.IO sent its CONNECT
        # packet; emit nothing until the client is connected to the namespace.
        for _ in range(1000):
            if self._link.is_connected(self.sid) or self.disconnected:
                break
            await asyncio.sleep(0 if _ < 10 else 0.001)
        await super().run_writer()

    async def _write(self, item: _Outgoing) -> bool:
        # engine.io queues without bound: hold on while its queue is long, so that
        # what a slow client leaves unread piles up in our bounded queue instead.
        await self._link.drained(self.eio_sid)
        if self.aborted or self.disconnected:
            return True
        try:
            if item.kind is _Kind.EVENT:
                await self._link.emit(self.sid, item.name, item.payload)
            elif item.kind is _Kind.ACK:
                await self._link.ack(self.eio_sid, item.ack_id, item.payload)
            else:
                await self._link.emit(self.sid, "error", close_payload(item.code, item.payload))
                await self._link.disconnect(self.sid, self.eio_sid)
                return True
        except Exception as exc:
            # The connection went away under us; Socket.IO reports the disconnect.
            raise ConnectionError(f"emit to {self.sid} failed") from exc
        return False
