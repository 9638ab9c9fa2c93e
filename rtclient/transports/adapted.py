"""Generic mode on a raw WebSocket transport: any server's envelope, through an adapter.

:class:`AdaptedTransport` wraps the websockets or aiohttp transport. Its connections
carry frames as they are (no rtclient codec, no rtclient subprotocol offered) and turn
them into the envelopes the session core reads, through an
:class:`~rtclient.adapters.Adapter` (sans-I/O: :mod:`rtclient.adapters.base`):

- a new connection writes the adapter's opening frames and is welcomed (a
  synthesized ``connected`` envelope, as Socket.IO generic mode does) when the adapter
  reads the server's acceptance (:class:`~rtclient.adapters.Ready`: the seed's
  ``connected {clientId}`` greeting, also delivered to ``on("connected")`` handlers),
  or at once for an adapter without ``greets``: the ``on_connect`` hooks run, then the
  outbox flushes;
- an emit or a call is ``adapter.encode``-d (with an adapter that has no acks, the
  Client sends every emit as ``ack=False``: done once written, "sent");
- the server's frames are ``adapter.decode``-d: events are delivered under their own
  names (marked ``raw``: a server's ``ack`` or ``chat:message`` is not read as rooms
  mode's; only ``error`` becomes an ErrorEvent), acks settle
  their message, replies are written back, an in-band refusal ends the connection
  with its close code;
- a resume position is kept here, across connections: the position of the last
  event taken, offered to ``adapter.opening`` on the next connection; an event at or
  before it is dropped (``duplicates_dropped`` in ``Client.stats()``). When the
  adapter says the server's sequence started over (:class:`~rtclient.adapters.Reset`),
  the position is forgotten and a :class:`~rtclient.events.Gap` (reason ``"reset"``)
  goes to the session, which counts it and hands it to the app.

The token goes in the ``Authorization: Bearer`` header, or in the URL's query under
``token_query`` when asked (some servers read it only there: the seed's), or in the
protocol itself (an adapter with ``sends_token``). A token in the URL is registered
with :mod:`rtclient.redact` first, so that no log line or exception text shows it.
"""

from __future__ import annotations

from collections import deque
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..adapters.base import (
    Acked,
    Adapter,
    Closing,
    Frame,
    Ready,
    Received,
    Refused,
    Reply,
    Reset,
)
from ..adapters.envelope import JsonEnvelope
from ..errors import ConnectionLost, ProtocolError, RequestRejected
from ..events import Gap
from ..redact import peer_text, remember_query_parameter, remember_token
from ..session import OWN_EVENT
from .base import Connection, Transport

__all__ = ["AdaptedConnection", "AdaptedTransport", "url_with_token"]


class _Frames:
    """A codec that is no codec: the raw connection sends and returns frames as they are."""

    name = "frames"

    def encode(self, envelope: dict[str, Any]) -> Frame:
        frame: Frame = envelope["frame"]
        return frame

    def decode(self, frame: Frame) -> object:
        return frame


_FRAMES = _Frames()
_SAMPLE_ID = "00000000-0000-7000-8000-000000000000"
"""A message id of the form the Client makes (a UUIDv7), for :meth:`check_emit`."""


class AdaptedTransport:
    """Opens raw WebSocket connections that speak ``adapter``'s envelope.

    :param inner: a raw transport (:class:`~rtclient.transports.WebSocketTransport` or
        :class:`~rtclient.transports.AiohttpTransport`), built without subprotocols.
    :param adapter: what the server speaks (see :mod:`rtclient.adapters`).
    :param token_query: put the token in the URL's query under this name instead of
        the ``Authorization`` header (and redact it everywhere).
    """

    def __init__(
        self, inner: Transport, adapter: Adapter, *, token_query: str | None = None
    ) -> None:
        self.inner = inner
        self.adapter = adapter
        self.token_query = token_query
        if token_query:
            remember_query_parameter(token_query)
        self.position: int | None = None
        """The resume position of the last event taken (None before any)."""
        self.counters = {"duplicates_dropped": 0}

    @property
    def acks(self) -> bool:
        """Whether the server's acks are recognised (else an emit is done once written)."""
        return self.adapter.acks

    def no_greeting_advice(self, heard: int) -> str:
        """Why a connection got no greeting (:class:`Ready`) in time, after ``heard``
        frames from the server, and what to do about it."""
        adapter = self.adapter
        name = type(adapter).__name__
        if heard == 0:
            return f"the server sent nothing within connect_timeout ({name} waits for its greeting)"
        greeting = getattr(adapter, "greeting", None)
        if isinstance(adapter, JsonEnvelope) and greeting is not None:
            return (
                f"the server sent {heard} frame(s) but no {greeting!r} greeting within"
                f" connect_timeout: for a server that greets with nothing use"
                f" adapter=JsonEnvelope(greeting=None), or greeting='<the type of its first"
                f" frame>'"
            )
        return (
            f"the server sent {heard} frame(s) but {name}.decode() said Ready for none"
            " within connect_timeout (greets = False for a server that does not greet)"
        )

    def check_emit(self, name: str, data: Any) -> None:
        """Raise TypeError or ValueError now for an emit the adapter cannot encode
        (rather than when it is written, from the outbox): encoded as it will be, with
        a message id of the Client's form when the adapter has acks."""
        self.adapter.encode(name, data, _SAMPLE_ID if self.adapter.acks else None)

    async def connect(self, url: str, *, token: str | None, open_timeout: float) -> Connection:
        """Open one connection and write the adapter's opening frames."""
        header_token: str | None = token
        if self.adapter.sends_token or self.token_query:
            header_token = None
            remember_token(token, self)
        if token and self.token_query and not self.adapter.sends_token:
            url = url_with_token(url, self.token_query, token)
        conn = await self.inner.connect(url, token=header_token, open_timeout=open_timeout)
        conn.codec = _FRAMES  # type: ignore[attr-defined]
        adapted = AdaptedConnection(conn, self)
        try:
            try:
                frames = self.adapter.opening(token, self.position)
            except Exception as exc:  # an adapter's bug: fatal, it would fail every attempt
                raise ProtocolError(_failed(self.adapter, "opening", exc)) from exc
            for frame in frames:
                await conn.send({"frame": frame})
        except BaseException:
            conn.abort()
            raise
        return adapted


