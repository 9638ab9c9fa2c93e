"""One accepted connection of a :class:`~rtclient.testing.HostileServer`: what a script drives.

Incoming frames are parsed by websockets' sans-I/O :class:`~websockets.protocol.Protocol`
(which also answers the client's pings, unless the connection is stalled); outgoing
frames are serialized here, so any frame can be sent — an invalid close code, a reason
that is not UTF-8, half a frame. On a Socket.IO connection the same WebSocket carries
Engine.IO v4 / Socket.IO v5 packets, spoken by hand (``0{…}`` OPEN, ``40`` CONNECT,
``42[…]`` EVENT, ``43<id>[…]`` ACK, ``41`` DISCONNECT) so that they too can be wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import struct
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

if TYPE_CHECKING:
    from .hostile import HandshakeRequest, HostileServer, Request

__all__ = ["HostileConnection"]

Kind = Literal["websocket", "socketio"]
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
"""The Socket.IO binding's ``error`` code for a close code (docs/protocol.md)."""
_SIO_PACKET = re.compile(r"^4(\d)(?:(/[^,]*),)?(\d*)(.*)$", re.S)


class HostileConnection:
    """An upgraded connection; every method is one thing the server does on the wire.

    Methods that write raise ``ConnectionError`` once the client has gone; a script
    may let that propagate (the server treats it as the end of the connection).
    """

    def __init__(
        self,
        server: HostileServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handshake: HandshakeRequest,
        kind: Kind,
    ) -> None:
        self.server = server
        self.handshake = handshake
        self.kind: Kind = kind
        """``"websocket"`` (the raw protocol, JSON envelopes) or ``"socketio"``."""
        self.rooms: set[str] = set()
        """Rooms this connection joined (the default contract broadcasts to them)."""
        self.auth: object = None
        """The Socket.IO CONNECT packet's auth payload (None on raw WebSocket)."""
        self.closed = False
        self._reader = reader
        self._writer = writer
        self._proto = Protocol(Side.SERVER, state=State.OPEN, max_size=None)
        self._inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._stalled = False
        self._gone = asyncio.Event()
        self._engine_open = False
        self._namespace_open = False
        self._reading: asyncio.Task[None] | None = None
        self.farewell: list[str] = []
        """How the client left, in order: ``"41"`` (Socket.IO DISCONNECT), ``"1"``
        (Engine.IO CLOSE), ``"close"`` (its WebSocket close frame)."""

    @property
    def token(self) -> str | None:
        """The token the client presented: the ``Authorization: Bearer`` header, or on
        Socket.IO the CONNECT packet's ``auth.token`` (known after :meth:`open`)."""
        if isinstance(self.auth, dict) and isinstance(self.auth.get("token"), str):
            return str(self.auth["token"])
        scheme, _, value = self.handshake.headers.get("authorization", "").partition(" ")
        return value if scheme.lower() == "bearer" and value else None

    # -- raw wire --------------------------------------------------------------------

    async def send_raw(self, data: bytes) -> None:
        """Write bytes on the TCP connection as they are (half a frame, garbage, …)."""
        self._writer.write(data)
        await self._writer.drain()

    async def send_frame(self, opcode: Opcode, data: bytes, *, fin: bool = True) -> None:
        """Send one unmasked WebSocket frame of any opcode."""
        await self.send_raw(Frame(opcode, data, fin=fin).serialize(mask=False))

    async def send_text(self, text: str | bytes) -> None:
        """Send a text frame (bytes are sent as they are: they need not be UTF-8)."""
        await self.send_frame(Opcode.TEXT, text.encode() if isinstance(text, str) else text)

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary frame."""
        await self.send_frame(Opcode.BINARY, data)

    async def send_json(self, value: object) -> None:
        """Send ``value`` as JSON: a text frame (raw), or a Socket.IO EVENT packet's data."""
        text = json.dumps(value)
        await self.send_text("42" + text if self.kind == "socketio" else text)

    async def ping(self, data: bytes = b"") -> None:
        """Send a WebSocket ping (raw) or an Engine.IO PING packet (Socket.IO)."""
        if self.kind == "socketio":
            await self.send_text("2")
        else:
            await self.send_frame(Opcode.PING, data)

    async def close(self, code: int | None = 1000, reason: str | bytes = "") -> None:
        """Close with ``code`` and ``reason`` (any code, any bytes), then end the TCP link.

        ``code=None`` sends a close frame without a body (the client sees 1005). On
        Socket.IO the binding's way is used: ``error {code, closeCode, reason}``, then
        DISCONNECT; before the namespace is connected, a CONNECT_ERROR with ``reason``.
        """
        if self.closed:
            return
        if self.kind == "socketio":
            text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else reason
            if not self._namespace_open and self._engine_open:
                await self.send_text("44" + json.dumps({"message": text}))
            elif self._namespace_open:
                name = _CLOSE_NAMES.get(code, "CLOSED") if code is not None else "CLOSED"
                error: dict[str, Any] = {"code": name, "message": text, "reason": text}
                if code is not None:
                    error["closeCode"] = code
                match = re.search(r"retryAfter=(\S+)", text)
                if match:
                    with contextlib.suppress(ValueError):
                        error["retryAfter"] = float(match.group(1))
                await self.emit("error", error)
                await self.send_text("41")
            code, reason = 1000, b""
        raw_reason = reason.encode() if isinstance(reason, str) else reason
        body = b"" if code is None else struct.pack("!H", code) + raw_reason
        await self.send_frame(Opcode.CLOSE, body)
        self.closed = True
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(0.5):  # the client's closing handshake, briefly
                while await self._inbox.get() is not None:
                    pass
        self._writer.close()

    def drop(self) -> None:
        """Reset the TCP connection: no close frame (the client sees 1006)."""
        self.closed = True
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    async def stall(self) -> None:
        """Freeze: read nothing, answer nothing (not even pings), until the client leaves.

        Returns when the client closes the TCP connection (it noticed the dead link)
        or the server stops.
        """
        self._stalled = True
        await self._gone.wait()
        self.closed = True

    async def flood(self, frames: Iterable[str | bytes]) -> int:
        """Send every frame of ``frames`` (text or binary) as fast as the socket takes them."""
        count = 0
        for frame in frames:
            opcode = Opcode.TEXT if isinstance(frame, str) else Opcode.BINARY
            data = frame.encode() if isinstance(frame, str) else frame
            self._writer.write(Frame(opcode, data).serialize(mask=False))
            count += 1
            if count % 256 == 0:
                await self._writer.drain()
        await self._writer.drain()
        return count

    # -- the contract's vocabulary ---------------------------------------------------

    def envelope(self, event: str, payload: object) -> str:
        """The text frame that carries ``event`` on this connection."""
        if self.kind == "socketio":
            return "42" + json.dumps([event, payload])
        return json.dumps({"type": event, "payload": payload})

    async def emit(self, event: str, payload: object) -> None:
        """Send a server event (``chat:message``, ``error``, …) with ``payload``."""
        await self.send_text(self.envelope(event, payload))

    async def ack(self, req: Request, payload: object = None, /, **fields: Any) -> None:
        """Acknowledge ``req``: ``{"success": true, **fields}``, or ``payload`` as it is."""
        if req.id is None:
            return
        body = {"success": True, **fields} if payload is None else payload
        if self.kind == "socketio":
            await self.send_text(f"43{req.id}" + json.dumps([body]))
        else:
            await self.send_text(json.dumps({"type": "ack", "id": req.id, "payload": body}))

    async def reject(self, req: Request, code: str, message: str = "", **extra: Any) -> None:
        """Refuse ``req`` with an error code (an ack, or an ``error`` event without an id)."""
        error = {"code": code, "message": message, **extra}
        if req.id is None:
            await self.emit("error", {**error, "requestType": req.type})
        else:
            await self.ack(req, {"success": False, "error": error})

    async def open(self, *, pid: str | None = None, replay: Iterable[list[Any]] = ()) -> None:
        """Socket.IO only: the Engine.IO OPEN packet, then accept the namespace CONNECT.

        ``pid`` turns connection state recovery on (the CONNECT reply carries it; a
        client that asked for that pid takes its session as recovered). ``replay``:
        EVENT packets sent before the CONNECT reply, as a recovering server replays
        what the client missed, e.g. ``[["tick", {"n": 3}, "offset-3"]]``.
        """
        if self.kind != "socketio" or self._namespace_open:
            return
        await self.await_connect()
        for args in replay:
            await self.send_text("42" + json.dumps(args))
        self._namespace_open = True
        reply: dict[str, Any] = {"sid": f"s{id(self):x}"}
        if pid is not None:
            reply["pid"] = pid
        await self.send_text("40" + json.dumps(reply))

    async def connect_error(self, message: str, data: object = None) -> None:
        """Socket.IO only: refuse the namespace CONNECT with a CONNECT_ERROR packet
        ``{"message": message, "data": data}`` (no ``data`` when None), as socket.io's
        ``next(err)`` does; the client is then expected to leave."""
        if self.kind != "socketio" or self._namespace_open:
            raise RuntimeError("connect_error is a Socket.IO refusal of the namespace")
        await self.await_connect()
        body: dict[str, object] = {"message": message}
        if data is not None:
            body["data"] = data
        await self.send_text("44" + json.dumps(body))

    async def await_connect(self) -> None:
        """Socket.IO only: the Engine.IO OPEN packet (once), then wait for the client's
        namespace CONNECT (its payload in :attr:`auth`), answering nothing yet.

        A script then answers (:meth:`open`, :meth:`connect_error`) or not: e.g.
        ``await conn.await_connect(); conn.drop()`` is a node that dies between the
        Engine.IO handshake and its answer to the Socket.IO CONNECT.
        """
        if self.kind != "socketio":
            raise RuntimeError("await_connect is the Socket.IO namespace handshake")
        if not self._engine_open:
            self._engine_open = True
            handshake = {"sid": f"e{id(self):x}", "upgrades": [], "pingInterval": 25000}
            handshake |= {"pingTimeout": 20000, "maxPayload": 10_000_000}
            await self.send_text("0" + json.dumps(handshake))
        while True:
            text = await self._next_text()
            if text is None:
                raise ConnectionError("the client left before the namespace CONNECT")
            if text.startswith("40"):
                body = text[2:]
                self.auth = json.loads(body) if body else None
                break

    async def welcome(self, **overrides: Any) -> None:
        """Send the ``connected`` welcome (after :meth:`open` on Socket.IO)."""
        await self.open()
        srv = self.server
        payload: dict[str, Any] = {
            "clientId": f"c-{id(self):x}",
            "userId": srv.user_id,
            "epoch": srv.contract.epoch,
            "serverTime": time.time(),
            "features": list(srv.features),
            "limits": {
                "maxMessageSize": 1 << 20,
                "maxTextLength": 8000,
                "syncPageMax": srv.contract.sync_page_max,
            },
        }
        await self.emit("connected", {**payload, **overrides})

    async def recv(self) -> Request | None:
        """The client's next request (None once the client closed).

        Frames that are not requests (garbage, pongs, Socket.IO ACKs) are skipped;
        every request is recorded in ``server.requests``.
        """
        from .hostile import Request

        while True:
            text = await self._next_text()
            if text is None:
                return None
            if self.kind == "socketio":
                match = _SIO_PACKET.match(text)
                if match is None or match.group(1) != "2":
                    continue
                try:
                    data = json.loads(match.group(4))
                except ValueError:
                    continue
                if not isinstance(data, list) or not data:
                    continue
                event_id = int(match.group(3)) if match.group(3) else None
                payload = data[1] if len(data) > 1 and isinstance(data[1], dict) else {}
                req = Request(str(data[0]), event_id, payload)
            else:
                try:
                    envelope = json.loads(text)
                except ValueError:
                    continue
                if not isinstance(envelope, dict):
                    continue
                body = envelope.get("payload")
                req = Request(
                    str(envelope.get("type")),
                    envelope.get("id"),
                    body if isinstance(body, dict) else {},
                )
            self.server.record(req)
            return req

    async def serve(self) -> None:
        """Answer requests (the server's hooks first, else the contract) until the client goes."""
        while not self.closed:
            req = await self.recv()
            if req is None:
                return
            await self.server.dispatch(self, req)

    async def default(self, req: Request) -> None:
        """Answer ``req`` as the well-behaved contract would (for use inside hooks)."""
        await self.server.contract.answer(self, req)

    # -- internals -------------------------------------------------------------------

    async def _next_text(self) -> str | None:
        while True:
            frame = await self._inbox.get()
            if frame is None:
                self._inbox.put_nowait(None)
                return None
            if isinstance(frame, bytes):
                continue
            if self.kind == "socketio" and frame == "2":
                await self.send_text("3")  # the client's ping (Engine.IO v3 style)
                continue
            return frame

    def start_reading(self) -> asyncio.Task[None]:
        """Start the task that parses incoming frames (the server owns and ends it)."""
        self._reading = asyncio.create_task(self._read_loop(), name="hostile reader")
        return self._reading

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(65536)
                if self._stalled:
                    if not data:
                        break
                    continue  # frozen: what arrives is dropped on the floor
                if data:
                    self._proto.receive_data(data)
                else:
                    self._proto.receive_eof()
                for frame in self._proto.events_received():
                    if not isinstance(frame, Frame):
                        continue
                    if frame.opcode is Opcode.TEXT:
                        text = bytes(frame.data).decode("utf-8", "replace")
                        if self.kind == "socketio" and (text == "1" or text.startswith("41")):
                            self.farewell.append(text[:2])
                        self._inbox.put_nowait(text)
                    elif frame.opcode is Opcode.BINARY:
                        self._inbox.put_nowait(bytes(frame.data))
                    elif frame.opcode is Opcode.CLOSE:
                        self.farewell.append("close")
                        self._inbox.put_nowait(None)
                if not self.closed:
                    for chunk in self._proto.data_to_send():  # pongs, the close echo
                        if chunk:
                            self._writer.write(chunk)
                if not data or self._proto.state is State.CLOSED:
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            self._inbox.put_nowait(None)
            self._gone.set()
            self.closed = True
