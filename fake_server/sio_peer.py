"""A :class:`~fake_server.hub.Peer` over one Socket.IO connection.

The hub speaks envelopes; this peer turns them into Socket.IO traffic:

* an event envelope ``{"type": kind, "payload": p}`` becomes ``emit(kind, p)``;
* an ack envelope (the reply to a request) becomes the Socket.IO ack of the event that
  carried the request (when the client asked for one), an ``error`` event (a refused
  request without callback) or nothing;
* a close becomes ``error {code, message, closeCode, reason}`` followed by a server-side
  disconnect (Socket.IO has no close codes).

Everything outgoing, acks included, goes through one queue drained by
:meth:`SioPeer.run_writer`, so injected latency and pauses keep the per-connection
order (a ``chat:message`` echo is emitted before the ack of its ``chat:send``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import CloseReason
from .faults import FaultState

__all__ = ["AckTarget", "SioLink", "SioPeer", "close_payload"]

log = logging.getLogger("fake_server.sio")

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


class _Kind(enum.Enum):
    EVENT = enum.auto()
    ACK = enum.auto()
    CLOSE = enum.auto()


@dataclass(frozen=True, slots=True)
class _Outgoing:
    kind: _Kind
    due: float
    name: str = ""
    payload: Any = None
    ack_id: int = 0
    code: int = 0


@dataclass(slots=True)
class _Answering:
    request_id: str | None
    request_type: str
    target: AckTarget
    answered: bool = field(default=False)


class SioPeer:
    """One Socket.IO connection (namespace ``/``): an ordered, pausable, delayable sender.

    The endpoint runs :meth:`run_writer` in a task and calls :meth:`gone` once
    Socket.IO reports the disconnect.
    """

    def __init__(
        self, link: SioLink, *, sid: str, eio_sid: str, faults: FaultState, remote: str
    ) -> None:
        self.sid = sid
        self.eio_sid = eio_sid
        self.remote = remote
        self._link = link
        self._faults = faults
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._answering: _Answering | None = None
        self.close_requested: tuple[int, str] | None = None
        self.aborted = False
        self.disconnected = False
        """Socket.IO reported the disconnect (the hub has forgotten the connection)."""
        self.finished = asyncio.Event()

    def __repr__(self) -> str:
        return f"SioPeer({self.remote}, sid={self.sid}, close_requested={self.close_requested})"

    @property
    def _open(self) -> bool:
        return self.close_requested is None and not self.aborted and not self.disconnected

    # -- Peer protocol -------------------------------------------------------------------

    def send(self, envelope: dict[str, Any]) -> None:
        if not self._open:
            return
        kind = envelope.get("type")
        if kind == "ack":
            self._route_ack(envelope)
        else:
            self._put(
                _Outgoing(
                    _Kind.EVENT, self._due(), name=str(kind), payload=envelope.get("payload", {})
                )
            )

    def close(self, code: int, reason: str) -> None:
        if self._open:
            self.close_requested = (code, reason)
            self._put(_Outgoing(_Kind.CLOSE, self._due(), payload=reason, code=code))

    def abort(self) -> None:
        if not self.aborted and not self.disconnected:
            self.aborted = True
            self._link.abort(self.eio_sid)

    # -- requests and their replies -----------------------------------------------------

    @contextmanager
    def answering(
        self, request_id: str | None, request_type: str, target: AckTarget
    ) -> Iterator[None]:
        """While the hub handles one request, route its ack envelope to ``target``."""
        self._answering = _Answering(request_id, request_type, target)
        try:
            yield
        finally:
            self._answering = None

    def reply(self, target: AckTarget, request_type: str, payload: dict[str, Any]) -> None:
        """Deliver a request's reply (the raw ack payload) to ``target``."""
        if isinstance(target, list):
            target.append(payload)
        elif target is not None:
            if self._open:
                self._put(_Outgoing(_Kind.ACK, self._due(), payload=payload, ack_id=target))
        elif not payload.get("success", False):
            error = payload.get("error", {})
            self.send({"type": "error", "payload": {**error, "requestType": request_type}})

    def _route_ack(self, envelope: dict[str, Any]) -> None:
        current = self._answering
        if current is None or current.answered or envelope.get("id") != current.request_id:
            log.debug("dropping an unexpected ack for %s", self.sid)
            return
        current.answered = True
        self.reply(current.target, current.request_type, envelope.get("payload", {}))

    # -- writer --------------------------------------------------------------------------

    def _due(self) -> float:
        return self._loop.time() + self._faults.latency

    def _put(self, item: _Outgoing) -> None:
        self._queue.put_nowait(item)

    async def run_writer(self) -> None:
        """Emit queued items in order until the disconnect went out or the link broke."""
        # The connect handler queued ``connected`` before Socket.IO sent its CONNECT
        # packet; emit nothing until the client is connected to the namespace.
        for _ in range(1000):
            if self._link.is_connected(self.sid) or self.disconnected:
                break
            await asyncio.sleep(0 if _ < 10 else 0.001)
        while True:
            item = await self._queue.get()
            delay = item.due - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._faults.wait_running()
            if self.aborted or self.disconnected:
                return
            try:
                if item.kind is _Kind.EVENT:
                    await self._link.emit(self.sid, item.name, item.payload)
                elif item.kind is _Kind.ACK:
                    await self._link.ack(self.eio_sid, item.ack_id, item.payload)
                else:
                    await self._link.emit(self.sid, "error", close_payload(item.code, item.payload))
                    await self._link.disconnect(self.sid, self.eio_sid)
                    return
            except Exception:
                # The connection went away under us; Socket.IO reports the disconnect.
                log.debug("emit to %s failed", self.sid, exc_info=True)
                self.abort()
                return
