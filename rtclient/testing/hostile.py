"""A scriptable hostile server: any HTTP answer, frame or close code, at a chosen moment.

::

    async with HostileServer() as srv:
        srv.after_welcome(lambda conn: conn.close(4002, "TOKEN_EXPIRED"), times=1)
        srv.on("chat:send", lambda conn, req: conn.ack(req, eventId="x"), nth=3)
        client = Client(srv.url, token="t")  # srv.sio_url for transport="socketio"

By default the server is well behaved: it speaks enough of docs/protocol.md (the
welcome, join acks, chat acks with a dedupe table, paged sync; :mod:`.hostile_rooms`)
to bring a client to CONNECTED, over raw WebSocket (any path but ``/socket.io/``) and
Socket.IO (``/socket.io/``, WebSocket transport), on one port. A test then departs
from it:

- handshakes: :meth:`~HostileServer.refuse` (an HTTP status, headers, body),
  :meth:`~HostileServer.respond_raw` (any bytes, e.g. a garbage status line),
  :meth:`~HostileServer.accept` (a subprotocol never offered, extra headers),
  :meth:`~HostileServer.stall_handshake` (read the request, answer nothing);
- connections: :meth:`~HostileServer.script` runs a coroutine instead of the default
  (``conn.welcome()``, ``conn.serve()``, ``conn.close(code, reason)``, ``conn.drop()``,
  ``conn.stall()``, ``conn.send_text(...)``, … see
  :class:`~rtclient.testing.hostile_conn.HostileConnection`);
  :meth:`~HostileServer.after_welcome` is the common case;
- requests: :meth:`~HostileServer.on` answers a request type (its ``nth`` only)
  instead of the contract; ``conn.default(req)`` is the well-behaved answer.

Each plan applies to the next ``times`` handshakes or connections (``None``: all of
them), then the default returns. ``handshakes``, ``connections`` and ``requests``
record what the client did: count reconnect attempts with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from websockets.utils import accept_key

from fake_server.listening import stop_accepting

from .hostile_conn import HostileConnection
from .hostile_rooms import RoomsContract

__all__ = ["HandshakeRequest", "HostileServer", "Request"]

Script = Callable[[HostileConnection], Awaitable[object] | object]
Hook = Callable[[HostileConnection, "Request"], Awaitable[object] | object]
_OFFERED = object()


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """The client's HTTP upgrade request, as received."""

    method: str
    """``"TLS"`` for a TLS ClientHello (``wss://`` to this plain server: answered 400)."""
    path: str
    headers: dict[str, str]
    """Header names in lower case."""

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in order."""
        value = self.headers.get("sec-websocket-protocol", "")
        return [p.strip() for p in value.split(",") if p.strip()]


@dataclass(slots=True)
class Request:
    """One request from the client: ``type``, ``id`` (the ack id; None: no ack wanted), payload.

    ``n`` counts requests of this type server-wide, from 1 (set when recorded).
    """

    type: str
    id: Any
    payload: dict[str, Any]
    n: int = field(default=0)

    @property
    def message_id(self) -> str | None:
        """The message id of a ``chat:send``: the raw ``id``, or Socket.IO's ``messageId``."""
        value = self.payload.get("messageId") if not isinstance(self.id, str) else self.id
        return value if isinstance(value, str) else None


@dataclass(slots=True)
class _Plan:
    what: Any
    times: int | None