class AdaptedConnection:
    """One connection of an :class:`AdaptedTransport`; see
    :class:`rtclient.transports.base.Connection`."""

    def __init__(self, conn: Connection, owner: AdaptedTransport) -> None:
        self._conn = conn
        self._owner = owner
        self._adapter = owner.adapter
        self._ready: deque[dict[str, Any] | Gap] = deque()
        self._closing: Closing | None = None
        self._welcomed = False
        if not self._adapter.greets:
            self._welcome(Ready())

    def _welcome(self, ready: Ready) -> None:
        if not self._welcomed:
            self._welcomed = True
            welcome: dict[str, Any] = {"features": []}
            if ready.max_message_size is not None:
                welcome["limits"] = {"maxMessageSize": ready.max_message_size}
            self._ready.append({"type": "connected", "payload": welcome})

    async def send(self, envelope: dict[str, Any]) -> None:
        """Encode an emit (or a call) with the adapter and write its frames."""
        message_id = envelope.get("id")
        wants_ack = isinstance(message_id, str)
        try:
            frames = self._adapter.encode(
                envelope["type"],
                envelope.get("payload"),
                message_id if wants_ack and self._adapter.acks else None,
            )
        except (TypeError, ValueError):
            raise  # what the envelope cannot carry: reported by the writer (ENCODE)
        except Exception as exc:  # an adapter's bug must not take the client down
            name = type(self._adapter).__name__
            raise ValueError(f"{name}.encode failed: {type(exc).__name__}: {exc}") from exc
        for frame in frames:
            await self._conn.send({"frame": frame})

    async def recv(self) -> object:
        """The next envelope for the session: from the adapter's reading of the frames."""
        while not self._ready:
            if self._closing is not None:
                raise ConnectionLost(self._closing.code, peer_text(self._closing.reason))
            frame = await self._conn.recv()
            if not isinstance(frame, str | bytes):
                raise ProtocolError(f"not a WebSocket message: {type(frame).__name__}")
            try:
                items = self._adapter.decode(frame)
            except ProtocolError:
                raise
            except Exception as exc:  # an adapter's bug must not take the client down
                raise ProtocolError(_failed(self._adapter, "decode", exc)) from exc
            if not isinstance(items, list | tuple):
                name = type(self._adapter).__name__
                raise ProtocolError(f"{name}.decode returned {type(items).__name__}, not a list")
            for item in items:
                await self._take(item)
        return self._ready.popleft()

    async def _take(self, item: object) -> None:
        owner = self._owner
        if isinstance(item, Received):
            position = item.position
            if position is not None:
                if owner.position is not None and position <= owner.position:
                    owner.counters["duplicates_dropped"] += 1
                    return
                owner.position = position
            data = item.data if isinstance(item.data, dict) else {"args": [item.data]}
            self._ready.append({"type": item.name, "payload": data, "own": OWN_EVENT})
        elif isinstance(item, Acked):
            self._ready.append(
                {"type": "ack", "id": item.message_id, "payload": {}, "args": [item.result]}
            )
        elif isinstance(item, Refused):
            refusal = RequestRejected(item.code, peer_text(item.message))
            self._ready.append(
                {"type": "ack", "id": item.message_id, "payload": {}, "args": refusal}
            )
        elif isinstance(item, Reply):
            await self._conn.send({"frame": item.frame})
        elif isinstance(item, Ready):
            self._welcome(item)
        elif isinstance(item, Reset):
            after = owner.position
            owner.position = None  # the old sequence's positions mean nothing now
            self._ready.append(Gap(item.scope, "reset", after or 0, item.old_epoch, item.new_epoch))
        elif isinstance(item, Closing):
            self._closing = item
            self._conn.abort()
        else:
            name = type(self._adapter).__name__
            raise ProtocolError(f"{name}.decode returned a {type(item).__name__}, not an Incoming")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket (idempotent)."""
        await self._conn.close(code, reason)

    def abort(self) -> None:
        """Drop the connection at once."""
        self._conn.abort()

    async def ping(self) -> float | None:
        """A WebSocket ping's round trip (the heartbeat and the quality tracker's sample)."""
        return await self._conn.ping()


def _failed(adapter: Adapter, method: str, exc: Exception) -> str:
    """What to say about an adapter's method that raised (its text redacted)."""
    return f"{type(adapter).__name__}.{method} failed: {type(exc).__name__}: {peer_text(str(exc))}"


def url_with_token(url: str, name: str, token: str) -> str:
    """``url`` with ``name=token`` in its query (replacing any ``name`` already there)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    query.append((name, token))
    return urlunsplit(parts._replace(query=urlencode(query)))