class HostileServer:
    """A loopback server that a test scripts to misbehave; see the module doc.

    :param user_id: the user the welcome names.
    :param features: the welcome's ``features`` (``"batch"`` is left out: the server
        does not read batches).
    :param sync_page_max: the largest sync page the default contract serves.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        user_id: str = "alice",
        features: tuple[str, ...] = ("sync",),
        sync_page_max: int = 500,
        epoch: str = "e1",
    ) -> None:
        self.host = host
        self.port = 0
        self.user_id = user_id
        self.features = features
        self.contract = RoomsContract(self, epoch=epoch, sync_page_max=sync_page_max)
        self.handshakes: list[HandshakeRequest] = []
        """Every upgrade request received, in order (one per connection attempt)."""
        self.connections: list[HostileConnection] = []
        """Every upgraded connection, in order."""
        self.requests: list[Request] = []
        """Every request received, in order."""
        self.errors: list[BaseException] = []
        """Exceptions raised by scripts and hooks (re-raised when the server stops)."""
        self._counts: Counter[str] = Counter()
        self._handshake_plans: deque[_Plan] = deque()
        self._scripts: deque[_Plan] = deque()
        self._hooks: list[tuple[str, Collection[int] | None, Hook]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> HostileServer:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            # Every connection accepted so far reaches _accept (and is cut below): one
            # caught mid-accept by close() would be dropped unclosed (fake_server.listening).
            await stop_accepting(self._server)
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()  # every script sees its client go, and ends
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=1.0)
            for task in stuck:  # a script awaiting something else: end it
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if exc is None and self.errors:
            raise self.errors[0]

    @property
    def url(self) -> str:
        """The raw WebSocket URL (``transport="websocket"`` or ``"aiohttp"``)."""
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def sio_url(self) -> str:
        """The Socket.IO URL (``transport="socketio"``)."""
        return f"http://{self.host}:{self.port}"

    def url_for(self, transport: str) -> str:
        """The URL a client of ``transport`` connects to."""
        return self.sio_url if transport == "socketio" else self.url

    # -- plans -----------------------------------------------------------------------

    def refuse(
        self,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: str | bytes = b"",
        times: int | None = 1,
    ) -> None:
        """Answer the next ``times`` upgrades with this HTTP status instead of 101."""
        data = body.encode() if isinstance(body, str) else body
        head = f"HTTP/1.1 {status} Hostile\r\nContent-Length: {len(data)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.respond_raw(head.encode() + b"Connection: close\r\n\r\n" + data, times=times)

    def respond_raw(self, data: bytes, *, times: int | None = 1) -> None:
        """Answer the next ``times`` upgrades with ``data`` as it is, then close."""
        self._handshake_plans.append(_Plan(("raw", data), times))

    def accept(
        self,
        *,
        subprotocol: str | object | None = _OFFERED,
        headers: dict[str, str] | None = None,
        times: int | None = 1,
    ) -> None:
        """Upgrade the next ``times`` connections choosing ``subprotocol`` (offered or not).

        ``subprotocol=None``: choose none. Default: the client's first offer.
        """
        self._handshake_plans.append(_Plan(("accept", subprotocol, headers or {}), times))

    def stall_handshake(self, *, times: int | None = 1) -> None:
        """Read the next ``times`` upgrade requests and answer nothing."""
        self._handshake_plans.append(_Plan(("stall",), times))

    def script(self, script: Script, *, times: int | None = None) -> None:
        """Run ``await script(conn)`` for the next ``times`` connections instead of the default.

        The default is ``await conn.welcome(); await conn.serve()``.
        """
        self._scripts.append(_Plan(script, times))

    def after_welcome(self, then: Script, *, times: int | None = None) -> None:
        """Welcome the next ``times`` connections, run ``then(conn)``, then serve them."""

        async def script(conn: HostileConnection) -> None:
            await conn.welcome()
            await _maybe_await(then(conn))
            await conn.serve()

        self.script(script, times=times)

    def on(self, type_: str, hook: Hook, *, nth: int | Collection[int] | None = None) -> None:
        """Answer requests of ``type_`` with ``hook(conn, req)`` instead of the contract.

        ``nth``: only the nth request of that type (counted from 1, server-wide), or
        those numbers; other requests still get the default answer. Later hooks win.
        """
        numbers = (nth,) if isinstance(nth, int) else nth
        self._hooks.insert(0, (type_, numbers, hook))

    def count(self, type_: str) -> int:
        """How many requests of ``type_`` arrived."""
        return self._counts[type_]

    # -- what connections call ---------------------------------------------------------

    def record(self, req: Request) -> None:
        """Number ``req`` and keep it in :attr:`requests`."""
        self._counts[req.type] += 1
        req.n = self._counts[req.type]
        self.requests.append(req)

    async def dispatch(self, conn: HostileConnection, req: Request) -> None:
        """Answer ``req`` with the first matching hook, else the default contract."""
        for type_, numbers, hook in self._hooks:
            if type_ == req.type and (numbers is None or req.n in numbers):
                await _maybe_await(hook(conn, req))
                return
        await self.contract.answer(conn, req)

    # -- internals ---------------------------------------------------------------------

    def _next(self, plans: deque[_Plan]) -> Any:
        if not plans:
            return None
        plan = plans[0]
        if plan.times is not None:
            plan.times -= 1
            if plan.times <= 0:
                plans.popleft()
        return plan.what

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain function, not a coroutine: the connection's task is the server's from
        # the moment it is accepted (asyncio would start a coroutine's task itself, later).
        self._writers.add(writer)
        task = asyncio.get_running_loop().create_task(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away: its business
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a script's own bug: the test must hear of it
            self.errors.append(exc)
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readexactly(1)
        if first == b"\x16":  # a TLS ClientHello: answer as a plain HTTP server would
            self.handshakes.append(HandshakeRequest("TLS", "", {}))
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        head = first + await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, *_ = [*lines[0].split(" "), "", ""]
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        handshake = HandshakeRequest(method, path, headers)
        self.handshakes.append(handshake)
        plan: tuple[Any, ...] = self._next(self._handshake_plans) or ("accept", _OFFERED, {})
        if plan[0] == "raw":
            writer.write(plan[1])
            await writer.drain()
            return
        if plan[0] == "stall":
            await reader.read()  # until the client gives up
            return
        _, chosen, extra = plan
        if chosen is _OFFERED:
            offered = handshake.subprotocols
            chosen = offered[0] if offered else None
        response = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(headers.get('sec-websocket-key', ''))}\r\n"
        )
        if chosen is not None:
            response += f"Sec-WebSocket-Protocol: {chosen}\r\n"
        response += "".join(f"{k}: {v}\r\n" for k, v in extra.items()) + "\r\n"
        writer.write(response.encode())
        await writer.drain()
        socketio = path.startswith("/socket.io/")
        conn = HostileConnection(
            self, reader, writer, handshake, "socketio" if socketio else "websocket"
        )
        self.connections.append(conn)
        reading = conn.start_reading()
        try:
            script = self._next(self._scripts)
            if script is None:
                await conn.welcome()
                await conn.serve()
            else:
                await _maybe_await(script(conn))
                if not conn.closed:
                    await conn.serve()  # a script that returns leaves the connection served
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading


async def _maybe_await(value: object) -> None:
    if inspect.isawaitable(value):
        await value
